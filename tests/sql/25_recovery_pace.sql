-- Recovery pace (migrations/20261203101900_recovery_pace.sql): the sweep every 10 s where pg_cron
-- knows second schedules (1.5+, the platform's 1.6), every minute on older pg_cron (this stack's
-- 1.4); the pending sync asks about a task from 10 s after its creation.
begin;
select plan(12);

set local app.skip_preview_dispatch = 'on';

-- the schedule follows the version
select is(public.preview_sweep_schedule(array[1, 6, 4]), '10 seconds', 'pg_cron 1.6.4 (the platform''s): every 10 s');
select is(public.preview_sweep_schedule(array[1, 5]), '10 seconds', 'pg_cron 1.5: every 10 s');
select is(public.preview_sweep_schedule(array[1, 4, 1]), '* * * * *', 'pg_cron 1.4-1: every minute');
select is(public.preview_sweep_schedule(null), '* * * * *', 'unknown version: every minute');
select is(public.pg_cron_version(),
  (select string_to_array(regexp_replace(extversion, '[^0-9]+', '.', 'g'), '.')::int[] from pg_extension where extname = 'pg_cron'),
  'pg_cron_version reads the installed extension');
select is((select schedule from cron.job where jobname = 'preview-sweep'), public.preview_sweep_schedule(),
  'the installed sweep runs at this pg_cron''s schedule');
select is((select count(*)::int from cron.job where jobname = 'preview-sweep'), 1, 'once');

-- the pending sync's minimum age: 10 s
select tests.create_user('pace@example.test', '25252525-0000-4000-8000-000000000001') is not null as created \gset
insert into public.generations (id, user_id, type, status, task_id, model, created_at) values
  ('25252525-aaaa-4000-8000-000000000001', '25252525-0000-4000-8000-000000000001', 'photo', 'generating', 'pace-5s', 'google/nano-banana', now() - interval '5 seconds'),
  ('25252525-aaaa-4000-8000-000000000002', '25252525-0000-4000-8000-000000000001', 'photo', 'generating', 'pace-12s', 'google/nano-banana', now() - interval '12 seconds'),
  ('25252525-aaaa-4000-8000-000000000003', '25252525-0000-4000-8000-000000000001', 'photo', 'generating', 'pace-25s', 'google/nano-banana', now() - interval '25 seconds');
select results_eq($$select task_id from public.pending_kie_tasks() where task_id like 'pace-%'$$,
  $$values ('pace-12s'::text), ('pace-25s'::text)$$,
  'a task 12 s old is asked about (30 s before); one 5 s old is not yet');
select is((select count(*)::int from public.pending_kie_tasks(50, '0 seconds') where task_id like 'pace-%'), 3, 'the minimum age is still a parameter');

-- who may call
select ok(not has_function_privilege('anon', 'public.preview_sweep_schedule(int[])', 'execute')
          and not has_function_privilege('authenticated', 'public.pg_cron_version()', 'execute'),
  'the schedule helpers are not the clients''');
select ok(has_function_privilege('service_role', 'public.preview_sweep_schedule(int[])', 'execute'), 'the service role reads them (doctor)');
select ok(not has_function_privilege('authenticated', 'public.pending_kie_tasks(int, interval)', 'execute'),
  'pending_kie_tasks stays the service''s only');

select * from finish();
rollback;
