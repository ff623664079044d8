-- The preview job on its row: what gets a job, what a claim is given (photo and video), what a
-- completion writes (preview_path or poster_path, size, thumbhash, original copy, version), jobs
-- a row no longer wants, cancel, requeue (backfill --retry-failed / --stale), backfill candidates,
-- a new asset superseding the row's work. The rules every kind shares (fencing, dead workers, cap,
-- backoff, dedupe, release) are 15_job_behaviour.sql.
begin;
select plan(55);

set local app.skip_preview_dispatch = 'on';  -- jobs are asked for explicitly here (dispatch: 05)
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;  -- this file's jobs only
select tests.create_user('sm@example.test', '22222222-0000-4000-8000-000000000001') is not null as created \gset

insert into public.generations (id, user_id, type, status, task_id, asset_url, result_urls, model, preview_cover_url, updated_at, created_at) values
  ('bbbbbbbb-0000-4000-8000-000000000001', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-1', 'http://kie.test/1.png', '["http://kie.test/1.png"]', 'gpt-4o-image', null, now() - interval '10 minutes', now() - interval '10 days'),
  ('bbbbbbbb-0000-4000-8000-000000000002', '22222222-0000-4000-8000-000000000001', 'video', 'success', 'sm-2', 'http://kie.test/2.mp4', '["http://kie.test/2.mp4"]', 'veo3', 'http://kie.test/2.jpg', now() - interval '10 minutes', now() - interval '9 days'),
  ('bbbbbbbb-0000-4000-8000-000000000003', '22222222-0000-4000-8000-000000000001', 'photo', 'pending', 'sm-3', null, null, 'gpt-4o-image', null, now(), now() - interval '8 days'),
  ('bbbbbbbb-0000-4000-8000-000000000004', '22222222-0000-4000-8000-000000000001', 'audio', 'success', 'sm-4', 'http://kie.test/4.mp3', null, 'suno', null, now() - interval '10 minutes', now() - interval '7 days'),
  ('bbbbbbbb-0000-4000-8000-000000000005', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-5', null, null, 'gpt-4o-image', null, now(), now() - interval '6 days'),
  ('bbbbbbbb-0000-4000-8000-000000000006', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-6', 'http://kie.test/6.png', null, 'flux', null, now(), now() - interval '5 days'),
  ('bbbbbbbb-0000-4000-8000-000000000007', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-7', 'http://kie.test/7.png', null, 'flux', null, now(), now() - interval '4 days'),
  ('bbbbbbbb-0000-4000-8000-000000000008', '22222222-0000-4000-8000-000000000001', 'video', 'success', 'sm-8', 'http://kie.test/8.mp4', null, 'veo3', null, now(), now() - interval '3 days');
-- the app's own `error` (why the generation failed, its own notes): the preview work never writes
-- or clears it; its own reason goes to preview_error
update public.generations set error = 'the app''s own text' where id in ('bbbbbbbb-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000006');

-- ---- the constants of every kind
select is(public.preview_max_attempts(), 5, 'attempt cap is 5');
select is(public.preview_backoff(1), interval '30 seconds', 'backoff(1) = 30 s');
select is(public.preview_backoff(2), interval '1 minute', 'backoff(2) = 1 min');
select is(public.preview_backoff(4), interval '4 minutes', 'backoff(4) = 4 min');
select is(public.preview_backoff(20), interval '1 hour', 'backoff is capped at 1 h');
select is(public.preview_max_expired_leases(), 2, 'two dead workers end a job (WORKER_LIMIT)');

-- ---- what gets a job
select is(public.queue_preview('bbbbbbbb-0000-4000-8000-000000000003'), null, 'a pending row gets no job');
select is(public.preview_skip_reason(g), null, 'an audio row can have a preview (its tile: 20261203102000_audio_previews.sql)') from public.generations g where id = 'bbbbbbbb-0000-4000-8000-000000000004';
select is(public.queue_preview('bbbbbbbb-0000-4000-8000-000000000005'), null, 'a success row without an asset gets no job');
select is(public.queue_preview('bbbbbbbb-0000-4000-8000-0000000000ff'), null, 'an unknown id gets no job');
select is((select count(*)::int from public.preview_jobs), 0, '… and none was made');
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000001') as job1 \gset
select is(public.queue_preview('bbbbbbbb-0000-4000-8000-000000000001'), :job1::bigint, 'queue_preview is idempotent (the live job)');
select results_eq($$select kind, generation_id, payload, dedupe_key, max_attempts from public.preview_jobs where id = $$ || :job1,
  $$values ('preview'::text, 'bbbbbbbb-0000-4000-8000-000000000001'::uuid, '{}'::jsonb, 'preview:bbbbbbbb-0000-4000-8000-000000000001'::text, 5)$$,
  'a preview job: kind, row, no payload, keyed by its row, the attempt cap');

-- ---- a claim is given what the job needs
select is((select input from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000001')),
  jsonb_build_object('user_id', '22222222-0000-4000-8000-000000000001', 'type', 'photo', 'kind', 'image', 'original_path', null,
    'source_url', 'http://kie.test/1.png', 'model', 'gpt-4o-image',
    'target_path', '22222222-0000-4000-8000-000000000001/previews/bbbbbbbb-0000-4000-8000-000000000001_preview.webp',
    'size_stem', '22222222-0000-4000-8000-000000000001/previews/bbbbbbbb-0000-4000-8000-000000000001_preview',
    'original_stem', '22222222-0000-4000-8000-000000000001/originals/bbbbbbbb-0000-4000-8000-000000000001', 'cover_url', null),
  'a photo''s claim: the source, the model, the preview path, the larger sizes'' stem, the original copy''s stem');
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000002') as job2 \gset
select is((select input - 'user_id' - 'original_stem' - 'original_path' from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000002')),
  jsonb_build_object('type', 'video', 'kind', 'video', 'source_url', 'http://kie.test/2.mp4', 'model', 'veo3',
    'target_path', '22222222-0000-4000-8000-000000000001/posters/bbbbbbbb-0000-4000-8000-000000000002_poster.webp',
    'size_stem', '22222222-0000-4000-8000-000000000001/posters/bbbbbbbb-0000-4000-8000-000000000002_poster',
    'cover_url', 'http://kie.test/2.jpg'),
  'a video''s claim: the poster path and KIE''s cover (the fallback)');

-- ---- what a completion writes
select ok(public.complete_preview_job(:job1, 1, jsonb_build_object(
  'path', '22222222-0000-4000-8000-000000000001/previews/bbbbbbbb-0000-4000-8000-000000000001_preview.webp',
  'width', 512, 'height', 384, 'thumbhash', 'thumb', 'version', 'r2-s512-q80',
  'originalPath', '22222222-0000-4000-8000-000000000001/originals/bbbbbbbb-0000-4000-8000-000000000001.png')), 'the photo completes');
select results_eq(
  $$select preview_status, preview_path, poster_path, preview_width, preview_height, preview_thumbhash, original_path, preview_version, preview_error_code, preview_error, error
      from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  $$values ('ready'::text, '22222222-0000-4000-8000-000000000001/previews/bbbbbbbb-0000-4000-8000-000000000001_preview.webp'::text, null::text,
            512, 384, 'thumb'::text, '22222222-0000-4000-8000-000000000001/originals/bbbbbbbb-0000-4000-8000-000000000001.png'::text,
            'r2-s512-q80'::text, null::text, null::text, 'the app''s own text'::text)$$,
  'ready: preview_path, size, thumbhash, the original copy, the version (the app''s error untouched)');
select ok(public.complete_preview_job(:job2, 1, '{"path": "u/posters/v_poster.webp", "width": 768, "height": 432, "thumbhash": "t"}'), 'the video completes');
select results_eq($$select preview_path, poster_path, preview_status, original_path from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000002'$$,
  $$values (null::text, 'u/posters/v_poster.webp'::text, 'ready'::text, null::text)$$, 'a video: poster_path set, preview_path and original_path untouched');
select is(public.queue_preview('bbbbbbbb-0000-4000-8000-000000000001'), null, 'a ready row gets no job');

-- a retry's code goes with the completion
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000006') as job6 \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000006')), 1, 'row 6 claimed');
select is(public.fail_preview_job(:job6, 1, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'retry', 'row 6: a retryable failure');
select tests.travel(public.preview_backoff(1));
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000006')), 2, 'row 6 claimed again');
select ok(public.complete_preview_job(:job6, 2, '{"path": "p6", "width": 1, "height": 1, "thumbhash": "t"}'), 'row 6 completes');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('ready'::text, null::text, null::text, 'the app''s own text'::text)$$, 'ready clears the earlier attempt''s code and preview_error, not the app''s error');

-- ---- jobs a row no longer wants are dropped at claim; a deleted row's are cancelled
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000007') as job7 \gset
update public.generations set preview_status = 'ready', preview_path = 'elsewhere.webp' where id = 'bbbbbbbb-0000-4000-8000-000000000007';
select is_empty($$select * from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000007')$$,
  'a job whose row is ready by now is not claimed');
select ok(not exists (select 1 from public.preview_jobs where id = :job7), '… it is dropped');
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000008') as job8 \gset
select is(public.cancel_preview_jobs('bbbbbbbb-0000-4000-8000-000000000008', array['animated']), 0, 'cancel_preview_jobs takes only the kinds named');
select is(public.cancel_preview_jobs('bbbbbbbb-0000-4000-8000-000000000008', array['preview', 'animated']), 1, 'cancel_preview_jobs drops the row''s live jobs');
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000008') as job8 \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000008')), 1, 'row 8 claimed');
delete from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000008';
select ok(not exists (select 1 from public.preview_jobs where generation_id = 'bbbbbbbb-0000-4000-8000-000000000008' and kind = 'preview'),
  'a deleted row''s preview job is cancelled, even a running one');
select is(public.complete_preview_job(:job8, 1, '{"path": "p8"}'), false, '… and its worker is fenced');

-- ---- terminal failure; requeue (backfill --retry-failed, --stale)
update public.generations set asset_url = 'http://kie.test/6-v2.png' where id = 'bbbbbbbb-0000-4000-8000-000000000006';
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000006') as job6 \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000006')), 1, 'a new asset''s job starts at attempt 1');
select is(public.fail_preview_job(:job6, 1, 'SOURCE_NOT_FOUND', 'Download failed: 404', false), 'failed', 'a non-retryable failure');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('failed'::text, 'SOURCE_NOT_FOUND'::text, 'Download failed: 404'::text, 'the app''s own text'::text)$$,
  'terminal: the row keeps the code and the readable reason in preview_error; the app''s error untouched');
select throws_ok($$select public.requeue_preview('bbbbbbbb-0000-4000-8000-000000000006', 'processing')$$, '22023', null, 'requeue from another state is refused');
select is(public.requeue_preview('bbbbbbbb-0000-4000-8000-000000000001', 'failed'), null, 'requeue --retry-failed leaves a ready row');
select ok(public.requeue_preview('bbbbbbbb-0000-4000-8000-000000000006', 'failed') is not null, 'requeue --retry-failed takes a failed row');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('none'::text, null::text, null::text, 'the app''s own text'::text)$$, '… none, code and preview_error cleared, the app''s error kept');
select results_eq($$select state, attempts from public.preview_jobs where generation_id = 'bbbbbbbb-0000-4000-8000-000000000006' order by id$$,
  $$values ('queued'::text, 0)$$, '… one fresh job (the terminal failure is gone)');
select is(public.requeue_preview('bbbbbbbb-0000-4000-8000-000000000001', 'ready', 'r2-s512-q80'), null, '--stale leaves a preview of the current version');
select ok(public.requeue_preview('bbbbbbbb-0000-4000-8000-000000000001', 'ready', 'r3-s512-q80') is not null, '--stale takes one of another version');
select results_eq($$select preview_status, preview_path is not null from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  $$values ('none'::text, true)$$, '… none, the old preview kept until the new one overwrites it');

-- ---- backfill candidates: keyset pagination over (created_at, id)
delete from public.preview_jobs;
insert into public.generations (id, user_id, type, status, asset_url, error, updated_at, created_at) values
  ('bbbbbbbb-0000-4000-8000-000000000009', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/9.png', 'the app''s note on 9', now(), now() - interval '2 days'),
  ('bbbbbbbb-0000-4000-8000-00000000000a', '22222222-0000-4000-8000-000000000001', 'video', 'success', 'http://kie.test/a.mp4', null, now(), now() - interval '1 day');
update public.generations set preview_status = 'failed', preview_error_code = 'DECODE_FAILED' where id = 'bbbbbbbb-0000-4000-8000-000000000002';
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000001'::uuid), ('bbbbbbbb-0000-4000-8000-000000000004'::uuid), ('bbbbbbbb-0000-4000-8000-000000000006'::uuid),
           ('bbbbbbbb-0000-4000-8000-000000000009'::uuid), ('bbbbbbbb-0000-4000-8000-00000000000a'::uuid)$$,
  'backfill: waiting rows without a job, oldest first (not ready, not failed with our code), the audio row too');
select public.queue_preview('bbbbbbbb-0000-4000-8000-000000000001') is not null as queued1 \gset
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000, null, true) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000002'::uuid), ('bbbbbbbb-0000-4000-8000-000000000004'::uuid), ('bbbbbbbb-0000-4000-8000-000000000006'::uuid),
           ('bbbbbbbb-0000-4000-8000-000000000009'::uuid), ('bbbbbbbb-0000-4000-8000-00000000000a'::uuid)$$,
  'backfill --retry-failed adds failed rows; a row with a job is left to it');
select results_eq(
  $$select id from public.backfill_candidates((select created_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000009'),
                                              'bbbbbbbb-0000-4000-8000-000000000009', 10) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-00000000000a'::uuid)$$, 'backfill: the cursor skips what was seen');
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000, 'video', true) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000002'::uuid), ('bbbbbbbb-0000-4000-8000-00000000000a'::uuid)$$, 'backfill: type filter');
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000, null, false, now() - interval '36 hours') where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-00000000000a'::uuid)$$, 'backfill: since filter');

-- ---- a new asset supersedes the row's work (with the enqueue trigger on)
set local app.skip_preview_dispatch = '';
delete from public.preview_jobs;
update public.generations set preview_status = 'ready', preview_path = 'p.webp', preview_width = 1, preview_thumbhash = 't',
       original_path = 'keep/me.png' where id = 'bbbbbbbb-0000-4000-8000-000000000009';
update public.generations set asset_url = 'http://kie.test/9-v2.png' where id = 'bbbbbbbb-0000-4000-8000-000000000009';
select results_eq($$select preview_status, preview_path, preview_width, preview_thumbhash, original_path
                      from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000009'$$,
  $$values ('none'::text, null::text, null::int, null::text, 'keep/me.png'::text)$$,
  'a new asset on a ready row: none, the preview cleared, original_path kept (the worker overwrites it)');
select results_eq($$select state, attempts from public.preview_jobs where generation_id = 'bbbbbbbb-0000-4000-8000-000000000009'$$,
  $$values ('queued'::text, 0)$$, '… and a job for the new asset');
-- on a terminal failure: its preview_error goes with it, the app's error stays, the failed job stays as history
select is(public.fail_preview_job((select job_id from public.claim_preview_jobs(array['preview'], 1, 'bbbbbbbb-0000-4000-8000-000000000009')), 1,
  'DECODE_FAILED', 'Could not decode', false), 'failed', 'row 9 fails terminally');
update public.generations set asset_url = 'http://kie.test/9-v3.png' where id = 'bbbbbbbb-0000-4000-8000-000000000009';
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000009'$$,
  $$values ('none'::text, null::text, null::text, 'the app''s note on 9'::text)$$, 'a new asset after a terminal failure: none, code and preview_error cleared, the app''s error kept');
select results_eq($$select state from public.preview_jobs where generation_id = 'bbbbbbbb-0000-4000-8000-000000000009' order by id$$,
  $$values ('failed'::text), ('queued')$$, '… a new job beside the old failure');
-- the same with the trigger muted (a fixture, or a trigger that failed): nothing but the backfill
-- and the sweep's day find the row; its old failed job must not hide it from the backfill
set local app.skip_preview_dispatch = 'on';
update public.generations set asset_url = 'http://kie.test/a-v2.png', preview_status = 'failed', preview_error_code = 'DECODE_FAILED'
 where id = 'bbbbbbbb-0000-4000-8000-00000000000a';
insert into public.preview_jobs (kind, generation_id, state, attempts, dedupe_key, last_error_code, last_error)
values ('preview', 'bbbbbbbb-0000-4000-8000-00000000000a', 'failed', 1, 'preview:bbbbbbbb-0000-4000-8000-00000000000a', 'DECODE_FAILED', 'x');
update public.generations set asset_url = 'http://kie.test/a-v3.mp4' where id = 'bbbbbbbb-0000-4000-8000-00000000000a';
select is((select preview_status from public.generations where id = 'bbbbbbbb-0000-4000-8000-00000000000a'), 'none', 'row a: a new asset, muted: none without a job');
select ok(exists (select 1 from public.backfill_candidates(null, null, 100000) where id = 'bbbbbbbb-0000-4000-8000-00000000000a'),
  'backfill: a waiting row whose only job is an old terminal failure is a candidate');

select * from finish();
rollback;
