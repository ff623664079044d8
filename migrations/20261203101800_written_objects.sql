-- Exactly once per object across attempts (issue "Recovery, round two"): a worker killed between
-- uploading an object and completing its job left the next attempt to upload the same bytes again.
-- Before each upload the attempt notes, on its job, the object's path, the SHA-256 and size of what
-- it is about to write, and when; a later attempt that would write the same content to that path
-- finds the note and the object written after it, and keeps it instead of writing it again. The
-- note is on the job row (it lives as long as the job's attempts do, and goes with the done job).
-- Re-runnable.

-- Fenced by (job, attempt): only the attempt that holds the job notes.
create or replace function public.note_preview_job_object(
  p_job_id bigint, p_attempt int, p_path text, p_sha256 text, p_size bigint
) returns boolean
language plpgsql volatile
security definer
set search_path = ''
as $$
begin
  update public.preview_jobs j
     set payload = jsonb_set(j.payload, '{objects}',
                             coalesce(j.payload -> 'objects', '{}'::jsonb)
                             || jsonb_build_object(p_path, jsonb_build_object(
                                  'sha256', p_sha256, 'size', p_size, 'at', clock_timestamp())))
   where j.id = p_job_id and j.attempts = p_attempt and j.state = 'running';
  return found;
end
$$;
comment on function public.note_preview_job_object(bigint, int, text, text, bigint) is
  'Before an upload: the attempt holding the job notes the object''s path, SHA-256, size and time on the job (payload.objects). False when fenced. SECURITY DEFINER: service only.';

-- Whether an earlier attempt of this job already wrote exactly this content at this path: it noted
-- the same SHA-256 and size, and the bucket holds an object of that size written since the note.
create or replace function public.preview_job_object_written(
  p_job_id bigint, p_path text, p_sha256 text, p_size bigint
) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select 1
      from public.preview_jobs j
      join storage.objects o on o.bucket_id = public.preview_bucket() and o.name = p_path
     where j.id = p_job_id
       and j.payload -> 'objects' -> p_path ->> 'sha256' = p_sha256
       and (j.payload -> 'objects' -> p_path ->> 'size')::bigint = p_size
       and (o.metadata ->> 'size')::bigint = p_size
       and coalesce(o.updated_at, o.created_at) >= (j.payload -> 'objects' -> p_path ->> 'at')::timestamptz)
$$;
comment on function public.preview_job_object_written(bigint, text, text, bigint) is
  'An earlier attempt of the job noted this content (SHA-256, size) at p_path and the object was written since: the upload is skipped. SECURITY DEFINER: service only.';

revoke all on function public.note_preview_job_object(bigint, int, text, text, bigint),
  public.preview_job_object_written(bigint, text, text, bigint) from public, anon, authenticated;
grant execute on function public.note_preview_job_object(bigint, int, text, text, bigint),
  public.preview_job_object_written(bigint, text, text, bigint) to service_role;
