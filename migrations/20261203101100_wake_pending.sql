-- Wakes lost in flight stop holding a place (issue 22, after the baseline).
--
-- A wake nobody has answered with a claim counted as a worker on its way for preview_wake_hold()
-- (30 s) unless pg_net recorded its request as failed. A request lost in flight (the database
-- restarted while pg_net sent it: no answer, no error, ever) therefore held a place, and as an idle
-- one, for 30 s: the next job's wake decision subtracted it and woke nobody, and the job waited for
-- the minute sweep (seen in the recovery test's restart and in the lost-wake fault case). Now an
-- unanswered wake is on its way only while its request was answered 2xx (within the hold: the
-- worker may wait in its isolate behind another job) or is still within pg_net's timeout for it.
--
-- A new migration, not an edit of the baseline: a project that applied 20261203100400_dispatch.sql
-- never runs it again. Re-runnable: functions only (create or replace), the replaced one dropped.

-- How long pg_net gives a wake's request (generate-preview answers 202 before any work). A wake
-- with neither an answer nor an error by then was lost in flight (the database restarted while
-- pg_net sent it) and stops counting as a worker on its way.
create or replace function public.preview_wake_timeout() returns interval
language sql immutable parallel safe
as $$ select interval '10 seconds' $$;
comment on function public.preview_wake_timeout() is
  'pg_net''s timeout for a wake request; an unanswered wake older than this is presumed lost.';

grant execute on function public.preview_wake_timeout() to service_role, authenticated, anon;

-- Whether a wake nobody has answered with a claim is still on its way to a worker: its request
-- answered 2xx (the worker may wait in its isolate behind another job) within the hold, or not
-- answered at all yet within pg_net's timeout. A request pg_net recorded as failed (an error, a
-- status other than 2xx: the isolate crashed, the function was down), or one never answered by
-- then (lost in flight when the database restarted), is no worker on its way.
create or replace function public.preview_wake_pending(w public.preview_worker_wakes) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select w.seen_at is null
     and w.sent_at > now() - public.preview_wake_hold()
     and coalesce(
           (select r.status_code between 200 and 299 from net._http_response r where r.id = w.request_id),
           w.sent_at > now() - public.preview_wake_timeout())
$$;

-- Awake: a woken worker holding a job within its lease (however long the job takes), one that has
-- not answered yet (within preview_wake_hold()), or one between two jobs (its last claim within
-- preview_wake_grace()). Ended wakes are gone. A worker whose isolate died stops counting when its
-- job's lease runs out, or after the grace when it held none; a wake whose request failed or was
-- lost is not one on its way (preview_wake_pending).
create or replace function public.preview_workers_awake() returns int
language sql stable
security definer
set search_path = ''
as $$
  select count(*)::int from public.preview_worker_wakes w
   where public.preview_wake_pending(w)
      or w.seen_at > now() - public.preview_wake_grace()
      or exists (select 1 from public.preview_jobs j
                  where j.state = 'running' and j.locked_by = 'wake:' || w.id and j.lease_until > now())
$$;
comment on function public.preview_workers_awake() is
  'generate-preview workers the database woke that are still working: holding a leased job, not answered yet (preview_wake_hold()), or between jobs (preview_wake_grace()). SECURITY DEFINER: service.';

-- Of those, the ones that have not answered yet: each will take a due job without a new wake. (A
-- worker between two jobs is not counted: if it is really ending, a due job would wait for the
-- sweep; waking one more worker than needed costs a request.)
create or replace function public.preview_workers_idle() returns int
language sql stable
security definer
set search_path = ''
as $$
  select count(*)::int from public.preview_worker_wakes w
   where public.preview_wake_pending(w)
$$;

-- Wakes as many workers as there are due jobs, up to the free places under preview_worker_limit().
-- One transaction at a time decides, under a transaction-level advisory lock: without it, a burst
-- of concurrent callbacks would each see no worker awake and wake one each, a request per row
-- again. Holding it to the end of the transaction makes the next decider see this one's wakes and
-- jobs. The lock is waited for at most preview_wake_lock_wait() (it runs in the app's own
-- transactions through the trigger, which must not queue behind one another): our workers hold it
-- for milliseconds, so a job committed just after a worker's decision still gets its own; a
-- transaction that gives up queues one request for a decision later ({"decide": true}: sent when
-- it commits, it waits for the lock in a worker's connection, never in the app's; see
-- decide_preview_wakes), so a job it committed is never left to the minute sweep. Returns how many
-- workers were woken.
create or replace function public.wake_preview_workers() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_timeout text;
  v_free int;
  v_wanted int;
  v_wake bigint;
  v_request bigint;
  v_sent int := 0;
begin
  if not pg_try_advisory_xact_lock(hashtext('public.wake_preview_workers')) then
    v_timeout := current_setting('lock_timeout');
    perform set_config('lock_timeout', (extract(epoch from public.preview_wake_lock_wait()) * 1000)::int || 'ms', true);
    begin
      perform pg_advisory_xact_lock(hashtext('public.wake_preview_workers'));
    exception when lock_not_available then
      perform set_config('lock_timeout', v_timeout, true);
      perform public.invoke_edge_function('generate-preview', '{"decide": true}'::jsonb,
        (extract(epoch from public.preview_wake_timeout()) * 1000)::int);
      return 0;
    end;
    perform set_config('lock_timeout', v_timeout, true);
  end if;
  -- counted under the lock: the wakes of a transaction that held it before are committed
  v_free := public.preview_worker_limit() - public.preview_workers_awake();
  if v_free <= 0 then
    return 0;
  end if;
  -- one wake per due job that no idle awake worker will take
  v_wanted := least(v_free, greatest(public.preview_jobs_due(v_free + public.preview_workers_idle()) - public.preview_workers_idle(), 0));
  while v_sent < v_wanted loop
    insert into public.preview_worker_wakes default values returning id into v_wake;
    v_request := public.invoke_edge_function('generate-preview', jsonb_build_object('wake', v_wake),
      (extract(epoch from public.preview_wake_timeout()) * 1000)::int);
    if v_request is null then
      delete from public.preview_worker_wakes w where w.id = v_wake;
      exit;
    end if;
    update public.preview_worker_wakes w set request_id = v_request where w.id = v_wake;
    v_sent := v_sent + 1;
  end loop;
  -- wakes long past counting are forgotten (a worker that ended deleted its own)
  delete from public.preview_worker_wakes w
   where coalesce(w.seen_at, w.sent_at) < now() - public.preview_wake_hold() * 10
     and not exists (select 1 from public.preview_jobs j where j.state = 'running' and j.locked_by = 'wake:' || w.id);
  return v_sent;
end
$$;
comment on function public.wake_preview_workers() is
  'Sends one generate-preview {"wake": id} per due job that no idle awake worker will take, up to preview_worker_limit() awake workers. Returns how many. SECURITY DEFINER: the enqueue trigger, the sweep, claims, workers ending.';

revoke all on function public.preview_wake_pending(public.preview_worker_wakes), public.preview_workers_awake(),
  public.preview_workers_idle(), public.wake_preview_workers()
  from public, anon, authenticated;
grant execute on function public.preview_wake_pending(public.preview_worker_wakes), public.preview_workers_awake(),
  public.preview_workers_idle(), public.wake_preview_workers()
  to service_role;

-- replaced by preview_wake_pending
drop function if exists public.preview_wake_failed(bigint);
