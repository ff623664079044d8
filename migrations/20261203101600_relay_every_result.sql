-- kie_owner with a relay URL: the app's webhook hears of every task this system finishes, not only
-- of the ones whose callback came to kie-callback. A result the pending sync found (the callback
-- was lost) and a task failed by the opt-in expiry used to reach the app's columns through the
-- mapping but never its webhook, so whatever that webhook does besides (a charge on success, a
-- refund on failure) was silently skipped. Such a result is relayed as the callback KIE's jobs API
-- would have sent; only a task's final result is relayed (a `generating` callback first would
-- otherwise have used the task's one relay). Re-runnable.

-- The callback body KIE's jobs API (the market family) sends for a finished task, built for a
-- result no callback carried: success with resultJson's resultUrls (and KIE's cover image of a
-- video in coverUrls), or fail with failMsg.
create or replace function public.kie_relay_body(
  p_task_id text, p_state text, p_result_urls jsonb, p_error text, p_cover_url text default null
) returns jsonb
language sql immutable parallel safe
as $$
  select case when p_state = 'success' then
    jsonb_build_object('code', 200, 'msg', 'success', 'data', jsonb_build_object(
      'taskId', p_task_id, 'state', 'success',
      'resultJson', (jsonb_build_object('resultUrls', coalesce(p_result_urls, '[]'::jsonb))
                     || case when p_cover_url is null then '{}'::jsonb
                             else jsonb_build_object('coverUrls', jsonb_build_array(p_cover_url)) end)::text))
  else
    jsonb_build_object('code', 501, 'msg', coalesce(nullif(p_error, ''), 'Generation failed'), 'data', jsonb_build_object(
      'taskId', p_task_id, 'state', 'fail', 'failMsg', coalesce(nullif(p_error, ''), 'Generation failed')))
  end
$$;
comment on function public.kie_relay_body(text, text, jsonb, text, text) is
  'The callback KIE''s jobs API sends for a finished task (success: resultJson.resultUrls and coverUrls; failed: failMsg), for relaying a result no callback carried (the pending sync, the expiry).';

-- Expiry, as in 20261203101200_app_modes.sql, relaying each failure it writes.
create or replace function public.fail_expired_kie_tasks() returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_task text;
  v_reason text := format('KIE task expired: no result within %s of its creation (KIE keeps tasks that long)',
                          public.kie_task_retention());
  v_id uuid;
  v_count int := 0;
begin
  if not exists (select 1 from public.preview_settings s where s.mode = 'kie_owner' and s.expire_kie_tasks) then
    return 0;
  end if;
  for v_id, v_task in
    update public.generations g
       set status = 'failed', error = v_reason
     where g.task_id is not null
       and public.kie_task_running(g.status::text)
       and g.created_at < now() - public.kie_task_retention()
    returning g.id, g.task_id
  loop
    perform public.write_app_result_columns(v_id, 'failed', null, null);
    perform public.queue_kie_relay(v_task, public.kie_relay_body(v_task, 'failed', null, v_reason),
                                   '{"x-preview-relay-source": "expiry"}'::jsonb);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
comment on function public.fail_expired_kie_tasks() is
  'kie_owner mode with expire_kie_tasks only: running tasks older than kie_task_retention() → status failed with the reason in error, the app''s completed_at, and the failure relayed to the app''s webhook (with a relay URL). Called by the kie-sync-pending cron job. SECURITY DEFINER: pg_cron / service.';

grant execute on function public.kie_relay_body(text, text, jsonb, text, text) to service_role;
revoke all on function public.kie_relay_body(text, text, jsonb, text, text) from public, anon, authenticated;
