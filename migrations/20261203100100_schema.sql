-- Baseline 1/10, schema: the tables and columns of the preview system.
--
-- The SQL was reorganised once, by concern, into this baseline (schema, rules, jobs, dispatch,
-- lifecycle, KIE sync, security, cron, indexes, upgrade). It is frozen: tests/unit/migrations.test.ts
-- holds every file to its recorded checksum, and every later change is a new migration, because a
-- project that applied a file never runs it again.
--
-- Production already has `generations` (many more columns, more status/type values). This file
-- creates it only when absent (a fresh stack) and is otherwise purely additive on it: `add column
-- if not exists`, no rewrite of existing values, no constraint on the platform's own columns.
-- Re-runnable.

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

-- Columns this system reads (no-ops on the platform's table, which has them). Not `model`: the
-- platform names its model columns model_id / model_name, and generation_model() reads whichever
-- the table has; an empty column of ours would only be guessed from.
alter table public.generations add column if not exists task_id text;
alter table public.generations add column if not exists asset_url text;
alter table public.generations add column if not exists result_urls jsonb;
alter table public.generations add column if not exists result_url text;
alter table public.generations add column if not exists error text;
alter table public.generations add column if not exists created_at timestamptz not null default now();
alter table public.generations add column if not exists updated_at timestamptz not null default now();

-- The user-facing result of the preview work (the checklist's columns). The work itself (attempts,
-- leases, retries) lives in preview_jobs; these are written when a job is claimed, completes or
-- fails. A constant default is a catalog-only change on Postgres 11+: no table rewrite.
alter table public.generations add column if not exists preview_path text;
alter table public.generations add column if not exists poster_path text;
alter table public.generations add column if not exists preview_status text not null default 'none';
alter table public.generations add column if not exists preview_error_code text;
alter table public.generations add column if not exists preview_width int;
alter table public.generations add column if not exists preview_height int;
alter table public.generations add column if not exists preview_thumbhash text;
alter table public.generations add column if not exists original_path text;
alter table public.generations add column if not exists preview_version text;
-- KIE's own cover image of a video (Runway image_url, Veo imageUrls…): the poster's fallback.
alter table public.generations add column if not exists preview_cover_url text;
-- The animated preview of a video (opt-in, PREVIEW_ANIMATED): its own job after the poster.
alter table public.generations add column if not exists animated_path text;
alter table public.generations add column if not exists animated_status text;
alter table public.generations add column if not exists animated_error_code text;

comment on column public.generations.preview_status is
  'none (waiting: a preview job is queued) → processing (a worker holds the job) → ready | failed (terminal). Written only by the job functions and the asset-change reset.';
comment on column public.generations.preview_error_code is
  'The closed error code of the last failed attempt (terminal when preview_status = failed).';
comment on column public.generations.preview_version is
  'The renderer and settings that made the preview (r<renderer>-s<max side>-q<quality>): backfill --stale re-renders rows of another version.';
comment on column public.generations.animated_status is
  'The animated preview (videos, when PREVIEW_ANIMATED is on): null = not requested; none → processing → ready | failed, as preview_status.';
comment on column public.generations.original_path is
  'The original asset copied into storage (KIE deletes its files after ~14 days).';

-- preview_status and animated_status are ours, so they get checks. Added NOT VALID then
-- validated: never a long lock, and they cannot fail on other columns' values.
do $$
begin
  if not exists (select 1 from pg_constraint
                  where conrelid = 'public.generations'::regclass and conname = 'generations_preview_status_check') then
    alter table public.generations add constraint generations_preview_status_check
      check (preview_status in ('none', 'processing', 'ready', 'failed')) not valid;
    alter table public.generations validate constraint generations_preview_status_check;
  end if;
  if not exists (select 1 from pg_constraint
                  where conrelid = 'public.generations'::regclass and conname = 'generations_animated_status_check') then
    alter table public.generations add constraint generations_animated_status_check
      check (animated_status in ('none', 'processing', 'ready', 'failed')) not valid;
    alter table public.generations validate constraint generations_animated_status_check;
  end if;
end
$$;

-- Lookups by task (KIE sync) and a user's newest rows (the library). The platform's table already
-- has an index leading with each (LENSROOM: task_id; (user_id, created_at desc)): an existing one
-- is reused, never duplicated. Only a table without one gets ours, which on a table created above
-- is empty. task_id is unique when it can be: on a table holding duplicates a plain index is made
-- (apply_kie_result then updates the newest row of the task). The partial work indexes on
-- generations are built CONCURRENTLY in the indexes file.
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

-- Honest updated_at. BEFORE UPDATE triggers fire in name order: a guard, b reset, c touch.
-- Bumps updated_at only when the row really changed; an explicit updated_at in the UPDATE is kept
-- (fixtures and repairs set it). No trigger suppresses a no-op UPDATE: that turned an app's
-- identical UPDATE into "UPDATE 0" and broke its `.update().select().single()`.
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
revoke all on function public.generations_touch_updated_at() from public, anon, authenticated;

-- ---------------------------------------------------------------------------------------
-- preview_jobs: every unit of background work, of every kind
-- ---------------------------------------------------------------------------------------
-- One row per job, as graphile-worker and pg-boss keep them: queued → running (claimed under a
-- lease, attempts+1: the fencing token) → deleted when done | queued again (retry, run_at later)
-- | failed (terminal, kept for doctor and stats). kind names the handler: `preview` (a photo's
-- preview or a video's poster), `animated` (a video's clip), `delete_object` (one object of ours
-- through the Storage API). At most one live (queued or running) job per dedupe_key: a re-send
-- finds it instead of making a second. No foreign key to generations: a deletion job outlives its
-- row, and the jobs of a deleted row are cancelled by its delete trigger.
--
-- Why a table of our own and not Supabase Queues (pgmq): pgmq's visibility timeout makes a message
-- visible again, but the late consumer's delete or archive still succeeds, so a worker whose
-- lease ran out can overwrite its successor's result: there is no fencing token. Dedupe, attempt
-- caps, dead-worker counting and cancelling a row's pending work would all be ours on top of it,
-- and pgmq is not installable on the local stack. Both survive a crash (logged tables).
create table if not exists public.preview_jobs (
  id bigint generated by default as identity primary key,
  kind text not null,
  generation_id uuid,
  payload jsonb not null default '{}',
  state text not null default 'queued',
  attempts int not null default 0,
  max_attempts int not null default 5,
  expired_leases int not null default 0,
  run_at timestamptz not null default now(),
  locked_by text,
  locked_at timestamptz,
  lease_until timestamptz,
  dedupe_key text not null,
  last_error_code text,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint preview_jobs_kind_check check (kind in ('preview', 'animated', 'delete_object')),
  constraint preview_jobs_state_check check (state in ('queued', 'running', 'failed')),
  constraint preview_jobs_attempts_check check (attempts between 0 and max_attempts and max_attempts >= 1),
  -- a running job has a lease and a holder; no other state has one
  constraint preview_jobs_lease_check
    check ((state = 'running') = (lease_until is not null and locked_at is not null)),
  -- a terminal failure says why
  constraint preview_jobs_failed_check check (state <> 'failed' or last_error_code is not null),
  -- the row's jobs name it; a deletion names its object
  constraint preview_jobs_target_check
    check (case kind when 'delete_object' then payload ? 'path' else generation_id is not null end)
);
comment on table public.preview_jobs is
  'Background work of every kind (preview, animated, delete_object): claimed under a lease with attempts as fencing token, retried with preview_backoff, failed terminally with a code. Done jobs are deleted. Service only.';

-- one live job per dedupe key (the re-send dedupe); the due queue; leases to expire; a row's jobs
create unique index if not exists preview_jobs_live_dedupe_idx on public.preview_jobs (dedupe_key)
  where state in ('queued', 'running');
create index if not exists preview_jobs_due_idx on public.preview_jobs (run_at, id) where state = 'queued';
create index if not exists preview_jobs_lease_idx on public.preview_jobs (lease_until) where state = 'running';
create index if not exists preview_jobs_generation_idx on public.preview_jobs (generation_id, kind);

alter table public.preview_jobs enable row level security;
revoke all on table public.preview_jobs from public, anon, authenticated;
grant select, insert, update, delete on table public.preview_jobs to service_role;

-- The generate-preview requests the database sent to wake a worker (pg_net), until the worker
-- reports its end. UNLOGGED like pg_net's own queue: a crash that loses the queued requests
-- forgets them too, and the next wake sends new ones.
create unlogged table if not exists public.preview_worker_wakes (
  id bigint generated by default as identity primary key,
  sent_at timestamptz not null default now(),
  seen_at timestamptz,
  request_id bigint
);
comment on table public.preview_worker_wakes is
  'generate-preview requests sent to wake a worker (wake_preview_workers), until the worker ends (end_preview_wake); preview_workers_awake() says which still count. UNLOGGED. Service only.';
alter table public.preview_worker_wakes enable row level security;
revoke all on table public.preview_worker_wakes from public, anon, authenticated;
grant select, insert, update, delete on table public.preview_worker_wakes to service_role;

-- When the pending KIE sync last asked KIE about a task: orders pending_kie_tasks, so tasks KIE
-- will never finish do not fill every batch. A table of ours: no write to a user's row for a poll.
create table if not exists public.kie_task_checks (
  task_id text primary key,
  checked_at timestamptz not null default now()
);
comment on table public.kie_task_checks is
  'When the pending sync last asked KIE about a task (record_kie_checks); orders pending_kie_tasks. Service only.';
alter table public.kie_task_checks enable row level security;
revoke all on table public.kie_task_checks from public, anon, authenticated;
grant select, insert, update, delete on table public.kie_task_checks to service_role;

-- KIE signs only `taskId.timestamp`, not the body: each accepted (task, timestamp) is remembered
-- with the body's hash, so a captured signature cannot carry another body within its window.
create table if not exists public.kie_callback_receipts (
  task_id text not null,
  signed_at bigint not null,          -- X-Webhook-Timestamp, Unix seconds
  body_sha256 text not null,
  received_at timestamptz not null default now(),
  primary key (task_id, signed_at)
);
comment on table public.kie_callback_receipts is
  'Signed KIE callbacks accepted, by (task_id, X-Webhook-Timestamp), kept past the signature window (cron_trim_history removes them after a day). Service only.';
create index if not exists kie_callback_receipts_received_idx on public.kie_callback_receipts (received_at);
alter table public.kie_callback_receipts enable row level security;
revoke all on table public.kie_callback_receipts from public, anon, authenticated;
grant select, insert, delete on table public.kie_callback_receipts to service_role;
