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
  '42501', 'preview columns are written by the service only', 'a user cannot point original_path anywhere');
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

select * from finish();
rollback;
