-- The dispatch secret only wakes workers; KIE's rate is held across every caller (issue "Hostile
-- input round three", item 3).
--
-- The dispatch secret can be read by anon while a request waits in pg_net's queue (pg_net grants
-- its tables to PUBLIC; accepted by design), so it must open no more than a wake. The functions
-- now take from it only {"wake": n} and {"decide": true} (shared/preview/handler.ts) and the
-- pending sync (shared/kie-handlers.ts), and answer it with counts alone, because pg_net keeps
-- every answer in net._http_response, which anon can read too. Nothing in the database changes
-- for that.
--
-- What the database adds here is KIE's rate. KIE allows about 10 record-info calls a second per
-- API key. Each pending sync used to pace itself (one start every 110 ms), so three of them at
-- once (pg_cron's, a dispatch replayed by whoever read the secret, a manual run) made 27-29 calls
-- a second, and kie-callback's and kie-sync's record-info calls were not paced at all. Every
-- record-info call now takes a slot from one row in this database first (shared/kie/client.ts), so
-- all callers in all isolates share one pace.
--
-- A new migration, not an edit of the frozen baseline. Re-runnable: create if not exists, create or
-- replace, the row inserted on conflict do nothing.

-- ---------------------------------------------------------------------------------------
-- The rate's one row
-- ---------------------------------------------------------------------------------------
-- One row for the one API key: when the next record-info call may start. Taking a slot locks
-- the row for the length of an update, so concurrent callers queue for microseconds and never
-- get the same slot. UNLOGGED: after a crash the row is empty again, and the next caller starts
-- a new pace at once, which is right, because nobody calls KIE while the database is down.
create unlogged table if not exists public.kie_rate (
  id boolean primary key default true constraint kie_rate_one_row check (id),
  next_at timestamptz not null default '-infinity'
);
comment on table public.kie_rate is
  'When the next KIE record-info call may start (one row, written by kie_rate_acquire). UNLOGGED. Service only.';
alter table public.kie_rate enable row level security;
revoke all on table public.kie_rate from public, anon, authenticated;
insert into public.kie_rate (id) values (true) on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------
-- The limit
-- ---------------------------------------------------------------------------------------
-- Why a function: it is a constant like preview_worker_limit(), read by kie_rate_interval(). KIE
-- documents about 10 record-info requests a second per key. The value is app.kie_rate_limit if
-- the platform sets it, else 10. On a project, redefine the function to change it.
create or replace function public.kie_rate_limit() returns int
language sql stable parallel safe
as $$
  select greatest(coalesce(nullif(current_setting('app.kie_rate_limit', true), '')::int, 10), 1)
$$;
comment on function public.kie_rate_limit() is
  'KIE record-info calls a second for every caller together (kie_rate_acquire): app.kie_rate_limit if set, else 10.';

-- Why a function: it spaces the slots, and kie_rate_acquire and the pgTAP suite read it. One
-- slot every 1.1 s / limit. KIE counts calls as they arrive, and the time between taking a slot
-- and the request reaching KIE varies (a late timer, a slower connection). With 10 % headroom,
-- eleven calls span 1.1 s, so no second of arrivals holds more than the limit unless the first
-- call of such a run is delayed 100 ms more than the eleventh. The client never uses a slot it
-- reaches more than 50 ms late; it takes a new one.
create or replace function public.kie_rate_interval() returns interval
language sql stable parallel safe
as $$
  select interval '1100 milliseconds' / public.kie_rate_limit()
$$;
comment on function public.kie_rate_interval() is
  'Time between two KIE record-info slots: 1.1 s / kie_rate_limit() (10 % headroom for the jitter between a slot and the call reaching KIE).';

-- ---------------------------------------------------------------------------------------
-- Taking a slot
-- ---------------------------------------------------------------------------------------
-- Why a function in the database: the callers share nothing else. They are the pending syncs
-- (pg_cron's every minute, and any replayed or manual one), kie-sync's manual syncs and
-- kie-callback's incomplete callbacks, each in whatever isolate the platform picks. The database
-- is the one place all of them reach, and one row locked for an update orders them.
--
-- Returns how many milliseconds the caller waits before calling KIE. The slot starts at the
-- row's next_at, or now if that has passed, and next_at moves one kie_rate_interval() past the
-- slot. A caller that cannot wait that long (p_max_wait_ms: the rest of the pending sync's
-- budget) gets null and takes nothing, so the slot stays free for a caller that can wait.
-- clock_timestamp(), not now(): the caller may hold a transaction open, and the slot is about
-- the wall clock. The clock is read after the row lock is held, so time spent waiting for the
-- lock is not counted as time already waited.
create or replace function public.kie_rate_acquire(p_max_wait_ms int default null) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_next timestamptz;
  v_now timestamptz;
  v_slot timestamptz;
  v_wait_ms int;
begin
  select r.next_at into v_next from public.kie_rate r where r.id for update;
  if not found then
    insert into public.kie_rate (id) values (true) on conflict (id) do nothing;
    select r.next_at into v_next from public.kie_rate r where r.id for update;
  end if;
  v_now := clock_timestamp();
  v_slot := greatest(v_next, v_now);
  v_wait_ms := ceil(extract(epoch from v_slot - v_now) * 1000)::int;
  if p_max_wait_ms is not null and v_wait_ms > greatest(p_max_wait_ms, 0) then
    return null;
  end if;
  update public.kie_rate r set next_at = v_slot + public.kie_rate_interval() where r.id;
  return v_wait_ms;
end
$$;
comment on function public.kie_rate_acquire(int) is
  'Takes the next KIE record-info slot for every caller together: returns the ms to wait before calling (0 = now), or null (nothing taken) when that is over p_max_wait_ms. Slots are kie_rate_interval() apart. SECURITY DEFINER: service only (shared/kie/client.ts through kie-handlers).';

revoke all on function public.kie_rate_limit(), public.kie_rate_interval(), public.kie_rate_acquire(int)
  from public, anon, authenticated;
grant execute on function public.kie_rate_limit(), public.kie_rate_interval(), public.kie_rate_acquire(int)
  to service_role;
