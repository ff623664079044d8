-- pg_cron jobs exist with their schedules; preview_stats.
begin;
select * from no_plan();

select has_extension('pg_cron', 'pg_cron is installed');
select results_eq(
  $$select jobname::text collate "default", schedule collate "default", command collate "default", active from cron.job
     where jobname in ('kie-sync-pending', 'preview-sweep', 'net-response-trim') order by jobname$$,
  $$values ('kie-sync-pending'::text, '* * * * *'::text, 'select public.cron_kie_sync_pending()'::text, true),
           ('net-response-trim', '17 * * * *', 'select public.cron_trim_history()', true),
           ('preview-sweep', '* * * * *', 'select public.dispatch_preview_sweep()', true)$$,
  'the three cron jobs are scheduled');
select is((select count(*)::int from cron.job where jobname in ('kie-sync-pending', 'preview-sweep', 'net-response-trim')), 3,
  'each job exists once');

-- trim
insert into net._http_response (id, status_code, created) values (-1, 200, now() - interval '7 hours'), (-2, 200, now());
select lives_ok('select public.cron_trim_history()', 'cron_trim_history runs');
select results_eq('select id from net._http_response where id in (-1, -2)', 'values (-2::bigint)', 'responses older than 6 h are trimmed');

-- preview_stats
set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values ('77777777-0000-4000-8000-000000000001', 'stats@example.test');
create temp table stats_before as select * from public.preview_stats;
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

select * from finish();
rollback;
