-- The local platform bootstrap: roles, auth helpers, storage helpers, vault, net.
begin;
select plan(50);

select has_role('anon');
select has_role('authenticated');
select has_role('service_role');
select has_role('authenticator');
select ok((select rolbypassrls from pg_roles where rolname = 'service_role'), 'service_role bypasses RLS');
select ok((select rolcanlogin and not rolinherit from pg_roles where rolname = 'authenticator'), 'authenticator logs in, noinherit');
select ok(pg_has_role('authenticator', 'authenticated', 'member'), 'authenticator can switch to authenticated');

select has_schema('extensions');
select has_extension('extensions', 'pgcrypto', 'pgcrypto lives in extensions');
select has_table('auth', 'users', 'auth.users exists');
select has_table('storage', 'buckets', 'storage.buckets exists');
select has_table('storage', 'objects', 'storage.objects exists');
select has_table('vault', 'secrets', 'vault.secrets exists');
select has_view('vault', 'decrypted_secrets', 'vault.decrypted_secrets exists');
select has_table('net', 'http_request_queue', 'net.http_request_queue exists');
select has_table('net', '_http_response', 'net._http_response exists');

-- auth.* read PostgREST's claims
set local request.jwt.claims = '{"sub": "6c4ae0a9-9d65-4a43-8f0e-1d0c9b0c6f11", "role": "authenticated", "email": "a@example.test"}';
select is(auth.uid(), '6c4ae0a9-9d65-4a43-8f0e-1d0c9b0c6f11'::uuid, 'auth.uid() reads request.jwt.claims');
select is(auth.role(), 'authenticated', 'auth.role() reads request.jwt.claims');
select is(auth.jwt() ->> 'email', 'a@example.test', 'auth.jwt() returns the claims');
set local request.jwt.claims = '';
set local request.jwt.claim.sub = '0b0c1d2e-0000-4000-8000-000000000001';
select is(auth.uid(), '0b0c1d2e-0000-4000-8000-000000000001'::uuid, 'auth.uid() falls back to request.jwt.claim.sub');
set local request.jwt.claim.sub = '';
select is(auth.uid(), null, 'auth.uid() is null without claims');

-- password hashes with pgcrypto
insert into auth.users (id, email, encrypted_password)
values ('6c4ae0a9-9d65-4a43-8f0e-1d0c9b0c6f11', 'platform@example.test', extensions.crypt('pw', extensions.gen_salt('bf')));
select ok((select encrypted_password = extensions.crypt('pw', encrypted_password) from auth.users where email = 'platform@example.test'),
          'encrypted_password verifies with crypt()');
select throws_ok($$insert into auth.users (email) values ('platform@example.test')$$, '23505', null, 'email is unique');

-- storage helpers (Supabase semantics)
select is(storage.foldername('u1/previews/x_preview.webp'), array['u1', 'previews'], 'foldername');
select is(storage.filename('u1/previews/x_preview.webp'), 'x_preview.webp', 'filename');
select is(storage.extension('u1/previews/x.tar.webp'), 'webp', 'extension is the text after the last dot');
insert into storage.buckets (id, name) values ('platform-test', 'platform-test');
insert into storage.objects (bucket_id, name) values ('platform-test', 'a/b/c.png');
select is((select path_tokens from storage.objects where bucket_id = 'platform-test'), array['a', 'b', 'c.png'], 'path_tokens generated from name');
select throws_ok($$insert into storage.objects (bucket_id, name) values ('platform-test', 'a/b/c.png')$$, '23505', null, 'unique (bucket_id, name)');
select ok((select relrowsecurity from pg_class where oid = 'storage.objects'::regclass), 'RLS is on for storage.objects');

-- vault
select ok(vault.create_secret('s3cret', 'platform_test_secret', 'desc') is not null, 'vault.create_secret returns an id');
select is((select decrypted_secret from vault.decrypted_secrets where name = 'platform_test_secret'), 's3cret', 'decrypted_secrets shows the secret');
select vault.update_secret((select id from vault.secrets where name = 'platform_test_secret'), 'n3w');
select is((select decrypted_secret from vault.decrypted_secrets where name = 'platform_test_secret'), 'n3w', 'vault.update_secret changes it');

-- net: pg_net's API
select function_returns('net', 'http_post', array['text', 'jsonb', 'jsonb', 'jsonb', 'integer'], 'bigint', 'net.http_post(url, body, params, headers, timeout_milliseconds) returns bigint');
select function_returns('net', 'http_get', array['text', 'jsonb', 'jsonb', 'integer'], 'bigint', 'net.http_get(url, params, headers, timeout_milliseconds) returns bigint');
select net.http_post('http://h/p?x=1', '{"a": 1}'::jsonb, '{"q": "a b"}'::jsonb) as post_id \gset
select is(
  (select url || ' ' || method || ' ' || timeout_milliseconds || ' ' || convert_from(body, 'UTF8') || ' ' || (headers ->> 'Content-Type')
     from net.http_request_queue where id = :post_id),
  'http://h/p?x=1&q=a%20b POST 5000 {"a": 1} application/json',
  'http_post queues a POST with defaults and encoded params');
select net.http_get(url := 'http://h/g', timeout_milliseconds := 250) as get_id \gset
select is(
  (select method || ' ' || coalesce(body::text, 'nobody') || ' ' || timeout_milliseconds
     from net.http_request_queue where id = :get_id),
  'GET nobody 250', 'http_get queues a GET');
select throws_ok($$select net.http_post('http://h/p', '{}'::jsonb, headers := '{"Content-Type": "text/plain"}'::jsonb)$$,
  'P0001', 'Content-Type header must be "application/json"', 'http_post refuses non-JSON content type');
select trigger_is('net', 'http_request_queue', 'notify_request_queued', 'net', '_notify_request_queued', 'queue inserts NOTIFY the local worker');

-- net is open to PUBLIC, as real pg_net grants it; vault is not
select ok(has_schema_privilege('anon', 'net', 'usage'), 'anon has usage on net (as on a real project)');
select ok(has_table_privilege('anon', 'net.http_request_queue', 'select'), 'anon reads the net queue (as on a real project)');
select ok(has_table_privilege('authenticated', 'net._http_response', 'select'), 'authenticated reads net responses (as on a real project)');
select ok(has_function_privilege('anon', 'net.http_post(text, jsonb, jsonb, jsonb, integer)', 'execute'), 'anon may call net.http_post (as on a real project)');
select ok(not has_schema_privilege('anon', 'vault', 'usage'), 'anon has no usage on vault');
select ok(not has_schema_privilege('authenticated', 'vault', 'usage'), 'authenticated has no usage on vault');
select ok(has_table_privilege('service_role', 'vault.decrypted_secrets', 'select'), 'service_role reads vault');
set local role authenticated;
select throws_ok('select * from vault.decrypted_secrets', '42501', null, 'authenticated cannot read vault.decrypted_secrets');
select throws_ok('select * from vault.secrets', '42501', null, 'authenticated cannot read vault.secrets');
reset role;
set local role anon;
select lives_ok('select headers from net.http_request_queue', 'anon reads queued headers');
select throws_ok('select * from vault.decrypted_secrets', '42501', null, 'anon cannot read vault.decrypted_secrets');
select throws_ok('select * from auth.users', '42501', null, 'anon cannot read auth.users');
reset role;

select * from finish();
rollback;
