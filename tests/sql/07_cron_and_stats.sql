-- pg_cron jobs exist with their schedules (and the pre-baseline ones are gone); the hourly trim;
-- the work as the stats see it: preview_stats (rows), preview_job_stats (jobs of every kind),
-- preview_coverage (every row once, with no_job and stale_lease).
begin;
select plan(21);
set local app.preview_lease = '15 seconds';

select has_extension('pg_cron', 'pg_cron is installed');
select results_eq(
  $$select jobname::text collate "default", schedule collate "default", command collate "default", active from cron.job
     where jobname in ('kie-sync-pending', 'preview-sweep', 'net-response-trim') order by jobname$$,
  $$values ('kie-sync-pending'::text, '* * * * *'::text, 'select public.cron_kie_sync_pending()'::text, true),
           ('net-response-trim', '17 * * * *', 'select public.cron_trim_history()', true),
           ('preview-sweep', '* * * * *', 'select public.preview_sweep()', true)$$,
  'the three cron jobs are scheduled');
select is((select count(*)::int from cron.job where jobname in ('kie-sync-pending', 'preview-sweep', 'net-response-trim')), 3,
  'each job exists once');
select is_empty($$select jobname from cron.job where jobname in ('preview-cleanup', 'animated-sweep')$$,
  'the pre-baseline jobs are gone (deletions and clips are jobs, woken like the posters)');

-- ---- trim
delete from public.preview_jobs;
insert into net._http_response (id, status_code, created) values (-1, 200, now() - interval '7 hours'), (-2, 200, now());
insert into public.preview_jobs (kind, payload, dedupe_key, state, last_error_code, last_error) values
  ('delete_object', '{"path": "trim/old-failure"}', 'delete_object:trim/old-failure', 'failed', 'STORAGE_ERROR', 'x'),
  ('delete_object', '{"path": "trim/old-queued"}', 'delete_object:trim/old-queued', 'queued', null, null);
select tests.travel(interval '31 days');
insert into public.preview_jobs (kind, payload, dedupe_key, state, last_error_code, last_error) values
  ('delete_object', '{"path": "trim/new-failure"}', 'delete_object:trim/new-failure', 'failed', 'STORAGE_ERROR', 'x');
insert into public.kie_task_checks (task_id) values ('trim-finished');
select lives_ok('select public.cron_trim_history()', 'cron_trim_history runs');
select results_eq('select id from net._http_response where id in (-1, -2)', 'values (-2::bigint)', 'responses older than 6 h are trimmed');
select results_eq($$select payload ->> 'path' from public.preview_jobs order by 1$$,
  $$values ('trim/new-failure'::text), ('trim/old-queued')$$,
  'terminal job failures older than 30 days are trimmed; younger ones and live jobs stay');
select is_empty($$select 1 from public.kie_task_checks where task_id = 'trim-finished'$$, 'checks of tasks no longer running are trimmed');

-- ---- preview_stats (rows)
delete from public.preview_jobs;
set local app.skip_preview_dispatch = 'on';
select tests.create_user('stats@example.test', '77777777-0000-4000-8000-000000000001') is not null as created \gset
create temp table stats_before as select * from public.preview_stats;
create temp table coverage_before as select * from public.preview_coverage;
insert into public.generations (user_id, type, status, asset_url, preview_status, preview_error_code, updated_at) values
  ('77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://a', 'failed', 'SOURCE_NOT_FOUND', now() - interval '1 hour'),
  ('77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://a', 'failed', 'SOURCE_NOT_FOUND', now()),
  ('77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://a', 'failed', 'DECODE_FAILED', now());
select is(
  (select total - coalesce((select total from stats_before where type = 'photo' and preview_status = 'failed'), 0)
     from public.preview_stats where type = 'photo' and preview_status = 'failed'),
  3::bigint, 'preview_stats counts by type and status');
select ok((select oldest_waiting_age >= interval '1 hour' from public.preview_stats where type = 'photo' and preview_status = 'failed'),
  'preview_stats shows the oldest waiting age');
select ok((select (failures_by_code ->> 'SOURCE_NOT_FOUND')::int >= 2 and (failures_by_code ->> 'DECODE_FAILED')::int >= 1
             from public.preview_stats where type = 'photo' and preview_status = 'failed'),
  'preview_stats shows failures by error code');

-- ---- preview_job_stats (jobs of every kind)
insert into public.generations (id, user_id, type, status, asset_url, preview_status, poster_path, updated_at) values
  ('77777777-aaaa-4000-8000-000000000001', '77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://s/1.png', 'none', null, now() - interval '1 hour'),
  ('77777777-aaaa-4000-8000-000000000002', '77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://s/2.png', 'none', null, now() - interval '1 hour'),
  ('77777777-aaaa-4000-8000-000000000003', '77777777-0000-4000-8000-000000000001', 'video', 'success', 'http://s/3.mp4', 'ready', 'p', now()),
  ('77777777-aaaa-4000-8000-000000000004', '77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://s/4.png', 'none', null, now()),
  ('77777777-aaaa-4000-8000-000000000005', '77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://s/5.png', 'processing', null, now() - interval '1 hour'),
  ('77777777-aaaa-4000-8000-000000000006', '77777777-0000-4000-8000-000000000001', 'photo', 'success', 'http://s/6.png', 'failed', null, now());
select public.queue_preview('77777777-aaaa-4000-8000-000000000001') as job1 \gset
select public.queue_preview('77777777-aaaa-4000-8000-000000000002') as job2 \gset
select public.queue_animated_preview('77777777-aaaa-4000-8000-000000000003') as job3 \gset
select public.queue_object_deletions(array['stats/a', 'stats/b'], null, 'orphan', interval '1 minute') as n_deletions \gset
select tests.travel(interval '10 minutes');
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '77777777-aaaa-4000-8000-000000000001')), 1, 'one preview claimed');
select is((select attempt from public.claim_preview_jobs(array['animated'], 1, '77777777-aaaa-4000-8000-000000000003')), 1, 'the clip claimed');
select is(public.fail_preview_job(:job3, 1, 'UNSUPPORTED_FORMAT', 'Not a video', false), 'failed', 'the clip fails terminally');
select public.queue_object_deletions(array['stats/c'], null, 'orphan', interval '1 hour') as n_later \gset
select tests.travel(public.preview_lease() + interval '1 second');
select results_eq(
  $$select kind, state, total, due, expired_leases, oldest_age >= interval '10 minutes', failures_by_code from public.preview_job_stats order by kind, state$$,
  $$values ('animated'::text, 'failed'::text, 1::bigint, 0::bigint, 0::bigint, true, '{"UNSUPPORTED_FORMAT": 1}'::jsonb),
           ('delete_object', 'queued', 3, 2, 0, true, null),
           ('preview', 'queued', 1, 1, 0, true, null),
           ('preview', 'running', 1, 0, 1, true, null)$$,
  'preview_job_stats: jobs by kind and state, due now, running past their lease, age, terminal failures by code');

-- ---- preview_coverage: every row once; a waiting row without a job, a processing row without a live lease
create function pg_temp.coverage_added(p_state text, p_reason text) returns bigint language sql as $$
  select coalesce((select sum(total) from public.preview_coverage where type = 'photo' and state = p_state and reason is not distinct from p_reason), 0)
       - coalesce((select sum(total) from coverage_before where type = 'photo' and state = p_state and reason is not distinct from p_reason), 0)
$$;
select is(pg_temp.coverage_added('none', 'no_job'), 1::bigint, 'coverage: a row waiting without a job is no_job (row 4)');
select is(pg_temp.coverage_added('none', null), 1::bigint, 'coverage: a row whose job waits has no reason (row 2)');
select is(pg_temp.coverage_added('processing', 'stale_lease'), 2::bigint,
  'coverage: processing without a live lease is stale_lease (row 1: its worker''s lease ran out; row 5: an earlier system''s)');
select is(pg_temp.coverage_added('failed', 'LEGACY_FAILURE'), 1::bigint, 'coverage: a failed row without a code is an earlier system''s (LEGACY_FAILURE)');
select is(pg_temp.coverage_added('failed', 'SOURCE_NOT_FOUND'), 2::bigint, 'coverage: a failed row by its code');
select is((select sum(total)::int from public.preview_coverage), (select count(*)::int from public.generations),
  'preview_coverage counts every row of the table once');

select * from finish();
rollback;
