-- Hostile tenants, round three (migrations/20261203101400_tenant_guards.sql): under an app's
-- permissive write policy a signed-in user cannot move a row (id, user_id) to anyone, nor start a
-- row asking for work (animated_status) the deployment decides; a deleted row's object another row
-- still names is not deleted; an object name of 36 dashes no longer breaks the orphan listing.
begin;
select plan(18);

set local app.skip_preview_dispatch = 'on';
select tests.create_user('tenant-a@example.test', '22222222-0000-4000-8000-00000000000a') is not null as created \gset
select tests.create_user('tenant-b@example.test', '22222222-0000-4000-8000-00000000000b') is not null as created \gset

-- the app's policies, as permissive as a hostile probe met them: any signed-in user updates any
-- row, inserts rows (rolled back with the rest)
create policy "tenant test: authenticated update any" on public.generations for update to authenticated using (true) with check (true);
create policy "tenant test: authenticated insert" on public.generations for insert to authenticated with check (true);
create policy "tenant test: authenticated read any" on public.generations for select to authenticated using (true);

insert into public.generations (id, user_id, type, status, asset_url, original_path) values
  ('22222222-aaaa-4000-8000-000000000001', '22222222-0000-4000-8000-00000000000a', 'photo', 'success', 'https://k.test/1.png', null),
  ('22222222-aaaa-4000-8000-000000000002', '22222222-0000-4000-8000-00000000000b', 'photo', 'success', 'https://k.test/2.png', null);

-- ---------------------------------------------------------------------------------------
-- Identity: a row stays its owner's
-- ---------------------------------------------------------------------------------------
select tests.authenticate_as('22222222-0000-4000-8000-00000000000b');
select throws_ok($$update public.generations set user_id = '22222222-0000-4000-8000-00000000000b' where id = '22222222-aaaa-4000-8000-000000000001'$$,
  '42501', 'generations.user_id is written by the service only', 'a user cannot move another user''s row to themselves');
select throws_ok($$update public.generations set user_id = '22222222-0000-4000-8000-00000000000a' where id = '22222222-aaaa-4000-8000-000000000002'$$,
  '42501', 'generations.user_id is written by the service only', '… nor give their own row away');
select throws_ok($$update public.generations set id = gen_random_uuid() where id = '22222222-aaaa-4000-8000-000000000002'$$,
  '42501', 'generations.id is written by the service only', '… nor change a row''s id (its objects'' paths)');
select lives_ok($$update public.generations set prompt = 'mine' where id = '22222222-aaaa-4000-8000-000000000002'$$,
  'the app''s own columns stay writable as its policies say');
select tests.clear_authentication();
select results_eq($$select user_id::text from public.generations where id in ('22222222-aaaa-4000-8000-000000000001', '22222222-aaaa-4000-8000-000000000002') order by id$$,
  $$values ('22222222-0000-4000-8000-00000000000a'::text), ('22222222-0000-4000-8000-00000000000b'::text)$$, 'both rows are still their owners''');
select lives_ok($$update public.generations set user_id = '22222222-0000-4000-8000-00000000000b' where id = '22222222-aaaa-4000-8000-000000000001'$$,
  'the service (postgres / service_role) may still move a row');
update public.generations set user_id = '22222222-0000-4000-8000-00000000000a' where id = '22222222-aaaa-4000-8000-000000000001';

-- ---------------------------------------------------------------------------------------
-- INSERT: this system's columns only at their defaults
-- ---------------------------------------------------------------------------------------
select tests.authenticate_as('22222222-0000-4000-8000-00000000000b');
select throws_ok($$insert into public.generations (user_id, type, status, asset_url, animated_status)
                   values ('22222222-0000-4000-8000-00000000000b', 'video', 'success', 'https://k.test/v.mp4', 'none')$$,
  '42501', 'generations.animated_status is written by the service only', 'a client row cannot ask for the animated step (animated_status none)');
select throws_ok($$insert into public.generations (user_id, type, status, preview_error_code)
                   values ('22222222-0000-4000-8000-00000000000b', 'photo', 'success', 'none')$$,
  '42501', 'generations.preview_error_code is written by the service only', '… nor set another of our columns to ''none''');
select lives_ok($$insert into public.generations (user_id, type, status, preview_status)
                  values ('22222222-0000-4000-8000-00000000000b', 'photo', 'pending', 'none')$$,
  'preview_status = none, its default, is still a client''s to send');
select tests.clear_authentication();

-- ---------------------------------------------------------------------------------------
-- Deletions: an object another row still names stays
-- ---------------------------------------------------------------------------------------
insert into public.generations (id, user_id, type, status, asset_url, original_path) values
  ('22222222-aaaa-4000-8000-000000000003', '22222222-0000-4000-8000-00000000000a', 'photo', 'success', 'https://k.test/3.png',
   '22222222-0000-4000-8000-00000000000a/originals/22222222-aaaa-4000-8000-000000000003.png'),
  -- the app copied the row: the copy names the same stored original
  ('22222222-aaaa-4000-8000-000000000004', '22222222-0000-4000-8000-00000000000a', 'photo', 'success', 'https://k.test/3.png',
   '22222222-0000-4000-8000-00000000000a/originals/22222222-aaaa-4000-8000-000000000003.png'),
  -- another row shows the first one's preview through its storage URL
  ('22222222-aaaa-4000-8000-000000000005', '22222222-0000-4000-8000-00000000000a', 'photo', 'success',
   'http://127.0.0.1:54321/storage/v1/object/public/generations/22222222-0000-4000-8000-00000000000a/previews/22222222-aaaa-4000-8000-000000000003_preview.webp', null);
update public.generations set preview_status = 'ready',
       preview_path = '22222222-0000-4000-8000-00000000000a/previews/22222222-aaaa-4000-8000-000000000003_preview.webp'
 where id = '22222222-aaaa-4000-8000-000000000003';
delete from public.generations where id = '22222222-aaaa-4000-8000-000000000003';
select ok(public.preview_object_referenced('22222222-0000-4000-8000-00000000000a/originals/22222222-aaaa-4000-8000-000000000003.png'),
  'the deleted row''s original is still named by its copy');
select ok(public.preview_object_referenced('22222222-0000-4000-8000-00000000000a/previews/22222222-aaaa-4000-8000-000000000003_preview.webp'),
  '… its preview by another row''s asset_url');
select ok(not public.preview_object_referenced('22222222-0000-4000-8000-00000000000b/originals/22222222-aaaa-4000-8000-000000000003.png'),
  'the same name in another user''s folder is not referenced by this user''s rows');
select ok(not public.preview_object_referenced('----------------------------------/originals/x.png'), 'a path without a user folder is referenced by nobody');
select is(
  (select count(*)::int from public.preview_jobs j
    where j.kind = 'delete_object' and j.payload ->> 'path' like '22222222-0000-4000-8000-00000000000a/%22222222-aaaa-4000-8000-000000000003%'),
  2, 'the delete trigger queued both objects of the deleted row');
select is(
  (select array_agg(public.preview_job_input(j) is null order by j.payload ->> 'path') from public.preview_jobs j
    where j.kind = 'delete_object' and j.payload ->> 'path' like '22222222-0000-4000-8000-00000000000a/%22222222-aaaa-4000-8000-000000000003%'),
  array[true, true], 'and a claim drops both jobs: another row still names each object');
update public.generations set original_path = null where id = '22222222-aaaa-4000-8000-000000000004';
select is(
  (select public.preview_job_input(j) ->> 'path' from public.preview_jobs j
    where j.kind = 'delete_object' and j.payload ->> 'path' like '%/originals/22222222-aaaa-4000-8000-000000000003.png'),
  '22222222-0000-4000-8000-00000000000a/originals/22222222-aaaa-4000-8000-000000000003.png',
  'once no row names the original, its deletion goes ahead');

-- ---------------------------------------------------------------------------------------
-- Orphans: any object name
-- ---------------------------------------------------------------------------------------
insert into storage.objects (bucket_id, name) values
  ('generations', '------------------------------------/previews/------------------------------------_preview.webp'),
  ('generations', '22222222-0000-4000-8000-00000000000a/posters/22222222-aaaa-4000-8000-0000000000ff_poster.webp');
select lives_ok($$select * from public.preview_orphan_objects(100000)$$, 'the orphan listing survives an object named with 36 dashes');
select is(
  (select array_agg(path order by path) from public.preview_orphan_objects(100000, '22222222-0000-4000-8000-00000000000a')),
  array['22222222-0000-4000-8000-00000000000a/posters/22222222-aaaa-4000-8000-0000000000ff_poster.webp'],
  'and still lists a real orphan (a poster whose row does not exist), not the dashes');

select * from finish();
rollback;
