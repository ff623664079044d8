/**
 * The `delete_object` job's handler: objects follow their rows. Deletes what the database queued
 * (a deleted row's preview, poster, clip and original copy; a replaced original; orphans) through
 * the Storage API, up to a hundred objects in one call. Deleting an object that is already gone is
 * not an error, so a repeat is harmless; a failed call fails every job of the batch through the
 * runner's one failure path (retried with the one backoff, up to the one attempt cap).
 */
import type { JobHandler } from '../jobs/runner.ts';
import type { ObjectStore } from '../storage.ts';

export function cleanupHandler(deps: { objects: ObjectStore }): JobHandler {
  return {
    prefix: '[Cleanup]',
    success: 'Deleted',
    batch: 100,
    async runBatch(jobs, ctx) {
      const current = await Promise.all(ctx.map((c) => c.isCurrent()));
      const paths = jobs.filter((_, i) => current[i]).map((j) => String(j.input.path));
      if (paths.length) await deps.objects.remove(paths);
      return jobs.map((j, i) =>
        current[i]
          ? { result: {}, fields: { reason: String(j.input.reason) } }
          : { fenced: 'claim_lost_before_delete' }
      );
    },
  };
}
