-- Baseline 2/10, rules: the constants and the pure rules, each defined once. Every other file,
-- the functions' TypeScript and the scripts ask these instead of restating them.
--
-- The rule functions are plain SQL without a SET clause on purpose: only such functions are
-- inlined by the planner, and only inlined they let the partial indexes (written with the same
-- functions) apply. They name everything schema-qualified and run inside SECURITY DEFINER
-- functions whose search_path is empty, so a caller's search_path cannot steer them. Re-runnable.

-- ---------------------------------------------------------------------------------------
-- The constants of the work
-- ---------------------------------------------------------------------------------------
create or replace function public.preview_max_attempts() returns int
language sql immutable parallel safe
as $$ select 5 $$;
comment on function public.preview_max_attempts() is
  'The one attempt cap of every job kind: a retryable failure at this many attempts is terminal.';

-- least(30 s · 2^(attempt-1), 1 h): 30 s, 1 min, 2 min, 4 min, 8 min, …
create or replace function public.preview_backoff(attempt int) returns interval
language sql immutable parallel safe
as $$ select least(interval '30 seconds' * power(2, greatest(attempt, 1) - 1), interval '1 hour') $$;
comment on function public.preview_backoff(int) is
  'The one backoff: the delay before retry after failed attempt N, least(30s * 2^(N-1), 1h).';

-- The one lease: claims, lease expiry and the coverage view use it. It reads the database setting
-- app.preview_lease when set (the local test stack sets '15 seconds', as the platform's superuser,
-- so crash cases recover quickly); on a project, where postgres may not set database parameters,
-- redefine this function (in a new migration) to change the default.
create or replace function public.preview_lease() returns interval
language sql stable parallel safe
as $$
  select coalesce(nullif(current_setting('app.preview_lease', true), '')::interval, interval '2 minutes')
$$;
comment on function public.preview_lease() is
  'How long a claimed job is owned before it counts as a dead worker: app.preview_lease if set, else 2 minutes.';

-- A worker always ends its claim (complete or fail) inside the lease: downloads and renders have
-- their own timeouts. A lease that runs out means the worker died: the platform stopped it (546
-- WORKER_LIMIT: memory or CPU) or it crashed. One such death may be bad luck (a neighbour's
-- memory, a deploy); the second means this input kills workers, and trying again would only kill
-- more.
create or replace function public.preview_max_expired_leases() returns int
language sql immutable parallel safe
as $$ select 2 $$;
comment on function public.preview_max_expired_leases() is
  'Expired leases (dead workers) a job may cause before it fails WORKER_LIMIT, terminal.';

-- How many generate-preview workers the database keeps awake at once: app.preview_worker_limit if
-- set, else 2. Each drains due jobs one at a time; the platform's isolates share CPU, so more
-- concurrent requests only make more isolates die together. On a project, redefine to change.
create or replace function public.preview_worker_limit() returns int
language sql stable parallel safe
as $$
  select greatest(coalesce(nullif(current_setting('app.preview_worker_limit', true), '')::int, 2), 1)
$$;
comment on function public.preview_worker_limit() is
  'Most generate-preview workers awake at once (wake_preview_workers): app.preview_worker_limit if set, else 2.';

-- How long a sent wake counts as an awake worker before it answers (its first claim). A request
-- normally reaches a worker within seconds; one that has not by then is presumed lost (a crash, a
-- timeout) and stops holding its place.
create or replace function public.preview_wake_hold() returns interval
language sql immutable parallel safe
as $$ select interval '30 seconds' $$;
comment on function public.preview_wake_hold() is
  'How long a wake counts as an awake worker while it has not answered (no claim yet).';

-- How long a worker that answered still counts as awake while it holds no job: the moment
-- between two of its jobs, and its pause after a decline (1 s). A worker whose isolate died
-- holding no job stops counting after this, not after the hold.
create or replace function public.preview_wake_grace() returns interval
language sql immutable parallel safe
as $$ select interval '2 seconds' $$;
comment on function public.preview_wake_grace() is
  'How long a worker counts as awake after its last claim while it holds no job.';

-- How long a waker waits for another transaction's wake decision (wake_preview_workers) before
-- leaving the wakes to it: long enough for a worker's own decision (milliseconds), short enough
-- for a stall in the app's transaction to go unnoticed.
create or replace function public.preview_wake_lock_wait() returns interval
language sql immutable parallel safe
as $$ select interval '250 milliseconds' $$;
comment on function public.preview_wake_lock_wait() is
  'How long wake_preview_workers waits for the wake lock another transaction holds before waking nobody.';

-- The bucket's name, fixed (the functions use the same name: shared/config.ts PREVIEW_BUCKET).
create or replace function public.preview_bucket() returns text
language sql immutable parallel safe
as $$ select 'generations'::text $$;
comment on function public.preview_bucket() is
  'The storage bucket of originals, previews and posters (fixed; shared/config.ts PREVIEW_BUCKET says the same).';

-- ---------------------------------------------------------------------------------------
-- What gets a preview
-- ---------------------------------------------------------------------------------------
-- Production's table holds more values than the ones this system writes (LENSROOM): product shots
-- are images, older rows say `completed`/`succeeded` for success and `processing` for a running
-- task, preview_status is NULL on rows older than the preview columns, and the asset may be only
-- in result_urls (the fast-path callback) or result_url.

-- Which preview a generation type gets: 'image' (preview_path) or 'video' (poster_path).
create or replace function public.preview_kind(p_type text) returns text
language sql immutable parallel safe
as $$ select case when p_type in ('photo', 'product') then 'image' when p_type = 'video' then 'video' end $$;
comment on function public.preview_kind(text) is
  'image for photo and product (preview_path), video for video (poster_path), null for anything else (audio…).';

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

-- KIE keeps a task's record and files for about 14 days: a task still running after that will
-- never deliver a result we can download.
create or replace function public.kie_task_retention() returns interval
language sql immutable parallel safe
as $$ select interval '14 days' $$;
comment on function public.kie_task_retention() is
  'How long KIE keeps a task (and its files): a task still running after this is failed, not polled.';

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

-- The KIE model, from whichever of the platform's columns the table has (model_id, model_name) or
-- ours (model). Read through the row's JSON so this compiles on either shape.
create or replace function public.generation_model(g public.generations) returns text
language sql stable parallel safe
as $$
  select coalesce(nullif(j ->> 'model_id', ''), nullif(j ->> 'model_name', ''), nullif(j ->> 'model', ''))
    from (select to_jsonb(g) as j) r
$$;
comment on function public.generation_model(public.generations) is
  'The KIE model of a row: model_id, else model_name, else model (whichever exist).';

-- Why a row gets no preview, or null when it can have one: the one definition. A reason is a fixed
-- word, counted by preview_coverage.
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
  'preview_skip_reason(g) is null, written as a conjunction the planner can match to partial indexes: success-like, image or video type, and a source.';

-- The row waits for its preview: it can have one and none was made or is being made. The one
-- eligibility rule of the enqueue trigger, the sweep, apply_kie_result and the backfill.
create or replace function public.preview_wanted(g public.generations) returns boolean
language sql stable parallel safe
as $$ select public.has_previewable_asset(g) and coalesce(g.preview_status, 'none') = 'none' $$;
comment on function public.preview_wanted(public.generations) is
  'has_previewable_asset and preview_status none (or NULL: rows older than the preview columns).';

-- ---------------------------------------------------------------------------------------
-- The object paths, once: the worker writes where its job says, the lifecycle deletes the same.
-- ---------------------------------------------------------------------------------------
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
comment on function public.animated_preview_path(uuid, uuid) is
  'Where the animated preview of a video is written: {user}/previews/{id}_preview.mp4.';

create or replace function public.original_copy_stem(p_user_id uuid, p_id uuid) returns text
language sql immutable parallel safe
as $$ select p_user_id || '/originals/' || p_id $$;
comment on function public.original_copy_stem(uuid, uuid) is
  'The original copy''s path without its extension: {user}/originals/{id}.';

-- The row's preview image, read where the preview job wrote it: the library and the backfill's
-- report ask this instead of choosing the column themselves.
create or replace function public.preview_image_path(g public.generations) returns text
language sql stable parallel safe
as $$ select case public.preview_kind(g.type::text) when 'video' then g.poster_path when 'image' then g.preview_path end $$;
comment on function public.preview_image_path(public.generations) is
  'The preview image of the row: poster_path for a video, preview_path for a photo or product, null otherwise.';

-- The objects of a row this system made (or makes at these paths): its preview or poster, the
-- animated preview it made, and original_path when it is our copy. Never a file we did not make.
create or replace function public.preview_owned_objects(g public.generations) returns text[]
language sql stable parallel safe
as $$
  select array_remove(array[
    public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
    case when g.animated_path = public.animated_preview_path(g.user_id, g.id) then g.animated_path end,
    case when g.original_path like public.original_copy_stem(g.user_id, g.id) || '.%' then g.original_path end
  ], null)
$$;
comment on function public.preview_owned_objects(public.generations) is
  'The objects of ours a row has: its preview or poster path, its animated clip when ours, its original copy when ours.';

-- Whether a row still points at an object (a deletion of it would lose what the row shows).
create or replace function public.preview_references(g public.generations, p_path text) returns boolean
language sql stable parallel safe
as $$ select p_path in (g.preview_path, g.poster_path, g.original_path, g.animated_path) $$;
comment on function public.preview_references(public.generations, text) is
  'The row names p_path in preview_path, poster_path, original_path or animated_path.';

grant execute on function public.preview_max_attempts(), public.preview_backoff(int), public.preview_lease(),
  public.preview_max_expired_leases(), public.preview_worker_limit(), public.preview_wake_hold(),
  public.preview_wake_lock_wait(), public.preview_wake_grace(),
  public.preview_bucket(), public.preview_kind(text), public.generation_succeeded(text),
  public.kie_task_running(text), public.kie_task_retention(), public.first_result_url(jsonb),
  public.preview_object_path(uuid, uuid, text), public.animated_preview_path(uuid, uuid),
  public.original_copy_stem(uuid, uuid)
  to service_role, authenticated, anon;
grant execute on function public.preview_source_url(public.generations), public.generation_model(public.generations),
  public.preview_skip_reason(public.generations), public.has_previewable_asset(public.generations),
  public.preview_wanted(public.generations), public.preview_owned_objects(public.generations),
  public.preview_references(public.generations, text)
  to service_role;
-- the library reads it as the signed-in user (RLS decides which rows)
grant execute on function public.preview_image_path(public.generations) to service_role, authenticated;
