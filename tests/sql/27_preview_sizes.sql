-- Preview sizes (migrations/20261203102200_preview_sizes.sql): the job names the larger sizes'
-- stem; a completion's sizes are stored when each is at the row's own name for its side, else
-- refused (22023, nothing written); the sizes are the row's objects (owned, referenced, deleted
-- with it, orphans when it is gone); sizes a re-render no longer makes, and a new asset's old
-- sizes, are queued for deletion; API roles cannot write them.
begin;
select plan(15);

set local app.skip_preview_dispatch = 'on';
set local app.preview_lease = '15 seconds';
delete from public.preview_jobs;
select tests.create_user('sizes@example.test', '27272727-0000-4000-8000-000000000001') is not null as created \gset
\set u '27272727-0000-4000-8000-000000000001'
\set p '27272727-aaaa-4000-8000-000000000001'
\set v '27272727-aaaa-4000-8000-000000000002'
insert into public.generations (id, user_id, type, status, task_id, asset_url) values
  (:'p', :'u', 'photo', 'success', 'sz-1', 'https://k.test/1.png'),
  (:'v', :'u', 'video', 'success', 'sz-2', 'https://k.test/2.mp4');
select public.queue_preview(:'p') is not null and public.queue_preview(:'v') is not null as queued \gset

create temp table c as select * from public.claim_preview_jobs(array['preview'], 2);
select results_eq($$select right(generation_id::text, 2), input ->> 'size_stem' from c order by 1$$,
  $$values ('01'::text, '27272727-0000-4000-8000-000000000001/previews/27272727-aaaa-4000-8000-000000000001_preview'::text),
           ('02', '27272727-0000-4000-8000-000000000001/posters/27272727-aaaa-4000-8000-000000000002_poster')$$,
  'the claim names the larger sizes'' stem: the preview''s or the poster''s path without .webp');

-- a size at another name, or not ascending: refused, the row unchanged
select throws_ok(format($$select public.complete_preview_job(%s, 1, '{"path": "x", "sizes": [{"side": 1024, "path": "%s/previews/other_1024.webp", "width": 1024, "height": 640}]}')$$,
    (select job_id from c where generation_id = :'p'), :'u'),
  '22023', null, 'a size at a path that is not the row''s for its side is refused');
select throws_ok(format($$select public.complete_preview_job(%s, 1, '{"path": "x", "sizes": [{"side": 2048, "path": "%s_2048.webp", "width": 2048, "height": 1280}, {"side": 1024, "path": "%s_1024.webp", "width": 1024, "height": 640}]}')$$,
    (select job_id from c where generation_id = :'p'), public.preview_size_stem(:'u', :'p', 'image'), public.preview_size_stem(:'u', :'p', 'image')),
  '22023', null, 'sizes out of order are refused');
select is((select preview_status from public.generations where id = :'p'), 'processing', '… and the row is as it was (still processing)');

select ok(public.complete_preview_job((select job_id from c where generation_id = :'p'), 1, jsonb_build_object(
    'path', :'u' || '/previews/' || :'p' || '_preview.webp', 'width', 512, 'height', 320, 'thumbhash', 't', 'version', 'r3-s512,1024-q80',
    'sizes', jsonb_build_array(jsonb_build_object('side', 1024, 'path', :'u' || '/previews/' || :'p' || '_preview_1024.webp', 'width', 1024, 'height', 640)))),
  'the photo completes with its 1024 size');
select ok(public.complete_preview_job((select job_id from c where generation_id = :'v'), 1, jsonb_build_object(
    'path', :'u' || '/posters/' || :'v' || '_poster.webp', 'width', 512, 'height', 288, 'thumbhash', 't', 'version', 'r3-s512,1024-q80',
    'sizes', jsonb_build_array(jsonb_build_object('side', 1024, 'path', :'u' || '/posters/' || :'v' || '_poster_1024.webp', 'width', 1024, 'height', 576)))),
  'the video completes with its poster''s 1024 size');
select results_eq($$select preview_sizes from public.generations where id = '27272727-aaaa-4000-8000-000000000001'$$,
  $$values ('[{"side": 1024, "path": "27272727-0000-4000-8000-000000000001/previews/27272727-aaaa-4000-8000-000000000001_preview_1024.webp", "width": 1024, "height": 640}]'::jsonb)$$,
  'preview_sizes lists it');
select ok(public.preview_references(g, g.preview_sizes -> 0 ->> 'path'), 'the row references its size (a deletion of it is dropped)')
  from public.generations g where id = :'p';
select is(public.preview_owned_objects(g), array[g.poster_path, g.preview_sizes -> 0 ->> 'path'], 'the poster and its size are the row''s objects')
  from public.generations g where id = :'v';

-- a re-render that makes no 1024 size (PREVIEW_SIZES=512 now): the old size is queued after two leases
select public.requeue_preview(:'p', 'ready', 'r4') is not null as rerender \gset
create temp table c2 as select * from public.claim_preview_jobs(array['preview'], 1, :'p');
select ok(public.complete_preview_job((select job_id from c2), (select attempt from c2), jsonb_build_object(
    'path', :'u' || '/previews/' || :'p' || '_preview.webp', 'width', 512, 'height', 320, 'thumbhash', 't', 'version', 'r3-s512-q80', 'sizes', '[]'::jsonb)),
  'the re-render completes with no larger size');
select results_eq($$select payload ->> 'path', payload ->> 'reason', run_at > now() from public.preview_jobs where kind = 'delete_object'$$,
  $$values ('27272727-0000-4000-8000-000000000001/previews/27272727-aaaa-4000-8000-000000000001_preview_1024.webp'::text, 'replaced'::text, true)$$,
  'the size it no longer has is queued for deletion, after two leases');

-- a new asset: the old poster's size goes too
update public.generations set asset_url = 'https://k.test/2b.mp4' where id = :'v';
select results_eq($$select preview_sizes, poster_path from public.generations where id = '27272727-aaaa-4000-8000-000000000002'$$,
  $$values (null::jsonb, null::text)$$, 'a new asset clears the sizes with the poster');
select ok(exists (select 1 from public.preview_jobs where kind = 'delete_object' and payload ->> 'reason' = 'replaced'
                     and payload ->> 'path' = :'u' || '/posters/' || :'v' || '_poster_1024.webp'), '… and queues the old size for deletion');

-- orphans: a size whose row is gone
insert into storage.objects (bucket_id, name) values
  ('generations', :'u' || '/previews/27272727-aaaa-4000-8000-0000000000f1_preview_1024.webp'),
  ('generations', :'u' || '/posters/27272727-aaaa-4000-8000-0000000000f1_poster_2048.webp'),
  ('generations', :'u' || '/previews/27272727-aaaa-4000-8000-0000000000f1_preview_big.webp');
select results_eq($$select path from public.preview_orphan_objects(1000, '27272727-0000-4000-8000-000000000001') order by 1$$,
  $$values ('27272727-0000-4000-8000-000000000001/posters/27272727-aaaa-4000-8000-0000000000f1_poster_2048.webp'::text),
           ('27272727-0000-4000-8000-000000000001/previews/27272727-aaaa-4000-8000-0000000000f1_preview_1024.webp')$$,
  'orphans: sizes whose row is gone (not a name we never make)');

-- the row deleted: its sizes with it
delete from public.preview_jobs where kind = 'delete_object';
update public.generations set preview_sizes = '[{"side": 1024, "path": "27272727-0000-4000-8000-000000000001/previews/27272727-aaaa-4000-8000-000000000001_preview_1024.webp", "width": 1024, "height": 640}]'
 where id = :'p';
delete from public.generations where id = :'p';
select ok(exists (select 1 from public.preview_jobs where kind = 'delete_object' and payload ->> 'reason' = 'row_deleted'
                     and payload ->> 'path' = :'u' || '/previews/' || :'p' || '_preview_1024.webp'), 'a deleted row''s sizes are queued with it');

select * from finish();
rollback;
