-- Audio previews (migrations/20261203102000_audio_previews.sql): an audio row is wanted like a
-- photo; its job says where the tile and the waveform go and which cover KIE sent; the completion
-- writes the tile (cover or waveform) in preview_path, the waveform path and the length. (The own
-- columns' guard: 19_app_modes; owned objects and orphans: 13_object_lifecycle.)
begin;
select plan(12);

set local app.skip_preview_dispatch = 'on';
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;
select tests.create_user('audio@example.test', '26262626-0000-4000-8000-000000000001') is not null as created \gset
\set u '26262626-0000-4000-8000-000000000001'
insert into public.generations (id, user_id, type, status, task_id, model, asset_url, preview_cover_url) values
  ('26262626-aaaa-4000-8000-000000000001', :'u', 'audio', 'success', 'au-1', 'V4_5', 'https://k.test/1.mp3', 'https://k.test/1.jpeg'),
  ('26262626-aaaa-4000-8000-000000000002', :'u', 'audio', 'success', 'au-2', 'V4_5', 'https://k.test/2.mp3', null),
  ('26262626-aaaa-4000-8000-000000000003', :'u', 'audio', 'generating', 'au-3', 'V4_5', null, null);

select results_eq($$select right(id::text, 2), public.preview_wanted(g), public.preview_skip_reason(g) from public.generations g
                     where user_id = '26262626-0000-4000-8000-000000000001' order by id$$,
  $$values ('01', true, null::text), ('02', true, null), ('03', false, 'generating')$$,
  'an audio row with its track is wanted; one KIE still generates is not');
select is((select count(*)::int from (select public.queue_preview(g.id) from public.generations g
                                       where g.user_id = '26262626-0000-4000-8000-000000000001') q
            where queue_preview is not null), 2,
  'each finished track gets a preview job (what the trigger queues; muted here)');

create temp table c1 as select * from public.claim_preview_jobs(array['preview'], 1, '26262626-aaaa-4000-8000-000000000001');
select results_eq($$select input ->> 'kind', input ->> 'source_url', input ->> 'cover_url', input ->> 'target_path', input ->> 'waveform_path' from c1$$,
  $$values ('audio'::text, 'https://k.test/1.mp3'::text, 'https://k.test/1.jpeg'::text,
            '26262626-0000-4000-8000-000000000001/previews/26262626-aaaa-4000-8000-000000000001_preview.webp'::text,
            '26262626-0000-4000-8000-000000000001/previews/26262626-aaaa-4000-8000-000000000001_waveform.webp'::text)$$,
  'the claim: kind audio, the track, KIE''s cover, the tile''s path and the waveform''s beside it');
select ok(public.complete_preview_job((select job_id from c1), 1, jsonb_build_object(
    'path', :'u' || '/previews/26262626-aaaa-4000-8000-000000000001_preview.webp', 'width', 512, 'height', 512, 'thumbhash', 't1',
    'originalPath', :'u' || '/originals/26262626-aaaa-4000-8000-000000000001.mp3', 'version', 'v',
    'waveformPath', :'u' || '/previews/26262626-aaaa-4000-8000-000000000001_waveform.webp', 'durationMs', 187250)), 'the job completes');
select results_eq($$select preview_status, preview_path, poster_path, preview_waveform_path, preview_duration_ms, original_path, preview_width, preview_thumbhash
                     from public.generations where id = '26262626-aaaa-4000-8000-000000000001'$$,
  $$values ('ready'::text, '26262626-0000-4000-8000-000000000001/previews/26262626-aaaa-4000-8000-000000000001_preview.webp'::text, null::text,
            '26262626-0000-4000-8000-000000000001/previews/26262626-aaaa-4000-8000-000000000001_waveform.webp'::text, 187250,
            '26262626-0000-4000-8000-000000000001/originals/26262626-aaaa-4000-8000-000000000001.mp3'::text, 512, 't1'::text)$$,
  'ready: the cover''s tile in preview_path, the waveform beside it, the length, the track''s copy');
select is(public.preview_image_path(g), g.preview_path, 'the library''s image of an audio row is preview_path')
  from public.generations g where id = '26262626-aaaa-4000-8000-000000000001';
select ok(public.preview_references(g, g.preview_waveform_path), 'the row references its waveform (a deletion of it is dropped)')
  from public.generations g where id = '26262626-aaaa-4000-8000-000000000001';

-- without a cover the waveform is the tile: one object, named in both columns
create temp table c2 as select * from public.claim_preview_jobs(array['preview'], 1, '26262626-aaaa-4000-8000-000000000002');
select is((select input ->> 'cover_url' from c2), null, 'no cover in the claim when KIE sent none');
select ok(public.complete_preview_job((select job_id from c2), 1, jsonb_build_object(
    'path', :'u' || '/previews/26262626-aaaa-4000-8000-000000000002_preview.webp', 'width', 512, 'height', 288, 'thumbhash', 't2',
    'waveformPath', :'u' || '/previews/26262626-aaaa-4000-8000-000000000002_preview.webp', 'durationMs', 5000)), '… completes');
select results_eq($$select preview_path = preview_waveform_path, preview_duration_ms from public.generations where id = '26262626-aaaa-4000-8000-000000000002'$$,
  $$values (true, 5000)$$, '… the waveform is the tile');
select is(public.preview_owned_objects(g), array[g.preview_path], '… owned once')
  from public.generations g where id = '26262626-aaaa-4000-8000-000000000002';

-- a photo's completion leaves the audio columns alone
insert into public.generations (id, user_id, type, status, task_id, asset_url) values
  ('26262626-aaaa-4000-8000-000000000004', :'u', 'photo', 'success', 'au-4', 'https://k.test/4.png');
select public.queue_preview('26262626-aaaa-4000-8000-000000000004') is not null as queued4 \gset
create temp table c4 as select * from public.claim_preview_jobs(array['preview'], 1, '26262626-aaaa-4000-8000-000000000004');
select public.complete_preview_job((select job_id from c4), 1, '{"path": "p.webp", "width": 1, "height": 1, "thumbhash": "t", "waveformPath": "w.webp", "durationMs": 1}') as done \gset
select results_eq($$select preview_path, preview_waveform_path, preview_duration_ms from public.generations where id = '26262626-aaaa-4000-8000-000000000004'$$,
  $$values ('p.webp'::text, null::text, null::int)$$, 'a photo gets no waveform or length, whatever the result says');

select * from finish();
rollback;
