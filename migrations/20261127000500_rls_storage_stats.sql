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
insert into storage.buckets (id, name, public)
values ('generations', 'generations', false)
on conflict (id) do nothing;

drop policy if exists "generations bucket: users read own folder" on storage.objects;
create policy "generations bucket: users read own folder"
  on storage.objects
  for select
  to authenticated
  using (
    bucket_id = 'generations'
    and (storage.foldername(name))[1] = (select auth.uid())::text
  );

-- ---------------------------------------------------------------------------------------
-- preview_stats: one row per (type, preview_status) of success photo/video rows, with the
-- age of the oldest item still waiting (none / processing / failed, by updated_at) and,
-- on failed rows, the failures by error code. security_invoker: it reads with the
-- caller's rights (RLS applies); API roles get no grant at all.
-- ---------------------------------------------------------------------------------------
create or replace view public.preview_stats
with (security_invoker = true)
as
select
  g.type::text as type,
  g.preview_status,
  count(*)::bigint as total,
  case when g.preview_status in ('none', 'processing', 'failed')
       then now() - min(g.updated_at) end as oldest_waiting_age,
  case when g.preview_status = 'failed' then (
    select jsonb_object_agg(c.code, c.n)
      from (select coalesce(f.preview_error_code, 'UNKNOWN') as code, count(*) as n
              from public.generations f
             where f.status = 'success' and f.type = g.type and f.preview_status = 'failed'
             group by 1) c
  ) end as failures_by_code
from public.generations g
where g.status = 'success' and g.type in ('photo', 'video')
group by g.type, g.preview_status;

comment on view public.preview_stats is
  'Preview health: counts by type and preview_status, oldest waiting item''s age, failures by error code. Service role only.';

revoke all on public.preview_stats from public, anon, authenticated;
grant select on public.preview_stats to service_role;
