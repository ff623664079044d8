-- One lease, defined once. The claim's lease used to come from the caller (the function's
-- PREVIEW_LEASE_SECONDS) while the sweep and expire_preview_leases() used preview_lease():
-- two definitions that could disagree (a row claimable before the sweep would re-dispatch
-- it). Now preview_lease() is the only one; a database may shorten it with the setting
-- app.preview_lease (the local test stack sets '15 seconds' so crash cases recover quickly):
--   alter database postgres set app.preview_lease = '5 minutes';

create or replace function public.preview_lease() returns interval
language sql stable parallel safe
set search_path = ''
as $$
  select coalesce(nullif(current_setting('app.preview_lease', true), '')::interval, interval '2 minutes')
$$;
comment on function public.preview_lease() is
  'How long a processing claim is owned before another caller may take it over (and the sweep re-dispatches it): app.preview_lease if set, else 2 minutes.';

-- Same body as before; the lease now defaults to preview_lease() (an explicit value still
-- wins, which the pgTAP tests use).
create or replace function public.claim_preview(
  p_generation_id uuid,
  p_lease interval default null
) returns table (id uuid, user_id uuid, type text, asset_url text, result_urls jsonb, model text, attempt int)
language sql volatile
security definer
set search_path = ''
as $$
  update public.generations g
     set preview_status = 'processing',
         preview_attempts = g.preview_attempts + 1,
         preview_started_at = now(),
         preview_next_attempt_at = null
   where g.id = p_generation_id
     and g.status = 'success'
     and g.asset_url is not null
     and g.type in ('photo', 'video')
     and (
          g.preview_status = 'none'
       or (g.preview_status = 'failed'
           and g.preview_next_attempt_at <= now()
           and g.preview_attempts < public.preview_max_attempts())
       or (g.preview_status = 'processing'
           and g.preview_started_at + coalesce(p_lease, public.preview_lease()) < now()
           and g.preview_attempts < public.preview_max_attempts())
     )
  returning g.id, g.user_id, g.type::text, g.asset_url, g.result_urls, g.model::text, g.preview_attempts
$$;
comment on function public.claim_preview(uuid, interval) is
  'Claims a row for preview rendering (none | failed & due | processing past the lease → processing, attempts+1). Returns the claim with its attempt (fencing token), or no row. The lease defaults to preview_lease(). SECURITY DEFINER: called by the service, bypasses RLS.';
revoke execute on function public.claim_preview(uuid, interval) from public, anon, authenticated;
grant execute on function public.claim_preview(uuid, interval) to service_role;
