-- Workers pull, at the platform's pace (issues 21 and 22): the database only wakes
-- generate-preview workers, one per due job, up to preview_worker_limit() awake at once; a burst
-- of rows is never a burst of requests. A wake counts as an awake worker while it holds a job
-- within its lease, has not answered for less than preview_wake_hold(), or claimed within
-- preview_wake_grace(); a worker that ends frees its place and wakes a successor while due jobs
-- remain. (Handing a claim back at an isolate's end: release, in
-- 15_job_behaviour.sql.)
begin;
select plan(33);
-- the default bound, whatever the stack set (npm test raises it for its parallel suites)
set local app.preview_worker_limit = '';
set local app.preview_lease = '15 seconds';

delete from vault.secrets where name in ('project_url', 'preview_dispatch_secret');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
-- this file's jobs and wakes only
delete from public.preview_jobs;
delete from public.preview_worker_wakes;
select tests.create_user('wakes@example.test', '16161616-0000-4000-8000-000000000001') is not null as created \gset

create temp table q_start as select coalesce(max(id), 0) as max_id from net.http_request_queue;
create function pg_temp.wakes_sent() returns int language sql as $$
  select count(*)::int from net.http_request_queue r
   where r.id > (select max_id from q_start) and r.url like '%/functions/v1/generate-preview'
     and convert_from(r.body, 'UTF8')::jsonb ? 'wake'
$$;
create function pg_temp.row_id(n int) returns uuid language sql as $$
  select ('16161616-1111-4000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;

select is(public.preview_worker_limit(), 2, 'the default bound is 2 workers awake');

-- a burst of 5 eligible rows: 5 jobs, 2 workers
insert into public.generations (id, user_id, type, status, asset_url)
select pg_temp.row_id(n), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b' || n || '.png'
  from generate_series(1, 5) n;
select is((select count(*)::int from public.preview_jobs where state = 'queued'), 5, 'a burst of 5 rows queues 5 jobs');
select is(pg_temp.wakes_sent(), 2, '… and sends 2 wake requests, not 5');
select is(public.preview_workers_awake(), 2, 'two workers awake');
select is(public.preview_jobs_due(10), 5, 'five jobs due');
select is(public.preview_jobs_due(3), 3, 'preview_jobs_due counts up to its limit');
select is(public.wake_preview_workers(), 0, 'no free place: nobody more is woken');

-- a worker answering its wake claims one job at a time; its claim is its sign of life
create temp table w as select min(id) as w1, max(id) as w2 from public.preview_worker_wakes;
select tests.travel(interval '20 seconds');
select is((select count(*)::int from public.claim_preview_jobs(null, 1, null, (select w1 from w))), 1, 'worker 1 claims one job');
select is((select seen_at from public.preview_worker_wakes where id = (select w1 from w)), now(), 'its wake is seen now');
select tests.travel(interval '10 seconds');
select is(public.preview_workers_awake(), 1,
  '30 s on: worker 1 (its job claimed 10 s ago, within the lease) is awake; worker 2, never heard of, no longer holds its place');
select is(public.wake_preview_workers(), 1, 'so one more is woken');
select is(pg_temp.wakes_sent(), 4, '… four requests in all: worker 1''s claim at 20 s had woken one too (worker 2, unanswered past preview_wake_timeout(), was presumed lost)');

-- a worker that ends (no due job it may take, its isolate spent) wakes a successor while due jobs remain
select is(public.end_preview_wake((select w1 from w)), 1, 'worker 1 ends: a successor is woken for the due jobs');
select ok(not exists (select 1 from public.preview_worker_wakes where id = (select w1 from w)), 'its wake is gone');
select is(public.preview_workers_awake(), 2, 'still two awake');
-- … and none when nothing is due
delete from public.preview_jobs;
select is(public.end_preview_wake((select max(id) from public.preview_worker_wakes)), 0, 'a worker ending with nothing due wakes nobody');

-- one wake per due job, not one per free place
select tests.travel(public.preview_wake_hold() + interval '1 second');
set local app.preview_worker_limit = '6';
select is(public.preview_workers_awake(), 0, 'nobody awake any more');
insert into public.generations (id, user_id, type, status, asset_url)
values (pg_temp.row_id(6), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b6.png');
select is(pg_temp.wakes_sent(), 6, 'one new job with six free places: one wake');
insert into public.generations (id, user_id, type, status, asset_url)
values (pg_temp.row_id(8), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b8.png');
insert into public.generations (id, user_id, type, status, asset_url)
values (pg_temp.row_id(9), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b9.png');
select is(pg_temp.wakes_sent(), 8, 'two more rows, one after the other: one wake each (three workers for three jobs)');

-- a row written with the trigger muted (as an old row is) has no job and wakes nobody: it is the
-- backfill's or the sweep's
create temp table before_muted as select pg_temp.wakes_sent() as n;
set local app.skip_preview_dispatch = on;
insert into public.generations (id, user_id, type, status, asset_url)
values (pg_temp.row_id(7), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b7.png');
set local app.skip_preview_dispatch = '';
select is(pg_temp.wakes_sent(), (select n from before_muted), 'a muted row wakes nobody');
select is(public.preview_jobs_due(10), 3, '… and has no job to wake anyone for');

-- wakes long past the hold are forgotten by the next wake
select tests.travel(public.preview_wake_hold() * 10);
select lives_ok($$select public.wake_preview_workers()$$, 'a later wake');
select is((select count(*)::int from public.preview_worker_wakes where coalesce(seen_at, sent_at) < now() - public.preview_wake_hold() * 10), 0,
  'forgets wakes older than ten holds');

-- a worker whose isolate died: holding no job it stops counting after the grace, not the hold;
-- holding one it counts while the job's lease runs, however long ago it claimed
delete from public.preview_worker_wakes;
insert into public.preview_worker_wakes (sent_at, seen_at) values (now() - interval '10 seconds', now() - interval '3 seconds');
select is(public.preview_workers_awake(), 0, 'a worker that answered and holds no job stops counting after preview_wake_grace()');
insert into public.preview_jobs (kind, generation_id, state, attempts, locked_by, locked_at, lease_until, dedupe_key)
select 'preview', pg_temp.row_id(1), 'running', 1, 'wake:' || w.id, now() - interval '50 seconds', now() + interval '5 seconds', 'test:16-long-job'
  from public.preview_worker_wakes w;
select is(public.preview_workers_awake(), 1, 'a worker holding a job counts while its lease runs (a job longer than the hold)');
update public.preview_jobs set lease_until = now() - interval '1 second' where dedupe_key = 'test:16-long-job';
select is(public.preview_workers_awake(), 0, '… and not once the lease ran out (its isolate died with the job)');

-- a wake whose request failed (the isolate crashed: pg_net recorded a 500) is not a worker on its way
delete from public.preview_jobs where dedupe_key = 'test:16-long-job';
delete from public.preview_worker_wakes;
insert into public.preview_worker_wakes (sent_at, request_id) values (now(), -16001), (now(), -16002);
insert into net._http_response (id, status_code, created) values (-16001, 500, now()), (-16002, 202, now());
select is(public.preview_workers_awake(), 1, 'a wake whose request failed does not count as awake; one answered 202 does until it claims');
select tests.travel(public.preview_wake_timeout() + interval '1 second');
select is(public.preview_workers_awake(), 1, 'past pg_net''s timeout the one answered 202 still counts (it may wait in its isolate behind a job)');
insert into public.preview_worker_wakes (sent_at, request_id) values (now() - public.preview_wake_timeout() - interval '1 second', -16003);
select is(public.preview_workers_awake(), 1, '… but one never answered by then was lost in flight and does not');
select is(public.preview_workers_idle(), 1, '… nor as idle');

-- a waker that finds the wake lock held for longer than preview_wake_lock_wait() gives up, and
-- queues a {"decide": true} request (sent when it commits; decide_preview_wakes then waits for the
-- lock in a worker's connection): another session, while this transaction holds the lock
select ok(pg_try_advisory_xact_lock(hashtext('public.wake_preview_workers')), 'this transaction holds the wake lock');
select format('host=127.0.0.1 port=%s dbname=%s user=postgres password=postgres',
              current_setting('port'), current_database()) as conninfo \gset
select dblink_connect('waker', :'conninfo');
select dblink_exec('waker', 'begin');
create temp table decides_before as
  select * from dblink('waker', $q$select count(*)::int from net.http_request_queue r
                                   where convert_from(r.body, 'UTF8')::jsonb = '{"decide": true}'$q$) as t(n int);
select results_eq(
  $$select * from dblink('waker', $q$select public.wake_preview_workers(), clock_timestamp() - now() >= public.preview_wake_lock_wait()$q$)
      as t(woken int, waited boolean)$$,
  $$values (0, true)$$,
  'another session waits preview_wake_lock_wait(), gives up and wakes nobody');
select results_eq(
  $$select * from dblink('waker', $q$select count(*)::int from net.http_request_queue r
                                   where convert_from(r.body, 'UTF8')::jsonb = '{"decide": true}'$q$) as t(n int)$$,
  $$select n + 1 from decides_before$$,
  '… and queues one decide request in its transaction');
select dblink_exec('waker', 'rollback');
select dblink_disconnect('waker');

select * from finish();
rollback;
