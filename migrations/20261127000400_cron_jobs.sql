-- pg_cron replaces the server crontab. Jobs are (re)installed by name: cron.schedule with a
-- job name updates the existing job of that name (pg_cron >= 1.3; Debian's 1.4.2 here,
-- 1.6 on Supabase), so re-running this file changes nothing.
--
-- To change a schedule on a running project (no migration needed):
--   select cron.alter_job((select jobid from cron.job where jobname = 'preview-sweep'),
--                         schedule := '*/5 * * * *');
-- or re-run the cron.schedule line below with another schedule. Hosted pg_cron 1.6 also
-- accepts '30 seconds'; 1.4.2 (the local stack) only minute-level cron syntax.

create extension if not exists pg_cron;

-- Lost KIE callbacks: finish tasks past KIE's retention, then ask kie-sync to poll KIE's
-- record-info for tasks still pending. SECURITY DEFINER: runs from pg_cron and reads the
-- vault (via invoke_edge_function).
create or replace function public.cron_kie_sync_pending() returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  perform public.fail_expired_kie_tasks();
  return public.invoke_edge_function('kie-sync', '{"mode": "pending"}'::jsonb, 30000);
end
$$;
comment on function public.cron_kie_sync_pending() is
  'pg_cron job kie-sync-pending: fail_expired_kie_tasks(), then POST {"mode":"pending"} to kie-sync. Returns the pg_net request id (null when vault is not configured).';

-- pg_net keeps responses (Supabase trims them after 6 h); cron.job_run_details is never
-- trimmed by pg_cron; KIE callback receipts only matter inside the signature window (300 s).
-- SECURITY DEFINER: needs delete rights on net and cron tables.
create or replace function public.cron_trim_history() returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  delete from net._http_response where created < now() - interval '6 hours';
  delete from cron.job_run_details where end_time < now() - interval '7 days';
  -- the receipts' table arrives in a later migration (security_hardening)
  if to_regclass('public.kie_callback_receipts') is not null then
    delete from public.kie_callback_receipts where received_at < now() - interval '1 day';
  end if;
  -- dispatch records past their use (the sweep looks back preview_redispatch_after())
  delete from public.preview_dispatches where dispatched_at < now() - interval '1 day';
  -- checks of tasks that are no longer running
  delete from public.kie_task_checks c
   where not exists (select 1 from public.generations g
                      where g.task_id = c.task_id and public.kie_task_running(g.status::text));
end
$$;
comment on function public.cron_trim_history() is
  'pg_cron job net-response-trim: net._http_response older than 6 h, cron.job_run_details older than 7 days, KIE callback receipts older than a day.';

revoke all on function public.cron_kie_sync_pending() from public, anon, authenticated;
revoke all on function public.cron_trim_history() from public, anon, authenticated;
grant execute on function public.cron_kie_sync_pending(), public.cron_trim_history() to service_role;

select cron.schedule('kie-sync-pending', '* * * * *', 'select public.cron_kie_sync_pending()');
select cron.schedule('preview-sweep', '* * * * *', 'select public.dispatch_preview_sweep()');
select cron.schedule('net-response-trim', '17 * * * *', 'select public.cron_trim_history()');
