-- Exactly once per object across attempts (migrations/20261203101800_written_objects.sql): before
-- an upload the attempt holding the job notes the path, SHA-256 and size on the job; a later
-- attempt that would write the same content there keeps the object an earlier attempt wrote since
-- its note. Not another content, not an object older than the note, not another job's note.
begin;
select plan(10);

set local app.skip_preview_dispatch = 'on';
select tests.create_user('written@example.test', '24242424-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, task_id, asset_url) values
  ('24242424-aaaa-4000-8000-000000000001', '24242424-0000-4000-8000-000000000001', 'photo', 'success', 'written-1', 'https://kie.test/w1.png');
select public.enqueue_preview_job('preview', '24242424-aaaa-4000-8000-000000000001') as job \gset
select attempt as attempt1 from public.claim_preview_jobs(array['preview'], 1, '24242424-aaaa-4000-8000-000000000001') \gset

-- an object at the path from before (another render, the same size): not this attempt's
insert into storage.objects (bucket_id, name, metadata, updated_at) values
  ('generations', '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp',
   '{"size": 3000}', now() - interval '1 minute');

select ok(not public.note_preview_job_object(:job, :attempt1 + 1, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'aa', 3000),
  'a note from an attempt that does not hold the job is fenced');
select ok(public.note_preview_job_object(:job, :attempt1, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'aa', 3000),
  'the attempt holding the job notes what it is about to write');
select is((select payload -> 'objects' -> '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp' ->> 'sha256' from public.preview_jobs where id = :job),
  'aa', '… on the job');
select ok(not public.preview_job_object_written(:job, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'aa', 3000),
  'an object written before the note (another render of the same size) is not taken for this content');

-- the upload lands (the storage API upserts: updated_at now), then the worker dies before completing
select pg_sleep(0.01);
update storage.objects set updated_at = clock_timestamp(), metadata = '{"size": 3000}'
 where name = '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp';
select ok(public.preview_job_object_written(:job, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'aa', 3000),
  'the same content noted and written since: a later attempt keeps it');
select ok(not public.preview_job_object_written(:job, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'bb', 3000),
  'other content (another SHA-256) is written again');
select ok(not public.preview_job_object_written(:job, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'aa', 3001),
  '… so is another size');
select ok(not public.preview_job_object_written(:job, '24242424-0000-4000-8000-000000000001/originals/24242424-aaaa-4000-8000-000000000001.png', 'aa', 3000),
  'a path the job never noted is written');
select ok(not public.preview_job_object_written(:job + 1000000, '24242424-0000-4000-8000-000000000001/previews/24242424-aaaa-4000-8000-000000000001_preview.webp', 'aa', 3000),
  'another job''s note counts for nothing');
select is_empty($$select 1 from information_schema.routine_privileges
                   where routine_name in ('note_preview_job_object', 'preview_job_object_written') and grantee in ('anon', 'authenticated', 'PUBLIC')$$,
  'service only');

select * from finish();
rollback;
