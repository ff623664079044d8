-- Baseline 6/10, KIE sync: the one write of a task's result, the pending sync's work list, the
-- callback receipts. The row's preview follows from the write: a row that becomes previewable gets
-- its preview job from the enqueue trigger. Re-runnable.

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
-- preview_wanted and was not before, which is exactly when the enqueue trigger queues its job;
-- callers log that, they do not guess it.
-- A new asset replaces the old one as the preview's source: an original_path copied from the
-- old asset is cleared in the same write (it comes first in the source order).
create or replace function public.apply_kie_result(
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
    public.preview_wanted(n) and not public.preview_wanted(r);
end
$$;
comment on function public.apply_kie_result(text, text, jsonb, text, text, text) is
  'The one write of KIE sync: pending → generating (only from pending/queued), success → status/result_urls/asset_url/preview_cover_url (a replaced asset clears original_path), failed → status/error (only from a running state). Terminal states are final; no write when nothing changes; no row for an unknown task. preview_queued: this write made the row preview_wanted, so the enqueue trigger queued its preview job. SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- pending_kie_tasks (the scheduled kie-sync's work list)
-- ---------------------------------------------------------------------------------------
-- Each run syncs a bounded batch. Ordered oldest first alone, tasks KIE will never finish
-- (lost, or deleted after its retention) would fill every batch and starve the rest, so the
-- batch is taken least recently checked first: every running task is asked within
-- ceil(N / batch) runs. When each was last asked lives in a table of ours, not on the
-- platform's rows (kie_task_checks, in the schema file: no write to a user's generation for a
-- poll).

-- A task still running past kie_task_retention() will never deliver a result we can download:
-- such rows are finished as failed with a clear reason (from the pending sync's cron job) instead
-- of being polled for ever.
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
-- Callback receipts: one use per signature
-- ---------------------------------------------------------------------------------------
create or replace function public.record_kie_callback(p_task_id text, p_signed_at bigint, p_body_sha256 text)
returns text
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_known text;
begin
  insert into public.kie_callback_receipts (task_id, signed_at, body_sha256)
  values (p_task_id, p_signed_at, p_body_sha256)
  on conflict (task_id, signed_at) do nothing;
  if found then
    return 'first';
  end if;
  select r.body_sha256 into v_known
    from public.kie_callback_receipts r
   where r.task_id = p_task_id and r.signed_at = p_signed_at;
  return case when v_known = p_body_sha256 then 'repeat' else 'replay' end;
end
$$;
comment on function public.record_kie_callback(text, bigint, text) is
  'Remembers a signed KIE callback: ''first'' (new signature), ''repeat'' (same signature, same body: a redelivery), ''replay'' (same signature, another body: refuse). SECURITY DEFINER: service only.';

-- ---------------------------------------------------------------------------------------
-- The scheduled pending sync (pg_cron job kie-sync-pending, in the cron file)
-- ---------------------------------------------------------------------------------------
-- Lost KIE callbacks: finish tasks past KIE's retention, then ask kie-sync to poll KIE's
-- record-info for tasks still pending. SECURITY DEFINER: runs from pg_cron and reads the
-- vault (via invoke_edge_function).
create or replace function public.cron_kie_sync_pending() returns bigint
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  perform public.fail_expired_kie_tasks();
  return public.invoke_edge_function('kie-sync', '{"mode": "pending"}'::jsonb, 30000);
end
$$;
comment on function public.cron_kie_sync_pending() is
  'pg_cron job kie-sync-pending: fail_expired_kie_tasks(), then POST {"mode":"pending"} to kie-sync. Returns the pg_net request id (null when vault is not configured).';
revoke all on function public.apply_kie_result(text, text, jsonb, text, text, text), public.pending_kie_tasks(int, interval),
  public.fail_expired_kie_tasks(), public.record_kie_checks(text[]), public.record_kie_callback(text, bigint, text),
  public.cron_kie_sync_pending()
  from public, anon, authenticated;
grant execute on function public.apply_kie_result(text, text, jsonb, text, text, text), public.pending_kie_tasks(int, interval),
  public.fail_expired_kie_tasks(), public.record_kie_checks(text[]), public.record_kie_callback(text, bigint, text),
  public.cron_kie_sync_pending()
  to service_role;
