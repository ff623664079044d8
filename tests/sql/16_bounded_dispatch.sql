-- Bounded dispatch (issue 21): at most preview_dispatch_limit() generate-preview requests in
-- flight; rows past the bound wait; dispatch_next_previews fills freed slots oldest first; a
-- declined row's dispatch is released; a claim handed back at an isolate's end is `none` again
-- (fenced, attempt kept) unless it is at the attempt cap.
begin;
select plan(23);
-- the default bound, whatever the stack set (npm test raises it for its parallel suites)
set local app.preview_dispatch_limit = '';

delete from vault.secrets where name in ('project_url', 'preview_dispatch_secret');
select vault.create_secret('http://127.0.0.1:54321/', 'project_url');
select vault.create_secret('test-dispatch-secret', 'preview_dispatch_secret');
-- this file's rows only: nothing else in flight
delete from public.preview_dispatches;
update public.generations set preview_status = 'failed' where preview_status = 'processing';
insert into auth.users (id, email) values ('16161616-0000-4000-8000-000000000001', 'bounded@example.test');

create temp table q_start as select coalesce(max(id), 0) as max_id from net.http_request_queue;
create or replace function pg_temp.requests_for(p_id uuid) returns int language sql as $$
  select count(*)::int from net.http_request_queue r
   where convert_from(r.body, 'UTF8')::jsonb ->> 'generationId' = p_id::text and r.id > (select max_id from q_start)
$$;
create or replace function pg_temp.row_id(n int) returns uuid language sql as $$
  select ('16161616-1111-4000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;

select is(public.preview_dispatch_limit(), 2, 'the default bound is 2 requests in flight');

-- a burst of 5 eligible rows, one after another: the first two are sent, three wait
insert into public.generations (id, user_id, type, status, asset_url, updated_at)
select pg_temp.row_id(n), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b' || n || '.png',
       now() - make_interval(secs => 10 - n)
  from generate_series(1, 5) n;
select is(public.preview_dispatches_in_flight(), 2, 'two requests in flight');
select is((select sum(pg_temp.requests_for(pg_temp.row_id(n)))::int from generate_series(1, 5) n), 2, 'a burst of 5 sends 2 requests');
select is(pg_temp.requests_for(pg_temp.row_id(3)) + pg_temp.requests_for(pg_temp.row_id(4)), 0, 'rows 3 and 4 wait for a slot');

-- a worker claims row 1: its request no longer waits, so a slot frees and the oldest waiting
-- row (3) is sent
select is((select attempt from public.claim_preview(pg_temp.row_id(1))), 1, 'row 1 claimed');
select is(public.preview_dispatches_in_flight(), 1, 'a claimed row holds no slot');
select is(public.dispatch_next_previews(), 1, 'one slot free: one row sent');
select is(pg_temp.requests_for(pg_temp.row_id(3)), 1, 'the oldest waiting row is the one sent');
select is(public.dispatch_next_previews(), 0, 'no free slot: nothing more sent');

-- a request nobody claimed for preview_dispatch_slot_hold() is presumed lost: its slot frees
update public.preview_dispatches set dispatched_at = now() - public.preview_dispatch_slot_hold() - interval '1 second'
 where generation_id = pg_temp.row_id(3);
select is(public.preview_dispatches_in_flight(), 1, 'a request unclaimed past the hold holds no slot');
select is(public.dispatch_next_previews(), 1, 'and its slot goes to the next waiting row');
select is(pg_temp.requests_for(pg_temp.row_id(4)), 1, 'row 4 sent');

-- a worker declines row 2 (spent isolate): its dispatch is released and it is sent again
select is(public.release_preview_dispatches(array[pg_temp.row_id(2)]), 1, 'the declined row''s dispatch record is released');
select is(public.dispatch_next_previews(), 1, 'the freed slot is filled again');
select is(pg_temp.requests_for(pg_temp.row_id(2)), 2, 'the declined row got a second request (the oldest waiting)');

-- an isolate ending with a claim hands it back: none, fenced, attempt kept
select is((select attempt from public.claim_preview(pg_temp.row_id(3))), 1, 'row 3 claimed');
select ok(public.release_preview_claim(pg_temp.row_id(3), 1), 'row 3 handed back');
select ok((select preview_status = 'none' and preview_attempts = 1 and preview_started_at is null
             from public.generations where id = pg_temp.row_id(3))
          and not public.complete_preview(pg_temp.row_id(3), 1, 'x/previews/3_preview.webp', 512, 320, 'th'),
  'released: none with its attempt counted, and the released attempt''s completion is fenced');
-- at the attempt cap the claim is kept (the lease ends it), so an input cannot be handed back for ever
update public.generations set preview_attempts = public.preview_max_attempts() - 1 where id = pg_temp.row_id(5);
select is((select attempt from public.claim_preview(pg_temp.row_id(5))), public.preview_max_attempts(), 'row 5 claimed at the cap');
select ok(not public.release_preview_claim(pg_temp.row_id(5), public.preview_max_attempts()), 'at the attempt cap a claim is not handed back');
select is((select preview_status from public.generations where id = pg_temp.row_id(5)), 'processing', 'it stays processing');

-- a row nobody tried to dispatch (written with the trigger muted, as an old row is) is never sent
-- by dispatch_next_previews, even with every slot free: it is the backfill's or the sweep's
set local app.skip_preview_dispatch = on;
insert into public.generations (id, user_id, type, status, asset_url)
values (pg_temp.row_id(6), '16161616-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/b6.png');
set local app.skip_preview_dispatch = '';
delete from public.preview_dispatches;
select lives_ok($$select public.dispatch_next_previews()$$, 'every slot free: the waiting rows are sent');
select is(pg_temp.requests_for(pg_temp.row_id(6)), 0, 'a row that never waited for a slot is not sent');

select * from finish();
rollback;
