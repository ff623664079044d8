-- Living beside the app (issue "Adoption, part two", migrations/20261203101200_app_modes.sql): the
-- two modes in preview_settings and their one write (configure_preview_adoption, refusing what
-- preview_settings_problems names); the kie-sync-pending cron job and the task_id guard following
-- the mode; apply_kie_result refused in previews_only and, in kie_owner, filling the app's mapped
-- result columns (jsonb, json, text, text[], varchar, timestamp); opt-in expiry; the guard as a
-- signed-in user under the app's own policies (our columns refused, the app's allowed, task_id
-- refused in kie_owner only); the relay of KIE callbacks (a `relay` job); preview errors in
-- preview_error while the app's `error` keeps its value.
-- The local stack runs kie_owner (no mapping, expiry off); every mode change here is rolled back.
begin;
select plan(159);

set local app.skip_preview_dispatch = 'on';
set local app.preview_lease = '15 seconds';
select tests.create_user('modes-a@example.test', '19191919-0000-4000-8000-00000000000a') is not null as created \gset
select tests.create_user('modes-b@example.test', '19191919-0000-4000-8000-00000000000b') is not null as created \gset
select public.kie_tasks_past_retention() as base_past \gset

-- the app's own columns, as the first user's app has them (DDL: rolled back with the rest)
alter table public.generations
  add column results jsonb, add column result_url_app text, add column completed_at timestamptz,
  add column thumbnail_url text, add column urls_array text[], add column urls_text text,
  add column thumb_vc varchar(500), add column completed_naive timestamp, add column preview_url text,
  add column gone jsonb;

insert into public.generations (id, user_id, type, status, task_id, asset_url, error, created_at) values
  ('19191919-aaaa-4000-8000-000000000001', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-photo', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000002', '19191919-0000-4000-8000-00000000000a', 'video', 'generating', 'm-video', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000003', '19191919-0000-4000-8000-00000000000a', 'video', 'generating', 'm-video-bare', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000004', '19191919-0000-4000-8000-00000000000a', 'audio', 'generating', 'm-audio', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000005', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-fail', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000006', '19191919-0000-4000-8000-00000000000a', 'photo', 'pending', 'm-pending', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000007', '19191919-0000-4000-8000-00000000000a', 'product', 'queued', 'm-product', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000008', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-variants', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000009', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-old', null, null, now() - interval '20 days'),
  ('19191919-aaaa-4000-8000-000000000010', '19191919-0000-4000-8000-00000000000a', 'photo', 'success', 'm-old-done', 'https://k.test/od.png', null, now() - interval '20 days'),
  ('19191919-aaaa-4000-8000-000000000011', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-young', null, null, now() - interval '1 day'),
  ('19191919-aaaa-4000-8000-000000000012', '19191919-0000-4000-8000-00000000000a', 'photo', 'success', null, 'https://k.test/12.png', 'the app''s note', now()),
  ('19191919-aaaa-4000-8000-000000000013', '19191919-0000-4000-8000-00000000000a', 'photo', 'success', 'r-task', 'https://k.test/13.png', null, now()),
  ('19191919-aaaa-4000-8000-000000000014', '19191919-0000-4000-8000-00000000000a', 'photo', 'success', null, 'https://k.test/14.png', 'the app''s reason', now()),
  ('19191919-aaaa-4000-8000-000000000015', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'g-own', null, null, now()),
  ('19191919-aaaa-4000-8000-000000000016', '19191919-0000-4000-8000-00000000000a', 'photo', 'success', 'r-task2', 'https://k.test/16.png', null, now()),
  ('19191919-aaaa-4000-8000-000000000017', '19191919-0000-4000-8000-00000000000a', 'photo', 'success', null, 'https://k.test/17.png', 'Preview generation failed: timeout', now()),
  ('19191919-aaaa-4000-8000-000000000018', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-dup', null, null, now() - interval '1 hour'),
  ('19191919-aaaa-4000-8000-000000000019', '19191919-0000-4000-8000-00000000000b', 'photo', 'generating', 'b-task', null, null, now()),
  ('19191919-aaaa-4000-8000-000000000021', '19191919-0000-4000-8000-00000000000a', 'photo', 'generating', 'm-gone', null, null, now() - interval '1 hour');
update public.generations set preview_status = 'failed', preview_error = 'an earlier system''s failure'
 where id = '19191919-aaaa-4000-8000-000000000017';

-- ---------------------------------------------------------------------------------------
-- preview_settings: one row, previews_only by default, owner-only settings only in kie_owner
-- ---------------------------------------------------------------------------------------
select has_column('public', 'generations', 'preview_error', 'generations.preview_error exists (this system''s readable error)');
select ok(not has_table_privilege(r, t, 'SELECT'), format('%s cannot read %s', r, t))
  from unnest(array['anon', 'authenticated']) r, unnest(array['public.preview_settings', 'public.kie_callback_relays']) t;
select ok(has_table_privilege('service_role', 'public.preview_settings', 'SELECT') and has_table_privilege('service_role', 'public.kie_callback_relays', 'SELECT'),
  'service_role reads preview_settings and kie_callback_relays');
select ok(not has_function_privilege('authenticated', 'public.configure_preview_adoption(text, jsonb, text, boolean)', 'execute')
          and has_function_privilege('service_role', 'public.configure_preview_adoption(text, jsonb, text, boolean)', 'execute'),
  'configure_preview_adoption: service_role only');

delete from public.preview_settings;
select is(public.preview_mode(), 'previews_only', 'no settings row: previews_only');
insert into public.preview_settings default values;
select results_eq($$select mode, result_columns, relay_url, expire_kie_tasks from public.preview_settings$$,
  $$values ('previews_only'::text, '{}'::jsonb, null::text, false)$$, 'defaults: previews_only, no mapping, no relay, no expiry');
select throws_ok($$insert into public.preview_settings (id) values (false)$$, '23514', null, 'a second row (id false) is refused');
select throws_ok($$insert into public.preview_settings (id) values (true)$$, '23505', null, 'and so is a second row with id true');
select throws_ok($$update public.preview_settings set mode = 'both'$$, '23514', null, 'mode is previews_only or kie_owner');
select throws_ok($$update public.preview_settings set result_columns = '{"urls": "results"}'$$, '23514', null,
  'previews_only holds no mapping (preview_settings_owner_check)');
select throws_ok($$update public.preview_settings set expire_kie_tasks = true$$, '23514', null, '… nor expiry');
select throws_ok($$update public.preview_settings set mode = 'kie_owner', relay_url = 'ftp://app.test/hook'$$, '23514', null,
  'a relay URL is http(s)');

-- ---------------------------------------------------------------------------------------
-- configure_preview_adoption: refusals with their reasons, then success
-- ---------------------------------------------------------------------------------------
select throws_ok(format('select public.configure_preview_adoption(%L, %L, %L, %L)', c.mode, c.map, c.relay, c.expire), '22023',
                 'configure_preview_adoption: ' || c.msg, c.d)
  from (values
    ('owner', '{}', null, false, 'mode must be previews_only or kie_owner, not owner', 'an unknown mode is refused'),
    ('previews_only', '{"urls": "results"}', null, false,
     'a result-column mapping, a relay URL and task expiry belong to kie_owner mode (in previews_only the app''s webhook writes its tasks)',
     'a mapping in previews_only is refused'),
    ('previews_only', '{}', 'https://app.test/hook', false,
     'a result-column mapping, a relay URL and task expiry belong to kie_owner mode (in previews_only the app''s webhook writes its tasks)',
     'a relay URL in previews_only is refused'),
    ('previews_only', '{}', null, true,
     'a result-column mapping, a relay URL and task expiry belong to kie_owner mode (in previews_only the app''s webhook writes its tasks)',
     'expiry in previews_only is refused'),
    ('kie_owner', '["results"]', null, false, 'the result-column mapping must be a JSON object', 'a mapping that is not an object is refused'),
    ('kie_owner', '{"result": "results"}', null, false, 'mapping key result is not one of urls, first_url, completed_at, thumbnail_url',
     'an unknown mapping key is refused'),
    ('kie_owner', '{"urls": "app_results"}', null, false, 'mapping urls → app_results: public.generations has no column app_results',
     'a missing column is refused'),
    ('kie_owner', '{"completed_at": "prompt"}', null, false,
     'mapping completed_at → prompt: the column is text, expected one of timestamp with time zone, timestamp without time zone',
     'a column of the wrong type is refused'),
    ('kie_owner', '{"urls": "thumb_vc"}', null, false,
     'mapping urls → thumb_vc: the column is character varying(500), expected one of jsonb, text[], text',
     '… named with its full type'),
    ('kie_owner', '{"thumbnail_url": "preview_path"}', null, false,
     'mapping thumbnail_url → preview_path: that column is not the app''s result column (this system or the task owns it)',
     'a column this system owns is refused'),
    ('kie_owner', '{"urls": "result_urls"}', null, false,
     'mapping urls → result_urls: that column is not the app''s result column (this system or the task owns it)',
     '… and so is one apply_kie_result writes anyway'),
    ('kie_owner', '{}', 'ftp://app.test/hook', false, 'relay URL must be http(s): ftp://app.test/hook', 'a relay URL that is not http(s) is refused')
  ) c(mode, map, relay, expire, msg, d);
select results_eq($$select mode, result_columns, relay_url, expire_kie_tasks from public.preview_settings$$,
  $$values ('previews_only'::text, '{}'::jsonb, null::text, false)$$, 'the refusals changed nothing');

select results_eq(
  $$select mode, result_columns, relay_url, expire_kie_tasks, updated_at = now()
      from public.configure_preview_adoption('kie_owner',
        '{"urls": "results", "first_url": "result_url_app", "completed_at": "completed_at", "thumbnail_url": "thumbnail_url"}',
        'https://app.test/kie-webhook', true)$$,
  $$values ('kie_owner'::text, '{"urls": "results", "first_url": "result_url_app", "completed_at": "completed_at", "thumbnail_url": "thumbnail_url"}'::jsonb,
            'https://app.test/kie-webhook'::text, true, true)$$,
  'kie_owner with a mapping, a relay URL and expiry: stored and returned');
select is((select count(*)::int from public.preview_settings), 1, 'still one row');
select results_eq($$select relay_url, expire_kie_tasks from public.configure_preview_adoption('kie_owner', '{"first_url": "thumb_vc", "completed_at": "completed_naive"}', '', null)$$,
  $$values (null::text, false)$$, 'an empty relay URL is none, a null expiry is off; varchar(n) and timestamp columns are accepted');

-- ---------------------------------------------------------------------------------------
-- preview_settings_problems: every reason, for given settings or the stored ones
-- ---------------------------------------------------------------------------------------
select is_empty($$select * from public.preview_settings_problems()$$, 'the stored settings have no problem');
select set_eq(
  $$select * from public.preview_settings_problems('kie_owner', '{"foo": "results", "urls": "nope", "completed_at": "prompt"}', 'ftp://x')$$,
  array['mapping key foo is not one of urls, first_url, completed_at, thumbnail_url',
        'mapping urls → nope: public.generations has no column nope',
        'mapping completed_at → prompt: the column is text, expected one of timestamp with time zone, timestamp without time zone',
        'relay URL must be http(s): ftp://x'],
  'given settings: every problem, not only the first');
select is_empty($$select * from public.preview_settings_problems('previews_only')$$, 'previews_only without owner settings: none');
select public.configure_preview_adoption('kie_owner', '{"urls": "gone", "completed_at": "completed_at"}') is not null as configured \gset
alter table public.generations drop column gone;
select results_eq($$select * from public.preview_settings_problems()$$,
  $$values ('mapping urls → gone: public.generations has no column gone'::text)$$,
  'stored settings whose mapped column was dropped since: named (doctor lists it)');
select results_eq($$select status, changed from public.apply_kie_result('m-gone', 'success', '["https://k.test/g.png"]', 'https://k.test/g.png', null)$$,
  $$values ('success'::text, true)$$, '… and a task still finishes (the gone column is skipped)');
select is((select completed_at from public.generations where task_id = 'm-gone'), now(), '… the columns still there are written');

-- ---------------------------------------------------------------------------------------
-- The cron job and the task_id guard follow the mode, both ways
-- ---------------------------------------------------------------------------------------
select public.configure_preview_adoption('previews_only') is not null as configured \gset
select is_empty($$select jobname from cron.job where jobname = 'kie-sync-pending'$$, 'previews_only: no kie-sync-pending cron job');
select hasnt_trigger('public', 'generations', 'generations_a_guard_task_owner', 'previews_only: no task_id guard trigger');
select is((select count(*)::int from cron.job where jobname in ('preview-sweep', 'net-response-trim')), 2,
  'the sweep and the trim run in every mode');
select is(public.cron_kie_sync_pending(), null, 'the pending sync does nothing in previews_only');
select public.configure_preview_adoption('kie_owner') is not null as configured \gset
select public.configure_preview_adoption('kie_owner') is not null as configured \gset
select results_eq($$select schedule = '* * * * *' and command = 'select public.cron_kie_sync_pending()' from cron.job where jobname = 'kie-sync-pending'$$,
  $$values (true)$$, 'kie_owner: the kie-sync-pending job, every minute, once (configured twice)');
select has_trigger('public', 'generations', 'generations_a_guard_task_owner', 'kie_owner: the task_id guard trigger');
select is((select count(*)::int from pg_trigger where tgrelid = 'public.generations'::regclass and tgname = 'generations_a_guard_task_owner'), 1,
  '… once');

-- ---------------------------------------------------------------------------------------
-- apply_kie_result in previews_only: refused, no row changed
-- ---------------------------------------------------------------------------------------
select public.configure_preview_adoption('previews_only') is not null as configured \gset
create temp table before_refusal as select id, xmin::text as row_xmin, to_jsonb(g) as row from public.generations g where id::text like '19191919-aaaa-%';
select throws_ok($$select * from public.apply_kie_result('m-photo', 'success', '["https://k.test/p1.png"]', 'https://k.test/p1.png', null)$$,
  '55000', 'apply_kie_result: this project runs in previews_only mode: the app''s own KIE webhook writes its tasks',
  'previews_only: apply_kie_result is refused (55000)');
select throws_ok($$select * from public.apply_kie_result('m-fail', 'failed', null, null, 'boom')$$, '55000', null, '… a failure too');
select is(public.fail_expired_kie_tasks(), 0, 'previews_only: fail_expired_kie_tasks fails nothing');
select is_empty($$select b.id from before_refusal b join public.generations g on g.id = b.id where g.xmin::text <> b.row_xmin or to_jsonb(g) <> b.row$$,
  '… and no row was written');

-- ---------------------------------------------------------------------------------------
-- kie_owner: the app's result columns
-- ---------------------------------------------------------------------------------------
select public.configure_preview_adoption('kie_owner',
  '{"urls": "results", "first_url": "result_url_app", "completed_at": "completed_at", "thumbnail_url": "thumbnail_url"}') is not null as configured \gset

select results_eq($$select status, changed from public.apply_kie_result('m-photo', 'success', '["https://k.test/p1.png", "https://k.test/p2.png"]', 'https://k.test/p1.png', null)$$,
  $$values ('success'::text, true)$$, 'a photo succeeds');
select results_eq($$select results, result_url_app, thumbnail_url, completed_at from public.generations where task_id = 'm-photo'$$,
  $$values ('["https://k.test/p1.png", "https://k.test/p2.png"]'::jsonb, 'https://k.test/p1.png'::text, 'https://k.test/p1.png'::text, now())$$,
  '… the app''s columns: the URL list, the first URL, the thumbnail (an image: its first URL), completed now');
update public.generations set results = '"the app edited it"' where task_id = 'm-photo';
create temp table before_repeat as select xmin::text as row_xmin from public.generations where task_id = 'm-photo';
select results_eq($$select changed from public.apply_kie_result('m-photo', 'success', '["https://k.test/p1.png", "https://k.test/p2.png"]', 'https://k.test/p1.png', null)$$,
  $$values (false)$$, 'the same callback again: nothing changed');
select results_eq($$select results, xmin::text = (select row_xmin from before_repeat) from public.generations where task_id = 'm-photo'$$,
  $$values ('"the app edited it"'::jsonb, true)$$, '… and nothing written, the app''s columns neither');
update public.generations set completed_at = '2020-01-01 00:00:00+00' where task_id = 'm-photo';
select results_eq($$select changed from public.apply_kie_result('m-photo', 'success', '["https://k.test/p3.png"]', 'https://k.test/p3.png', null)$$,
  $$values (true)$$, 'a new result for the finished task');
select results_eq($$select results, result_url_app, thumbnail_url, completed_at from public.generations where task_id = 'm-photo'$$,
  $$values ('["https://k.test/p3.png"]'::jsonb, 'https://k.test/p3.png'::text, 'https://k.test/p3.png'::text, '2020-01-01 00:00:00+00'::timestamptz)$$,
  '… rewrites the URLs and the thumbnail, keeps the completion time');

select results_eq($$select changed from public.apply_kie_result('m-video', 'success', '["https://k.test/v.mp4"]', 'https://k.test/v.mp4', null, 'https://k.test/v-cover.jpg')$$,
  $$values (true)$$, 'a video succeeds with KIE''s cover');
select results_eq($$select results, result_url_app, thumbnail_url, preview_cover_url, completed_at from public.generations where task_id = 'm-video'$$,
  $$values ('["https://k.test/v.mp4"]'::jsonb, 'https://k.test/v.mp4'::text, 'https://k.test/v-cover.jpg'::text, 'https://k.test/v-cover.jpg'::text, now())$$,
  '… its thumbnail is the cover');
select results_eq($$select changed from public.apply_kie_result('m-video-bare', 'success', '["https://k.test/vb.mp4"]', 'https://k.test/vb.mp4', null)$$,
  $$values (true)$$, 'a video succeeds without a cover');
select results_eq($$select results, result_url_app, thumbnail_url from public.generations where task_id = 'm-video-bare'$$,
  $$values ('["https://k.test/vb.mp4"]'::jsonb, 'https://k.test/vb.mp4'::text, null::text)$$, '… no thumbnail (a video URL is no image)');
select results_eq($$select changed from public.apply_kie_result('m-audio', 'success', '["https://k.test/a.mp3"]', 'https://k.test/a.mp3', null, 'https://k.test/a-cover.jpg')$$,
  $$values (true)$$, 'an audio task succeeds with a cover');
select results_eq($$select result_url_app, thumbnail_url from public.generations where task_id = 'm-audio'$$,
  $$values ('https://k.test/a.mp3'::text, 'https://k.test/a-cover.jpg'::text)$$, '… its thumbnail is the cover');
select results_eq($$select changed from public.apply_kie_result('m-product', 'success', '["https://k.test/pr.png"]', 'https://k.test/pr.png', null)$$,
  $$values (true)$$, 'a product shot succeeds (from queued)');
select results_eq($$select thumbnail_url, completed_at from public.generations where task_id = 'm-product'$$,
  $$values ('https://k.test/pr.png'::text, now())$$, '… an image: the thumbnail is its first URL');

select results_eq($$select status, changed from public.apply_kie_result('m-fail', 'failed', null, null, 'Content policy violation')$$,
  $$values ('failed'::text, true)$$, 'a task fails');
select results_eq($$select error, results, result_url_app, thumbnail_url, completed_at from public.generations where task_id = 'm-fail'$$,
  $$values ('Content policy violation'::text, null::jsonb, null::text, null::text, now())$$, '… only the completion time of the app''s columns');
select results_eq($$select status, changed from public.apply_kie_result('m-pending', 'pending', null, null, null)$$,
  $$values ('generating'::text, true)$$, 'a pending task starts generating');
select results_eq($$select results, completed_at from public.generations where task_id = 'm-pending'$$,
  $$values (null::jsonb, null::timestamptz)$$, '… the app''s columns are for finished tasks only');
select results_eq($$select status, changed from public.apply_kie_result('m-video', 'failed', null, null, 'late')$$,
  $$values ('success'::text, false)$$, 'a failure after success changes nothing');
select is_empty($$select * from public.apply_kie_result('m-none', 'success', '["https://k.test/x.png"]', null, null)$$, 'an unknown task: no row');

-- the other column types the mapping may name
select public.configure_preview_adoption('kie_owner', '{"urls": "urls_array", "first_url": "thumb_vc", "completed_at": "completed_naive"}') is not null as configured \gset
select results_eq($$select changed from public.apply_kie_result('m-variants', 'success', '["https://k.test/a1.png", "https://k.test/a2.png"]', 'https://k.test/a1.png', null)$$,
  $$values (true)$$, 'urls onto text[], first_url onto varchar(500), completed_at onto timestamp');
select results_eq($$select urls_array, thumb_vc, completed_naive, results from public.generations where task_id = 'm-variants'$$,
  $$values (array['https://k.test/a1.png', 'https://k.test/a2.png'], 'https://k.test/a1.png'::varchar, now()::timestamp, null::jsonb)$$,
  '… a text array, the first URL, the local time; unmapped columns untouched');
select public.configure_preview_adoption('kie_owner', '{"urls": "urls_text"}') is not null as configured \gset
select results_eq($$select changed from public.apply_kie_result('m-variants', 'success', '["https://k.test/b1.png", "https://k.test/b2.png"]', 'https://k.test/b1.png', null)$$,
  $$values (true)$$, 'urls onto text');
select is((select urls_text from public.generations where task_id = 'm-variants'), '["https://k.test/b1.png", "https://k.test/b2.png"]',
  '… the JSON array as text');

-- ---------------------------------------------------------------------------------------
-- Expiry: opt-in; kie_tasks_past_retention counts what it would fail
-- ---------------------------------------------------------------------------------------
select public.configure_preview_adoption('kie_owner', '{"urls": "results", "completed_at": "completed_at"}', null, false) is not null as configured \gset
select is(public.kie_tasks_past_retention(), :base_past + 1, 'kie_tasks_past_retention: a running task past 14 days (not a finished one, not a young one)');
select is(public.fail_expired_kie_tasks(), 0, 'expiry off (the default): fail_expired_kie_tasks returns 0');
select results_eq($$select status, error, completed_at from public.generations where task_id = 'm-old'$$,
  $$values ('generating'::text, null::text, null::timestamptz)$$, '… and the old task is untouched');
select public.configure_preview_adoption('kie_owner', '{"urls": "results", "completed_at": "completed_at"}', 'https://app.test/hook', true) is not null as configured \gset
select is(public.fail_expired_kie_tasks(), :base_past + 1, 'expiry on: it fails every task past the retention');
select results_eq($$select (body ->> 'code')::int, body -> 'data' ->> 'state', body -> 'data' ->> 'failMsg' like 'KIE task expired: no result within 14 days%', headers
                      from public.kie_callback_relays where task_id = 'm-old'$$,
  $$values (501, 'fail'::text, true, '{"x-preview-relay-source": "expiry"}'::jsonb)$$,
  '… and relays each failure to the app''s webhook, as the callback KIE''s jobs API sends (its refund is the app''s)');
select is(public.kie_relay_body('t-9', 'success', '["https://k.test/9.png"]', null),
  '{"code": 200, "msg": "success", "data": {"taskId": "t-9", "state": "success", "resultJson": "{\"resultUrls\": [\"https://k.test/9.png\"]}"}}'::jsonb,
  'kie_relay_body: a success as KIE''s jobs API calls back');
select is((public.kie_relay_body('t-9', 'failed', null, '') -> 'data' ->> 'failMsg'), 'Generation failed', 'kie_relay_body: a failure without text says so');
select results_eq($$select status, error like 'KIE task expired: no result within 14 days%', completed_at, results from public.generations where task_id = 'm-old'$$,
  $$values ('failed'::text, true, now(), null::jsonb)$$, '… as failed with the reason, and the app''s completion time');
select results_eq($$select task_id, status, completed_at from public.generations where task_id in ('m-old-done', 'm-young') order by task_id$$,
  $$values ('m-old-done'::text, 'success'::text, null::timestamptz), ('m-young', 'generating', null)$$, '… a finished task and a young one untouched');
select is(public.kie_tasks_past_retention(), 0, 'none is left past the retention');

-- ---------------------------------------------------------------------------------------
-- The guard, as a signed-in user under the app's own policies
-- ---------------------------------------------------------------------------------------
create policy "Users can update own generations" on public.generations for update using (auth.uid() = user_id);
create policy "Users can insert own generations" on public.generations for insert with check (auth.uid() = user_id);
select is(public.preview_own_columns(),
  array['preview_path', 'poster_path', 'preview_status', 'preview_error_code', 'preview_error', 'preview_width', 'preview_height',
        'preview_thumbhash', 'preview_version', 'preview_cover_url', 'animated_path', 'animated_status', 'animated_error_code',
        'preview_waveform_path', 'preview_duration_ms', 'preview_sizes'],
  'this system''s own columns, by exact name (the audio ones since 20261203102000, preview_sizes since 20261203102200)');
select tests.authenticate_as('19191919-0000-4000-8000-00000000000a');
select throws_ok(format($$update public.generations set %I = %L where id = '19191919-aaaa-4000-8000-000000000012'$$, c,
                        case c when 'preview_width' then '7' when 'preview_height' then '7' when 'preview_duration_ms' then '7' when 'preview_sizes' then '[]' when 'preview_status' then 'ready'
                               when 'animated_status' then 'ready' else 'x' end),
                 '42501', format('generations.%s is written by the service only', c), format('a user cannot write %s of their own row', c))
  from unnest(public.preview_own_columns()) c;
select lives_ok(format($$update public.generations set %s where id = '19191919-aaaa-4000-8000-000000000012'$$, c),
                format('a user may write the app''s %s of their own row', split_part(c, ' ', 1)))
  from unnest(array['asset_url = ''https://elsewhere.test/x.png''', 'result_urls = ''["https://elsewhere.test/x.png"]''',
                    'result_url = ''https://elsewhere.test/y.png''', 'original_path = ''19191919-0000-4000-8000-00000000000a/image/x.png''',
                    'status = ''failed''', 'model = ''veo-3.1-fast''', 'preview_url = ''https://app.test/p.webp''', 'error = ''edited by the user''',
                    'thumbnail_url = ''https://app.test/t.webp''']) c;
select throws_ok($$update public.generations set task_id = 'b-task-copy' where id = '19191919-aaaa-4000-8000-000000000012'$$,
  '42501', 'generations.task_id is written by the service only (kie_owner mode)', 'kie_owner: a user cannot set task_id');
select throws_ok($$update public.generations set task_id = 'other' where id = '19191919-aaaa-4000-8000-000000000015'$$,
  '42501', 'generations.task_id is written by the service only (kie_owner mode)', '… nor change it');
select lives_ok($$update public.generations set task_id = task_id, prompt = 'same task' where id = '19191919-aaaa-4000-8000-000000000015'$$,
  '… writing the same task_id back is no change (a full-row PATCH)');
select throws_ok($$insert into public.generations (user_id, type, status, task_id) values ('19191919-0000-4000-8000-00000000000a', 'photo', 'pending', 'b-task-2')$$,
  '42501', 'generations.task_id is written by the service only (kie_owner mode)', 'kie_owner: a user cannot insert a row with a task_id');
select lives_ok($$insert into public.generations (id, user_id, type, status, asset_url, result_urls, model)
                  values ('19191919-aaaa-4000-8000-000000000020', '19191919-0000-4000-8000-00000000000a', 'photo', 'success',
                          'https://k.test/20.png', '["https://k.test/20.png"]', 'nano-banana')$$,
  'a user may insert a success row with its sources (the app''s columns)');
select throws_ok($$insert into public.generations (user_id, type, status, preview_error) values ('19191919-0000-4000-8000-00000000000a', 'photo', 'pending', 'x')$$,
  '42501', 'generations.preview_error is written by the service only', 'but not one holding our columns beyond their defaults');
select tests.clear_authentication();
select results_eq(
  $$select asset_url, result_urls, result_url, original_path, status, model, preview_url, error, thumbnail_url, task_id,
           preview_status, preview_path, preview_error, preview_width
      from public.generations where id = '19191919-aaaa-4000-8000-000000000012'$$,
  $$values ('https://elsewhere.test/x.png'::text, '["https://elsewhere.test/x.png"]'::jsonb, 'https://elsewhere.test/y.png'::text,
            '19191919-0000-4000-8000-00000000000a/image/x.png'::text, 'failed'::text, 'veo-3.1-fast'::text, 'https://app.test/p.webp'::text,
            'edited by the user'::text, 'https://app.test/t.webp'::text, null::text, 'none'::text, null::text, null::text, null::int)$$,
  'the row: the app''s columns as the user wrote them; task_id and ours untouched');
select results_eq($$select task_id, prompt from public.generations where id = '19191919-aaaa-4000-8000-000000000015'$$,
  $$values ('g-own'::text, 'same task'::text)$$, 'the task keeps its id');

select public.configure_preview_adoption('previews_only') is not null as configured \gset
select tests.authenticate_as('19191919-0000-4000-8000-00000000000a');
select lives_ok($$update public.generations set task_id = 'g-own-2' where id = '19191919-aaaa-4000-8000-000000000015'$$,
  'previews_only: task_id is the app''s, a user may change it');
select lives_ok($$insert into public.generations (user_id, type, status, task_id) values ('19191919-0000-4000-8000-00000000000a', 'photo', 'pending', 'g-new')$$,
  '… and insert a row with one');
select throws_ok($$update public.generations set preview_status = 'ready' where id = '19191919-aaaa-4000-8000-000000000012'$$,
  '42501', 'generations.preview_status is written by the service only', '… our columns stay refused');
select tests.clear_authentication();
select results_eq($$select count(*)::int from public.generations where task_id in ('g-own-2', 'g-new')$$, $$values (2)$$, '… both written');

-- ---------------------------------------------------------------------------------------
-- The relay of accepted KIE callbacks to the app's previous webhook
-- ---------------------------------------------------------------------------------------
select is(public.queue_kie_relay('r-task', '{"code": 200}'), 'off', 'previews_only: no relay');
select public.configure_preview_adoption('kie_owner') is not null as configured \gset
select is(public.queue_kie_relay('r-task', '{"code": 200}'), 'off', 'kie_owner without a relay URL: no relay');
select public.configure_preview_adoption('kie_owner', '{}', 'https://app.test/kie-webhook') is not null as configured \gset
select is(public.queue_kie_relay('r-none', '{"code": 200}'), 'unknown_task', 'an unknown task is not relayed');
select is(public.queue_kie_relay('r-task', '{"code": 200, "data": {"taskId": "r-task"}}', '{"x-webhook-signature": "sig", "x-webhook-timestamp": "1700000000"}'),
  'queued', 'the first accepted callback of a task is queued');
select is(public.queue_kie_relay('r-task', '{"code": 200, "data": {"taskId": "r-task", "again": true}}'), 'relayed_before', 'a later one is not');
select results_eq($$select generation_id, body, headers, delivered_at from public.kie_callback_relays where task_id = 'r-task'$$,
  $$values ('19191919-aaaa-4000-8000-000000000013'::uuid, '{"code": 200, "data": {"taskId": "r-task"}}'::jsonb,
            '{"x-webhook-signature": "sig", "x-webhook-timestamp": "1700000000"}'::jsonb, null::timestamptz)$$,
  'one record: the first body and its headers');
select results_eq($$select kind, generation_id, payload, dedupe_key, state, attempts from public.preview_jobs where kind = 'relay' and payload ->> 'task_id' = 'r-task'$$,
  $$values ('relay'::text, '19191919-aaaa-4000-8000-000000000013'::uuid, '{"task_id": "r-task"}'::jsonb, 'relay:r-task'::text, 'queued'::text, 0)$$,
  'one relay job, keyed by its task');
select is(public.preview_job_dedupe_key('relay', '19191919-aaaa-4000-8000-000000000013', '{"task_id": "r-task"}'), 'relay:r-task',
  'preview_job_dedupe_key: a relay is keyed by its task');
select is(public.preview_job_input(j),
  '{"task_id": "r-task", "url": "https://app.test/kie-webhook", "body": {"code": 200, "data": {"taskId": "r-task"}},
    "headers": {"x-webhook-signature": "sig", "x-webhook-timestamp": "1700000000"}}'::jsonb,
  'preview_job_input: the URL, the body, the headers')
  from public.preview_jobs j where j.dedupe_key = 'relay:r-task';
select id as relay_job from public.preview_jobs where dedupe_key = 'relay:r-task' \gset
select results_eq($$select kind, attempt, input ->> 'url' from public.claim_preview_jobs(array['relay'], 1, '19191919-aaaa-4000-8000-000000000013')$$,
  $$values ('relay'::text, 1, 'https://app.test/kie-webhook'::text)$$, 'a worker claims it');
select is(public.fail_preview_job(:relay_job, 1, 'RELAY_FAILED', 'The app''s webhook answered 503', true), 'retry', 'a failed delivery is retried');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = '19191919-aaaa-4000-8000-000000000013'$$,
  $$values ('none'::text, null::text, null::text, null::text)$$, '… the row shows nothing of it (a relay has no mirror)');
select tests.travel(public.preview_backoff(1));
select is((select attempt from public.claim_preview_jobs(array['relay'], 1, '19191919-aaaa-4000-8000-000000000013')), 2, 'claimed again after the backoff');
select ok(public.complete_preview_job(:relay_job, 2, '{"taskId": "r-task", "status": 204}'), 'delivered');
select results_eq($$select delivered_at, response_status from public.kie_callback_relays where task_id = 'r-task'$$,
  $$values (now(), 204)$$, '… the record says when, and the app''s answer');
select is(public.preview_job_input(jsonb_populate_record(null::public.preview_jobs, '{"kind": "relay", "payload": {"task_id": "r-task"}}')), null,
  'a delivered relay has no input (a copy of its job would be dropped)');
select is(public.queue_kie_relay('r-task', '{"code": 200}'), 'relayed_before', 'a task is relayed once, ever');
select is((select count(*)::int from public.preview_jobs where kind = 'relay' and payload ->> 'task_id' = 'r-task'), 0, '… no new job');

select is(public.queue_kie_relay('r-task2', '{"code": 200}'), 'queued', 'another task is queued');
select public.preview_job_apply_result('relay', '19191919-aaaa-4000-8000-000000000016', '{"taskId": "r-task2", "status": 200}');
select results_eq($$select delivered_at, response_status from public.kie_callback_relays where task_id = 'r-task2'$$,
  $$values (now(), 200)$$, 'preview_job_apply_result(relay) records delivered_at and response_status');
update public.kie_callback_relays set delivered_at = null, response_status = null where task_id = 'r-task2';
select public.configure_preview_adoption('kie_owner') is not null as configured \gset
select is_empty($$select * from public.claim_preview_jobs(array['relay'], 1, '19191919-aaaa-4000-8000-000000000016')$$,
  'relaying turned off: its job is not claimed');
select is((select count(*)::int from public.preview_jobs where dedupe_key = 'relay:r-task2'), 0, '… but dropped');

-- ---------------------------------------------------------------------------------------
-- Preview errors in preview_error; the app's `error` keeps its value
-- ---------------------------------------------------------------------------------------
select public.queue_preview('19191919-aaaa-4000-8000-000000000014') as job14 \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '19191919-aaaa-4000-8000-000000000014')), 1, 'row 14''s preview claimed');
select is(public.fail_preview_job(:job14, 1, 'DECODE_FAILED', 'Could not decode the image', false), 'failed', 'and failed for good');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = '19191919-aaaa-4000-8000-000000000014'$$,
  $$values ('failed'::text, 'DECODE_FAILED'::text, 'Could not decode the image'::text, 'the app''s reason'::text)$$,
  'the reason is in preview_error; error keeps the app''s value');
select ok(public.requeue_preview('19191919-aaaa-4000-8000-000000000014', 'failed') is not null, 'retried (backfill --retry-failed)');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = '19191919-aaaa-4000-8000-000000000014'$$,
  $$values ('none'::text, null::text, null::text, 'the app''s reason'::text)$$, '… preview_error cleared, error kept');
select public.queue_preview('19191919-aaaa-4000-8000-000000000014') as job14 \gset
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '19191919-aaaa-4000-8000-000000000014')), 1, 'claimed again');
select is(public.fail_preview_job(:job14, 1, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'retry', 'a retryable failure');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = '19191919-aaaa-4000-8000-000000000014'$$,
  $$values ('none'::text, 'SOURCE_UNREACHABLE'::text, 'Download failed: 503'::text, 'the app''s reason'::text)$$,
  '… shown with its code and text; error kept');
select tests.travel(public.preview_backoff(1));
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, '19191919-aaaa-4000-8000-000000000014')), 2, 'claimed after the backoff');
select ok(public.complete_preview_job(:job14, 2, '{"path": "19191919-0000-4000-8000-00000000000a/previews/14.webp", "width": 1, "height": 1, "thumbhash": "t"}'), 'completed');
select results_eq($$select preview_status, preview_error_code, preview_error, error from public.generations where id = '19191919-aaaa-4000-8000-000000000014'$$,
  $$values ('ready'::text, null::text, null::text, 'the app''s reason'::text)$$, '… ready: preview_error cleared, error kept');
select ok(public.adopt_preview('19191919-aaaa-4000-8000-000000000017') is not null, 'an earlier system''s failure (no code) is adopted');
select results_eq($$select preview_status, preview_error, error from public.generations where id = '19191919-aaaa-4000-8000-000000000017'$$,
  $$values ('none'::text, null::text, 'Preview generation failed: timeout'::text)$$, '… preview_error cleared; the text in error left where it was');

-- ---------------------------------------------------------------------------------------
-- Mappings apply_kie_result could not write, or onto a column this system writes: refused
-- ---------------------------------------------------------------------------------------
select throws_ok($$select public.configure_preview_adoption('kie_owner', '{"first_url": "thumbnail_url", "thumbnail_url": "thumbnail_url"}')$$,
  '22023', 'configure_preview_adoption: the mapping names column thumbnail_url twice: each app column gets one value',
  'a mapping naming one column twice is refused');
select throws_ok($$select public.configure_preview_adoption('kie_owner', '{"first_url": "original_path"}')$$, '22023', null,
  'a mapping onto original_path is refused');
-- a json column on the app's table (json has no equality operator): refused for urls, and UPDATEs
-- of generations still work (generations_touch_updated_at compares the rows as jsonb)
alter table public.generations add column urls_json json;
select throws_ok($$select public.configure_preview_adoption('kie_owner', '{"urls": "urls_json"}')$$, '22023', null,
  'a mapping of urls onto a json column is refused');
update public.generations set urls_json = '["x"]' where id = '19191919-aaaa-4000-8000-000000000017';
select lives_ok($$update public.generations set prompt = 'touched' where id = '19191919-aaaa-4000-8000-000000000017'$$,
  'an UPDATE of a row whose table has a json column works (updated_at compares the rows as jsonb)');

select * from finish();
rollback;
