-- Two sessions claim the same row at the same time: exactly one wins.
-- Uses dblink (two extra connections over TCP: postgres is not a superuser, so dblink
-- needs the server to ask for its password) with committed fixtures, removed at the end.
select * from no_plan();

select format('host=127.0.0.1 port=%s dbname=%s user=postgres password=postgres',
              current_setting('port'), current_database()) as conninfo \gset

select dblink_connect('claim_a', :'conninfo');
select dblink_connect('claim_b', :'conninfo');

-- Fixture (committed, dispatch muted so no real generate-preview is asked for it).
select dblink_exec('claim_a', $$
  begin;
  set local app.skip_preview_dispatch = 'on';
  insert into auth.users (id, email) values ('33333333-0000-4000-8000-000000000001', 'concurrent@example.test')
    on conflict (id) do nothing;
  insert into public.generations (id, user_id, type, status, asset_url)
  values ('cccccccc-0000-4000-8000-000000000001', '33333333-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/c.png')
    on conflict (id) do update set status = 'success', preview_status = 'none', preview_attempts = 0;
  commit;
$$);

-- A claims inside an open transaction (holds the row lock) ...
select dblink_exec('claim_a', 'begin');
select is(
  (select attempt from dblink('claim_a', $$select attempt from public.claim_preview('cccccccc-0000-4000-8000-000000000001')$$) as t(attempt int)),
  1, 'session A claims the row');
-- ... B asks at the same time and blocks on that lock ...
select is(dblink_send_query('claim_b', $$select count(*)::int from public.claim_preview('cccccccc-0000-4000-8000-000000000001')$$), 1,
  'session B sends its claim');
select pg_sleep(0.3);
select is(dblink_is_busy('claim_b'), 1, 'session B waits for A''s row lock');
-- ... A commits, B re-checks the row and gets nothing.
select dblink_exec('claim_a', 'commit');
select is((select n from dblink_get_result('claim_b') as t(n int)), 0, 'session B gets no claim once A committed');
select is((select count(*)::int from dblink_get_result('claim_b') as t(n int)), 0, 'session B result drained');
select results_eq(
  $$select preview_status, preview_attempts from public.generations where id = 'cccccccc-0000-4000-8000-000000000001'$$,
  $$values ('processing'::text, 1)$$, 'one claim recorded: processing, attempt 1');

-- Both at once with no head start: still exactly one.
select dblink_exec('claim_a', $$update public.generations set preview_status = 'none' where id = 'cccccccc-0000-4000-8000-000000000001'$$);
select dblink_send_query('claim_a', $$select count(*)::int from public.claim_preview('cccccccc-0000-4000-8000-000000000001')$$);
select dblink_send_query('claim_b', $$select count(*)::int from public.claim_preview('cccccccc-0000-4000-8000-000000000001')$$);
select is(
  (select n from dblink_get_result('claim_a') as t(n int)) + (select n from dblink_get_result('claim_b') as t(n int)),
  1, 'two simultaneous claims: exactly one wins');
select dblink_get_result('claim_a') ;
select dblink_get_result('claim_b');

-- Cleanup
select dblink_exec('claim_a', $$delete from public.generations where id = 'cccccccc-0000-4000-8000-000000000001'$$);
select dblink_exec('claim_a', $$delete from auth.users where id = '33333333-0000-4000-8000-000000000001'$$);
select dblink_disconnect('claim_a');
select dblink_disconnect('claim_b');

select * from finish();
