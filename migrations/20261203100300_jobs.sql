-- Baseline 3/10, jobs: one state machine for every kind of background work.
--
--              claim (due, attempts+1)          complete
--    queued ───────────────────────────▶ running ─────────▶ (deleted: done)
--      ▲  ▲                                │ │
--      │  └──── retryable, under the cap ──┘ │ fail, or lease expired (one failure path)
--      │        (run_at = now() + backoff;   │
--      │         at once after a dead worker)▼
--      │                                   failed (terminal: code + text kept)
--      └─ release (the isolate is ending: the claim handed back, not retried later)
--
-- Every kind shares the claim with fencing, the lease and its expiry, the dead-worker cap, the
-- backoff and attempt cap, the terminal failure with a closed code and readable text, the re-send
-- dedupe, the current-claim check before uploads and the completion inside the lease. What is
-- kind-specific is only what a job reads (preview_job_input) and what its end writes on the row
-- (preview_job_mirror, preview_job_apply_result), one CASE each.
--
-- The row's columns are the user-facing mirror of its job: queued → none, running → processing,
-- done → ready, failed → failed (preview_status for `preview`, animated_status for `animated`).
--
-- All functions are SECURITY DEFINER with `search_path = ''` (every name qualified): they run from
-- the edge functions as the service, from triggers and from pg_cron, and bypass RLS without being
-- steerable through the caller's search_path. EXECUTE is the service role's only. Re-runnable.

-- ---------------------------------------------------------------------------------------
-- Enqueue (idempotent per dedupe key)
-- ---------------------------------------------------------------------------------------
-- A deletion is keyed by its object, every other job by its row: one live job per key, so the
-- trigger, the sweep, the backfill and a re-sent request all find the same job.
create or replace function public.preview_job_dedupe_key(p_kind text, p_generation_id uuid, p_payload jsonb)
returns text
language sql immutable parallel safe
as $$ select p_kind || ':' || coalesce(p_payload ->> 'path', p_generation_id::text) $$;

create or replace function public.enqueue_preview_job(
  p_kind text,
  p_generation_id uuid,
  p_payload jsonb default '{}',
  p_run_at timestamptz default null
) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_key text := public.preview_job_dedupe_key(p_kind, p_generation_id, coalesce(p_payload, '{}'));
  v_id bigint;
begin
  insert into public.preview_jobs (kind, generation_id, payload, run_at, dedupe_key, max_attempts)
  values (p_kind, p_generation_id, coalesce(p_payload, '{}'), coalesce(p_run_at, now()), v_key,
          public.preview_max_attempts())
  on conflict (dedupe_key) where state in ('queued', 'running') do nothing
  returning id into v_id;
  if v_id is null then
    select j.id into v_id from public.preview_jobs j
     where j.dedupe_key = v_key and j.state in ('queued', 'running');
  end if;
  return v_id;
end
$$;
comment on function public.enqueue_preview_job(text, uuid, jsonb, timestamptz) is
  'Queues a job of p_kind for a row (or, delete_object, for payload.path), due at p_run_at (now). Idempotent: returns the live job of the same dedupe key when there is one. SECURITY DEFINER: service, triggers.';

-- ---------------------------------------------------------------------------------------
-- The row's mirror of its job (kind-specific, one CASE)
-- ---------------------------------------------------------------------------------------
-- p_state: none (queued) | processing (claimed) | failed (terminal). A terminal preview failure
-- also says why in `error`, as the platform's earlier preview worker did; the clip's never does
-- (the row's error is the generation's and the poster's).
create or replace function public.preview_job_mirror(
  p_kind text, p_generation_id uuid, p_state text, p_code text default null, p_message text default null
) returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if p_kind = 'preview' then
    update public.generations g
       set preview_status = p_state,
           preview_error_code = case when p_state = 'processing' then g.preview_error_code else p_code end,
           error = case when p_state = 'failed' then p_message
                        when g.preview_status = 'failed' then null  -- it was the preview's error
                        else g.error end
     where g.id = p_generation_id
       and (g.preview_status, g.preview_error_code) is distinct from (p_state, coalesce(p_code, g.preview_error_code));
  elsif p_kind = 'animated' then
    update public.generations g
       set animated_status = p_state,
           animated_error_code = case when p_state = 'processing' then g.animated_error_code else p_code end
     where g.id = p_generation_id
       and (g.animated_status, g.animated_error_code) is distinct from (p_state, coalesce(p_code, g.animated_error_code));
  end if;
end
$$;

-- What a claimed job is given to work with, or null when its row no longer wants it (the job is
-- then dropped): the poster's source and target, the clip's, the object to delete.
create or replace function public.preview_job_input(j public.preview_jobs) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  g public.generations%rowtype;
begin
  select * into g from public.generations r where r.id = j.generation_id;
  if j.kind = 'delete_object' then
    -- a path its row references again (a re-render wrote the same original copy path) stays
    if found and public.preview_references(g, j.payload ->> 'path') then
      return null;
    end if;
    return jsonb_build_object('path', j.payload ->> 'path', 'reason', j.payload ->> 'reason');
  end if;
  if not found or not public.has_previewable_asset(g) then
    return null;
  end if;
  if j.kind = 'preview' then
    if coalesce(g.preview_status, 'none') = 'ready' then
      return null;
    end if;
    return jsonb_build_object(
      'user_id', g.user_id, 'type', g.type::text, 'kind', public.preview_kind(g.type::text),
      'original_path', nullif(g.original_path, ''), 'source_url', public.preview_source_url(g),
      'model', public.generation_model(g),
      'target_path', public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
      'original_stem', public.original_copy_stem(g.user_id, g.id), 'cover_url', g.preview_cover_url);
  elsif j.kind = 'animated' then
    if public.preview_kind(g.type::text) <> 'video' or g.preview_status <> 'ready' or g.animated_status is null
       or g.animated_status = 'ready' then
      return null;
    end if;
    return jsonb_build_object(
      'user_id', g.user_id, 'original_path', nullif(g.original_path, ''),
      'source_url', public.preview_source_url(g),
      'target_path', public.animated_preview_path(g.user_id, g.id));
  end if;
  return null;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The failure path: explicit failures and expired leases alike
-- ---------------------------------------------------------------------------------------
-- Fenced by (job, attempt): a stale worker changes nothing. Retryable and under the cap → queued
-- again after preview_backoff(attempts), or at once after a dead worker (the lease was the wait);
-- else failed, terminal, with its code and text. A dead worker (p_lease_expired) is counted: at
-- preview_max_expired_leases() the input kills workers (WORKER_LIMIT, terminal); before it, it
-- times out (TIMEOUT, retryable). Returns 'retry', 'failed', or null when fenced.
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
      v_message := format('The worker of attempt %s did not finish within its lease (%s)', j.attempts, public.preview_lease());
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
  'The one failure path of every kind: ''retry'' (retryable, under the cap: queued at now() + preview_backoff(attempts), at once after a dead worker), ''failed'' (terminal: code and text kept, the row mirrors it), null when fenced. p_lease_expired: a dead worker (TIMEOUT, or WORKER_LIMIT at the dead-worker cap). SECURITY DEFINER: service only.';

-- Running jobs whose lease ran out: their worker died. Each goes through the failure path.
create or replace function public.expire_preview_job_leases() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  r record;
  v_count int := 0;
begin
  for r in
    select j.id, j.attempts from public.preview_jobs j
     where j.state = 'running' and j.lease_until < now()
     order by j.lease_until
     for update skip locked
  loop
    if public.fail_preview_job(r.id, r.attempts, null, null, true, true) is not null then
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;
comment on function public.expire_preview_job_leases() is
  'Every running job past its lease → fail_preview_job(..., p_lease_expired): retried at once, or WORKER_LIMIT at the dead-worker cap. Returns how many. SECURITY DEFINER: claims, the sweep.';

-- ---------------------------------------------------------------------------------------
-- Claim
-- ---------------------------------------------------------------------------------------
-- Expired leases first (so their jobs are claimable again), then the oldest due jobs, skipping
-- rows another claimer holds (FOR UPDATE SKIP LOCKED: two workers never get the same job). A job
-- whose row no longer wants it (deleted, new state, a deletion its row references again) is
-- dropped, not claimed. p_kinds / p_generation_id narrow the claim (a batch of deletions; the
-- jobs of one row a caller names). p_wake: the wake this worker answers (its sign of life).
-- lease_ms tells the worker how long the claim is its own.
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
  v_lease interval := coalesce(p_lease, public.preview_lease());
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
  'Expires dead leases, then claims up to p_limit due jobs (of p_kinds, of one row when given), oldest first, SKIP LOCKED: running, attempts+1 (the fencing token), leased for preview_lease(). Jobs their row no longer wants are dropped. A woken worker''s claim wakes more workers when jobs remain due. Returns each job with its input. SECURITY DEFINER: service only.';

-- A worker asks, right before it writes objects (or deletes one), whether its claim is still the
-- current attempt: one whose lease ran out while it rendered stops instead of overwriting what the
-- newer attempt wrote. The completion's fencing stays the final word.
create or replace function public.preview_job_is_current(p_job_id bigint, p_attempt int) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (select 1 from public.preview_jobs j
                  where j.id = p_job_id and j.state = 'running' and j.attempts = p_attempt and j.lease_until > now())
$$;
comment on function public.preview_job_is_current(bigint, int) is
  'True while attempt p_attempt holds job p_job_id within its lease (checked before uploads and deletions). SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- Complete
-- ---------------------------------------------------------------------------------------
-- What a completed job writes on its row (kind-specific, one CASE). preview: the path in
-- preview_path (image) or poster_path (video), size, thumbhash, the original copy, the version.
create or replace function public.preview_job_apply_result(p_kind text, p_generation_id uuid, p_result jsonb)
returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if p_kind = 'preview' then
    update public.generations g
       set preview_status = 'ready',
           preview_path = case when public.preview_kind(g.type::text) = 'image' then p_result ->> 'path' else g.preview_path end,
           poster_path = case when public.preview_kind(g.type::text) = 'video' then p_result ->> 'path' else g.poster_path end,
           preview_width = (p_result ->> 'width')::int,
           preview_height = (p_result ->> 'height')::int,
           preview_thumbhash = p_result ->> 'thumbhash',
           original_path = coalesce(p_result ->> 'originalPath', g.original_path),
           preview_version = p_result ->> 'version',
           preview_error_code = null,
           error = case when g.preview_status = 'failed' then null else g.error end
     where g.id = p_generation_id;
  elsif p_kind = 'animated' then
    update public.generations g
       set animated_status = 'ready', animated_path = p_result ->> 'path', animated_error_code = null
     where g.id = p_generation_id;
  end if;
end
$$;

create or replace function public.complete_preview_job(p_job_id bigint, p_attempt int, p_result jsonb default '{}')
returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  j public.preview_jobs%rowtype;
begin
  delete from public.preview_jobs
   where id = p_job_id and state = 'running' and attempts = p_attempt
  returning * into j;
  if not found then
    return false;
  end if;
  perform public.preview_job_apply_result(j.kind, j.generation_id, coalesce(p_result, '{}'));
  return true;
end
$$;
comment on function public.complete_preview_job(bigint, int, jsonb) is
  'Ends a running job as done (the job row goes) and writes its result on the row: preview → ready with path, size, thumbhash, original copy, version; animated → ready with its path. False when fenced. SECURITY DEFINER: service only.';

-- A worker whose isolate is about to end (the platform's beforeunload: CPU, memory or wall clock
-- near its limit) hands its claim back instead of leaving it to the lease: due again at once, its
-- own late result fenced. The attempt stays counted; at the cap the claim is kept, so an input
-- whose every attempt ends its isolate still ends through the lease (WORKER_LIMIT) instead of
-- being handed back for ever.
create or replace function public.release_preview_job(p_job_id bigint, p_attempt int) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  j public.preview_jobs%rowtype;
begin
  update public.preview_jobs
     set state = 'queued', run_at = now(), locked_by = null, locked_at = null, lease_until = null, updated_at = now()
   where id = p_job_id and state = 'running' and attempts = p_attempt and attempts < max_attempts
  returning * into j;
  if not found then
    return false;
  end if;
  perform public.preview_job_mirror(j.kind, j.generation_id, 'none');
  return true;
end
$$;
comment on function public.release_preview_job(bigint, int) is
  'running (attempt p_attempt, under the cap) → queued, due now: a worker whose isolate is ending hands its job back; its late result is fenced. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- Cancel and supersede
-- ---------------------------------------------------------------------------------------
-- A new asset or a deleted row makes the row's pending work pointless: its live jobs of the given
-- kinds go. A worker still rendering one is fenced (its job is gone) and stops before uploading.
create or replace function public.cancel_preview_jobs(p_generation_id uuid, p_kinds text[]) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_count int;
begin
  delete from public.preview_jobs j
   where j.generation_id = p_generation_id and j.kind = any(p_kinds) and j.state in ('queued', 'running');
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function public.cancel_preview_jobs(uuid, text[]) is
  'Drops the row''s live jobs of p_kinds (a new asset, a deleted row): workers holding them are fenced. SECURITY DEFINER: triggers, service.';

-- ---------------------------------------------------------------------------------------
-- Asking for work, per kind
-- ---------------------------------------------------------------------------------------
-- A row that wants a preview (preview_wanted) gets its preview job: the trigger, the sweep, the
-- backfill and a named request all come here.
create or replace function public.queue_preview(p_generation_id uuid) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  g public.generations%rowtype;
begin
  select * into g from public.generations r where r.id = p_generation_id;
  if not found or not public.preview_wanted(g) then
    return null;
  end if;
  return public.enqueue_preview_job('preview', p_generation_id);
end
$$;
comment on function public.queue_preview(uuid) is
  'The row''s preview job (queued, or the live one) when preview_wanted, else null. SECURITY DEFINER: service, triggers.';

-- The backfill's --retry-failed (a failed row) and --stale (a ready preview another renderer or
-- other settings made): the row goes back to `none` with its error cleared and gets a fresh job
-- (a full attempt budget). A re-render keeps the old objects until the new ones overwrite them
-- (the same paths); the library shows the row as waiting meanwhile, as for any row being made.
create or replace function public.requeue_preview(
  p_generation_id uuid,
  p_from text,                      -- 'failed' or 'ready'
  p_keep_version text default null  -- with 'ready': a preview of this version is left alone
) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if p_from not in ('failed', 'ready') then
    raise exception 'requeue_preview: p_from must be failed or ready, not %', p_from using errcode = '22023';
  end if;
  delete from public.preview_jobs j
   where j.generation_id = p_generation_id and j.kind = 'preview' and j.state = 'failed';
  update public.generations g
     set preview_status = 'none', preview_error_code = null,
         error = case when g.preview_status = 'failed' then null else g.error end
   where g.id = p_generation_id
     and g.preview_status = p_from
     and (p_from = 'failed' or g.preview_version is distinct from p_keep_version);
  if not found then
    return null;
  end if;
  return public.queue_preview(p_generation_id);
end
$$;
comment on function public.requeue_preview(uuid, text, text) is
  'failed, or ready with a preview_version other than p_keep_version → none and a fresh preview job (backfill --retry-failed, --stale). Null when the row is not in that state. SECURITY DEFINER: service only.';

-- A ready video's animated preview asked for (animated_status null → none, or failed → none with
-- a fresh job) and queued. Null when it is not a ready video or is already asked for.
create or replace function public.queue_animated_preview(p_generation_id uuid) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  delete from public.preview_jobs j
   where j.generation_id = p_generation_id and j.kind = 'animated' and j.state = 'failed';
  update public.generations g
     set animated_status = 'none', animated_error_code = null
   where g.id = p_generation_id
     and public.preview_kind(g.type::text) = 'video'
     and g.preview_status = 'ready'
     and (g.animated_status is null or g.animated_status = 'failed');
  if not found then
    return null;
  end if;
  return public.enqueue_preview_job('animated', p_generation_id);
end
$$;
comment on function public.queue_animated_preview(uuid) is
  'A ready video''s animated preview asked for (animated_status null or failed → none) with its job; null otherwise. SECURITY DEFINER: service only.';

-- Objects of ours to delete through the Storage API, one job per path, due after p_delay. A
-- replaced original waits two leases, by when the re-render that may write the same path again
-- has completed (the claim then drops the job: the row references the path again).
create or replace function public.queue_object_deletions(
  p_paths text[], p_generation_id uuid, p_reason text, p_delay interval default '0 seconds'
) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_path text;
  v_count int := 0;
begin
  if p_reason not in ('row_deleted', 'replaced', 'orphan') then
    raise exception 'queue_object_deletions: unknown reason %', p_reason using errcode = '22023';
  end if;
  for v_path in select distinct p from unnest(p_paths) p where p is not null loop
    perform public.enqueue_preview_job('delete_object', p_generation_id,
      jsonb_build_object('path', v_path, 'reason', p_reason), now() + p_delay);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
comment on function public.queue_object_deletions(text[], uuid, text, interval) is
  'One delete_object job per path (row_deleted | replaced | orphan), due after p_delay; idempotent per path. SECURITY DEFINER: triggers, npm run orphans.';

-- ---------------------------------------------------------------------------------------
-- What the work looks like: stats and coverage (read-only views, service only)
-- ---------------------------------------------------------------------------------------
drop view if exists public.preview_job_stats;
create view public.preview_job_stats
with (security_invoker = true)
as
select j.kind, j.state,
       count(*)::bigint as total,
       count(*) filter (where j.state = 'queued' and j.run_at <= now())::bigint as due,
       count(*) filter (where j.state = 'running' and j.lease_until < now())::bigint as expired_leases,
       now() - min(j.created_at) as oldest_age,
       case when j.state = 'failed' then (
         select jsonb_object_agg(c.code, c.n)
           from (select f.last_error_code as code, count(*) as n from public.preview_jobs f
                  where f.kind = j.kind and f.state = 'failed' group by 1) c) end as failures_by_code
  from public.preview_jobs j
 group by j.kind, j.state;
comment on view public.preview_job_stats is
  'Jobs by kind and state: total, due now, running past their lease, age of the oldest, terminal failures by code. Service role only.';
revoke all on public.preview_job_stats from public, anon, authenticated;
grant select on public.preview_job_stats to service_role;

-- preview_stats: one row per (type, preview_status) of the rows that get a preview, with the age
-- of the oldest still waiting and, on failed rows, the failures by code.
drop view if exists public.preview_stats;
create view public.preview_stats
with (security_invoker = true)
as
with eligible as (
  select g.type::text as type, coalesce(g.preview_status, 'none') as preview_status, g.updated_at,
         g.preview_error_code
    from public.generations g
   where public.has_previewable_asset(g)
)
select e.type, e.preview_status,
       count(*)::bigint as total,
       case when e.preview_status in ('none', 'processing', 'failed') then now() - min(e.updated_at) end as oldest_waiting_age,
       case when e.preview_status = 'failed' then (
         select jsonb_object_agg(c.code, c.n)
           from (select coalesce(f.preview_error_code, 'UNKNOWN') as code, count(*) as n
                   from eligible f where f.type = e.type and f.preview_status = 'failed' group by 1) c
       ) end as failures_by_code
  from eligible e
 group by e.type, e.preview_status;
comment on view public.preview_stats is
  'Preview health of the rows that get a preview: counts by type and preview_status, oldest waiting item''s age, failures by error code. Service role only.';
revoke all on public.preview_stats from public, anon, authenticated;
grant select on public.preview_stats to service_role;

-- preview_coverage: every row of the table, counted once, by what happens to its preview. state:
-- none | processing | ready | failed, or not_previewable; reason: why not (preview_skip_reason), a
-- failed preview's code (LEGACY_FAILURE for an earlier system's), `no_job` for a waiting row
-- without a live job (the sweep queues those of the last day, the backfill the rest),
-- `stale_lease` for processing without a live lease of ours (a dead worker, or an earlier
-- system's row). The clips and deletions are counted by preview_job_stats.
drop view if exists public.preview_coverage;
create view public.preview_coverage
with (security_invoker = true)
as
select s.type, s.state, s.reason, count(*)::bigint as total
from (
  select g.type::text as type,
         case when r.skip is not null then 'not_previewable' else coalesce(g.preview_status, 'none') end as state,
         case
           when r.skip is not null then r.skip
           when g.preview_status = 'failed' then coalesce(g.preview_error_code, 'LEGACY_FAILURE')
           when g.preview_status = 'processing' and not exists (
             select 1 from public.preview_jobs j
              where j.generation_id = g.id and j.kind = 'preview' and j.state = 'running' and j.lease_until >= now())
             then 'stale_lease'
           when coalesce(g.preview_status, 'none') = 'none' and not exists (
             select 1 from public.preview_jobs j
              where j.generation_id = g.id and j.kind = 'preview' and j.state = 'queued')
             then 'no_job'
         end as reason
    from public.generations g
    cross join lateral (select public.preview_skip_reason(g) as skip) r
) s
group by s.type, s.state, s.reason;
comment on view public.preview_coverage is
  'Every generation counted once: type, state (none|processing|ready|failed|not_previewable), reason (preview_skip_reason; a failed preview''s code, LEGACY_FAILURE for an earlier system''s; no_job; stale_lease). Service role only.';
revoke all on public.preview_coverage from public, anon, authenticated;
grant select on public.preview_coverage to service_role;

-- ---------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------
revoke all on function public.enqueue_preview_job(text, uuid, jsonb, timestamptz), public.preview_job_mirror(text, uuid, text, text, text),
  public.preview_job_input(public.preview_jobs), public.fail_preview_job(bigint, int, text, text, boolean, boolean),
  public.expire_preview_job_leases(), public.claim_preview_jobs(text[], int, uuid, bigint, interval),
  public.preview_job_is_current(bigint, int), public.preview_job_apply_result(text, uuid, jsonb),
  public.complete_preview_job(bigint, int, jsonb), public.release_preview_job(bigint, int),
  public.cancel_preview_jobs(uuid, text[]), public.queue_preview(uuid), public.requeue_preview(uuid, text, text),
  public.queue_animated_preview(uuid), public.queue_object_deletions(text[], uuid, text, interval)
  from public, anon, authenticated;
grant execute on function public.enqueue_preview_job(text, uuid, jsonb, timestamptz), public.fail_preview_job(bigint, int, text, text, boolean, boolean),
  public.expire_preview_job_leases(), public.claim_preview_jobs(text[], int, uuid, bigint, interval),
  public.preview_job_is_current(bigint, int), public.complete_preview_job(bigint, int, jsonb),
  public.release_preview_job(bigint, int), public.cancel_preview_jobs(uuid, text[]), public.queue_preview(uuid),
  public.requeue_preview(uuid, text, text), public.queue_animated_preview(uuid),
  public.queue_object_deletions(text[], uuid, text, interval)
  to service_role;
grant execute on function public.preview_job_dedupe_key(text, uuid, jsonb) to service_role;
