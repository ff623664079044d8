-- generations: the table and the preview columns.
--
-- Production already has `generations` (many more columns, more status/type values). This
-- file creates it only when absent (a fresh local stack) and is otherwise purely
-- additive: `add column if not exists`, no rewrite of existing values, no constraint on
-- the platform's own columns. Re-runnable.

create table if not exists public.generations (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  -- photo | video (previewed); product | audio | … (skipped)
  type text not null,
  -- pending | queued | generating | success | failed | cancelled
  status text not null default 'pending',
  task_id text,
  -- the KIE model (production names it model_id / model_name: generation_model() reads any)
  model text,
  prompt text,
  asset_url text,
  result_urls jsonb,
  result_url text,
  error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Only on a table we create: the platform's table may hold other values.
  constraint generations_status_check
    check (status in ('pending', 'queued', 'generating', 'success', 'failed', 'cancelled')),
  constraint generations_type_check
    check (type in ('photo', 'video', 'product', 'audio'))
);

-- Columns this system reads (no-ops on the platform's table, which has them). Not `model`:
-- the platform names its model columns model_id / model_name, and generation_model() reads
-- whichever the table has; an empty column of ours would only be guessed from.
alter table public.generations add column if not exists task_id text;
alter table public.generations add column if not exists asset_url text;
alter table public.generations add column if not exists result_urls jsonb;
alter table public.generations add column if not exists result_url text;
alter table public.generations add column if not exists error text;
alter table public.generations add column if not exists created_at timestamptz not null default now();
alter table public.generations add column if not exists updated_at timestamptz not null default now();

-- Preview columns (the checklist's) and what reliability needs. A constant default is a
-- catalog-only change on Postgres 11+: no table rewrite.
alter table public.generations add column if not exists preview_path text;
alter table public.generations add column if not exists poster_path text;
alter table public.generations add column if not exists preview_status text not null default 'none';
alter table public.generations add column if not exists preview_attempts int not null default 0;
alter table public.generations add column if not exists preview_next_attempt_at timestamptz;
alter table public.generations add column if not exists preview_started_at timestamptz;
alter table public.generations add column if not exists preview_expired_leases int not null default 0;
alter table public.generations add column if not exists preview_error_code text;
alter table public.generations add column if not exists preview_width int;
alter table public.generations add column if not exists preview_height int;
alter table public.generations add column if not exists preview_thumbhash text;
alter table public.generations add column if not exists original_path text;
alter table public.generations add column if not exists preview_version text;
-- KIE's own cover image of a video (Runway image_url, Veo imageUrls…): the poster's fallback.
alter table public.generations add column if not exists preview_cover_url text;
-- The animated preview of a video (opt-in, PREVIEW_ANIMATED): its own step after the poster.
alter table public.generations add column if not exists animated_path text;
alter table public.generations add column if not exists animated_status text;
alter table public.generations add column if not exists animated_attempts int not null default 0;
alter table public.generations add column if not exists animated_started_at timestamptz;
alter table public.generations add column if not exists animated_next_attempt_at timestamptz;
alter table public.generations add column if not exists animated_error_code text;

comment on column public.generations.preview_status is
  'none → processing → ready | failed. Written only by claim_preview / complete_preview / fail_preview / reset_preview_for_retry and the asset-change reset trigger.';
comment on column public.generations.preview_attempts is
  'Claims made so far; the current value is the fencing token of the processing attempt.';
comment on column public.generations.preview_started_at is
  'Start of the current processing lease (claim time).';
comment on column public.generations.preview_expired_leases is
  'Claims of this item whose lease ran out: the worker died (the platform stopped it at its memory or CPU limit, or it crashed). At preview_max_expired_leases() the item fails WORKER_LIMIT instead of being tried again.';
comment on column public.generations.preview_next_attempt_at is
  'When a retryable failure is due again (null: not scheduled / terminal).';
comment on column public.generations.preview_version is
  'The renderer and settings that made the preview (r<renderer>-s<max side>-q<quality>): backfill --stale re-renders rows of another version.';
comment on column public.generations.animated_status is
  'The animated preview (videos, when PREVIEW_ANIMATED is on): null = not requested; none → processing → ready | failed. Written only by the animated_* functions.';
comment on column public.generations.original_path is
  'The original asset copied into storage (KIE deletes its files after ~14 days).';

-- preview_status is ours, so it gets a check. Added NOT VALID then validated: never a
-- long lock, and it cannot fail on other columns' values.
do $$
begin
  if not exists (
    select 1 from pg_constraint
    where conrelid = 'public.generations'::regclass and conname = 'generations_preview_status_check'
  ) then
    alter table public.generations add constraint generations_preview_status_check
      check (preview_status in ('none', 'processing', 'ready', 'failed')) not valid;
    alter table public.generations validate constraint generations_preview_status_check;
  end if;
end
$$;

-- Lookups by task (KIE sync) and a user's newest rows (the library). The platform's table
-- already has an index leading with each (LENSROOM: task_id; (user_id, created_at desc)): an
-- existing one is reused, never duplicated. Only a table without one gets ours, which on a table
-- created above is empty (no lock worth the name). task_id is unique when it can be: on a
-- table holding duplicates a plain index is made (apply_kie_result then updates the newest row
-- of the task). Our partial work indexes are in 20261130000200_preview_indexes.sql, built
-- CONCURRENTLY.
do $$
declare
  v_leading text[];
begin
  select array_agg(a.attname::text order by a.attname) into v_leading
    from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
   where i.indrelid = 'public.generations'::regclass;
  if not ('task_id' = any(coalesce(v_leading, '{}'))) then
    begin
      create unique index generations_task_id_key on public.generations (task_id) where task_id is not null;
    exception when unique_violation then
      raise warning 'generations.task_id has duplicates: created a non-unique index instead';
      create index generations_task_id_idx on public.generations (task_id) where task_id is not null;
    end;
  end if;
  if not ('user_id' = any(coalesce(v_leading, '{}'))) then
    create index generations_user_created_idx on public.generations (user_id, created_at desc);
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Honest updated_at
-- ---------------------------------------------------------------------------------------
-- BEFORE UPDATE triggers fire in name order: a guard, b reset, c touch.

-- Bumps updated_at only when the row really changed. An explicit updated_at in the UPDATE
-- is kept (fixtures and repairs may set it).
create or replace function public.generations_touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.updated_at is distinct from old.updated_at then
    return new;
  end if;
  if new is distinct from old then
    new.updated_at := now();
  end if;
  return new;
end
$$;

drop trigger if exists generations_c_touch_updated_at on public.generations;
create trigger generations_c_touch_updated_at
  before update on public.generations
  for each row execute function public.generations_touch_updated_at();

-- No trigger here suppresses a no-op UPDATE: that turned an app's identical UPDATE into
-- "UPDATE 0" and broke its `.update().select().single()`. Our own writes skip no-ops in their
-- functions (apply_kie_result writes nothing when nothing changes), a no-op keeps updated_at
-- (the touch trigger above), and the dispatch trigger fires only on a transition into
-- eligibility. Dropped where an earlier version of this file created it.
drop trigger if exists generations_z_suppress_noop_update on public.generations;
