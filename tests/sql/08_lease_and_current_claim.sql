-- One lease (preview_lease(), overridable per database with app.preview_lease) used by the claim,
-- its expiry and the current-claim check (preview_job_is_current) workers make before uploads;
-- an expired lease is due work that the next claim takes over. The worker bound's settings.
begin;
select plan(21);

set local app.skip_preview_dispatch = 'on';
delete from public.preview_jobs;
select tests.create_user('lease@example.test', '33333333-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, task_id, asset_url, created_at) values
  ('cccccccc-0000-4000-8000-000000000001', '33333333-0000-4000-8000-000000000001', 'photo', 'success', 'lease-1', 'http://kie.test/l.png', now() - interval '1 day'),
  ('cccccccc-0000-4000-8000-000000000002', '33333333-0000-4000-8000-000000000001', 'photo', 'success', 'lease-2', 'http://kie.test/m.png', now() - interval '1 day');
select public.queue_preview('cccccccc-0000-4000-8000-000000000001') as job \gset

set local app.preview_lease = '';
select is(public.preview_lease(), interval '2 minutes', 'the lease is 2 minutes by default');
set local app.preview_lease = '15 seconds';
select is(public.preview_lease(), interval '15 seconds', 'app.preview_lease overrides it');
set local app.preview_worker_limit = '';
select is(public.preview_worker_limit(), 2, 'two workers awake at once by default');
set local app.preview_worker_limit = '6';
select is(public.preview_worker_limit(), 6, 'app.preview_worker_limit overrides it');
select is(public.preview_wake_hold(), interval '30 seconds', 'a wake holds its place 30 s without a sign of life');

select results_eq($$select attempt, lease_ms from public.claim_preview_jobs(array['preview'], 1, 'cccccccc-0000-4000-8000-000000000001')$$,
  $$values (1, 15000)$$, 'attempt 1 claims the job for the lease (lease_ms)');
select is((select lease_until - locked_at from public.preview_jobs where id = :job), interval '15 seconds', 'lease_until = claim + preview_lease()');
select ok(public.preview_job_is_current(:job, 1), 'attempt 1 holds the claim');

-- 10 s into a 15 s lease: nobody takes it over, nothing expires it, it is not due.
select tests.travel(interval '10 seconds');
select ok(public.preview_job_is_current(:job, 1), 'inside the lease attempt 1 is current');
select is(public.preview_jobs_due(10), 0, 'a running job inside its lease is not due work');
select is_empty($$select * from public.claim_preview_jobs(array['preview'], 1, 'cccccccc-0000-4000-8000-000000000001')$$, 'inside the lease the job is not claimable');
select is(public.expire_preview_job_leases(), 0, 'nor expired');
select lives_ok($$select public.preview_sweep(100)$$, 'the sweep runs');
select is((select state from public.preview_jobs where id = :job), 'running', 'and leaves it running');

-- Past the same lease: attempt 1 is no longer current at once (before anyone expires it), the job
-- is due work, and the next claim takes it over as attempt 2.
select tests.travel(interval '6 seconds');
select ok(not public.preview_job_is_current(:job, 1), 'past the lease attempt 1 is not current (it must not upload)');
select is(public.preview_jobs_due(10), 1, 'a running job past its lease is due work (workers are woken for it)');
select results_eq($$select attempt from public.claim_preview_jobs(array['preview'], 1, 'cccccccc-0000-4000-8000-000000000001')$$,
  $$values (2)$$, 'the next claim expires the lease and takes it over (attempt 2)');
select results_eq($$select expired_leases, last_error_code from public.preview_jobs where id = $$ || :job,
  $$values (1, 'TIMEOUT'::text)$$, '… counting the dead worker');
select ok(public.preview_job_is_current(:job, 2) and not public.preview_job_is_current(:job, 1), 'attempt 2 holds it, attempt 1 does not');

-- A claim may ask for another lease (a long job).
select public.queue_preview('cccccccc-0000-4000-8000-000000000002') as job2 \gset
select results_eq($$select attempt, lease_ms from public.claim_preview_jobs(array['preview'], 1, 'cccccccc-0000-4000-8000-000000000002', null, interval '5 minutes')$$,
  $$values (1, 300000)$$, 'p_lease overrides the lease of one claim');
select tests.travel(interval '1 minute');
select ok(public.preview_job_is_current(:job2, 1), '… and the job stays current for it');

select * from finish();
rollback;
