-- A worker asks, right before it writes to the deterministic object paths, whether its claim
-- is still the current attempt. A worker whose lease expired while it rendered (and whose
-- row was re-claimed) then stops before uploading, instead of overwriting what the newer
-- attempt wrote; complete_preview's fencing stays the final word for the rows.
create or replace function public.preview_claim_is_current(p_generation_id uuid, p_attempt int)
returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.generations g
     where g.id = p_generation_id
       and g.preview_status = 'processing'
       and g.preview_attempts = p_attempt
  )
$$;
comment on function public.preview_claim_is_current(uuid, int) is
  'True while attempt p_attempt still holds the processing claim of the row (checked before uploads). SECURITY DEFINER: service only.';
revoke execute on function public.preview_claim_is_current(uuid, int) from public, anon, authenticated;
grant execute on function public.preview_claim_is_current(uuid, int) to service_role;
