-- RLS and privileges seen as PostgREST sees them: two users, anon, the service role. The job
-- state (preview_jobs, preview_worker_wakes) and every SECURITY DEFINER function are the
-- service's only; users read their own rows and objects, write no preview state.
begin;
select plan(74);

set local app.skip_preview_dispatch = 'on';
select tests.create_user('alice@example.test', '66666666-0000-4000-8000-00000000000a') is not null as created \gset
select tests.create_user('bob@example.test', '66666666-0000-4000-8000-00000000000b') is not null as created \gset
insert into public.generations (id, user_id, type, status, asset_url) values
  ('ffffffff-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000a', 'photo', 'success', 'http://kie.test/a.png'),
  ('ffffffff-0000-4000-8000-00000000000b', '66666666-0000-4000-8000-00000000000b', 'video', 'success', 'http://kie.test/b.mp4');
select public.queue_preview('ffffffff-0000-4000-8000-00000000000a') as job_a \gset
insert into storage.buckets (id, name) values ('generations', 'generations') on conflict do nothing;
insert into storage.objects (bucket_id, name) values
  ('generations', '66666666-0000-4000-8000-00000000000a/previews/ffffffff-0000-4000-8000-00000000000a_preview.webp'),
  ('generations', '66666666-0000-4000-8000-00000000000b/posters/ffffffff-0000-4000-8000-00000000000b_poster.webp');

select is((select public from storage.buckets where id = 'generations'), false, 'bucket generations is private');

-- ---- who may run the machinery: every SECURITY DEFINER function is the service's
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'public'::regnamespace and p.prosecdef
                     and (has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute'))$$,
  'no SECURITY DEFINER function of public is executable by anon or authenticated');
select is_empty($$select p.oid::regprocedure::text from pg_proc p
                   where p.pronamespace = 'public'::regnamespace and p.prosecdef
                     and coalesce(p.proconfig, '{}') <> array['search_path=""']$$,
  'every SECURITY DEFINER function of public runs with an empty search_path');
select ok(has_function_privilege('service_role', f, 'execute'), format('service_role may run %s', f))
  from unnest(array['public.claim_preview_jobs(text[], int, uuid, bigint, interval)', 'public.complete_preview_job(bigint, int, jsonb)',
                    'public.fail_preview_job(bigint, int, text, text, boolean, boolean)', 'public.release_preview_job(bigint, int)',
                    'public.preview_job_is_current(bigint, int)', 'public.end_preview_wake(bigint)', 'public.adopt_preview(uuid)',
                    'public.queue_animated_preview(uuid)', 'public.queue_object_deletions(text[], uuid, text, interval)']) f;

-- ---- the job state: no privilege at all for API roles
select ok(not (has_table_privilege(r, t, 'SELECT') or has_table_privilege(r, t, 'INSERT') or has_table_privilege(r, t, 'UPDATE')
               or has_table_privilege(r, t, 'DELETE') or has_table_privilege(r, t, 'TRUNCATE') or has_table_privilege(r, t, 'REFERENCES')
               or has_table_privilege(r, t, 'TRIGGER')),
          format('%s has no privilege on %s', r, t))
  from unnest(array['anon', 'authenticated']) r,
       unnest(array['public.preview_jobs', 'public.preview_worker_wakes', 'public.kie_task_checks', 'public.kie_callback_receipts']) t;
select ok(not has_table_privilege(r, v, 'SELECT'), format('%s cannot read %s', r, v))
  from unnest(array['anon', 'authenticated']) r,
       unnest(array['public.preview_job_stats', 'public.preview_stats', 'public.preview_coverage']) v;

-- ---- Alice
select tests.authenticate_as('66666666-0000-4000-8000-00000000000a');
select results_eq($$select id from public.generations where user_id in ('66666666-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000b')$$,
  $$values ('ffffffff-0000-4000-8000-00000000000a'::uuid)$$, 'alice sees only her generation');
select results_eq($$select name from storage.objects where bucket_id = 'generations' and name like '66666666-%'$$,
  $$values ('66666666-0000-4000-8000-00000000000a/previews/ffffffff-0000-4000-8000-00000000000a_preview.webp'::text)$$,
  'alice sees only objects under her folder');
update public.generations set preview_status = 'ready' where id = 'ffffffff-0000-4000-8000-00000000000a';
select tests.clear_authentication();
select is((select preview_status from public.generations where id = 'ffffffff-0000-4000-8000-00000000000a'), 'none', 'alice cannot update her row (no update policy)');
select tests.authenticate_as('66666666-0000-4000-8000-00000000000a');
select throws_ok($$insert into public.generations (user_id, type) values ('66666666-0000-4000-8000-00000000000a', 'photo')$$,
  '42501', null, 'alice cannot insert generations');
select throws_ok($$insert into storage.objects (bucket_id, name) values ('generations', '66666666-0000-4000-8000-00000000000a/x.webp')$$,
  '42501', null, 'alice cannot upload into the bucket');
select throws_ok($$delete from storage.objects where bucket_id = 'generations'$$,
  '42501', 'Direct deletion from storage tables is not allowed. Use the Storage API instead.',
  'a direct SQL delete of objects is refused, as on the platform (only the Storage API deletes)');
select throws_ok(c, '42501', null, format('authenticated cannot run %s', split_part(split_part(c, '(', 1), 'public.', 2)))
  from unnest(array[
    $$select * from public.claim_preview_jobs()$$,
    format('select public.complete_preview_job(%s, 1, %L)', :job_a, '{"path": "mine.webp"}'),
    format('select public.fail_preview_job(%s, 1, %L, %L, false)', :job_a, 'X', 'x'),
    format('select public.release_preview_job(%s, 1)', :job_a),
    format('select public.preview_job_is_current(%s, 1)', :job_a),
    $$select public.expire_preview_job_leases()$$,
    $$select public.enqueue_preview_job('preview', 'ffffffff-0000-4000-8000-00000000000a')$$,
    $$select public.queue_preview('ffffffff-0000-4000-8000-00000000000a')$$,
    $$select public.requeue_preview('ffffffff-0000-4000-8000-00000000000a', 'failed')$$,
    $$select public.adopt_preview('ffffffff-0000-4000-8000-00000000000a')$$,
    $$select public.queue_animated_preview('ffffffff-0000-4000-8000-00000000000b')$$,
    $$select public.queue_object_deletions(array['66666666-0000-4000-8000-00000000000b/posters/ffffffff-0000-4000-8000-00000000000b_poster.webp'], null, 'orphan')$$,
    $$select public.cancel_preview_jobs('ffffffff-0000-4000-8000-00000000000a', array['preview'])$$,
    $$select public.wake_preview_workers()$$,
    $$select public.end_preview_wake(1)$$,
    $$select public.preview_sweep()$$,
    $$select * from public.apply_kie_result('t', 'success', null, null, null)$$]) c;
select throws_ok($$select * from public.preview_jobs$$, '42501', null, 'authenticated cannot read preview_jobs');
select throws_ok(format('update public.preview_jobs set attempts = 0 where id = %s', :job_a), '42501', null, 'nor write it');
select throws_ok($$insert into public.preview_worker_wakes default values$$, '42501', null, 'nor make a wake');
select throws_ok($$select * from public.preview_job_stats$$, '42501', null, 'authenticated cannot read preview_job_stats');
select throws_ok($$select * from public.preview_stats$$, '42501', null, 'authenticated cannot read preview_stats');

-- ---- Bob
select tests.authenticate_as('66666666-0000-4000-8000-00000000000b');
select results_eq($$select id from public.generations where user_id in ('66666666-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000b')$$,
  $$values ('ffffffff-0000-4000-8000-00000000000b'::uuid)$$, 'bob sees only his generation');
select results_eq($$select name from storage.objects where bucket_id = 'generations' and name like '66666666-%'$$,
  $$values ('66666666-0000-4000-8000-00000000000b/posters/ffffffff-0000-4000-8000-00000000000b_poster.webp'::text)$$,
  'bob sees only objects under his folder');
select tests.clear_authentication();
select is((select count(*)::int from storage.objects where bucket_id = 'generations' and name like '66666666-%'), 2, 'alice''s delete removed nothing');

-- ---- Anon
select tests.authenticate_as_anon();
select is_empty($$select id from public.generations$$, 'anon sees no generations');
select is_empty($$select name from storage.objects where bucket_id = 'generations'$$, 'anon sees no objects');
select throws_ok($$select * from public.claim_preview_jobs()$$, '42501', null, 'anon cannot claim jobs');
select throws_ok($$select * from public.preview_jobs$$, '42501', null, 'anon cannot read preview_jobs');
select throws_ok($$select * from public.preview_worker_wakes$$, '42501', null, 'nor the wakes');
select tests.clear_authentication();

-- ---- The service role bypasses RLS and runs the jobs
select tests.authenticate_as_service_role();
select is((select count(*)::int from public.generations where user_id in ('66666666-0000-4000-8000-00000000000a', '66666666-0000-4000-8000-00000000000b')), 2, 'service_role sees all rows');
select is((select attempt from public.claim_preview_jobs(array['preview'], 1, 'ffffffff-0000-4000-8000-00000000000a')), 1, 'service_role claims');
select is((select count(*)::int from public.preview_jobs where id = :job_a and state = 'running'), 1, 'service_role reads preview_jobs');
select ok((select count(*) > 0 from public.preview_stats), 'service_role reads preview_stats');
select ok((select count(*) > 0 from public.preview_job_stats), 'service_role reads preview_job_stats');
select tests.clear_authentication();

-- ---- Guard: even with a permissive write policy (as the platform may have), API roles cannot
-- write preview state (this system's own columns); the app's own columns follow its policies.
create policy "test: users update own" on public.generations for update to authenticated
  using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
select tests.authenticate_as('66666666-0000-4000-8000-00000000000b');
select lives_ok($$update public.generations set prompt = 'mine' where id = 'ffffffff-0000-4000-8000-00000000000b'$$, 'a platform update policy still works for other columns');
select throws_ok($$update public.generations set preview_status = 'ready' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.preview_status is written by the service only', 'but preview columns stay service-only');
select throws_ok($$update public.generations set animated_status = 'none' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.animated_status is written by the service only', '… the clip''s too (no clip asked for by a client)');
select lives_ok($$update public.generations set model = 'mine' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  'the model is the app''s column: a user''s own row may change it under the app''s policy');
select throws_ok($$update public.generations set model = 'again', preview_path = 'x.webp' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.preview_path is written by the service only', '… but not together with a column of ours');
select throws_ok($$update public.generations set preview_error = 'mine' where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  '42501', 'generations.preview_error is written by the service only', '… nor our readable error');
select tests.clear_authentication();
select results_eq($$select model, prompt, preview_status, preview_path, preview_error from public.generations where id = 'ffffffff-0000-4000-8000-00000000000b'$$,
  $$values ('mine'::text, 'mine'::text, 'none'::text, null::text, null::text)$$, 'bob''s row: his writes of app columns kept, our columns untouched');

select * from finish();
rollback;
