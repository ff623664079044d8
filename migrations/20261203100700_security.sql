-- Baseline 7/10, security: who may read and write what. Row-level security on generations, the
-- private bucket and its read policy, the guard that keeps API roles off the columns the pipeline
-- trusts, and table privileges API roles never need. The functions' own EXECUTE grants are beside
-- each function. Note for production: the `storage` schema belongs to the platform; this file
-- only adds a bucket row and policies there, never tables or columns. Re-runnable.

-- ---------------------------------------------------------------------------------------
-- Guard: API roles never write what the pipeline trusts
-- ---------------------------------------------------------------------------------------
-- Locally anon/authenticated have no write policy, but a platform's table may have its own,
-- and production has one for everybody ("Service can update all generations": FOR UPDATE
-- USING (true), no role). Whatever the policies say, the columns the pipeline trusts are
-- written only by the service role and this system's functions (which run as their owner):
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
-- The bucket's name is preview_bucket() (the rules file).
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
-- Privileges: TRUNCATE, TRIGGER and REFERENCES on generations
-- ---------------------------------------------------------------------------------------
-- Supabase's default privileges grant ALL on new public tables to anon and authenticated.
-- TRUNCATE ignores RLS, TRIGGER lets a role attach code that runs on every write of every
-- user, REFERENCES lets it pin rows with a foreign key. PostgREST never issues any of them
-- and an app's select/insert/update/delete keep working, so revoking them changes no app
-- statement. On a Supabase project `postgres` owns public tables, so this revoke works there.
revoke truncate, trigger, references on table public.generations from public, anon, authenticated;

-- The same three on storage.objects: the platform's table. `postgres` does not own it on a
-- real project, where such a revoke only warns; it is tried, never required.
do $$
begin
  revoke truncate, trigger, references on table storage.objects from anon, authenticated;
exception when insufficient_privilege then
  raise notice 'storage.objects privileges belong to the platform: left as they are';
end
$$;

revoke all on function public.generations_guard_preview_columns() from public, anon, authenticated;
