-- Baseline 5/10, lifecycle: what happens to a row's preview work and objects when the row changes
-- or goes, and the backfill's view of the table.
--
-- On a real project rows of storage.objects cannot be deleted with SQL (only the Storage API
-- deletes the file with its row), so the database queues a delete_object job per object, in the
-- transaction that made it unneeded, and a worker deletes it through the Storage API. Only objects
-- at this system's deterministic paths of the row are ever queued: never a file we did not make
-- (production's `{user}/image/…` originals). Re-runnable.

-- ---------------------------------------------------------------------------------------
-- A new asset supersedes the row's preview work (BEFORE UPDATE OF asset_url: after the guard,
-- before the touch)
-- ---------------------------------------------------------------------------------------
-- Paths, size and thumbhash are CLEARED (they describe the old asset; the library falls back to
-- the asset until the new preview is ready; the objects are overwritten by the next render at the
-- same deterministic paths). original_path is kept (a platform column; generate-preview overwrites
-- it when it copies the new original). The row's live preview and animated jobs are cancelled (a
-- worker holding one is fenced); the old clip is queued for deletion and asked for again after the
-- new poster (PREVIEW_ANIMATED on). The enqueue trigger then queues the new preview job.
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
    -- the old asset's clip goes (after two leases, as a replaced original: a new clip written
    -- there by then is referenced again and kept); with PREVIEW_ANIMATED off nothing rewrites it
    if old.animated_path = public.animated_preview_path(old.user_id, old.id) then
      perform public.queue_object_deletions(array[old.animated_path], old.id, 'replaced', public.preview_lease() * 2);
    end if;
    if old.preview_status = 'failed' then
      new.error := null;  -- it was the preview's error
    end if;
    new.preview_status := 'none';
    new.preview_path := null;
    new.poster_path := null;
    new.preview_width := null;
    new.preview_height := null;
    new.preview_thumbhash := null;
    new.preview_error_code := null;
    new.animated_status := null;
    new.animated_path := null;
    new.animated_error_code := null;
  end if;
  return new;
end
$$;

drop trigger if exists generations_b_reset_preview_on_asset_change on public.generations;
create trigger generations_b_reset_preview_on_asset_change
  before update of asset_url on public.generations
  for each row execute function public.generations_reset_preview_on_asset_change();

-- ---------------------------------------------------------------------------------------
-- A deleted row (directly, or by its user's cascade): its pending work cancelled, its objects
-- queued for deletion, in the same transaction; one wake per deleting statement.
-- ---------------------------------------------------------------------------------------
create or replace function public.generations_on_delete() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.cancel_preview_jobs(old.id, array['preview', 'animated']);
  perform public.queue_object_deletions(public.preview_owned_objects(old), old.id, 'row_deleted');
  return null;
end
$$;

drop trigger if exists generations_on_delete on public.generations;
create trigger generations_on_delete
  after delete on public.generations
  for each row execute function public.generations_on_delete();

create or replace function public.generations_wake_after_delete() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.wake_preview_workers();
  return null;
exception when others then
  raise warning 'generations_wake_after_delete: %', sqlerrm;  -- the sweep wakes them
  return null;
end
$$;

drop trigger if exists generations_wake_after_delete on public.generations;
create trigger generations_wake_after_delete
  after delete on public.generations
  for each statement execute function public.generations_wake_after_delete();

-- An original copy of ours that the row no longer points at (a new asset replaced it:
-- apply_kie_result clears it, the preview job writes the new copy's path, the app may point
-- original_path elsewhere) is queued, due after two leases. AFTER UPDATE OF original_path only:
-- the app's statements keep their results.
create or replace function public.generations_queue_replaced_original() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.original_path is distinct from new.original_path
     and old.original_path like public.original_copy_stem(old.user_id, old.id) || '.%' then
    perform public.queue_object_deletions(array[old.original_path], old.id, 'replaced', public.preview_lease() * 2);
  end if;
  return null;
end
$$;

drop trigger if exists generations_queue_replaced_original on public.generations;
create trigger generations_queue_replaced_original
  after update of original_path on public.generations
  for each row execute function public.generations_queue_replaced_original();

-- ---------------------------------------------------------------------------------------
-- Orphans: objects at our paths whose row is gone (deleted before this system, or while a worker
-- was still writing)
-- ---------------------------------------------------------------------------------------
create or replace function public.preview_orphan_objects(p_limit int default 1000, p_user_id uuid default null)
returns table (path text, size bigint, created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  select o.name, (o.metadata ->> 'size')::bigint, o.created_at
    from storage.objects o
   where o.bucket_id = public.preview_bucket()
     and (p_user_id is null or o.name like p_user_id || '/%')
     and o.name ~ '^[0-9a-f-]{36}/(previews/[0-9a-f-]{36}_preview\.(webp|mp4)|posters/[0-9a-f-]{36}_poster\.webp|originals/[0-9a-f-]{36}\.[a-z0-9]+)$'
     and not exists (
       select 1 from public.generations g
        where g.id = substring(o.name from '/([0-9a-f-]{36})[_.]')::uuid
          and g.user_id::text = split_part(o.name, '/', 1))
   order by o.created_at, o.name
   limit greatest(coalesce(p_limit, 1000), 0)
$$;
comment on function public.preview_orphan_objects(int, uuid) is
  'Objects at this system''s paths ({user}/previews/{id}_preview.webp|.mp4, posters, originals; of one user when given) whose generation row no longer exists. Read-only. SECURITY DEFINER: service only (npm run orphans, doctor).';

-- ---------------------------------------------------------------------------------------
-- The backfill's pages (keyset pagination, oldest first)
-- ---------------------------------------------------------------------------------------
-- Rows waiting for a preview (preview_wanted: none or NULL, e.g. the history before this system),
-- an earlier system's rows stuck in processing or failed without a job of ours (LENSROOM: its
-- worker left them), every failed row with p_retry_failed, or with p_stale_version the ready rows
-- of another preview_version.
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
              then g.preview_status = 'ready' and g.preview_version is distinct from p_stale_version
              when coalesce(p_retry_failed, false) and g.preview_status = 'failed' then true
              else coalesce(g.preview_status, 'none') <> 'ready'
                   and not exists (select 1 from public.preview_jobs j
                                    where j.generation_id = g.id and j.kind = 'preview' and j.state in ('queued', 'running'))
                   and (coalesce(g.preview_status, 'none') <> 'failed' or g.preview_error_code is null)
                   -- an earlier worker's claim is given a lease from its last write, as ours are
                   and (coalesce(g.preview_status, 'none') <> 'processing' or g.updated_at + public.preview_lease() < now())
         end
     and (p_after_created_at is null
          or (g.created_at, g.id) > (p_after_created_at, coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid)))
   order by g.created_at, g.id
   limit greatest(coalesce(p_limit, 100), 0)
$$;
comment on function public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text) is
  'Backfill page after the (created_at, id) cursor, oldest first: rows without a preview or a job of ours (none/NULL, an earlier system''s processing or failed rows), every failed row with p_retry_failed, or with p_stale_version the ready rows of another preview_version. SECURITY DEFINER: service only.';

-- A row the backfill names: one waiting for a preview gets its job; an earlier system's row
-- (processing past a lease from its last write, or failed without a code of ours) goes back to
-- `none` with a job. Rows with a job of ours are left to it (the live job is returned).
create or replace function public.adopt_preview(p_generation_id uuid) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.generations g
     set preview_status = 'none',
         error = case when g.preview_status = 'failed' then null else g.error end  -- the earlier system's preview error
   where g.id = p_generation_id
     and public.has_previewable_asset(g)
     and ((g.preview_status = 'processing' and g.updated_at + public.preview_lease() < now())
          or (g.preview_status = 'failed' and g.preview_error_code is null))
     and not exists (select 1 from public.preview_jobs j where j.generation_id = g.id and j.kind = 'preview' and j.state in ('queued', 'running'));
  return public.queue_preview(p_generation_id);
end
$$;
comment on function public.adopt_preview(uuid) is
  'A row waiting for a preview, or an earlier system''s processing/failed row without a job of ours, → none with a preview job (the backfill). SECURITY DEFINER: service only.';

-- backfill --animated: ready videos never asked for, or whose clip failed, oldest first.
create or replace function public.animated_candidates(
  p_after_created_at timestamptz, p_after_id uuid, p_limit int, p_since timestamptz default null
) returns table (id uuid, user_id uuid, type text, created_at timestamptz, preview_status text)
language sql stable
security definer
set search_path = ''
as $$
  select g.id, g.user_id, g.type::text, g.created_at, coalesce(g.animated_status, 'none')
    from public.generations g
   where public.preview_kind(g.type::text) = 'video'
     and g.preview_status = 'ready'
     and (g.animated_status is null or g.animated_status = 'failed')
     and (p_since is null or g.created_at >= p_since)
     and (p_after_created_at is null
          or (g.created_at, g.id) > (p_after_created_at, coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid)))
   order by g.created_at, g.id
   limit greatest(coalesce(p_limit, 100), 0)
$$;
comment on function public.animated_candidates(timestamptz, uuid, int, timestamptz) is
  'backfill --animated: ready videos whose clip was never asked for or failed, after the cursor, oldest first. SECURITY DEFINER: service only.';

revoke all on function public.generations_reset_preview_on_asset_change(), public.generations_on_delete(),
  public.generations_wake_after_delete(), public.generations_queue_replaced_original(),
  public.preview_orphan_objects(int, uuid), public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text),
  public.adopt_preview(uuid), public.animated_candidates(timestamptz, uuid, int, timestamptz)
  from public, anon, authenticated;
grant execute on function public.preview_orphan_objects(int, uuid),
  public.backfill_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text),
  public.adopt_preview(uuid), public.animated_candidates(timestamptz, uuid, int, timestamptz)
  to service_role;
