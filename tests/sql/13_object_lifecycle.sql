-- Objects follow their rows (issue 14, as jobs): a delete, a user's cascade and a replaced original
-- queue delete_object jobs for exactly this system's paths of the row, in the same transaction; a
-- deleted row's pending work is cancelled; a path the row references again is dropped at claim;
-- orphans are listed; versions and --stale. (Claim, fencing, backoff and cap of the deletion jobs:
-- 15_job_behaviour.sql.)
begin;
select plan(33);

set local app.skip_preview_dispatch = 'on';
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;
select tests.create_user('life@example.test', '13131313-0000-4000-8000-000000000001') is not null as created \gset
select tests.create_user('life2@example.test', '13131313-0000-4000-8000-000000000002') is not null as created \gset
insert into public.generations (id, user_id, type, status, asset_url, preview_status, preview_path, poster_path, original_path, animated_status, animated_path) values
  ('13131313-aaaa-4000-8000-000000000001', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/1.png', 'ready',
   '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000001_preview.webp', null,
   '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000001.png', null, null),
  -- an original the platform copied itself (not ours) and an mp4 in preview_path we did not make: never queued
  ('13131313-aaaa-4000-8000-000000000002', '13131313-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/2.mp4', 'ready',
   '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000002_preview.mp4',
   '13131313-0000-4000-8000-000000000001/posters/13131313-aaaa-4000-8000-000000000002_poster.webp',
   '13131313-0000-4000-8000-000000000001/video/13131313-aaaa-4000-8000-000000000002_1700000000000.mp4', null, null),
  ('13131313-aaaa-4000-8000-000000000003', '13131313-0000-4000-8000-000000000002', 'photo', 'success', 'https://k.test/3.png', 'ready',
   '13131313-0000-4000-8000-000000000002/previews/13131313-aaaa-4000-8000-000000000003_preview.webp', null,
   '13131313-0000-4000-8000-000000000002/originals/13131313-aaaa-4000-8000-000000000003.jpg', null, null),
  ('13131313-aaaa-4000-8000-000000000004', '13131313-0000-4000-8000-000000000002', 'audio', 'success', 'https://k.test/4.mp3', 'none', null, null, null, null, null),
  -- a video with a clip of ours and a poster being re-rendered (a live preview job), a clip job queued
  ('13131313-aaaa-4000-8000-000000000008', '13131313-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/8.mp4', 'ready',
   null, '13131313-0000-4000-8000-000000000001/posters/13131313-aaaa-4000-8000-000000000008_poster.webp', null, 'ready',
   '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000008_preview.mp4');

select is(public.preview_object_path('13131313-0000-4000-8000-000000000001', '13131313-aaaa-4000-8000-000000000001', 'image'),
  '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000001_preview.webp', 'the preview path scheme');
select is(public.preview_owned_objects(g), array['13131313-0000-4000-8000-000000000002/previews/13131313-aaaa-4000-8000-000000000004_preview.webp'],
  'an audio row owns its tile (20261203102000_audio_previews.sql)') from public.generations g where id = '13131313-aaaa-4000-8000-000000000004';
select is(public.preview_owned_objects(g), array['13131313-0000-4000-8000-000000000002/previews/13131313-aaaa-4000-8000-000000000004_preview.webp',
                                                 '13131313-0000-4000-8000-000000000002/previews/13131313-aaaa-4000-8000-000000000004_waveform.webp'],
  '… and its waveform beside the cover, once written')
  from (select (jsonb_populate_record(x, jsonb_build_object('preview_waveform_path', public.audio_waveform_path(x.user_id, x.id)))).*
          from public.generations x where id = '13131313-aaaa-4000-8000-000000000004') g;
select throws_ok($$select public.queue_object_deletions(array['x'], null, 'because')$$, '22023', null, 'a deletion needs a known reason');

-- a delete queues exactly ours, due now, and cancels the row's pending work
delete from public.generations where id in ('13131313-aaaa-4000-8000-000000000001', '13131313-aaaa-4000-8000-000000000002');
select results_eq(
  $$select payload ->> 'path', payload ->> 'reason', generation_id::text, state, run_at <= now() from public.preview_jobs
     where kind = 'delete_object' and generation_id::text like '13131313-%' order by 1$$,
  $$values ('13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000001.png'::text, 'row_deleted'::text, '13131313-aaaa-4000-8000-000000000001'::text, 'queued'::text, true),
           ('13131313-0000-4000-8000-000000000001/posters/13131313-aaaa-4000-8000-000000000002_poster.webp', 'row_deleted', '13131313-aaaa-4000-8000-000000000002', 'queued', true),
           ('13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000001_preview.webp', 'row_deleted', '13131313-aaaa-4000-8000-000000000001', 'queued', true)$$,
  'deleted rows queue their preview/poster and our original copy, due now; not the platform''s own original nor an mp4 we did not make');
select public.requeue_preview('13131313-aaaa-4000-8000-000000000008', 'ready', 'r0') is not null as requeued \gset
select ok(exists (select 1 from public.preview_jobs where generation_id = '13131313-aaaa-4000-8000-000000000008' and kind = 'preview'), 'row 8 has a live preview job');
delete from public.generations where id = '13131313-aaaa-4000-8000-000000000008';
select results_eq(
  $$select kind, payload ->> 'path' from public.preview_jobs where generation_id = '13131313-aaaa-4000-8000-000000000008' order by 2$$,
  $$values ('delete_object'::text, '13131313-0000-4000-8000-000000000001/posters/13131313-aaaa-4000-8000-000000000008_poster.webp'::text),
           ('delete_object', '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000008_preview.mp4')$$,
  'a deleted video: its poster and its clip are queued, its pending preview job is cancelled');

-- a user's cascade
delete from auth.users where id = '13131313-0000-4000-8000-000000000002';
select is((select count(*)::int from public.preview_jobs where generation_id = '13131313-aaaa-4000-8000-000000000003' and kind = 'delete_object'), 2,
  'deleting a user queues the objects of their rows (the cascade fires the row trigger)');
select results_eq($$select kind, payload ->> 'path' from public.preview_jobs where generation_id = '13131313-aaaa-4000-8000-000000000004'$$,
  $$values ('delete_object'::text, '13131313-0000-4000-8000-000000000002/previews/13131313-aaaa-4000-8000-000000000004_preview.webp'::text)$$,
  '… the audio row''s tile; its pending preview job cancelled');

-- a replaced original copy, due after two leases; a re-render writing the same path takes it back
insert into public.generations (id, user_id, type, status, asset_url, original_path) values
  ('13131313-aaaa-4000-8000-000000000005', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/5.png',
   '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg');
update public.generations set original_path = '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.png'
 where id = '13131313-aaaa-4000-8000-000000000005';
select results_eq(
  $$select payload ->> 'path', payload ->> 'reason', run_at - now() from public.preview_jobs where generation_id = '13131313-aaaa-4000-8000-000000000005'$$,
  $$values ('13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg'::text, 'replaced'::text, interval '30 seconds')$$,
  'an original copy the row no longer points at is queued, due after two leases');
select is((select count(*)::int from public.claim_preview_jobs(array['delete_object'], 10, '13131313-aaaa-4000-8000-000000000005')), 0,
  'not claimable before then');
update public.generations set original_path = '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg'
 where id = '13131313-aaaa-4000-8000-000000000005';

-- claim: the re-referenced path is dropped; the others are given their path and reason
select tests.travel(interval '1 minute');
create temp table claimed as select * from public.claim_preview_jobs(array['delete_object'], 1000) where generation_id::text like '13131313-%';
select results_eq($$select input ->> 'path', input ->> 'reason' from claimed where generation_id = '13131313-aaaa-4000-8000-000000000005'$$,
  $$values ('13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.png'::text, 'replaced'::text)$$,
  'a path its row references again (.jpg) is dropped, not deleted; the copy it replaced in turn (.png) is claimed');
select ok(not exists (select 1 from public.preview_jobs where payload ->> 'path' like '%13131313-aaaa-4000-8000-000000000005.jpg'), 'the dropped job is gone');
select ok((select count(*) = 9 and bool_and(attempt = 1 and kind = 'delete_object') from claimed), 'the due deletions are claimed once, attempt 1');
select is_empty($$select * from public.claim_preview_jobs(array['delete_object'], 1000) where generation_id::text like '13131313-%'$$, 'a claimed deletion is not claimed again');
select ok((select bool_and(public.preview_job_is_current(job_id, attempt)) from claimed), 'each claim is current (checked right before the delete)');
select is((select count(*)::int from claimed where public.fail_preview_job(job_id, attempt, 'STORAGE_ERROR', 'Delete failed: 503', true) = 'retry'), 9,
  'failed deletions are retried');
select ok((select bool_and(run_at = now() + public.preview_backoff(1) and last_error = 'Delete failed: 503') from public.preview_jobs
            where id in (select job_id from claimed)), '… after preview_backoff(1)');
select tests.travel(public.preview_backoff(1));
select is((select count(*)::int from public.claim_preview_jobs(array['delete_object'], 1000) c
            where c.generation_id::text like '13131313-%' and public.complete_preview_job(c.job_id, c.attempt)), 9, 'deleted: completed');
select is((select count(*)::int from public.preview_jobs where generation_id::text like '13131313-%'), 0, '… the jobs are gone');

-- orphans: objects at our paths whose row is gone; queued for deletion by npm run orphans
insert into storage.objects (bucket_id, name) values
  ('generations', '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-0000000000f1_preview.webp'),
  ('generations', '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-0000000000f1_preview.mp4'),
  ('generations', '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-0000000000f1_waveform.webp'),
  ('generations', '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg'),
  ('generations', '13131313-0000-4000-8000-000000000001/image/13131313-aaaa-4000-8000-0000000000f2.png');
select results_eq($$select path from public.preview_orphan_objects(1000, '13131313-0000-4000-8000-000000000001') order by 1$$,
  $$values ('13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-0000000000f1_preview.mp4'::text),
           ('13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-0000000000f1_preview.webp'),
           ('13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-0000000000f1_waveform.webp')$$,
  'orphans: our paths (the clip''s and the waveform''s included) whose row is gone; not a row''s own object, not a path we never make');
select is(public.queue_object_deletions(array(select path from public.preview_orphan_objects(1000, '13131313-0000-4000-8000-000000000001')), null, 'orphan'), 3,
  'orphans are queued for deletion');
select is(public.queue_object_deletions(array(select path from public.preview_orphan_objects(1000, '13131313-0000-4000-8000-000000000001')), null, 'orphan'), 3,
  'listing them again …');
select is((select count(*)::int from public.preview_jobs where payload ->> 'reason' = 'orphan'), 3, '… makes no second job per object');

-- preview versions: a completion stamps one; --stale takes ready rows of another
insert into public.generations (id, user_id, type, status, asset_url, created_at) values
  ('13131313-aaaa-4000-8000-000000000006', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/6.png', '1971-01-01'),
  ('13131313-aaaa-4000-8000-000000000007', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/7.png', '1971-01-02');
select public.queue_preview('13131313-aaaa-4000-8000-000000000006') as job6 \gset
select public.queue_preview('13131313-aaaa-4000-8000-000000000007') as job7 \gset
select is((select count(*)::int from public.claim_preview_jobs(array['preview'], 10)), 2, 'both claimed');
select ok(public.complete_preview_job(:job6, 1, '{"path": "p6", "version": "r1-s512-q80"}'), 'complete with a version');
select ok(public.complete_preview_job(:job7, 1, '{"path": "p7", "version": "r2-s512-q80"}'), 'complete with another');
select is((select preview_version from public.generations where id = '13131313-aaaa-4000-8000-000000000006'), 'r1-s512-q80', 'the version is stamped');
select results_eq($$select id::text from public.backfill_candidates('1970-12-31', null, 100000, null, false, null, 'r2-s512-q80') where id::text like '13131313-%'$$,
  $$values ('13131313-aaaa-4000-8000-000000000006')$$, '--stale candidates: ready rows of another version only');

-- users
select tests.authenticate_as('13131313-0000-4000-8000-000000000001');
select throws_ok($$select * from public.claim_preview_jobs(array['delete_object'], 1)$$, '42501', null, 'users cannot claim deletions');
select throws_ok($$select public.queue_object_deletions(array['13131313-0000-4000-8000-000000000002/previews/x_preview.webp'], null, 'orphan')$$,
  '42501', null, 'nor queue one');
select throws_ok($$select * from public.preview_orphan_objects()$$, '42501', null, 'nor list orphans');
select throws_ok($$select * from public.preview_jobs$$, '42501', null, 'nor read the queue');
select tests.clear_authentication();

select * from finish();
rollback;
