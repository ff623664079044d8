/**
 * The pending sync (pg_cron's kie-sync-pending job, through kie-sync {"mode":"pending"}): asks
 * KIE's record-info about tasks no callback settled, least recently asked first, inside a time
 * budget; what is left waits for the next minute. KIE's rate is not kept here: every record-info
 * call takes a slot of the database's kie_rate_acquire() (shared/kie/client.ts), one pace for
 * every pending sync running at once and every other caller.
 */
import { pendingKieTasks, recordKieChecks } from './db.ts';
import { type KieClient, KieRateLimitedError } from './kie/client.ts';
import { log } from './log.ts';
import { type SyncDeps, syncKieTask, type SyncReport } from './sync.ts';

/**
 * No record-info call starts after this: a call waits for its slot of KIE's rate only while the
 * budget lasts. One in flight ends within KIE_TIMEOUT_MS, so a run ends by about 30 s (pg_net's
 * timeout for this request, cron_kie_sync_pending) at worst, and minute runs never overlap
 * (docs/reliability.md, Timeouts).
 */
const PENDING_SWEEP_BUDGET_MS = 20_000;
/**
 * Syncs in flight at once. The pace is KIE's rate (a slot every 110 ms); what is in flight only has
 * to outlast the slow answers: a record-info call that hangs holds its place for KIE_TIMEOUT_MS
 * (10 s). With 4 places, four hanging tasks at the front of a batch stopped the run for 10 s each
 * (16 of 150 tasks asked in a minute when KIE was failing); with 16, a run keeps its pace while up
 * to one task a second hangs (10 in flight at a time), and a KIE that hangs for everyone costs at
 * most 16 calls at once (measured: tests/faults/chaos.test.ts).
 */
const PENDING_SYNC_CONCURRENCY = 16;

/**
 * What one run did, in counts only: this is all a dispatched run answers (pg_net keeps the answer
 * in net._http_response, which anon can read).
 */
export type PendingCounts = {
  /** Tasks in the batch (pending_kie_tasks). */
  tasks: number;
  /** Tasks KIE was asked about. */
  asked: number;
  /** Rows the answers changed. */
  changed: number;
  /** Asks that failed (record-info or the write): asked again by a later run. */
  failed: number;
  /** Tasks not asked in this run (the budget or KIE's rate): the next run takes them first. */
  left: number;
};

/** A run: its counts, and each asked task's report (for the service role only). */
export type PendingRun = PendingCounts & { results: SyncReport[] };

/** One run: up to `batch` pending tasks, each through syncKieTask; records which were asked. */
export async function syncPendingTasks(
  batch: number,
  deps: SyncDeps,
  budgetMs = PENDING_SWEEP_BUDGET_MS,
): Promise<PendingRun> {
  const tasks = await pendingKieTasks(batch);
  const deadline = performance.now() + budgetMs;
  let outOfTime = false;
  const notAsked = new Set<string>();
  const failed = new Set<string>();
  // The record-info calls of this run may wait for their slot only while the budget lasts.
  const inner = deps.kie;
  const kie: KieClient | null = inner && {
    async recordInfo(taskId, family) {
      try {
        return await inner.recordInfo(taskId, family, {
          maxWaitMs: Math.max(0, Math.floor(deadline - performance.now())),
        });
      } catch (err) {
        if (err instanceof KieRateLimitedError) {
          outOfTime = true;
          notAsked.add(taskId);
        } else {
          failed.add(taskId);
        }
        throw err;
      }
    },
  };
  const results: SyncReport[] = [];
  const inFlight = new Set<Promise<void>>();
  for (const { task_id: taskId } of tasks) {
    if (outOfTime || performance.now() >= deadline) break;
    const p: Promise<void> = syncKieTask({ taskId, source: 'cron' }, { ...deps, kie }).then(
      (r) => void results.push(r),
      (err) => {
        log.error(
          '[Sync]',
          `Pending sync of ${taskId} failed: ${err instanceof Error ? err.message : err}`,
        );
        failed.add(taskId);
        results.push({
          taskId,
          found: true,
          changed: false,
          note: 'sync failed; left for the next run',
        });
      },
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= PENDING_SYNC_CONCURRENCY) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const asked = results.filter((r) => !notAsked.has(r.taskId));
  // least recently asked first next time: tasks KIE never finishes cannot fill every batch (a
  // task this run did not get to keeps its place at the front)
  await recordKieChecks(asked.map((r) => r.taskId));
  const counts: PendingCounts = {
    tasks: tasks.length,
    asked: asked.length,
    changed: asked.filter((r) => r.changed).length,
    failed: asked.filter((r) => failed.has(r.taskId)).length,
    left: tasks.length - asked.length,
  };
  log.info('[Sync]', 'Pending sweep done', { ...counts });
  return { ...counts, results: asked };
}
