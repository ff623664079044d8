-- One behavioural suite, run for every job kind (issue 22: every rule once, for every kind):
-- claim with fencing, the current-claim check, dead workers (TIMEOUT, then WORKER_LIMIT), the
-- attempt cap, backoff, dedupe of re-sends, superseding, release, and the row's mirror of its job
-- (preview_status / animated_status none → processing → ready | failed; a deletion has none).
--
-- tests.job_behaviour(kind) returns the assertions; the kind-specific part is only the small setup
-- (tests.jb_new: the row in the right state and its job) and what a row shows (tests.jb_row…).
-- Time passes through tests.travel (tests/sql/helpers/tests_schema.sql says why).
begin;
select plan(3 * 77);

set local app.preview_lease = '15 seconds';
select tests.create_user('behaviour@example.test') as uid \gset

-- ---------------------------------------------------------------------------------------
-- Per kind: a fresh instance (its row, its job, the object it makes or deletes)
-- ---------------------------------------------------------------------------------------
create function tests.jb_new(p_kind text, out gid uuid, out job bigint, out path text)
language plpgsql as $$
declare
  v_user uuid := tests.user_id('behaviour@example.test');
begin
  gid := gen_random_uuid();
  if p_kind = 'preview' then
    -- a success photo that wants a preview (the enqueue trigger queues it; queue_preview finds it)
    insert into public.generations (id, user_id, type, status, asset_url, error)
    values (gid, v_user, 'photo', 'success', 'https://kie.test/' || gid || '.png', 'the app''s own text');
    job := public.queue_preview(gid);
    path := public.preview_object_path(v_user, gid, 'image');
  elsif p_kind = 'animated' then
    -- a ready video whose clip is asked for
    insert into public.generations (id, user_id, type, status, asset_url, preview_status, poster_path, error)
    values (gid, v_user, 'video', 'success', 'https://kie.test/' || gid || '.mp4', 'ready',
            public.preview_object_path(v_user, gid, 'video'), 'the app''s own text');
    job := public.queue_animated_preview(gid);
    path := public.animated_preview_path(v_user, gid);
  else
    -- a deleted row's preview (its delete trigger queued it; queue_object_deletions finds it)
    path := public.preview_object_path(v_user, gid, 'image');
    insert into public.generations (id, user_id, type, status, asset_url, preview_status, preview_path)
    values (gid, v_user, 'photo', 'success', 'https://kie.test/' || gid || '.png', 'ready', path);
    delete from public.generations where id = gid;
    perform public.queue_object_deletions(array[path], gid, 'row_deleted');
    select j.id into job from public.preview_jobs j
     where j.dedupe_key = public.preview_job_dedupe_key('delete_object', gid, jsonb_build_object('path', path))
       and j.state in ('queued', 'running');
  end if;
end
$$;

create function tests.jb_payload(p_kind text, p_path text) returns jsonb language sql as $$
  select case when p_kind = 'delete_object' then jsonb_build_object('path', p_path, 'reason', 'row_deleted') else '{}'::jsonb end
$$;

-- What a worker reports when it is done.
create function tests.jb_result(p_kind text, p_path text) returns jsonb language sql as $$
  select case p_kind
    when 'preview' then jsonb_build_object('path', p_path, 'width', 512, 'height', 384, 'thumbhash', 'th', 'version', 'r2-s512-q80')
    when 'animated' then jsonb_build_object('path', p_path)
    else '{}'::jsonb end
$$;

create function tests.jb_claim(p_kind text, p_gid uuid)
returns table (job_id bigint, kind text, generation_id uuid, attempt int, lease_ms int, input jsonb)
language sql as $$ select * from public.claim_preview_jobs(array[p_kind], 1, p_gid) $$;

-- Live jobs of the instance (one per dedupe key).
create function tests.jb_live(p_kind text, p_gid uuid, p_path text) returns int language sql as $$
  select count(*)::int from public.preview_jobs j
   where j.dedupe_key = public.preview_job_dedupe_key(p_kind, p_gid, tests.jb_payload(p_kind, p_path))
     and j.state in ('queued', 'running')
$$;

-- The row's mirror of its job: status/code. A deletion has no mirror (null).
create function tests.jb_row(p_kind text, p_gid uuid) returns text language sql as $$
  select case p_kind
    when 'preview' then (select g.preview_status || coalesce('/' || g.preview_error_code, '') from public.generations g where g.id = p_gid)
    when 'animated' then (select coalesce(g.animated_status, 'null') || coalesce('/' || g.animated_error_code, '') from public.generations g where g.id = p_gid)
  end
$$;
create function tests.jb_mirror(p_kind text, p_state text) returns text language sql as $$
  select case when p_kind <> 'delete_object' then p_state end
$$;
-- the description of an assertion on the mirror
create function tests.jb_d(p_kind text, p_description text) returns text language sql as $$
  select p_kind || ': ' || case when p_kind = 'delete_object' then 'no row mirror (' || p_description || ')' else p_description end
$$;
-- the readable failure on the row: the poster's is in preview_error; the clip's only on its job
create function tests.jb_error(p_kind text, p_gid uuid) returns text language sql as $$
  select case when p_kind = 'preview' then (select g.preview_error from public.generations g where g.id = p_gid) end
$$;
-- the app's own `error` of the row (the preview work never writes it); a deletion's row is gone
create function tests.jb_app_error(p_kind text, p_gid uuid) returns text language sql as $$
  select g.error from public.generations g where g.id = p_gid
$$;
create function tests.jb_app_error_kept(p_kind text) returns text language sql as $$
  select case when p_kind <> 'delete_object' then 'the app''s own text' end
$$;
-- the object the row shows once the job is done
create function tests.jb_shown(p_kind text, p_gid uuid) returns text language sql as $$
  select case p_kind
    when 'preview' then (select g.preview_path from public.generations g where g.id = p_gid)
    when 'animated' then (select g.animated_path from public.generations g where g.id = p_gid)
  end
$$;
-- asking for the work again after a terminal failure (backfill --retry-failed; a clip asked for
-- again; an orphan listed again)
create function tests.jb_ask_again(p_kind text, p_gid uuid, p_path text) returns bigint language plpgsql as $$
declare
  v_id bigint;
begin
  if p_kind = 'preview' then
    return public.requeue_preview(p_gid, 'failed');
  elsif p_kind = 'animated' then
    return public.queue_animated_preview(p_gid);
  end if;
  perform public.queue_object_deletions(array[p_path], p_gid, 'row_deleted');
  select j.id into v_id from public.preview_jobs j
   where j.dedupe_key = public.preview_job_dedupe_key('delete_object', p_gid, jsonb_build_object('path', p_path))
     and j.state in ('queued', 'running');
  return v_id;
end
$$;

-- Superseding: preview and animated, a worker holds the job and the row gets a new asset;
-- delete_object, a replaced original copy whose path the row names again before the deletion is
-- due. Returns the superseded job (and the attempt a worker held, 0 when none).
create function tests.jb_superseded(p_kind text, out gid uuid, out job bigint, out path text, out attempt int)
language plpgsql as $$
declare
  v_user uuid := tests.user_id('behaviour@example.test');
begin
  if p_kind in ('preview', 'animated') then
    select n.gid, n.job, n.path into gid, job, path from tests.jb_new(p_kind) n;
    select c.attempt into attempt from tests.jb_claim(p_kind, gid) c;
    update public.generations set asset_url = 'https://kie.test/' || gid || '-v2' where id = gid;
  else
    gid := gen_random_uuid();
    path := public.original_copy_stem(v_user, gid) || '.jpg';
    insert into public.generations (id, user_id, type, status, asset_url, preview_status, original_path)
    values (gid, v_user, 'photo', 'success', 'https://kie.test/' || gid || '.jpg', 'ready', path);
    -- a new copy replaces ours: the old one is queued, due after two leases …
    update public.generations set original_path = public.original_copy_stem(v_user, gid) || '.png' where id = gid;
    select j.id into job from public.preview_jobs j where j.payload ->> 'path' = path and j.state = 'queued';
    -- … and a re-render writes the same path again before then
    update public.generations set original_path = path where id = gid;
    perform tests.travel(public.preview_lease() * 2 + interval '1 second');
    attempt := 0;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The suite
-- ---------------------------------------------------------------------------------------
create function tests.job_behaviour(k text) returns setof text language plpgsql as $$
declare
  i record;
  c record;
  j public.preview_jobs%rowtype;
  v_lease interval := public.preview_lease();
  v_steps text[] := '{}';
  v_id bigint;
begin
  -- each part starts from an empty queue: counts are this part's own
  delete from public.preview_jobs;
  delete from public.preview_worker_wakes;

  -- ---- 1. the mirror, claim with fencing, completion
  select * into i from tests.jb_new(k);
  return next ok(i.job is not null, k || ': asking for the work queues a job');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s', j.state, j.attempts, j.run_at <= now()), 'queued/0/t', k || ': queued, no attempt yet, due now');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'none'), tests.jb_d(k, 'the row mirrors a queued job as none'));
  select * into c from tests.jb_claim(k, i.gid);
  return next is(c.job_id, i.job, k || ': a claim takes the job');
  return next is(c.attempt, 1, k || ': as attempt 1 (the fencing token)');
  return next ok(c.kind = k and c.generation_id = i.gid and c.input is not null, k || ': with its kind, row and input');
  return next is(c.lease_ms, 15000, k || ': leased for preview_lease() (lease_ms)');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s/%s', j.state, j.attempts, j.locked_by, j.lease_until = now() + v_lease),
    'running/1/direct/t', k || ': running, attempts 1, lease until now() + preview_lease()');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'processing'), tests.jb_d(k, 'the row mirrors a running job as processing'));
  return next is((select count(*)::int from tests.jb_claim(k, i.gid)), 0, k || ': a second claim gets nothing');
  return next ok(public.preview_job_is_current(i.job, 1), k || ': attempt 1 is current');
  return next ok(not public.preview_job_is_current(i.job, 2), k || ': no other attempt is');
  return next is(public.complete_preview_job(i.job, 2, tests.jb_result(k, i.path)), false, k || ': completing with another attempt is fenced (false)');
  return next is(public.fail_preview_job(i.job, 0, 'SOURCE_UNREACHABLE', 'stale', true), null, k || ': failing with a stale attempt is fenced (null)');
  return next is(public.complete_preview_job(i.job, 1, tests.jb_result(k, i.path)), true, k || ': attempt 1 completes');
  return next ok(not exists (select 1 from public.preview_jobs where id = i.job), k || ': a done job is deleted');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'ready'), tests.jb_d(k, 'the row mirrors done as ready'));
  return next is(tests.jb_shown(k, i.gid), tests.jb_mirror(k, i.path), tests.jb_d(k, 'and shows the result'));
  return next is(public.complete_preview_job(i.job, 1, tests.jb_result(k, i.path)), false, k || ': completing twice is fenced');

  -- ---- 2. dead workers: the lease runs out (TIMEOUT, retried at once), twice (WORKER_LIMIT)
  delete from public.preview_jobs;
  select * into i from tests.jb_new(k);
  select * into c from tests.jb_claim(k, i.gid);
  perform tests.travel(v_lease - interval '1 second');
  return next ok(public.preview_job_is_current(i.job, 1), k || ': inside the lease the claim is current');
  return next is(public.expire_preview_job_leases(), 0, k || ': and nothing expires');
  perform tests.travel(interval '2 seconds');
  return next ok(not public.preview_job_is_current(i.job, 1), k || ': past the lease it is not (the worker must not upload)');
  return next is(public.expire_preview_job_leases(), 1, k || ': the dead worker''s lease expires');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s/%s', j.state, j.attempts, j.expired_leases, j.last_error_code), 'queued/1/1/TIMEOUT',
    k || ': TIMEOUT, queued again, the dead worker counted');
  return next ok(j.run_at <= now() and j.lease_until is null and j.locked_at is null and j.locked_by is null,
    k || ': due at once (the lease was the wait), lease cleared');
  return next matches(j.last_error, '^The worker of attempt 1 did not finish within its lease', k || ': with a readable text');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'none/TIMEOUT'), tests.jb_d(k, 'the row is waiting again, with the code'));
  select * into c from tests.jb_claim(k, i.gid);
  return next is(c.attempt, 2, k || ': claimed again at once, attempt 2');
  return next is(public.complete_preview_job(i.job, 1, tests.jb_result(k, i.path)), false, k || ': the dead worker''s late completion is fenced');
  perform tests.travel(v_lease + interval '1 second');
  return next is(public.expire_preview_job_leases(), 1, k || ': the second dead worker''s lease expires');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s/%s', j.state, j.attempts, j.expired_leases, j.last_error_code), 'failed/2/2/WORKER_LIMIT',
    k || ': WORKER_LIMIT, terminal, after two dead workers');
  return next matches(j.last_error, '^Preview worker stopped 2 times on this item', k || ': the text says the worker was stopped');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'failed/WORKER_LIMIT'), tests.jb_d(k, 'the row mirrors the terminal failure'));
  return next is(tests.jb_error(k, i.gid), case when k = 'preview' then j.last_error end, k || ': a poster''s text is on the row (preview_error), a clip''s only on its job');
  return next is(tests.jb_app_error(k, i.gid), tests.jb_app_error_kept(k), k || ': the app''s error is untouched by a terminal failure');
  return next is((select count(*)::int from tests.jb_claim(k, i.gid)), 0, k || ': a terminal failure is never claimed');

  -- ---- 3. the attempt cap
  delete from public.preview_jobs;
  select * into i from tests.jb_new(k);
  for n in 1 .. public.preview_max_attempts() loop
    select * into c from tests.jb_claim(k, i.gid);
    v_steps := v_steps || format('%s:%s', c.attempt,
      coalesce(public.fail_preview_job(i.job, c.attempt, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'fenced'));
    perform tests.travel(public.preview_backoff(n) + interval '1 second');
  end loop;
  return next is(v_steps, array['1:retry', '2:retry', '3:retry', '4:retry', '5:failed'],
    k || ': retryable failures retry until max_attempts; the 5th is terminal');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s', j.state, j.attempts, j.last_error_code), 'failed/5/SOURCE_UNREACHABLE', k || ': failed at the cap, with its code');
  return next is(j.last_error, 'Download failed: 503 (gave up after 5 attempts)', k || ': the text says it gave up');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'failed/SOURCE_UNREACHABLE'), tests.jb_d(k, 'the row mirrors it'));
  return next is((select count(*)::int from tests.jb_claim(k, i.gid)), 0, k || ': not claimed again');
  v_id := tests.jb_ask_again(k, i.gid, i.path);
  return next ok(v_id is not null and v_id <> i.job and (select attempts from public.preview_jobs where id = v_id) = 0,
    k || ': asked for again, a fresh job with a full attempt budget');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'none'), tests.jb_d(k, 'and the row waits again'));

  -- ---- 4. backoff; a non-retryable failure
  delete from public.preview_jobs;
  select * into i from tests.jb_new(k);
  select * into c from tests.jb_claim(k, i.gid);
  return next is(public.fail_preview_job(i.job, 1, 'SOURCE_UNREACHABLE', 'Download failed: 503', true), 'retry', k || ': retryable under the cap → retry');
  select * into j from public.preview_jobs where id = i.job;
  return next is(j.run_at - now(), public.preview_backoff(1), k || ': due again at now() + preview_backoff(1)');
  return next is(format('%s/%s/%s/%s', j.state, j.attempts, j.last_error_code, j.last_error), 'queued/1/SOURCE_UNREACHABLE/Download failed: 503',
    k || ': queued with the code and text of the failure');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'none/SOURCE_UNREACHABLE'), tests.jb_d(k, 'the row waits, with the code'));
  return next is(tests.jb_error(k, i.gid), case when k = 'preview' then 'Download failed: 503' end,
    k || ': a retryable failure shows its text beside its code (preview_error; a clip''s only on its job)');
  return next is(tests.jb_app_error(k, i.gid), tests.jb_app_error_kept(k), k || ': the app''s error is untouched by a retryable failure');
  return next is((select count(*)::int from tests.jb_claim(k, i.gid)), 0, k || ': not claimable before the backoff');
  perform tests.travel(public.preview_backoff(1) - interval '1 second');
  return next is((select count(*)::int from tests.jb_claim(k, i.gid)), 0, k || ': nor a second before it ends');
  perform tests.travel(interval '1 second');
  select * into c from tests.jb_claim(k, i.gid);
  return next is(c.attempt, 2, k || ': claimable once it passed (attempt 2)');
  perform public.fail_preview_job(i.job, 2, 'SOURCE_UNREACHABLE', 'Download failed: 503', true);
  return next is((select run_at - now() from public.preview_jobs where id = i.job), public.preview_backoff(2), k || ': the backoff doubles');
  perform tests.travel(public.preview_backoff(2));
  select * into c from tests.jb_claim(k, i.gid);
  return next is(public.fail_preview_job(i.job, c.attempt, 'SOURCE_NOT_FOUND', 'Download failed: 404', false), 'failed',
    k || ': a non-retryable failure is terminal at once');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s/%s', j.state, j.attempts, j.last_error_code, j.last_error), 'failed/3/SOURCE_NOT_FOUND/Download failed: 404',
    k || ': with its code and text');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'failed/SOURCE_NOT_FOUND'), tests.jb_d(k, 'the row mirrors it'));

  -- ---- 5. dedupe: a re-send finds the live job
  delete from public.preview_jobs;
  select * into i from tests.jb_new(k);
  return next is(public.enqueue_preview_job(k, i.gid, tests.jb_payload(k, i.path)), i.job, k || ': enqueued again: the same job id');
  perform tests.jb_ask_again(k, i.gid, i.path);
  return next is(tests.jb_live(k, i.gid, i.path), 1, k || ': asked for again: still one live job');
  select * into c from tests.jb_claim(k, i.gid);
  return next is(public.enqueue_preview_job(k, i.gid, tests.jb_payload(k, i.path)), i.job, k || ': while it runs, a re-send finds it too');
  return next is(format('%s/%s', tests.jb_live(k, i.gid, i.path), (select attempts from public.preview_jobs where id = i.job)), '1/1',
    k || ': one live job, its claim untouched');
  perform public.fail_preview_job(i.job, 1, 'SOURCE_NOT_FOUND', 'Download failed: 404', false);
  v_id := public.enqueue_preview_job(k, i.gid, tests.jb_payload(k, i.path));
  return next ok(v_id <> i.job and tests.jb_live(k, i.gid, i.path) = 1, k || ': a terminal failure is not live: a new job can be queued');

  -- ---- 6. superseding
  delete from public.preview_jobs;
  select * into i from tests.jb_superseded(k);
  return next is(tests.jb_live(k, i.gid, i.path), case k when 'animated' then 0 else 1 end,
    k || ': live jobs of the key: the new asset''s poster; no clip until the new poster; the deletion until its claim');
  return next is(
    (select case k when 'preview' then format('%s/%s', g.preview_status, coalesce(g.preview_path, 'no path'))
                   when 'animated' then format('%s/%s', coalesce(g.animated_status, 'null'), coalesce(g.animated_path, 'no path'))
                   else format('keeps %s', g.original_path = i.path) end
       from public.generations g where g.id = i.gid),
    case k when 'preview' then 'none/no path' when 'animated' then 'null/no path' else 'keeps t' end,
    k || ': the row: the poster waits for the new asset; the clip is asked for again after it; the original stays');
  return next ok(not exists (select 1 from public.claim_preview_jobs(array[k], 10, i.gid) x where x.job_id = i.job),
    k || ': the superseded job is never claimed');
  return next ok(not exists (select 1 from public.preview_jobs where id = i.job), k || ': it is gone');
  return next is(public.complete_preview_job(i.job, greatest(i.attempt, 1), tests.jb_result(k, i.path)), false, k || ': its worker''s completion is fenced');
  return next is(public.fail_preview_job(i.job, greatest(i.attempt, 1), 'SOURCE_UNREACHABLE', 'late', true), null, k || ': and so is its failure');
  return next ok(not public.preview_job_is_current(i.job, greatest(i.attempt, 1)), k || ': its claim is not current (no upload, no delete)');
  -- ---- 7. release (the isolate is ending): handed back, due now, fenced; not at the cap
  delete from public.preview_jobs;
  select * into i from tests.jb_new(k);
  update public.preview_jobs set run_at = now() - interval '1 minute' where id = i.job;
  select * into c from tests.jb_claim(k, i.gid);
  return next is(public.release_preview_job(i.job, 2), false, k || ': another attempt cannot hand it back');
  return next is(public.release_preview_job(i.job, 1), true, k || ': the holder hands it back');
  select * into j from public.preview_jobs where id = i.job;
  return next is(format('%s/%s/%s/%s', j.state, j.attempts, j.run_at <= now(), j.lease_until is null and j.locked_by is null),
    'queued/1/t/t', k || ': queued, due now, the attempt counted, no lease');
  return next is(j.run_at, now() - interval '1 minute', k || ': due from when it was first due: first in line (20261203102100)');
  return next is(tests.jb_row(k, i.gid), tests.jb_mirror(k, 'none'), tests.jb_d(k, 'the row waits again'));
  return next is(public.complete_preview_job(i.job, 1, tests.jb_result(k, i.path)), false, k || ': the released attempt''s completion is fenced');
  select * into c from tests.jb_claim(k, i.gid);
  return next is(c.attempt, 2, k || ': the next claim is attempt 2, at once');
  perform public.release_preview_job(i.job, 2);
  update public.preview_jobs set attempts = max_attempts - 1 where id = i.job;
  select * into c from tests.jb_claim(k, i.gid);
  return next is(public.release_preview_job(i.job, c.attempt), false, k || ': at the attempt cap a claim is not handed back (the lease ends it)');
  return next is(format('%s/%s', (select state from public.preview_jobs where id = i.job), coalesce(tests.jb_row(k, i.gid), '-')),
    format('running/%s', coalesce(tests.jb_mirror(k, 'processing'), '-')), k || ': it stays running');
end
$$;

select * from tests.job_behaviour('preview');
select * from tests.job_behaviour('animated');
select * from tests.job_behaviour('delete_object');

select * from finish();
rollback;
