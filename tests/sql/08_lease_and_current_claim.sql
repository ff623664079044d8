-- One lease definition (preview_lease(), overridable per database with app.preview_lease)
-- used by claim and sweep, and preview_claim_is_current() that workers check before uploads.
begin;
select plan(9);

set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values ('33333333-0000-4000-8000-000000000001', 'lease@example.test');
insert into public.generations (id, user_id, type, status, task_id, asset_url, created_at) values
  ('cccccccc-0000-4000-8000-000000000001', '33333333-0000-4000-8000-000000000001', 'photo', 'success', 'lease-1', 'http://kie.test/l.png', now() - interval '1 day');

set local app.preview_lease = '';
select is(public.preview_lease(), interval '2 minutes', 'the lease is 2 minutes by default');
set local app.preview_lease = '15 seconds';
select is(public.preview_lease(), interval '15 seconds', 'app.preview_lease overrides it');

select is((select attempt from public.claim_preview('cccccccc-0000-4000-8000-000000000001')), 1, 'attempt 1 claims the row');
select ok(public.preview_claim_is_current('cccccccc-0000-4000-8000-000000000001', 1), 'attempt 1 holds the claim');

-- 10 s into a 15 s lease: nobody can take it over, and the sweep does not list it.
update public.generations set preview_started_at = now() - interval '10 seconds' where id = 'cccccccc-0000-4000-8000-000000000001';
select is_empty($$select * from public.claim_preview('cccccccc-0000-4000-8000-000000000001')$$, 'inside the lease the row is not claimable');
select is_empty($$select * from public.sweep_previews(100) where id = 'cccccccc-0000-4000-8000-000000000001'$$, 'inside the lease the sweep leaves it');

-- Past the same lease: the sweep lists it and attempt 2 takes it over.
update public.generations set preview_started_at = now() - interval '16 seconds' where id = 'cccccccc-0000-4000-8000-000000000001';
select results_eq($$select reason from public.sweep_previews(100) where id = 'cccccccc-0000-4000-8000-000000000001'$$, array['lease_expired'], 'past the lease the sweep re-dispatches it');
select is((select attempt from public.claim_preview('cccccccc-0000-4000-8000-000000000001')), 2, 'attempt 2 takes it over');
select ok(not public.preview_claim_is_current('cccccccc-0000-4000-8000-000000000001', 1), 'attempt 1 no longer holds the claim (it must not upload)');

select * from finish();
rollback;
