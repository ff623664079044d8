-- Audio previews (issue 26, part 1): a music or voice generation (type audio, KIE's Suno family)
-- gets a preview like a photo: preview_path is its tile, KIE's cover image when it sent one (Suno's
-- image_url, stored in preview_cover_url by apply_kie_result), else the waveform. The waveform
-- tile is made either way and kept beside the cover at {user}/previews/{id}_waveform.webp; the
-- track's length goes to preview_duration_ms. The audio itself is the original copy
-- ({user}/originals/{id}.mp3), which the library signs for its play control.
--
-- Until now audio rows were not previewable (preview_skip_reason 'audio'). From this migration on
-- they are preview_wanted like photos: the trigger queues new ones, the backfill old ones.

alter table public.generations add column if not exists preview_waveform_path text;
alter table public.generations add column if not exists preview_duration_ms integer;
comment on column public.generations.preview_waveform_path is
  'An audio row''s waveform tile ({user}/previews/{id}_waveform.webp), written by the preview job; preview_path is the tile shown (the cover, else this).';
comment on column public.generations.preview_duration_ms is
  'An audio row''s length in ms, measured by the preview job from the decoded track.';

-- Which preview a generation type gets: 'image' (preview_path), 'video' (poster_path) or 'audio'
-- (preview_path: the cover or the waveform).
create or replace function public.preview_kind(p_type text) returns text
language sql immutable parallel safe
as $$
  select case when p_type in ('photo', 'product') then 'image' when p_type = 'video' then 'video'
              when p_type = 'audio' then 'audio' end
$$;
comment on function public.preview_kind(text) is
  'image for photo and product (preview_path), video for video (poster_path), audio for audio (preview_path: the cover, else the waveform), null for anything else.';

create or replace function public.preview_object_path(p_user_id uuid, p_id uuid, p_kind text) returns text
language sql immutable parallel safe
as $$
  select case p_kind
    when 'image' then p_user_id || '/previews/' || p_id || '_preview.webp'
    when 'audio' then p_user_id || '/previews/' || p_id || '_preview.webp'
    when 'video' then p_user_id || '/posters/' || p_id || '_poster.webp'
  end
$$;
comment on function public.preview_object_path(uuid, uuid, text) is
  'Where the preview of a row is written: {user}/previews/{id}_preview.webp (image, audio) or {user}/posters/{id}_poster.webp (video).';

create or replace function public.audio_waveform_path(p_user_id uuid, p_id uuid) returns text
language sql immutable parallel safe
as $$ select p_user_id || '/previews/' || p_id || '_waveform.webp' $$;
comment on function public.audio_waveform_path(uuid, uuid) is
  'An audio row''s waveform tile: {user}/previews/{id}_waveform.webp.';

create or replace function public.preview_skip_reason(g public.generations) returns text
language sql stable parallel safe
as $$
  select case
    when public.preview_kind(g.type::text) is null then 'not_visual_type'
    when g.status::text = 'cancelled' then 'cancelled'
    when g.status::text = 'failed' then 'generation_failed'
    when public.kie_task_running(g.status::text) then 'generating'
    when not public.generation_succeeded(g.status::text) then 'unknown_status'
    when nullif(g.original_path, '') is null and public.preview_source_url(g) is null then 'no_source'
  end
$$;
comment on function public.preview_skip_reason(public.generations) is
  'Null when the row needs a preview and can have one (success-like, photo/product/video/audio, a source); else why not: not_visual_type, cancelled, generation_failed, generating, unknown_status, no_source.';

create or replace function public.preview_image_path(g public.generations) returns text
language sql stable parallel safe
as $$
  select case public.preview_kind(g.type::text) when 'video' then g.poster_path
                                                 when 'image' then g.preview_path
                                                 when 'audio' then g.preview_path end
$$;
comment on function public.preview_image_path(public.generations) is
  'The preview image of the row: poster_path for a video, preview_path for a photo, product or audio row, null otherwise.';

create or replace function public.preview_owned_objects(g public.generations) returns text[]
language sql stable parallel safe
as $$
  select array_remove(array[
    public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
    case when g.animated_path = public.animated_preview_path(g.user_id, g.id) then g.animated_path end,
    case when g.preview_waveform_path = public.audio_waveform_path(g.user_id, g.id) then g.preview_waveform_path end,
    case when g.original_path like public.original_copy_stem(g.user_id, g.id) || '.%' then g.original_path end
  ], null)
$$;
comment on function public.preview_owned_objects(public.generations) is
  'The objects of ours a row has: its preview or poster path, its animated clip and its waveform when ours, its original copy when ours.';

create or replace function public.preview_references(g public.generations, p_path text) returns boolean
language sql stable parallel safe
as $$ select p_path in (g.preview_path, g.poster_path, g.original_path, g.animated_path, g.preview_waveform_path) $$;
comment on function public.preview_references(public.generations, text) is
  'The row names p_path in preview_path, poster_path, original_path, animated_path or preview_waveform_path.';

-- What a completed job writes on its row. preview: the path in preview_path (image, audio) or
-- poster_path (video), size, thumbhash, the original copy, the version; for audio also the
-- waveform tile and the length.
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
           preview_path = case when public.preview_kind(g.type::text) in ('image', 'audio') then p_result ->> 'path' else g.preview_path end,
           poster_path = case when public.preview_kind(g.type::text) = 'video' then p_result ->> 'path' else g.poster_path end,
           preview_waveform_path = case when public.preview_kind(g.type::text) = 'audio' then p_result ->> 'waveformPath' else g.preview_waveform_path end,
           preview_duration_ms = case when public.preview_kind(g.type::text) = 'audio' then (p_result ->> 'durationMs')::int else g.preview_duration_ms end,
           preview_width = (p_result ->> 'width')::int,
           preview_height = (p_result ->> 'height')::int,
           preview_thumbhash = p_result ->> 'thumbhash',
           original_path = coalesce(p_result ->> 'originalPath', g.original_path),
           preview_version = p_result ->> 'version',
           preview_error_code = null,
           preview_error = null
     where g.id = p_generation_id;
  elsif p_kind = 'animated' then
    update public.generations g
       set animated_status = 'ready', animated_path = p_result ->> 'path', animated_error_code = null
     where g.id = p_generation_id;
  elsif p_kind = 'relay' then
    update public.kie_callback_relays r
       set delivered_at = now(), response_status = (p_result ->> 'status')::int
     where r.task_id = p_result ->> 'taskId';
  end if;
end
$$;

-- preview_job_input, as in 20261203101400_tenant_guards.sql, with an audio row's waveform path.
create or replace function public.preview_job_input(j public.preview_jobs) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  g public.generations%rowtype;
  r public.kie_callback_relays%rowtype;
  v_url text;
begin
  if j.kind = 'relay' then
    select s.relay_url into v_url from public.preview_settings s where s.mode = 'kie_owner';
    select * into r from public.kie_callback_relays k where k.task_id = j.payload ->> 'task_id';
    if v_url is null or not found or r.delivered_at is not null then
      return null;
    end if;
    return jsonb_build_object('task_id', r.task_id, 'url', v_url, 'body', r.body, 'headers', r.headers);
  end if;
  select * into g from public.generations x where x.id = j.generation_id;
  if j.kind = 'delete_object' then
    -- kept while any row of the object's owner still names it, its own row or another
    if public.preview_object_referenced(j.payload ->> 'path') then
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
      'original_stem', public.original_copy_stem(g.user_id, g.id), 'cover_url', g.preview_cover_url)
      || case when public.preview_kind(g.type::text) = 'audio'
              then jsonb_build_object('waveform_path', public.audio_waveform_path(g.user_id, g.id)) else '{}' end;
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

-- The columns only this system writes: the audio ones join them (the guard refuses them to API
-- roles, a mapping may not name them).
create or replace function public.preview_own_columns() returns text[]
language sql immutable parallel safe
as $$
  select array['preview_path', 'poster_path', 'preview_status', 'preview_error_code', 'preview_error',
               'preview_width', 'preview_height', 'preview_thumbhash', 'preview_version', 'preview_cover_url',
               'animated_path', 'animated_status', 'animated_error_code',
               'preview_waveform_path', 'preview_duration_ms']
$$;
comment on function public.preview_own_columns() is
  'The generations columns only this system writes (the guard refuses them to API roles). The checklist names preview_status, preview_path and poster_path; an app that has a column of one of these names shares it (doctor says so before the migrations).';

-- Orphans: the waveform tile is one of our names too.
create or replace function public.preview_orphan_objects(p_limit int default 1000, p_user_id uuid default null)
returns table (path text, size bigint, created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  with ours as (
    select o.name, o.metadata, o.created_at,
           regexp_match(o.name,
             '^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(?:previews/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_(?:preview\.(?:webp|mp4)|waveform\.webp)|posters/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_poster\.webp|originals/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z0-9]+)$') as m
      from storage.objects o
     where o.bucket_id = public.preview_bucket()
       and (p_user_id is null or o.name like p_user_id || '/%')
  )
  select o.name, (o.metadata ->> 'size')::bigint, o.created_at
    from ours o
   where o.m is not null
     and not exists (
       select 1 from public.generations g
        where g.id = coalesce(o.m[2], o.m[3], o.m[4])::uuid
          and g.user_id = o.m[1]::uuid)
   order by o.created_at, o.name
   limit greatest(coalesce(p_limit, 1000), 0)
$$;

revoke all on function public.audio_waveform_path(uuid, uuid) from public, anon, authenticated;
grant execute on function public.audio_waveform_path(uuid, uuid) to service_role;
