-- The animated preview's step (issue 14): asked for only for a ready video, claimed and fenced
-- like the poster in its own columns, never touching the poster's; swept; guarded for clients;
-- its object follows the row.
begin;
select * from no_plan();

set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values ('14141414-0000-4000-8000-000000000001', 'anim@example.test');
insert into public.generations (id, user_id, type, status, asset_url, preview_status, poster_path) values
  ('14141414-aaaa-4000-8000-000000000001', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/1.mp4', 'ready',
   '14141414-0000-4000-8000-000000000001/posters/14141414-aaaa-4000-8000-000000000001_poster.webp'),
  ('14141414-aaaa-4000-8000-000000000002', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/2.mp4', 'processing', null),
  ('14141414-aaaa-4000-8000-000000000003', '14141414-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/3.png', 'ready', null);

select is(public.animated_preview_path('14141414-0000-4000-8000-000000000001', '14141414-aaaa-4000-8000-000000000001'),
  '14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4', 'the seed system''s path');
select ok(not public.request_animated_preview('14141414-aaaa-4000-8000-000000000002', false), 'not before the poster is ready');
select ok(not public.request_animated_preview('14141414-aaaa-4000-8000-000000000003', false), 'not for a photo');
select is_empty($$select * from public.claim_animated_preview('14141414-aaaa-4000-8000-000000000001')$$, 'nothing to claim before it is asked for');
select ok(public.request_animated_preview('14141414-aaaa-4000-8000-000000000001', false), 'a ready video''s animated preview is asked for');
select ok(not public.request_animated_preview('14141414-aaaa-4000-8000-000000000001', false), '… once');

select results_eq($$select source_url, target_path, attempt from public.claim_animated_preview('14141414-aaaa-4000-8000-000000000001')$$,
  $$values ('https://k.test/1.mp4'::text, '14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4'::text, 1)$$,
  'claimed: the source, the target, attempt 1');
select is_empty($$select * from public.claim_animated_preview('14141414-aaaa-4000-8000-000000000001')$$, 'not twice within the lease');
select is(public.fail_animated_preview('14141414-aaaa-4000-8000-000000000001', 1, 'SOURCE_UNREACHABLE', true), 'retry', 'a retryable failure');
select results_eq($$select animated_status, animated_error_code, preview_status, error from public.generations where id = '14141414-aaaa-4000-8000-000000000001'$$,
  $$values ('failed'::text, 'SOURCE_UNREACHABLE'::text, 'ready'::text, null::text)$$, '… leaves the poster and its error column alone');
update public.generations set animated_next_attempt_at = now() - interval '1 second' where id = '14141414-aaaa-4000-8000-000000000001';
select results_eq($$select attempt from public.claim_animated_preview('14141414-aaaa-4000-8000-000000000001')$$, $$values (2)$$, 'due again: attempt 2');
select ok(not public.complete_animated_preview('14141414-aaaa-4000-8000-000000000001', 1, 'x'), 'attempt 1 is fenced');
select ok(public.complete_animated_preview('14141414-aaaa-4000-8000-000000000001', 2,
  '14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4'), 'attempt 2 completes');
select is((select animated_status from public.generations where id = '14141414-aaaa-4000-8000-000000000001'), 'ready', 'ready');
select ok('14141414-0000-4000-8000-000000000001/previews/14141414-aaaa-4000-8000-000000000001_preview.mp4' = any(public.preview_owned_objects(g)),
  'the clip is an object of the row (deleted with it)') from public.generations g where id = '14141414-aaaa-4000-8000-000000000001';

-- the sweep re-sends a request that was lost
update public.generations set animated_status = null where id = '14141414-aaaa-4000-8000-000000000003';
insert into public.generations (id, user_id, type, status, asset_url, preview_status, animated_status, updated_at) values
  ('14141414-aaaa-4000-8000-000000000004', '14141414-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/4.mp4', 'ready', 'none', now() - interval '5 minutes');
select ok(public.dispatch_animated_sweep(1000) >= 1, 'the animated sweep dispatches a lost request');
select results_eq($$select id::text from public.animated_candidates('2000-01-01', null, 100) where id::text like '14141414-%'$$,
  $$values ('14141414-aaaa-4000-8000-000000000004')$$, 'backfill --animated: ready videos without one (or due)');

-- clients cannot write the animated columns
create policy "test: anyone updates" on public.generations for update using (true) with check (true);
set local role authenticated;
set local request.jwt.claims = '{"sub": "14141414-0000-4000-8000-000000000001", "role": "authenticated"}';
select throws_ok($$update public.generations set animated_path = 'x' where id = '14141414-aaaa-4000-8000-000000000001'$$,
  '42501', 'generations.animated_path is written by the service only', 'users cannot point the animated preview anywhere');
select throws_ok($$select public.request_animated_preview('14141414-aaaa-4000-8000-000000000001')$$, '42501', null, 'nor ask for one');
reset role;

select * from finish();
rollback;
