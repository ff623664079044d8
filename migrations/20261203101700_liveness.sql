-- Liveness instead of fixed waits (issue "Recovery, round two").
--
-- A claim used to be owned for preview_lease() (2 minutes) whatever happened to its worker: a
-- worker that died holding a job left it `processing` for the full two minutes before the next
-- claim or the sweep could retry it. Now a claim is leased for the short heartbeat lease
-- (preview_heartbeat_lease(), 30 s) and the worker that holds it proves it is alive by extending
-- it every third of that while it works (extend_preview_job_lease, fenced by the attempt); a
-- dead worker stops extending, and its job is due again within the heartbeat lease. preview_lease()
-- becomes the hard cap: no claim is extended past its claim time + preview_lease(), so a worker
-- stuck in a live loop (heartbeating, never finishing) still loses the job, counted as a dead
-- worker (TIMEOUT, then WORKER_LIMIT) exactly as before.
--
-- What reads the lease is unchanged and keeps working with the shorter one: lease expiry
-- (expire_preview_job_leases: running and lease_until < now()), the current-claim check
-- (preview_job_is_current: lease_until > now()), due work (preview_jobs_due), the awake-worker
-- count (preview_workers_awake: a worker holding a job whose lease_until > now(), which its
-- heartbeats keep in the future while it lives; a dead one stops counting within the heartbeat
-- lease instead of two minutes) and the coverage view's stale_lease.
--
-- A new migration, not an edit of the baseline (20261203100200_rules.sql, 20261203100300_jobs.sql:
-- a project that applied them never runs them again). Re-runnable: functions only (create or
-- replace, same signatures) and comments.

-- ---------------------------------------------------------------------------------------
-- The rule: how long a claim is held without a sign of life
-- ---------------------------------------------------------------------------------------
-- Why a rule function: claims, the heartbeat and the TIMEOUT text ask it instead of restating
-- 30 s, as every other constant (20261203100200_rules.sql). Plain SQL without a SET clause, like
-- the other rules, so the planner can inline it. It reads the database setting
-- app.preview_heartbeat_lease when set (a test stack shortens it); never longer than
-- preview_lease() (the hard cap: a stack that shortens the lease to 15 s gets 15 s here too) and
-- never under a second (a setting of 0 would make every claim expire at once).
create or replace function public.preview_heartbeat_lease() returns interval
language sql stable parallel safe
as $$
  select least(greatest(coalesce(nullif(current_setting('app.preview_heartbeat_lease', true), '')::interval,
                                 interval '30 seconds'),
                        interval '1 second'),
               public.preview_lease())
$$;
comment on function public.preview_heartbeat_lease() is
  'How long a claim is held without a heartbeat: app.preview_heartbeat_lease if set, else 30 s; at least 1 s, never longer than preview_lease() (the hard cap). A dead worker''s job is due again within this.';

comment on function public.preview_lease() is
  'The hard cap of a claim: a job is held at most this long from its claim (app.preview_lease if set, else 2 minutes), however often its worker extends the heartbeat lease (preview_heartbeat_lease()); past it the worker counts as dead (TIMEOUT, WORKER_LIMIT at the dead-worker cap).';

grant execute on function public.preview_heartbeat_lease() to service_role, authenticated, anon;

-- ---------------------------------------------------------------------------------------
-- The claim takes the heartbeat lease
-- ---------------------------------------------------------------------------------------
-- Why redefined: the baseline's claim leased every job for preview_lease(), the fixed two-minute
-- wait a dead worker's job sat out. The body is the baseline's (20261203100300_jobs.sql) with one
-- change: the default lease is preview_heartbeat_lease(). lease_ms tells the worker how long its
-- claim holds without a heartbeat (it extends every third of that). An explicit p_lease still
-- sets one claim's lease (never shortened by a heartbeat).
create or replace function public.claim_preview_jobs(
  p_kinds text[] default null,
  p_limit int default 1,
  p_generation_id uuid default null,
  p_wake bigint default null,
  p_lease interval default null
) returns table (job_id bigint, kind text, generation_id uuid, attempt int, lease_ms int, input jsonb)
language plpgsql volatile
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  j public.preview_jobs%rowtype;
  v_input jsonb;
  v_lease interval := coalesce(p_lease, public.preview_heartbeat_lease());
  v_taken int := 0;
begin
  perform public.expire_preview_job_leases();
  if p_wake is not null then
    update public.preview_worker_wakes w set seen_at = now() where w.id = p_wake;
  end if;
  -- one row per iteration: a FOR loop over the query would fetch (and lock) rows in batches of
  -- ten, and a second worker claiming meanwhile would skip them all while work is still due
  loop
    exit when v_taken >= greatest(coalesce(p_limit, 1), 0);
    select * into j from public.preview_jobs q
     where q.state = 'queued' and q.run_at <= now()
       and (p_kinds is null or q.kind = any(p_kinds))
       and (p_generation_id is null or q.generation_id = p_generation_id)
     order by q.run_at, q.id
     limit 1
     for update skip locked;
    exit when not found;
    v_input := public.preview_job_input(j);
    if v_input is null then
      delete from public.preview_jobs d where d.id = j.id;
      -- a clip dropped before its poster is ready is no longer asked for: asked again after it
      if j.kind = 'animated' then
        update public.generations g set animated_status = null
         where g.id = j.generation_id and g.animated_status in ('none', 'processing');
      end if;
      continue;
    end if;
    update public.preview_jobs u
       set state = 'running', attempts = u.attempts + 1, locked_by = coalesce('wake:' || p_wake, 'direct'),
           locked_at = now(), lease_until = now() + v_lease, updated_at = now()
     where u.id = j.id;
    perform public.preview_job_mirror(j.kind, j.generation_id, 'processing');
    v_taken := v_taken + 1;
    job_id := j.id; kind := j.kind; generation_id := j.generation_id; attempt := j.attempts + 1;
    lease_ms := (extract(epoch from v_lease) * 1000)::int; input := v_input;
    return next;
  end loop;
  -- a woken worker with more due work than itself fills the other places (sent when this claim
  -- commits); a direct run (a named row) does not, or a worker it woke would race it for the
  -- jobs it is about to claim
  if v_taken > 0 and p_wake is not null then
    perform public.wake_preview_workers();
  end if;
end
$$;
comment on function public.claim_preview_jobs(text[], int, uuid, bigint, interval) is
  'Expires dead leases, then claims up to p_limit due jobs (of p_kinds, of one row when given), oldest first, SKIP LOCKED: running, attempts+1 (the fencing token), leased for preview_heartbeat_lease() (p_lease when given; lease_ms says how long), which its worker extends (extend_preview_job_lease) up to preview_lease() from the claim. Jobs their row no longer wants are dropped. A woken worker''s claim wakes more workers when jobs remain due. Returns each job with its input. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- The heartbeat
-- ---------------------------------------------------------------------------------------
-- Why: the worker's sign of life. A worker holding a job calls this every third of the heartbeat
-- lease while it works; its lease moves to now() + preview_heartbeat_lease(), never past its claim
-- time (locked_at) + preview_lease() (the hard cap) and never backwards (a longer p_lease of the
-- claim stays). Fenced like every other call of the job: only the attempt that holds it (running,
-- that attempt, its lease not yet run out: a lease that ran out is lost even before anyone expired
-- it, as preview_job_is_current says). Returns whether the attempt still holds the job; false
-- tells the worker to stop (its job was taken over, cancelled, finished, or reached the cap).
create or replace function public.extend_preview_job_lease(p_job_id bigint, p_attempt int) returns boolean
language sql volatile
security definer
set search_path = ''
as $$
  with held as (
    update public.preview_jobs j
       set lease_until = greatest(j.lease_until,
                                  least(now() + public.preview_heartbeat_lease(), j.locked_at + public.preview_lease()))
     where j.id = p_job_id and j.state = 'running' and j.attempts = p_attempt and j.lease_until > now()
    returning j.lease_until
  )
  select coalesce((select h.lease_until > now() from held h), false)
$$;
comment on function public.extend_preview_job_lease(bigint, int) is
  'The heartbeat of attempt p_attempt of job p_job_id: lease_until → now() + preview_heartbeat_lease(), never past locked_at + preview_lease() (the hard cap) nor backwards. Fenced: only while that attempt holds the job within its lease. Returns whether it still holds it. SECURITY DEFINER: service only.';

revoke all on function public.extend_preview_job_lease(bigint, int) from public, anon, authenticated;
grant execute on function public.extend_preview_job_lease(bigint, int) to service_role;

-- ---------------------------------------------------------------------------------------
-- The failure path says which lease ran out
-- ---------------------------------------------------------------------------------------
-- Why redefined: a dead worker's TIMEOUT text named preview_lease() ("did not finish within its
-- lease (00:02:00)"), which is no longer how long it was waited for. The body is the baseline's
-- (20261203100300_jobs.sql) with only that text changed: a worker that stopped extending its lease
-- (it died) and one still extending at the hard cap (a live loop) are told apart; the accounting
-- (expired_leases, TIMEOUT retried at once, WORKER_LIMIT at preview_max_expired_leases(), the
-- backoff and the attempt cap) is unchanged.
create or replace function public.fail_preview_job(
  p_job_id bigint,
  p_attempt int,
  p_code text,
  p_message text,
  p_retryable boolean,
  p_lease_expired boolean default false
) returns text
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  j public.preview_jobs%rowtype;
  v_code text := p_code;
  v_message text := p_message;
  v_retryable boolean := coalesce(p_retryable, false);
  v_retry_at timestamptz;
begin
  select * into j from public.preview_jobs
   where id = p_job_id and state = 'running' and attempts = p_attempt
   for update;
  if not found then
    return null;
  end if;
  if p_lease_expired then
    j.expired_leases := j.expired_leases + 1;
    if j.expired_leases >= public.preview_max_expired_leases() then
      v_code := 'WORKER_LIMIT';
      v_retryable := false;
      v_message := format('Preview worker stopped %s times on this item (the platform''s memory or CPU limit, or a crash): not retried',
                          j.expired_leases);
    else
      v_code := 'TIMEOUT';
      v_retryable := true;
      v_message := case
        when j.lease_until >= j.locked_at + public.preview_lease() then
          format('The worker of attempt %s did not finish within its lease: still working %s after its claim (the cap)',
                 j.attempts, public.preview_lease())
        else
          format('The worker of attempt %s did not finish within its lease: it stopped renewing it (heartbeat lease %s)',
                 j.attempts, public.preview_heartbeat_lease())
      end;
    end if;
  end if;
  if v_retryable and j.attempts < j.max_attempts then
    v_retry_at := case when p_lease_expired then now() else now() + public.preview_backoff(j.attempts) end;
  elsif v_retryable then
    v_message := format('%s (gave up after %s attempts)', v_message, j.attempts);
  end if;

  update public.preview_jobs
     set state = case when v_retry_at is null then 'failed' else 'queued' end,
         run_at = coalesce(v_retry_at, run_at),
         expired_leases = j.expired_leases,
         last_error_code = v_code,
         last_error = v_message,
         locked_by = null, locked_at = null, lease_until = null,
         updated_at = now()
   where id = j.id;
  perform public.preview_job_mirror(j.kind, j.generation_id,
    case when v_retry_at is null then 'failed' else 'none' end, v_code, v_message);
  return case when v_retry_at is null then 'failed' else 'retry' end;
end
$$;
comment on function public.fail_preview_job(bigint, int, text, text, boolean, boolean) is
  'The one failure path of every kind: ''retry'' (retryable, under the cap: queued at now() + preview_backoff(attempts), at once after a dead worker), ''failed'' (terminal: code and text kept, the row mirrors it), null when fenced. p_lease_expired: a dead worker, its heartbeat lease run out or its claim at the hard cap (TIMEOUT, or WORKER_LIMIT at the dead-worker cap). SECURITY DEFINER: service only.';
