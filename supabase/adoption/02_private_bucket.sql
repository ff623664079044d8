-- Adoption step 2 (npm run adopt -- --private-bucket): the `generations` bucket becomes
-- private, as the library expects (it reads signed URLs).
--
-- What it breaks: every public URL of the bucket, `/storage/v1/object/public/generations/…`,
-- stops answering. Production stores such URLs in asset_url (and the deprecated
-- thumbnail_url/preview_url) and its own library page builds public URLs from preview_path /
-- poster_path. Run this step once the app reads through the `library` function (or signs
-- paths itself): every row keeps serving there, because the function signs preview_path /
-- poster_path and original_path, and the backfill gives every previewable row an
-- original_path (a public asset_url of ours is read as the object it names).
--
-- A bucket-wide read policy for everybody ("Public read access") would keep the files
-- readable through the authenticated routes with nothing but the anon key, so it is dropped;
-- owners keep reading their own folder through this system's policy
-- "generations bucket: users read own folder". Re-runnable.
do $$
declare
  p record;
begin
  update storage.buckets set public = false where id = 'generations' and public;
  if found then
    raise notice 'adopt: bucket generations is private now';
  end if;
  for p in
    select policyname
      from pg_policies
     where schemaname = 'storage' and tablename = 'objects'
       and roles && array['public', 'anon']::name[]
       and cmd = 'SELECT'
       and coalesce(qual, '') !~ 'auth\.(uid|jwt|role)\(\)'
       and coalesce(qual, '') ~ '''generations'''
  loop
    execute format('drop policy %I on storage.objects', p.policyname);
    raise notice 'adopt: dropped policy "%" on storage.objects (it let anyone read every file of the bucket)', p.policyname;
  end loop;
end
$$;
