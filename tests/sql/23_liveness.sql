-- Liveness instead of fixed waits (migrations/20261203101700_liveness.sql): a claim is leased for
-- the short heartbeat lease (preview_heartbeat_lease(), 30 s), and its worker proves it is alive by
-- extending it (extend_preview_job_lease, fenced by the attempt) up to its claim time +
-- preview_lease() (the hard cap: a worker in a live loop still loses the job). A dead worker stops
-- extending: its job is due again, and taken over by the next claim, within the heartbeat lease
-- instead of the two-minute lease; the dead-worker accounting (TIMEOUT, then WORKER_LIMIT) is the
-- same. A worker holding a job counts as awake while it heartbeats, and stops counting when its
-- heartbeat lease runs out. Time passes through tests.travel (tests/sql/helpers/tests_schema.sql).
begin;
select plan(45);

-- the defaults, whatever the stack set (npm test shortens the lease to 15 s)
set local app.preview_lease = '';
set local app.preview_heartbeat_lease = '';
set local app.preview_worker_limit = '';
set local app.skip_preview_dispatch = 'on';
delete from public.preview_jobs;
delete from public.preview_worker_wakes;
delete from vault.secrets where name in ('project_url', 'preview_dispatch_secret');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
select tests.create_user('liveness@example.test', '23232323-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, task_id, asset_url)
select ('23232323-aaaa-4000-8000-00000000000' || n)::uuid, '23232323-0000-4000-8000-000000000001', 'photo', 'success',
       'live-' || n, 'https://kie.test/live' || n || '.png'
  from generate_series(1, 4) n;

-- ---- the rule
select is(public.preview_heartbeat_lease(), interval '30 seconds', 'the heartbeat lease is 30 s by default');
select is(public.preview_lease(), interval '2 minutes', '… under the 2-minute lease, now the hard cap');
set local app.preview_heartbeat_lease = '5 seconds';
select is(public.preview_heartbeat_lease(), interval '5 seconds', 'app.preview_heartbeat_lease overrides it');
set local app.preview_heartbeat_lease = '0';
select is(public.preview_heartbeat_lease(), interval '1 second', '… never under a second');
set local app.preview_heartbeat_lease = '';
set local app.preview_lease = '15 seconds';
select is(public.preview_heartbeat_lease(), interval '15 seconds', 'never longer than preview_lease() (a stack that shortens the lease)');
set local app.preview_lease = '';

-- ---- a claim takes the heartbeat lease; heartbeats extend it, fenced by the attempt
create temp table w (id bigint);
with i as (insert into public.preview_worker_wakes default values returning id) insert into w select id from i;
select public.queue_preview('23232323-aaaa-4000-8000-000000000001') as job \gset
select results_eq($$select attempt, lease_ms from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000001', (select id from w))$$,
  $$values (1, 30000)$$, 'a claim is leased for the heartbeat lease (lease_ms 30000)');
select is((select lease_until - locked_at from public.preview_jobs where id = :job), interval '30 seconds', 'lease_until = claim + preview_heartbeat_lease()');

select tests.travel(interval '20 seconds');
select ok(public.extend_preview_job_lease(:job, 1), '20 s on, the heartbeat of attempt 1: still held');
select is((select lease_until from public.preview_jobs where id = :job), now() + interval '30 seconds', '… its lease moved to now() + the heartbeat lease');
select ok(not public.extend_preview_job_lease(:job, 2), 'a heartbeat of another attempt is refused (fenced)');
select ok(not public.extend_preview_job_lease(:job, 0), '… and of an earlier one');
select ok(not public.extend_preview_job_lease(-1, 1), '… and of a job that does not exist');
select is((select lease_until from public.preview_jobs where id = :job), now() + interval '30 seconds', '… changing nothing');

-- heartbeats keep a live worker's job past the heartbeat lease: not expired, not due, not claimable
select tests.travel(interval '20 seconds');
select ok(public.extend_preview_job_lease(:job, 1), '40 s on, the next heartbeat: still held');
select tests.travel(interval '20 seconds');
select ok(public.extend_preview_job_lease(:job, 1), '60 s on (twice the heartbeat lease): still held');
select ok(public.preview_job_is_current(:job, 1), '… current');
select is(public.expire_preview_job_leases(), 0, '… not expired');
select is(public.preview_jobs_due(10), 0, '… not due');
select is_empty($$select * from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000001')$$, '… not claimable');
select is(public.preview_workers_awake(), 1, 'its worker (answered 60 s ago, long past the wake hold and the grace) counts as awake while it heartbeats');

-- ---- the hard cap: a worker that keeps heartbeating but never finishes still loses the job
select tests.travel(interval '20 seconds');
select ok(public.extend_preview_job_lease(:job, 1), '80 s on: still held');
select tests.travel(interval '20 seconds');
select ok(public.extend_preview_job_lease(:job, 1), '100 s on: still held …');
select is((select lease_until - locked_at from public.preview_jobs where id = :job), interval '2 minutes',
  '… but extended only to its claim + preview_lease() (the hard cap), not now() + 30 s');
select tests.travel(interval '21 seconds');
select ok(not public.extend_preview_job_lease(:job, 1), 'past the cap the heartbeat is refused: the job is lost');
select ok(not public.preview_job_is_current(:job, 1), '… attempt 1 is no longer current');
select is(public.preview_workers_awake(), 0, '… and its worker no longer counts as awake');
select results_eq($$select attempt from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000001')$$,
  $$values (2)$$, 'the next claim takes it over (attempt 2)');
select results_eq($$select expired_leases, last_error_code from public.preview_jobs where id = $$ || :job,
  $$values (1, 'TIMEOUT'::text)$$, '… counted as a dead worker (TIMEOUT)');
select is((select last_error from public.preview_jobs where id = :job),
  'The worker of attempt 1 did not finish within its lease: still working 00:02:00 after its claim (the cap)',
  '… saying it hit the cap');
select ok(public.complete_preview_job(:job, 2, '{"path": "23232323-0000-4000-8000-000000000001/previews/1.webp", "width": 1, "height": 1, "thumbhash": "t"}'),
  'attempt 2 completes it');

-- ---- a dead worker: its heartbeat lease runs out, and the next claim takes the job over
select public.queue_preview('23232323-aaaa-4000-8000-000000000002') as dead \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000002', (select id from w))), 1,
  'a worker claims another job, then dies (no heartbeat)');
select is(public.preview_workers_awake(), 1, 'while its lease runs it counts as awake');
select tests.travel(interval '29 seconds');
select ok(public.preview_job_is_current(:dead, 1), '29 s on it still holds the job');
select tests.travel(interval '2 seconds');
select ok(not public.preview_job_is_current(:dead, 1), '31 s on (past the heartbeat lease, long before 2 minutes) it does not');
select ok(not public.extend_preview_job_lease(:dead, 1), '… and a late heartbeat cannot take it back, even before anyone expired it');
select is(public.preview_jobs_due(10), 1, '… its job is due work');
select is(public.preview_workers_awake(), 0, '… and its worker no longer holds a place');
select results_eq($$select attempt from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000002')$$,
  $$values (2)$$, 'the next claim takes it over (attempt 2), 31 s after the claim');
select results_eq($$select expired_leases, last_error_code, last_error from public.preview_jobs where id = $$ || :dead,
  $$values (1, 'TIMEOUT'::text, 'The worker of attempt 1 did not finish within its lease: it stopped renewing it (heartbeat lease 00:00:30)'::text)$$,
  '… counting the dead worker (TIMEOUT, retryable), saying it stopped renewing its lease');
select tests.travel(interval '31 seconds');
select results_eq($$select count(*)::int from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000002')$$,
  $$values (0)$$, 'attempt 2 dies too: the claim finds nothing to take …');
select results_eq($$select state, last_error_code from public.preview_jobs where id = $$ || :dead,
  $$values ('failed'::text, 'WORKER_LIMIT'::text)$$, '… the second dead worker is WORKER_LIMIT, terminal, as before');

-- ---- a claim with a longer lease of its own keeps it: a heartbeat never shortens a lease
select public.queue_preview('23232323-aaaa-4000-8000-000000000003') as long \gset
select results_eq($$select lease_ms from public.claim_preview_jobs(array['preview'], 1, '23232323-aaaa-4000-8000-000000000003', null, interval '5 minutes')$$,
  $$values (300000)$$, 'a claim with p_lease 5 minutes');
select ok(public.extend_preview_job_lease(:long, 1), '… its heartbeat is taken');
select is((select lease_until - locked_at from public.preview_jobs where id = :long), interval '5 minutes', '… and leaves the longer lease as it was');

-- ---- only the service runs it
select ok(has_function_privilege('service_role', 'public.extend_preview_job_lease(bigint, int)', 'execute')
          and not has_function_privilege('anon', 'public.extend_preview_job_lease(bigint, int)', 'execute')
          and not has_function_privilege('authenticated', 'public.extend_preview_job_lease(bigint, int)', 'execute'),
  'extend_preview_job_lease is the service role''s only');

select * from finish();
rollback;
