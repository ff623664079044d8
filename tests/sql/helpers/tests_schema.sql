-- The `tests` helper schema of the pgTAP suites (tests/sql/*.sql): users, roles and time, as
-- basejump's supabase-test-helpers write them. Installed by local/pgtap.sh before pg_prove runs,
-- with psql as `postgres` (the role the suites and the migrations run as: the helpers need no more
-- than it has, and whatever they create is owned like the tables they touch). Re-runnable: every
-- object is created or replaced. Not a migration: it exists only in databases the suites run on.
--
-- USERS AND ROLES
--   tests.create_user(email [, id]) → uuid        a row in auth.users (the platform's stand-in)
--   tests.user_id(email) → uuid                   the id of a user made by create_user
--   tests.authenticate_as(user_id)                role authenticated + request.jwt.claims, as
--                                                 PostgREST sets them for a signed-in user's request
--   tests.authenticate_as_anon()                  role anon + {"role": "anon"}
--   tests.authenticate_as_service_role()          role service_role + {"role": "service_role"}
--   tests.clear_authentication()                  back to the session's own role (postgres) without
--                                                 claims (basejump's goes to anon; ours goes back to
--                                                 the role that owns the fixtures, which is what a
--                                                 suite wants between two callers; use
--                                                 authenticate_as_anon() for an anonymous caller)
--   All of them are transaction-local (set_config(..., true)), like `set local role`.
--
-- TIME: why tests.travel and not basejump's tests.freeze_time
--   basejump freezes time by creating tests.now() and putting `tests` first on the search_path, so
--   an unqualified now() in the code under test resolves to the frozen one. That cannot reach our
--   functions: every job function is SECURITY DEFINER with `set search_path = ''` and so calls
--   pg_catalog.now() whatever the caller's search_path (which is the point of that setting). And
--   now() is constant inside a pgTAP transaction anyway (it is the transaction's start time): time
--   never passes on its own while a suite runs. So time passes the other way round: the stored
--   clocks move back. tests.travel(p) shifts every timestamp of the job state back by p:
--     public.preview_jobs          run_at, locked_at, lease_until, created_at, updated_at
--     public.preview_worker_wakes  sent_at, seen_at
--   which to the code under test is exactly p of time having passed (a lease runs out, a backoff
--   elapses, a wake stops holding its place, a terminal failure ages past the trim). The rows of
--   generations keep their clocks (the row's own rules read updated_at: the sweep's window, an
--   earlier system's lease); tests.travel_row(generation_id, p) shifts one row's created_at and
--   updated_at back by p (an explicit updated_at is kept by the touch trigger).
--   Both run as the suite's own role (postgres, the tables' owner); call them after
--   tests.clear_authentication().

create schema if not exists tests;
comment on schema tests is
  'pgTAP helpers (tests/sql/helpers/tests_schema.sql): users, roles, time travel. Test databases only.';

-- ---------------------------------------------------------------------------------------
-- Users
-- ---------------------------------------------------------------------------------------
create or replace function tests.create_user(p_email text, p_id uuid default null) returns uuid
language plpgsql volatile
as $$
declare
  v_id uuid;
begin
  insert into auth.users (id, email, email_confirmed_at, raw_user_meta_data)
  values (coalesce(p_id, extensions.gen_random_uuid()), p_email, now(), jsonb_build_object('test_user', true))
  returning id into v_id;
  return v_id;
end
$$;
comment on function tests.create_user(text, uuid) is
  'A user in auth.users with this email (and id, when given); returns its id.';

create or replace function tests.user_id(p_email text) returns uuid
language plpgsql stable
as $$
declare
  v_id uuid;
begin
  select u.id into v_id from auth.users u where u.email = p_email;
  if v_id is null then
    raise exception 'tests.user_id: no user %', p_email;
  end if;
  return v_id;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Roles: what PostgREST does for a request (SET LOCAL ROLE and request.jwt.claims)
-- ---------------------------------------------------------------------------------------
create or replace function tests.authenticate_as(p_user_id uuid) returns void
language plpgsql volatile
as $$
declare
  v_email text;
begin
  -- back to the session's role first: a signed-in caller (authenticated) cannot read auth.users
  perform set_config('role', 'none', true);
  select u.email into v_email from auth.users u where u.id = p_user_id;
  if not found then
    raise exception 'tests.authenticate_as: no user %', p_user_id;
  end if;
  perform set_config('role', 'authenticated', true);
  perform set_config('request.jwt.claims', jsonb_build_object(
    'sub', p_user_id, 'role', 'authenticated', 'aud', 'authenticated', 'email', v_email,
    'app_metadata', jsonb_build_object('provider', 'email', 'providers', jsonb_build_array('email')),
    'user_metadata', '{}'::jsonb, 'is_anonymous', false)::text, true);
end
$$;
comment on function tests.authenticate_as(uuid) is
  'Acts as a signed-in user until the transaction ends or clear_authentication(): role authenticated, request.jwt.claims as PostgREST sets them.';

create or replace function tests.authenticate_as_anon() returns void
language plpgsql volatile
as $$
begin
  perform set_config('role', 'anon', true);
  perform set_config('request.jwt.claims', '{"role": "anon"}', true);
end
$$;

create or replace function tests.authenticate_as_service_role() returns void
language plpgsql volatile
as $$
begin
  perform set_config('role', 'service_role', true);
  perform set_config('request.jwt.claims', '{"role": "service_role"}', true);
end
$$;

create or replace function tests.clear_authentication() returns void
language plpgsql volatile
as $$
begin
  perform set_config('role', 'none', true);  -- RESET ROLE: the session's own (postgres)
  perform set_config('request.jwt.claims', '', true);
end
$$;

-- ---------------------------------------------------------------------------------------
-- Time (see the header: the stored clocks move back)
-- ---------------------------------------------------------------------------------------
create or replace function tests.travel(p interval) returns void
language plpgsql volatile
as $$
begin
  update public.preview_jobs
     set run_at = run_at - p, locked_at = locked_at - p, lease_until = lease_until - p,
         created_at = created_at - p, updated_at = updated_at - p;
  update public.preview_worker_wakes
     set sent_at = sent_at - p, seen_at = seen_at - p;
end
$$;
comment on function tests.travel(interval) is
  'p passes for the job state: every timestamp of preview_jobs and preview_worker_wakes moves back by p.';

create or replace function tests.travel_row(p_generation_id uuid, p interval) returns void
language plpgsql volatile
as $$
begin
  update public.generations g
     set created_at = g.created_at - p, updated_at = g.updated_at - p
   where g.id = p_generation_id;
  if not found then
    raise exception 'tests.travel_row: no generation %', p_generation_id;
  end if;
end
$$;
comment on function tests.travel_row(uuid, interval) is
  'p passes for one generation: its created_at and updated_at move back by p.';

-- ---------------------------------------------------------------------------------------
-- Grants: the roles the suites switch to come back through these (and read the schema)
-- ---------------------------------------------------------------------------------------
revoke all on all functions in schema tests from public;
grant usage on schema tests to anon, authenticated, service_role;
grant execute on function tests.authenticate_as(uuid), tests.authenticate_as_anon(),
  tests.authenticate_as_service_role(), tests.clear_authentication()
  to anon, authenticated, service_role;
