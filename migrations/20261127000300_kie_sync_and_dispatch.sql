-- KIE sync (the one write of a task's result) and the preview dispatch (trigger + sweep).
--
-- Dispatch goes through pg_net (`net.http_post`): the request is queued in the row's
-- transaction and sent by pg_net's worker after commit, so no preview work ever runs inside
-- a database transaction and a rolled-back row sends nothing. The function URL and the key
-- come from Vault (names `project_url`, `service_role_key`), never from literals here.

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
-- apply_kie_result
-- ---------------------------------------------------------------------------------------
-- Maps KIE's state onto the row. Terminal states are final: a late pending never undoes
-- success/failed/cancelled, a failed after success changes nothing. success → success with
-- a new asset URL updates it (and the asset-change trigger resets the preview). When
-- nothing would change, nothing is written (no updated_at bump, no trigger).
-- SECURITY DEFINER: called by kie-callback / kie-sync with the service connection; must
-- bypass RLS and be the only writer of a task's result.
-- Returns the row as written and whether this write queued a preview: the row became
-- eligible (has_previewable_asset, preview none) and was not before, which is exactly when the
-- dispatch trigger fires; callers log that, they do not guess it.
-- A new asset replaces the old one as the preview's source: an original_path copied from the
-- old asset is cleared in the same write (it comes first in the source order).
drop function if exists public.apply_kie_result(text, text, jsonb, text, text);  -- result columns changed
drop function if exists public.apply_kie_result(text, text, jsonb, text, text, text);
create function public.apply_kie_result(
  p_task_id text,
  p_state text,
  p_result_urls jsonb,
  p_asset_url text,
  p_error text,
  p_cover_url text default null  -- KIE's cover image of a video: the poster's fallback
) returns table (id uuid, user_id uuid, type text, status text, preview_status text,
                 changed boolean, preview_queued boolean)
language plpgsql volatile
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  r public.generations%rowtype;
  n public.generations%rowtype;
  v_status text;
  v_asset text;
  v_original text;
  v_result jsonb;
  v_error text;
  v_cover text;
begin
  if p_state is null or p_state not in ('pending', 'success', 'failed') then
    raise exception 'apply_kie_result: state must be pending, success or failed (got %)', p_state
      using errcode = '22023';
  end if;

  select g.* into r
    from public.generations g
   where g.task_id = p_task_id
   order by g.created_at desc
   limit 1
   for update;
  if not found then
    return;
  end if;

  v_status := r.status;
  v_asset := r.asset_url;
  v_original := r.original_path;
  v_result := r.result_urls;
  v_error := r.error;
  v_cover := r.preview_cover_url;

  if p_state = 'success' then
    if r.status::text not in ('failed', 'cancelled') then
      v_status := 'success';
      v_result := coalesce(p_result_urls, r.result_urls);
      v_asset := coalesce(p_asset_url, p_result_urls ->> 0, r.asset_url);
      v_cover := coalesce(p_cover_url, r.preview_cover_url);
      if r.asset_url is not null and v_asset is distinct from r.asset_url then
        v_original := null;
      end if;
    end if;
  elsif p_state = 'failed' then
    if public.kie_task_running(r.status::text) then
      v_status := 'failed';
      v_error := coalesce(nullif(p_error, ''), 'Generation failed');
    end if;
  else -- pending: KIE is working on it
    if r.status::text in ('pending', 'queued') then
      v_status := 'generating';
    end if;
  end if;

  if (v_status, v_asset, v_original, v_result, v_error, v_cover) is not distinct from
     (r.status::text, r.asset_url, r.original_path, r.result_urls, r.error, r.preview_cover_url) then
    return query select r.id, r.user_id, r.type::text, r.status::text, r.preview_status, false, false;
    return;
  end if;

  update public.generations g
     set status = v_status,
         asset_url = v_asset,
         original_path = v_original,
         result_urls = v_result,
         error = v_error,
         preview_cover_url = v_cover
   where g.id = r.id
  returning g.* into n;
  return query select n.id, n.user_id, n.type::text, n.status::text, n.preview_status, true,
    public.has_previewable_asset(n) and coalesce(n.preview_status, 'none') = 'none'
    and not (public.has_previewable_asset(r) and coalesce(r.preview_status, 'none') = 'none');
end
$$;
comment on function public.apply_kie_result(text, text, jsonb, text, text, text) is
  'The one write of KIE sync: pending → generating (only from pending/queued), success → status/result_urls/asset_url/preview_cover_url (a replaced asset clears original_path), failed → status/error (only from a running state). Terminal states are final; no write when nothing changes; no row for an unknown task. preview_queued: this write made the row eligible, so the dispatch trigger queued a preview. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- pending_kie_tasks (the scheduled kie-sync's work list)
-- ---------------------------------------------------------------------------------------
-- Each run syncs a bounded batch. Ordered oldest first alone, tasks KIE will never finish
-- (lost, or deleted after its retention) would fill every batch and starve the rest, so the
-- batch is taken least recently checked first: every running task is asked within
-- ceil(N / batch) runs. When each was last asked lives in a table of ours, not on the
-- platform's rows (no write to a user's generation for a poll).
create table if not exists public.kie_task_checks (
  task_id text primary key,
  checked_at timestamptz not null default now()
);
comment on table public.kie_task_checks is
  'When the pending sync last asked KIE about a task (record_kie_checks); orders pending_kie_tasks. Service only.';
alter table public.kie_task_checks enable row level security;
revoke all on table public.kie_task_checks from public, anon, authenticated;
grant select, insert, update, delete on table public.kie_task_checks to service_role;

-- KIE keeps a task's record and files for about 14 days: a task still running after that
-- will never deliver a result we can download. Such rows are finished as failed with a clear
-- reason (fail_expired_kie_tasks, from the pending sync's cron job) instead of being polled
-- for ever.
create or replace function public.kie_task_retention() returns interval
language sql immutable parallel safe
set search_path = ''
as $$ select interval '14 days' $$;
comment on function public.kie_task_retention() is
  'How long KIE keeps a task (and its files): a task still running after this is failed, not polled.';

create or replace function public.fail_expired_kie_tasks() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_count int;
begin
  update public.generations g
     set status = 'failed',
         error = format('KIE task expired: no result within %s of its creation (KIE keeps tasks that long)',
                        public.kie_task_retention())
   where g.task_id is not null
     and public.kie_task_running(g.status::text)
     and g.created_at < now() - public.kie_task_retention();
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function public.fail_expired_kie_tasks() is
  'Running tasks older than kie_task_retention() → status failed with the reason in error. Called by the kie-sync-pending cron job. SECURITY DEFINER: pg_cron / service.';

-- Within the batch: tasks never asked first, newest first (a user is waiting for them), then the
-- least recently asked.
create or replace function public.pending_kie_tasks(
  p_limit int default 50,
  p_min_age interval default '30 seconds'
) returns table (id uuid, task_id text, model text, type text, created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  select g.id, g.task_id, public.generation_model(g), g.type::text, g.created_at
    from public.generations g
    left join public.kie_task_checks c on c.task_id = g.task_id
   where g.task_id is not null
     and public.kie_task_running(g.status::text)
     and g.created_at <= now() - p_min_age
     and g.created_at >= now() - public.kie_task_retention()
   order by c.checked_at nulls first, g.created_at desc, g.id
   limit greatest(coalesce(p_limit, 50), 0)
$$;
comment on function public.pending_kie_tasks(int, interval) is
  'Tasks still running at KIE, older than p_min_age and inside KIE''s retention: never checked first (newest first), then least recently checked. model is generation_model(). SECURITY DEFINER: service only.';

-- The pending sync asked KIE about these tasks now (whatever KIE answered).
create or replace function public.record_kie_checks(p_task_ids text[]) returns void
language sql volatile
security definer
set search_path = ''
as $$
  insert into public.kie_task_checks (task_id, checked_at)
  select distinct t, clock_timestamp() from unnest(p_task_ids) t where t is not null
  on conflict (task_id) do update set checked_at = excluded.checked_at
$$;
comment on function public.record_kie_checks(text[]) is
  'Stamps the tasks the pending sync just asked KIE about, so the next batch takes others first. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- Calling an edge function through pg_net
-- ---------------------------------------------------------------------------------------
-- pg_net's queue is readable by PUBLIC on a real project (anon can read a queued request's
-- headers until the worker sends it), so no key that grants more than the dispatch itself
-- may travel there: never the service-role key. A request carries the dispatch secret
-- (`x-preview-dispatch`), which generate-preview and kie-sync's pending mode accept and
-- nothing else does, and the public anon key as its bearer, so that verify_jwt functions
-- (kie-sync) let it through the gateway.
--
-- The dispatch secret lives in the vault only: created here when absent (two random UUIDs:
-- 244 random bits), read by this function and checked by preview_dispatch_secret_ok().
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

-- Whether a request's x-preview-dispatch header is the vault's dispatch secret. Hashes are
-- compared, so the comparison's timing says nothing about the secret.
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

-- Reads `project_url`, `preview_dispatch_secret` and (optional) `anon_key` from the vault
-- and queues one POST. Returns the pg_net request id, or null (with a WARNING) when a
-- secret is missing or pg_net fails: a dispatch problem must never fail the caller's
-- transaction (the sweep catches up). SECURITY DEFINER: reads the vault for triggers and
-- pg_cron, which run as whoever wrote the row.
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
  v_anon text;
  v_headers jsonb;
  v_request_id bigint;
begin
  select rtrim(s.decrypted_secret, '/') into v_url
    from vault.decrypted_secrets s where s.name = 'project_url' limit 1;
  select s.decrypted_secret into v_secret
    from vault.decrypted_secrets s where s.name = 'preview_dispatch_secret' limit 1;
  select s.decrypted_secret into v_anon
    from vault.decrypted_secrets s where s.name = 'anon_key' limit 1;
  if v_url is null or v_url = '' or v_secret is null or v_secret = '' then
    raise warning 'invoke_edge_function(%): vault secret project_url or preview_dispatch_secret is missing; request not sent', p_function;
    return null;
  end if;
  v_headers := jsonb_build_object('Content-Type', 'application/json', 'x-preview-dispatch', v_secret);
  if coalesce(v_anon, '') <> '' then
    v_headers := v_headers || jsonb_build_object('Authorization', 'Bearer ' || v_anon, 'apikey', v_anon);
  end if;

  begin
    v_request_id := net.http_post(
      url := v_url || '/functions/v1/' || p_function,
      body := p_body,
      headers := v_headers,
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
  'Queues POST <vault project_url>/functions/v1/<name> with the vault''s dispatch secret (x-preview-dispatch) and, when set, the anon key as bearer, via net.http_post; never the service-role key (the queue is readable by PUBLIC). Null + WARNING when not configured. SECURITY DEFINER.';

-- The request body for generate-preview: the Supabase database-webhook shape (type, table,
-- schema, record, old_record) with a small record (ids and states, never the whole row:
-- pg_net hangs on large bodies), plus version, generationId and reason.
create or replace function public.preview_request_body(
  p_op text,
  p_id uuid,
  p_user_id uuid,
  p_type text,
  p_status text,
  p_preview_status text,
  p_old_record jsonb,
  p_reason text
) returns jsonb
language sql immutable
set search_path = ''
as $$
  select jsonb_build_object(
    'type', p_op,
    'table', 'generations',
    'schema', 'public',
    'record', jsonb_build_object('id', p_id, 'user_id', p_user_id, 'type', p_type,
                                 'status', p_status, 'preview_status', p_preview_status),
    'old_record', p_old_record,
    'version', 1,
    'generationId', p_id,
    'reason', p_reason
  )
$$;

-- Queues one generate-preview request for a row and remembers it (preview_dispatches), so
-- the sweep does not send another while this one may only be waiting. True when queued.
create or replace function public.dispatch_preview(p_body jsonb, p_generation_id uuid) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if public.invoke_edge_function('generate-preview', p_body, 10000) is null then
    return false;
  end if;
  insert into public.preview_dispatches (generation_id, dispatched_at) values (p_generation_id, now())
  on conflict (generation_id) do update set dispatched_at = excluded.dispatched_at;
  return true;
end
$$;
comment on function public.dispatch_preview(jsonb, uuid) is
  'invoke_edge_function(generate-preview) and a preview_dispatches record. The trigger and the sweep use it. SECURITY DEFINER.';

-- ---------------------------------------------------------------------------------------
-- The dispatch trigger (AFTER INSERT OR UPDATE)
-- ---------------------------------------------------------------------------------------
-- Fires generate-preview once per transition into eligibility: success, asset present,
-- photo/video, preview_status none — and not eligible before. `set local
-- app.skip_preview_dispatch = on` mutes it for a transaction (fixtures, the backfill's
-- retry reset, which claims itself).
create or replace function public.generations_dispatch_preview() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old_eligible boolean := false;
  v_old jsonb := null;
begin
  if coalesce(current_setting('app.skip_preview_dispatch', true), '') = 'on' then
    return null;
  end if;
  if not (public.has_previewable_asset(new) and coalesce(new.preview_status, 'none') = 'none') then
    return null;
  end if;
  if tg_op = 'UPDATE' then
    v_old_eligible := public.has_previewable_asset(old) and coalesce(old.preview_status, 'none') = 'none';
    if v_old_eligible then
      return null;
    end if;
    v_old := jsonb_build_object('id', old.id, 'user_id', old.user_id, 'type', old.type::text,
                                'status', old.status::text, 'preview_status', old.preview_status);
  end if;

  perform public.dispatch_preview(
    public.preview_request_body(tg_op, new.id, new.user_id, new.type::text, new.status::text,
                                new.preview_status, v_old, 'needsPreview'),
    new.id);
  return null;
exception when others then
  -- Never fail the row's write because of the dispatch; the sweep will pick the row up.
  raise warning 'generations_dispatch_preview(%): %', new.id, sqlerrm;
  return null;
end
$$;

drop trigger if exists generations_dispatch_preview on public.generations;
create trigger generations_dispatch_preview
  after insert or update on public.generations
  for each row execute function public.generations_dispatch_preview();

-- ---------------------------------------------------------------------------------------
-- dispatch_preview_sweep (pg_cron, every minute)
-- ---------------------------------------------------------------------------------------
-- Terminates leases expired at the cap, then queues one generate-preview request per row
-- that sweep_previews returns. Returns how many were queued.
create or replace function public.dispatch_preview_sweep(p_limit int default 100) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  r record;
  v_count int := 0;
begin
  perform public.expire_preview_leases();
  for r in
    select s.id, s.reason, g.user_id, g.type::text as type, g.status::text as status, g.preview_status
      from public.sweep_previews(p_limit) s
      join public.generations g on g.id = s.id
  loop
    if public.dispatch_preview(
         public.preview_request_body('UPDATE', r.id, r.user_id, r.type, r.status,
                                     r.preview_status, null, r.reason),
         r.id) then
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;
comment on function public.dispatch_preview_sweep(int) is
  'pg_cron preview sweep: expire_preview_leases(), then one generate-preview request per sweep_previews() row (reason = lost_webhook | lease_expired | retry_due). Returns the number queued. SECURITY DEFINER: runs from pg_cron and reads vault.';

-- ---------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------
revoke all on function public.apply_kie_result(text, text, jsonb, text, text, text) from public, anon, authenticated;
revoke all on function public.pending_kie_tasks(int, interval) from public, anon, authenticated;
revoke all on function public.fail_expired_kie_tasks() from public, anon, authenticated;
revoke all on function public.record_kie_checks(text[]) from public, anon, authenticated;
revoke all on function public.invoke_edge_function(text, jsonb, int) from public, anon, authenticated;
revoke all on function public.preview_dispatch_secret_ok(text) from public, anon, authenticated;
revoke all on function public.preview_request_body(text, uuid, uuid, text, text, text, jsonb, text) from public, anon, authenticated;
revoke all on function public.generations_dispatch_preview() from public, anon, authenticated;
revoke all on function public.dispatch_preview(jsonb, uuid) from public, anon, authenticated;
revoke all on function public.dispatch_preview_sweep(int) from public, anon, authenticated;

grant execute on function public.apply_kie_result(text, text, jsonb, text, text, text) to service_role;
grant execute on function public.pending_kie_tasks(int, interval) to service_role;
grant execute on function public.fail_expired_kie_tasks() to service_role;
grant execute on function public.kie_task_retention() to service_role, authenticated, anon;
grant execute on function public.record_kie_checks(text[]) to service_role;
grant execute on function public.invoke_edge_function(text, jsonb, int) to service_role;
grant execute on function public.preview_dispatch_secret_ok(text) to service_role;
grant execute on function public.preview_request_body(text, uuid, uuid, text, text, text, jsonb, text) to service_role;
grant execute on function public.dispatch_preview_sweep(int) to service_role;
grant execute on function public.dispatch_preview(jsonb, uuid) to service_role;
