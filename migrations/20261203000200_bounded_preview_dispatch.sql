-- Bounded dispatch, and what a worker hands back (issue 21: the real edge runtime).
--
-- The platform's edge runtime gives every concurrent request for a function to the same active
-- isolate (its per_worker pool: round robin over the isolates not yet retired, no busy check),
-- and an isolate's CPU accumulates over all its requests: at 1 s it is retired (it takes no new
-- request), at 2 s it is killed with everything in it (546 WORKER_LIMIT). One generate-preview
-- request per eligible row turned a burst of rows into that many concurrent renders in one
-- isolate. Now at most preview_dispatch_limit() generate-preview requests wait unclaimed; a row
-- that finds no free slot waits (still `none`), and each worker, when it ends or declines a job,
-- fills the free slots with the oldest waiting rows (dispatch_next_previews), so a burst drains
-- at the isolates' pace without waiting for the minute sweep. The bound is checked without a
-- lock (the trigger runs in the app's own transactions, which must never wait on one another
-- for it): concurrent writers can overshoot it by one request each.
--
-- Re-runnable: functions only (create or replace).

-- How many generate-preview requests may wait for a worker at once: app.preview_dispatch_limit
-- if set (a database setting), else 2, so the next job starts as soon as a worker is free. On a project where postgres may not set database
-- parameters, redefine this function.
create or replace function public.preview_dispatch_limit() returns int
language sql stable parallel safe
as $$
  select greatest(coalesce(nullif(current_setting('app.preview_dispatch_limit', true), '')::int, 2), 1)
$$;
comment on function public.preview_dispatch_limit() is
  'Most generate-preview requests waiting unclaimed at once (dispatch_preview): app.preview_dispatch_limit if set, else 2.';

-- How long a queued request holds its slot while nobody claims its row. A request normally
-- reaches a worker within seconds (at most one job ahead of it in the isolate); one that has
-- not after this is presumed lost (a crash, a timeout) and stops holding a slot, so a lost
-- request delays the others by at most this much. (The sweep still gives it
-- preview_redispatch_after() before sending the row again.)
create or replace function public.preview_dispatch_slot_hold() returns interval
language sql immutable parallel safe
as $$ select interval '30 seconds' $$;
comment on function public.preview_dispatch_slot_hold() is
  'How long a generate-preview request counts as in flight while its row is unclaimed (dispatch bound).';

-- In flight: requests queued for rows nobody has claimed yet, within preview_dispatch_slot_hold().
-- A claimed row no longer holds a slot: its worker renders it now, and the isolate takes the next
-- request only after it (one job at a time), so the requests waiting in isolates are what the
-- bound counts; a worker that dies holding a claim holds no slot while its lease runs out.
create or replace function public.preview_dispatches_in_flight() returns int
language sql stable
security definer
set search_path = ''
as $$
  select count(*)::int
    from public.preview_dispatches d
    join public.generations g on g.id = d.generation_id
   where d.dispatched_at > now() - public.preview_dispatch_slot_hold()
     and coalesce(g.preview_status, 'none') = 'none'
$$;
comment on function public.preview_dispatches_in_flight() is
  'generate-preview requests queued within preview_dispatch_slot_hold() for rows still unclaimed. SECURITY DEFINER: service and the dispatch functions.';

-- Rows that wait for a dispatch slot: the trigger (or a sweep) found every slot taken, or a
-- worker declined the row before claiming it. dispatch_next_previews sends them, oldest first.
-- Only such rows: a row nobody tried to dispatch (an old row, a row written with the trigger
-- muted) stays the backfill's or the sweep's. UNLOGGED like pg_net's queue: after a crash the
-- sweep finds these rows as it finds lost requests.
create unlogged table if not exists public.preview_dispatch_waiting (
  generation_id uuid primary key,
  since timestamptz not null default now()
);
comment on table public.preview_dispatch_waiting is
  'Rows waiting for a generate-preview dispatch slot (dispatch_preview found none free, or a worker declined them). UNLOGGED. Service only.';
alter table public.preview_dispatch_waiting enable row level security;
revoke all on table public.preview_dispatch_waiting from public, anon, authenticated;
grant select, insert, update, delete on table public.preview_dispatch_waiting to service_role;

-- dispatch_preview (migration 000300) with the bound: a row that finds every slot taken is
-- not sent now; dispatch_next_previews or the sweep sends it when a slot frees.
create or replace function public.dispatch_preview(p_body jsonb, p_generation_id uuid) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if public.preview_dispatches_in_flight() >= public.preview_dispatch_limit() then
    insert into public.preview_dispatch_waiting (generation_id) values (p_generation_id)
    on conflict (generation_id) do nothing;
    return false;
  end if;
  if public.invoke_edge_function('generate-preview', p_body, 10000) is null then
    return false;
  end if;
  insert into public.preview_dispatches (generation_id, dispatched_at) values (p_generation_id, now())
  on conflict (generation_id) do update set dispatched_at = excluded.dispatched_at;
  delete from public.preview_dispatch_waiting w where w.generation_id = p_generation_id;
  return true;
end
$$;
comment on function public.dispatch_preview(jsonb, uuid) is
  'Unless preview_dispatch_limit() requests wait unclaimed: invoke_edge_function(generate-preview) and a preview_dispatches record; else the row waits in preview_dispatch_waiting. The trigger, the sweep and dispatch_next_previews use it. SECURITY DEFINER.';

-- Fills the free slots with the rows waiting for one (preview_dispatch_waiting), oldest first,
-- forgetting waiting rows that no longer need a dispatch. Called by a worker when it ends or
-- declines a job. Returns how many were sent.
create or replace function public.dispatch_next_previews() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  r record;
  v_count int := 0;
begin
  delete from public.preview_dispatch_waiting w
   where not exists (select 1 from public.generations g
                      where g.id = w.generation_id
                        and public.has_previewable_asset(g)
                        and coalesce(g.preview_status, 'none') = 'none');
  for r in
    select g.id, g.user_id, g.type::text as type, g.status::text as status, g.preview_status
      from public.preview_dispatch_waiting w
      join public.generations g on g.id = w.generation_id
     order by w.since, w.generation_id
     limit greatest(public.preview_dispatch_limit() - public.preview_dispatches_in_flight(), 0)
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
  'Sends generate-preview for the oldest rows in preview_dispatch_waiting, up to the free slots. Called by workers. SECURITY DEFINER.';

-- A worker that will not take the rows of its request (its isolate is busy, retiring or past
-- its CPU budget) hands them back before claiming: their dispatch records go (the slots are
-- free) and the rows wait for a slot, so dispatch_next_previews sends them again (to another
-- isolate once this one is retired). Nothing is claimed, so nothing counts as an
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
  insert into public.preview_dispatch_waiting (generation_id) select unnest(p_generation_ids)
  on conflict (generation_id) do nothing;
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
