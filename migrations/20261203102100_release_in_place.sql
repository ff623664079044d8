-- A handed-back job keeps its place in line.
--
-- Why: release_preview_job (the isolate is ending, or its render needs a fresh isolate's CPU)
-- made the job due at now(), behind every job that was due before it. Claims take the oldest due
-- job first, so in a burst a handed-back row waited for the whole backlog: measured in a burst of
-- 50, three handed-back photos were claimed again 20–41 s later, the last rows of the burst. It
-- was due before it was claimed; it stays due from then, so the next claim (in another isolate)
-- takes it first. Otherwise as before: fenced, the attempt counted, not at the cap.
create or replace function public.release_preview_job(p_job_id bigint, p_attempt int) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
declare
  j public.preview_jobs%rowtype;
begin
  update public.preview_jobs
     set state = 'queued', run_at = least(run_at, now()), locked_by = null, locked_at = null,
         lease_until = null, updated_at = now()
   where id = p_job_id and state = 'running' and attempts = p_attempt and attempts < max_attempts
  returning * into j;
  if not found then
    return false;
  end if;
  perform public.preview_job_mirror(j.kind, j.generation_id, 'none');
  return true;
end
$$;
comment on function public.release_preview_job(bigint, int) is
  'running (attempt p_attempt, under the cap) → queued, due again at its old due time (first in line): a worker whose isolate is ending hands its job back; its late result is fenced. SECURITY DEFINER: service only.';
