-- The animated preview of a video (the seed system's `{user}/previews/{id}_preview.mp4`: 4 s,
-- ≤ 320 px, 12 fps, H.264, played on hover): a step of its own after the poster, claimed,
-- fenced, retried and swept like the poster, in its own columns (animated_*), so a poster never
-- waits for it or fails because of it. Opt-in: the worker asks for it (request_animated_preview)
-- after a poster only when PREVIEW_ANIMATED is on; nothing here acts on a row that was not
-- asked for (animated_status null). Re-runnable.

-- A video whose poster is ready; its animated preview asked for now (null → none) and
-- dispatched. False when it was not a ready video or was already asked for.
create or replace function public.request_animated_preview(p_generation_id uuid, p_dispatch boolean default true) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.generations g
     set animated_status = 'none', animated_attempts = 0, animated_next_attempt_at = null, animated_error_code = null
   where g.id = p_generation_id
     and public.preview_kind(g.type::text) = 'video'
     and g.preview_status = 'ready'
     and g.animated_status is null;
  if not found then
    return false;
  end if;
  if p_dispatch then
    perform public.invoke_edge_function('generate-preview', jsonb_build_object('animatedId', p_generation_id), 10000);
  end if;
  return true;
end
$$;
comment on function public.request_animated_preview(uuid, boolean) is
  'A ready video''s animated preview asked for (animated_status null → none) and, unless p_dispatch is false, a generate-preview {"animatedId"} request queued. SECURITY DEFINER: service only.';

-- The same claim rules as the poster's: none; failed and due under the cap; processing past the lease.
create or replace function public.claim_animated_preview(p_generation_id uuid, p_lease interval default null)
returns table (id uuid, user_id uuid, original_path text, source_url text, target_path text, attempt int)
language sql volatile
security definer
set search_path = ''
as $$
  update public.generations g
     set animated_status = 'processing',
         animated_attempts = g.animated_attempts + 1,
         animated_started_at = now(),
         animated_next_attempt_at = null
   where g.id = p_generation_id
     and public.preview_kind(g.type::text) = 'video'
     and g.preview_status = 'ready'
     and g.animated_attempts < public.preview_max_attempts()
     and (g.animated_status = 'none'
          or (g.animated_status = 'failed' and g.animated_next_attempt_at <= now())
          or (g.animated_status = 'processing'
              and g.animated_started_at + coalesce(p_lease, public.preview_lease()) < now()))
  returning g.id, g.user_id, nullif(g.original_path, ''), public.preview_source_url(g),
            public.animated_preview_path(g.user_id, g.id), g.animated_attempts
$$;
comment on function public.claim_animated_preview(uuid, interval) is
  'Claims a ready video''s animated preview (none | failed & due | processing past the lease → processing, attempts+1), under the attempt cap. Returns the source and the target path. SECURITY DEFINER: service only.';

create or replace function public.complete_animated_preview(p_generation_id uuid, p_attempt int, p_path text) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.generations g
     set animated_status = 'ready', animated_path = p_path, animated_started_at = null, animated_error_code = null
   where g.id = p_generation_id and g.animated_status = 'processing' and g.animated_attempts = p_attempt;
  return found;
end
$$;

create or replace function public.fail_animated_preview(
  p_generation_id uuid, p_attempt int, p_error_code text, p_retryable boolean
) returns text
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  v_state text;
begin
  update public.generations g
     set animated_status = 'failed',
         animated_next_attempt_at = public.preview_retry_at(p_retryable, g.animated_attempts),
         animated_error_code = p_error_code,
         animated_started_at = null
   where g.id = p_generation_id and g.animated_status = 'processing' and g.animated_attempts = p_attempt
  returning case when g.animated_next_attempt_at is not null then 'retry' else 'failed' end into v_state;
  return v_state;
end
$$;
comment on function public.fail_animated_preview(uuid, int, text, boolean) is
  'Fails the animated claim with its code (the poster''s error column is not touched): ''retry'' after preview_backoff, ''failed'' when terminal or at the cap, null when fenced. SECURITY DEFINER: service only.';

-- The minute job: animated work whose request was lost (none for a minute, asked within a
-- day), whose lease ran out, or whose retry is due.
create or replace function public.dispatch_animated_sweep(p_limit int default 50) returns int
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  r record;
  v_count int := 0;
begin
  for r in
    select g.id from public.generations g
     where g.animated_status is not null
       and g.animated_status <> 'ready'  -- as generations_animated_todo_idx says: a small index scan, not the table
       and g.animated_attempts < public.preview_max_attempts()
       and ((g.animated_status = 'none' and g.updated_at < now() - interval '1 minute' and g.updated_at > now() - interval '1 day')
            or (g.animated_status = 'processing' and g.animated_started_at + public.preview_lease() < now())
            or (g.animated_status = 'failed' and g.animated_next_attempt_at <= now()))
     order by g.updated_at
     limit greatest(p_limit, 0)
  loop
    if public.invoke_edge_function('generate-preview', jsonb_build_object('animatedId', r.id), 10000) is not null then
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;

select cron.schedule('animated-sweep', '* * * * *', 'select public.dispatch_animated_sweep()');

-- backfill --animated: ready videos never asked for (or failed, due), oldest first.
create or replace function public.animated_candidates(
  p_after_created_at timestamptz, p_after_id uuid, p_limit int, p_since timestamptz default null
) returns table (id uuid, user_id uuid, type text, created_at timestamptz, preview_status text)
language sql stable
security definer
set search_path = ''
as $$
  select g.id, g.user_id, g.type::text, g.created_at, coalesce(g.animated_status, 'none')
    from public.generations g
   where public.preview_kind(g.type::text) = 'video'
     and g.preview_status = 'ready'
     and (g.animated_status is null or g.animated_status = 'none'
          or (g.animated_status = 'failed' and g.animated_next_attempt_at <= now()))
     and (p_since is null or g.created_at >= p_since)
     and (p_after_created_at is null
          or (g.created_at, g.id) > (p_after_created_at, coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid)))
   order by g.created_at, g.id
   limit greatest(coalesce(p_limit, 100), 0)
$$;

revoke all on function public.request_animated_preview(uuid, boolean) from public, anon, authenticated;
revoke all on function public.claim_animated_preview(uuid, interval) from public, anon, authenticated;
revoke all on function public.complete_animated_preview(uuid, int, text) from public, anon, authenticated;
revoke all on function public.fail_animated_preview(uuid, int, text, boolean) from public, anon, authenticated;
revoke all on function public.dispatch_animated_sweep(int) from public, anon, authenticated;
revoke all on function public.animated_candidates(timestamptz, uuid, int, timestamptz) from public, anon, authenticated;
grant execute on function public.request_animated_preview(uuid, boolean), public.claim_animated_preview(uuid, interval),
  public.complete_animated_preview(uuid, int, text), public.fail_animated_preview(uuid, int, text, boolean),
  public.dispatch_animated_sweep(int), public.animated_candidates(timestamptz, uuid, int, timestamptz) to service_role;
