-- Issue 16's database side: pg_net's queue and our dispatch records are UNLOGGED (a crash
-- empties both: what it lost is sent again), and the sweep does not re-send a request that may
-- only be waiting for a worker.
begin;
select * from no_plan();

select is((select relpersistence::text from pg_class where oid = 'net.http_request_queue'::regclass), 'u', 'pg_net''s queue is unlogged, as the real one');
select is((select relpersistence::text from pg_class where oid = 'public.preview_dispatches'::regclass), 'u', 'dispatch records are unlogged too');

insert into auth.users (id, email) values ('12121212-0000-4000-8000-000000000001', 'recovery@example.test');
set local app.skip_preview_dispatch = 'on';
insert into public.generations (id, user_id, type, status, asset_url, updated_at) values
  ('12121212-aaaa-4000-8000-000000000001', '12121212-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/1.png', now() - interval '5 minutes'),
  ('12121212-aaaa-4000-8000-000000000002', '12121212-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/2.png', now() - interval '5 minutes'),
  ('12121212-aaaa-4000-8000-000000000003', '12121212-0000-4000-8000-000000000001', 'photo', 'success', 'https://k.test/3.png', now() - interval '5 minutes');
set local app.skip_preview_dispatch = 'off';

select ok(public.dispatch_preview('{"generationId": "12121212-aaaa-4000-8000-000000000001"}', '12121212-aaaa-4000-8000-000000000001'),
  'dispatch_preview queues a request');
select is((select count(*)::int from public.preview_dispatches where generation_id = '12121212-aaaa-4000-8000-000000000001'), 1, '… and records it');
insert into public.preview_dispatches (generation_id, dispatched_at) values ('12121212-aaaa-4000-8000-000000000002', now() - interval '3 minutes');
select results_eq(
  $$select id::text, reason from public.sweep_previews(1000) where id::text like '12121212-%' order by id$$,
  $$values ('12121212-aaaa-4000-8000-000000000002', 'lost_webhook'), ('12121212-aaaa-4000-8000-000000000003', 'lost_webhook')$$,
  'the sweep re-sends a none row never dispatched or dispatched longer ago than preview_redispatch_after(), not one just queued');

select * from finish();
rollback;
