-- Issue 10's database findings, as PostgREST's roles see them: what API roles may no longer
-- do to the table, original_path under the guard, one body per KIE signature; the job state shut
-- to API roles whatever policies say; a dead worker's input ends WORKER_LIMIT on the row.
begin;
select plan(39);

set local app.skip_preview_dispatch = 'on';
select tests.create_user('hard-alice@example.test', '99999999-0000-4000-8000-00000000000a') is not null as created \gset
insert into public.generations (id, user_id, type, status, asset_url) values
  ('eeeeeeee-0000-4000-8000-00000000000a', '99999999-0000-4000-8000-00000000000a', 'photo', 'success', 'http://kie.test/a.png');

-- Privileges: TRUNCATE, TRIGGER, REFERENCES are gone for API roles; what an app uses stays.
select ok(not has_table_privilege(r, 'public.generations', p), format('%s has no %s on generations', r, p))
  from unnest(array['anon', 'authenticated']) r, unnest(array['TRUNCATE', 'TRIGGER', 'REFERENCES']) p;
select ok(not has_table_privilege(r, 'storage.objects', 'TRUNCATE'), format('%s cannot truncate storage.objects', r))
  from unnest(array['anon', 'authenticated']) r;
select ok(has_table_privilege('authenticated', 'public.generations', 'SELECT'), 'authenticated still selects (RLS decides which rows)');

create function pg_temp.noop() returns trigger language plpgsql as $$ begin return new; end $$;
grant execute on function pg_temp.noop() to authenticated;
select tests.authenticate_as('99999999-0000-4000-8000-00000000000a');
select throws_ok($$truncate public.generations$$, '42501', null, 'authenticated cannot truncate generations');
select throws_ok($$create trigger t before update on public.generations for each row execute function pg_temp.noop()$$,
  '42501', null, 'authenticated cannot create a trigger on generations');
select tests.authenticate_as_anon();
select throws_ok($$truncate public.generations$$, '42501', null, 'anon cannot truncate generations');
select throws_ok($$truncate storage.objects$$, '42501', null, 'anon cannot truncate storage.objects');
select tests.clear_authentication();

-- Guard: original_path is a source the app writes too (its own copy of the result), so under the
-- app's update policy a user may write it on their own row; the pipeline treats it as untrusted
-- input (the owner check in the worker: an object outside the row owner's folder is no source).
-- What stays service-only, whatever the policy, is this system's own output.
create policy "test: users update own" on public.generations for update to authenticated
  using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
select tests.authenticate_as('99999999-0000-4000-8000-00000000000a');
select lives_ok($$update public.generations set original_path = '99999999-0000-4000-8000-00000000000b/originals/x.jpg'
                   where id = 'eeeeeeee-0000-4000-8000-00000000000a'$$,
  'a user may write original_path of their own row (the app''s policy allows it; the worker''s owner check decides)');
select throws_ok($$update public.generations set preview_path = '99999999-0000-4000-8000-00000000000b/previews/x_preview.webp'
                   where id = 'eeeeeeee-0000-4000-8000-00000000000a'$$,
  '42501', 'generations.preview_path is written by the service only', 'but cannot point the preview at anything');
select throws_ok($$update public.generations set poster_path = 'x', preview_status = 'ready'
                   where id = 'eeeeeeee-0000-4000-8000-00000000000a'$$,
  '42501', null, 'nor the poster, nor mark it ready');
select tests.clear_authentication();
select results_eq($$select original_path, preview_path, poster_path, preview_status from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000a'$$,
  $$values ('99999999-0000-4000-8000-00000000000b/originals/x.jpg'::text, null::text, null::text, 'none'::text)$$,
  'original_path is the user''s write; the preview columns are untouched');
select public.queue_preview('eeeeeeee-0000-4000-8000-00000000000a') is not null as queued_a \gset
select results_eq($$select input ->> 'original_path', input ->> 'user_id' from public.claim_preview_jobs(array['preview'], 1, 'eeeeeeee-0000-4000-8000-00000000000a')$$,
  $$values ('99999999-0000-4000-8000-00000000000b/originals/x.jpg'::text, '99999999-0000-4000-8000-00000000000a'::text)$$,
  'the claim passes it on as given, with the row''s owner beside it, for the worker''s owner check');
delete from public.preview_jobs where generation_id = 'eeeeeeee-0000-4000-8000-00000000000a';

-- One body per KIE signature.
select is(public.record_kie_callback('hard-task', 1700000000, 'aaa'), 'first', 'a new signature is a first use');
select is(public.record_kie_callback('hard-task', 1700000000, 'aaa'), 'repeat', 'the same body again is a redelivery');
select is(public.record_kie_callback('hard-task', 1700000000, 'bbb'), 'replay', 'another body under a used signature is a replay');
select is(public.record_kie_callback('hard-task', 1700000001, 'bbb'), 'first', 'another timestamp is another signature');
select is(public.record_kie_callback('other-task', 1700000000, 'bbb'), 'first', 'another task is another signature');
update public.kie_callback_receipts set received_at = now() - interval '2 days' where task_id = 'other-task';
select public.cron_trim_history();
select is((select count(*)::int from public.kie_callback_receipts where task_id in ('hard-task', 'other-task')), 2,
  'the hourly trim forgets receipts a day old');
select tests.authenticate_as_anon();
select throws_ok($$select public.record_kie_callback('t', 1, 'x')$$, '42501', null, 'anon cannot record receipts');
select throws_ok($$select * from public.kie_callback_receipts$$, '42501', null, 'anon cannot read receipts');
select tests.authenticate_as('99999999-0000-4000-8000-00000000000a');
select throws_ok($$select public.record_kie_callback('t', 1, 'x')$$, '42501', null, 'authenticated cannot record receipts');
select tests.clear_authentication();

-- The job state stays shut even under a permissive policy (as a platform might add one): no
-- table privilege, whatever RLS would allow.
create policy "test: anyone reads jobs" on public.preview_jobs for all using (true) with check (true);
select tests.authenticate_as('99999999-0000-4000-8000-00000000000a');
select throws_ok($$select * from public.preview_jobs$$, '42501', null, 'a permissive policy does not open preview_jobs to users');
select throws_ok($$insert into public.preview_jobs (kind, payload, dedupe_key) values ('delete_object', '{"path": "99999999-0000-4000-8000-00000000000b/previews/x_preview.webp"}', 'x')$$,
  '42501', null, 'nor lets a user queue a deletion of another user''s object');
select tests.clear_authentication();

-- A worker killed by the platform (its lease runs out) is retried once; the second dead worker
-- on the same item ends it WORKER_LIMIT, terminal, on the job and on the row.
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;
insert into public.generations (id, user_id, type, status, asset_url, error) values
  ('eeeeeeee-0000-4000-8000-00000000000b', '99999999-0000-4000-8000-00000000000a', 'photo', 'success', 'http://kie.test/bomb.png', 'the app''s own note');
select public.queue_preview('eeeeeeee-0000-4000-8000-00000000000b') as bomb \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'eeeeeeee-0000-4000-8000-00000000000b')), 1, 'first claim');
select tests.travel(public.preview_lease() + interval '1 second');
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'eeeeeeee-0000-4000-8000-00000000000b')), 2,
  'a first dead worker''s job is taken over by the next claim');
select is((select expired_leases from public.preview_jobs where id = :bomb), 1, 'the dead worker is counted');
select tests.travel(public.preview_lease() + interval '1 second');
select is_empty($$select * from public.claim_preview_jobs(array['preview'], 1, 'eeeeeeee-0000-4000-8000-00000000000b')$$,
  'the second expired lease is not taken over');
select results_eq($$select state, last_error_code, expired_leases, attempts from public.preview_jobs where id = $$ || :bomb,
  $$values ('failed'::text, 'WORKER_LIMIT'::text, 2, 2)$$, 'the job failed WORKER_LIMIT, terminal, after two attempts');
select results_eq($$select preview_status, preview_error_code from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'$$,
  $$values ('failed'::text, 'WORKER_LIMIT'::text)$$, 'the row mirrors it');
select matches((select preview_error from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'),
  '^Preview worker stopped 2 times on this item', 'the row''s preview_error says the worker was stopped');
select is((select error from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'), 'the app''s own note',
  '… and the app''s error is untouched');
select tests.authenticate_as('99999999-0000-4000-8000-00000000000a');
select throws_ok($$update public.generations set preview_status = 'none', preview_error_code = null where id = 'eeeeeeee-0000-4000-8000-00000000000b'$$,
  '42501', null, 'users cannot reset a failed preview themselves');
select tests.clear_authentication();
set local app.skip_preview_dispatch = '';
update public.generations set asset_url = 'http://kie.test/fixed.png' where id = 'eeeeeeee-0000-4000-8000-00000000000b';
select results_eq($$select g.preview_status, g.preview_error, g.error, j.expired_leases, j.attempts
                      from public.generations g join public.preview_jobs j on j.generation_id = g.id and j.state = 'queued'
                     where g.id = 'eeeeeeee-0000-4000-8000-00000000000b'$$,
  $$values ('none'::text, null::text, 'the app''s own note'::text, 0, 0)$$, 'a new asset starts a job with no dead workers (preview_error cleared, the app''s error kept)');

select * from finish();
rollback;
