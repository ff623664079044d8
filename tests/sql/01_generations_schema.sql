-- The schema: generations (the user-facing result columns, the work columns gone), preview_jobs
-- (its invariants as constraints and partial indexes), preview_worker_wakes, honest updated_at.
begin;
select plan(65);

-- ---- generations
select has_table('public', 'generations', 'generations exists');
select has_column('public', 'generations', c, 'generations.' || c)
  from unnest(array['id', 'user_id', 'type', 'status', 'task_id', 'model', 'asset_url', 'result_urls', 'error',
                    'created_at', 'updated_at', 'preview_path', 'poster_path', 'preview_status', 'preview_error_code',
                    'preview_width', 'preview_height', 'preview_thumbhash', 'original_path', 'preview_version',
                    'preview_cover_url', 'animated_path', 'animated_status', 'animated_error_code']) as c;
-- the work moved into preview_jobs
select hasnt_column('public', 'generations', c, 'generations.' || c || ' is gone (the job holds it)')
  from unnest(array['preview_attempts', 'preview_next_attempt_at', 'preview_started_at', 'preview_expired_leases',
                    'animated_attempts', 'animated_started_at', 'animated_next_attempt_at']) as c;
select col_default_is('public', 'generations', 'preview_status', 'none'::text, 'preview_status defaults to none');
select ok((select relrowsecurity from pg_class where oid = 'public.generations'::regclass), 'RLS is on for generations');
select has_index('public', 'generations', 'generations_task_id_key', 'unique index on task_id');

-- ---- preview_jobs and preview_worker_wakes
select has_table('public', 'preview_jobs', 'preview_jobs exists');
select columns_are('public', 'preview_jobs', array['id', 'kind', 'generation_id', 'payload', 'state', 'attempts', 'max_attempts',
  'expired_leases', 'run_at', 'locked_by', 'locked_at', 'lease_until', 'dedupe_key', 'last_error_code', 'last_error',
  'created_at', 'updated_at'], 'preview_jobs has the job columns');
select is((select relpersistence::text from pg_class where oid = 'public.preview_jobs'::regclass), 'p',
  'preview_jobs is logged: the work survives a crash');
select is((select relpersistence::text from pg_class where oid = 'public.preview_worker_wakes'::regclass), 'u',
  'preview_worker_wakes is unlogged, like pg_net''s queue');
select ok((select bool_and(relrowsecurity) from pg_class where oid in ('public.preview_jobs'::regclass, 'public.preview_worker_wakes'::regclass)),
  'RLS is on for preview_jobs and preview_worker_wakes');
select is((select indexdef ~ 'UNIQUE .*\(dedupe_key\) WHERE \(state = ANY \(ARRAY\[''queued''::text, ''running''::text\]\)\)'
             from pg_indexes where indexname = 'preview_jobs_live_dedupe_idx'), true,
  'one live job per dedupe key (a partial unique index over queued and running)');
select has_index('public', 'preview_jobs', i, i)
  from unnest(array['preview_jobs_due_idx', 'preview_jobs_lease_idx', 'preview_jobs_generation_idx']) i;
select col_default_is('public', 'preview_jobs', 'max_attempts', 5, 'max_attempts defaults to 5 (preview_max_attempts())');

-- the invariants, as constraints
select throws_ok($$insert into public.preview_jobs (kind, generation_id, dedupe_key) values ('thumbnail', gen_random_uuid(), 'k1')$$,
  '23514', null, 'kind is checked');
select throws_ok($$insert into public.preview_jobs (kind, generation_id, state, dedupe_key) values ('preview', gen_random_uuid(), 'done', 'k2')$$,
  '23514', null, 'state is checked (done jobs are deleted, not kept)');
select throws_ok($$insert into public.preview_jobs (kind, generation_id, state, dedupe_key) values ('preview', gen_random_uuid(), 'running', 'k3')$$,
  '23514', null, 'a running job has a lease and a holder');
select throws_ok($$insert into public.preview_jobs (kind, generation_id, lease_until, locked_at, dedupe_key) values ('preview', gen_random_uuid(), now(), now(), 'k4')$$,
  '23514', null, 'a queued job has no lease');
select throws_ok($$insert into public.preview_jobs (kind, generation_id, state, dedupe_key) values ('preview', gen_random_uuid(), 'failed', 'k5')$$,
  '23514', null, 'a terminal failure says why (a code)');
select throws_ok($$insert into public.preview_jobs (kind, generation_id, attempts, dedupe_key) values ('preview', gen_random_uuid(), 6, 'k6')$$,
  '23514', null, 'attempts never pass max_attempts');
select throws_ok($$insert into public.preview_jobs (kind, dedupe_key) values ('preview', 'k7')$$,
  '23514', null, 'a preview job names its row');
select throws_ok($$insert into public.preview_jobs (kind, generation_id, dedupe_key) values ('delete_object', gen_random_uuid(), 'k8')$$,
  '23514', null, 'a deletion names its object (payload.path)');
select lives_ok($$insert into public.preview_jobs (kind, payload, dedupe_key) values ('delete_object', '{"path": "u/previews/x_preview.webp"}', 'k9')$$,
  'a deletion needs no row (it outlives it)');
select throws_ok($$insert into public.preview_jobs (kind, payload, dedupe_key) values ('delete_object', '{"path": "u/previews/x_preview.webp"}', 'k9')$$,
  '23505', null, 'a second live job of one dedupe key is refused');
select lives_ok($$insert into public.preview_jobs (kind, payload, dedupe_key, state, last_error_code) values ('delete_object', '{"path": "u/previews/x_preview.webp"}', 'k9', 'failed', 'X')$$,
  'terminal failures of the key do not count as live');

-- ---- honest updated_at
set local app.skip_preview_dispatch = 'on';
select tests.create_user('schema@example.test', '11111111-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, task_id, updated_at)
values ('aaaaaaaa-0000-4000-8000-000000000001', '11111111-0000-4000-8000-000000000001', 'photo', 'pending', 'task-schema-1',
        now() - interval '1 hour');

select throws_ok($$update public.generations set preview_status = 'bogus' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '23514', null, 'preview_status is checked');
select throws_ok($$update public.generations set animated_status = 'queued' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '23514', null, 'animated_status is checked');
select throws_ok($$insert into public.generations (user_id, type, task_id) values ('11111111-0000-4000-8000-000000000001', 'photo', 'task-schema-1')$$,
  '23505', null, 'task_id is unique');
select lives_ok($$insert into public.generations (user_id, type) values ('11111111-0000-4000-8000-000000000001', 'audio'),
                                                                         ('11111111-0000-4000-8000-000000000001', 'audio')$$,
  'rows without task_id do not collide');

-- An app's no-op update reports its row, as without our migrations (no "UPDATE 0" that would
-- break `.update().select().single()`), and leaves updated_at alone.
create temp table before_noop as
  select updated_at from public.generations where id = 'aaaaaaaa-0000-4000-8000-000000000001';
create function pg_temp.noop_update_count() returns int language plpgsql as $$
declare n int;
begin
  update public.generations set status = status, model = model where id = 'aaaaaaaa-0000-4000-8000-000000000001';
  get diagnostics n = row_count;
  return n;
end $$;
select is(pg_temp.noop_update_count(), 1, 'an identical UPDATE from the app reports UPDATE 1');
select is((select updated_at from public.generations where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
          (select updated_at from before_noop), 'no-op update: updated_at unchanged');
select hasnt_trigger('public', 'generations', 'generations_z_suppress_noop_update', 'no trigger suppresses the app''s no-op updates');

-- A real change bumps it.
update public.generations set model = 'gpt-4o-image' where id = 'aaaaaaaa-0000-4000-8000-000000000001';
select ok((select updated_at > (select updated_at from before_noop) from public.generations
            where id = 'aaaaaaaa-0000-4000-8000-000000000001'), 'a real change bumps updated_at');

-- An explicit updated_at is kept (fixtures, repairs).
update public.generations set updated_at = '2020-01-01T00:00:00Z' where id = 'aaaaaaaa-0000-4000-8000-000000000001';
select is((select updated_at from public.generations where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
          '2020-01-01T00:00:00Z'::timestamptz, 'an explicit updated_at is kept');

select * from finish();
rollback;
