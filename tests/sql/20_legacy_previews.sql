-- Legacy previews (20261203101300_legacy_previews.sql): a ready row whose preview the library
-- cannot show (a video whose only preview is the older server's mp4 in preview_path, an object
-- that is not in storage, a path that is not an image or not in the owner's folder) is found by
-- preview_unusable_reason, counted as `unusable` by preview_coverage, listed with its reason by
-- backfill_preview_candidates and sent back to `none` with a fresh job by requeue_unusable_preview;
-- once re-rendered it is usable and found no more. Good ready rows are left alone.
begin;
select plan(29);

set local app.skip_preview_dispatch = 'on';  -- jobs are asked for explicitly here
set local app.preview_lease = '15 seconds';
select tests.create_user('legacy@example.test', '20202020-0000-4000-8000-000000000001') is not null as created \gset
select tests.create_user('legacy-other@example.test', '20202020-0000-4000-8000-000000000002') is not null as created \gset
create temp table coverage_before as select * from public.preview_coverage;

\set u '20202020-0000-4000-8000-000000000001'
insert into storage.buckets (id, name) values ('generations', 'generations') on conflict do nothing;
insert into storage.objects (bucket_id, name) values
  ('generations', :'u' || '/previews/20202020-aaaa-4000-8000-000000000001_preview.mp4'),
  ('generations', :'u' || '/previews/20202020-aaaa-4000-8000-000000000003_preview.webp'),
  ('generations', :'u' || '/posters/20202020-aaaa-4000-8000-000000000004_poster.webp'),
  ('generations', :'u' || '/previews/20202020-aaaa-4000-8000-000000000004_preview.mp4'),
  ('generations', :'u' || '/previews/20202020-aaaa-4000-8000-000000000005_preview.mp4'),
  ('generations', '20202020-0000-4000-8000-000000000002/previews/20202020-aaaa-4000-8000-000000000006_preview.webp'),
  ('generations', :'u' || '/image/20202020-aaaa-4000-8000-000000000008_1700000000000.JPG'),
  ('generations', :'u' || '/previews/20202020-aaaa-4000-8000-000000000011_preview.mp4');

insert into public.generations (id, user_id, type, status, asset_url, preview_status, preview_path, poster_path, error, created_at) values
  -- the older server's video: its 4 s clip in preview_path, no poster (the app's error text is its own)
  ('20202020-aaaa-4000-8000-000000000001', :'u', 'video', 'success', 'http://kie.test/l1.mp4', 'ready',
   :'u' || '/previews/20202020-aaaa-4000-8000-000000000001_preview.mp4', null, 'the app''s own text', '1980-01-01 00:00:01+00'),
  -- a webp preview whose object is gone
  ('20202020-aaaa-4000-8000-000000000002', :'u', 'photo', 'success', 'http://kie.test/l2.png', 'ready',
   :'u' || '/previews/20202020-aaaa-4000-8000-000000000002_preview.webp', null, null, '1980-01-01 00:00:02+00'),
  -- good: a webp preview that is there
  ('20202020-aaaa-4000-8000-000000000003', :'u', 'photo', 'success', 'http://kie.test/l3.png', 'ready',
   :'u' || '/previews/20202020-aaaa-4000-8000-000000000003_preview.webp', null, null, '1980-01-01 00:00:03+00'),
  -- good: a video with its poster (and the older server's clip beside it)
  ('20202020-aaaa-4000-8000-000000000004', :'u', 'video', 'success', 'http://kie.test/l4.mp4', 'ready',
   :'u' || '/previews/20202020-aaaa-4000-8000-000000000004_preview.mp4', :'u' || '/posters/20202020-aaaa-4000-8000-000000000004_poster.webp', null, '1980-01-01 00:00:04+00'),
  -- a product shot whose preview is an mp4
  ('20202020-aaaa-4000-8000-000000000005', :'u', 'product', 'success', 'http://kie.test/l5.png', 'ready',
   :'u' || '/previews/20202020-aaaa-4000-8000-000000000005_preview.mp4', null, null, '1980-01-01 00:00:05+00'),
  -- a preview in another user's folder (the library signs only the owner's)
  ('20202020-aaaa-4000-8000-000000000006', :'u', 'photo', 'success', 'http://kie.test/l6.png', 'ready',
   '20202020-0000-4000-8000-000000000002/previews/20202020-aaaa-4000-8000-000000000006_preview.webp', null, null, '1980-01-01 00:00:06+00'),
  -- a ready video without any path
  ('20202020-aaaa-4000-8000-000000000007', :'u', 'video', 'success', 'http://kie.test/l7.mp4', 'ready', null, null, null, '1980-01-01 00:00:07+00'),
  -- good: the app's own JPEG (upper-case extension) as the preview
  ('20202020-aaaa-4000-8000-000000000008', :'u', 'photo', 'success', 'http://kie.test/l8.png', 'ready',
   :'u' || '/image/20202020-aaaa-4000-8000-000000000008_1700000000000.JPG', null, null, '1980-01-01 00:00:08+00'),
  -- not ready: waiting for its first preview (the backfill's as before)
  ('20202020-aaaa-4000-8000-000000000009', :'u', 'photo', 'success', 'http://kie.test/l9.png', 'none', null, null, null, '1980-01-01 00:00:09+00'),
  -- audio marked ready by the app, with no tile: since 20261203102000 an audio row gets one (the backfill makes it)
  ('20202020-aaaa-4000-8000-00000000000a', :'u', 'audio', 'success', 'http://kie.test/la.mp3', 'ready', null, null, null, '1980-01-01 00:00:10+00'),
  -- the older server's video without any source left: nothing can re-render it
  ('20202020-aaaa-4000-8000-000000000011', :'u', 'video', 'success', null, 'ready',
   :'u' || '/previews/20202020-aaaa-4000-8000-000000000011_preview.mp4', null, null, '1980-01-01 00:00:11+00');

-- ---- the rule
select results_eq(
  $$select right(id::text, 2), public.preview_unusable_reason(g) from public.generations g where id::text like '20202020-aaaa-%' order by created_at$$,
  $$values ('01', 'legacy_video_preview'::text), ('02', 'missing_object'), ('03', null), ('04', null), ('05', 'not_an_image'),
           ('06', 'foreign_path'), ('07', 'no_image_path'), ('08', null), ('09', null), ('0a', 'no_image_path'), ('11', 'legacy_video_preview')$$,
  'preview_unusable_reason: the mp4-only video, a missing object, an mp4 as an image, another folder, no path (an audio row''s too); good rows and a waiting row are null');

-- ---- coverage: unusable ready rows by reason, not as ready
create function pg_temp.coverage_added(p_type text, p_state text, p_reason text) returns bigint language sql as $$
  select coalesce((select sum(total) from public.preview_coverage where type = p_type and state = p_state and reason is not distinct from p_reason), 0)
       - coalesce((select sum(total) from coverage_before where type = p_type and state = p_state and reason is not distinct from p_reason), 0)
$$;
select results_eq(
  $$select t, r, pg_temp.coverage_added(t, 'unusable', r)::int from (values ('photo', 'foreign_path'), ('photo', 'missing_object'),
      ('product', 'not_an_image'), ('video', 'legacy_video_preview'), ('video', 'no_image_path')) v(t, r) order by 1, 2$$,
  $$values ('photo'::text, 'foreign_path'::text, 1), ('photo', 'missing_object', 1), ('product', 'not_an_image', 1),
           ('video', 'legacy_video_preview', 1), ('video', 'no_image_path', 1)$$,
  'coverage: each unusable ready row under state unusable, by its reason');
select is(pg_temp.coverage_added('photo', 'ready', null), 2::bigint, 'coverage: the usable photos count as ready (03, 08)');
select is(pg_temp.coverage_added('video', 'ready', null), 1::bigint, 'coverage: the video with its poster counts as ready (04)');
select is(pg_temp.coverage_added('video', 'not_previewable', 'no_source'), 1::bigint,
  'coverage: a ready legacy video without a source is not previewable (no_source), as before');
select is((select sum(total)::int from public.preview_coverage), (select count(*)::int from public.generations),
  'preview_coverage still counts every row of the table once');

-- ---- the backfill's pages
select results_eq(
  $$select right(id::text, 2), preview_status, reason from public.backfill_preview_candidates(null, null, 100000)
     where user_id = '20202020-0000-4000-8000-000000000001'$$,
  $$values ('01', 'ready'::text, 'legacy_video_preview'::text), ('02', 'ready', 'missing_object'), ('05', 'ready', 'not_an_image'),
           ('06', 'ready', 'foreign_path'), ('07', 'ready', 'no_image_path'), ('09', 'none', null), ('0a', 'ready', 'no_image_path')$$,
  'backfill_preview_candidates: the unusable ready rows with their reason beside the waiting row, oldest first (the audio row without a tile too); not good rows or a row without a source');
select results_eq(
  $$select right(id::text, 2) from public.backfill_preview_candidates(null, null, 100000, 'video') where user_id = '20202020-0000-4000-8000-000000000001'$$,
  $$values ('01'), ('07')$$, '… the type filter applies to them');
select results_eq(
  $$select right(id::text, 2) from public.backfill_preview_candidates('1980-01-01 00:00:02+00', '20202020-aaaa-4000-8000-000000000002', 2)
     where user_id = '20202020-0000-4000-8000-000000000001'$$,
  $$values ('05'), ('06')$$, '… and the keyset cursor and limit');
select results_eq(
  $$select right(id::text, 2) from public.backfill_candidates(null, null, 100000) where user_id = '20202020-0000-4000-8000-000000000001'$$,
  $$values ('09')$$, 'backfill_candidates itself is unchanged (rows without a ready preview)');

-- ---- requeue
select is(public.requeue_unusable_preview('20202020-aaaa-4000-8000-000000000003'), null, 'requeue leaves a usable ready row');
select results_eq($$select preview_status, (select count(*)::int from public.preview_jobs where generation_id = g.id)
                      from public.generations g where id = '20202020-aaaa-4000-8000-000000000003'$$,
  $$values ('ready'::text, 0)$$, '… ready, no job');
select is(public.requeue_unusable_preview('20202020-aaaa-4000-8000-000000000011'), null, 'requeue leaves a row nothing can re-render (no source)');
select is(public.requeue_unusable_preview('20202020-aaaa-4000-8000-000000000009'), null, 'requeue leaves a row that is not ready');
-- an old terminal failure of ours on the legacy row must not survive its fresh job
insert into public.preview_jobs (kind, generation_id, state, attempts, dedupe_key, last_error_code, last_error)
values ('preview', '20202020-aaaa-4000-8000-000000000001', 'failed', 5, 'preview:20202020-aaaa-4000-8000-000000000001', 'DECODE_FAILED', 'x');
select ok(public.requeue_unusable_preview('20202020-aaaa-4000-8000-000000000001') is not null, 'requeue takes the mp4-only video');
select results_eq($$select preview_status, preview_path, poster_path, error, preview_error_code
                      from public.generations where id = '20202020-aaaa-4000-8000-000000000001'$$,
  $$values ('none'::text, '20202020-0000-4000-8000-000000000001/previews/20202020-aaaa-4000-8000-000000000001_preview.mp4'::text,
            null::text, 'the app''s own text'::text, null::text)$$,
  '… none; the app''s mp4 stays in preview_path and its error is untouched');
select results_eq($$select state, attempts from public.preview_jobs where generation_id = '20202020-aaaa-4000-8000-000000000001' and kind = 'preview'$$,
  $$values ('queued'::text, 0)$$, '… one fresh job (the old terminal failure is gone)');
select is(public.requeue_unusable_preview('20202020-aaaa-4000-8000-000000000001'), null, 'requeue again changes nothing (the row waits for its job)');
select is((select count(*)::int from public.preview_jobs where generation_id = '20202020-aaaa-4000-8000-000000000001'), 1, '… still one job');
select ok(not exists (select 1 from public.backfill_preview_candidates(null, null, 100000) where id = '20202020-aaaa-4000-8000-000000000001'),
  '… and the backfill lists it no more while its job is live');

-- ---- the render writes this system's poster; the row is usable and found no more
select is((select input ->> 'target_path' from public.claim_preview_jobs(array['preview'], 1, '20202020-aaaa-4000-8000-000000000001')),
  '20202020-0000-4000-8000-000000000001/posters/20202020-aaaa-4000-8000-000000000001_poster.webp', 'the claim renders the poster at our path');
insert into storage.objects (bucket_id, name) values
  ('generations', :'u' || '/posters/20202020-aaaa-4000-8000-000000000001_poster.webp');
select ok(public.complete_preview_job((select id from public.preview_jobs where generation_id = '20202020-aaaa-4000-8000-000000000001' and state = 'running'), 1,
  jsonb_build_object('path', :'u' || '/posters/20202020-aaaa-4000-8000-000000000001_poster.webp', 'width', 512, 'height', 288, 'thumbhash', 't')),
  'the poster completes');
select results_eq($$select preview_status, poster_path, preview_path, public.preview_unusable_reason(g) from public.generations g
                     where id = '20202020-aaaa-4000-8000-000000000001'$$,
  $$values ('ready'::text, '20202020-0000-4000-8000-000000000001/posters/20202020-aaaa-4000-8000-000000000001_poster.webp'::text,
            '20202020-0000-4000-8000-000000000001/previews/20202020-aaaa-4000-8000-000000000001_preview.mp4'::text, null::text)$$,
  '… ready with a usable poster; preview_path still names the app''s mp4');
select ok(exists (select 1 from storage.objects where bucket_id = 'generations'
                   and name = :'u' || '/previews/20202020-aaaa-4000-8000-000000000001_preview.mp4'),
  'the app''s mp4 object is left alone');
-- the missing webp: requeued, rendered at the same path, there again
select ok(public.requeue_unusable_preview('20202020-aaaa-4000-8000-000000000002') is not null, 'requeue takes the photo whose object is missing');
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '20202020-aaaa-4000-8000-000000000002')), 1, '… claimed');
insert into storage.objects (bucket_id, name) values
  ('generations', :'u' || '/previews/20202020-aaaa-4000-8000-000000000002_preview.webp');
select ok(public.complete_preview_job((select id from public.preview_jobs where generation_id = '20202020-aaaa-4000-8000-000000000002' and state = 'running'), 1,
  jsonb_build_object('path', :'u' || '/previews/20202020-aaaa-4000-8000-000000000002_preview.webp', 'width', 512, 'height', 384, 'thumbhash', 't')),
  '… and completes');
select results_eq(
  $$select right(id::text, 2) from public.backfill_preview_candidates(null, null, 100000) where user_id = '20202020-0000-4000-8000-000000000001'$$,
  $$values ('05'), ('06'), ('07'), ('09'), ('0a')$$, 'a second walk finds neither re-rendered row again');

-- ---- the service's only
select is_empty($$select r || ' ' || f from unnest(array['anon', 'authenticated']) r,
                   unnest(array['public.preview_unusable_reason(public.generations)',
                                'public.backfill_preview_candidates(timestamptz, uuid, int, text, boolean, timestamptz, text)',
                                'public.requeue_unusable_preview(uuid)']) f
                  where has_function_privilege(r, f, 'execute')$$,
  'anon and authenticated cannot run the rule, the pages or the requeue (the rule reads storage.objects)');

select * from finish();
rollback;
