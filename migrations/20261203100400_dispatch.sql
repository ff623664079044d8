-- Baseline 4/10, dispatch: how work reaches a worker. The database only enqueues jobs and wakes
-- workers; the workers pull.
--
-- The platform's edge runtime gives every concurrent request for a function to the same active
-- isolate, and an isolate's CPU accumulates over all its requests (retired at 1 s, killed with
-- everything in it at 2 s). So a burst of rows never becomes a burst of requests: at most
-- preview_worker_limit() generate-preview workers are awake at once, each draining due jobs one
-- at a time while its isolate has budget, and a worker that stops (no due job, or its isolate
-- spent) wakes a successor when due jobs remain (end_preview_wake). A wake is a pg_net request
-- queued in the waking transaction and sent after commit: no preview work ever runs inside a
-- database transaction, and a rolled-back row wakes nobody. Re-runnable.

-- pg_net on a real project (the local stack provides the `net` schema itself).
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pg_net')
     and not exists (select 1 from pg_extension where extname = 'pg_net') then
    create extension pg_net with schema extensions;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Calling an edge function through pg_net
-- ---------------------------------------------------------------------------------------
-- pg_net's queue is readable by PUBLIC on a real project (anon can read a queued request's
-- headers until the worker sends it), so no key that grants more than the dispatch itself may
-- travel there: never an API key. A request carries the dispatch secret (`x-preview-dispatch`),
-- which generate-preview and kie-sync's pending mode accept and nothing else does (every function
-- runs with verify_jwt = false and checks its callers in code: shared/auth.ts).
--
-- The dispatch secret lives in the vault only: created here when absent (two random UUIDs: 244
-- random bits), read by invoke_edge_function and checked by preview_dispatch_secret_ok().
do $$
begin
  if not exists (select 1 from vault.secrets where name = 'preview_dispatch_secret') then
    perform vault.create_secret(
      replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
      'preview_dispatch_secret',
      'Sent by pg_net to generate-preview and kie-sync (pending mode); allows only those dispatches');
  end if;
end
$$;

-- Hashes are compared, so the comparison's timing says nothing about the secret.
create or replace function public.preview_dispatch_secret_ok(p_presented text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select coalesce((
    select sha256(convert_to(s.decrypted_secret, 'UTF8')) = sha256(convert_to(coalesce(p_presented, ''), 'UTF8'))
      from vault.decrypted_secrets s
     where s.name = 'preview_dispatch_secret' and s.decrypted_secret <> ''
     limit 1), false)
$$;
comment on function public.preview_dispatch_secret_ok(text) is
  'True when the presented value is the vault''s preview_dispatch_secret (compared as SHA-256). SECURITY DEFINER: the functions ask it; service only.';

-- Reads `project_url` and `preview_dispatch_secret` from the vault and queues one POST. Returns
-- the pg_net request id, or null (with a WARNING) when a secret is missing or pg_net fails: a
-- dispatch problem must never fail the caller's transaction (the sweep catches up).
create or replace function public.invoke_edge_function(
  p_function text,
  p_body jsonb,
  p_timeout_milliseconds int default 10000
) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_url text;
  v_secret text;
  v_request_id bigint;
begin
  select rtrim(s.decrypted_secret, '/') into v_url
    from vault.decrypted_secrets s where s.name = 'project_url' limit 1;
  select s.decrypted_secret into v_secret
    from vault.decrypted_secrets s where s.name = 'preview_dispatch_secret' limit 1;
  if v_url is null or v_url = '' or v_secret is null or v_secret = '' then
    raise warning 'invoke_edge_function(%): vault secret project_url or preview_dispatch_secret is missing; request not sent', p_function;
    return null;
  end if;
  begin
    v_request_id := net.http_post(
      url := v_url || '/functions/v1/' || p_function,
      body := p_body,
      headers := jsonb_build_object('Content-Type', 'application/json', 'x-preview-dispatch', v_secret),
      timeout_milliseconds := p_timeout_milliseconds
    );
  exception when others then
    raise warning 'invoke_edge_function(%): net.http_post failed: %', p_function, sqlerrm;
    return null;
  end;
  return v_request_id;
end
$$;
comment on function public.invoke_edge_function(text, jsonb, int) is
  'Queues POST <vault project_url>/functions/v1/<name> with the vault''s dispatch secret (x-preview-dispatch) as its only credential, via net.http_post. Null + WARNING when not configured. SECURITY DEFINER.';

-- ---------------------------------------------------------------------------------------
-- Waking workers
-- ---------------------------------------------------------------------------------------
-- Whether pg_net recorded the wake's request as failed: an error, or a status other than 2xx.
create or replace function public.preview_wake_failed(p_request_id bigint) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (select 1 from net._http_response r
                  where r.id = p_request_id and (r.status_code is null or r.status_code not between 200 and 299))
$$;

-- Awake: a woken worker holding a job within its lease (however long the job takes), one that has
-- not answered yet (within preview_wake_hold()), or one between two jobs (its last claim within
-- preview_wake_grace()). Ended wakes are gone. A worker whose isolate died stops counting when its
-- job's lease runs out, or after the grace when it held none; a wake whose request failed (pg_net
-- recorded an error or a status other than 2xx: the isolate crashed, the function was down) never
-- counts as one not answered yet.
create or replace function public.preview_workers_awake() returns int
language sql stable
security definer
set search_path = ''
as $$
  select count(*)::int from public.preview_worker_wakes w
   where (w.seen_at is null and w.sent_at > now() - public.preview_wake_hold() and not public.preview_wake_failed(w.request_id))
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
   where w.seen_at is null and w.sent_at > now() - public.preview_wake_hold() and not public.preview_wake_failed(w.request_id)
$$;

-- Due work: queued jobs past their run_at, and running jobs whose lease ran out (the next claim
-- expires them). Counted up to the worker limit: more changes nothing.
create or replace function public.preview_jobs_due(p_limit int) returns int
language sql stable
security definer
set search_path = ''
as $$
  select count(*)::int from (
    select 1 from public.preview_jobs j
     where (j.state = 'queued' and j.run_at <= now()) or (j.state = 'running' and j.lease_until < now())
     limit greatest(p_limit, 0)) d
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
      perform public.invoke_edge_function('generate-preview', '{"decide": true}'::jsonb, 10000);
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
    v_request := public.invoke_edge_function('generate-preview', jsonb_build_object('wake', v_wake), 10000);
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

-- A worker stops (no due job it may take, or its isolate is spent or ending): its place is free,
-- and successors are woken while due jobs remain. Unlike the trigger, it waits for the wake lock
-- without a bound (it runs in the worker's own short transaction, never in the app's): a writer
-- that found every place taken by workers that were ending wakes nobody, so the last of those
-- workers must decide after it, not give up. Returns how many were woken.
create or replace function public.end_preview_wake(p_wake bigint) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  delete from public.preview_worker_wakes w where w.id = p_wake;
  return public.decide_preview_wakes();
end
$$;
comment on function public.end_preview_wake(bigint) is
  'A woken worker stops: its wake goes, and decide_preview_wakes() fills the free places. SECURITY DEFINER: service only.';

-- The wake decision, waiting for the lock as long as another transaction holds it: for callers
-- outside the app's transactions (a worker ending; generate-preview {"decide": true}, queued by a
-- transaction that gave up waiting, which reaches here only after that transaction committed).
create or replace function public.decide_preview_wakes() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock(hashtext('public.wake_preview_workers'));
  return public.wake_preview_workers();
end
$$;
comment on function public.decide_preview_wakes() is
  'wake_preview_workers() after waiting for the wake lock without a bound. SECURITY DEFINER: service only (workers ending, {"decide": true}).';

-- ---------------------------------------------------------------------------------------
-- The enqueue trigger (AFTER INSERT OR UPDATE)
-- ---------------------------------------------------------------------------------------
-- A row that wants a preview (success, asset present, photo/video, preview_status none) gets its
-- preview job in the writing transaction, and a worker is woken. Written on every transition into
-- that state and on a new asset (the reset trigger cancelled the old job); a write that keeps the
-- row where it was changes nothing. The job is in the row's own transaction: committed together,
-- never lost between them. `set local app.skip_preview_dispatch = on` mutes it for a transaction
-- (fixtures; rows the backfill or the sweep pick up later).
create or replace function public.generations_queue_preview() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if coalesce(current_setting('app.skip_preview_dispatch', true), '') = 'on'
     or not public.preview_wanted(new) then
    return null;
  end if;
  if tg_op = 'UPDATE' and public.preview_wanted(old) and new.asset_url is not distinct from old.asset_url then
    return null;
  end if;
  if public.queue_preview(new.id) is not null then
    perform public.wake_preview_workers();
  end if;
  return null;
exception when others then
  -- Never fail the row's write because of the queue; the sweep queues rows it finds waiting.
  raise warning 'generations_queue_preview(%): %', new.id, sqlerrm;
  return null;
end
$$;

drop trigger if exists generations_queue_preview on public.generations;
create trigger generations_queue_preview
  after insert or update on public.generations
  for each row execute function public.generations_queue_preview();

-- ---------------------------------------------------------------------------------------
-- The sweep (pg_cron, every minute)
-- ---------------------------------------------------------------------------------------
-- Dead workers' jobs back through the failure path, rows left waiting without a job (written with
-- the trigger muted, or by a trigger that failed) queued, and workers woken for whatever is due.
-- Only rows that changed within the last day: on an existing table the whole history is `none`,
-- and that is the backfill's job (with its own limit), not the minute job's.
create or replace function public.preview_sweep(p_limit int default 100) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  r record;
begin
  perform public.expire_preview_job_leases();
  for r in
    select g.id from public.generations g
     where public.preview_wanted(g)
       and g.updated_at < now() - interval '1 minute'
       and g.updated_at > now() - interval '1 day'
       and not exists (select 1 from public.preview_jobs j
                        where j.generation_id = g.id and j.kind = 'preview' and j.state in ('queued', 'running'))
     order by g.updated_at
     limit greatest(p_limit, 0)
  loop
    perform public.queue_preview(r.id);
  end loop;
  return public.wake_preview_workers();
end
$$;
comment on function public.preview_sweep(int) is
  'pg_cron preview-sweep: expire_preview_job_leases(), a preview job for rows waiting without one (changed within a day), then wake_preview_workers(). Returns the workers woken. SECURITY DEFINER.';

revoke all on function public.preview_dispatch_secret_ok(text), public.invoke_edge_function(text, jsonb, int),
  public.preview_wake_failed(bigint), public.preview_workers_awake(), public.preview_workers_idle(), public.preview_jobs_due(int),
  public.wake_preview_workers(), public.end_preview_wake(bigint), public.decide_preview_wakes(), public.generations_queue_preview(),
  public.preview_sweep(int)
  from public, anon, authenticated;
grant execute on function public.preview_dispatch_secret_ok(text), public.invoke_edge_function(text, jsonb, int),
  public.preview_wake_failed(bigint), public.preview_workers_awake(), public.preview_workers_idle(), public.preview_jobs_due(int), public.wake_preview_workers(),
  public.end_preview_wake(bigint), public.decide_preview_wakes(), public.preview_sweep(int)
  to service_role;
