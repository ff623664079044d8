-- Dispatch: the enqueue trigger queues exactly one preview job per row that comes to want one
-- (none otherwise) and wakes a worker (a generate-preview {"wake": id} request: URL, secret,
-- timeout); the sweep queues rows left waiting without a job and wakes workers; a missing vault
-- never fails a write. How many workers are woken (the bound) is 16_worker_wakes.sql.
begin;
select plan(41);
-- one worker at most: this file counts the wake of its first row, the bound itself is file 16's
set local app.preview_worker_limit = '1';
set local app.preview_lease = '15 seconds';

delete from vault.secrets where name in ('project_url', 'anon_key', 'preview_dispatch_secret', 'service_role_key');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-anon-key', 'anon_key');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
-- this file's jobs and wakes only
delete from public.preview_jobs;
delete from public.preview_worker_wakes;

select tests.create_user('dispatch@example.test', '55555555-0000-4000-8000-000000000001') is not null as created \gset

create temp table q_start as select coalesce(max(id), 0) as max_id from net.http_request_queue;
create temp view q as
  select r.id, r.url, r.method, r.headers, r.timeout_milliseconds, convert_from(r.body, 'UTF8')::jsonb as body
    from net.http_request_queue r where r.id > (select max_id from q_start);
create or replace function pg_temp.jobs_for(p_id uuid) returns int language sql as $$
  select count(*)::int from public.preview_jobs where generation_id = p_id and kind = 'preview'
$$;

-- INSERT of an eligible row: one job, one worker woken
insert into public.generations (id, user_id, type, status, asset_url)
values ('eeeeeeee-0000-4000-8000-000000000001', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e1.png');
select results_eq($$select state, attempts, run_at = now() from public.preview_jobs where generation_id = 'eeeeeeee-0000-4000-8000-000000000001'$$,
  $$values ('queued'::text, 0, true)$$, 'insert of an eligible row queues its preview job, due now');
select is((select count(*)::int from q), 1, 'and sends one request');
select results_eq(
  $$select url, method, timeout_milliseconds, headers from q$$,
  $$values ('http://127.0.0.1:54321/functions/v1/generate-preview'::text, 'POST'::text, 10000,
            '{"Content-Type": "application/json", "x-preview-dispatch": "test-dispatch-secret"}'::jsonb)$$,
  'URL and dispatch secret from the vault (no API key: 17_dispatch_without_anon_key.sql), explicit timeout');
select results_eq($$select q.body, w.request_id = q.id, w.seen_at from q join public.preview_worker_wakes w on q.body = jsonb_build_object('wake', w.id)$$,
  $$select jsonb_build_object('wake', (select max(id) from public.preview_worker_wakes)), true, null::timestamptz$$,
  'body: {"wake": id} of the recorded wake (with its request id), nothing about the row');
select is(public.preview_workers_awake(), 1, 'one worker counts as awake');
select ok(public.preview_dispatch_secret_ok('test-dispatch-secret'), 'the dispatch secret checks out');
select ok(not public.preview_dispatch_secret_ok('test-dispatch-secreT'), 'another value does not');
select ok(not public.preview_dispatch_secret_ok(''), 'nor an empty one');
select ok(not public.preview_dispatch_secret_ok(null), 'nor none');
select tests.authenticate_as_anon();
select throws_ok($$select public.preview_dispatch_secret_ok('x')$$, '42501', null, 'anon cannot probe the dispatch secret');
select tests.clear_authentication();

-- Ineligible rows: nothing (an audio row with its track is eligible)
insert into public.generations (id, user_id, type, status, task_id, asset_url) values
  ('eeeeeeee-0000-4000-8000-000000000002', '55555555-0000-4000-8000-000000000001', 'photo', 'pending', 'disp-2', null),
  ('eeeeeeee-0000-4000-8000-000000000003', '55555555-0000-4000-8000-000000000001', 'audio', 'success', 'disp-3', 'http://kie.test/e3.mp3'),
  ('eeeeeeee-0000-4000-8000-000000000004', '55555555-0000-4000-8000-000000000001', 'video', 'success', 'disp-4', null);
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 0, 'pending row: no job');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000003'), 1, 'audio row: a job (its tile: 20261203102000_audio_previews.sql)');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000004'), 0, 'success without asset: no job');

-- UPDATE into eligibility via the KIE sync: exactly one job, and re-syncs add none
select * from public.apply_kie_result('disp-2', 'pending', null, null, null);
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 0, 'pending → generating: no job');
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 'generating → success: one job');
select is((select count(*)::int from q), 1, 'the awake worker is enough (the bound): no second request');
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 're-sync while still waiting: no second job');
update public.generations set model = 'x' where id = 'eeeeeeee-0000-4000-8000-000000000002';
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 'another update of a waiting row: no second job');

-- The job's own lifecycle queues nothing more; a re-sync of a ready row queues nothing
select ok((select attempt from public.claim_preview_jobs(array['preview'], 1, 'eeeeeeee-0000-4000-8000-000000000002')) = 1, 'claimed');
select ok(public.complete_preview_job((select id from public.preview_jobs where generation_id = 'eeeeeeee-0000-4000-8000-000000000002'), 1,
  '{"path": "p.webp", "width": 1, "height": 1, "thumbhash": "h"}'), 'completed');
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 0, 're-sync (twice) of a ready row: no job');
select is((select preview_status from public.generations where id = 'eeeeeeee-0000-4000-8000-000000000002'), 'ready', 're-sync leaves the ready row ready');

-- A new asset on a ready row: one new job
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2-v2.png"]', 'http://kie.test/e2-v2.png', null);
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 'a new asset on a ready row: one new job');

-- A rolled-back write leaves no job and no request
savepoint before_rollback;
select tests.travel(public.preview_wake_hold() + interval '1 second');  -- the awake worker is gone: a new wake is sent
insert into public.generations (id, user_id, type, status, asset_url)
values ('eeeeeeee-0000-4000-8000-000000000005', '55555555-0000-4000-8000-000000000001', 'video', 'success', 'http://kie.test/e5.mp4');
select ok(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000005') = 1 and (select count(*)::int from q) = 2,
  'inside the transaction the job and the wake are queued …');
rollback to savepoint before_rollback;
select ok(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000005') = 0 and (select count(*)::int from q) = 1, '… and gone with the rollback');

-- Muted dispatch
set local app.skip_preview_dispatch = 'on';
insert into public.generations (id, user_id, type, status, asset_url) values
  ('eeeeeeee-0000-4000-8000-000000000006', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e6.png'),
  ('eeeeeeee-0000-4000-8000-000000000008', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e8.png'),
  ('eeeeeeee-0000-4000-8000-000000000009', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e9.png');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000006'), 0, 'app.skip_preview_dispatch mutes the trigger');
set local app.skip_preview_dispatch = '';

-- The sweep: rows left waiting without a job (changed 1 min .. 1 day ago) get one; workers are woken
select tests.travel_row('eeeeeeee-0000-4000-8000-000000000006', interval '10 minutes');
select tests.travel_row('eeeeeeee-0000-4000-8000-000000000008', interval '2 days');
select tests.travel_row('eeeeeeee-0000-4000-8000-000000000009', interval '30 seconds');
select is(public.preview_sweep(1000), 0, 'the sweep wakes nobody while the one worker is awake');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000006'), 1, 'the sweep queued the row left waiting');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000009'), 0, 'not a row changed within the minute (its trigger is on it)');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000008'), 0, 'nor one changed more than a day ago (the backfill''s)');
select is(public.preview_sweep(1000), 0, 'a second sweep queues nothing more');
select is((select count(*)::int from public.preview_jobs where generation_id = 'eeeeeeee-0000-4000-8000-000000000006'), 1, '… one job per row');
select tests.travel(public.preview_wake_hold() + interval '1 second');
select is(public.preview_sweep(1000), 1, 'once the awake worker''s hold passed, the sweep wakes a worker for the due jobs');

-- Without vault secrets the row is still written and its job queued (the sweep wakes for it)
set local client_min_messages = error;
delete from vault.secrets where name = 'project_url';
select tests.travel(public.preview_wake_hold() + interval '1 second');
create temp table q_before as select count(*) as n from q;
select lives_ok($$insert into public.generations (id, user_id, type, status, asset_url)
  values ('eeeeeeee-0000-4000-8000-000000000007', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e7.png')$$,
  'missing vault secrets never fail the row''s write');
select is(pg_temp.jobs_for('eeeeeeee-0000-4000-8000-000000000007'), 1, '… its job is queued');
select is((select count(*) from q) - (select n from q_before), 0::bigint, '… and no request is sent');
select is(public.wake_preview_workers(), 0, 'wake_preview_workers sends nothing without the vault');
select is(public.preview_workers_awake(), 0, '… and counts no worker awake');
select is(public.cron_kie_sync_pending(), null, 'cron_kie_sync_pending returns null when not configured');
select vault.create_secret('http://127.0.0.1:54321', 'project_url');
select ok(public.cron_kie_sync_pending() is not null, 'cron_kie_sync_pending queues a request');
select results_eq($$select url, body from q where url like '%/kie-sync'$$,
  $$values ('http://127.0.0.1:54321/functions/v1/kie-sync'::text, '{"mode": "pending"}'::jsonb)$$, 'kie-sync body {"mode":"pending"}');

select * from finish();
rollback;
