-- Issue 11's rules, each once in SQL: what gets a preview on a drifted production table
-- (success-like statuses, product shots, NULL preview_status, the source order with result_urls
-- as a JSON string), leases of rows another system left in processing, an earlier system's
-- failures, the guard (UPDATE and INSERT, as PostgREST's roles: this system's own columns refused,
-- the app's allowed, task_id refused in kie_owner mode), the KIE model and retention (expiry
-- opt-in), apply_kie_result's own report, preview_coverage.
begin;
select plan(76);

set local app.skip_preview_dispatch = 'on';
-- the mode the local stack runs (kie_owner, no mapping, expiry off), pinned for this transaction
select public.configure_preview_adoption('kie_owner', '{}', null, false) is not null as kie_owner \gset
select tests.create_user('adopt-a@example.test', 'abababab-0000-4000-8000-000000000001') is not null as created \gset
select tests.create_user('adopt-b@example.test', 'abababab-0000-4000-8000-000000000002') is not null as created \gset

-- ---- the pure rules
select is(public.preview_kind('photo'), 'image', 'photo → image');
select is(public.preview_kind('product'), 'image', 'product → image (preview_path)');
select is(public.preview_kind('video'), 'video', 'video → video (poster_path)');
select is(public.preview_kind('audio'), 'audio', 'audio → audio (preview_path: the cover, else the waveform; 20261203102000)');

-- preview_image_path: the column complete_preview wrote for the row's kind
select is(public.preview_image_path(row(g.*)::public.generations), e, d)
  from (values ('video', 'p.webp', 'v_poster.webp', 'v_poster.webp', 'a video''s image is its poster'),
               ('photo', 'p.webp', null, 'p.webp', 'a photo''s image is its preview'),
               ('product', 'p.webp', 'x.webp', 'p.webp', 'a product shot''s image is its preview'),
               ('audio', 'p.webp', 'x.webp', 'p.webp', 'an audio row''s image is its preview (the cover or the waveform)')) v(t, pp, po, e, d)
  cross join lateral (select (jsonb_populate_record(null::public.generations,
    jsonb_build_object('type', v.t, 'preview_path', v.pp, 'poster_path', v.po))).*) g;
select ok(public.generation_succeeded('completed') and public.generation_succeeded('succeeded') and public.generation_succeeded('success'), 'success-like statuses');
select ok(not public.generation_succeeded('generating'), 'a running status is not success');
select ok(public.kie_task_running('processing'), 'legacy processing status is a running task');
select is(public.first_result_url('["https://k.test/a.png", "https://k.test/b.png"]'), 'https://k.test/a.png', 'result_urls[0] of an array');
select is(public.first_result_url('"[\"https://k.test/s.png\"]"'), 'https://k.test/s.png', 'result_urls as a JSON string holding an array');
select is(public.first_result_url('"not json"'), null, 'a string that is not JSON: no source');
select is(public.first_result_url('[{"url": "https://k.test/o.png"}]'), null, 'an object: no source');
select is(public.first_result_url('["javascript:alert(1)"]'), null, 'not http(s): no source');
select is(public.first_result_url('[]'), null, 'empty: no source');

-- ---- rows (production's table has no status CHECK, its older rows say completed / processing,
-- and its preview_status is nullable)
alter table public.generations drop constraint generations_status_check;
alter table public.generations alter column preview_status drop not null;
insert into public.generations (id, user_id, type, status, model, asset_url, result_urls, result_url, original_path,
                                preview_status, preview_error_code, error, updated_at, created_at) values
  ('acacacac-0000-4000-8000-000000000001', 'abababab-0000-4000-8000-000000000001', 'product', 'success', 'm', null, '["https://k.test/p.png"]', null, null, 'none', null, null, now() - interval '1 day', now() - interval '9 days'),
  ('acacacac-0000-4000-8000-000000000002', 'abababab-0000-4000-8000-000000000001', 'video', 'success', 'm', null, null, 'https://k.test/v.mp4', null, 'none', null, null, now() - interval '1 day', now() - interval '8 days'),
  ('acacacac-0000-4000-8000-000000000003', 'abababab-0000-4000-8000-000000000001', 'photo', 'success', 'm', 'https://k.test/asset.png', '"[\"https://k.test/r.png\"]"', 'https://k.test/one.png', 'abababab-0000-4000-8000-000000000001/image/x.png', 'none', null, null, now() - interval '1 day', now() - interval '7 days'),
  ('acacacac-0000-4000-8000-000000000004', 'abababab-0000-4000-8000-000000000001', 'photo', 'success', 'm', null, '[]', null, null, 'none', null, null, now() - interval '1 day', now() - interval '6 days'),
  ('acacacac-0000-4000-8000-000000000005', 'abababab-0000-4000-8000-000000000001', 'audio', 'success', 'm', null, null, 'https://k.test/a.mp3', null, 'none', null, null, now() - interval '1 day', now() - interval '5 days'),
  -- an earlier system's: processing without a lease (an hour ago, and just now), failed without a code
  ('acacacac-0000-4000-8000-000000000006', 'abababab-0000-4000-8000-000000000001', 'photo', 'success', 'm', 'https://k.test/6.png', null, null, null, 'processing', null, null, now() - interval '1 hour', now() - interval '4 days'),
  ('acacacac-0000-4000-8000-000000000007', 'abababab-0000-4000-8000-000000000001', 'photo', 'success', 'm', 'https://k.test/7.png', null, null, null, 'processing', null, null, now(), now() - interval '3 days'),
  ('acacacac-0000-4000-8000-000000000008', 'abababab-0000-4000-8000-000000000001', 'photo', 'completed', 'm', 'https://k.test/8.png', null, null, null, 'failed', null, 'sharp failed', now() - interval '1 day', now() - interval '2 days'),
  ('acacacac-0000-4000-8000-000000000009', 'abababab-0000-4000-8000-000000000001', 'photo', 'cancelled', 'm', 'https://k.test/9.png', null, null, null, 'none', null, null, now() - interval '1 day', now() - interval '1 day');
update public.generations set preview_status = null where id = 'acacacac-0000-4000-8000-000000000002';  -- older than the preview columns

select results_eq(
  $$select right(id::text, 2), public.preview_skip_reason(g) from public.generations g where id::text like 'acacacac-%' order by id$$,
  $$values ('01', null::text), ('02', null), ('03', null), ('04', 'no_source'), ('05', null), ('06', null), ('07', null), ('08', null), ('09', 'cancelled')$$,
  'preview_skip_reason: product, result_url only, original_path, no source, audio (result_url: its track), cancelled');
select is(public.preview_source_url(g), 'https://k.test/asset.png', 'asset_url before result_urls and result_url')
  from public.generations g where id = 'acacacac-0000-4000-8000-000000000003';
select results_eq(
  $$select right(id::text, 2) from public.backfill_candidates(null, null, 100000) where id::text like 'acacacac-%'$$,
  $$values ('01'), ('02'), ('03'), ('05'), ('06'), ('08')$$,
  'the backfill finds product, NULL-status, audio, stale old-worker and old-failure rows; not a fresh processing row');

-- adoption: adopt_preview(row) is what the backfill (and a named request) calls
set local app.preview_lease = '15 minutes';
select public.adopt_preview('acacacac-0000-4000-8000-000000000003') as job3 \gset
select is(public.adopt_preview('acacacac-0000-4000-8000-000000000003'), :job3::bigint, 'adopting a row with a job of ours returns that job');
select results_eq($$select input ->> 'kind', input ->> 'original_path', input ->> 'source_url' from public.claim_preview_jobs(array['preview'], 1, 'acacacac-0000-4000-8000-000000000003')$$,
  $$values ('image'::text, 'abababab-0000-4000-8000-000000000001/image/x.png'::text, 'https://k.test/asset.png'::text)$$,
  'the claim gives original_path first, and the URL beside it');
select ok(public.adopt_preview('acacacac-0000-4000-8000-000000000002') is not null, 'a NULL preview_status is adopted (as none)');
select results_eq($$select input ->> 'kind', input ->> 'source_url', attempt from public.claim_preview_jobs(array['preview'], 1, 'acacacac-0000-4000-8000-000000000002')$$,
  $$values ('video'::text, 'https://k.test/v.mp4'::text, 1)$$, '… claimed, result_url is the source');
select ok(public.adopt_preview('acacacac-0000-4000-8000-000000000006') is not null,
  'an old worker''s processing row is adopted once its lease (from updated_at) ran out');
select results_eq($$select preview_status from public.generations where id = 'acacacac-0000-4000-8000-000000000006'$$,
  $$values ('none'::text)$$, '… back to none');
select results_eq($$select c.attempt, j.expired_leases from public.claim_preview_jobs(array['preview'], 1, 'acacacac-0000-4000-8000-000000000006') c
                    join public.preview_jobs j on j.id = c.job_id$$,
  $$values (1, 0)$$, '… claimed as attempt 1, without counting the old worker as a dead worker of ours');
select is(public.adopt_preview('acacacac-0000-4000-8000-000000000007'), null,
  'an old worker''s fresh processing row is left to it until the lease runs out');
select results_eq($$select preview_status, (select count(*)::int from public.preview_jobs where generation_id = 'acacacac-0000-4000-8000-000000000007')
                     from public.generations where id = 'acacacac-0000-4000-8000-000000000007'$$,
  $$values ('processing'::text, 0)$$, '… untouched, no job');
select public.adopt_preview('acacacac-0000-4000-8000-000000000008') as job8 \gset
select ok(:'job8' <> '', 'a failure recorded by an earlier system (no code) is adopted once');
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'acacacac-0000-4000-8000-000000000008')), 1, '… claimed');
select is(public.fail_preview_job(:'job8', 1, 'DECODE_FAILED', 'Could not decode', false), 'failed', '… and ours is final');
select is(public.adopt_preview('acacacac-0000-4000-8000-000000000008'), null, '… not adopted again');
select ok(not exists (select 1 from public.backfill_candidates(null, null, 100000) where id = 'acacacac-0000-4000-8000-000000000008'),
  '… nor listed by the backfill');
select public.adopt_preview('acacacac-0000-4000-8000-000000000001') as job1 \gset
select is(public.complete_preview_job(:job1, 0, '{"path": "p"}'), false, 'complete needs a claim');
select results_eq($$select attempt from public.claim_preview_jobs(array['preview'], 1, 'acacacac-0000-4000-8000-000000000001')$$, $$values (1)$$, 'product claimed');
select ok(public.complete_preview_job(:job1, 1, '{"path": "abababab-0000-4000-8000-000000000001/previews/p.webp", "width": 1, "height": 1, "thumbhash": "t"}'), 'product completed');
select results_eq($$select preview_path, poster_path from public.generations where id = 'acacacac-0000-4000-8000-000000000001'$$,
  $$values ('abababab-0000-4000-8000-000000000001/previews/p.webp'::text, null::text)$$, 'a product shot''s preview goes to preview_path');
-- an earlier system's failed row carries that system's text in `error`: it cannot be told apart
-- from the app's own, so it is left there; ours goes to preview_error, cleared once ready
insert into public.generations (id, user_id, type, status, asset_url, preview_status, preview_error_code, error, updated_at) values
  ('acacacac-0000-4000-8000-000000000010', 'abababab-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/10.png', 'failed', null,
   'Preview generation failed: timeout', now() - interval '1 day');
select public.adopt_preview('acacacac-0000-4000-8000-000000000010') as job10 \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'acacacac-0000-4000-8000-000000000010')), 1, 'an earlier system''s failure, adopted and claimed');
select ok(public.complete_preview_job(:job10, 1, '{"path": "abababab-0000-4000-8000-000000000001/previews/10.webp", "width": 1, "height": 1, "thumbhash": "t"}'), '… completes');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = 'acacacac-0000-4000-8000-000000000010'$$,
  $$values ('ready'::text, null::text, null::text, 'Preview generation failed: timeout'::text)$$,
  '… ready, no preview error; the text in `error` is left as it was (it may be the app''s)');

-- ---- coverage: every row once
select ok(exists (select 1 from public.preview_coverage where type = 'audio' and state = 'none' and reason = 'no_job')
          and not exists (select 1 from public.preview_coverage where type = 'audio' and state = 'not_previewable'),
  'preview_coverage counts the audio row as waiting for its preview (no job yet), not as not previewable');
select ok(exists (select 1 from public.preview_coverage where type = 'photo' and state = 'failed' and reason = 'DECODE_FAILED'),
  '… and a failed preview by its code');
select is((select sum(total)::int from public.preview_coverage), (select count(*)::int from public.generations),
  'preview_coverage counts every row of the table once');

-- ---- the guard, as PostgREST's roles (with a policy that lets everybody update, as production had)
create policy "test: anyone updates" on public.generations for update using (true) with check (true);
create policy "test: anyone inserts" on public.generations for insert with check (true);
create policy "test: anyone reads" on public.generations for select using (true);
-- The app's columns (its sources, status, model) follow the app's policies: a client pointing a row
-- at a URL gets at most a preview of it (the worker's SSRF guard and owner check treat sources as
-- untrusted). This system's own columns are refused, and, in kie_owner mode (the local stack's),
-- task_id (it decides which row KIE's result lands on).
select tests.authenticate_as_anon();
select lives_ok(format($$update public.generations set %s where id = 'acacacac-0000-4000-8000-000000000009'$$, c),
                format('anon may change the app''s %s under a policy that allows it', split_part(c, ' ', 1)))
  from unnest(array['asset_url = ''https://evil.test/x.png''', 'result_urls = ''["https://evil.test/x.png"]''', 'result_url = ''https://evil.test/x''',
                    'original_path = ''abababab-0000-4000-8000-000000000002/x.png''', 'status = ''success''', 'model = ''veo3''']) c;
select throws_ok(format($$update public.generations set %s where id = 'acacacac-0000-4000-8000-000000000009'$$, c), '42501',
                 format('generations.%s is written by the service only', split_part(c, ' ', 1)), format('anon cannot change %s', split_part(c, ' ', 1)))
  from unnest(array['poster_path = ''x''', 'preview_width = 1', 'preview_status = ''ready''', 'preview_error = ''x''']) c;
select throws_ok($$update public.generations set task_id = 'stolen' where id = 'acacacac-0000-4000-8000-000000000009'$$, '42501',
  'generations.task_id is written by the service only (kie_owner mode)', 'anon cannot change task_id (kie_owner mode)');
select lives_ok($$update public.generations set prompt = 'edited' where id = 'acacacac-0000-4000-8000-000000000009'$$, 'other columns follow the policies');
select throws_ok($$insert into public.generations (user_id, type, status, task_id) values ('abababab-0000-4000-8000-000000000002', 'photo', 'pending', 'someone-elses-task')$$,
  '42501', 'generations.task_id is written by the service only (kie_owner mode)', 'a client cannot insert a row on another task (its result would land there)');
select lives_ok($$insert into public.generations (id, user_id, type, status, result_urls) values ('acacacac-0000-4000-8000-000000000020', 'abababab-0000-4000-8000-000000000002', 'photo', 'pending', '["https://evil.test/x"]')$$,
  'a client may insert a row with a source (the app''s column)');
select lives_ok($$insert into public.generations (id, user_id, type, status) values ('acacacac-0000-4000-8000-000000000021', 'abababab-0000-4000-8000-000000000002', 'photo', 'completed')$$,
  '… and in a success-like state');
select throws_ok($$insert into public.generations (user_id, type, status, preview_status, preview_path) values ('abababab-0000-4000-8000-000000000002', 'photo', 'completed', 'ready', 'x.webp')$$,
  '42501', null, 'but not with a preview of its own (our columns only at their defaults)');
select lives_ok($$insert into public.generations (user_id, type, status, model, prompt) values ('abababab-0000-4000-8000-000000000002', 'photo', 'pending', 'nano-banana', 'hi')$$,
  'a pending row with its model and prompt is fine');
select tests.clear_authentication();
select results_eq($$select asset_url, status, model, task_id, poster_path, preview_width, preview_error, preview_status
                      from public.generations where id = 'acacacac-0000-4000-8000-000000000009'$$,
  $$values ('https://evil.test/x.png'::text, 'success'::text, 'veo3'::text, null::text, null::text, null::int, null::text, 'none'::text)$$,
  'row 9: the app''s columns as anon wrote them; task_id and our columns untouched (the new source waits for a preview, as none)');
select results_eq($$select id::text, preview_status, preview_path from public.generations where id::text in ('acacacac-0000-4000-8000-000000000020', 'acacacac-0000-4000-8000-000000000021') order by id$$,
  $$values ('acacacac-0000-4000-8000-000000000020'::text, 'none'::text, null::text), ('acacacac-0000-4000-8000-000000000021', 'none', null)$$,
  'the client''s rows hold our columns at their defaults');

-- ---- KIE: the model from the platform's columns, retention, newest first, apply's report
alter table public.generations add column model_id text;
update public.generations set model_id = 'veo-3.1-fast' where id = 'acacacac-0000-4000-8000-000000000009';
select is(public.generation_model(g), 'veo-3.1-fast', 'model_id wins over model when the table has it')
  from public.generations g where id = 'acacacac-0000-4000-8000-000000000009';
insert into public.generations (id, user_id, type, status, task_id, model, created_at) values
  ('acacacac-0000-4000-8000-000000000011', 'abababab-0000-4000-8000-000000000001', 'video', 'generating', 'adopt-old', 'veo3', now() - interval '30 days'),
  ('acacacac-0000-4000-8000-000000000012', 'abababab-0000-4000-8000-000000000001', 'photo', 'queued', 'adopt-new', 'm', now() - interval '2 minutes'),
  ('acacacac-0000-4000-8000-000000000013', 'abababab-0000-4000-8000-000000000001', 'photo', 'processing', 'adopt-mid', 'm', now() - interval '1 hour');
select results_eq($$select task_id from public.pending_kie_tasks(50) where task_id like 'adopt-%'$$,
  $$values ('adopt-new'::text), ('adopt-mid'::text)$$, 'pending tasks: newest first, a legacy processing status included, past retention excluded');
-- expiry writes the app's tasks: opt-in (kie_owner with expire_kie_tasks), off on this stack
select ok(public.kie_tasks_past_retention() >= 1, 'kie_tasks_past_retention counts the task past the retention');
select is(public.fail_expired_kie_tasks(), 0, 'with expiry off, fail_expired_kie_tasks fails nothing');
select results_eq($$select status, error from public.generations where task_id = 'adopt-old'$$,
  $$values ('generating'::text, null::text)$$, '… the old task is untouched');
select lives_ok($$select public.configure_preview_adoption('kie_owner', '{}', null, true)$$, 'expiry turned on (kie_owner, in this transaction)');
select ok(public.fail_expired_kie_tasks() >= 1, 'fail_expired_kie_tasks finishes tasks past the retention');
select results_eq($$select status, error like 'KIE task expired:%' from public.generations where task_id = 'adopt-old'$$,
  $$values ('failed'::text, true)$$, '… as failed with the reason');
select results_eq($$select status from public.generations where task_id in ('adopt-new', 'adopt-mid') order by task_id$$,
  $$values ('processing'::text), ('queued')$$, '… and leaves the tasks within it running');

select results_eq($$select status, preview_queued from public.apply_kie_result('adopt-new', 'success', '["https://k.test/new.png"]', null, null)$$,
  $$values ('success'::text, true)$$, 'apply_kie_result says it made the row eligible (the trigger queued it)');
select results_eq($$select changed, preview_queued from public.apply_kie_result('adopt-new', 'success', '["https://k.test/new.png"]', null, null)$$,
  $$values (false, false)$$, '… and not when nothing changed');
update public.generations set original_path = 'abababab-0000-4000-8000-000000000001/originals/acacacac-0000-4000-8000-000000000012.png',
       preview_status = 'ready' where task_id = 'adopt-new';
select results_eq($$select changed from public.apply_kie_result('adopt-new', 'success', '["https://k.test/other.png"]', null, null)$$,
  $$values (true)$$, 'a new asset for a finished task');
select results_eq($$select asset_url, original_path, preview_status from public.generations where task_id = 'adopt-new'$$,
  $$values ('https://k.test/other.png'::text, null::text, 'none'::text)$$, '… clears the old original (it came first in the source order) and resets the preview');

select * from finish();
rollback;
