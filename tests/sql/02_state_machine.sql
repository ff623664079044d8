-- The preview state machine: claim / complete / fail, refusals, fencing, backoff, cap,
-- lease expiry, sweep, reset, backfill candidates, asset change.
begin;
select * from no_plan();

set local app.skip_preview_dispatch = 'on';  -- these tests are about state, not dispatch
insert into auth.users (id, email) values ('22222222-0000-4000-8000-000000000001', 'sm@example.test');

insert into public.generations (id, user_id, type, status, task_id, asset_url, result_urls, model, updated_at, created_at) values
  ('bbbbbbbb-0000-4000-8000-000000000001', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-1', 'http://kie.test/1.png', '["http://kie.test/1.png"]', 'gpt-4o-image', now() - interval '10 minutes', now() - interval '10 days'),
  ('bbbbbbbb-0000-4000-8000-000000000002', '22222222-0000-4000-8000-000000000001', 'video', 'success', 'sm-2', 'http://kie.test/2.mp4', '["http://kie.test/2.mp4"]', 'veo3',          now() - interval '10 minutes', now() - interval '9 days'),
  ('bbbbbbbb-0000-4000-8000-000000000003', '22222222-0000-4000-8000-000000000001', 'photo', 'pending', 'sm-3', null, null, 'gpt-4o-image',                                   now(), now() - interval '8 days'),
  ('bbbbbbbb-0000-4000-8000-000000000004', '22222222-0000-4000-8000-000000000001', 'audio', 'success', 'sm-4', 'http://kie.test/4.mp3', null, 'suno',                           now() - interval '10 minutes', now() - interval '7 days'),
  ('bbbbbbbb-0000-4000-8000-000000000005', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-5', null, null, 'gpt-4o-image',                                   now(), now() - interval '6 days'),
  ('bbbbbbbb-0000-4000-8000-000000000006', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'sm-6', 'http://kie.test/6.png', null, 'flux',                           now(), now() - interval '5 days');

-- Constants
select is(public.preview_max_attempts(), 5, 'attempt cap is 5');
select is(public.preview_backoff(1), interval '30 seconds', 'backoff(1) = 30 s');
select is(public.preview_backoff(2), interval '1 minute', 'backoff(2) = 1 min');
select is(public.preview_backoff(4), interval '4 minutes', 'backoff(4) = 4 min');
select is(public.preview_backoff(20), interval '1 hour', 'backoff is capped at 1 h');

-- Refusals: not success, no asset, not photo/video, unknown id
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000003')$$, 'pending row is not claimable');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000004')$$, 'audio row is not claimable');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000005')$$, 'success row without asset is not claimable');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-0000000000ff')$$, 'unknown id is not claimable');

-- none → processing
select results_eq(
  $$select id, user_id, type, kind, original_path, source_url, model, attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000001')$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000001'::uuid, '22222222-0000-4000-8000-000000000001'::uuid, 'photo'::text,
            'image'::text, null::text, 'http://kie.test/1.png'::text, 'gpt-4o-image'::text, 1)$$,
  'claim returns the row with its kind, source and attempt 1');
select results_eq(
  $$select preview_status, preview_attempts, preview_started_at = now(), preview_next_attempt_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  $$values ('processing'::text, 1, true, null::timestamptz)$$, 'claimed row is processing, attempt 1, lease started now');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000001')$$, 'a processing row within its lease is not claimable');

-- processing → ready (fenced by attempt)
select is(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000001', 2, 'x', 1, 1, 'h'), false, 'complete with a wrong attempt is refused');
select is(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000001', 1,
          '22222222-0000-4000-8000-000000000001/previews/bbbbbbbb-0000-4000-8000-000000000001_preview.webp', 512, 384, 'thumb',
          '22222222-0000-4000-8000-000000000001/originals/bbbbbbbb-0000-4000-8000-000000000001.png'), true, 'complete with the current attempt succeeds');
select results_eq(
  $$select preview_status, preview_path, poster_path, preview_width, preview_height, preview_thumbhash, original_path, preview_started_at, error
      from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  $$values ('ready'::text, '22222222-0000-4000-8000-000000000001/previews/bbbbbbbb-0000-4000-8000-000000000001_preview.webp'::text,
            null::text, 512, 384, 'thumb'::text, '22222222-0000-4000-8000-000000000001/originals/bbbbbbbb-0000-4000-8000-000000000001.png'::text,
            null::timestamptz, null::text)$$,
  'photo: ready with preview_path, size, thumbhash, original_path');
select is(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000001', 1, 'y', 1, 1, 'h'), false, 'completing twice is refused');
select is(public.fail_preview('bbbbbbbb-0000-4000-8000-000000000001', 1, 'TIMEOUT', 'late', true), null, 'failing a ready row is refused (null)');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000001')$$, 'a ready row is not claimable');

-- video → poster_path
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000002')), 1, 'video claimed');
select ok(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000002', 1, 'u/posters/v_poster.webp', 768, 432, 't'), 'video completed');
select results_eq($$select preview_path, poster_path, preview_status from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000002'$$,
  $$values (null::text, 'u/posters/v_poster.webp'::text, 'ready'::text)$$, 'video: poster_path set, preview_path untouched');

-- Retryable failure: backoff, then due again
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006')), 1, 'row 6 claimed (attempt 1)');
select is(public.fail_preview('bbbbbbbb-0000-4000-8000-000000000006', 1, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'retry', 'retryable failure under the cap → retry');
select results_eq(
  $$select preview_status, error, preview_error_code, preview_next_attempt_at - now(), preview_started_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('failed'::text, 'Download failed: 503'::text, 'SOURCE_UNREACHABLE'::text, interval '30 seconds', null::timestamptz)$$,
  'failed with error, code and next attempt = now() + backoff(1)');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006')$$, 'a failed row is not claimable before it is due');
select is_empty($$select * from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$, 'sweep skips a failure not yet due');
update public.generations set preview_next_attempt_at = now() - interval '1 second' where id = 'bbbbbbbb-0000-4000-8000-000000000006';
select results_eq($$select reason from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('retry_due'::text)$$, 'sweep finds a due failure (retry_due)');
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006')), 2, 'a due failure is claimable again (attempt 2)');
select is(public.fail_preview('bbbbbbbb-0000-4000-8000-000000000006', 2, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'retry', 'second retryable failure → retry');
select is((select preview_next_attempt_at - now() from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'),
          interval '1 minute', 'backoff doubles (attempt 2 → 1 min)');

-- The cap: attempts 3, 4, 5; the 5th retryable failure is terminal
create temp table cap_run (attempt int, state text);
do $$
declare
  v_attempt int;
begin
  for i in 3..5 loop
    update public.generations set preview_next_attempt_at = now() - interval '1 second'
     where id = 'bbbbbbbb-0000-4000-8000-000000000006';
    select c.attempt into v_attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006') c;
    insert into cap_run values (v_attempt,
      public.fail_preview('bbbbbbbb-0000-4000-8000-000000000006', v_attempt, 'SOURCE_UNREACHABLE', 'Download failed: 503', true));
  end loop;
end
$$;
select results_eq('select attempt, state from cap_run order by attempt',
  $$values (3, 'retry'::text), (4, 'retry'), (5, 'failed')$$, 'attempts 3 and 4 retry; attempt 5 (the cap) is terminal');
select results_eq($$select preview_status, preview_attempts, preview_next_attempt_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('failed'::text, 5, null::timestamptz)$$, 'at the cap: failed, no next attempt');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006')$$, 'a terminal failure is not claimable');
select is_empty($$select * from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$, 'sweep skips a terminal failure');

-- Terminal (non-retryable) failure on the first attempt
update public.generations set preview_status = 'none', preview_attempts = 0 where id = 'bbbbbbbb-0000-4000-8000-000000000002';
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000002')), 1, 'row 2 claimed again');
select is(public.fail_preview('bbbbbbbb-0000-4000-8000-000000000002', 1, 'SOURCE_NOT_FOUND', 'Download failed: 404', false), 'failed', 'non-retryable failure → failed');
select results_eq($$select preview_status, error, preview_error_code, preview_next_attempt_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000002'$$,
  $$values ('failed'::text, 'Download failed: 404'::text, 'SOURCE_NOT_FOUND'::text, null::timestamptz)$$, 'terminal failure keeps the readable error');

-- reset_preview_for_retry (backfill --retry-failed)
select is(public.reset_preview_for_retry('bbbbbbbb-0000-4000-8000-000000000001'), false, 'reset refuses a ready row');
select is(public.reset_preview_for_retry('bbbbbbbb-0000-4000-8000-000000000006'), true, 'reset takes a terminal failure');
select results_eq($$select preview_status, preview_attempts, error, preview_error_code from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('none'::text, 0, null::text, null::text)$$, 'reset: none, attempts 0, error cleared');

-- Fencing: lease expires, a second worker claims, the first worker is stale
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006')), 1, 'worker A claims (attempt 1)');
update public.generations set preview_started_at = now() - interval '3 minutes' where id = 'bbbbbbbb-0000-4000-8000-000000000006';
select results_eq($$select reason from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000006'$$,
  $$values ('lease_expired'::text)$$, 'sweep finds the expired lease');
select is_empty($$select * from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006', '5 minutes')$$, 'not claimable when the caller''s lease has not expired');
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000006')), 2, 'worker B takes over the expired lease (attempt 2)');
select is(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000006', 1, 'stale', 1, 1, 'h'), false, 'stale worker A cannot complete');
select is(public.fail_preview('bbbbbbbb-0000-4000-8000-000000000006', 1, 'TIMEOUT', 'stale', true), null, 'stale worker A cannot fail');
select is((select preview_status from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000006'), 'processing', 'row still belongs to worker B');
select ok(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000006', 2, 'u/previews/6_preview.webp', 10, 10, 'h'), 'worker B completes');

-- An expired lease at the cap becomes terminal (TIMEOUT) instead of staying processing
update public.generations set preview_status = 'processing', preview_attempts = 5, preview_started_at = now() - interval '1 hour'
 where id = 'bbbbbbbb-0000-4000-8000-000000000002';
select is_empty($$select * from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000002'$$, 'an expired lease at the cap is not re-dispatched');
select is(public.expire_preview_leases(), 1, 'expire_preview_leases terminates it');
select results_eq($$select preview_status, preview_error_code, preview_next_attempt_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000002'$$,
  $$values ('failed'::text, 'TIMEOUT'::text, null::timestamptz)$$, 'expired at the cap → failed TIMEOUT');

-- Lost webhook: success + none, older than the grace period
insert into public.generations (id, user_id, type, status, asset_url, updated_at, created_at) values
  ('bbbbbbbb-0000-4000-8000-000000000007', '22222222-0000-4000-8000-000000000001', 'photo', 'success', 'http://kie.test/7.png', now() - interval '5 minutes', now() - interval '4 days'),
  ('bbbbbbbb-0000-4000-8000-000000000008', '22222222-0000-4000-8000-000000000001', 'video', 'success', 'http://kie.test/8.mp4', now(), now() - interval '3 days');
select results_eq($$select reason from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000007'$$,
  $$values ('lost_webhook'::text)$$, 'sweep finds a success row still none after the grace period');
select is_empty($$select * from public.sweep_previews() where id = 'bbbbbbbb-0000-4000-8000-000000000008'$$, 'a fresh row within the grace period is left to its webhook');
select ok((select count(*) = 1 from public.sweep_previews(1)), 'sweep honours its limit');

-- Backfill candidates: keyset pagination over (created_at, id)
update public.generations set preview_status = 'failed', preview_next_attempt_at = null where id = 'bbbbbbbb-0000-4000-8000-000000000002';
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000007'::uuid), ('bbbbbbbb-0000-4000-8000-000000000008'::uuid)$$,
  'backfill: none rows only, oldest first');
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000, null, true) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000002'::uuid), ('bbbbbbbb-0000-4000-8000-000000000007'::uuid), ('bbbbbbbb-0000-4000-8000-000000000008'::uuid)$$,
  'backfill --retry-failed includes failed rows');
select results_eq(
  $$select id from public.backfill_candidates((select created_at from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000007'),
                                              'bbbbbbbb-0000-4000-8000-000000000007', 10) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000008'::uuid)$$, 'backfill: the cursor skips what was seen');
select results_eq(
  $$select id from public.backfill_candidates(null, null, 100000, 'video', true) where user_id = '22222222-0000-4000-8000-000000000001'$$,
  $$values ('bbbbbbbb-0000-4000-8000-000000000002'::uuid), ('bbbbbbbb-0000-4000-8000-000000000008'::uuid)$$, 'backfill: type filter');
select is_empty($$select * from public.backfill_candidates(null, null, 100000, null, false, now() - interval '1 day') where user_id = '22222222-0000-4000-8000-000000000001'$$,
  'backfill: since filter');

-- Asset change resets the preview
update public.generations set asset_url = 'http://kie.test/1-v2.png' where id = 'bbbbbbbb-0000-4000-8000-000000000001';
select results_eq($$select preview_status, preview_attempts, preview_path, preview_width, preview_thumbhash, original_path is not null
                      from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  $$values ('none'::text, 0, null::text, null::int, null::text, true)$$,
  'asset change on a ready row: none, attempts 0, preview cleared, original_path kept');
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000001')), 1, 'reset row is claimable');
update public.generations set asset_url = 'http://kie.test/1-v3.png' where id = 'bbbbbbbb-0000-4000-8000-000000000001';
select results_eq($$select preview_status, preview_attempts from public.generations where id = 'bbbbbbbb-0000-4000-8000-000000000001'$$,
  $$values ('none'::text, 1)$$, 'asset change while processing keeps the attempt counter');
select is(public.complete_preview('bbbbbbbb-0000-4000-8000-000000000001', 1, 'old', 1, 1, 'h'), false, 'the worker of the old asset is fenced');
select is((select attempt from public.claim_preview('bbbbbbbb-0000-4000-8000-000000000001')), 2, 'the new claim gets attempt 2');

select * from finish();
rollback;
