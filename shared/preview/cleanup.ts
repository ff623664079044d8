/**
 * Objects follow their rows: deletes what the database queued (preview_object_deletions: a
 * deleted row's preview, poster and original copy; a replaced original; orphans) through the
 * Storage API, a batch at a time, until nothing is due or the budget is spent. A failed batch
 * is due again after the one backoff; deleting an object that is already gone is not an error,
 * so a repeat is harmless.
 */
import type { DeletionStore } from '../db.ts';
import { log } from '../log.ts';
import type { ObjectStore } from '../storage.ts';

const BATCH = 100;

export async function runCleanup(
  deps: { store: DeletionStore; objects: ObjectStore },
  budgetMs = 20_000,
): Promise<{ deleted: number; failed: number }> {
  const deadline = performance.now() + budgetMs;
  let deleted = 0;
  let failed = 0;
  while (performance.now() < deadline) {
    const batch = await deps.store.claim(BATCH);
    if (batch.length === 0) break;
    const paths = batch.map((b) => b.path);
    try {
      await deps.objects.remove(paths);
      await deps.store.complete(paths);
      for (const b of batch) log.info('[Cleanup]', 'Deleted', { path: b.path, attempt: b.attempt });
      deleted += paths.length;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await deps.store.fail(paths, message);
      log.error('[Cleanup]', `❌ Delete failed: ${message}`, {
        objects: paths.length,
        next: 'backoff',
      });
      failed += paths.length;
      break;
    }
  }
  return { deleted, failed };
}
