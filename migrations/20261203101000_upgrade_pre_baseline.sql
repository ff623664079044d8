-- Baseline 10/10, upgrade: a database that ran this system before the baseline (its state kept in
-- generations' own columns, a deletion queue and dispatch tables) moves to the job model without
-- losing or redoing work, then loses the old objects. On a database without them (a fresh project,
-- a project adopting this system) every step finds nothing. Re-runnable: the second run finds the
-- old objects gone.
--
--   processing, claimed by a worker of ours  → a running job under the same lease and attempt
--   failed, a retry scheduled                → a queued job due then (the row: none, code kept)
--   failed, terminal; ready                  → nothing (the row is the result)
--   none                                     → nothing: the sweep queues the rows of the last day,
--                                              the backfill the rest, as before
--   animated clip asked for / running / due  → an animated job, the same way
--   a queued object deletion                 → a delete_object job, due when it was
-- Attempts are carried over (capped one under the attempt cap, so a carried job keeps one try).

-- The pre-baseline triggers and cron jobs first: they call functions that go below.
drop trigger if exists generations_dispatch_preview on public.generations;
drop trigger if exists generations_queue_object_deletions on public.generations;
drop trigger if exists generations_dispatch_cleanup on public.generations;
do $$
begin
  perform cron.unschedule(j.jobname) from cron.job j where j.jobname in ('preview-cleanup', 'animated-sweep');
end
$$;

do $$
declare
  v_has_preview_columns boolean := exists (select 1 from information_schema.columns
    where table_schema = 'public' and table_name = 'generations' and column_name = 'preview_started_at');
  v_has_animated_columns boolean := exists (select 1 from information_schema.columns
    where table_schema = 'public' and table_name = 'generations' and column_name = 'animated_started_at');
  v_cap int := public.preview_max_attempts() - 1;
begin
  -- the moves write the rows' states themselves: the enqueue trigger stays out of it
  perform set_config('app.skip_preview_dispatch', 'on', true);

  if v_has_preview_columns then
    execute format($sql$
      insert into public.preview_jobs (kind, generation_id, state, attempts, expired_leases, locked_by, locked_at,
                                       lease_until, run_at, dedupe_key, last_error_code)
      select 'preview', g.id, 'running', least(greatest(g.preview_attempts, 1), %1$s), g.preview_expired_leases,
             'pre-baseline', g.preview_started_at, g.preview_started_at + public.preview_lease(), g.preview_started_at,
             public.preview_job_dedupe_key('preview', g.id, '{}'), g.preview_error_code
        from public.generations g
       where g.preview_status = 'processing' and g.preview_started_at is not null
      on conflict (dedupe_key) where state in ('queued', 'running') do nothing$sql$, v_cap);

    execute format($sql$
      with moved as (
        insert into public.preview_jobs (kind, generation_id, state, attempts, expired_leases, run_at, dedupe_key,
                                         last_error_code, last_error)
        select 'preview', g.id, 'queued', least(g.preview_attempts, %1$s), g.preview_expired_leases, g.preview_next_attempt_at,
               public.preview_job_dedupe_key('preview', g.id, '{}'), g.preview_error_code, g.error
          from public.generations g
         where g.preview_status = 'failed' and g.preview_next_attempt_at is not null
        on conflict (dedupe_key) where state in ('queued', 'running') do nothing
        returning generation_id)
      update public.generations g set preview_status = 'none', error = null
        from moved where g.id = moved.generation_id$sql$, v_cap);
  end if;

  if v_has_animated_columns then
    execute format($sql$
      insert into public.preview_jobs (kind, generation_id, state, attempts, locked_by, locked_at, lease_until, run_at, dedupe_key)
      select 'animated', g.id, 'running', least(greatest(g.animated_attempts, 1), %1$s), 'pre-baseline',
             g.animated_started_at, g.animated_started_at + public.preview_lease(), g.animated_started_at,
             public.preview_job_dedupe_key('animated', g.id, '{}')
        from public.generations g
       where g.animated_status = 'processing' and g.animated_started_at is not null
      on conflict (dedupe_key) where state in ('queued', 'running') do nothing$sql$, v_cap);

    execute format($sql$
      with moved as (
        insert into public.preview_jobs (kind, generation_id, state, attempts, run_at, dedupe_key, last_error_code)
        select 'animated', g.id, 'queued', least(g.animated_attempts, %1$s),
               case when g.animated_status = 'failed' then g.animated_next_attempt_at else now() end,
               public.preview_job_dedupe_key('animated', g.id, '{}'), g.animated_error_code
          from public.generations g
         where g.animated_status = 'none'
            or (g.animated_status = 'failed' and g.animated_next_attempt_at is not null)
        on conflict (dedupe_key) where state in ('queued', 'running') do nothing
        returning generation_id)
      update public.generations g set animated_status = 'none'
        from moved where g.id = moved.generation_id and g.animated_status <> 'none'$sql$, v_cap);
  end if;

  if to_regclass('public.preview_object_deletions') is not null then
    execute format($sql$
      insert into public.preview_jobs (kind, generation_id, payload, state, attempts, run_at, dedupe_key, last_error)
      select 'delete_object', d.generation_id, jsonb_build_object('path', d.path, 'reason', d.reason), 'queued',
             least(d.attempts, %1$s), d.next_attempt_at,
             public.preview_job_dedupe_key('delete_object', d.generation_id, jsonb_build_object('path', d.path)), d.last_error
        from public.preview_object_deletions d
      on conflict (dedupe_key) where state in ('queued', 'running') do nothing$sql$, v_cap);
  end if;

  perform set_config('app.skip_preview_dispatch', '', true);
end
$$;

-- The pre-baseline functions (the job functions replace them), tables and columns.
drop function if exists public.preview_retry_at(boolean, int);
drop function if exists public.preview_lease_expired(public.generations, interval);
drop function if exists public.preview_lease_takeover_allowed(public.generations, interval);
drop function if exists public.preview_claimable(public.generations, interval);
drop function if exists public.claim_preview(uuid, interval);
drop function if exists public.complete_preview(uuid, int, text, int, int, text, text, text);
drop function if exists public.fail_preview(uuid, int, text, text, boolean);
drop function if exists public.reset_preview_to_none(uuid, text, text);
drop function if exists public.reset_preview_for_retry(uuid);
drop function if exists public.reset_preview_for_rerender(uuid, text);
drop function if exists public.preview_redispatch_after();
drop function if exists public.sweep_previews(int, interval);
drop function if exists public.expire_preview_leases();
drop function if exists public.dispatch_preview_sweep(int);
drop function if exists public.dispatch_preview(jsonb, uuid);
drop function if exists public.preview_request_body(text, uuid, uuid, text, text, text, jsonb, text);
drop function if exists public.generations_dispatch_preview();
drop function if exists public.preview_claim_is_current(uuid, int);
drop function if exists public.enqueue_preview_object_deletions(text[], uuid, text, interval);
drop function if exists public.claim_preview_object_deletions(int);
drop function if exists public.complete_preview_object_deletions(text[]);
drop function if exists public.fail_preview_object_deletions(text[], text);
drop function if exists public.dispatch_preview_cleanup();
drop function if exists public.generations_queue_object_deletions();
drop function if exists public.generations_dispatch_cleanup();
drop function if exists public.request_animated_preview(uuid, boolean);
drop function if exists public.claim_animated_preview(uuid, interval);
drop function if exists public.complete_animated_preview(uuid, int, text);
drop function if exists public.fail_animated_preview(uuid, int, text, boolean);
drop function if exists public.dispatch_animated_sweep(int);
drop function if exists public.preview_dispatch_limit();
drop function if exists public.preview_dispatch_slot_hold();
drop function if exists public.preview_dispatches_in_flight();
drop function if exists public.dispatch_next_previews();
drop function if exists public.release_preview_dispatches(uuid[]);
drop function if exists public.release_preview_claim(uuid, int);

drop table if exists public.preview_dispatches;
drop table if exists public.preview_dispatch_waiting;
drop table if exists public.preview_object_deletions;

-- Work state that moved into preview_jobs. These columns were this system's own, never the app's.
drop index if exists public.generations_animated_todo_idx;
alter table public.generations drop column if exists preview_attempts;
alter table public.generations drop column if exists preview_next_attempt_at;
alter table public.generations drop column if exists preview_started_at;
alter table public.generations drop column if exists preview_expired_leases;
alter table public.generations drop column if exists animated_attempts;
alter table public.generations drop column if exists animated_started_at;
alter table public.generations drop column if exists animated_next_attempt_at;
