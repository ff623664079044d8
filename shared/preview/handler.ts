/**
 * The generate-preview function, for the service role and the database's wakes (the dispatch
 * secret). A worker pulls: `{"wake": id}` (sent by wake_preview_workers) drains every due job, of
 * every kind, while this isolate has budget, then ends its wake (which wakes a successor when jobs
 * remain). `{"decide": true}` (queued by a transaction that gave up waiting for the wake lock)
 * only makes the wake decision, once the lock is free. Ids (`generationId`, `generationIds`, or a database webhook's `record.id`: the backfill,
 * a manual run) run those rows' jobs now, queuing a preview for a row that wants one. Answers 202
 * and works in EdgeRuntime.waitUntil, or with ?wait=1 answers with each job's outcome.
 */
import { isDispatchRequest, isServiceRequest } from '../auth.ts';
import { getConfig } from '../config.ts';
import { errorResponse, json, readJson } from '../http.ts';
import { drain, type Handlers, type JobOutcome } from '../jobs/runner.ts';
import { createJobStore, type JobStore } from '../jobs/store.ts';
import { log } from '../log.ts';
import { relayHandler } from '../kie/relay.ts';
import { createObjectStore } from '../storage.ts';
import { renderAnimated } from './animated.ts';
import { animatedHandler } from './animated-job.ts';
import { cleanupHandler } from './cleanup.ts';
import { useDeployedFfmpegCore } from './core-source.ts';
import { fetchSource } from './fetch.ts';
import { type PreviewDeps, previewHandler } from './generate.ts';
import { renderPhotoPreview } from './photo.ts';
import { extractPoster } from './video.ts';

declare const EdgeRuntime: { waitUntil(p: Promise<unknown>): void } | undefined;

/** A worker that declined (its isolate spent) waits this long before waking a successor. */
const DECLINED_PAUSE_MS = 1_000;
/** After ending its wake, a worker looks for due jobs once more after this long. */
const RECHECK_AFTER_END_MS = 1_000;

export function previewDeps(): PreviewDeps {
  const config = getConfig();
  const limits = {
    maxBytes: config.preview.maxSourceBytes,
    timeoutMs: config.preview.downloadTimeoutMs,
    allowedPrivateHosts: config.preview.allowedPrivateHosts,
  };
  return {
    objects: createObjectStore(),
    fetchSource: (url) => fetchSource(url, limits),
    renderPhoto: renderPhotoPreview,
    renderPoster: extractPoster,
    config,
  };
}

/** The handler of each job kind. */
export function jobHandlers(deps: PreviewDeps = previewDeps()): Handlers {
  return {
    preview: previewHandler(deps),
    animated: animatedHandler({ ...deps, renderAnimated }),
    delete_object: cleanupHandler(deps),
    relay: relayHandler(),
  };
}

/** The ids a generate-preview body names: plain, or a database webhook's record. */
export function generationIdsOf(body: Record<string, unknown>): string[] {
  const ids: unknown[] = [];
  if (typeof body.generationId === 'string') ids.push(body.generationId);
  if (Array.isArray(body.generationIds)) ids.push(...body.generationIds);
  const record = body.record as Record<string, unknown> | undefined;
  if (ids.length === 0 && record && typeof record.id === 'string') ids.push(record.id);
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  return [...new Set(ids.filter((v): v is string => typeof v === 'string' && uuid.test(v)))];
}

/** The wake id of a body ({"wake": n}), or null. */
function wakeOf(body: Record<string, unknown>): string | null {
  const w = body.wake;
  return (typeof w === 'number' && Number.isSafeInteger(w) && w > 0) ||
      (typeof w === 'string' && /^[1-9][0-9]{0,18}$/.test(w))
    ? String(w)
    : null;
}

export async function handleGeneratePreview(req: Request): Promise<Response> {
  const config = getConfig();
  useDeployedFfmpegCore();
  if (!isServiceRequest(req, config) && !(await isDispatchRequest(req))) {
    return errorResponse(
      401,
      'UNAUTHORIZED',
      "generate-preview is for the service role and the database's wakes",
    );
  }
  const body = await readJson(req);
  if (body === null) return errorResponse(400, 'BAD_REQUEST', 'Body is not a JSON object');
  const wait = new URL(req.url).searchParams.get('wait') === '1';
  const wake = wakeOf(body);
  const ids = generationIdsOf(body);
  if (body.decide === true) {
    // a transaction gave up waiting for the wake lock: decide once it is free (after that
    // transaction committed, when its jobs are visible)
    const work = settle(() => createJobStore().decide(), null);
    return await answer(work, wait, () => ({ decided: true }), 'decide');
  }
  if (!wake && ids.length === 0) {
    return errorResponse(
      400,
      'BAD_REQUEST',
      'Nothing to run: no wake and no generation id (generationId, generationIds or record.id)',
    );
  }
  const store = createJobStore();
  const handlers = jobHandlers();
  const work = wake ? drainWake(store, handlers, wake) : runRows(store, handlers, ids);
  return await answer(work, wait, (results) => ({ results }), wake ? { wake } : ids);
}

/** With ?wait=1 the work's result; else 202 at once, the work kept alive by EdgeRuntime.waitUntil. */
async function answer<T>(
  work: Promise<T>,
  wait: boolean,
  result: (done: T) => Record<string, unknown>,
  accepted: unknown,
): Promise<Response> {
  if (wait) return json(result(await work));
  if (typeof EdgeRuntime !== 'undefined') EdgeRuntime.waitUntil(work);
  return json({ accepted }, 202);
}

/** A woken worker: every due job while the isolate has budget, then its wake ends. */
async function drainWake(store: JobStore, handlers: Handlers, wake: string): Promise<JobOutcome[]> {
  let outcomes: JobOutcome[] = [];
  let declined: string | null = null;
  try {
    ({ outcomes, declined } = await drain({ store, handlers, wake }));
  } catch (err) {
    log.error('[Preview]', `❌ Worker stopped: ${(err as Error).message}`, {
      wake,
      code: 'INTERNAL',
      next: 'sweep',
    });
  }
  // A spent isolate keeps receiving requests until the platform retires it: the successor is
  // woken a moment later, not at once into the same isolate.
  if (declined) await new Promise((done) => setTimeout(done, DECLINED_PAUSE_MS));
  await settle(() => store.endWake(wake), wake);
  // A row committed while this worker ended was not visible to its decision, and the row's own
  // transaction found the wake lock taken: look once more a moment later (the minute sweep is the
  // backstop).
  await new Promise((done) => setTimeout(done, RECHECK_AFTER_END_MS));
  await settle(() => store.decide(), wake);
  return outcomes;
}

/** Named rows: each row's preview queued when it wants one, then its due jobs run now. */
async function runRows(store: JobStore, handlers: Handlers, ids: string[]): Promise<JobOutcome[]> {
  const outcomes: JobOutcome[] = [];
  for (const id of ids) {
    try {
      await store.adopt(id);
      const r = await drain({ store, handlers, generationId: id });
      outcomes.push(...r.outcomes);
      if (r.declined) {
        outcomes.push({ generationId: id, result: 'declined', code: 'WORKER_BUSY' });
      } else if (r.outcomes.length === 0) {
        log.info('[Preview]', 'Skipped', { generationId: id, reason: 'no_due_job' });
        outcomes.push({ generationId: id, result: 'skipped' });
      }
    } catch (err) {
      // one row's trouble (a database hiccup in a claim or a failure) must not stop the others
      const message = err instanceof Error ? err.message : String(err);
      log.error('[Preview]', `❌ Failed for ${id}: ${message}`, {
        code: 'INTERNAL',
        next: 'sweep',
      });
      outcomes.push({ generationId: id, result: 'retry', code: 'INTERNAL', error: message });
    }
  }
  // jobs queued meanwhile (a clip, a declined row) get workers
  await settle(() => store.decide(), null);
  return outcomes;
}

async function settle(fn: () => Promise<number>, wake: string | null): Promise<void> {
  try {
    const woken = await fn();
    if (woken > 0) log.info('[Preview]', 'Woke', { wake: wake ?? undefined, workers: woken });
  } catch (err) {
    log.error('[Preview]', `Waking workers failed: ${(err as Error).message}`, {
      wake: wake ?? undefined,
      next: 'sweep',
    });
  }
}
