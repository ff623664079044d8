-- Issue 10's database findings, as PostgREST's roles see them: what API roles may no longer
-- do to the table, original_path under the guard, and one body per KIE signature.
begin;
select * from no_plan();

set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values ('99999999-0000-4000-8000-00000000000a', 'hard-alice@example.test');
insert into public.generations (id, user_id, type, status, asset_url) values
  ('eeeeeeee-0000-4000-8000-00000000000a', '99999999-0000-4000-8000-00000000000a', 'photo', 'success', 'http://kie.test/a.png');

-- Privileges: TRUNCATE, TRIGGER, REFERENCES are gone for API roles; what an app uses stays.
select ok(not has_table_privilege(r, 'public.generations', p), format('%s has no %s on generations', r, p))
  from unnest(array['anon', 'authenticated']) r, unnest(array['TRUNCATE', 'TRIGGER', 'REFERENCES']) p;
select ok(not has_table_privilege(r, 'storage.objects', 'TRUNCATE'), format('%s cannot truncate storage.objects', r))
  from unnest(array['anon', 'authenticated']) r;
select ok(has_table_privilege('authenticated', 'public.generations', 'SELECT'), 'authenticated still selects (RLS decides which rows)');

create function pg_temp.noop() returns trigger language plpgsql as $$ begin return new; end $$;
grant execute on function pg_temp.noop() to authenticated;
set local role authenticated;
set local request.jwt.claims = '{"sub": "99999999-0000-4000-8000-00000000000a", "role": "authenticated"}';
select throws_ok($$truncate public.generations$$, '42501', null, 'authenticated cannot truncate generations');
select throws_ok($$create trigger t before update on public.generations for each row execute function pg_temp.noop()$$,
  '42501', null, 'authenticated cannot create a trigger on generations');
reset role;
set local role anon;
select throws_ok($$truncate public.generations$$, '42501', null, 'anon cannot truncate generations');
select throws_ok($$truncate storage.objects$$, '42501', null, 'anon cannot truncate storage.objects');
reset role;

-- Guard: original_path is service-only, even under a permissive update policy.
create policy "test: users update own" on public.generations for update to authenticated
  using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
set local role authenticated;
set local request.jwt.claims = '{"sub": "99999999-0000-4000-8000-00000000000a", "role": "authenticated"}';
select throws_ok($$update public.generations set original_path = '99999999-0000-4000-8000-00000000000b/originals/x.jpg'
                   where id = 'eeeeeeee-0000-4000-8000-00000000000a'$$,
  '42501', 'generations.original_path is written by the service only', 'a user cannot point original_path anywhere');
reset role;
select is((select original_path from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000a'), null, 'original_path unchanged');

-- One body per KIE signature.
select is(public.record_kie_callback('hard-task', 1700000000, 'aaa'), 'first', 'a new signature is a first use');
select is(public.record_kie_callback('hard-task', 1700000000, 'aaa'), 'repeat', 'the same body again is a redelivery');
select is(public.record_kie_callback('hard-task', 1700000000, 'bbb'), 'replay', 'another body under a used signature is a replay');
select is(public.record_kie_callback('hard-task', 1700000001, 'bbb'), 'first', 'another timestamp is another signature');
select is(public.record_kie_callback('other-task', 1700000000, 'bbb'), 'first', 'another task is another signature');
update public.kie_callback_receipts set received_at = now() - interval '2 days' where task_id = 'other-task';
select public.cron_trim_history();
select is((select count(*)::int from public.kie_callback_receipts where task_id in ('hard-task', 'other-task')), 2,
  'the hourly trim forgets receipts a day old');
set local role anon;
select throws_ok($$select public.record_kie_callback('t', 1, 'x')$$, '42501', null, 'anon cannot record receipts');
select throws_ok($$select * from public.kie_callback_receipts$$, '42501', null, 'anon cannot read receipts');
reset role;
set local role authenticated;
select throws_ok($$select public.record_kie_callback('t', 1, 'x')$$, '42501', null, 'authenticated cannot record receipts');
reset role;

-- A worker killed by the platform (its lease runs out) is retried once; the second dead
-- worker on the same item ends it WORKER_LIMIT, terminal (not five kills, then TIMEOUT).
insert into public.generations (id, user_id, type, status, asset_url) values
  ('eeeeeeee-0000-4000-8000-00000000000b', '99999999-0000-4000-8000-00000000000a', 'photo', 'success', 'http://kie.test/bomb.png');
select is((select attempt from public.claim_preview('eeeeeeee-0000-4000-8000-00000000000b')), 1, 'first claim');
update public.generations set preview_started_at = now() - public.preview_lease() - interval '1 second'
 where id = 'eeeeeeee-0000-4000-8000-00000000000b';
select is((select reason from public.sweep_previews(1000) where id = 'eeeeeeee-0000-4000-8000-00000000000b'), 'lease_expired',
  'the sweep re-dispatches a first dead worker''s item');
select is((select attempt from public.claim_preview('eeeeeeee-0000-4000-8000-00000000000b')), 2, 'a first expired lease is taken over');
select is((select preview_expired_leases from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'), 1,
  'the dead worker is counted');
update public.generations set preview_started_at = now() - public.preview_lease() - interval '1 second'
 where id = 'eeeeeeee-0000-4000-8000-00000000000b';
select is_empty($$select * from public.claim_preview('eeeeeeee-0000-4000-8000-00000000000b')$$, 'the second expired lease is not taken over');
select is_empty($$select * from public.sweep_previews(1000) where id = 'eeeeeeee-0000-4000-8000-00000000000b'$$, 'nor re-dispatched');
select ok(public.expire_preview_leases() >= 1, 'expire_preview_leases ends it');
select results_eq($$select preview_status, preview_error_code, preview_next_attempt_at is null, preview_expired_leases, preview_attempts
                     from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'$$,
  $$values ('failed'::text, 'WORKER_LIMIT'::text, true, 2, 2)$$, 'failed WORKER_LIMIT, terminal, after two attempts');
select matches((select error from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'),
  '^Preview worker stopped 2 times on this item', 'the error says the worker was stopped');
update public.generations set asset_url = 'http://kie.test/fixed.png' where id = 'eeeeeeee-0000-4000-8000-00000000000b';
select results_eq($$select preview_status, preview_expired_leases from public.generations where id = 'eeeeeeee-0000-4000-8000-00000000000b'$$,
  $$values ('none'::text, 0)$$, 'a new asset starts with no dead workers');
set local role authenticated;
set local request.jwt.claims = '{"sub": "99999999-0000-4000-8000-00000000000a", "role": "authenticated"}';
select throws_ok($$update public.generations set preview_expired_leases = 5 where id = 'eeeeeeee-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.preview_expired_leases is written by the service only', 'the counter is service-only');
reset role;

select * from finish();
rollback;
