-- Claims and re-sends from concurrent sessions: a job is claimed once (FOR UPDATE SKIP LOCKED: a
-- second claimer skips it without waiting), two simultaneous claims of one job make one winner,
-- a second due job goes to the second claimer, and two sessions enqueueing one dedupe key make
-- one job. Uses dblink (two extra connections over TCP: postgres is not a superuser, so dblink
-- needs the server to ask for its password) with committed fixtures, removed at the end; so this
-- file runs outside a transaction. While it runs, this session holds wake_preview_workers' lock:
-- no claim here (nor the stack's pg_cron sweep) wakes a real generate-preview worker that would
-- take the fixtures' jobs.
select plan(16);

select pg_advisory_lock(hashtext('public.wake_preview_workers'));
select format('host=127.0.0.1 port=%s dbname=%s user=postgres password=postgres',
              current_setting('port'), current_database()) as conninfo \gset

select dblink_connect('claim_a', :'conninfo');
select dblink_connect('claim_b', :'conninfo');

-- Fixture (committed; the enqueue trigger muted: the job is asked for explicitly).
select dblink_exec('claim_a', $$
  begin;
  set local app.skip_preview_dispatch = 'on';
  insert into auth.users (id, email) values ('33333333-0000-4000-8000-000000000001', 'concurrent@example.test')
    on conflict (id) do nothing;
  insert into public.generations (id, user_id, type, status, asset_url)
  values ('cccccccc-0000-4000-8000-000000000001', '33333333-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/c.png')
    on conflict (id) do update set status = 'success', preview_status = 'none';
  delete from public.preview_jobs where generation_id = 'cccccccc-0000-4000-8000-000000000001'
     or dedupe_key like 'delete_object:zz-concurrent/%';
  select public.queue_preview('cccccccc-0000-4000-8000-000000000001');
  commit;
$$);
create temp table fixture as
  select id as job_id from public.preview_jobs where generation_id = 'cccccccc-0000-4000-8000-000000000001' and kind = 'preview';
create function pg_temp.claim_sql(p_kinds text) returns text language sql as $$
  select format($q$select count(*)::int from public.claim_preview_jobs(%L, 1, 'cccccccc-0000-4000-8000-000000000001')$q$, p_kinds)
$$;

-- A claims inside an open transaction (holds the job's row lock) ...
select dblink_exec('claim_a', 'begin');
select is(
  (select attempt from dblink('claim_a', $$select attempt from public.claim_preview_jobs(array['preview'], 1, 'cccccccc-0000-4000-8000-000000000001')$$) as t(attempt int)),
  1, 'session A claims the job');
-- ... B asks at the same time: it skips the locked job instead of waiting for it.
select is(dblink_send_query('claim_b', pg_temp.claim_sql('{preview}')), 1, 'session B sends its claim');
select pg_sleep(0.3);
select is(dblink_is_busy('claim_b'), 0, 'session B does not wait for A''s lock (SKIP LOCKED)');
select is((select n from dblink_get_result('claim_b') as t(n int)), 0, 'session B gets nothing');
select is((select count(*)::int from dblink_get_result('claim_b') as t(n int)), 0, 'session B result drained');
select dblink_exec('claim_a', 'commit');
select results_eq(
  $$select state, attempts from public.preview_jobs where id = (select job_id from fixture)$$,
  $$values ('running'::text, 1)$$, 'one claim recorded: running, attempt 1');

-- Both at once with no head start: still exactly one.
select ok((select released from dblink('claim_a', format('select public.release_preview_job(%s, 1)', (select job_id from fixture))) as t(released boolean)),
  'A hands the job back');
select dblink_send_query('claim_a', pg_temp.claim_sql('{preview}'));
select dblink_send_query('claim_b', pg_temp.claim_sql('{preview}'));
select is(
  (select n from dblink_get_result('claim_a') as t(n int)) + (select n from dblink_get_result('claim_b') as t(n int)),
  1, 'two simultaneous claims: exactly one wins');
select dblink_get_result('claim_a');
select dblink_get_result('claim_b');
select results_eq(
  $$select state, attempts from public.preview_jobs where id = (select job_id from fixture)$$,
  $$values ('running'::text, 2)$$, '… attempt 2, once');

-- Two due jobs, two workers: A's open claim of one leaves the other to B.
select is((select n from dblink('claim_a', $$select public.queue_object_deletions(array['zz-concurrent/1', 'zz-concurrent/2'],
  'cccccccc-0000-4000-8000-000000000001', 'orphan')$$) as t(n int)), 2, 'two deletions queued');
select dblink_exec('claim_a', 'begin');
select is((select n from dblink('claim_a', pg_temp.claim_sql('{delete_object}')) as t(n int)), 1, 'session A claims one of two due deletions');
select is((select n from dblink('claim_b', pg_temp.claim_sql('{delete_object}')) as t(n int)), 1, 'session B claims the other one at the same time');
select dblink_exec('claim_a', 'commit');

-- A re-send while the first enqueue is uncommitted: B waits for it, then finds the same job.
select dblink_exec('claim_a', 'begin');
create temp table enqueued as
  select id from dblink('claim_a', $$select public.enqueue_preview_job('delete_object', 'cccccccc-0000-4000-8000-000000000001', '{"path": "zz-concurrent/3", "reason": "orphan"}')$$) as t(id bigint);
select is(dblink_send_query('claim_b', $$select public.enqueue_preview_job('delete_object', 'cccccccc-0000-4000-8000-000000000001', '{"path": "zz-concurrent/3", "reason": "orphan"}')$$), 1,
  'session B enqueues the same object');
select pg_sleep(0.3);
select is(dblink_is_busy('claim_b'), 1, 'B waits for A''s uncommitted job of that key');
select dblink_exec('claim_a', 'commit');
select is((select id from dblink_get_result('claim_b') as t(id bigint)), (select id from enqueued), 'then B gets A''s job: one job per key');
select dblink_get_result('claim_b');
select is((select count(*)::int from public.preview_jobs where dedupe_key = 'delete_object:zz-concurrent/3'), 1, 'one job was made');

-- Cleanup
select dblink_exec('claim_a', $$delete from public.preview_jobs where generation_id = 'cccccccc-0000-4000-8000-000000000001'
                                  or dedupe_key like 'delete_object:zz-concurrent/%'$$);
select dblink_exec('claim_a', $$delete from public.generations where id = 'cccccccc-0000-4000-8000-000000000001'$$);
select dblink_exec('claim_a', $$delete from public.preview_jobs where generation_id = 'cccccccc-0000-4000-8000-000000000001'$$);
select dblink_exec('claim_a', $$delete from auth.users where id = '33333333-0000-4000-8000-000000000001'$$);
select dblink_disconnect('claim_a');
select dblink_disconnect('claim_b');
select pg_advisory_unlock(hashtext('public.wake_preview_workers'));

select * from finish();
