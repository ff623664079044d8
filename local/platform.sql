-- Local platform bootstrap: what a Supabase project provides before our migrations run.
--
-- Applied by local/db-apply.sh to the local Postgres cluster only, as the platform's
-- superuser (supabase_admin, the cluster's bootstrap user); it is NEVER part of migrations/
-- and never pushed to a real project (there, these objects belong to the platform).
-- Re-runnable: every statement is idempotent.
--
-- The role model is Supabase's: `postgres`, which runs the migrations, is not a superuser;
-- the platform's schemas belong to platform roles; postgres gets the grants Supabase gives
-- it. It may create policies on storage.objects (Supabase allows that through supautils'
-- policy grants; here through membership in the table's owner role), but any other DDL on
-- a platform table (ALTER TABLE, CREATE TRIGGER, CREATE INDEX…) is refused, as there. So a
-- migration that would fail on a project fails here.
--
-- Stand-ins, and how far they go:
--   roles      anon / authenticated / service_role / authenticator with Supabase's grants
--              and default privileges on `public`.
--   auth       auth.users (a subset of GoTrue's columns), auth.uid() / auth.role() /
--              auth.jwt() reading the GUCs PostgREST sets.
--   storage    storage.buckets / storage.objects (the columns storage-api uses; RLS on),
--              storage.foldername() / filename() / extension(). No storage-api
--              triggers, no search functions, no migrations table.
--   vault      vault.secrets stores the secret in PLAIN TEXT (no pgsodium/libsodium
--              here); vault.decrypted_secrets shows it as decrypted_secret. Only postgres
--              and service_role may read it.
--   net        pg_net's SQL API (http_get / http_post / http_delete, the request queue and
--              the response table). No background worker in the database: the local
--              gateway's worker drains the queue. Local-only addition: an AFTER INSERT
--              trigger that NOTIFYs `net_http_request_queue` with the request id
--              (delivered at commit only, so rolled-back requests are never sent).

set client_min_messages = warning;

-- ---------------------------------------------------------------------------------------
-- Roles
-- ---------------------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'postgres') then
    create role postgres login password 'postgres';
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_storage_admin') then
    create role supabase_storage_admin nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit password 'postgres';
  end if;
end
$$;
alter role service_role bypassrls;
alter role authenticator login noinherit;
grant anon, authenticated, service_role to authenticator;
-- postgres as on a project: no superuser, but createdb/createrole/bypassrls, able to act as
-- the API roles (the dashboard's role switch), owner of the database and so of `public`.
alter role postgres nosuperuser createdb createrole bypassrls;
grant anon, authenticated, service_role to postgres;
do $$
begin
  execute format('alter database %I owner to postgres', current_database());
end
$$;

-- Supabase: statement timeouts for the API roles (as on a fresh project).
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

-- ---------------------------------------------------------------------------------------
-- Schemas, extensions, search_path
-- ---------------------------------------------------------------------------------------
create schema if not exists extensions;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;
-- pgTAP for tests (Supabase's `supabase test db` also installs it into `extensions`).
create extension if not exists pgtap with schema extensions;
-- dblink lets pgTAP tests open a second session (concurrent claims).
create extension if not exists dblink with schema extensions;

-- Supabase projects put `extensions` on the search path of every session.
do $$
begin
  execute format('alter database %I set search_path to "$user", public, extensions', current_database());
end
$$;

-- public: Supabase's grants and default privileges (tables are protected by RLS, not by
-- missing grants).
grant usage on schema public to postgres, anon, authenticated, service_role;
grant all on all tables in schema public to postgres, anon, authenticated, service_role;
grant all on all sequences in schema public to postgres, anon, authenticated, service_role;
grant all on all routines in schema public to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on routines to postgres, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- auth
-- ---------------------------------------------------------------------------------------
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key default extensions.gen_random_uuid(),
  aud varchar(255) default 'authenticated',
  role varchar(255) default 'authenticated',
  email varchar(255) unique,
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  raw_app_meta_data jsonb default '{"provider": "email", "providers": ["email"]}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  is_anonymous boolean not null default false,
  last_sign_in_at timestamptz,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
comment on table auth.users is 'Local stand-in for GoTrue''s auth.users (subset of columns). encrypted_password = extensions.crypt(pw, extensions.gen_salt(''bf''))';
revoke all on auth.users from anon, authenticated;
grant all on auth.users to postgres, service_role;
alter schema auth owner to supabase_auth_admin;
alter table auth.users owner to supabase_auth_admin;

-- PostgREST sets request.jwt.claims (JSON); older versions set request.jwt.claim.<name>.
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

-- One claim, as PostgREST sets it: request.jwt.claim.<key> (older) or the claims JSON.
create or replace function auth._claim(key text) returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.' || key, true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> key)
  )
$$;

create or replace function auth.uid() returns uuid
language sql stable
as $$ select auth._claim('sub')::uuid $$;

create or replace function auth.role() returns text
language sql stable
as $$ select auth._claim('role') $$;

create or replace function auth.email() returns text
language sql stable
as $$ select auth._claim('email') $$;
grant execute on function auth._claim(text), auth.jwt(), auth.uid(), auth.role(), auth.email() to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- storage
-- ---------------------------------------------------------------------------------------
create schema if not exists storage;
grant usage on schema storage to postgres, anon, authenticated, service_role;

create table if not exists storage.buckets (
  id text primary key,
  name text not null,
  owner uuid,
  owner_id text,
  public boolean default false,
  avif_autodetection boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
create unique index if not exists bname on storage.buckets using btree (name);

create table if not exists storage.objects (
  id uuid primary key default extensions.gen_random_uuid(),
  bucket_id text references storage.buckets (id),
  name text,
  owner uuid,
  owner_id text,
  metadata jsonb,
  user_metadata jsonb,
  version text,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now()
);
create unique index if not exists bucketid_objname on storage.objects using btree (bucket_id, name);
create index if not exists name_prefix_search on storage.objects using btree (name text_pattern_ops);

-- Supabase enables RLS on both; service_role bypasses it, postgres owns the tables.
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;

-- Supabase grants everything on the storage tables to the API roles: RLS policies decide.
grant all on storage.buckets, storage.objects to postgres, anon, authenticated, service_role;

-- The storage tables belong to the storage server's role. postgres is a member so that it
-- can create policies on them (supautils' policy grants on a project); the DDL guard below
-- refuses everything else a member could do.
alter schema storage owner to supabase_storage_admin;
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
grant supabase_storage_admin to postgres;

-- The platform refuses direct SQL deletes of storage rows (they would orphan the files): only
-- the Storage API, which sets storage.allow_delete_query for its transaction, deletes.
create or replace function storage.protect_delete() returns trigger
language plpgsql
as $$
begin
  if coalesce(current_setting('storage.allow_delete_query', true), 'false') <> 'true' then
    raise exception 'Direct deletion from storage tables is not allowed. Use the Storage API instead.'
      using hint = 'This prevents accidental data loss from orphaned objects.', errcode = '42501';
  end if;
  return null;
end
$$;
create or replace trigger protect_buckets_delete before delete on storage.buckets
  for each statement execute function storage.protect_delete();
create or replace trigger protect_objects_delete before delete on storage.objects
  for each statement execute function storage.protect_delete();

-- Supabase's semantics: foldername('a/b/c.png') = '{a,b}', filename = 'c.png',
-- extension = 'png' (text after the last dot of the file name; the whole name if none).
create or replace function storage.foldername(name text) returns text[]
language plpgsql immutable
as $$
declare
  _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[1:array_length(_parts, 1) - 1];
end
$$;

create or replace function storage.filename(name text) returns text
language plpgsql immutable
as $$
declare
  _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[array_length(_parts, 1)];
end
$$;

create or replace function storage.extension(name text) returns text
language plpgsql immutable
as $$
declare
  _parts text[];
  _filename text;
begin
  select string_to_array(name, '/') into _parts;
  select _parts[array_length(_parts, 1)] into _filename;
  return reverse(split_part(reverse(_filename), '.', 1));
end
$$;
grant execute on function storage.foldername(text), storage.filename(text), storage.extension(text)
  to postgres, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- vault (plain text locally)
-- ---------------------------------------------------------------------------------------
create schema if not exists vault;
revoke all on schema vault from public;
grant usage on schema vault to postgres, service_role;

create table if not exists vault.secrets (
  id uuid primary key default extensions.gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea,
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp
);
create unique index if not exists secrets_name_idx on vault.secrets (name) where name is not null;
comment on table vault.secrets is 'LOCAL STAND-IN: secrets are stored in plain text (Supabase Vault encrypts them with pgsodium).';

create or replace view vault.decrypted_secrets as
  select s.id, s.name, s.description, s.secret, s.secret as decrypted_secret,
         s.key_id, s.nonce, s.created_at, s.updated_at
  from vault.secrets s;

create or replace function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
) returns uuid
language plpgsql
set search_path = ''
as $$
declare
  rec_id uuid;
begin
  insert into vault.secrets (secret, name, description, key_id)
  values (new_secret, new_name, coalesce(new_description, ''), new_key_id)
  returning id into rec_id;
  return rec_id;
end
$$;

create or replace function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update vault.secrets s
     set secret = coalesce(new_secret, s.secret),
         name = coalesce(new_name, s.name),
         description = coalesce(new_description, s.description),
         key_id = coalesce(new_key_id, s.key_id),
         updated_at = now()
   where s.id = secret_id;
end
$$;

revoke all on all tables in schema vault from public, anon, authenticated;
revoke all on all routines in schema vault from public, anon, authenticated;
grant select, insert, update, delete on vault.secrets to postgres, service_role;
grant select on vault.decrypted_secrets to postgres, service_role;
grant execute on function vault.create_secret(text, text, text, uuid), vault.update_secret(uuid, text, text, text, uuid)
  to postgres, service_role;

-- ---------------------------------------------------------------------------------------
-- net (pg_net's SQL API; the local gateway's worker is the background worker)
-- ---------------------------------------------------------------------------------------
create schema if not exists net;
-- As real pg_net (0.20.4, measured): the schema, both tables, the sequence and the functions
-- are open to PUBLIC, so anon can read a queued request's headers until the worker sends it
-- and can call net.http_post. Nothing secret beyond the dispatch itself may travel here.
grant usage on schema net to public;

-- UNLOGGED, as real pg_net's: a crash empties the queue (requests not yet sent are lost, and
-- the preview sweep must recover them); a clean restart keeps it.
create unlogged table if not exists net.http_request_queue (
  id bigserial primary key,
  method text not null,
  url text not null,
  headers jsonb not null,
  body bytea,
  timeout_milliseconds int not null
);
alter table net.http_request_queue set unlogged;

create unlogged table if not exists net._http_response (
  id bigint,
  status_code int,
  content_type text,
  headers jsonb,
  content text,
  timed_out bool,
  error_msg text,
  created timestamptz not null default now()
);
create index if not exists _http_response_created_idx on net._http_response (created);

-- Percent-encode a string (RFC 3986 unreserved characters pass through).
create or replace function net._urlencode_string(string text) returns text
language sql immutable strict
set search_path = ''
as $$
  select coalesce(string_agg(
           case
             when b between 48 and 57 or b between 65 and 90 or b between 97 and 122 or b in (45, 46, 95, 126)
               then chr(b)
             else '%' || upper(lpad(to_hex(b), 2, '0'))
           end, '' order by i), '')
  from (select convert_to(string, 'UTF8') as bytes) x,
       lateral generate_series(0, length(x.bytes) - 1) as i,
       lateral (select get_byte(x.bytes, i) as b) y
$$;

create or replace function net._encode_url_with_params(url text, params jsonb) returns text
language sql immutable
set search_path = ''
as $$
  select case
    when params is null or params = '{}'::jsonb then url
    else url || case when position('?' in url) > 0 then '&' else '?' end ||
      (select string_agg(net._urlencode_string(key) || '=' || net._urlencode_string(value), '&')
         from jsonb_each_text(params))
  end
$$;

-- The one insert of a request into the queue; the three public functions below keep
-- pg_net's exact signatures and checks and call it.
create or replace function net._enqueue(
  method text, url text, params jsonb, headers jsonb, body bytea, timeout_milliseconds int
) returns bigint
language sql volatile
set search_path = ''
as $$
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (method, net._encode_url_with_params(url, params), headers, body, timeout_milliseconds)
  returning id
$$;

create or replace function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000
) returns bigint
language sql volatile parallel safe strict
set search_path = ''
as $$ select net._enqueue('GET', url, params, headers, null, timeout_milliseconds) $$;

create or replace function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds int default 5000
) returns bigint
language plpgsql volatile parallel safe
set search_path = ''
as $$
declare
  content_type text;
begin
  select v into content_type
    from jsonb_each_text(coalesce(headers, '{}'::jsonb)) as h(k, v)
   where lower(k) = 'content-type'
   limit 1;
  if content_type is null then
    headers := coalesce(headers, '{}'::jsonb) || '{"Content-Type": "application/json"}'::jsonb;
  elsif content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;
  if body is null then
    raise exception 'body must not be null';
  end if;
  return net._enqueue('POST', url, params, headers, convert_to(body::text, 'UTF8'), timeout_milliseconds);
end
$$;

create or replace function net.http_delete(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds int default 5000
) returns bigint
language sql volatile parallel safe strict
set search_path = ''
as $$ select net._enqueue('DELETE', url, params, headers, null, timeout_milliseconds) $$;

-- Local-only: wake the gateway's worker. NOTIFY is delivered at commit, never for a
-- rolled-back transaction, so a request is sent only once its transaction committed.
create or replace function net._notify_request_queued() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_notify('net_http_request_queue', new.id::text);
  return null;
end
$$;
create or replace trigger notify_request_queued
  after insert on net.http_request_queue
  for each row execute function net._notify_request_queued();

grant all on all tables in schema net to public;
grant all on all sequences in schema net to public;
grant execute on all routines in schema net to public;

-- ---------------------------------------------------------------------------------------
-- cron: what Supabase grants postgres on pg_cron
-- ---------------------------------------------------------------------------------------
create extension if not exists pg_cron;
grant usage on schema cron to postgres;
grant all on all tables in schema cron to postgres;
grant all on all sequences in schema cron to postgres;
grant execute on all functions in schema cron to postgres;

-- ---------------------------------------------------------------------------------------
-- DDL guard: platform tables are the platform's
-- ---------------------------------------------------------------------------------------
-- On a project, `postgres` owns none of the platform's tables: it may create, alter and drop
-- policies on storage's tables (policy grants), nothing else. Here it reaches those tables
-- through role membership, so every other DDL command it runs on them is refused, with the
-- error the platform gives.
create or replace function extensions.platform_ddl_guard() returns event_trigger
language plpgsql
as $$
declare
  r record;
begin
  if current_user = 'supabase_admin' then
    return;
  end if;
  for r in select * from pg_event_trigger_ddl_commands() loop
    -- a trigger's own schema is not reported: its table's is in its identity ("t on storage.objects")
    if (r.schema_name in ('auth', 'storage', 'vault', 'net', 'cron')
        or r.object_identity ~ ' on (auth|storage|vault|net|cron)\.')
       and r.command_tag not in ('CREATE POLICY', 'ALTER POLICY', 'DROP POLICY') then
      raise exception 'must be owner of % %', r.object_type, r.object_identity using errcode = '42501';
    end if;
  end loop;
end
$$;
drop event trigger if exists platform_ddl_guard;
create event trigger platform_ddl_guard on ddl_command_end execute function extensions.platform_ddl_guard();
