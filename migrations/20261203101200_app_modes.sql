-- Living beside the app (issue "Adoption, part two"): two explicit modes, this system's own error
-- column, a guard over this system's own columns only, and the app's result columns and webhook
-- served in the mode where this system takes KIE's callbacks. Re-runnable.
--
-- previews_only (the default): the app keeps its KIE webhook and its task columns; this system never
--   writes status, results or errors of a task, never fails one, and runs no pending sync. It
--   previews what the app marks successful.
-- kie_owner: KIE calls kie-callback. apply_kie_result then also fills the app's own result columns
--   through a declared mapping (which column gets the URL list, the first URL, the completion time,
--   the thumbnail URL), can relay each accepted callback body to the app's previous webhook (a job
--   of kind `relay`, at most once per task), and, only when asked, fails tasks past KIE's retention.
-- The mode is chosen at deploy (npm run deploy -- --mode …) through configure_preview_adoption and
-- shown by doctor; the pg_cron jobs and the task_id guard follow it (preview_apply_mode).

-- ---------------------------------------------------------------------------------------
-- This system's own error column
-- ---------------------------------------------------------------------------------------
-- The app's `error` means "why the generation failed". Preview errors go here; `error` is never
-- written or cleared by the preview work. Rows this system failed before keep their text in
-- `error`, left there: it cannot be told apart from the app's, and copying it would rewrite the
-- app's rows (their updated_at) for a reason the code column already gives.
alter table public.generations add column if not exists preview_error text;
comment on column public.generations.preview_error is
  'Why the last preview attempt failed, readable (with preview_error_code). The generation''s own error stays in `error`.';

-- updated_at compared rows with `new is distinct from old`, which needs an equality operator for
-- every column type: an app table with a `json` column (json has none) then failed every UPDATE
-- that reached that column. The rows are compared as jsonb instead.
create or replace function public.generations_touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.updated_at is distinct from old.updated_at then
    return new;
  end if;
  if to_jsonb(new) is distinct from to_jsonb(old) then
    new.updated_at := now();
  end if;
  return new;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Settings: the mode and what it needs
-- ---------------------------------------------------------------------------------------
create table if not exists public.preview_settings (
  id boolean primary key default true constraint preview_settings_one_row check (id),
  mode text not null default 'previews_only'
    constraint preview_settings_mode_check check (mode in ('previews_only', 'kie_owner')),
  -- {"urls": col, "first_url": col, "completed_at": col, "thumbnail_url": col}, any subset
  result_columns jsonb not null default '{}',
  -- the app's previous KIE webhook: every accepted callback body is relayed there once
  relay_url text constraint preview_settings_relay_check check (relay_url ~ '^https?://'),
  -- fail tasks still running past kie_task_retention() (opt-in: it writes the app's tasks)
  expire_kie_tasks boolean not null default false,
  updated_at timestamptz not null default now(),
  constraint preview_settings_owner_check
    check (mode = 'kie_owner' or (result_columns = '{}' and relay_url is null and not expire_kie_tasks))
);
comment on table public.preview_settings is
  'One row: previews_only (the app owns KIE callbacks and its task columns) or kie_owner (kie-callback takes them, with the app''s result-column mapping, the relay URL and opt-in expiry). Written by configure_preview_adoption. Service only.';
insert into public.preview_settings (id) values (true) on conflict (id) do nothing;
alter table public.preview_settings enable row level security;
revoke all on table public.preview_settings from public, anon, authenticated;
grant select on table public.preview_settings to service_role;

create or replace function public.preview_mode() returns text
language sql stable
security definer
set search_path = ''
as $$ select coalesce((select s.mode from public.preview_settings s), 'previews_only') $$;
comment on function public.preview_mode() is
  'previews_only or kie_owner (preview_settings). SECURITY DEFINER: read by the guard trigger for any role.';

-- What a mapping may name, per key: the column types it can be written as.
create or replace function public.preview_result_column_types(p_key text) returns text[]
language sql immutable parallel safe
as $$
  select case p_key
    when 'urls' then array['jsonb', 'text[]', 'text']
    when 'first_url' then array['text', 'character varying']
    when 'completed_at' then array['timestamp with time zone', 'timestamp without time zone']
    when 'thumbnail_url' then array['text', 'character varying']
  end
$$;

-- Columns a mapping may not name: the ones this system writes anyway, and its own.
create or replace function public.preview_own_columns() returns text[]
language sql immutable parallel safe
as $$
  select array['preview_path', 'poster_path', 'preview_status', 'preview_error_code', 'preview_error',
               'preview_width', 'preview_height', 'preview_thumbhash', 'preview_version', 'preview_cover_url',
               'animated_path', 'animated_status', 'animated_error_code']
$$;
comment on function public.preview_own_columns() is
  'The generations columns only this system writes (the guard refuses them to API roles). The checklist names preview_status, preview_path and poster_path; an app that has a column of one of these names shares it (doctor says so before the migrations).';

-- Every reason the settings (given, or stored when p_mode is null) cannot work on this table.
create or replace function public.preview_settings_problems(
  p_mode text default null, p_result_columns jsonb default null, p_relay_url text default null,
  p_expire_kie_tasks boolean default null
) returns setof text
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.preview_settings%rowtype;
  v_key text;
  v_column text;
  v_type text;
begin
  select * into s from public.preview_settings;
  if p_mode is not null then
    s.mode := p_mode;
    s.result_columns := coalesce(p_result_columns, '{}');
    s.relay_url := p_relay_url;
    s.expire_kie_tasks := coalesce(p_expire_kie_tasks, false);
  end if;
  if s.mode is null or s.mode not in ('previews_only', 'kie_owner') then
    return next format('mode must be previews_only or kie_owner, not %s', coalesce(s.mode, 'null'));
    return;
  end if;
  if s.mode = 'previews_only' and (s.result_columns <> '{}' or s.relay_url is not null or s.expire_kie_tasks) then
    return next 'a result-column mapping, a relay URL and task expiry belong to kie_owner mode (in previews_only the app''s webhook writes its tasks)';
  end if;
  if jsonb_typeof(s.result_columns) <> 'object' then
    return next 'the result-column mapping must be a JSON object';
    return;
  end if;
  for v_column in select e.value from jsonb_each_text(s.result_columns) e group by e.value having count(*) > 1 loop
    return next format('the mapping names column %s twice: each app column gets one value', v_column);
  end loop;
  for v_key, v_column in select e.key, e.value from jsonb_each_text(s.result_columns) e loop
    if public.preview_result_column_types(v_key) is null then
      return next format('mapping key %s is not one of urls, first_url, completed_at, thumbnail_url', v_key);
      continue;
    end if;
    if v_column = any(public.preview_own_columns()
                      || array['status', 'asset_url', 'result_urls', 'original_path', 'error', 'task_id', 'id', 'user_id', 'type', 'created_at', 'updated_at']) then
      return next format('mapping %s → %s: that column is not the app''s result column (this system or the task owns it)', v_key, v_column);
      continue;
    end if;
    select format_type(a.atttypid, a.atttypmod) into v_type
      from pg_attribute a
     where a.attrelid = 'public.generations'::regclass and a.attname = v_column and a.attnum > 0 and not a.attisdropped;
    if v_type is null then
      return next format('mapping %s → %s: public.generations has no column %s', v_key, v_column, v_column);
    elsif not (regexp_replace(v_type, '\(.*\)', '') = any(public.preview_result_column_types(v_key))) then
      return next format('mapping %s → %s: the column is %s, expected one of %s', v_key, v_column, v_type,
                         array_to_string(public.preview_result_column_types(v_key), ', '));
    end if;
  end loop;
  if s.relay_url is not null and s.relay_url !~ '^https?://' then
    return next format('relay URL must be http(s): %s', s.relay_url);
  end if;
end
$$;
comment on function public.preview_settings_problems(text, jsonb, text, boolean) is
  'Why the given settings (or, without p_mode, the stored ones) cannot work on this table: an unknown mode, owner-only settings in previews_only, a mapping naming a missing column, one of the wrong type or one that is not the app''s. Empty when fine. doctor lists them; configure_preview_adoption refuses on the first. SECURITY DEFINER: service only.';

-- What exists only in kie_owner mode: the pg_cron job of the pending KIE sync (preview-sweep and
-- net-response-trim always run) and the task_id guard (below).
create or replace function public.preview_apply_mode() returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if public.preview_mode() = 'kie_owner' then
    perform cron.schedule('kie-sync-pending', '* * * * *', 'select public.cron_kie_sync_pending()');
    if not exists (select 1 from pg_trigger where tgrelid = 'public.generations'::regclass
                     and tgname = 'generations_a_guard_task_owner') then
      create trigger generations_a_guard_task_owner
        before insert or update of task_id on public.generations
        for each row execute function public.generations_guard_task_owner();
    end if;
  else
    if exists (select 1 from cron.job where jobname = 'kie-sync-pending') then
      perform cron.unschedule('kie-sync-pending');
    end if;
    drop trigger if exists generations_a_guard_task_owner on public.generations;
  end if;
end
$$;
comment on function public.preview_apply_mode() is
  'Makes the database match the mode: the kie-sync-pending cron job and the task_id guard trigger exist only in kie_owner mode. SECURITY DEFINER: called by configure_preview_adoption and this migration.';

-- The one write of the settings (npm run deploy's mode step).
create or replace function public.configure_preview_adoption(
  p_mode text,
  p_result_columns jsonb default '{}',
  p_relay_url text default null,
  p_expire_kie_tasks boolean default false
) returns public.preview_settings
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_problem text;
  s public.preview_settings%rowtype;
begin
  select p into v_problem
    from public.preview_settings_problems(p_mode, coalesce(p_result_columns, '{}'), nullif(p_relay_url, ''),
                                          coalesce(p_expire_kie_tasks, false)) p limit 1;
  if v_problem is not null then
    raise exception 'configure_preview_adoption: %', v_problem using errcode = '22023';
  end if;
  insert into public.preview_settings as t (id, mode, result_columns, relay_url, expire_kie_tasks, updated_at)
  values (true, p_mode, coalesce(p_result_columns, '{}'), nullif(p_relay_url, ''), coalesce(p_expire_kie_tasks, false), now())
  on conflict (id) do update
     set mode = excluded.mode, result_columns = excluded.result_columns, relay_url = excluded.relay_url,
         expire_kie_tasks = excluded.expire_kie_tasks, updated_at = now()
  returning t.* into s;
  perform public.preview_apply_mode();
  return s;
end
$$;
comment on function public.configure_preview_adoption(text, jsonb, text, boolean) is
  'Sets the mode (previews_only | kie_owner), the app''s result-column mapping, the relay URL and task expiry, refusing (22023) what preview_settings_problems names; then makes pg_cron match. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- The guard: API roles never write this system's own columns
-- ---------------------------------------------------------------------------------------
-- Replaces the baseline's guard, which also refused the app's own task columns (status, sources,
-- model, task_id) and, through a preview_% pattern, the app's preview_url: client writes the app's
-- policies allow failed. Now only this system's columns are refused, by exact name. What a client
-- writes into the sources (asset_url, result_urls, original_path) is untrusted input where the
-- pipeline reads it: the SSRF guard and the owner check (an object of the row's owner only) apply,
-- so a user pointing their own row at a URL gets at most their own preview. In kie_owner mode
-- task_id is this system's too (generations_guard_task_owner, below).
create or replace function public.generations_guard_preview_columns() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_new jsonb;
  v_old jsonb;
  v_column text;
  v_guarded text[] := public.preview_own_columns();
begin
  if current_user not in ('anon', 'authenticated') then
    return new;
  end if;
  v_new := to_jsonb(new);
  if tg_op = 'INSERT' then
    -- a client's new row may hold our columns only at their defaults
    select k into v_column
      from jsonb_each(v_new) as e(k, v)
     where k = any(v_guarded)
       and v not in ('null'::jsonb, '"none"'::jsonb)
     limit 1;
  else
    v_old := to_jsonb(old);
    select k into v_column
      from jsonb_each(v_new) as e(k, v)
     where k = any(v_guarded)
       and v is distinct from v_old -> k
     limit 1;
  end if;
  if v_column is not null then
    raise exception 'generations.% is written by the service only', v_column
      using errcode = '42501',
            hint = 'This column belongs to the preview system; clients cannot set it, whatever the table''s policies allow.';
  end if;
  return new;
end
$$;
revoke all on function public.generations_guard_preview_columns() from public, anon, authenticated;

-- kie_owner mode only (preview_apply_mode creates and drops its trigger): task_id decides which row
-- KIE's result lands on, so it is this system's. Clearing it stays allowed: that only detaches the
-- client's own row from its task. A client copying another user's task id onto their
-- own row would otherwise receive that user's result. A trigger that exists per mode, rather than a
-- guard that asks the mode: the guard runs as the client's role, which may read no settings.
create or replace function public.generations_guard_task_owner() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated')
     and new.task_id is not null
     and (tg_op = 'INSERT' or new.task_id is distinct from old.task_id) then
    raise exception 'generations.task_id is written by the service only (kie_owner mode)'
      using errcode = '42501',
            hint = 'In kie_owner mode the task id decides which row a KIE result lands on; the service role sets it.';
  end if;
  return new;
end
$$;
revoke all on function public.generations_guard_task_owner() from public, anon, authenticated;

-- ---------------------------------------------------------------------------------------
-- The row's mirror, result, requeue, reset and adoption: preview errors in preview_error
-- ---------------------------------------------------------------------------------------
-- As in the jobs baseline, with the readable reason in preview_error (set on every failure the
-- row shows: terminal, or retryable with its code) and `error` never touched.
create or replace function public.preview_job_mirror(
  p_kind text, p_generation_id uuid, p_state text, p_code text default null, p_message text default null
) returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if p_kind = 'preview' then
    update public.generations g
       set preview_status = p_state,
           preview_error_code = case when p_state = 'processing' then g.preview_error_code else p_code end,
           preview_error = case when p_state = 'processing' then g.preview_error else p_message end
     where g.id = p_generation_id
       and (g.preview_status, g.preview_error_code, g.preview_error) is distinct from
           (p_state, coalesce(p_code, g.preview_error_code), case when p_state = 'processing' then g.preview_error else p_message end);
  elsif p_kind = 'animated' then
    update public.generations g
       set animated_status = p_state,
           animated_error_code = case when p_state = 'processing' then g.animated_error_code else p_code end
     where g.id = p_generation_id
       and (g.animated_status, g.animated_error_code) is distinct from (p_state, coalesce(p_code, g.animated_error_code));
  end if;
end
$$;

create or replace function public.preview_job_apply_result(p_kind text, p_generation_id uuid, p_result jsonb)
returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if p_kind = 'preview' then
    update public.generations g
       set preview_status = 'ready',
           preview_path = case when public.preview_kind(g.type::text) = 'image' then p_result ->> 'path' else g.preview_path end,
           poster_path = case when public.preview_kind(g.type::text) = 'video' then p_result ->> 'path' else g.poster_path end,
           preview_width = (p_result ->> 'width')::int,
           preview_height = (p_result ->> 'height')::int,
           preview_thumbhash = p_result ->> 'thumbhash',
           original_path = coalesce(p_result ->> 'originalPath', g.original_path),
           preview_version = p_result ->> 'version',
           preview_error_code = null,
           preview_error = null
     where g.id = p_generation_id;
  elsif p_kind = 'animated' then
    update public.generations g
       set animated_status = 'ready', animated_path = p_result ->> 'path', animated_error_code = null
     where g.id = p_generation_id;
  elsif p_kind = 'relay' then
    update public.kie_callback_relays r
       set delivered_at = now(), response_status = (p_result ->> 'status')::int
     where r.task_id = p_result ->> 'taskId';
  end if;
end
$$;

create or replace function public.requeue_preview(
  p_generation_id uuid,
  p_from text,                      -- 'failed' or 'ready'
  p_keep_version text default null  -- with 'ready': a preview of this version is left alone
) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if p_from not in ('failed', 'ready') then
    raise exception 'requeue_preview: p_from must be failed or ready, not %', p_from using errcode = '22023';
  end if;
  delete from public.preview_jobs j
   where j.generation_id = p_generation_id and j.kind = 'preview' and j.state = 'failed';
  update public.generations g
     set preview_status = 'none', preview_error_code = null, preview_error = null
   where g.id = p_generation_id
     and g.preview_status = p_from
     and (p_from = 'failed' or g.preview_version is distinct from p_keep_version);
  if not found then
    return null;
  end if;
  return public.queue_preview(p_generation_id);
end
$$;

create or replace function public.generations_reset_preview_on_asset_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.asset_url is distinct from old.asset_url
     and old.asset_url is not null
     and new.preview_status is not distinct from old.preview_status then
    perform public.cancel_preview_jobs(old.id, array['preview', 'animated']);
    if old.animated_path = public.animated_preview_path(old.user_id, old.id) then
      perform public.queue_object_deletions(array[old.animated_path], old.id, 'replaced', public.preview_lease() * 2);
    end if;
    new.preview_status := 'none';
    new.preview_path := null;
    new.poster_path := null;
    new.preview_width := null;
    new.preview_height := null;
    new.preview_thumbhash := null;
    new.preview_error_code := null;
    new.preview_error := null;
    new.animated_status := null;
    new.animated_path := null;
    new.animated_error_code := null;
  end if;
  return new;
end
$$;

-- An earlier system's failed row kept its reason in `error`: left there (it may be the app's).
create or replace function public.adopt_preview(p_generation_id uuid) returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.generations g
     set preview_status = 'none', preview_error = null
   where g.id = p_generation_id
     and public.has_previewable_asset(g)
     and ((g.preview_status = 'processing' and g.updated_at + public.preview_lease() < now())
          or (g.preview_status = 'failed' and g.preview_error_code is null))
     and not exists (select 1 from public.preview_jobs j where j.generation_id = g.id and j.kind = 'preview' and j.state in ('queued', 'running'));
  return public.queue_preview(p_generation_id);
end
$$;

-- ---------------------------------------------------------------------------------------
-- kie_owner: the app's result columns
-- ---------------------------------------------------------------------------------------
-- Writes the mapped columns of a row whose task just finished, as the app's own webhook would:
-- the URL list, the first URL, the completion time (kept when already set) and the thumbnail
-- (KIE's cover, else the first URL of an image row). Each value is cast to the column's type.
create or replace function public.write_app_result_columns(
  p_generation_id uuid, p_state text, p_result_urls jsonb, p_cover_url text
) returns void
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_map jsonb := (select s.result_columns from public.preview_settings s where s.mode = 'kie_owner');
  v_key text;
  v_column text;
  v_type text;
  v_sets text[] := '{}';
begin
  if v_map is null or v_map = '{}' then
    return;
  end if;
  for v_key, v_column in select e.key, e.value from jsonb_each_text(v_map) e loop
    select regexp_replace(format_type(a.atttypid, a.atttypmod), '\(.*\)', '') into v_type
      from pg_attribute a
     where a.attrelid = 'public.generations'::regclass and a.attname = v_column and a.attnum > 0 and not a.attisdropped;
    continue when v_type is null;  -- doctor reports a mapping whose column is gone
    if v_key = 'completed_at' then
      v_sets := v_sets || format('%I = coalesce(%I, now())', v_column, v_column);
    elsif p_state <> 'success' then
      continue;
    elsif v_key = 'urls' then
      v_sets := v_sets || format('%I = %s', v_column, case v_type
        when 'text[]' then 'array(select jsonb_array_elements_text($2))'
        when 'text' then '$2::text'
        else '$2' end);
    elsif v_key = 'first_url' then
      v_sets := v_sets || format('%I = coalesce(public.first_result_url($2), %I)', v_column, v_column);
    elsif v_key = 'thumbnail_url' then
      v_sets := v_sets || format('%I = coalesce($3, case when public.preview_kind(type::text) = ''image'' then public.first_result_url($2) end, %I)',
                                 v_column, v_column);
    end if;
  end loop;
  if cardinality(v_sets) > 0 then
    execute format('update public.generations set %s where id = $1', array_to_string(v_sets, ', '))
      using p_generation_id, coalesce(p_result_urls, '[]'::jsonb), p_cover_url;
  end if;
end
$$;
comment on function public.write_app_result_columns(uuid, text, jsonb, text) is
  'kie_owner mode: fills the app''s mapped result columns (preview_settings.result_columns) of a task that just finished: urls, first_url, thumbnail_url on success; completed_at (kept when set) on success and failure. SECURITY DEFINER: apply_kie_result, fail_expired_kie_tasks.';

-- apply_kie_result, as in the KIE sync baseline, refusing in previews_only mode and filling the
-- app's result columns when this write finishes the task.
create or replace function public.apply_kie_result(
  p_task_id text,
  p_state text,
  p_result_urls jsonb,
  p_asset_url text,
  p_error text,
  p_cover_url text default null
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
  if public.preview_mode() <> 'kie_owner' then
    raise exception 'apply_kie_result: this project runs in previews_only mode: the app''s own KIE webhook writes its tasks'
      using errcode = '55000',
            hint = 'npm run deploy -- --mode kie-owner hands KIE''s callbacks to this system (see docs/deploy.md).';
  end if;
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
  else
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
  if v_status in ('success', 'failed') then
    perform public.write_app_result_columns(n.id, v_status, v_result, v_cover);
  end if;
  return query select n.id, n.user_id, n.type::text, n.status::text, n.preview_status, true,
    public.preview_wanted(n) and not public.preview_wanted(r);
end
$$;
comment on function public.apply_kie_result(text, text, jsonb, text, text, text) is
  'The one write of KIE sync (kie_owner mode only: 55000 in previews_only): pending → generating (only from pending/queued), success → status/result_urls/asset_url/preview_cover_url (a replaced asset clears original_path), failed → status/error (only from a running state), and the app''s mapped result columns when the task finishes. Terminal states are final; no write when nothing changes; no row for an unknown task. preview_queued: this write made the row preview_wanted. SECURITY DEFINER: service only.';

-- Expiry is opt-in (preview_settings.expire_kie_tasks, kie_owner mode only): it fails the app's
-- tasks. The count it would touch is kie_tasks_past_retention(), which doctor announces.
create or replace function public.kie_tasks_past_retention() returns int
language sql stable
security definer
set search_path = ''
as $$
  select count(*)::int from public.generations g
   where g.task_id is not null and public.kie_task_running(g.status::text)
     and g.created_at < now() - public.kie_task_retention()
$$;
comment on function public.kie_tasks_past_retention() is
  'Tasks still running past kie_task_retention(): what fail_expired_kie_tasks would fail once expiry is on. SECURITY DEFINER: service only (doctor).';

create or replace function public.fail_expired_kie_tasks() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_count int := 0;
begin
  if not exists (select 1 from public.preview_settings s where s.mode = 'kie_owner' and s.expire_kie_tasks) then
    return 0;
  end if;
  for v_id in
    update public.generations g
       set status = 'failed',
           error = format('KIE task expired: no result within %s of its creation (KIE keeps tasks that long)',
                          public.kie_task_retention())
     where g.task_id is not null
       and public.kie_task_running(g.status::text)
       and g.created_at < now() - public.kie_task_retention()
    returning g.id
  loop
    perform public.write_app_result_columns(v_id, 'failed', null, null);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
comment on function public.fail_expired_kie_tasks() is
  'kie_owner mode with expire_kie_tasks only: running tasks older than kie_task_retention() → status failed with the reason in error and the app''s completed_at. Called by the kie-sync-pending cron job. SECURITY DEFINER: pg_cron / service.';

create or replace function public.cron_kie_sync_pending() returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  if public.preview_mode() <> 'kie_owner' then
    return null;  -- the app's webhook owns its tasks (and preview_apply_mode unschedules this job)
  end if;
  perform public.fail_expired_kie_tasks();
  return public.invoke_edge_function('kie-sync', '{"mode": "pending"}'::jsonb, 30000);
end
$$;

-- ---------------------------------------------------------------------------------------
-- kie_owner: relaying callbacks to the app's previous webhook
-- ---------------------------------------------------------------------------------------
-- One record per task: the first accepted callback body (and KIE's signature headers, so the
-- app's own verification still holds within its window) is relayed, once, by a `relay` job of
-- the one job model (claim, lease, backoff, attempt cap, terminal failure with a code). A later
-- callback of the same task (KIE's redelivery, a duplicate) finds the record and is not relayed.
create table if not exists public.kie_callback_relays (
  task_id text primary key,
  generation_id uuid not null,
  body jsonb not null,
  headers jsonb not null default '{}',
  queued_at timestamptz not null default now(),
  delivered_at timestamptz,
  response_status int
);
comment on table public.kie_callback_relays is
  'KIE callbacks relayed to the app''s previous webhook (kie_owner mode with a relay URL): one per task, delivered_at when the app answered 2xx; the relay job keeps attempts and errors. Service only.';
alter table public.kie_callback_relays enable row level security;
revoke all on table public.kie_callback_relays from public, anon, authenticated;
grant select on table public.kie_callback_relays to service_role;

do $$
begin
  if not exists (select 1 from pg_constraint where conname = 'preview_jobs_kind_check'
                   and pg_get_constraintdef(oid) like '%relay%') then
    alter table public.preview_jobs drop constraint if exists preview_jobs_kind_check;
    alter table public.preview_jobs add constraint preview_jobs_kind_check
      check (kind in ('preview', 'animated', 'delete_object', 'relay')) not valid;
    alter table public.preview_jobs validate constraint preview_jobs_kind_check;
  end if;
end
$$;

-- A relay is keyed by its task (one live relay per task), a deletion by its object, every other
-- job by its row.
create or replace function public.preview_job_dedupe_key(p_kind text, p_generation_id uuid, p_payload jsonb)
returns text
language sql immutable parallel safe
as $$ select p_kind || ':' || coalesce(p_payload ->> 'path', p_payload ->> 'task_id', p_generation_id::text) $$;

-- Called by kie-callback after it accepted a callback. 'queued' (first callback of the task),
-- 'relayed_before' (the task has its record), 'off' (no relay URL, or not kie_owner), 'unknown_task'.
create or replace function public.queue_kie_relay(p_task_id text, p_body jsonb, p_headers jsonb default '{}')
returns text
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if not exists (select 1 from public.preview_settings s where s.mode = 'kie_owner' and s.relay_url is not null) then
    return 'off';
  end if;
  select g.id into v_id from public.generations g where g.task_id = p_task_id order by g.created_at desc limit 1;
  if v_id is null then
    return 'unknown_task';
  end if;
  insert into public.kie_callback_relays (task_id, generation_id, body, headers)
  values (p_task_id, v_id, p_body, coalesce(p_headers, '{}'))
  on conflict (task_id) do nothing;
  if not found then
    return 'relayed_before';
  end if;
  perform public.enqueue_preview_job('relay', v_id, jsonb_build_object('task_id', p_task_id));
  perform public.wake_preview_workers();
  return 'queued';
end
$$;
comment on function public.queue_kie_relay(text, jsonb, jsonb) is
  'kie_owner mode with a relay URL: records the task''s first accepted callback and queues its relay job (one per task, ever): queued | relayed_before | off | unknown_task. SECURITY DEFINER: service only.';

-- preview_job_input, as in the jobs baseline, with the relay's input: the URL, the body and the
-- headers (null, and the job is dropped, when relaying was turned off or it was delivered).
create or replace function public.preview_job_input(j public.preview_jobs) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  g public.generations%rowtype;
  r public.kie_callback_relays%rowtype;
  v_url text;
begin
  if j.kind = 'relay' then
    select s.relay_url into v_url from public.preview_settings s where s.mode = 'kie_owner';
    select * into r from public.kie_callback_relays k where k.task_id = j.payload ->> 'task_id';
    if v_url is null or not found or r.delivered_at is not null then
      return null;
    end if;
    return jsonb_build_object('task_id', r.task_id, 'url', v_url, 'body', r.body, 'headers', r.headers);
  end if;
  select * into g from public.generations x where x.id = j.generation_id;
  if j.kind = 'delete_object' then
    if found and public.preview_references(g, j.payload ->> 'path') then
      return null;
    end if;
    return jsonb_build_object('path', j.payload ->> 'path', 'reason', j.payload ->> 'reason');
  end if;
  if not found or not public.has_previewable_asset(g) then
    return null;
  end if;
  if j.kind = 'preview' then
    if coalesce(g.preview_status, 'none') = 'ready' then
      return null;
    end if;
    return jsonb_build_object(
      'user_id', g.user_id, 'type', g.type::text, 'kind', public.preview_kind(g.type::text),
      'original_path', nullif(g.original_path, ''), 'source_url', public.preview_source_url(g),
      'model', public.generation_model(g),
      'target_path', public.preview_object_path(g.user_id, g.id, public.preview_kind(g.type::text)),
      'original_stem', public.original_copy_stem(g.user_id, g.id), 'cover_url', g.preview_cover_url);
  elsif j.kind = 'animated' then
    if public.preview_kind(g.type::text) <> 'video' or g.preview_status <> 'ready' or g.animated_status is null
       or g.animated_status = 'ready' then
      return null;
    end if;
    return jsonb_build_object(
      'user_id', g.user_id, 'original_path', nullif(g.original_path, ''),
      'source_url', public.preview_source_url(g),
      'target_path', public.animated_preview_path(g.user_id, g.id));
  end if;
  return null;
end
$$;

revoke all on function public.preview_mode(), public.preview_settings_problems(text, jsonb, text, boolean),
  public.preview_apply_mode(), public.configure_preview_adoption(text, jsonb, text, boolean),
  public.write_app_result_columns(uuid, text, jsonb, text), public.kie_tasks_past_retention(),
  public.queue_kie_relay(text, jsonb, jsonb)
  from public, anon, authenticated;
grant execute on function public.preview_mode(), public.preview_settings_problems(text, jsonb, text, boolean),
  public.configure_preview_adoption(text, jsonb, text, boolean), public.kie_tasks_past_retention(),
  public.queue_kie_relay(text, jsonb, jsonb)
  to service_role;

-- The cron jobs follow the mode from the first run of this file on.
do $$ begin perform public.preview_apply_mode(); end $$;
