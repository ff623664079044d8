-- Hostile tenants, round three (issue "Hostile input and hostile tenants, round three"): identity
-- columns no client may change, client rows that cannot ask for work the deployment turned off,
-- deletions that never take an object another row still shows, and operator commands that
-- survive any object name. Re-runnable.

-- ---------------------------------------------------------------------------------------
-- The guard, with identity and only true defaults at INSERT
-- ---------------------------------------------------------------------------------------
-- As in 20261203101200_app_modes.sql, plus:
--   - UPDATE may not change id or user_id for anon and signed-in users: under an app policy that
--     lets a user update rows without an owner check in WITH CHECK (or any row), a user moved
--     another user's row, and with it the objects this system writes at its owner's paths, to
--     themselves. Whatever the app's policies say, a row stays its owner's.
--   - At INSERT, this system's columns may hold only their defaults: null, and 'none' for
--     preview_status. A client row with animated_status = 'none' asked for the animated step,
--     which the deployment may have turned off (PREVIEW_ANIMATED), and which only the poster's
--     completion asks for.
create or replace function public.generations_guard_preview_columns() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_new jsonb;
  v_old jsonb;
  v_column text;
  v_guarded text[] := public.preview_own_columns();
begin
  if current_user not in ('anon', 'authenticated') then
    return new;
  end if;
  v_new := to_jsonb(new);
  if tg_op = 'INSERT' then
    select k into v_column
      from jsonb_each(v_new) as e(k, v)
     where k = any(v_guarded)
       and v <> 'null'::jsonb
       and not (k = 'preview_status' and v = '"none"'::jsonb)
     limit 1;
  else
    v_old := to_jsonb(old);
    select k into v_column
      from jsonb_each(v_new) as e(k, v)
     where k = any(v_guarded || array['id', 'user_id'])
       and v is distinct from v_old -> k
     limit 1;
  end if;
  if v_column is not null then
    raise exception 'generations.% is written by the service only', v_column
      using errcode = '42501',
            hint = case when v_column in ('id', 'user_id')
                        then 'A row stays its owner''s: clients cannot move it, whatever the table''s policies allow.'
                        else 'This column belongs to the preview system; clients cannot set it, whatever the table''s policies allow.' end;
  end if;
  return new;
end
$$;
revoke all on function public.generations_guard_preview_columns() from public, anon, authenticated;

-- ---------------------------------------------------------------------------------------
-- Deletions: never an object another row still names
-- ---------------------------------------------------------------------------------------
-- A deleted row's objects are queued for deletion; an app that copied a row (or pointed another
-- row at the same stored file) still shows them through the other row. An object is referenced
-- while any row of its owner (the path's first folder: the user_id index finds them) names it as
-- preview, poster, clip or original, or as the storage URL in asset_url.
create or replace function public.preview_object_referenced(p_path text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select p_path ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/'
     and exists (
       select 1 from public.generations g
        where g.user_id = split_part(p_path, '/', 1)::uuid
          and (p_path in (g.preview_path, g.poster_path, g.original_path, g.animated_path)
               or g.asset_url like '%/' || public.preview_bucket() || '/' || p_path))
$$;
comment on function public.preview_object_referenced(text) is
  'Whether any row of the object''s owner names p_path (preview, poster, clip, original, or asset_url''s storage URL): a delete_object job for it is dropped. SECURITY DEFINER: the job functions.';
revoke all on function public.preview_object_referenced(text) from public, anon, authenticated;

-- preview_job_input, as in 20261203101200_app_modes.sql, with that check for deletions.
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
-- Orphans: any object name
-- ---------------------------------------------------------------------------------------
-- `[0-9a-f-]{36}` also matched 36 dashes, and the ::uuid cast then failed: npm run orphans and
-- doctor stopped on such a name. A path matches only with real uuids now.
create or replace function public.preview_orphan_objects(p_limit int default 1000, p_user_id uuid default null)
returns table (path text, size bigint, created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  with ours as (
    select o.name, o.metadata, o.created_at,
           regexp_match(o.name,
             '^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(?:previews/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_preview\.(?:webp|mp4)|posters/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_poster\.webp|originals/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z0-9]+)$') as m
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
