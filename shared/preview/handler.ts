/**
 * The generate-preview function: the service role or a pg_net dispatch; takes the trigger's body, a database
 * webhook's or a plain {generationId}; answers 202 and works in EdgeRuntime.waitUntil, or
 * with ?wait=1 answers with each item's outcome (backfill, tests). {"cleanup": true} runs the
 * object lifecycle's queued deletions instead, {"animatedId": id} a video's animated preview.
 */
import { isDispatchRequest, isServiceRequest } from '../auth.ts';
import { getConfig } from '../config.ts';
import { createAnimatedStore, createDeletionStore, createPreviewStore } from '../db.ts';
import { errorResponse, json, readJson } from '../http.ts';
import { log } from '../log.ts';
import { createObjectStore } from '../storage.ts';
import { renderAnimated } from './animated.ts';
import { generateAnimated } from './animated-job.ts';
import { runCleanup } from './cleanup.ts';
import { fetchSource } from './fetch.ts';
import { useDeployedFfmpegCore } from './core-source.ts';
import { generatePreview, type PreviewDeps, type PreviewOutcome } from './generate.ts';
import { isolateBudget, runJob } from './isolate.ts';
import { renderPhotoPreview } from './photo.ts';
import { extractPoster } from './video.ts';

declare const EdgeRuntime: { waitUntil(p: Promise<unknown>): void } | undefined;

export function previewDeps(): PreviewDeps {
  const config = getConfig();
  const limits = {
    maxBytes: config.preview.maxSourceBytes,
    timeoutMs: config.preview.downloadTimeoutMs,
    allowedPrivateHosts: config.preview.allowedPrivateHosts,
  };
  return {
    store: createPreviewStore(),
    objects: createObjectStore(),
    fetchSource: (url) => fetchSource(url, limits),
    renderPhoto: renderPhotoPreview,
    renderPoster: extractPoster,
    config,
  };
}

/** The ids a generate-preview body names: the trigger's / a database webhook's, or plain. */
export function generationIdsOf(body: Record<string, unknown>): string[] {
  const ids: unknown[] = [];
  if (typeof body.generationId === 'string') ids.push(body.generationId);
  if (Array.isArray(body.generationIds)) ids.push(...body.generationIds);
  const record = body.record as Record<string, unknown> | undefined;
  if (ids.length === 0 && record && typeof record.id === 'string') ids.push(record.id);
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  return [...new Set(ids.filter((v): v is string => typeof v === 'string' && uuid.test(v)))];
}

export async function handleGeneratePreview(req: Request): Promise<Response> {
  const config = getConfig();
  useDeployedFfmpegCore();
  if (!isServiceRequest(req, config) && !(await isDispatchRequest(req))) {
    return errorResponse(
      401,
      'UNAUTHORIZED',
      "generate-preview is for the service role and the database's dispatches",
    );
  }
  const body = await readJson(req);
  if (body === null) return errorResponse(400, 'BAD_REQUEST', 'Body is not a JSON object');
  const wait = new URL(req.url).searchParams.get('wait') === '1';
  if (body.cleanup === true) {
    // the object lifecycle's deletions (dispatched by the delete trigger and the minute job)
    const work = runCleanup({ store: createDeletionStore(), objects: createObjectStore() });
    if (wait) return json(await work);
    if (typeof EdgeRuntime !== 'undefined') EdgeRuntime.waitUntil(work);
    return json({ accepted: 'cleanup' }, 202);
  }
  if (typeof body.animatedId === 'string') {
    // a video's animated preview (requested after its poster when PREVIEW_ANIMATED is on)
    const id = generationIdsOf({ generationId: body.animatedId })[0];
    if (!id) return errorResponse(400, 'BAD_REQUEST', 'animatedId is not a generation id');
    const work = runJob(() =>
      generateAnimated(id, { ...previewDeps(), store: createAnimatedStore(), renderAnimated })
    ).then((r) => 'done' in r ? r.done : declined(id, r.declined, 'animated'));
    if (wait) return json({ results: [await work] });
    if (typeof EdgeRuntime !== 'undefined') EdgeRuntime.waitUntil(work);
    return json({ accepted: [id] }, 202);
  }
  const ids = generationIdsOf(body);
  if (ids.length === 0) {
    return errorResponse(
      400,
      'BAD_REQUEST',
      'No generation id (generationId, generationIds or record.id)',
    );
  }
  const deps = previewDeps();
  const run = async () => {
    const results: PreviewOutcome[] = [];
    for (const id of ids) {
      const r = await runJob((hold) => previewOne(id, { ...deps, hold }));
      results.push('done' in r ? r.done : declined(id, r.declined));
    }
    // Declined rows go back to the queue, and the freed slots are filled (bounded dispatch).
    const handedBack = results.filter((r) => r.result === 'declined').map((r) => r.generationId);
    try {
      if (handedBack.length) await deps.store.releaseDispatches(handedBack);
      await deps.store.dispatchNext();
    } catch (err) {
      log.error('[Preview]', `Dispatching the next rows failed: ${(err as Error).message}`, {
        next: 'sweep',
      });
    }
    return results;
  };
  if (wait) return json({ results: await run() });
  const work = run();
  if (typeof EdgeRuntime !== 'undefined') EdgeRuntime.waitUntil(work);
  return json({ accepted: ids }, 202);
}

/** A job this isolate would not take (busy past its budget, or ending): logged, not claimed. */
function declined(id: string, reason: string, step?: 'animated'): PreviewOutcome {
  log.info('[Preview]', 'Declined', { generationId: id, step, reason, ...isolateBudget() });
  return { generationId: id, result: 'declined', code: 'WORKER_BUSY' };
}

/** One id's job; its trouble (a database hiccup in claim or fail) must not stop the others. */
async function previewOne(id: string, deps: PreviewDeps): Promise<PreviewOutcome> {
  try {
    return await generatePreview(id, deps);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error('[Preview]', `❌ Failed for ${id}: ${message}`, { code: 'INTERNAL', next: 'sweep' });
    return { generationId: id, result: 'retry', code: 'INTERNAL', error: message };
  }
}
