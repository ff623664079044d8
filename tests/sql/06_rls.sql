-- RLS and privileges seen as PostgREST sees them: two users, anon, the service role.
begin;
select * from no_plan();

set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values
  ('66666666-0000-4000-8000-00000000000a', 'alice@example.test'),
  ('66666666-0000-4000-8000-00000000000b', 'bob@example.test');
insert into public.generations (id, user_id, type, status, asset_url) values
  ('ffffffff-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000a', 'photo', 'success', 'http://kie.test/a.png'),
  ('ffffffff-0000-4000-8000-00000000000b', '66666666-0000-4000-8000-00000000000b', 'video', 'success', 'http://kie.test/b.mp4');
insert into storage.buckets (id, name) values ('generations', 'generations') on conflict do nothing;
insert into storage.objects (bucket_id, name) values
  ('generations', '66666666-0000-4000-8000-00000000000a/previews/ffffffff-0000-4000-8000-00000000000a_preview.webp'),
  ('generations', '66666666-0000-4000-8000-00000000000b/posters/ffffffff-0000-4000-8000-00000000000b_poster.webp');

select is((select public from storage.buckets where id = 'generations'), false, 'bucket generations is private');

-- Alice
set local role authenticated;
set local request.jwt.claims = '{"sub": "66666666-0000-4000-8000-00000000000a", "role": "authenticated"}';
select results_eq($$select id from public.generations where user_id in ('66666666-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000b')$$,
  $$values ('ffffffff-0000-4000-8000-00000000000a'::uuid)$$, 'alice sees only her generation');
select results_eq($$select name from storage.objects where bucket_id = 'generations' and name like '66666666-%'$$,
  $$values ('66666666-0000-4000-8000-00000000000a/previews/ffffffff-0000-4000-8000-00000000000a_preview.webp'::text)$$,
  'alice sees only objects under her folder');
update public.generations set preview_status = 'ready' where id = 'ffffffff-0000-4000-8000-00000000000a';
reset role;
select is((select preview_status from public.generations where id = 'ffffffff-0000-4000-8000-00000000000a'), 'none', 'alice cannot update her row (no update policy)');
set local role authenticated;
select throws_ok($$insert into public.generations (user_id, type) values ('66666666-0000-4000-8000-00000000000a', 'photo')$$,
  '42501', null, 'alice cannot insert generations');
select throws_ok($$insert into storage.objects (bucket_id, name) values ('generations', '66666666-0000-4000-8000-00000000000a/x.webp')$$,
  '42501', null, 'alice cannot upload into the bucket');
select throws_ok($$delete from storage.objects where bucket_id = 'generations'$$,
  '42501', 'Direct deletion from storage tables is not allowed. Use the Storage API instead.',
  'a direct SQL delete of objects is refused, as on the platform (only the Storage API deletes)');
select throws_ok($$select * from public.claim_preview('ffffffff-0000-4000-8000-00000000000a')$$, '42501', null, 'authenticated cannot call claim_preview');
select throws_ok($$select public.complete_preview('ffffffff-0000-4000-8000-00000000000a', 1, 'p', 1, 1, 'h')$$, '42501', null, 'authenticated cannot call complete_preview');
select throws_ok($$select public.fail_preview('ffffffff-0000-4000-8000-00000000000a', 1, 'X', 'x', true)$$, '42501', null, 'authenticated cannot call fail_preview');
select throws_ok($$select * from public.apply_kie_result('t', 'success', null, null, null)$$, '42501', null, 'authenticated cannot call apply_kie_result');
select throws_ok($$select public.dispatch_preview_sweep()$$, '42501', null, 'authenticated cannot call dispatch_preview_sweep');
select throws_ok($$select * from public.preview_stats$$, '42501', null, 'authenticated cannot read preview_stats');

-- Bob
set local request.jwt.claims = '{"sub": "66666666-0000-4000-8000-00000000000b", "role": "authenticated"}';
select results_eq($$select id from public.generations where user_id in ('66666666-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000b')$$,
  $$values ('ffffffff-0000-4000-8000-00000000000b'::uuid)$$, 'bob sees only his generation');
select results_eq($$select name from storage.objects where bucket_id = 'generations' and name like '66666666-%'$$,
  $$values ('66666666-0000-4000-8000-00000000000b/posters/ffffffff-0000-4000-8000-00000000000b_poster.webp'::text)$$,
  'bob sees only objects under his folder');
reset role;
select is((select count(*)::int from storage.objects where bucket_id = 'generations' and name like '66666666-%'), 2, 'alice''s delete removed nothing');

-- Anon
set local role anon;
set local request.jwt.claims = '{"role": "anon"}';
select is_empty($$select id from public.generations$$, 'anon sees no generations');
select is_empty($$select name from storage.objects where bucket_id = 'generations'$$, 'anon sees no objects');
select throws_ok($$select * from public.claim_preview('ffffffff-0000-4000-8000-00000000000a')$$, '42501', null, 'anon cannot call claim_preview');
reset role;

-- Service role bypasses RLS and may run the state machine
set local role service_role;
set local request.jwt.claims = '{"role": "service_role"}';
select is((select count(*)::int from public.generations where user_id in ('66666666-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000b')), 2, 'service_role sees all rows');
select is((select attempt from public.claim_preview('ffffffff-0000-4000-8000-00000000000a')), 1, 'service_role claims');
select ok((select count(*) > 0 from public.preview_stats), 'service_role reads preview_stats');
reset role;

-- Guard: even with a permissive write policy (as the platform may have), API roles cannot
-- write preview state.
create policy "test: users update own" on public.generations for update to authenticated
  using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
set local role authenticated;
set local request.jwt.claims = '{"sub": "66666666-0000-4000-8000-00000000000b", "role": "authenticated"}';
select lives_ok($$update public.generations set prompt = 'mine' where id = 'ffffffff-0000-4000-8000-00000000000b'$$, 'a platform update policy still works for other columns');
select throws_ok($$update public.generations set preview_status = 'ready' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.preview_status is written by the service only', 'but preview columns stay service-only');
select throws_ok($$update public.generations set model = 'mine' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.model is written by the service only', '… and so does the model (it picks the KIE family)');
reset role;

select * from finish();
rollback;
