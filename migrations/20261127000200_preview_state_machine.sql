-- The preview state machine: one named function per state change.
--
--            claim                complete
--   none ───────────▶ processing ──────────▶ ready
--    ▲  ▲               │    ▲ │ lease expired + claim (attempts < cap)
--    │  │               │    └─┘
--    │  │               │ fail
--    │  │               ▼
--    │  │            failed ── retryable, attempts < cap: next_attempt_at = now() + backoff
--    │  │               │      (claimable again once due)
--    │  │               └───── terminal or cap reached: next_attempt_at = null
--    │  └── reset_preview_for_retry (backfill --retry-failed)
--    └───── asset_url changed (trigger)
--
-- preview_attempts is the fencing token: claim increments it and returns it; complete and
-- fail only act when the row is still `processing` with that same attempt, so a stale
-- worker (lease expired, row re-claimed) changes nothing.
--
-- All functions are SECURITY DEFINER with `search_path = ''` (every name qualified): they
-- run from the edge functions as service role / postgres and from triggers and pg_cron, and
-- must bypass RLS without being hijackable through the caller's search_path. EXECUTE is
-- revoked from public, anon and authenticated and granted to service_role.

-- ---------------------------------------------------------------------------------------
-- The constants, each defined once
-- ---------------------------------------------------------------------------------------
create or replace function public.preview_max_attempts() returns int
language sql immutable parallel safe
as $$ select 5 $$;
comment on function public.preview_max_attempts() is
  'Attempt cap: a retryable failure at this many attempts becomes terminal; failed/expired rows at the cap are not claimable.';

-- least(30 s · 2^(attempt-1), 1 h): 30 s, 1 min, 2 min, 4 min, 8 min, …
create or replace function public.preview_backoff(attempt int) returns interval
language sql immutable parallel safe
set search_path = ''
as $$ select least(interval '30 seconds' * power(2, greatest(attempt, 1) - 1), interval '1 hour') $$;
comment on function public.preview_backoff(int) is
  'Delay before retry after failed attempt N: least(30s * 2^(N-1), 1h).';

-- When a failed attempt is tried again: the one backoff and the one attempt cap, for the poster
-- (fail_preview) and the animated step (fail_animated_preview) alike. Null: terminal.
create or replace function public.preview_retry_at(p_retryable boolean, p_attempts int) returns timestamptz
language sql stable parallel safe
set search_path = ''
as $$
  select case when coalesce(p_retryable, false) and p_attempts < public.preview_max_attempts()
              then now() + public.preview_backoff(p_attempts) end
$$;
comment on function public.preview_retry_at(boolean, int) is
  'now() + preview_backoff(attempts) for a retryable failure under preview_max_attempts(), else null (terminal).';

-- ---------------------------------------------------------------------------------------
-- What gets a preview: each rule once
-- ---------------------------------------------------------------------------------------
-- Production's table holds more values than the ones this system writes (LENSROOM): product
-- shots are images, older rows say `completed`/`succeeded` for success and `processing` for a
-- running task, preview_status is NULL on rows older than the preview columns, and the
-- asset may be only in result_urls (the fast-path callback) or result_url. Claim, sweep,
-- backfill, dispatch trigger, stats and the KIE sync all ask these functions.
--
-- The rule functions are plain SQL without a SET clause on purpose: only such functions are
-- inlined by the planner, and only inlined they let the partial indexes (written with the
-- same functions) apply. They name everything schema-qualified and run inside the SECURITY
-- DEFINER functions below, whose search_path is empty, so a caller's search_path cannot
-- steer them.

-- Which preview a generation type gets: 'image' (preview_path) or 'video' (poster_path).
create or replace function public.preview_kind(p_type text) returns text
language sql immutable parallel safe
as $$ select case when p_type in ('photo', 'product') then 'image' when p_type = 'video' then 'video' end $$;
comment on function public.preview_kind(text) is
  'image for photo and product (preview_path), video for video (poster_path), null for anything else (audio…).';

-- The row's preview image, read where complete_preview wrote it: the library (and the backfill's
-- report) ask this instead of choosing the column themselves.
create or replace function public.preview_image_path(g public.generations) returns text
language sql stable parallel safe
as $$ select case public.preview_kind(g.type::text) when 'video' then g.poster_path when 'image' then g.preview_path end $$;
comment on function public.preview_image_path(public.generations) is
  'The preview image of the row: poster_path for a video, preview_path for a photo or product, null otherwise.';

-- ---------------------------------------------------------------------------------------
-- The object paths, once: the worker writes where claim_preview says, the lifecycle
-- migration deletes the same paths.
-- {user}/previews/{id}_preview.webp (image) | {user}/posters/{id}_poster.webp (video); the
-- original copy is {user}/originals/{id}.{ext} (the worker adds the extension of the bytes).
create or replace function public.preview_object_path(p_user_id uuid, p_id uuid, p_kind text) returns text
language sql immutable parallel safe
as $$
  select case p_kind
    when 'image' then p_user_id || '/previews/' || p_id || '_preview.webp'
    when 'video' then p_user_id || '/posters/' || p_id || '_poster.webp'
  end
$$;
comment on function public.preview_object_path(uuid, uuid, text) is
  'Where the preview of a row is written: {user}/previews/{id}_preview.webp (image) or {user}/posters/{id}_poster.webp (video).';

-- The animated preview of a video: the seed system's path (its library plays it on hover).
create or replace function public.animated_preview_path(p_user_id uuid, p_id uuid) returns text
language sql immutable parallel safe
as $$ select p_user_id || '/previews/' || p_id || '_preview.mp4' $$;

create or replace function public.original_copy_stem(p_user_id uuid, p_id uuid) returns text
language sql immutable parallel safe
as $$ select p_user_id || '/originals/' || p_id $$;
comment on function public.original_copy_stem(uuid, uuid) is
  'The original copy''s path without its extension: {user}/originals/{id}.';

create or replace function public.generation_succeeded(p_status text) returns boolean
language sql immutable parallel safe
as $$ select p_status in ('success', 'completed', 'succeeded') $$;
comment on function public.generation_succeeded(text) is
  'The success-like statuses: success, and completed / succeeded on older rows.';

create or replace function public.kie_task_running(p_status text) returns boolean
language sql immutable parallel safe
as $$ select p_status in ('pending', 'queued', 'generating', 'processing') $$;
comment on function public.kie_task_running(text) is
  'Statuses of a task KIE has not finished: pending, queued, generating, and processing on older rows.';

-- The first URL of result_urls, which production holds as a JSON array or, on some rows, as a
-- JSON string containing an array. Anything that is not an http(s) URL is no source.
create or replace function public.first_result_url(p_result_urls jsonb) returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v jsonb := p_result_urls;
  v_url text;
begin
  if jsonb_typeof(v) = 'string' then
    begin
      v := (v #>> '{}')::jsonb;
    exception when others then
      return null;
    end;
  end if;
  if jsonb_typeof(v) <> 'array' or jsonb_typeof(v -> 0) <> 'string' then
    return null;
  end if;
  v_url := btrim(v ->> 0);
  return case when v_url ~* '^https?://' then v_url end;
end
$$;
comment on function public.first_result_url(jsonb) is
  'result_urls[0] when it is an http(s) URL; result_urls may be a JSON array or a JSON string holding one.';

-- The URL a preview is made from when no original is in storage: asset_url, else the first of
-- result_urls, else result_url.
create or replace function public.preview_source_url(g public.generations) returns text
language sql stable parallel safe
as $$
  select coalesce(nullif(btrim(g.asset_url), ''), public.first_result_url(g.result_urls),
                  case when btrim(g.result_url) ~* '^https?://' then btrim(g.result_url) end)
$$;
comment on function public.preview_source_url(public.generations) is
  'asset_url, else result_urls[0] (array or JSON string), else result_url. original_path (in storage) comes before all of them.';

-- The KIE model, from whichever of the platform's columns the table has (model_id, model_name)
-- or ours (model). Read through the row's JSON so this compiles on either shape.
create or replace function public.generation_model(g public.generations) returns text
language sql stable parallel safe
as $$
  select coalesce(nullif(j ->> 'model_id', ''), nullif(j ->> 'model_name', ''), nullif(j ->> 'model', ''))
    from (select to_jsonb(g) as j) r  -- the row's JSON once, not once per column
$$;
comment on function public.generation_model(public.generations) is
  'The KIE model of a row: model_id, else model_name, else model (whichever exist).';

-- Why a row gets no preview, or null when it can have one: the one definition. A reason is a
-- fixed word, counted by preview_coverage.
create or replace function public.preview_skip_reason(g public.generations) returns text
language sql stable parallel safe
as $$
  select case
    when public.preview_kind(g.type::text) is null then
      case when g.type::text = 'audio' then 'audio' else 'not_visual_type' end
    when g.status::text = 'cancelled' then 'cancelled'
    when g.status::text = 'failed' then 'generation_failed'
    when public.kie_task_running(g.status::text) then 'generating'
    when not public.generation_succeeded(g.status::text) then 'unknown_status'
    when nullif(g.original_path, '') is null and public.preview_source_url(g) is null then 'no_source'
  end
$$;
comment on function public.preview_skip_reason(public.generations) is
  'Null when the row needs a preview and can have one (success-like, photo/product/video, a source); else why not: audio, not_visual_type, cancelled, generation_failed, generating, unknown_status, no_source.';

create or replace function public.has_previewable_asset(g public.generations) returns boolean
language sql stable parallel safe
as $$
  select public.generation_succeeded(g.status::text)
     and public.preview_kind(g.type::text) is not null
     and (nullif(g.original_path, '') is not null or public.preview_source_url(g) is not null)
$$;
comment on function public.has_previewable_asset(public.generations) is
  'preview_skip_reason(g) is null, written as a conjunction the planner can match to partial indexes: success-like, image or video type, and a source (original_path, asset_url, result_urls, result_url).';

-- The one lease: the claim, the sweep and expire_preview_leases() all use it. It reads the
-- database setting app.preview_lease when set (the local test stack sets '15 seconds', as the
-- platform's superuser, so crash cases recover quickly); on a project, where postgres may not
-- set database parameters, redefine this function to change the default.
create or replace function public.preview_lease() returns interval
language sql stable parallel safe
as $$
  select coalesce(nullif(current_setting('app.preview_lease', true), '')::interval, interval '2 minutes')
$$;
comment on function public.preview_lease() is
  'How long a processing claim is owned before another caller may take it over (and the sweep re-dispatches it): app.preview_lease if set, else 2 minutes.';

-- A worker that holds a claim always ends it (complete or fail) inside the lease: downloads
-- and renders have their own timeouts. A lease that runs out means the worker died: the
-- platform stopped it (546 WORKER_LIMIT: memory or CPU) or it crashed. One such death may be
-- bad luck (a neighbour's memory, a deploy); the second means this input kills workers, and
-- trying it again would only kill more.
create or replace function public.preview_max_expired_leases() returns int
language sql immutable parallel safe
as $$ select 2 $$;
comment on function public.preview_max_expired_leases() is
  'Expired leases (dead workers) an item may cause before it fails WORKER_LIMIT, terminal.';

-- Whether a processing claim's lease ran out (its worker died): the one test the takeover,
-- expire_preview_leases(), the coverage view and the backfill's wait share. A row another
-- preview system left in processing (no preview_started_at) is leased from its updated_at.
create or replace function public.preview_lease_expired(
  g public.generations,
  p_lease interval default null  -- null: preview_lease()
) returns boolean
language sql stable parallel safe
as $$
  select g.preview_status = 'processing'
     and coalesce(g.preview_started_at, g.updated_at) + coalesce(p_lease, public.preview_lease()) < now()
$$;
comment on function public.preview_lease_expired(public.generations, interval) is
  'processing, and its lease (from preview_started_at, else updated_at) ran out.';

-- The one rule of when a processing claim may be taken over: its lease ran out, and neither
-- the attempt cap nor the expired-lease cap is reached (expire_preview_leases() ends the rest).
create or replace function public.preview_lease_takeover_allowed(
  g public.generations,
  p_lease interval default null  -- null: preview_lease() (claim_preview passes its own, for pgTAP)
) returns boolean
language sql stable parallel safe
as $$
  select public.preview_lease_expired(g, p_lease)
     and g.preview_attempts < public.preview_max_attempts()
     and g.preview_expired_leases + 1 < public.preview_max_expired_leases()
$$;
comment on function public.preview_lease_takeover_allowed(public.generations, interval) is
  'A processing row whose lease ran out and that is under both caps: claim_preview may take it over, the sweep re-dispatches it. A row another preview system left in processing (no preview_started_at) is leased from its updated_at.';

-- Whether a claim may be made now: the one rule the claim, the backfill and doctor share.
-- `none` (or NULL: rows older than the preview columns) is always claimable; failed rows once
-- due and under the attempt cap; a failure recorded by an earlier preview system (failed,
-- never attempted here: no attempts, no error code) once; expired leases under both caps.
create or replace function public.preview_claimable(
  g public.generations,
  p_lease interval default null
) returns boolean
language sql stable parallel safe
as $$
  select public.has_previewable_asset(g)
     -- implied by the branches below; written out so the planner matches generations_preview_todo_idx
     and coalesce(g.preview_status, 'none') <> 'ready'
     and (
          coalesce(g.preview_status, 'none') = 'none'
       or (g.preview_status = 'failed'
           and g.preview_next_attempt_at <= now()
           and g.preview_attempts < public.preview_max_attempts())
       or (g.preview_status = 'failed' and g.preview_attempts = 0 and g.preview_error_code is null)
       or public.preview_lease_takeover_allowed(g, p_lease)
     )
$$;
comment on function public.preview_claimable(public.generations, interval) is
  'Eligible (has_previewable_asset) and in a claimable state: none/NULL; failed, due and under the cap; failed by an earlier preview system (never attempted here); processing past its lease under both caps.';

-- ---------------------------------------------------------------------------------------
-- claim_preview
-- ---------------------------------------------------------------------------------------
-- One conditional UPDATE: of two concurrent callers, the second waits for the first's row
-- lock, re-checks the WHERE against the new row (now `processing` with a fresh lease) and
-- gets nothing. `none` is always claimable (a fresh request, e.g. after a reset); failed
-- and expired rows only under the attempt cap.
-- The returned source: original_path (a copy already in storage) wins, else the URL. lease_ms
-- tells the worker how long it owns the claim (it retries a completion that fails on a
-- transient database error while the lease holds, instead of leaving the work to be redone).
drop function if exists public.claim_preview(uuid, interval);  -- its result columns changed
create function public.claim_preview(
  p_generation_id uuid,
  p_lease interval default null  -- null: preview_lease(); an explicit value wins (pgTAP uses it)
) returns table (id uuid, user_id uuid, type text, kind text, original_path text, source_url text,
                 model text, attempt int, lease_ms int, target_path text, original_stem text, cover_url text)
language sql volatile
security definer
set search_path = ''
as $$
  update public.generations g
     set preview_status = 'processing',
         preview_attempts = g.preview_attempts + 1,
         -- taking over an expired lease of ours counts the dead worker
         preview_expired_leases = g.preview_expired_leases
           + (g.preview_status = 'processing' and g.preview_started_at is not null)::int,
         preview_started_at = now(),
         preview_next_attempt_at = null
   where g.id = p_generation_id
     and public.preview_claimable(g, p_lease)
  returning g.id, g.user_id, g.type::text, public.preview_kind(g.type::text), nullif(g.original_path, ''),
            public.preview_source_url(g), public.generation_model(g), g.preview_attempts,
            (extract(epoch from coalesce(p_lease, public.preview_lease())) * 1000)::int,
            public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
            public.original_copy_stem(g.user_id, g.id),
            g.preview_cover_url
$$;
comment on function public.claim_preview(uuid, interval) is
  'Claims a row for preview rendering when preview_claimable (→ processing, attempts+1). Returns the claim with its kind, source (original_path, else source_url) and attempt (fencing token), or no row. The lease defaults to preview_lease(). SECURITY DEFINER: called by the service, bypasses RLS.';

-- ---------------------------------------------------------------------------------------
-- complete_preview
-- ---------------------------------------------------------------------------------------
drop function if exists public.complete_preview(uuid, int, text, int, int, text, text);  -- p_version was added
create or replace function public.complete_preview(
  p_generation_id uuid,
  p_attempt int,
  p_path text,
  p_width int,
  p_height int,
  p_thumbhash text,
  p_original_path text default null,
  p_version text default null
) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.generations g
     set preview_status = 'ready',
         preview_path = case when public.preview_kind(g.type::text) = 'image' then p_path else g.preview_path end,
         poster_path = case when public.preview_kind(g.type::text) = 'video' then p_path else g.poster_path end,
         preview_width = p_width,
         preview_height = p_height,
         preview_thumbhash = p_thumbhash,
         original_path = coalesce(p_original_path, g.original_path),
         preview_version = p_version,
         preview_error_code = null,
         error = null,
         preview_started_at = null,
         preview_next_attempt_at = null
   where g.id = p_generation_id
     and g.preview_status = 'processing'
     and g.preview_attempts = p_attempt;
  return found;
end
$$;
comment on function public.complete_preview(uuid, int, text, int, int, text, text, text) is
  'Marks the claim ready (photo, product → preview_path; video → poster_path) with the preview_version that made it. False when fenced (not processing, or another attempt). SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- fail_preview
-- ---------------------------------------------------------------------------------------
create or replace function public.fail_preview(
  p_generation_id uuid,
  p_attempt int,
  p_error_code text,
  p_message text,
  p_retryable boolean
) returns text
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_state text;
begin
  update public.generations g
     set preview_status = 'failed',
         preview_next_attempt_at = public.preview_retry_at(p_retryable, g.preview_attempts),
         error = p_message,
         preview_error_code = p_error_code,
         preview_started_at = null
   where g.id = p_generation_id
     and g.preview_status = 'processing'
     and g.preview_attempts = p_attempt
  returning case when g.preview_next_attempt_at is not null then 'retry' else 'failed' end
    into v_state;
  return v_state;  -- null when fenced
end
$$;
comment on function public.fail_preview(uuid, int, text, text, boolean) is
  'Fails the claim: ''retry'' (retryable, under the cap: due at now() + preview_backoff(attempt)), ''failed'' (terminal or cap), null when fenced. Sets error = message. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- reset_preview_for_retry (backfill --retry-failed), reset_preview_for_rerender (--stale)
-- ---------------------------------------------------------------------------------------
-- A row back to `none` with a fresh attempt budget, for the backfill to claim again: a failed
-- row (terminal or waiting), or a ready preview made by another renderer or other settings.
-- No worker holds a failed or ready row, so resetting the fencing counter is safe. A re-render
-- keeps the old objects until the new ones overwrite them (the same paths), so the library
-- never shows a missing preview meanwhile. The dispatch trigger is muted for this one
-- statement: the caller (the backfill) claims the row itself.
create or replace function public.reset_preview_to_none(
  p_generation_id uuid,
  p_from text,               -- 'failed' or 'ready'
  p_keep_version text default null  -- with 'ready': a preview of this version is left alone
) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_found boolean;
  v_skip text := coalesce(current_setting('app.skip_preview_dispatch', true), '');
begin
  if p_from not in ('failed', 'ready') then
    raise exception 'reset_preview_to_none: p_from must be failed or ready, not %', p_from;
  end if;
  perform set_config('app.skip_preview_dispatch', 'on', true);
  update public.generations g
     set preview_status = 'none',
         preview_attempts = 0,
         preview_expired_leases = 0,
         preview_next_attempt_at = null,
         preview_started_at = null,
         preview_error_code = null,
         error = null
   where g.id = p_generation_id
     and g.preview_status = p_from
     and (p_from = 'failed' or g.preview_version is distinct from p_keep_version);
  v_found := found;
  perform set_config('app.skip_preview_dispatch', v_skip, true);
  return v_found;
end
$$;
comment on function public.reset_preview_to_none(uuid, text, text) is
  'failed, or ready with a preview_version other than p_keep_version → none with attempts 0. Does not queue a generate-preview request: the caller claims. SECURITY DEFINER: service only.';

create or replace function public.reset_preview_for_retry(p_generation_id uuid) returns boolean
language sql volatile security definer set search_path = ''
as $$ select public.reset_preview_to_none(p_generation_id, 'failed') $$;
comment on function public.reset_preview_for_retry(uuid) is
  'failed → none with attempts 0 (backfill --retry-failed; the caller claims). SECURITY DEFINER: service only.';

create or replace function public.reset_preview_for_rerender(p_generation_id uuid, p_version text) returns boolean
language sql volatile security definer set search_path = ''
as $$ select public.reset_preview_to_none(p_generation_id, 'ready', p_version) $$;
comment on function public.reset_preview_for_rerender(uuid, text) is
  'ready with a preview_version other than p_version → none, attempts 0 (backfill --stale; the caller claims). SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- preview_dispatches: requests queued for generate-preview and not yet known to be lost
-- ---------------------------------------------------------------------------------------
-- A request may wait a while before a worker takes it (pg_net's queue, then the functions'
-- own); a sweep that re-sent every row still `none` a minute later doubled the load exactly
-- when the workers were behind. Each dispatch is remembered (dispatch_preview, migration
-- 000300); the sweep re-sends a `none` row only when nothing was queued for it within
-- preview_redispatch_after(). The table is UNLOGGED like pg_net's queue: a crash that
-- empties the queue (the requests are lost) empties this too, so exactly what a crash lost is
-- sent again at the next sweep.
create unlogged table if not exists public.preview_dispatches (
  generation_id uuid primary key,
  dispatched_at timestamptz not null default now()
);
comment on table public.preview_dispatches is
  'generate-preview requests queued (by the trigger or the sweep), per row: the sweep does not re-send a none row within preview_redispatch_after(). UNLOGGED, as pg_net''s queue. Service only.';
alter table public.preview_dispatches enable row level security;
revoke all on table public.preview_dispatches from public, anon, authenticated;
grant select, insert, update, delete on table public.preview_dispatches to service_role;

create or replace function public.preview_redispatch_after() returns interval
language sql immutable parallel safe
as $$ select interval '2 minutes' $$;
comment on function public.preview_redispatch_after() is
  'How long a queued generate-preview request is given before the sweep sends another for a row still none.';

-- ---------------------------------------------------------------------------------------
-- sweep_previews (read-only)
-- ---------------------------------------------------------------------------------------
create or replace function public.sweep_previews(
  p_limit int default 100,
  p_grace interval default '1 minute'
) returns table (id uuid, reason text)
language sql stable
security definer
set search_path = ''
as $$
  select s.id, s.reason
  from (
    select g.id, 'lost_webhook'::text as reason, g.updated_at as since
      from public.generations g
     where public.has_previewable_asset(g)
       and coalesce(g.preview_status, 'none') = 'none'
       and g.updated_at < now() - p_grace
       -- a request queued recently may only be waiting for a worker
       and not exists (select 1 from public.preview_dispatches d
                        where d.generation_id = g.id and d.dispatched_at > now() - public.preview_redispatch_after())
       -- Only rows that became eligible within the last day: on an existing table the whole
       -- history is `none`, and that is the backfill's job (with its own limit and
       -- concurrency), not a flood of pg_net requests from the minute job.
       and g.updated_at > now() - interval '1 day'
    union all
    select g.id, 'lease_expired', coalesce(g.preview_started_at, g.updated_at)
      from public.generations g
     where public.has_previewable_asset(g)
       and public.preview_lease_takeover_allowed(g)
    union all
    select g.id, 'retry_due', g.preview_next_attempt_at
      from public.generations g
     where public.has_previewable_asset(g)
       and g.preview_status = 'failed'
       and g.preview_next_attempt_at <= now()
       and g.preview_attempts < public.preview_max_attempts()
  ) s
  order by s.since, s.id
  limit greatest(p_limit, 0)
$$;
comment on function public.sweep_previews(int, interval) is
  'Read-only: ids needing a (re)dispatch, oldest first: lost_webhook (success, none, older than grace, changed within a day: older rows are the backfill''s; nothing queued for it within preview_redispatch_after()), lease_expired, retry_due. SECURITY DEFINER: service and pg_cron.';

-- Processing rows whose lease ran out and that may not be taken over again: at the
-- expired-lease cap the input kills workers (WORKER_LIMIT), else the attempt cap was reached
-- (TIMEOUT). Both terminal, instead of processing forever. Called by the sweep.
create or replace function public.expire_preview_leases() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_count int;
begin
  update public.generations g
     set preview_status = 'failed',
         preview_next_attempt_at = null,
         preview_started_at = null,
         preview_expired_leases = g.preview_expired_leases + 1,
         preview_error_code = case when g.preview_expired_leases + 1 >= public.preview_max_expired_leases()
                                   then 'WORKER_LIMIT' else 'TIMEOUT' end,
         error = case when g.preview_expired_leases + 1 >= public.preview_max_expired_leases()
                      then format('Preview worker stopped %s times on this item (the platform''s memory or CPU limit, or a crash): not retried',
                                  g.preview_expired_leases + 1)
                      else format('Preview timed out after %s attempts', g.preview_attempts) end
   where public.preview_lease_expired(g)
     and not public.preview_lease_takeover_allowed(g);
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function public.expire_preview_leases() is
  'processing rows past the lease that may not be taken over → failed, terminal: WORKER_LIMIT at the expired-lease cap (the input kills workers), else TIMEOUT (attempt cap). SECURITY DEFINER: pg_cron / service.';

-- ---------------------------------------------------------------------------------------
-- backfill_candidates (keyset pagination)
-- ---------------------------------------------------------------------------------------
drop function if exists public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz);  -- p_stale_version was added
create or replace function public.backfill_candidates(
  p_after_created_at timestamptz,
  p_after_id uuid,
  p_limit int,
  p_type text default null,
  p_retry_failed boolean default false,
  p_since timestamptz default null,
  p_stale_version text default null
) returns table (id uuid, user_id uuid, type text, created_at timestamptz, preview_status text)
language sql stable
security definer
set search_path = ''
as $$
  select g.id, g.user_id, g.type::text, g.created_at, coalesce(g.preview_status, 'none')
    from public.generations g
   where public.has_previewable_asset(g)
     and (p_type is null or g.type = p_type)
     and (p_since is null or g.created_at >= p_since)
     and case when p_stale_version is not null
              -- --stale: ready previews another renderer or other settings made
              then g.preview_status = 'ready' and g.preview_version is distinct from p_stale_version
              else public.preview_claimable(g) or (coalesce(p_retry_failed, false) and g.preview_status = 'failed') end
     and (p_after_created_at is null
          or (g.created_at, g.id) > (p_after_created_at, coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid)))
   order by g.created_at, g.id
   limit greatest(coalesce(p_limit, 100), 0)
$$;
comment on function public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text) is
  'Backfill page: claimable rows (preview_claimable: none/NULL, due retries, an earlier system''s failures, expired leases; every failed row with p_retry_failed), or with p_stale_version the ready rows of another preview_version; after the (created_at, id) cursor, oldest first. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- Asset change → preview reset (BEFORE UPDATE, runs after the guard, before touch)
-- ---------------------------------------------------------------------------------------
-- Decision: paths, size and thumbhash are CLEARED (they describe the old asset; the
-- library falls back to the asset until the new preview is ready; the objects themselves
-- are overwritten by the next render, same deterministic path). original_path is kept
-- (a platform column; generate-preview overwrites it when it copies the new original).
-- Attempts go back to 0, except while a worker holds the row (`processing`): then the
-- counter is kept so the next claim gets a higher attempt and the old worker stays fenced.
create or replace function public.generations_reset_preview_on_asset_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.asset_url is distinct from old.asset_url
     and old.asset_url is not null
     and new.preview_status is not distinct from old.preview_status then
    if old.preview_status = 'failed' then
      new.error := null;  -- it was the preview's error
    end if;
    if old.preview_status <> 'processing' then
      new.preview_attempts := 0;
    end if;
    new.preview_expired_leases := 0;  -- a new asset has killed no worker yet
    new.preview_status := 'none';
    new.preview_path := null;
    new.poster_path := null;
    new.preview_width := null;
    new.preview_height := null;
    new.preview_thumbhash := null;
    new.preview_error_code := null;
    new.preview_started_at := null;
    new.preview_next_attempt_at := null;
  end if;
  return new;
end
$$;

drop trigger if exists generations_b_reset_preview_on_asset_change on public.generations;
create trigger generations_b_reset_preview_on_asset_change
  before update of asset_url on public.generations
  for each row execute function public.generations_reset_preview_on_asset_change();

-- ---------------------------------------------------------------------------------------
-- Guard: API roles never write what the pipeline trusts
-- ---------------------------------------------------------------------------------------
-- Locally anon/authenticated have no write policy, but a platform's table may have its own,
-- and production has one for everybody ("Service can update all generations": FOR UPDATE
-- USING (true), no role). Whatever the policies say, the columns the pipeline trusts are
-- written only by the service role and the functions above (which run as their owner):
--   - the source: asset_url, result_urls, result_url, original_path (original_path also names
--     the object the library signs for the owner);
--   - status and task_id (which row a KIE result lands on), the model columns (the KIE family);
--   - every preview_*, poster_* and animated_* column.
-- A client that could change them would make the service fetch, store and render a file of
-- its choosing as another user's picture. Columns are compared through the row's JSON, so the
-- guard covers whichever of them the table has. A client INSERT may not start a row in a state
-- the pipeline acts on (a success status, a task id, a source, preview state); the model
-- columns are the client's to set at INSERT (production's are NOT NULL).
create or replace function public.generations_guard_preview_columns() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_new jsonb;
  v_old jsonb;
  v_column text;
begin
  if current_user not in ('anon', 'authenticated') then
    return new;
  end if;
  v_new := to_jsonb(new);
  if tg_op = 'INSERT' then
    select k into v_column
      from jsonb_each(v_new) as e(k, v)
     where (k in ('asset_url', 'result_urls', 'result_url', 'original_path', 'task_id', 'poster_path', 'animated_path', 'animated_status')
            or k like 'preview\_%' or k like 'animated\_%')
       and v not in ('null'::jsonb, '[]'::jsonb, '0'::jsonb, '"none"'::jsonb)
     limit 1;
    if v_column is null and public.generation_succeeded(new.status::text) then
      v_column := 'status';
    end if;
  else
    v_old := to_jsonb(old);
    select k into v_column
      from jsonb_each(v_new) as e(k, v)
     where (k in ('asset_url', 'result_urls', 'result_url', 'original_path', 'status', 'task_id',
                  'model', 'model_id', 'model_name')
            or k like 'preview\_%' or k like 'poster\_%' or k like 'animated\_%')
       and v is distinct from v_old -> k
     limit 1;
  end if;
  if v_column is not null then
    raise exception 'generations.% is written by the service only', v_column
      using errcode = '42501',
            hint = 'The preview pipeline trusts this column; clients cannot set it, whatever the table''s policies allow.';
  end if;
  return new;
end
$$;

drop trigger if exists generations_a_guard_preview_columns on public.generations;
create trigger generations_a_guard_preview_columns
  before insert or update on public.generations
  for each row execute function public.generations_guard_preview_columns();

-- ---------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------
revoke all on function public.claim_preview(uuid, interval) from public, anon, authenticated;
revoke all on function public.complete_preview(uuid, int, text, int, int, text, text, text) from public, anon, authenticated;
revoke all on function public.fail_preview(uuid, int, text, text, boolean) from public, anon, authenticated;
revoke all on function public.reset_preview_to_none(uuid, text, text) from public, anon, authenticated;
revoke all on function public.reset_preview_for_retry(uuid) from public, anon, authenticated;
revoke all on function public.reset_preview_for_rerender(uuid, text) from public, anon, authenticated;
revoke all on function public.sweep_previews(int, interval) from public, anon, authenticated;
revoke all on function public.expire_preview_leases() from public, anon, authenticated;
revoke all on function public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text) from public, anon, authenticated;
revoke all on function public.generations_touch_updated_at() from public, anon, authenticated;
revoke all on function public.generations_reset_preview_on_asset_change() from public, anon, authenticated;
revoke all on function public.generations_guard_preview_columns() from public, anon, authenticated;

grant execute on function public.claim_preview(uuid, interval) to service_role;
grant execute on function public.complete_preview(uuid, int, text, int, int, text, text, text) to service_role;
grant execute on function public.fail_preview(uuid, int, text, text, boolean) to service_role;
grant execute on function public.reset_preview_to_none(uuid, text, text) to service_role;
grant execute on function public.reset_preview_for_retry(uuid) to service_role;
grant execute on function public.reset_preview_for_rerender(uuid, text) to service_role;
grant execute on function public.sweep_previews(int, interval) to service_role;
grant execute on function public.expire_preview_leases() to service_role;
grant execute on function public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text) to service_role;
-- The constants and the pure rules (no SECURITY DEFINER: they read only the row they are
-- given) are harmless to call.
grant execute on function public.preview_max_attempts(), public.preview_backoff(int), public.preview_lease(),
  public.preview_max_expired_leases(), public.preview_redispatch_after(), public.preview_kind(text),
  public.preview_object_path(uuid, uuid, text), public.original_copy_stem(uuid, uuid), public.animated_preview_path(uuid, uuid), public.generation_succeeded(text),
  public.kie_task_running(text), public.first_result_url(jsonb) to service_role, authenticated, anon;
grant execute on function public.preview_source_url(public.generations), public.generation_model(public.generations),
  public.preview_skip_reason(public.generations), public.has_previewable_asset(public.generations),
  public.preview_claimable(public.generations, interval), public.preview_lease_takeover_allowed(public.generations, interval),
  public.preview_lease_expired(public.generations, interval)
  to service_role;
-- the library reads it as the signed-in user (RLS decides which rows)
grant execute on function public.preview_image_path(public.generations) to service_role, authenticated;
