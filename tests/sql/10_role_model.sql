-- The database's role model is Supabase's: the migrations run as a `postgres` that is not a
-- superuser and owns none of the platform's schemas, so a migration that would fail on a
-- project (ALTER TABLE storage.objects, a trigger on a platform table) fails here too.
begin;
select plan(23);

select is(current_user::text, 'postgres', 'the tests (like the migrations) run as postgres');
select ok(not (select rolsuper from pg_roles where rolname = 'postgres'), 'postgres is not a superuser');
select ok((select rolbypassrls and rolcreaterole and rolcreatedb from pg_roles where rolname = 'postgres'), 'postgres has bypassrls, createrole, createdb (as on a project)');
select ok(pg_get_userbyid(n.nspowner) <> 'postgres', format('postgres does not own schema %s', n.nspname))
  from pg_namespace n where n.nspname in ('auth', 'storage', 'net', 'vault', 'cron');
select ok(pg_get_userbyid(c.relowner) <> 'postgres', format('postgres does not own %s.%s', n.nspname, c.relname))
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where (n.nspname, c.relname) in (('auth', 'users'), ('storage', 'objects'), ('storage', 'buckets'), ('net', 'http_request_queue'), ('vault', 'secrets'));
select is((select pg_get_userbyid(datdba) from pg_database where datname = current_database()), 'postgres', 'postgres owns the database (and so public)');
select is(pg_get_userbyid(c.relowner)::text, 'postgres', format('postgres owns %s (made by the migrations)', c.oid::regclass))
  from pg_class c where c.oid in ('public.preview_jobs'::regclass, 'public.preview_worker_wakes'::regclass);

-- What a migration may do on storage: policies, through the platform's grant.
select lives_ok($$create policy "role model: test" on storage.objects for select to authenticated using (false)$$,
  'postgres creates a policy on storage.objects');
select lives_ok($$drop policy "role model: test" on storage.objects$$, '… and drops it');
-- What it may not: any other DDL on a platform table.
select throws_ok($$alter table storage.objects add column role_model_test int$$, '42501', null, 'ALTER TABLE storage.objects is refused');
select throws_ok($$create index role_model_test on storage.objects (name)$$, '42501', null, 'CREATE INDEX on storage.objects is refused');
create function pg_temp.noop() returns trigger language plpgsql as $$ begin return new; end $$;
select throws_ok($$create trigger role_model_test before insert on storage.objects for each row execute function pg_temp.noop()$$,
  '42501', null, 'CREATE TRIGGER on storage.objects is refused');
select throws_ok($$alter table auth.users add column role_model_test int$$, '42501', null, 'ALTER TABLE auth.users is refused');
select throws_ok($$alter database postgres set app.role_model_test = 'x'$$, '42501', null,
  'custom database parameters are the platform''s (a project refuses them to postgres as well)');

select * from finish();
rollback;
