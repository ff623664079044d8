-- The animated preview (issue 14, as a job of kind `animated`): asked for only for a ready video,
-- mirrored in its own columns (animated_status / animated_error_code), never touching the
-- poster's (preview_status, preview_error) nor the app's error; a new asset clears it; its object follows the row; backfill
-- --animated; guarded for clients. (Fencing, dead workers, cap, backoff, dedupe, release of the
-- clip's job: 15_job_behaviour.sql.)
begin;
select plan(34);

set local app.skip_preview_dispatch = 'on';
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;
select tests.create_user('anim@example.test', '14141414-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, asset_url, preview_status, poster_path) values
  ('14141414-aaaa-4000-8000-000000000001', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/1.mp4', 'ready',
   '14141414-0000-4000-8000-000000000001/posters/14141414-aaaa-4000-8000-000000000001_poster.webp'),
  ('14141414-aaaa-4000-8000-000000000002', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/2.mp4', 'processing', null),
  ('14141414-aaaa-4000-8000-000000000003', '14141414-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/3.png', 'ready', null);

select is(public.animated_preview_path('14141414-0000-4000-8000-000000000001', '14141414-aaaa-4000-8000-000000000001'),
  '14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4', 'the seed system''s path');
select is(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000002'), null, 'not before the poster is ready');
select is(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000003'), null, 'not for a photo');
select is_empty($$select * from public.claim_preview_jobs(array['animated'])$$, 'nothing to claim before it is asked for');
select public.queue_animated_preview('14141414-aaaa-4000-8000-000000000001') as job \gset
select ok(:'job' <> '', 'a ready video''s animated preview is asked for');
select is(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000001'), null, '… once');
select results_eq($$select kind, state, animated_status from public.preview_jobs j join public.generations g on g.id = j.generation_id
                     where g.id = '14141414-aaaa-4000-8000-000000000001'$$,
  $$values ('animated'::text, 'queued'::text, 'none'::text)$$, 'one animated job; the row says none (asked for)');

select results_eq($$select input, attempt from public.claim_preview_jobs(array['animated'], 1, '14141414-aaaa-4000-8000-000000000001')$$,
  $$values (jsonb_build_object('user_id', '14141414-0000-4000-8000-000000000001', 'original_path', null, 'source_url', 'https://k.test/1.mp4',
            'target_path', '14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4'), 1)$$,
  'claimed: the source, the target, attempt 1');
select results_eq($$select animated_status, preview_status from public.generations where id = '14141414-aaaa-4000-8000-000000000001'$$,
  $$values ('processing'::text, 'ready'::text)$$, 'the clip is processing, the poster stays ready');
select is(public.fail_preview_job(:job, 1, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'retry', 'a retryable failure');
select results_eq($$select animated_status, animated_error_code, preview_status, preview_error_code, preview_error, error from public.generations where id = '14141414-aaaa-4000-8000-000000000001'$$,
  $$values ('none'::text, 'SOURCE_UNREACHABLE'::text, 'ready'::text, null::text, null::text, null::text)$$, '… leaves the poster, preview_error and the error column alone');
select tests.travel(public.preview_backoff(1));
select results_eq($$select attempt from public.claim_preview_jobs(array['animated'], 1, '14141414-aaaa-4000-8000-000000000001')$$, $$values (2)$$, 'due again: attempt 2');
select ok(not public.complete_preview_job(:job, 1, '{"path": "x"}'), 'attempt 1 is fenced');
select ok(public.complete_preview_job(:job, 2,
  '{"path": "14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4"}'), 'attempt 2 completes');
select results_eq($$select animated_status, animated_path, animated_error_code, preview_status from public.generations where id = '14141414-aaaa-4000-8000-000000000001'$$,
  $$values ('ready'::text, '14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4'::text, null::text, 'ready'::text)$$,
  'ready, with its path');
select ok('14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4' = any(public.preview_owned_objects(g)),
  'the clip is an object of the row (deleted with it)') from public.generations g where id = '14141414-aaaa-4000-8000-000000000001';
select is(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000001'), null, 'a ready clip is not asked for again');

-- a terminal failure: asked for again (backfill --animated), with a fresh job
insert into public.generations (id, user_id, type, status, asset_url, preview_status, poster_path, created_at) values
  ('14141414-aaaa-4000-8000-000000000004', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/4.mp4', 'ready', 'p4', '2001-01-01'),
  ('14141414-aaaa-4000-8000-000000000005', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/5.mp4', 'ready', 'p5', '2001-01-02');
select public.queue_animated_preview('14141414-aaaa-4000-8000-000000000004') as job4 \gset
select is((select attempt from public.claim_preview_jobs(array['animated'], 1, '14141414-aaaa-4000-8000-000000000004')), 1, 'row 4''s clip claimed');
select is(public.fail_preview_job(:job4, 1, 'UNSUPPORTED_FORMAT', 'No video stream', false), 'failed', 'and failed for good');
select results_eq($$select animated_status, animated_error_code from public.generations where id = '14141414-aaaa-4000-8000-000000000004'$$,
  $$values ('failed'::text, 'UNSUPPORTED_FORMAT'::text)$$, 'the row mirrors it');
select results_eq($$select id::text from public.animated_candidates('2000-01-01', null, 100) where id::text like '14141414-%'$$,
  $$values ('14141414-aaaa-4000-8000-000000000004'), ('14141414-aaaa-4000-8000-000000000005')$$,
  'backfill --animated: ready videos whose clip failed or was never asked for');
select ok(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000004') not in (:job4), 'asked for again: a fresh job');
select results_eq($$select state, attempts from public.preview_jobs where generation_id = '14141414-aaaa-4000-8000-000000000004'$$,
  $$values ('queued'::text, 0)$$, '… with a full attempt budget (the failure is gone)');

-- a new asset clears the clip (asked for again after the new poster) and cancels its job
select is((select attempt from public.claim_preview_jobs(array['animated'], 1, '14141414-aaaa-4000-8000-000000000004')), 1, 'row 4''s clip claimed again');
update public.generations set asset_url = 'https://k.test/4-v2.mp4' where id = '14141414-aaaa-4000-8000-000000000004';
select results_eq($$select preview_status, animated_status, animated_path, animated_error_code from public.generations where id = '14141414-aaaa-4000-8000-000000000004'$$,
  $$values ('none'::text, null::text, null::text, null::text)$$, 'a new asset: the poster waits, the clip is cleared');
select is((select count(*)::int from public.preview_jobs where generation_id = '14141414-aaaa-4000-8000-000000000004' and kind = 'animated'), 0,
  '… its job is cancelled (the worker is fenced)');
select is(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000004'), null, 'no clip before the new poster is ready');

-- a clip asked for while its poster is re-rendered (backfill --stale): its job is dropped at the
-- claim (the poster is not ready); after the new poster the worker asks for the clip again
-- (queue_animated_preview), which must give it a job
select public.queue_animated_preview('14141414-aaaa-4000-8000-000000000005') as job5 \gset
select ok(public.requeue_preview('14141414-aaaa-4000-8000-000000000005', 'ready', 'r9') is not null, 'row 5: its poster is re-rendered (--stale)');
select is_empty($$select * from public.claim_preview_jobs(array['animated'], 1, '14141414-aaaa-4000-8000-000000000005')$$,
  '… its clip job is not claimed meanwhile (dropped)');
select ok(public.complete_preview_job((select job_id from public.claim_preview_jobs(array['preview'], 1, '14141414-aaaa-4000-8000-000000000005')), 1,
  '{"path": "p5-new", "version": "r9"}'), '… the new poster is ready');
select ok(public.queue_animated_preview('14141414-aaaa-4000-8000-000000000005') is not null
          or exists (select 1 from public.preview_jobs where generation_id = '14141414-aaaa-4000-8000-000000000005' and kind = 'animated' and state = 'queued'),
  '… and the clip asked for after it gets a job');

-- clients cannot write the animated columns, nor ask for a clip
create policy "test: anyone updates" on public.generations for update using (true) with check (true);
select tests.authenticate_as('14141414-0000-4000-8000-000000000001');
select throws_ok($$update public.generations set animated_path = 'x' where id = '14141414-aaaa-4000-8000-000000000001'$$,
  '42501', 'generations.animated_path is written by the service only', 'users cannot point the animated preview anywhere');
select throws_ok($$update public.generations set animated_status = null where id = '14141414-aaaa-4000-8000-000000000001'$$,
  '42501', 'generations.animated_status is written by the service only', 'nor reset it');
select throws_ok($$select public.queue_animated_preview('14141414-aaaa-4000-8000-000000000001')$$, '42501', null, 'nor ask for one');
select tests.clear_authentication();

select * from finish();
rollback;
