/**
 * The generate-preview function, for the service role and the database's wakes (the dispatch
 * secret). A worker pulls: `{"wake": id}` (sent by wake_preview_workers) drains every due job, of
 * every kind, while this isolate has budget, then ends its wake (which wakes a successor when jobs
 * remain). `{"decide": true}` (queued by a transaction that gave up waiting for the wake lock)
 * only makes the wake decision, once the lock is free. Answers 202 and works in
 * EdgeRuntime.waitUntil, or with ?wait=1 answers once the work is done.
 *
 * The dispatch secret only wakes: pg_net's queue, where the database's requests wait with it, is
 * readable by anon. A caller holding it alone may send those two bodies and nothing else (a wake
 * must name a wake the database sent), and gets counts back, never ids, paths or error texts:
 * pg_net keeps every answer in net._http_response, which anon reads too. Ids (`generationId`,
 * `generationIds`, or a database webhook's `record.id`: the backfill, a manual run) run those
 * rows' jobs now, queuing a preview for a row that wants one, for the service role only and at
 * most MAX_NAMED_IDS of them a request.
 */
import { isDispatchRequest, isServiceRequest } from '../auth.ts';
import { getConfig } from '../config.ts';
import { getSql, reconnecting } from '../db.ts';
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
import { renderWaveform } from './audio.ts';
import { fetchSource } from './fetch.ts';
import { type PreviewDeps, previewHandler } from './generate.ts';
import { renderPhotoPreview } from './photo.ts';
import { extractPoster } from './video.ts';

declare const EdgeRuntime: { waitUntil(p: Promise<unknown>): void } | undefined;

/** A worker that declined (its isolate spent) waits this long before waking a successor. */
const DECLINED_PAUSE_MS = 1_000;
/** After ending its wake, a worker looks for due jobs once more after this long. */
const RECHECK_AFTER_END_MS = 1_000;
/**
 * Most rows one request may name (the backfill names one). Each id costs an adopt and a claim in
 * this isolate, and a body of thousands would keep the isolate busy past its limits while it holds
 * the claim of a row named last.
 */
export const MAX_NAMED_IDS = 100;

export function previewDeps(): PreviewDeps {
  const config = getConfig();
  const limits = {
    maxBytes: config.preview.maxSourceBytes,
    timeoutMs: config.preview.downloadTimeoutMs,
    allowedPrivateHosts: config.preview.allowedPrivateHosts,
  };
  return {
    objects: createObjectStore(),
    fetchSource: (url, beside) => fetchSource(url, limits, {}, beside),
    renderPhoto: renderPhotoPreview,
    renderPoster: extractPoster,
    renderWaveform,
    config,
  };
}

/** The handler of each job kind. */
export function jobHandlers(deps: PreviewDeps = previewDeps()): Handlers {
  return {
    preview: previewHandler(deps),
    animated: animatedHandler({ ...deps, renderAnimated }),
    delete_object: cleanupHandler(deps),
    relay: relayHandler({ hmacKey: () => getConfig().kie.webhookHmacKey }),
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

/** Whether a body names rows in any form, valid or not (what the dispatch secret may not do). */
function namesRows(body: Record<string, unknown>): boolean {
  return 'generationId' in body || 'generationIds' in body || 'record' in body;
}

/** How many ids a body names, before any is checked or deduplicated. */
function namedCount(body: Record<string, unknown>): number {
  return (body.generationId !== undefined ? 1 : 0) +
    (Array.isArray(body.generationIds) ? body.generationIds.length : 0);
}

/** The wake id of a body ({"wake": n}), or null. */
function wakeOf(body: Record<string, unknown>): string | null {
  const w = body.wake;
  return (typeof w === 'number' && Number.isSafeInteger(w) && w > 0) ||
      (typeof w === 'string' && /^[1-9][0-9]{0,18}$/.test(w))
    ? String(w)
    : null;
}

/**
 * Whether the database sent this wake and it has not ended (a row of preview_worker_wakes). Under
 * the one retry policy of every database call, as the dispatch secret's check before it.
 */
async function wakeSent(wake: string): Promise<boolean> {
  if (BigInt(wake) > 9223372036854775807n) return false; // past bigint: no wake has that id
  const [row] = await reconnecting(() =>
    getSql()<{ sent: boolean }[]>`
    select exists (select 1 from public.preview_worker_wakes w where w.id = ${wake}::bigint) as sent`
  );
  return row?.sent === true;
}

/** What a dispatched ?wait=1 wake answers: how many jobs ran, by result. Counts only. */
export function outcomeCounts(outcomes: JobOutcome[]): Record<string, number> {
  const counts: Record<string, number> = {
    jobs: outcomes.length,
    ready: 0,
    retry: 0,
    failed: 0,
    fenced: 0,
    skipped: 0,
    declined: 0,
  };
  for (const o of outcomes) counts[o.result] = (counts[o.result] ?? 0) + 1;
  return counts;
}

export async function handleGeneratePreview(req: Request): Promise<Response> {
  const config = getConfig();
  useDeployedFfmpegCore();
  const service = isServiceRequest(req, config);
  if (!service && !(await isDispatchRequest(req))) {
    return errorResponse(
      401,
      'UNAUTHORIZED',
      "generate-preview is for the service role and the database's wakes",
    );
  }
  const body = await readJson(req);
  if (body === null) return errorResponse(400, 'BAD_REQUEST', 'Body is not a JSON object');
  const wait = new URL(req.url).searchParams.get('wait') === '1';
  if (!service) return await dispatched(body, wait);
  if (namedCount(body) > MAX_NAMED_IDS) {
    return errorResponse(
      400,
      'BAD_REQUEST',
      `At most ${MAX_NAMED_IDS} generation ids a request: send more requests`,
    );
  }
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

/**
 * A request with the dispatch secret alone: {"wake": n} naming a wake the database sent, or
 * {"decide": true}; anything naming rows is refused before any work. Answers carry counts only.
 */
async function dispatched(body: Record<string, unknown>, wait: boolean): Promise<Response> {
  if (namesRows(body)) {
    return errorResponse(
      403,
      'FORBIDDEN',
      'The dispatch secret only wakes workers ({"wake": n} or {"decide": true}): naming rows ' +
        '(generationId, generationIds, record) needs the service role',
    );
  }
  if (body.decide === true) {
    const work = settle(() => createJobStore().decide(), null);
    return await answer(work, wait, () => ({ decided: true }), true);
  }
  const wake = wakeOf(body);
  if (!wake) {
    return errorResponse(
      400,
      'BAD_REQUEST',
      'Nothing to run: send {"wake": n} or {"decide": true}',
    );
  }
  if (!(await wakeSent(wake))) {
    return errorResponse(403, 'FORBIDDEN', 'Not a wake the database sent (or it has ended)');
  }
  const work = drainWake(createJobStore(), jobHandlers(), wake);
  return await answer(work, wait, outcomeCounts, true);
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

/**
 * A woken worker: every due job while the isolate has budget, then its wake ends. A worker whose
 * isolate declined ends its wake then (a moment later), not when the jobs it parked on slow sources
 * end: those wait on the network, and the due jobs behind them get a successor meanwhile.
 */
async function drainWake(store: JobStore, handlers: Handlers, wake: string): Promise<JobOutcome[]> {
  let outcomes: JobOutcome[] = [];
  let ended: Promise<void> | null = null;
  // A spent isolate keeps receiving requests until the platform retires it: the successor is
  // woken a moment later, not at once into the same isolate.
  const endWake = (pauseMs: number) =>
    ended ??= new Promise((done) => setTimeout(done, pauseMs))
      .then(() => settle(() => store.endWake(wake), wake));
  try {
    ({ outcomes } = await drain({
      store,
      handlers,
      wake,
      onDeclined: () => endWake(DECLINED_PAUSE_MS),
    }));
  } catch (err) {
    log.error('[Preview]', `❌ Worker stopped: ${(err as Error).message}`, {
      wake,
      code: 'INTERNAL',
      next: 'sweep',
    });
  }
  await endWake(0);
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
