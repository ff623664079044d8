-- Baseline 8/10, cron: every pg_cron job of the system, in one place. pg_cron replaces the server
-- crontab. Jobs are (re)installed by name: cron.schedule with a job name updates the existing job
-- of that name (pg_cron >= 1.3; Debian's 1.4.2 here, 1.6 on Supabase), so re-running this file
-- changes nothing.
--
-- To change a schedule on a running project (no migration needed):
--   select cron.alter_job((select jobid from cron.job where jobname = 'preview-sweep'),
--                         schedule := '*/5 * * * *');
-- Hosted pg_cron 1.6 also accepts '30 seconds'; 1.4.2 (the local stack) only minute-level syntax.

create extension if not exists pg_cron;

-- pg_net keeps responses (Supabase trims them after 6 h); cron.job_run_details is never trimmed by
-- pg_cron; KIE callback receipts only matter inside the signature window (300 s); terminal job
-- failures are kept for doctor and the stats for 30 days (the row keeps its own failure).
-- SECURITY DEFINER: needs delete rights on net and cron tables.
create or replace function public.cron_trim_history() returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  delete from net._http_response where created < now() - interval '6 hours';
  delete from cron.job_run_details where end_time < now() - interval '7 days';
  delete from public.kie_callback_receipts where received_at < now() - interval '1 day';
  delete from public.preview_jobs where state = 'failed' and updated_at < now() - interval '30 days';
  -- checks of tasks that are no longer running
  delete from public.kie_task_checks c
   where not exists (select 1 from public.generations g
                      where g.task_id = c.task_id and public.kie_task_running(g.status::text));
end
$$;
comment on function public.cron_trim_history() is
  'pg_cron job net-response-trim: net._http_response older than 6 h, cron.job_run_details older than 7 days, KIE callback receipts older than a day, terminal job failures older than 30 days, checks of finished tasks.';
revoke all on function public.cron_trim_history() from public, anon, authenticated;
grant execute on function public.cron_trim_history() to service_role;

-- Lost KIE callbacks: tasks past KIE's retention failed, kie-sync asked to poll the rest.
select cron.schedule('kie-sync-pending', '* * * * *', 'select public.cron_kie_sync_pending()');
-- Dead workers' jobs retried or failed, rows waiting without a job queued, workers woken.
select cron.schedule('preview-sweep', '* * * * *', 'select public.preview_sweep()');
select cron.schedule('net-response-trim', '17 * * * *', 'select public.cron_trim_history()');
