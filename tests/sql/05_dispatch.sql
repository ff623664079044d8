-- The dispatch trigger and the sweep dispatch: exactly one net request per eligible
-- transition, none otherwise; body, headers, timeout.
begin;
select * from no_plan();
-- one request per eligible transition: this file's rows never wait for a slot (the bound on
-- requests in flight is tests/sql/16_bounded_dispatch.sql)
set local app.preview_dispatch_limit = '1000';

delete from vault.secrets where name in ('project_url', 'anon_key', 'preview_dispatch_secret', 'service_role_key');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-anon-key', 'anon_key');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');

insert into auth.users (id, email) values ('55555555-0000-4000-8000-000000000001', 'dispatch@example.test');

create temp view q as
  select r.id, r.url, r.method, r.headers, r.timeout_milliseconds, convert_from(r.body, 'UTF8')::jsonb as body
    from net.http_request_queue r;
create temp table q_start as select coalesce(max(id), 0) as max_id from net.http_request_queue;
create or replace function pg_temp.requests_for(p_id uuid) returns int language sql as $$
  select count(*)::int from q where body ->> 'generationId' = p_id::text and id > (select max_id from q_start)
$$;

-- INSERT of an eligible row: one request
insert into public.generations (id, user_id, type, status, asset_url)
values ('eeeeeeee-0000-4000-8000-000000000001', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e1.png');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000001'), 1, 'insert of an eligible row queues one request');
select results_eq(
  $$select url, method, timeout_milliseconds, headers from q where body ->> 'generationId' = 'eeeeeeee-0000-4000-8000-000000000001'$$,
  $$values ('http://127.0.0.1:54321/functions/v1/generate-preview'::text, 'POST'::text, 10000,
            '{"Content-Type": "application/json", "x-preview-dispatch": "test-dispatch-secret"}'::jsonb)$$,
  'URL and dispatch secret from the vault (no API key: 17_dispatch_without_anon_key.sql), explicit timeout');
select ok(public.preview_dispatch_secret_ok('test-dispatch-secret'), 'the dispatch secret checks out');
select ok(not public.preview_dispatch_secret_ok('test-dispatch-secreT'), 'another value does not');
select ok(not public.preview_dispatch_secret_ok(''), 'nor an empty one');
select ok(not public.preview_dispatch_secret_ok(null), 'nor none');
set local role anon;
select throws_ok($$select public.preview_dispatch_secret_ok('x')$$, '42501', null, 'anon cannot probe the dispatch secret');
reset role;
select is(
  (select body from q where body ->> 'generationId' = 'eeeeeeee-0000-4000-8000-000000000001'),
  '{"type": "INSERT", "table": "generations", "schema": "public", "version": 1, "reason": "needsPreview",
    "generationId": "eeeeeeee-0000-4000-8000-000000000001", "old_record": null,
    "record": {"id": "eeeeeeee-0000-4000-8000-000000000001", "user_id": "55555555-0000-4000-8000-000000000001",
               "type": "photo", "status": "success", "preview_status": "none"}}'::jsonb,
  'body: database-webhook shape with a small record');
select ok((select octet_length(convert_to(body::text, 'UTF8')) < 1024 from q where body ->> 'generationId' = 'eeeeeeee-0000-4000-8000-000000000001'),
  'body stays small');

-- Ineligible rows: nothing
insert into public.generations (id, user_id, type, status, task_id, asset_url) values
  ('eeeeeeee-0000-4000-8000-000000000002', '55555555-0000-4000-8000-000000000001', 'photo', 'pending', 'disp-2', null),
  ('eeeeeeee-0000-4000-8000-000000000003', '55555555-0000-4000-8000-000000000001', 'audio', 'success', 'disp-3', 'http://kie.test/e3.mp3'),
  ('eeeeeeee-0000-4000-8000-000000000004', '55555555-0000-4000-8000-000000000001', 'video', 'success', 'disp-4', null);
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 0, 'pending row: no request');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000003'), 0, 'audio row: no request');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000004'), 0, 'success without asset: no request');

-- UPDATE into eligibility via the KIE sync: exactly one, and re-syncs add none
select * from public.apply_kie_result('disp-2', 'pending', null, null, null);
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 0, 'pending → generating: no request');
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 'generating → success: one request');
select is((select body ->> 'type' from q where body ->> 'generationId' = 'eeeeeeee-0000-4000-8000-000000000002'), 'UPDATE', 'type UPDATE');
select is((select body -> 'old_record' ->> 'status' from q where body ->> 'generationId' = 'eeeeeeee-0000-4000-8000-000000000002'), 'generating', 'old_record carries the previous status');
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 're-sync while still none: no second request');
update public.generations set model = 'x' where id = 'eeeeeeee-0000-4000-8000-000000000002';
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 'another update of an eligible row: no second request');

-- The preview lifecycle itself queues nothing; a re-sync of a ready row queues nothing
select ok((select attempt from public.claim_preview('eeeeeeee-0000-4000-8000-000000000002')) = 1, 'claimed');
select ok(public.complete_preview('eeeeeeee-0000-4000-8000-000000000002', 1, 'p.webp', 1, 1, 'h'), 'completed');
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2.png"]', 'http://kie.test/e2.png', null);
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 1, 're-sync (twice) of a ready row: no request');
select is((select preview_status from public.generations where id = 'eeeeeeee-0000-4000-8000-000000000002'), 'ready', 're-sync leaves the ready row ready');

-- A new asset on the ready row: one more request
select * from public.apply_kie_result('disp-2', 'success', '["http://kie.test/e2b.png"]', 'http://kie.test/e2b.png', null);
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000002'), 2, 'new asset on a ready row: one new request');

-- A rolled-back transaction leaves no request behind
savepoint before_rollback;
insert into public.generations (id, user_id, type, status, asset_url)
values ('eeeeeeee-0000-4000-8000-000000000005', '55555555-0000-4000-8000-000000000001', 'video', 'success', 'http://kie.test/e5.mp4');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000005'), 1, 'inside the transaction the request is queued …');
rollback to savepoint before_rollback;
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000005'), 0, '… and gone with the rollback');

-- Muted dispatch
set local app.skip_preview_dispatch = 'on';
insert into public.generations (id, user_id, type, status, asset_url)
values ('eeeeeeee-0000-4000-8000-000000000006', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e6.png');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000006'), 0, 'app.skip_preview_dispatch mutes the trigger');
set local app.skip_preview_dispatch = '';

-- Sweep dispatch: one request per swept row, with the reason
update public.generations set updated_at = now() - interval '10 minutes' where id = 'eeeeeeee-0000-4000-8000-000000000006';
select ok(public.dispatch_preview_sweep(1000) >= 1, 'dispatch_preview_sweep queues requests');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000006'), 1, 'the lost-webhook row got exactly one request');
select is((select body ->> 'reason' from q where body ->> 'generationId' = 'eeeeeeee-0000-4000-8000-000000000006'), 'lost_webhook', 'with its reason');

-- Without vault secrets the row is still written (warning only)
set local client_min_messages = error;
delete from vault.secrets where name = 'project_url';
select lives_ok($$insert into public.generations (id, user_id, type, status, asset_url)
  values ('eeeeeeee-0000-4000-8000-000000000007', '55555555-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/e7.png')$$,
  'missing vault secrets never fail the row''s write');
select is(pg_temp.requests_for('eeeeeeee-0000-4000-8000-000000000007'), 0, '… and queue nothing');
select is(public.cron_kie_sync_pending(), null, 'cron_kie_sync_pending returns null when not configured');
select vault.create_secret('http://127.0.0.1:54321', 'project_url');
select ok(public.cron_kie_sync_pending() is not null, 'cron_kie_sync_pending queues a request');
select results_eq($$select url, body from q where url like '%/kie-sync'$$,
  $$values ('http://127.0.0.1:54321/functions/v1/kie-sync'::text, '{"mode": "pending"}'::jsonb)$$, 'kie-sync body {"mode":"pending"}');

select * from finish();
rollback;
