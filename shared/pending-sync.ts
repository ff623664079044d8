/**
 * The pending sync (pg_cron's kie-sync-pending job, through kie-sync {"mode":"pending"}): asks
 * KIE's record-info about tasks no callback settled, least recently asked first, at KIE's rate
 * and inside a time budget; what is left waits for the next minute.
 */
import { pendingKieTasks, recordKieChecks } from './db.ts';
import { log } from './log.ts';
import { type SyncDeps, syncKieTask, type SyncReport } from './sync.ts';

/**
 * No record-info call starts after this; one in flight ends within KIE_TIMEOUT_MS, so a run
 * ends by about 30 s (pg_net's timeout for this request, cron_kie_sync_pending) at worst, and
 * minute runs never overlap (docs/reliability.md, Timeouts).
 */
const PENDING_SWEEP_BUDGET_MS = 20_000;
/** KIE allows about 10 record-info requests a second per key: one starts every 110 ms at most. */
const RECORD_INFO_INTERVAL_MS = 110;
/** Syncs in flight at once (a slow answer does not hold the pace back). */
const PENDING_SYNC_CONCURRENCY = 4;

/**
 * Runs sync for each task at KIE's rate (a start every RECORD_INFO_INTERVAL_MS, a few in flight)
 * until the budget is spent; what is left waits for the next run (least recently asked first).
 */
async function syncPaced(
  taskIds: string[],
  sync: (taskId: string) => Promise<SyncReport>,
): Promise<SyncReport[]> {
  const results: SyncReport[] = [];
  const deadline = performance.now() + PENDING_SWEEP_BUDGET_MS;
  const inFlight = new Set<Promise<void>>();
  let nextStart = performance.now();
  for (const taskId of taskIds) {
    if (performance.now() > deadline) break;
    const wait = nextStart - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    nextStart = Math.max(nextStart, performance.now()) + RECORD_INFO_INTERVAL_MS;
    const p: Promise<void> = sync(taskId).then(
      (r) => void results.push(r),
      (err) => {
        log.error(
          '[Sync]',
          `Pending sync of ${taskId} failed: ${err instanceof Error ? err.message : err}`,
        );
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
  return results;
}

/** One run: up to `batch` pending tasks, each through syncKieTask; records which were asked. */
export async function syncPendingTasks(batch: number, deps: SyncDeps): Promise<SyncReport[]> {
  const tasks = await pendingKieTasks(batch);
  const results = await syncPaced(
    tasks.map((t) => t.task_id),
    (taskId) => syncKieTask({ taskId, source: 'cron' }, deps),
  );
  // least recently asked first next time: tasks KIE never finishes cannot fill every batch
  await recordKieChecks(results.map((r) => r.taskId));
  log.info('[Sync]', 'Pending sweep done', {
    tasks: tasks.length,
    changed: results.filter((r) => r.changed).length,
  });
  return results;
}
