-- Bounded dispatch, and what a worker hands back (issue 21: the real edge runtime).
--
-- The platform's edge runtime gives every concurrent request for a function to the same active
-- isolate (its per_worker pool: round robin over the isolates not yet retired, no busy check),
-- and an isolate's CPU accumulates over all its requests: at 1 s it is retired (it takes no new
-- request), at 2 s it is killed with everything in it (546 WORKER_LIMIT). One generate-preview
-- request per eligible row turned a burst of rows into that many concurrent renders in one
-- isolate. Now at most preview_dispatch_limit() generate-preview requests are in flight; a row
-- that finds no free slot waits (still `none`), and each worker, when it ends or declines a job,
-- fills the free slots with the oldest waiting rows (dispatch_next_previews), so a burst drains
-- at the isolates' pace without waiting for the minute sweep. The bound is checked without a
-- lock (the trigger runs in the app's own transactions, which must never wait on one another
-- for it): concurrent writers can overshoot it by one request each.
--
-- Re-runnable: functions only (create or replace).

-- How many generate-preview requests may be in flight: app.preview_dispatch_limit if set
-- (a database setting), else 2 — one rendering, one waiting in the isolate, so the next job
-- starts as soon as the first ends. On a project where postgres may not set database
-- parameters, redefine this function.
create or replace function public.preview_dispatch_limit() returns int
language sql stable parallel safe
as $$
  select greatest(coalesce(nullif(current_setting('app.preview_dispatch_limit', true), '')::int, 2), 1)
$$;
comment on function public.preview_dispatch_limit() is
  'Most generate-preview requests in flight at once (dispatch_preview): app.preview_dispatch_limit if set, else 2.';

-- In flight: a request queued for a row that nobody has claimed yet (within
-- preview_redispatch_after(): after that it is presumed lost, and the sweep sends another), or a
-- claim whose lease holds (the backfill's claims count too: they render in the same isolates).
create or replace function public.preview_dispatches_in_flight() returns int
language sql stable
security definer
set search_path = ''
as $$
  select (select count(*)::int
            from public.preview_dispatches d
            join public.generations g on g.id = d.generation_id
           where d.dispatched_at > now() - public.preview_redispatch_after()
             and coalesce(g.preview_status, 'none') = 'none')
       + (select count(*)::int
            from public.generations g
           where public.generation_succeeded(g.status::text)
             and coalesce(g.preview_status, 'none') <> 'ready'  -- generations_preview_todo_idx
             and g.preview_status = 'processing'
             and g.preview_started_at is not null
             and not public.preview_lease_expired(g))
$$;
comment on function public.preview_dispatches_in_flight() is
  'generate-preview requests queued for rows still unclaimed (within preview_redispatch_after()) plus claims whose lease holds. SECURITY DEFINER: service and the dispatch functions.';

-- dispatch_preview (migration 000300) with the bound: a row that finds every slot taken is
-- not sent now; dispatch_next_previews or the sweep sends it when a slot frees.
create or replace function public.dispatch_preview(p_body jsonb, p_generation_id uuid) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if public.preview_dispatches_in_flight() >= public.preview_dispatch_limit() then
    return false;
  end if;
  if public.invoke_edge_function('generate-preview', p_body, 10000) is null then
    return false;
  end if;
  insert into public.preview_dispatches (generation_id, dispatched_at) values (p_generation_id, now())
  on conflict (generation_id) do update set dispatched_at = excluded.dispatched_at;
  return true;
end
$$;
comment on function public.dispatch_preview(jsonb, uuid) is
  'Unless preview_dispatch_limit() requests are in flight: invoke_edge_function(generate-preview) and a preview_dispatches record. The trigger, the sweep and dispatch_next_previews use it. SECURITY DEFINER.';

-- Fills the free slots with the rows waiting for one, oldest first: eligible, `none`, nothing
-- queued for them, and changed within a day (older rows are the backfill's, as in the sweep).
-- Called by a worker when it ends or declines a job. Returns how many were sent.
create or replace function public.dispatch_next_previews() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  r record;
  v_free int := public.preview_dispatch_limit() - public.preview_dispatches_in_flight();
  v_count int := 0;
begin
  if v_free <= 0 then
    return 0;
  end if;
  for r in
    select g.id, g.user_id, g.type::text as type, g.status::text as status, g.preview_status
      from public.generations g
     where public.generation_succeeded(g.status::text)
       and coalesce(g.preview_status, 'none') <> 'ready'  -- generations_preview_todo_idx
       and public.has_previewable_asset(g)
       and coalesce(g.preview_status, 'none') = 'none'
       and g.updated_at > now() - interval '1 day'
       and not exists (select 1 from public.preview_dispatches d
                        where d.generation_id = g.id
                          and d.dispatched_at > now() - public.preview_redispatch_after())
     order by g.updated_at, g.id
     limit v_free
  loop
    exit when not public.dispatch_preview(
      public.preview_request_body('UPDATE', r.id, r.user_id, r.type, r.status, r.preview_status,
                                  null, 'next'),
      r.id);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
comment on function public.dispatch_next_previews() is
  'Sends generate-preview for the oldest rows waiting for a dispatch slot (none, eligible, nothing queued, changed within a day), up to the free slots. Called by workers. SECURITY DEFINER.';

-- A worker that will not take the rows of its request (its isolate is busy, retiring or past
-- its CPU budget) hands them back before claiming: their dispatch records go, so the slots
-- count as free and the rows as waiting, and dispatch_next_previews sends them again (to
-- another isolate once this one is retired). Nothing is claimed, so nothing counts as an
-- attempt or a dead worker. Returns the number of records removed.
create or replace function public.release_preview_dispatches(p_generation_ids uuid[]) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_count int;
begin
  delete from public.preview_dispatches d where d.generation_id = any(p_generation_ids);
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function public.release_preview_dispatches(uuid[]) is
  'Forgets the dispatch records of rows a worker declined before claiming, so dispatch_next_previews sends them again. SECURITY DEFINER: service only.';

-- A worker whose isolate is about to end (the platform's beforeunload: CPU, memory or wall
-- clock near its limit) hands its claim back instead of leaving it to the lease: the row is
-- `none` again at once (and the dispatch trigger queues it), and the worker's own late result
-- is fenced (the attempt no longer holds a processing claim). The attempt stays counted; at the
-- attempt cap the claim is kept, so an input whose every attempt ends its isolate still ends
-- through the lease (WORKER_LIMIT) instead of being handed back for ever. True when released.
create or replace function public.release_preview_claim(p_generation_id uuid, p_attempt int)
returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  -- the old dispatch record first: the dispatch trigger, fired by the update, then decides
  -- afresh whether a slot is free (a record of a processing row counts for nothing)
  delete from public.preview_dispatches d where d.generation_id = p_generation_id;
  update public.generations g
     set preview_status = 'none',
         preview_started_at = null
   where g.id = p_generation_id
     and g.preview_status = 'processing'
     and g.preview_attempts = p_attempt
     and g.preview_attempts < public.preview_max_attempts();
  return found;
end
$$;
comment on function public.release_preview_claim(uuid, int) is
  'processing (attempt p_attempt, under the attempt cap) → none: a worker whose isolate is ending hands the claim back; its late result is fenced. SECURITY DEFINER: service only.';

revoke all on function public.preview_dispatches_in_flight() from public, anon, authenticated;
revoke all on function public.dispatch_next_previews() from public, anon, authenticated;
revoke all on function public.release_preview_dispatches(uuid[]) from public, anon, authenticated;
revoke all on function public.release_preview_claim(uuid, int) from public, anon, authenticated;
grant execute on function public.preview_dispatches_in_flight(), public.dispatch_next_previews(),
  public.release_preview_dispatches(uuid[]), public.release_preview_claim(uuid, int) to service_role;
