-- Adoption step 1 (npm run adopt): the write policies that let ANY role, anon included,
-- change rows of `generations` or objects of the `generations` bucket are scoped to the
-- service role. A policy with no `TO` clause applies to PUBLIC; production has two that check
-- nothing about the caller:
--   "Service can update all generations"       public.generations  FOR UPDATE USING (true)
--   "Service can manage all generation files"  storage.objects     FOR ALL (bucket only)
-- Their names say what they were meant for: the service role (which bypasses RLS and never
-- needed them). ALTER POLICY … TO service_role keeps their names and expressions and ends
-- the hole: anon can no longer swap a public row's asset or delete anyone's files. Policies
-- that check the caller (auth.uid()) are left alone, so are reads. The app is unaffected: it
-- writes with the service-role key. Re-runnable: a scoped policy no longer matches.
do $$
declare
  p record;
begin
  for p in
    select schemaname, tablename, policyname, cmd
      from pg_policies
     where roles = '{public}'
       and cmd in ('UPDATE', 'INSERT', 'DELETE', 'ALL')
       and coalesce(qual, '') !~ 'auth\.(uid|jwt|role)\(\)'
       and coalesce(with_check, '') !~ 'auth\.(uid|jwt|role)\(\)'
       and ((schemaname = 'public' and tablename = 'generations')
            or (schemaname = 'storage' and tablename = 'objects'
                and coalesce(qual, '') || coalesce(with_check, '') ~ '''generations'''))
  loop
    execute format('alter policy %I on %I.%I to service_role', p.policyname, p.schemaname, p.tablename);
    raise notice 'adopt: policy "%" on %.% (FOR %) now applies to service_role only (it applied to everybody)',
      p.policyname, p.schemaname, p.tablename, p.cmd;
  end loop;
end
$$;
