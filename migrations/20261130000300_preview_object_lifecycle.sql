-- Objects follow their rows. A deleted generation (directly, or by its user's cascade) must
-- not leave its preview, poster or the original copy we made in storage; an original copy
-- that a new asset replaced must not linger either. On a real project rows of storage.objects
-- cannot be deleted with SQL (only the Storage API deletes the file with its row), so the
-- database records what to delete, in the transaction that made it unneeded, and the worker
-- (generate-preview with {"cleanup": true}, dispatched at once and by the minute sweep)
-- deletes through the Storage API, retrying with the one backoff. Only objects at this
-- system's deterministic paths of the row are ever queued: never a file we did not make
-- (production's `{user}/image/…` originals, an old animated `_preview.mp4`). Re-runnable.

-- The objects of a row this system made (or makes at these paths): its preview or poster, the
-- animated preview it made, and original_path when it is our copy.
create or replace function public.preview_owned_objects(g public.generations) returns text[]
language sql stable parallel safe
as $$
  select array_remove(array[
    public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
    case when g.animated_path = public.animated_preview_path(g.user_id, g.id) then g.animated_path end,
    case when g.original_path like public.original_copy_stem(g.user_id, g.id) || '.%' then g.original_path end
  ], null)
$$;

-- ---------------------------------------------------------------------------------------
-- The queue
-- ---------------------------------------------------------------------------------------
create table if not exists public.preview_object_deletions (
  path text primary key,
  generation_id uuid not null,
  reason text not null check (reason in ('row_deleted', 'replaced', 'orphan')),
  attempts int not null default 0,
  next_attempt_at timestamptz not null default now(),
  claimed_until timestamptz,
  last_error text,
  created_at timestamptz not null default now()
);
comment on table public.preview_object_deletions is
  'Storage objects of ours to delete through the Storage API (row_deleted | replaced | orphan): claimed by generate-preview {"cleanup":true}, retried with preview_backoff. Service only.';
create index if not exists preview_object_deletions_due_idx on public.preview_object_deletions (next_attempt_at);
alter table public.preview_object_deletions enable row level security;
revoke all on table public.preview_object_deletions from public, anon, authenticated;
grant select, insert, update, delete on table public.preview_object_deletions to service_role;

-- p_delay: a replaced original is deleted only after a render's lease, by when the re-render
-- that may write the same path again has completed (the claim then drops the path).
create or replace function public.enqueue_preview_object_deletions(
  p_paths text[], p_generation_id uuid, p_reason text, p_delay interval default '0 seconds'
) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_count int;
begin
  insert into public.preview_object_deletions (path, generation_id, reason, next_attempt_at)
  select distinct p, p_generation_id, p_reason, now() + p_delay from unnest(p_paths) p where p is not null
  on conflict (path) do update
     set next_attempt_at = excluded.next_attempt_at, reason = excluded.reason, generation_id = excluded.generation_id;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function public.enqueue_preview_object_deletions(text[], uuid, text, interval) is
  'Queues objects for deletion through the Storage API, due after p_delay (idempotent per path). SECURITY DEFINER: the triggers below and npm run orphans.';

-- Due deletions, claimed for a minute. A path its row references again (a re-render wrote the
-- same original copy path) is dropped from the queue instead of deleted.
create or replace function public.claim_preview_object_deletions(p_limit int default 100)
returns table (path text, attempt int)
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  delete from public.preview_object_deletions d
   where d.next_attempt_at <= now()
     and exists (select 1 from public.generations g
                  where g.id = d.generation_id
                    and d.path in (g.preview_path, g.poster_path, g.original_path));
  return query
    update public.preview_object_deletions d
       set claimed_until = now() + interval '1 minute', attempts = d.attempts + 1
     where d.path in (select q.path from public.preview_object_deletions q
                       where q.next_attempt_at <= now() and (q.claimed_until is null or q.claimed_until < now())
                       order by q.next_attempt_at, q.path
                       limit greatest(coalesce(p_limit, 100), 0)
                       for update skip locked)
    returning d.path, d.attempts;
end
$$;
comment on function public.claim_preview_object_deletions(int) is
  'Claims up to p_limit due deletions for a minute (attempts+1), after dropping paths a row references again. SECURITY DEFINER: service only.';

create or replace function public.complete_preview_object_deletions(p_paths text[]) returns int
language sql volatile
security definer
set search_path = ''
as $$
  with d as (delete from public.preview_object_deletions where path = any(p_paths) returning 1)
  select count(*)::int from d
$$;

create or replace function public.fail_preview_object_deletions(p_paths text[], p_error text) returns int
language sql volatile
security definer
set search_path = ''
as $$
  with u as (
    update public.preview_object_deletions d
       set next_attempt_at = now() + public.preview_backoff(d.attempts), claimed_until = null, last_error = p_error
     where d.path = any(p_paths)
    returning 1)
  select count(*)::int from u
$$;
comment on function public.fail_preview_object_deletions(text[], text) is
  'A Storage API delete failed: due again after preview_backoff(attempts) (30 s doubling, at most 1 h), never given up.';

-- Queues a cleanup request when deletions are due (at most one per call). True when queued.
create or replace function public.dispatch_preview_cleanup() returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from public.preview_object_deletions d
                  where d.next_attempt_at <= now() and (d.claimed_until is null or d.claimed_until < now())) then
    return false;
  end if;
  return public.invoke_edge_function('generate-preview', '{"cleanup": true}'::jsonb, 10000) is not null;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Rows deleted → their objects queued, in the same transaction (a user's cascade included)
-- ---------------------------------------------------------------------------------------
create or replace function public.generations_queue_object_deletions() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.enqueue_preview_object_deletions(public.preview_owned_objects(old), old.id, 'row_deleted');
  return null;
end
$$;

drop trigger if exists generations_queue_object_deletions on public.generations;
create trigger generations_queue_object_deletions
  after delete on public.generations
  for each row execute function public.generations_queue_object_deletions();

-- One cleanup request per deleting statement (not one per row of a cascade).
create or replace function public.generations_dispatch_cleanup() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.dispatch_preview_cleanup();
  return null;
exception when others then
  raise warning 'generations_dispatch_cleanup: %', sqlerrm;  -- the sweep catches up
  return null;
end
$$;

drop trigger if exists generations_dispatch_cleanup on public.generations;
create trigger generations_dispatch_cleanup
  after delete on public.generations
  for each statement execute function public.generations_dispatch_cleanup();

-- An original copy of ours that the row no longer points at (a new asset replaced it:
-- apply_kie_result clears it, complete_preview writes the new copy's path, the app may point
-- original_path elsewhere) is queued, due after a lease. AFTER UPDATE OF original_path only:
-- the app's statements keep their results.
create or replace function public.generations_queue_replaced_original() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.original_path is distinct from new.original_path
     and old.original_path like public.original_copy_stem(old.user_id, old.id) || '.%' then
    perform public.enqueue_preview_object_deletions(array[old.original_path], old.id, 'replaced', public.preview_lease() * 2);
  end if;
  return null;
end
$$;

drop trigger if exists generations_queue_replaced_original on public.generations;
create trigger generations_queue_replaced_original
  after update of original_path on public.generations
  for each row execute function public.generations_queue_replaced_original();

-- The minute job that performs what is due (retries included).
select cron.schedule('preview-cleanup', '* * * * *', 'select public.dispatch_preview_cleanup()');

-- ---------------------------------------------------------------------------------------
-- Orphans: objects at our paths whose row is gone (deleted before this migration, or while a
-- worker was still writing)
-- ---------------------------------------------------------------------------------------
drop function if exists public.preview_orphan_objects(int);
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
     and o.name ~ '^[0-9a-f-]{36}/(previews/[0-9a-f-]{36}_preview\.webp|posters/[0-9a-f-]{36}_poster\.webp|originals/[0-9a-f-]{36}\.[a-z0-9]+)$'
     and not exists (
       select 1 from public.generations g
        where g.id = substring(o.name from '/([0-9a-f-]{36})[_.]')::uuid
          and g.user_id::text = split_part(o.name, '/', 1))
   order by o.created_at, o.name
   limit greatest(coalesce(p_limit, 1000), 0)
$$;
comment on function public.preview_orphan_objects(int, uuid) is
  'Objects at this system''s paths ({user}/previews|posters|originals/{id}…, of one user when given) whose generation row no longer exists. Read-only. SECURITY DEFINER: service only (npm run orphans, doctor).';

-- ---------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------
revoke all on function public.enqueue_preview_object_deletions(text[], uuid, text, interval) from public, anon, authenticated;
revoke all on function public.generations_queue_replaced_original() from public, anon, authenticated;
revoke all on function public.claim_preview_object_deletions(int) from public, anon, authenticated;
revoke all on function public.complete_preview_object_deletions(text[]) from public, anon, authenticated;
revoke all on function public.fail_preview_object_deletions(text[], text) from public, anon, authenticated;
revoke all on function public.dispatch_preview_cleanup() from public, anon, authenticated;
revoke all on function public.generations_queue_object_deletions() from public, anon, authenticated;
revoke all on function public.generations_dispatch_cleanup() from public, anon, authenticated;
revoke all on function public.preview_orphan_objects(int, uuid) from public, anon, authenticated;
grant execute on function public.enqueue_preview_object_deletions(text[], uuid, text, interval), public.claim_preview_object_deletions(int),
  public.complete_preview_object_deletions(text[]), public.fail_preview_object_deletions(text[], text),
  public.dispatch_preview_cleanup(), public.preview_orphan_objects(int, uuid) to service_role;
grant execute on function public.preview_owned_objects(public.generations) to service_role;
