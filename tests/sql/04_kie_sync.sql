-- apply_kie_result: the one write of a KIE sync; pending_kie_tasks; the preview job that follows
-- from a write (the enqueue trigger), once.
begin;
select plan(42);

set local app.skip_preview_dispatch = 'on';
select tests.create_user('sync@example.test', '44444444-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, task_id, model, created_at) values
  ('dddddddd-0000-4000-8000-000000000001', '44444444-0000-4000-8000-000000000001', 'photo', 'pending', 'kie-1', 'gpt-4o-image', now() - interval '5 minutes'),
  ('dddddddd-0000-4000-8000-000000000002', '44444444-0000-4000-8000-000000000001', 'video', 'queued', 'kie-2', 'veo3', now() - interval '4 minutes'),
  ('dddddddd-0000-4000-8000-000000000003', '44444444-0000-4000-8000-000000000001', 'photo', 'pending', 'kie-3', 'flux', now()),
  ('dddddddd-0000-4000-8000-000000000004', '44444444-0000-4000-8000-000000000001', 'photo', 'cancelled', 'kie-4', 'flux', now() - interval '1 hour');

-- pending_kie_tasks
select results_eq(
  $$select id, task_id, model, type from public.pending_kie_tasks() where task_id like 'kie-%'$$,
  $$values ('dddddddd-0000-4000-8000-000000000002'::uuid, 'kie-2'::text, 'veo3'::text, 'video'::text),
           ('dddddddd-0000-4000-8000-000000000001'::uuid, 'kie-1'::text, 'gpt-4o-image'::text, 'photo'::text)$$,
  'pending_kie_tasks: running tasks older than the min age, newest first');
select is((select count(*)::int from public.pending_kie_tasks(50, '0 seconds') where task_id like 'kie-%'), 3, 'min age is a parameter');
-- a task just asked about goes behind the others: tasks KIE never finishes cannot fill every batch
select public.record_kie_checks(array['kie-1']);
select results_eq(
  $$select task_id from public.pending_kie_tasks() where task_id like 'kie-%'$$,
  $$values ('kie-2'::text), ('kie-1'::text)$$,
  'pending_kie_tasks: never checked first, then least recently checked');
select public.record_kie_checks(array['kie-2']);
select results_eq($$select task_id from public.pending_kie_tasks() where task_id like 'kie-%'$$,
  $$values ('kie-1'::text), ('kie-2'::text)$$, '… which rotates the batch');
select tests.authenticate_as_anon();
select throws_ok($$select public.record_kie_checks(array['x'])$$, '42501', null, 'anon cannot stamp checks');
select tests.clear_authentication();

-- unknown task, bad state
select is_empty($$select * from public.apply_kie_result('nope', 'success', null, 'http://x', null)$$, 'unknown task: no row');
select throws_ok($$select * from public.apply_kie_result('kie-1', 'done', null, null, null)$$, '22023', null, 'unknown state is refused');

-- pending → generating, once
select is((select status::text from public.generations where task_id = 'kie-1'), 'pending', 'kie-1 starts pending');
select results_eq($$select status, changed from public.apply_kie_result('kie-1', 'pending', null, null, null)$$,
  $$values ('generating'::text, true)$$, 'pending at KIE: pending → generating');
select results_eq($$select status, changed from public.apply_kie_result('kie-1', 'pending', null, null, null)$$,
  $$values ('generating'::text, false)$$, 'pending again: nothing changes');

-- generating → success
select results_eq(
  $$select id, user_id, type, status, preview_status, changed
      from public.apply_kie_result('kie-1', 'success', '["http://kie.test/r1.png", "http://kie.test/r2.png"]', 'http://kie.test/r1.png', null)$$,
  $$values ('dddddddd-0000-4000-8000-000000000001'::uuid, '44444444-0000-4000-8000-000000000001'::uuid, 'photo'::text,
            'success'::text, 'none'::text, true)$$,
  'success (from generating): status, preview_status none, changed');
select results_eq($$select asset_url, result_urls from public.generations where id = 'dddddddd-0000-4000-8000-000000000001'$$,
  $$values ('http://kie.test/r1.png'::text, '["http://kie.test/r1.png", "http://kie.test/r2.png"]'::jsonb)$$, 'success writes asset_url and result_urls');

-- Re-sync of the same success: no write at all
update public.generations set updated_at = now() - interval '1 hour' where id = 'dddddddd-0000-4000-8000-000000000001';
create temp table before_resync as
  select xmin::text as row_xmin, updated_at from public.generations where id = 'dddddddd-0000-4000-8000-000000000001';
select results_eq($$select status, changed from public.apply_kie_result('kie-1', 'success', '["http://kie.test/r1.png", "http://kie.test/r2.png"]', 'http://kie.test/r1.png', null)$$,
  $$values ('success'::text, false)$$, 're-sync of a success: changed = false');
select is((select updated_at from public.generations where id = 'dddddddd-0000-4000-8000-000000000001'),
          (select updated_at from before_resync), 're-sync: updated_at unchanged');
select is((select xmin::text from public.generations where id = 'dddddddd-0000-4000-8000-000000000001'),
          (select row_xmin from before_resync), 're-sync: no row version written');

-- Terminal states are final
select results_eq($$select status, changed from public.apply_kie_result('kie-1', 'pending', null, null, null)$$,
  $$values ('success'::text, false)$$, 'a late pending never undoes success');
select results_eq($$select status, changed from public.apply_kie_result('kie-1', 'failed', null, null, 'boom')$$,
  $$values ('success'::text, false)$$, 'a failed after success changes nothing');
select is((select error from public.generations where id = 'dddddddd-0000-4000-8000-000000000001'), null, '… and writes no error');

-- failed
select is((select status::text from public.generations where task_id = 'kie-2'), 'queued', 'kie-2 starts queued');
select results_eq($$select status, changed from public.apply_kie_result('kie-2', 'failed', null, null, 'Content policy violation')$$,
  $$values ('failed'::text, true)$$, 'failed at KIE: queued → failed');
select is((select error from public.generations where id = 'dddddddd-0000-4000-8000-000000000002'), 'Content policy violation', 'failed writes the error');
select results_eq($$select status, changed from public.apply_kie_result('kie-2', 'success', null, 'http://kie.test/late.mp4', null)$$,
  $$values ('failed'::text, false)$$, 'failed is final (a late success changes nothing)');
select results_eq($$select status, changed from public.apply_kie_result('kie-2', 'pending', null, null, null)$$,
  $$values ('failed'::text, false)$$, 'a late pending never undoes failed');
select results_eq($$select status, changed from public.apply_kie_result('kie-4', 'success', null, 'http://kie.test/4.png', null)$$,
  $$values ('cancelled'::text, false)$$, 'cancelled is final');
select is((select error from public.generations where id = 'dddddddd-0000-4000-8000-000000000003'), null, 'failed without message: untouched row has no error');
select results_eq($$select status from public.apply_kie_result('kie-3', 'failed', null, null, null)$$,
  $$values ('failed'::text)$$, 'failed without a message');
select is((select error from public.generations where id = 'dddddddd-0000-4000-8000-000000000003'), 'Generation failed', '… gets a readable default error');

-- A new asset URL on a success row resets its preview
update public.generations set preview_status = 'ready', preview_path = 'p' where id = 'dddddddd-0000-4000-8000-000000000001';
select results_eq($$select status, preview_status, changed from public.apply_kie_result('kie-1', 'success', '["http://kie.test/new.png"]', 'http://kie.test/new.png', null)$$,
  $$values ('success'::text, 'none'::text, true)$$, 'success with a new asset URL: preview back to none');

-- Asset from result_urls when none is given
insert into public.generations (id, user_id, type, status, task_id) values
  ('dddddddd-0000-4000-8000-000000000005', '44444444-0000-4000-8000-000000000001', 'photo', 'generating', 'kie-5');
select * from public.apply_kie_result('kie-5', 'success', '["http://kie.test/5a.png"]', null, null);
select is((select asset_url from public.generations where task_id = 'kie-5'), 'http://kie.test/5a.png', 'asset_url defaults to the first result URL');

-- KIE's cover image of a video is kept for the poster's fallback (and a later sync without one keeps it)
insert into public.generations (id, user_id, type, status, task_id, model) values
  ('dddddddd-0000-4000-8000-0000000000c1', '44444444-0000-4000-8000-000000000001', 'video', 'generating', 'kie-cover', 'veo3');
select results_eq($$select changed from public.apply_kie_result('kie-cover', 'success', '["https://k.test/v.mp4"]', null, null, 'https://k.test/cover.jpg')$$,
  $$values (true)$$, 'a success with a cover');
select is((select preview_cover_url from public.generations where task_id = 'kie-cover'), 'https://k.test/cover.jpg', '… stores the cover');
select results_eq($$select changed from public.apply_kie_result('kie-cover', 'success', '["https://k.test/v.mp4"]', null, null)$$,
  $$values (false)$$, 'the same success without a cover changes nothing');

-- The preview job follows from the write (the enqueue trigger), once
set local app.skip_preview_dispatch = '';
insert into public.generations (id, user_id, type, status, task_id, model) values
  ('dddddddd-0000-4000-8000-000000000006', '44444444-0000-4000-8000-000000000001', 'photo', 'generating', 'kie-6', 'flux');
select is((select count(*)::int from public.preview_jobs where generation_id = 'dddddddd-0000-4000-8000-000000000006'), 0, 'a generating row has no job');
select results_eq($$select preview_queued from public.apply_kie_result('kie-6', 'success', '["http://kie.test/6.png"]', null, null)$$,
  $$values (true)$$, 'success: apply_kie_result says it queued the preview');
select results_eq($$select kind, state, attempts from public.preview_jobs where generation_id = 'dddddddd-0000-4000-8000-000000000006'$$,
  $$values ('preview'::text, 'queued'::text, 0)$$, '… and the row has its preview job');
select results_eq($$select changed, preview_queued from public.apply_kie_result('kie-6', 'success', '["http://kie.test/6.png"]', null, null)$$,
  $$values (false, false)$$, 'a re-sync changes nothing');
select is((select count(*)::int from public.preview_jobs where generation_id = 'dddddddd-0000-4000-8000-000000000006'), 1, '… and makes no second job');
create temp table job6 as select id from public.preview_jobs where generation_id = 'dddddddd-0000-4000-8000-000000000006';
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'dddddddd-0000-4000-8000-000000000006')), 1, 'a worker claims it');
select results_eq($$select changed, preview_queued from public.apply_kie_result('kie-6', 'success', '["http://kie.test/6b.png"]', null, null)$$,
  $$values (true, true)$$, 'a new asset while it renders');
select results_eq($$select id <> (select id from job6), state, attempts from public.preview_jobs where generation_id = 'dddddddd-0000-4000-8000-000000000006'$$,
  $$values (true, 'queued'::text, 0)$$, '… supersedes the job: the old one is gone, a new one waits');
select is(public.complete_preview_job((select id from job6), 1, '{"path": "old.webp"}'), false, '… and the old asset''s worker is fenced');
select results_eq($$select status, changed from public.apply_kie_result('kie-6', 'failed', null, null, 'late failure')$$,
  $$values ('success'::text, false)$$, 'a failed after success changes nothing (the job stays)');

select * from finish();
rollback;
