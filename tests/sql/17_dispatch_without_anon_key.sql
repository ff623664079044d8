-- invoke_edge_function (migrations/20261203100400_dispatch.sql): the dispatch secret is a queued
-- request's only credential, whatever else the vault holds (an older deploy's anon_key), for the
-- pending sync and the workers' wakes alike.
begin;
select plan(13);
-- a free place for this file's wake (the bound is 16_worker_wakes.sql)
set local app.preview_worker_limit = '1000';
delete from public.preview_worker_wakes;

delete from vault.secrets where name in ('project_url', 'anon_key', 'preview_dispatch_secret', 'service_role_key');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
-- what a deploy before this migration left in the vault
select vault.create_secret('eyJ-test-legacy-anon-key', 'anon_key');

create temp table q_start as select coalesce(max(id), 0) as max_id from net.http_request_queue;
create temp view q as
  select r.id, r.url, r.method, r.headers, r.timeout_milliseconds, convert_from(r.body, 'UTF8')::jsonb as body
    from net.http_request_queue r where r.id > (select max_id from q_start);

-- the pending sync, as pg_cron's kie-sync-pending job sends it
create temp table sync as select public.cron_kie_sync_pending() as id;
select ok((select id from sync) is not null, 'the pending sync is queued');
select results_eq(
  $$select url, method, timeout_milliseconds, headers from q where id = (select id from sync)$$,
  $$values ('http://127.0.0.1:54321/functions/v1/kie-sync'::text, 'POST'::text, 30000,
            '{"Content-Type": "application/json", "x-preview-dispatch": "test-dispatch-secret"}'::jsonb)$$,
  'kie-sync gets the dispatch secret alone: no Authorization, no apikey');
select is((select body from q where id = (select id from sync)), '{"mode": "pending"}'::jsonb, 'body: mode pending');

-- the wake of a worker (the enqueue trigger)
select tests.create_user('no-anon-key@example.test', '17171717-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, asset_url)
values ('17171717-1111-4000-8000-000000000001', '17171717-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/17.png');
select results_eq(
  $$select url, headers, body ? 'wake' from q where url like '%/generate-preview'$$,
  $$values ('http://127.0.0.1:54321/functions/v1/generate-preview'::text,
            '{"Content-Type": "application/json", "x-preview-dispatch": "test-dispatch-secret"}'::jsonb, true)$$,
  'the wake of generate-preview gets the dispatch secret alone too');
select is((select count(*)::int from q where headers::text like '%eyJ-test-legacy-anon-key%'), 0,
  'no queued request carries the anon_key still in the vault');

-- not configured: nothing sent, the caller's transaction goes on
set local client_min_messages = error;
delete from vault.secrets where name = 'preview_dispatch_secret';
select is(public.invoke_edge_function('kie-sync', '{"mode": "pending"}'::jsonb, 30000), null,
  'without the dispatch secret: null (an anon_key in the vault does not stand in for it)');
select is((select count(*)::int from q), 2, 'and nothing is queued');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
delete from vault.secrets where name = 'project_url';
select is(public.invoke_edge_function('kie-sync', '{"mode": "pending"}'::jsonb, 30000), null,
  'without project_url: null');
reset client_min_messages;

-- who may call it
select tests.authenticate_as_anon();
select throws_ok($$select public.invoke_edge_function('kie-sync', '{}'::jsonb)$$, '42501', null,
  'anon cannot queue a dispatch');
select tests.authenticate_as('17171717-0000-4000-8000-000000000001');
select throws_ok($$select public.invoke_edge_function('kie-sync', '{}'::jsonb)$$, '42501', null,
  'authenticated cannot queue a dispatch');
select tests.clear_authentication();
select ok(has_function_privilege('service_role', 'public.invoke_edge_function(text, jsonb, int)', 'execute'),
  'service_role can');
select ok((select prosecdef and proconfig = array['search_path=""'] from pg_proc
            where oid = 'public.invoke_edge_function(text, jsonb, int)'::regprocedure),
  'SECURITY DEFINER with an empty search_path');
select ok(pg_get_functiondef('public.invoke_edge_function(text, jsonb, int)'::regprocedure) not like '%anon_key%',
  'the function reads no anon_key from the vault');

select * from finish();
rollback;
