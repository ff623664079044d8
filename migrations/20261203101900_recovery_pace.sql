-- Recovery pace (issue 25): what a fault costs is the wait for the next sweep and for the next
-- pending sync, so both come sooner.
--
-- 1. The sweep every 10 seconds where pg_cron can (1.5 and later know "N seconds" schedules; the
--    platform's is 1.6.4, supabase/postgres nix/ext/pg_cron.nix). A lost wake, a dead worker's
--    job (due 30 s after its last heartbeat) or a retry whose backoff ended then waits at most
--    10 s for a worker, not up to a minute. pg_cron 1.4 (Debian 12's, the local stack's; older
--    projects until `alter extension pg_cron update`) keeps the minute, and doctor says so.
-- 2. The pending sync asks KIE about a task 10 s after it was created, not 30 s: a lost callback
--    of a fast task (KIE's photo models answer in 5–30 s) waited a whole extra minute when the
--    minute's run found its row 10–30 s old. A task asked too early costs one record-info call.

-- The version of pg_cron as numbers ('1.4-1' → {1,4,1}), null when it is not installed.
create or replace function public.pg_cron_version() returns int[]
language sql stable
set search_path = ''
as $$
  select string_to_array(regexp_replace(e.extversion, '[^0-9]+', '.', 'g'), '.')::int[]
    from pg_catalog.pg_extension e where e.extname = 'pg_cron'
$$;
comment on function public.pg_cron_version() is
  'The installed pg_cron''s version as numbers (1.4-1 → {1,4,1}); null when not installed. For preview_sweep_schedule() and doctor.';

-- Every 10 seconds where pg_cron knows second schedules (1.5+), else every minute.
create or replace function public.preview_sweep_schedule(p_version int[] default public.pg_cron_version())
returns text
language sql immutable
set search_path = ''
as $$
  select case when p_version >= array[1, 5] then '10 seconds' else '* * * * *' end
$$;
comment on function public.preview_sweep_schedule(int[]) is
  'The preview-sweep cron schedule for a pg_cron version: ''10 seconds'' from 1.5 on (sub-minute schedules), else every minute.';

do $$
begin
  perform cron.schedule('preview-sweep', public.preview_sweep_schedule(), 'select public.preview_sweep()');
end
$$;

create or replace function public.pending_kie_tasks(
  p_limit int default 50,
  p_min_age interval default '10 seconds'
) returns table (id uuid, task_id text, model text, type text, created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  select g.id, g.task_id, public.generation_model(g), g.type::text, g.created_at
    from public.generations g
    left join public.kie_task_checks c on c.task_id = g.task_id
   where g.task_id is not null
     and public.kie_task_running(g.status::text)
     and g.created_at <= now() - p_min_age
     and g.created_at >= now() - public.kie_task_retention()
   order by c.checked_at nulls first, g.created_at desc, g.id
   limit greatest(coalesce(p_limit, 50), 0)
$$;
comment on function public.pending_kie_tasks(int, interval) is
  'Tasks still running at KIE, older than p_min_age (10 s) and inside KIE''s retention: never checked first (newest first), then least recently checked. model is generation_model(). SECURITY DEFINER: service only.';

revoke all on function public.pg_cron_version(), public.preview_sweep_schedule(int[]) from public, anon, authenticated;
grant execute on function public.pg_cron_version(), public.preview_sweep_schedule(int[]) to service_role;
