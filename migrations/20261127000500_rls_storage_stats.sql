-- Security: RLS on generations, the storage bucket and its policies, and the ops view.
--
-- Note for production: the `storage` schema belongs to the platform. This file only adds a
-- bucket row and policies there, never tables or columns.

-- ---------------------------------------------------------------------------------------
-- generations: a user reads only their own rows; no write policy for API roles (the
-- service role bypasses RLS; the guard trigger protects preview columns from any write
-- policy the platform may have).
-- ---------------------------------------------------------------------------------------
alter table public.generations enable row level security;

drop policy if exists "generations: users read own rows" on public.generations;
create policy "generations: users read own rows"
  on public.generations
  for select
  to authenticated
  using ((select auth.uid()) = user_id);

-- ---------------------------------------------------------------------------------------
-- storage: private bucket `generations`; users read only under their own {user_id}/
-- folder; only the service role writes (no insert/update/delete policy for API roles).
-- Objects uploaded with the service key have no owner, hence the folder test.
-- ---------------------------------------------------------------------------------------
-- The bucket's name, fixed (the functions use the same name: shared/config.ts PREVIEW_BUCKET).
create or replace function public.preview_bucket() returns text
language sql immutable parallel safe
as $$ select 'generations'::text $$;
comment on function public.preview_bucket() is
  'The storage bucket of originals, previews and posters (fixed; shared/config.ts PREVIEW_BUCKET says the same).';

insert into storage.buckets (id, name, public)
values (public.preview_bucket(), public.preview_bucket(), false)
on conflict (id) do nothing;

drop policy if exists "generations bucket: users read own folder" on storage.objects;
create policy "generations bucket: users read own folder"
  on storage.objects
  for select
  to authenticated
  using (
    bucket_id = (select public.preview_bucket())
    and (storage.foldername(name))[1] = (select auth.uid())::text
  );

-- ---------------------------------------------------------------------------------------
-- preview_stats: one row per (type, preview_status) of rows that need a preview and can have
-- one (has_previewable_asset; a NULL preview_status counts as none), with the age of the
-- oldest item still waiting (none / processing / failed, by updated_at) and, on failed rows,
-- the failures by error code. security_invoker: it reads with the caller's rights (RLS
-- applies); API roles get no grant at all.
-- ---------------------------------------------------------------------------------------
create or replace view public.preview_stats
with (security_invoker = true)
as
with eligible as (
  select g.type::text as type, coalesce(g.preview_status, 'none') as preview_status, g.updated_at,
         g.preview_error_code
    from public.generations g
   where public.has_previewable_asset(g)
)
select
  e.type,
  e.preview_status,
  count(*)::bigint as total,
  case when e.preview_status in ('none', 'processing', 'failed')
       then now() - min(e.updated_at) end as oldest_waiting_age,
  case when e.preview_status = 'failed' then (
    select jsonb_object_agg(c.code, c.n)
      from (select coalesce(f.preview_error_code, 'UNKNOWN') as code, count(*) as n
              from eligible f
             where f.type = e.type and f.preview_status = 'failed'
             group by 1) c
  ) end as failures_by_code
from eligible e
group by e.type, e.preview_status;

comment on view public.preview_stats is
  'Preview health of the rows that get a preview: counts by type and preview_status, oldest waiting item''s age, failures by error code. Service role only.';

revoke all on public.preview_stats from public, anon, authenticated;
grant select on public.preview_stats to service_role;

-- ---------------------------------------------------------------------------------------
-- preview_coverage: every row of the table, counted once, by what happens to its preview.
-- state: none | processing | ready | failed for rows that get a preview, not_previewable
-- for the rest; reason: why not (preview_skip_reason: audio, no_source, cancelled…), the
-- error code of a failed preview, `stale_lease` for processing past its lease, else null.
-- Nothing is invisible: the totals add up to the table's row count.
-- ---------------------------------------------------------------------------------------
create or replace view public.preview_coverage
with (security_invoker = true)
as
select s.type, s.state, s.reason, count(*)::bigint as total
from (
  select g.type::text as type,
         case when r.skip is not null then 'not_previewable' else coalesce(g.preview_status, 'none') end as state,
         case
           when r.skip is not null then r.skip
           when g.preview_status = 'failed' then coalesce(g.preview_error_code, 'LEGACY_FAILURE')
           when public.preview_lease_expired(g) then 'stale_lease'
         end as reason
    from public.generations g
    cross join lateral (select public.preview_skip_reason(g) as skip) r
) s
group by s.type, s.state, s.reason;

comment on view public.preview_coverage is
  'Every generation counted once: type, state (none|processing|ready|failed|not_previewable), reason (preview_skip_reason, failed preview''s error code — LEGACY_FAILURE for an earlier system''s — or stale_lease). Service role only.';

revoke all on public.preview_coverage from public, anon, authenticated;
grant select on public.preview_coverage to service_role;
