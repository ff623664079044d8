-- Baseline 9/10, indexes: the partial indexes of the work on generations, built CONCURRENTLY:
-- production's table is large and takes writes all the time, and a plain CREATE INDEX would block
-- every write for the whole build. The supabase CLI runs each migration file in one transaction,
-- but since 2.109 it runs CREATE INDEX CONCURRENTLY statements on their own, outside that
-- transaction; nothing else is in this file. An interrupted build leaves an INVALID index that
-- `if not exists` would keep: `npm run doctor` reports it with the statements that rebuild it.
--
-- The predicates are written with the rule functions (immutable, inlined), so the planner matches
-- them to the queries that use the same functions. Existing platform indexes (task_id, user_id,
-- created_at, the old worker's) are left alone and reused. The jobs' own indexes are in the schema
-- file (preview_jobs is ours and small).

-- Rows that may still need preview work: the sweep, the backfill's keyset walk, doctor. After the
-- backfill this is small.
create index concurrently if not exists generations_preview_todo_idx
  on public.generations (created_at, id)
  where public.generation_succeeded(status::text) and coalesce(preview_status, 'none') <> 'ready';

-- Tasks still running at KIE: the scheduled kie-sync and fail_expired_kie_tasks.
create index concurrently if not exists generations_kie_running_idx
  on public.generations (created_at)
  where task_id is not null and public.kie_task_running(status::text);
