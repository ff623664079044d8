-- Preview sizes (issue 26, part 2): the preview in the first of PREVIEW_SIZES (512 px long side
-- by default) stays where it was (preview_path or poster_path, preview_width/height); each larger
-- size (1024 by default: screens of twice the density) is written beside it at
-- {preview path without .webp}_{side}.webp and listed in preview_sizes:
--   [{"side": 1024, "path": "{user}/previews/{id}_preview_1024.webp", "width": 1024, "height": 683}]
-- A picture no larger than the first box has no larger size (an empty list). The sizes are the
-- worker's configuration; their paths are the database's: a result naming another path is refused.
--
-- Also here, because sizes are objects of the row like these: preview_object_referenced asks
-- preview_references (it missed the waveform tile), and a new asset clears the audio columns too.

alter table public.generations add column if not exists preview_sizes jsonb;

-- The larger sizes' path without _{side}.webp: the preview's path without .webp.
create or replace function public.preview_size_stem(p_user_id uuid, p_id uuid, p_kind text) returns text
language sql immutable parallel safe
as $$ select regexp_replace(public.preview_object_path(p_user_id, p_id, p_kind), '\.webp$', '') $$;
comment on function public.preview_size_stem(uuid, uuid, text) is
  'A larger preview size is written at preview_size_stem || ''_'' || side || ''.webp'': {user}/previews/{id}_preview_1024.webp, {user}/posters/{id}_poster_1024.webp.';

-- The paths of a row's larger sizes that are at its own names (never a path the row was given).
create or replace function public.preview_size_paths(g public.generations) returns text[]
language sql stable parallel safe
as $$
  select coalesce(array_agg(e ->> 'path'), '{}')
    from jsonb_array_elements(case when jsonb_typeof(g.preview_sizes) = 'array' then g.preview_sizes else '[]' end) e
   where e ->> 'path' = public.preview_size_stem(g.user_id, g.id, public.preview_kind(g.type::text))
                        || '_' || (e ->> 'side') || '.webp'
$$;
comment on function public.preview_size_paths(public.generations) is
  'The objects of the row''s larger preview sizes (preview_sizes), those at its own names only.';

-- A completed job's sizes, checked: each {side, path, width, height} with the path the database
-- gives that side, ascending, larger than the preview. Anything else is a worker's bug: refused.
create or replace function public.preview_sizes_checked(g public.generations, p_sizes jsonb) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  e jsonb;
  v_last int := 0;
  v_out jsonb := '[]';
begin
  if p_sizes is null or p_sizes = 'null'::jsonb then
    return '[]';
  end if;
  if jsonb_typeof(p_sizes) <> 'array' then
    raise exception 'preview sizes must be a list, got %', p_sizes using errcode = '22023';
  end if;
  for e in select value from jsonb_array_elements(p_sizes) loop
    if jsonb_typeof(e -> 'side') <> 'number' or (e ->> 'side')::numeric <> floor((e ->> 'side')::numeric)
       or (e ->> 'side')::int <= v_last
       or e ->> 'path' is distinct from public.preview_size_stem(g.user_id, g.id, public.preview_kind(g.type::text))
                                        || '_' || (e ->> 'side') || '.webp'
       or jsonb_typeof(e -> 'width') <> 'number' or jsonb_typeof(e -> 'height') <> 'number' then
      raise exception 'preview size % is not one of this row''s sizes', e using errcode = '22023';
    end if;
    v_last := (e ->> 'side')::int;
    v_out := v_out || jsonb_build_array(jsonb_build_object(
      'side', v_last, 'path', e ->> 'path', 'width', (e ->> 'width')::int, 'height', (e ->> 'height')::int));
  end loop;
  return v_out;
end
$$;
comment on function public.preview_sizes_checked(public.generations, jsonb) is
  'A preview job''s sizes as stored in preview_sizes, or 22023 when one names a path that is not the row''s for its side (or the list is not ascending).';

create or replace function public.preview_owned_objects(g public.generations) returns text[]
language sql stable parallel safe
as $$
  select array_remove(array[
    public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
    case when g.animated_path = public.animated_preview_path(g.user_id, g.id) then g.animated_path end,
    case when g.preview_waveform_path = public.audio_waveform_path(g.user_id, g.id) then g.preview_waveform_path end,
    case when g.original_path like public.original_copy_stem(g.user_id, g.id) || '.%' then g.original_path end
  ], null) || public.preview_size_paths(g)
$$;
comment on function public.preview_owned_objects(public.generations) is
  'The objects of ours a row has: its preview or poster path and its larger sizes, its animated clip and its waveform when ours, its original copy when ours.';

create or replace function public.preview_references(g public.generations, p_path text) returns boolean
language sql stable parallel safe
as $$
  select p_path in (g.preview_path, g.poster_path, g.original_path, g.animated_path, g.preview_waveform_path)
      or p_path = any(public.preview_size_paths(g))
$$;
comment on function public.preview_references(public.generations, text) is
  'The row names p_path in preview_path, poster_path, original_path, animated_path, preview_waveform_path or preview_sizes.';

-- A delete_object job is dropped while any row of the object's owner names it: every name
-- preview_references knows (the waveform and the sizes as well), or asset_url's storage URL.
create or replace function public.preview_object_referenced(p_path text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select p_path ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/'
     and exists (
       select 1 from public.generations g
        where g.user_id = split_part(p_path, '/', 1)::uuid
          and (public.preview_references(g, p_path)
               or g.asset_url like '%/' || public.preview_bucket() || '/' || p_path))
$$;
comment on function public.preview_object_referenced(text) is
  'Whether any row of the object''s owner names p_path (preview_references, or asset_url''s storage URL): a delete_object job for it is dropped. SECURITY DEFINER: the job functions.';
revoke all on function public.preview_object_referenced(text) from public, anon, authenticated;

-- What a completed job writes on its row, as in 20261203102000_audio_previews.sql, with the sizes.
-- Sizes the row had and the new result does not (fewer sizes configured, a smaller new asset) are
-- queued for deletion after two leases, as a replaced original.
create or replace function public.preview_job_apply_result(p_kind text, p_generation_id uuid, p_result jsonb)
returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_row public.generations%rowtype;
  v_sizes jsonb;
  v_gone text[];
begin
  if p_kind = 'preview' then
    select * into v_row from public.generations x where x.id = p_generation_id for update;
    if not found then
      return;
    end if;
    v_sizes := public.preview_sizes_checked(v_row, p_result -> 'sizes');
    v_gone := public.preview_size_paths(v_row);
    update public.generations g
       set preview_status = 'ready',
           preview_path = case when public.preview_kind(g.type::text) in ('image', 'audio') then p_result ->> 'path' else g.preview_path end,
           poster_path = case when public.preview_kind(g.type::text) = 'video' then p_result ->> 'path' else g.poster_path end,
           preview_waveform_path = case when public.preview_kind(g.type::text) = 'audio' then p_result ->> 'waveformPath' else g.preview_waveform_path end,
           preview_duration_ms = case when public.preview_kind(g.type::text) = 'audio' then (p_result ->> 'durationMs')::int else g.preview_duration_ms end,
           preview_width = (p_result ->> 'width')::int,
           preview_height = (p_result ->> 'height')::int,
           preview_sizes = v_sizes,
           preview_thumbhash = p_result ->> 'thumbhash',
           original_path = coalesce(p_result ->> 'originalPath', g.original_path),
           preview_version = p_result ->> 'version',
           preview_error_code = null,
           preview_error = null
     where g.id = p_generation_id
    returning * into v_row;
    v_gone := array(select unnest(v_gone) except select unnest(public.preview_size_paths(v_row)));
    if cardinality(v_gone) > 0 then
      perform public.queue_object_deletions(v_gone, v_row.id, 'replaced', public.preview_lease() * 2);
    end if;
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
comment on function public.preview_job_apply_result(text, uuid, jsonb) is
  'Writes a completed job''s result on its row (preview: paths, size, sizes checked by preview_sizes_checked, thumbhash, original copy, version, an audio row''s waveform and length; animated: the clip; relay: delivered). Sizes no longer listed are queued for deletion. SECURITY DEFINER: complete_preview_job.';

-- preview_job_input, as in 20261203102000_audio_previews.sql, with the larger sizes' stem.
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
      'size_stem', public.preview_size_stem(g.user_id, g.id, public.preview_kind(g.type::text)),
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

-- A new asset: as in 20261203101200_app_modes.sql, and what describes the old asset's sizes and
-- audio goes too. The larger sizes are queued for deletion after two leases (as the clip: the
-- next render may write the same names again, which are then referenced and kept).
create or replace function public.generations_reset_preview_on_asset_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.asset_url is distinct from old.asset_url
     and old.asset_url is not null
     and new.preview_status is not distinct from old.preview_status then
    perform public.cancel_preview_jobs(old.id, array['preview', 'animated']);
    if old.animated_path = public.animated_preview_path(old.user_id, old.id) then
      perform public.queue_object_deletions(array[old.animated_path], old.id, 'replaced', public.preview_lease() * 2);
    end if;
    if cardinality(public.preview_size_paths(old)) > 0 then
      perform public.queue_object_deletions(public.preview_size_paths(old), old.id, 'replaced', public.preview_lease() * 2);
    end if;
    new.preview_status := 'none';
    new.preview_path := null;
    new.poster_path := null;
    new.preview_width := null;
    new.preview_height := null;
    new.preview_sizes := null;
    new.preview_thumbhash := null;
    new.preview_error_code := null;
    new.preview_error := null;
    new.preview_waveform_path := null;
    new.preview_duration_ms := null;
    new.animated_status := null;
    new.animated_path := null;
    new.animated_error_code := null;
  end if;
  return new;
end
$$;

-- The columns only this system writes: preview_sizes joins them.
create or replace function public.preview_own_columns() returns text[]
language sql immutable parallel safe
as $$
  select array['preview_path', 'poster_path', 'preview_status', 'preview_error_code', 'preview_error',
               'preview_width', 'preview_height', 'preview_thumbhash', 'preview_version', 'preview_cover_url',
               'animated_path', 'animated_status', 'animated_error_code',
               'preview_waveform_path', 'preview_duration_ms', 'preview_sizes']
$$;
comment on function public.preview_own_columns() is
  'The generations columns only this system writes (the guard refuses them to API roles). The checklist names preview_status, preview_path and poster_path; an app that has a column of one of these names shares it (doctor says so before the migrations).';

-- Orphans: the larger sizes are our names too.
create or replace function public.preview_orphan_objects(p_limit int default 1000, p_user_id uuid default null)
returns table (path text, size bigint, created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  with ours as (
    select o.name, o.metadata, o.created_at,
           regexp_match(o.name,
             '^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(?:previews/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_(?:preview\.(?:webp|mp4)|preview_[0-9]+\.webp|waveform\.webp)|posters/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_poster(?:_[0-9]+)?\.webp|originals/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z0-9]+)$') as m
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

-- the path rule is public like preview_object_path's; the rest is the system's
grant execute on function public.preview_size_stem(uuid, uuid, text) to service_role, authenticated, anon;
revoke all on function public.preview_size_paths(public.generations),
  public.preview_sizes_checked(public.generations, jsonb) from public, anon, authenticated;
grant execute on function public.preview_size_paths(public.generations),
  public.preview_sizes_checked(public.generations, jsonb) to service_role;
