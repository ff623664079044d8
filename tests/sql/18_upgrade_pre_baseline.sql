-- The baseline's data move (migrations/20261203101000_upgrade_pre_baseline.sql, issue 22 part 7):
-- a database that ran this system before the baseline keeps its work in generations' own columns
-- and a deletion queue. Inside this transaction the old shape is put back (the work columns, the
-- deletion queue, the dispatch tables, an old function, trigger and cron job), rows are written in
-- the old states, the upgrade file is included (\ir: psql, which pg_prove runs, reads it relative
-- to this file) and what it moved is checked: nothing lost, nothing redone. Then it is included
-- again: the second run finds nothing to do.
begin;
select plan(33);
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;

-- ---- the pre-baseline shape (migrations 20261127000100 … 20261203000200, as far as the move reads it)
alter table public.generations add column preview_attempts int not null default 0;
alter table public.generations add column preview_next_attempt_at timestamptz;
alter table public.generations add column preview_started_at timestamptz;
alter table public.generations add column preview_expired_leases int not null default 0;
alter table public.generations add column animated_attempts int not null default 0;
alter table public.generations add column animated_started_at timestamptz;
alter table public.generations add column animated_next_attempt_at timestamptz;
create table public.preview_object_deletions (
  path text primary key,
  generation_id uuid not null,
  reason text not null check (reason in ('row_deleted', 'replaced', 'orphan')),
  attempts int not null default 0,
  next_attempt_at timestamptz not null default now(),
  claimed_until timestamptz,
  last_error text,
  created_at timestamptz not null default now()
);
create unlogged table public.preview_dispatches (generation_id uuid primary key, dispatched_at timestamptz not null default now());
create unlogged table public.preview_dispatch_waiting (generation_id uuid primary key, since timestamptz not null default now());
create function public.claim_preview(p_generation_id uuid, p_lease interval default null) returns void language sql as 'select';
create function public.generations_dispatch_preview() returns trigger language plpgsql as 'begin return null; end';
create trigger generations_dispatch_preview after insert or update on public.generations
  for each row execute function public.generations_dispatch_preview();
select cron.schedule('preview-cleanup', '* * * * *', 'select 1') is not null as scheduled \gset

-- ---- rows in the old states
set local app.skip_preview_dispatch = 'on';
select tests.create_user('upgrade@example.test', '18181818-0000-4000-8000-000000000001') is not null as created \gset
create function pg_temp.g(n int) returns uuid language sql as $$ select ('18181818-aaaa-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
insert into public.generations (id, user_id, type, status, asset_url, preview_status, preview_attempts, preview_started_at, preview_next_attempt_at,
                                preview_expired_leases, preview_error_code, error, preview_path, poster_path,
                                animated_status, animated_attempts, animated_started_at, animated_next_attempt_at, animated_error_code)
values
  -- posters: claimed by a worker (its 2nd attempt, one dead worker before); a retry scheduled; failed for good;
  -- ready; waiting; an earlier system's processing (no lease of ours); claimed at the attempt cap
  (pg_temp.g(1), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/1.png', 'processing', 2, now() - interval '5 seconds', null, 1, 'TIMEOUT', null, null, null, null, 0, null, null, null),
  (pg_temp.g(2), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/2.png', 'failed', 1, null, now() + interval '1 minute', 0, 'SOURCE_UNREACHABLE', 'Download failed: 503', null, null, null, 0, null, null, null),
  (pg_temp.g(3), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/3.png', 'failed', 5, null, null, 0, 'DECODE_FAILED', 'Could not decode', null, null, null, 0, null, null, null),
  (pg_temp.g(4), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/4.png', 'ready', 1, null, null, 0, null, null, 'p4', null, null, 0, null, null, null),
  (pg_temp.g(5), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/5.png', 'none', 0, null, null, 0, null, null, null, null, null, 0, null, null, null),
  (pg_temp.g(6), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/6.png', 'processing', 0, null, null, 0, null, null, null, null, null, 0, null, null, null),
  (pg_temp.g(7), '18181818-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/7.png', 'processing', 5, now() - interval '1 hour', null, 0, null, null, null, null, null, 0, null, null, null),
  -- clips of ready videos: asked for; running; a retry scheduled; failed for good; ready
  (pg_temp.g(11), '18181818-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/11.mp4', 'ready', 1, null, null, 0, null, null, null, 'p11', 'none', 0, null, null, null),
  (pg_temp.g(12), '18181818-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/12.mp4', 'ready', 1, null, null, 0, null, null, null, 'p12', 'processing', 1, now() - interval '3 seconds', null, null),
  (pg_temp.g(13), '18181818-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/13.mp4', 'ready', 1, null, null, 0, null, null, null, 'p13', 'failed', 2, null, now() + interval '2 minutes', 'SOURCE_UNREACHABLE'),
  (pg_temp.g(14), '18181818-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/14.mp4', 'ready', 1, null, null, 0, null, null, null, 'p14', 'failed', 5, null, null, 'UNSUPPORTED_FORMAT'),
  (pg_temp.g(15), '18181818-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/15.mp4', 'ready', 1, null, null, 0, null, null, null, 'p15', 'ready', 1, null, null, null);
insert into public.preview_object_deletions (path, generation_id, reason, attempts, next_attempt_at, last_error) values
  ('18181818-0000-4000-8000-000000000001/previews/18181818-aaaa-4000-8000-000000000021_preview.webp', pg_temp.g(21), 'row_deleted', 2, now() + interval '10 seconds', 'Delete failed: 503'),
  ('18181818-0000-4000-8000-000000000001/originals/18181818-aaaa-4000-8000-000000000005.jpg', pg_temp.g(5), 'replaced', 0, now(), null);
create temp table before_move as select id, updated_at from public.generations where id::text like '18181818-%';

-- ---- the upgrade
\ir ../../migrations/20261203101000_upgrade_pre_baseline.sql

-- posters
select results_eq($$select state, attempts, expired_leases, locked_by, locked_at, lease_until - locked_at, last_error_code
                      from public.preview_jobs where generation_id = pg_temp.g(1)$$,
  $$values ('running'::text, 2, 1, 'pre-baseline'::text, now() - interval '5 seconds', interval '15 seconds', 'TIMEOUT'::text)$$,
  'processing (a worker of ours) → a running job: the same attempt, the same lease, the dead worker counted');
select is((select preview_status from public.generations where id = pg_temp.g(1)), 'processing', '… the row stays processing');
select results_eq($$select kind, state, attempts, run_at, last_error_code, last_error from public.preview_jobs where generation_id = pg_temp.g(2)$$,
  $$values ('preview'::text, 'queued'::text, 1, now() + interval '1 minute', 'SOURCE_UNREACHABLE'::text, 'Download failed: 503'::text)$$,
  'failed with a retry scheduled → a queued job due then, with the failure''s code and text');
select results_eq($$select preview_status, preview_error_code, error from public.generations where id = pg_temp.g(2)$$,
  $$values ('none'::text, 'SOURCE_UNREACHABLE'::text, null::text)$$, '… the row waits again (none, code kept, the retry''s text on the job)');
select is((select count(*)::int from public.preview_jobs where generation_id in (pg_temp.g(3), pg_temp.g(4), pg_temp.g(5), pg_temp.g(6)) and kind = 'preview'), 0,
  'failed for good, ready, waiting, an earlier system''s processing: no job (the row is the result; the sweep and the backfill as before)');
select results_eq($$select preview_status, preview_error_code, error from public.generations where id = pg_temp.g(3)$$,
  $$values ('failed'::text, 'DECODE_FAILED'::text, 'Could not decode'::text)$$, '… a terminal failure is untouched');
select results_eq($$select state, attempts from public.preview_jobs where generation_id = pg_temp.g(7)$$,
  $$values ('running'::text, 4)$$, 'a claim at the attempt cap is carried one under it (the job keeps one try)');

-- clips
select results_eq($$select state, attempts, run_at <= now() from public.preview_jobs where generation_id = pg_temp.g(11) and kind = 'animated'$$,
  $$values ('queued'::text, 0, true)$$, 'a clip asked for → a queued animated job, due now');
select results_eq($$select state, attempts, locked_at, lease_until - locked_at from public.preview_jobs where generation_id = pg_temp.g(12) and kind = 'animated'$$,
  $$values ('running'::text, 1, now() - interval '3 seconds', interval '15 seconds')$$, 'a clip being made → a running animated job under the same lease');
select results_eq($$select state, attempts, run_at, last_error_code from public.preview_jobs where generation_id = pg_temp.g(13) and kind = 'animated'$$,
  $$values ('queued'::text, 2, now() + interval '2 minutes', 'SOURCE_UNREACHABLE'::text)$$, 'a clip''s scheduled retry → a queued job due then');
select results_eq($$select animated_status, animated_error_code from public.generations where id = pg_temp.g(13)$$,
  $$values ('none'::text, 'SOURCE_UNREACHABLE'::text)$$, '… the row waits again');
select is((select count(*)::int from public.preview_jobs where generation_id in (pg_temp.g(14), pg_temp.g(15))), 0, 'a clip failed for good or ready: no job');
select is((select count(*)::int from public.preview_jobs where generation_id between pg_temp.g(11) and pg_temp.g(15) and kind = 'preview'), 0,
  'ready posters get no job');

-- deletions
select results_eq($$select kind, generation_id, payload, state, attempts, run_at, last_error from public.preview_jobs
                     where kind = 'delete_object' and generation_id::text like '18181818-%' order by payload ->> 'path'$$,
  $$values ('delete_object'::text, pg_temp.g(5), jsonb_build_object('path', '18181818-0000-4000-8000-000000000001/originals/18181818-aaaa-4000-8000-000000000005.jpg', 'reason', 'replaced'),
            'queued'::text, 0, now(), null::text),
           ('delete_object', pg_temp.g(21), jsonb_build_object('path', '18181818-0000-4000-8000-000000000001/previews/18181818-aaaa-4000-8000-000000000021_preview.webp', 'reason', 'row_deleted'),
            'queued', 2, now() + interval '10 seconds', 'Delete failed: 503')$$,
  'queued deletions → delete_object jobs, due when they were, attempts and last error kept');
select is((select count(*)::int from public.preview_jobs where generation_id::text like '18181818-%'), 8, 'eight jobs in all');
select ok(not exists (select 1 from public.generations g join before_move b on b.id = g.id
                       where g.id not in (pg_temp.g(2), pg_temp.g(13)) and g.updated_at <> b.updated_at),
  'no other row was written');

-- the old shape is gone
select hasnt_column('public', 'generations', c, 'generations.' || c || ' is dropped')
  from unnest(array['preview_attempts', 'preview_next_attempt_at', 'preview_started_at', 'preview_expired_leases',
                    'animated_attempts', 'animated_started_at', 'animated_next_attempt_at']) c;
select hasnt_table('public', t, t || ' is dropped') from unnest(array['preview_object_deletions', 'preview_dispatches', 'preview_dispatch_waiting']) t;
select hasnt_function('public', 'claim_preview', 'the pre-baseline functions are dropped');
select hasnt_trigger('public', 'generations', 'generations_dispatch_preview', 'the pre-baseline trigger is dropped');
select is_empty($$select 1 from cron.job where jobname in ('preview-cleanup', 'animated-sweep')$$, 'the pre-baseline cron jobs are unscheduled');

-- the moved work goes on in the job model
select ok(public.complete_preview_job((select id from public.preview_jobs where generation_id = pg_temp.g(1)), 2,
  '{"path": "18181818-0000-4000-8000-000000000001/previews/18181818-aaaa-4000-8000-000000000001_preview.webp", "width": 1, "height": 1, "thumbhash": "t"}'),
  'the worker that held attempt 2 completes it');
select is((select preview_status from public.generations where id = pg_temp.g(1)), 'ready', '… the row is ready');
select tests.travel(interval '1 minute');
select results_eq($$select attempt from public.claim_preview_jobs(array['preview'], 1, pg_temp.g(2))$$, $$values (2)$$,
  'the scheduled retry is claimed when due, as attempt 2');

-- re-runnable: the second run finds the old objects gone
create temp table jobs_after as select id, state, attempts from public.preview_jobs;
\ir ../../migrations/20261203101000_upgrade_pre_baseline.sql
select set_eq($$select id, state, attempts from public.preview_jobs$$, $$select * from jobs_after$$, 'a second run changes nothing');

select * from finish();
rollback;
