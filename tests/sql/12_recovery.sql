-- Recovery from a crash (issue 16's database side, in the job model): the work is in a logged
-- table and survives; pg_net's queue and the wakes are UNLOGGED and do not (a crash empties them:
-- what they lost is sent again). After one, the minute's sweep finds the dead workers' jobs past
-- their lease, puts them back through the failure path and wakes workers for everything due, and
-- a wake that never reached a worker stops holding its place after preview_wake_hold().
begin;
select plan(14);
set local app.preview_lease = '15 seconds';
set local app.preview_worker_limit = '2';

select is((select relpersistence::text from pg_class where oid = 'net.http_request_queue'::regclass), 'u', 'pg_net''s queue is unlogged, as the real one');
select is((select relpersistence::text from pg_class where oid = 'public.preview_worker_wakes'::regclass), 'u', 'the wakes are unlogged too');
select is((select relpersistence::text from pg_class where oid = 'public.preview_jobs'::regclass), 'p', 'the jobs are not: they survive a crash');

delete from public.preview_jobs;
delete from public.preview_worker_wakes;
delete from vault.secrets where name in ('project_url', 'preview_dispatch_secret');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
select tests.create_user('recovery@example.test', '12121212-0000-4000-8000-000000000001') is not null as created \gset

-- before the crash: three rows queued (two workers woken), one of them claimed
insert into public.generations (id, user_id, type, status, asset_url) values
  ('12121212-aaaa-4000-8000-000000000001', '12121212-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/1.png'),
  ('12121212-aaaa-4000-8000-000000000002', '12121212-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/2.png'),
  ('12121212-aaaa-4000-8000-000000000003', '12121212-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/3.png');
select is(public.preview_workers_awake(), 2, 'two workers woken for three jobs (the bound)');
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '12121212-aaaa-4000-8000-000000000001',
           (select min(id) from public.preview_worker_wakes))), 1, 'the first worker claims row 1');

-- the crash: the unlogged tables come back empty, the workers are gone
delete from public.preview_worker_wakes;
delete from net.http_request_queue;
select is(public.preview_workers_awake(), 0, 'after the crash no worker counts as awake');
select is((select count(*)::int from public.preview_jobs), 3, 'and the three jobs are all there');

-- the minute's sweep, once the dead worker's lease ran out
select tests.travel(public.preview_lease() + interval '1 second');
select lives_ok($$select public.preview_sweep()$$, 'the minute''s sweep runs');
select is(public.preview_workers_awake(), 2, 'it woke workers again, up to the bound (the expired job''s row, back to none, woke them through the trigger)');
select results_eq($$select state, attempts, expired_leases, last_error_code from public.preview_jobs where generation_id = '12121212-aaaa-4000-8000-000000000001'$$,
  $$values ('queued'::text, 1, 1, 'TIMEOUT'::text)$$, 'the dead worker''s job is queued again (TIMEOUT, counted)');
select is((select count(*)::int from net.http_request_queue where convert_from(body, 'UTF8')::jsonb ? 'wake'), 2, 'two wake requests are queued again');
select is(public.preview_jobs_due(10), 3, 'and all three jobs are due for them');

-- a wake that never reached a worker (lost with the crash after all) stops holding its place
select tests.travel(public.preview_wake_hold() + interval '1 second');
select is(public.preview_workers_awake(), 0, 'wakes without a sign of life past preview_wake_hold() no longer count');
select is(public.preview_sweep(), 2, 'so the next sweep wakes workers again');

select * from finish();
rollback;
