-- Objects follow their rows (issue 14): what a delete, a user's cascade and a replaced original
-- queue (only this system's paths of the row), and the queue's claim, completion and backoff.
begin;
select * from no_plan();

set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values ('13131313-0000-4000-8000-000000000001', 'life@example.test'),
                                          ('13131313-0000-4000-8000-000000000002', 'life2@example.test');
insert into public.generations (id, user_id, type, status, asset_url, preview_status, preview_path, poster_path, original_path) values
  ('13131313-aaaa-4000-8000-000000000001', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/1.png', 'ready',
   '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000001_preview.webp', null,
   '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000001.png'),
  -- an original the platform copied itself (not ours): never queued
  ('13131313-aaaa-4000-8000-000000000002', '13131313-0000-4000-8000-000000000001', 'video', 'success', 'https://k.test/2.mp4', 'ready',
   '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000002_preview.mp4',
   '13131313-0000-4000-8000-000000000001/posters/13131313-aaaa-4000-8000-000000000002_poster.webp',
   '13131313-0000-4000-8000-000000000001/video/13131313-aaaa-4000-8000-000000000002_1700000000000.mp4'),
  ('13131313-aaaa-4000-8000-000000000003', '13131313-0000-4000-8000-000000000002', 'photo', 'success', 'https://k.test/3.png', 'ready',
   '13131313-0000-4000-8000-000000000002/previews/13131313-aaaa-4000-8000-000000000003_preview.webp', null,
   '13131313-0000-4000-8000-000000000002/originals/13131313-aaaa-4000-8000-000000000003.jpg'),
  ('13131313-aaaa-4000-8000-000000000004', '13131313-0000-4000-8000-000000000002', 'audio', 'success', 'https://k.test/4.mp3', 'none', null, null, null);

select is(public.preview_object_path('13131313-0000-4000-8000-000000000001', '13131313-aaaa-4000-8000-000000000001', 'image'),
  '13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000001_preview.webp', 'the preview path scheme');
select results_eq($$select target_path, original_stem from public.claim_preview('13131313-aaaa-4000-8000-000000000004')$$,
  $$select null::text, null::text where false$$, 'an audio row is not claimed (no path)');

-- a delete queues exactly ours
delete from public.generations where id in ('13131313-aaaa-4000-8000-000000000001', '13131313-aaaa-4000-8000-000000000002');
select results_eq(
  $$select path, reason from public.preview_object_deletions where generation_id::text like '13131313-%' order by path$$,
  $$values ('13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000001.png'::text, 'row_deleted'::text),
           ('13131313-0000-4000-8000-000000000001/posters/13131313-aaaa-4000-8000-000000000002_poster.webp', 'row_deleted'),
           ('13131313-0000-4000-8000-000000000001/previews/13131313-aaaa-4000-8000-000000000001_preview.webp', 'row_deleted')$$,
  'deleted rows queue their preview/poster and our original copy; not the platform''s own original nor an old animated preview');

-- a user's cascade
delete from auth.users where id = '13131313-0000-4000-8000-000000000002';
select is((select count(*)::int from public.preview_object_deletions where generation_id = '13131313-aaaa-4000-8000-000000000003'), 2,
  'deleting a user queues the objects of their rows (the cascade fires the row trigger)');
select is((select count(*)::int from public.preview_object_deletions where generation_id = '13131313-aaaa-4000-8000-000000000004'), 0,
  '… and nothing for a row without objects');

-- a replaced original copy, due after two leases; a re-render writing the same path takes it back
insert into public.generations (id, user_id, type, status, asset_url, original_path) values
  ('13131313-aaaa-4000-8000-000000000005', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/5.png',
   '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg');
update public.generations set original_path = '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.png'
 where id = '13131313-aaaa-4000-8000-000000000005';
select results_eq(
  $$select path, reason, next_attempt_at > now() + public.preview_lease() from public.preview_object_deletions where generation_id = '13131313-aaaa-4000-8000-000000000005'$$,
  $$values ('13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg'::text, 'replaced'::text, true)$$,
  'an original copy the row no longer points at is queued, due after the lease');
update public.generations set original_path = '13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.jpg'
 where id = '13131313-aaaa-4000-8000-000000000005';
update public.preview_object_deletions set next_attempt_at = now() - interval '1 second' where generation_id = '13131313-aaaa-4000-8000-000000000005';

-- claim, fail, complete
update public.preview_object_deletions set next_attempt_at = now() - interval '1 second' where generation_id::text like '13131313-%';
create temp table claimed as select * from public.claim_preview_object_deletions(1000) where path like '13131313-%';
select results_eq($$select path from claimed where path like '%aaaa-4000-8000-000000000005%'$$,
  $$values ('13131313-0000-4000-8000-000000000001/originals/13131313-aaaa-4000-8000-000000000005.png'::text)$$,
  'a path its row references again (.jpg) is dropped, not deleted; the copy it replaced in turn (.png) is deleted');
select ok((select count(*) from claimed) >= 5 and (select bool_and(attempt = 1) from claimed), 'due deletions are claimed once, attempt 1');
select is_empty($$select * from public.claim_preview_object_deletions(1000) where path like '13131313-%'$$, 'a claimed deletion is not claimed again within its minute');
select is(public.fail_preview_object_deletions(array(select path from claimed), 'Delete failed: 503'), (select count(*)::int from claimed), 'a failed batch');
select ok((select bool_and(next_attempt_at > now() + interval '25 seconds' and claimed_until is null and last_error = 'Delete failed: 503')
             from public.preview_object_deletions where path in (select path from claimed)), '… is due again after preview_backoff(1)');
select is(public.complete_preview_object_deletions(array(select path from claimed)), (select count(*)::int from claimed), 'a completed batch');
select is((select count(*)::int from public.preview_object_deletions where generation_id::text like '13131313-%'), 0, '… leaves the queue');

-- preview versions: complete stamps one; --stale takes ready rows of another, the reset re-arms the claim
insert into public.generations (id, user_id, type, status, asset_url, created_at) values
  ('13131313-aaaa-4000-8000-000000000006', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/6.png', '1971-01-01'),
  ('13131313-aaaa-4000-8000-000000000007', '13131313-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/7.png', '1971-01-02');
select public.claim_preview('13131313-aaaa-4000-8000-000000000006');
select public.claim_preview('13131313-aaaa-4000-8000-000000000007');
select ok(public.complete_preview('13131313-aaaa-4000-8000-000000000006', 1, 'p6', 1, 1, 't', null, 'r1-s512-q80'), 'complete with a version');
select ok(public.complete_preview('13131313-aaaa-4000-8000-000000000007', 1, 'p7', 1, 1, 't', null, 'r2-s512-q80'), 'complete with another');
select is((select preview_version from public.generations where id = '13131313-aaaa-4000-8000-000000000006'), 'r1-s512-q80', 'the version is stamped');
select results_eq($$select id::text from public.backfill_candidates('1970-12-31', null, 100000, null, false, null, 'r2-s512-q80') where id::text like '13131313-%'$$,
  $$values ('13131313-aaaa-4000-8000-000000000006')$$, '--stale candidates: ready rows of another version only');
select ok(not public.reset_preview_for_rerender('13131313-aaaa-4000-8000-000000000007', 'r2-s512-q80'), 'a current preview is not reset');
select ok(public.reset_preview_for_rerender('13131313-aaaa-4000-8000-000000000006', 'r2-s512-q80'), 'a stale one is');
select results_eq($$select preview_status, preview_attempts from public.generations where id = '13131313-aaaa-4000-8000-000000000006'$$,
  $$values ('none'::text, 0)$$, '… back to none for the claim');
select results_eq($$select attempt from public.claim_preview('13131313-aaaa-4000-8000-000000000006')$$, $$values (1)$$, '… which claims it with the usual fencing');

set local role authenticated;
select throws_ok($$select * from public.claim_preview_object_deletions(1)$$, '42501', null, 'users cannot claim deletions');
select throws_ok($$select * from public.preview_object_deletions$$, '42501', null, 'nor read the queue');
reset role;

select * from finish();
rollback;
