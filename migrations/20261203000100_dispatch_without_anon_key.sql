-- The database reaches the functions with the dispatch secret alone (issue 21: keys).
--
-- invoke_edge_function used to send the vault's `anon_key` (the legacy anon JWT) as bearer and
-- apikey beside the dispatch secret, only so that kie-sync, then behind the platform's
-- verify_jwt, let the pending sync through the gateway. Supabase deprecates the legacy JWT keys
-- by the end of 2026 and new projects have only sb_publishable_… / sb_secret_… keys, which are
-- not JWTs: a project without the legacy keys had nothing to put there. Every function now runs
-- with verify_jwt = false and checks its callers in code (shared/auth.ts), and the two that
-- pg_net calls accept the dispatch secret: generate-preview, and kie-sync for the pending sync
-- only. So a queued request carries `x-preview-dispatch` and nothing else that grants anything
-- (pg_net's queue is readable by PUBLIC); the vault's `anon_key` is no longer read, and deploy
-- deletes it.
--
-- Named before 20261203000200 (bounded dispatch), which only calls this function; `supabase db
-- push --include-all` (npm run deploy) applies it on a project that already has that one.
-- Re-runnable: create or replace, privileges restated.

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
  v_request_id bigint;
begin
  select rtrim(s.decrypted_secret, '/') into v_url
    from vault.decrypted_secrets s where s.name = 'project_url' limit 1;
  select s.decrypted_secret into v_secret
    from vault.decrypted_secrets s where s.name = 'preview_dispatch_secret' limit 1;
  if v_url is null or v_url = '' or v_secret is null or v_secret = '' then
    raise warning 'invoke_edge_function(%): vault secret project_url or preview_dispatch_secret is missing; request not sent', p_function;
    return null;
  end if;

  begin
    v_request_id := net.http_post(
      url := v_url || '/functions/v1/' || p_function,
      body := p_body,
      headers := jsonb_build_object('Content-Type', 'application/json', 'x-preview-dispatch', v_secret),
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
  'Queues POST <vault project_url>/functions/v1/<name> with the vault''s dispatch secret (x-preview-dispatch) as its only credential, via net.http_post: no API key (new projects have no legacy JWT keys; the functions check the dispatch secret themselves) and never the service key (the queue is readable by PUBLIC). Null + WARNING when not configured. SECURITY DEFINER.';

revoke all on function public.invoke_edge_function(text, jsonb, int) from public, anon, authenticated;
grant execute on function public.invoke_edge_function(text, jsonb, int) to service_role;
