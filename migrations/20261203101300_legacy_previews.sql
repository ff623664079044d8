-- Legacy previews (issue: adopting onto the first user's production database). A row can be
-- `ready` and still show a blank tile: the older preview server left videos whose only preview is
-- its 4 s animated clip, an mp4 in preview_path ({user}/previews/{id}_preview.mp4), with no
-- poster; and a ready row may name an object that is not in storage (deleted, never uploaded) or a
-- path the library never signs. Until now doctor, preview_coverage and the backfill counted such a
-- row as ready and left it. This file adds:
--
--   preview_unusable_reason(g)            the one rule: null when the library shows the row's
--                                         preview image, else why not (a fixed word)
--   preview_coverage                      counts those rows under state `unusable`, by that reason
--   backfill_preview_candidates(…)        the backfill's pages: backfill_candidates plus the
--                                         unusable ready rows, each with its reason
--   requeue_unusable_preview(id)          such a row back to `none` with a fresh preview job
--
-- The render then writes the poster or preview at this system's paths, and the row is usable, so a
-- second backfill finds nothing. The old mp4 is the app's file (its library may still play it):
-- nothing here deletes it or clears preview_path, and the `error` column (the app's: why the
-- generation failed) is never written.
--
-- A new migration, not an edit of the frozen baseline. backfill_candidates keeps its definition
-- (its callers, doctor's backfill count among them, mean "rows without a ready preview"). Re-runnable:
-- create or replace only.

-- ---------------------------------------------------------------------------------------
-- The rule: is a ready row's preview something the library can show?
-- ---------------------------------------------------------------------------------------
-- It mirrors what shared/library.ts does for a ready row: it reads public.preview_image_path(g)
-- (poster_path for a video, preview_path for a photo or product), signs it only when the path is
-- in the owner's folder (`{user_id}/…`) and a key the storage client accepts (isSafeObjectKey in
-- shared/storage.ts), and the Storage API signs only an object that exists. On top of that the
-- path must name an image by its extension (webp, jpg, jpeg, png, gif): a tile is an <img>, and an
-- mp4 there is blank. Reasons, in the order they are tested:
--   legacy_video_preview  a video without a poster whose preview_path is a video file (the older
--                         server's animated preview)
--   no_image_path         no path in the column the library reads
--   not_an_image          the path's extension is not an image's
--   foreign_path          not in the owner's folder, or not a key the library signs
--   missing_object        no such object in the bucket (storage.objects)
-- Null for a usable preview, and for any row that is not `ready` or gets no preview image (audio…):
-- the question is only asked of ready rows. SECURITY DEFINER with an empty search_path: it reads
-- storage.objects, which API roles must not probe; EXECUTE is the service role's only.
create or replace function public.preview_unusable_reason(g public.generations) returns text
language sql stable
security definer
set search_path = ''
as $$
  select case
    when g.preview_status is distinct from 'ready' or public.preview_kind(g.type::text) is null then null
    when nullif(p.path, '') is null then
      case when public.preview_kind(g.type::text) = 'video' and g.preview_path ~* '\.(mp4|m4v|mov|webm)$'
           then 'legacy_video_preview' else 'no_image_path' end
    when p.path !~* '\.(webp|jpe?g|png|gif)$' then 'not_an_image'
    when not starts_with(p.path, g.user_id::text || '/')
         or p.path !~ '^[A-Za-z0-9_/!.*''() &$@=;:+,-]+$'
         or p.path ~ '(^|/)\.{0,2}(/|$)' then 'foreign_path'
    when not exists (select 1 from storage.objects o
                      where o.bucket_id = public.preview_bucket() and o.name = p.path) then 'missing_object'
  end
  from (select public.preview_image_path(g) as path) p
$$;
comment on function public.preview_unusable_reason(public.generations) is
  'Why a ready row''s preview image cannot be shown by the library (legacy_video_preview, no_image_path, not_an_image, foreign_path, missing_object), null when it can or the row is not ready. Reads storage.objects. SECURITY DEFINER: service only (coverage, backfill, doctor).';

-- ---------------------------------------------------------------------------------------
-- Coverage: unusable ready rows are not counted as ready
-- ---------------------------------------------------------------------------------------
-- Same columns and every row still counted once (20261203100300_jobs.sql's definition), with one
-- state more: `unusable`, a ready row whose preview the library cannot show, with
-- preview_unusable_reason as its reason. doctor reports them, the backfill re-renders them.
create or replace view public.preview_coverage
with (security_invoker = true)
as
select s.type, s.state, s.reason, count(*)::bigint as total
from (
  select g.type::text as type,
         case when r.skip is not null then 'not_previewable'
              when u.unusable is not null then 'unusable'
              else coalesce(g.preview_status, 'none') end as state,
         case
           when r.skip is not null then r.skip
           when u.unusable is not null then u.unusable
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
    cross join lateral (select case when r.skip is null and g.preview_status = 'ready'
                                    then public.preview_unusable_reason(g) end as unusable) u
) s
group by s.type, s.state, s.reason;
comment on view public.preview_coverage is
  'Every generation counted once: type, state (none|processing|ready|unusable|failed|not_previewable), reason (preview_skip_reason; preview_unusable_reason for a ready row the library cannot show; a failed preview''s code, LEGACY_FAILURE for an earlier system''s; no_job; stale_lease). Service role only.';
revoke all on public.preview_coverage from public, anon, authenticated;
grant select on public.preview_coverage to service_role;

-- ---------------------------------------------------------------------------------------
-- The backfill's pages, with the unusable ready rows
-- ---------------------------------------------------------------------------------------
-- backfill_candidates (unchanged: rows without a ready preview or a job of ours, failed rows with
-- p_retry_failed, other versions with p_stale_version) plus every ready row with a previewable
-- asset whose preview is unusable, whatever the options, each with preview_unusable_reason (null
-- for the others). Oldest first after the (created_at, id) cursor, as one keyset walk: the first
-- p_limit rows of the union are among the first p_limit of each part. A new function rather than
-- a new column of backfill_candidates, whose result type its callers (doctor, pgTAP) rely on.
create or replace function public.backfill_preview_candidates(
  p_after_created_at timestamptz,
  p_after_id uuid,
  p_limit int,
  p_type text default null,
  p_retry_failed boolean default false,
  p_since timestamptz default null,
  p_stale_version text default null
) returns table (id uuid, user_id uuid, type text, created_at timestamptz, preview_status text, reason text)
language sql stable
security definer
set search_path = ''
as $$
  select c.id, c.user_id, c.type, c.created_at, c.preview_status, c.reason
    from (
      select b.id, b.user_id, b.type, b.created_at, b.preview_status,
             case when b.preview_status = 'ready' then public.preview_unusable_reason(g) end as reason
        from public.backfill_candidates(p_after_created_at, p_after_id, p_limit, p_type, p_retry_failed,
                                        p_since, p_stale_version) b
        join public.generations g on g.id = b.id
      union
      select u.id, u.user_id, u.type::text, u.created_at, 'ready', u.reason
        from (select g.id, g.user_id, g.type, g.created_at, public.preview_unusable_reason(g) as reason
                from public.generations g
               where g.preview_status = 'ready'
                 and public.has_previewable_asset(g)
                 and (p_type is null or g.type = p_type)
                 and (p_since is null or g.created_at >= p_since)
                 and (p_after_created_at is null
                      or (g.created_at, g.id) > (p_after_created_at, coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid)))) u
       where u.reason is not null
    ) c
   order by c.created_at, c.id
   limit greatest(coalesce(p_limit, 100), 0)
$$;
comment on function public.backfill_preview_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text) is
  'The backfill''s page: backfill_candidates plus the ready rows whose preview is unusable (preview_unusable_reason, returned as reason), oldest first after the cursor. SECURITY DEFINER: service only (scripts/backfill.ts).';

-- ---------------------------------------------------------------------------------------
-- Requeue an unusable ready row
-- ---------------------------------------------------------------------------------------
-- A ready row with a previewable asset whose preview is unusable goes back to `none` and gets a
-- fresh preview job (a full attempt budget; an old failed job of the row is removed, as
-- requeue_preview does). The render writes this system's poster or preview path and the row is
-- ready again, now usable. Nothing else of the row changes: the old paths stay until the result
-- overwrites the kind's column (a video keeps preview_path, the app's mp4, and the mp4 object is
-- never deleted: it is the app's file), `error` is the app's and untouched. Null, and no change,
-- when the row is not such a row (already requeued, usable, not ready): rerunning is harmless.
create or replace function public.requeue_unusable_preview(p_generation_id uuid) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.generations g
     set preview_status = 'none', preview_error_code = null
   where g.id = p_generation_id
     and g.preview_status = 'ready'
     and public.has_previewable_asset(g)
     and public.preview_unusable_reason(g) is not null;
  if not found then
    return null;
  end if;
  delete from public.preview_jobs j
   where j.generation_id = p_generation_id and j.kind = 'preview' and j.state = 'failed';
  return public.queue_preview(p_generation_id);
end
$$;
comment on function public.requeue_unusable_preview(uuid) is
  'A ready row whose preview is unusable (preview_unusable_reason) → none with a fresh preview job; the app''s mp4 and error are left alone. Null when the row is not one. SECURITY DEFINER: service only (backfill).';

-- ---------------------------------------------------------------------------------------
-- Privileges: the service's only (storage.objects and every user's rows are read)
-- ---------------------------------------------------------------------------------------
revoke all on function public.preview_unusable_reason(public.generations),
  public.backfill_preview_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text),
  public.requeue_unusable_preview(uuid)
  from public, anon, authenticated;
grant execute on function public.preview_unusable_reason(public.generations),
  public.backfill_preview_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text),
  public.requeue_unusable_preview(uuid)
  to service_role;
