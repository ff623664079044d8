-- generations: columns, constraints, indexes, honest updated_at.
begin;
select * from no_plan();

select has_table('public', 'generations', 'generations exists');
select has_column('public', 'generations', c, 'generations.' || c)
  from unnest(array['id', 'user_id', 'type', 'status', 'task_id', 'model', 'asset_url', 'result_urls', 'error',
                    'created_at', 'updated_at', 'preview_path', 'poster_path', 'preview_status', 'preview_attempts',
                    'preview_next_attempt_at', 'preview_started_at', 'preview_error_code', 'preview_width',
                    'preview_height', 'preview_thumbhash', 'original_path']) as c;
select col_default_is('public', 'generations', 'preview_status', 'none'::text, 'preview_status defaults to none');
select col_default_is('public', 'generations', 'preview_attempts', 0, 'preview_attempts defaults to 0');
select ok((select relrowsecurity from pg_class where oid = 'public.generations'::regclass), 'RLS is on for generations');
select has_index('public', 'generations', 'generations_task_id_key', 'unique index on task_id');

set local app.skip_preview_dispatch = 'on';
insert into auth.users (id, email) values ('11111111-0000-4000-8000-000000000001', 'schema@example.test');
insert into public.generations (id, user_id, type, status, task_id, updated_at)
values ('aaaaaaaa-0000-4000-8000-000000000001', '11111111-0000-4000-8000-000000000001', 'photo', 'pending', 'task-schema-1',
        now() - interval '1 hour');

select throws_ok($$update public.generations set preview_status = 'bogus' where id = 'aaaaaaaa-0000-4000-8000-000000000001'$$,
  '23514', null, 'preview_status is checked');
select throws_ok($$insert into public.generations (user_id, type, task_id) values ('11111111-0000-4000-8000-000000000001', 'photo', 'task-schema-1')$$,
  '23505', null, 'task_id is unique');
select lives_ok($$insert into public.generations (user_id, type) values ('11111111-0000-4000-8000-000000000001', 'audio'),
                                                                         ('11111111-0000-4000-8000-000000000001', 'audio')$$,
  'rows without task_id do not collide');

-- An app's no-op update reports its row, as without our migrations (no "UPDATE 0" that would
-- break `.update().select().single()`), and leaves updated_at alone.
create temp table before_noop as
  select updated_at from public.generations where id = 'aaaaaaaa-0000-4000-8000-000000000001';
create function pg_temp.noop_update_count() returns int language plpgsql as $$
declare n int;
begin
  update public.generations set status = status, model = model where id = 'aaaaaaaa-0000-4000-8000-000000000001';
  get diagnostics n = row_count;
  return n;
end $$;
select is(pg_temp.noop_update_count(), 1, 'an identical UPDATE from the app reports UPDATE 1');
select is((select updated_at from public.generations where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
          (select updated_at from before_noop), 'no-op update: updated_at unchanged');
select hasnt_trigger('public', 'generations', 'generations_z_suppress_noop_update', 'no trigger suppresses the app''s no-op updates');

-- A real change bumps it.
update public.generations set model = 'gpt-4o-image' where id = 'aaaaaaaa-0000-4000-8000-000000000001';
select ok((select updated_at > (select updated_at from before_noop) from public.generations
            where id = 'aaaaaaaa-0000-4000-8000-000000000001'), 'a real change bumps updated_at');

-- An explicit updated_at is kept (fixtures, repairs).
update public.generations set updated_at = '2020-01-01T00:00:00Z' where id = 'aaaaaaaa-0000-4000-8000-000000000001';
select is((select updated_at from public.generations where id = 'aaaaaaaa-0000-4000-8000-000000000001'),
          '2020-01-01T00:00:00Z'::timestamptz, 'an explicit updated_at is kept');

select * from finish();
rollback;
