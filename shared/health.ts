/**
 * The health function: liveness for anyone, and ?version=1 the preview version this deployment
 * stamps; with ?deep=1 (service role only, since it
 * reports queue figures and error text) the database, storage, queue depth, and every codec
 * rendering a tiny embedded sample through the real path (selftest.ts).
 *
 * Both also report the ffmpeg core's integrity as the workers met it (coreIntegrity): liveness
 * answers `{"status":"ok"}` only while no worker rejected the core recently, else 503
 * `{"status":"degraded","core":"rejected"}`; deep health adds the figures under checks.core.
 */
import { isServiceRequest } from './auth.ts';
import { getConfig } from './config.ts';
import { coreRejections, getSql, reconnecting, type Sql } from './db.ts';
import { errorResponse, json } from './http.ts';
import { useDeployedFfmpegCore } from './preview/core-source.ts';
import { checkCodecs } from './preview/selftest.ts';
import { previewVersion } from './preview/version.ts';
import { getAdminStorage } from './storage.ts';

export async function handleHealth(req: Request): Promise<Response> {
  const params = new URL(req.url).searchParams;
  // the preview version this deployment stamps (backfill --stale re-renders the others)
  if (params.get('version') === '1') {
    return json({ previewVersion: previewVersion(getConfig().preview) });
  }
  if (params.get('deep') !== '1') {
    const core = await cachedCoreIntegrity();
    return core.state === 'rejected'
      ? json({ status: 'degraded', core: 'rejected' }, 503)
      : json({ status: 'ok' });
  }
  if (!isServiceRequest(req, getConfig())) {
    return errorResponse(401, 'UNAUTHORIZED', 'health?deep=1 is for the service role');
  }
  const checks: Record<string, unknown> = {};
  let ok = true;
  try {
    const stats = await reconnecting(() =>
      getSql()`select type, preview_status, total, extract(epoch from oldest_waiting_age)::int as oldest_waiting_seconds, failures_by_code from public.preview_stats`
    );
    const jobs = await reconnecting(() =>
      getSql()`select kind, state, total, due, expired_leases, extract(epoch from oldest_age)::int as oldest_seconds, failures_by_code from public.preview_job_stats`
    );
    checks.database = { ok: true };
    checks.queue = stats;
    checks.jobs = jobs;
    const core = await coreIntegrity();
    checks.core = core;
    ok &&= core.state === 'ok';
  } catch (err) {
    ok = false;
    checks.database = { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  try {
    const { error } = await getAdminStorage().getBucket(getConfig().preview.bucket);
    checks.storage = error ? { ok: false, error: error.message } : { ok: true };
    ok &&= !error;
  } catch (err) {
    ok = false;
    checks.storage = { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  useDeployedFfmpegCore();
  const codecs = await checkCodecs();
  checks.codecs = codecs;
  ok &&= Object.values(codecs).every((c) => c.ok);
  return json({ status: ok ? 'ok' : 'degraded', checks }, ok ? 200 : 503);
}

/**
 * The ffmpeg core's integrity as the workers met it. A worker that fetches a core whose SHA-256 is
 * not the pinned one fails the job CORE_INTEGRITY (core-source.ts); the job stays in
 * preview_jobs, failed, for 30 days. `rejected`: such a failure in the last 24 hours and no video
 * row got its poster after it (a poster proves a worker compiled a verified core since; the
 * row's updated_at stands in for when, so an unrelated later update of a ready video row clears
 * it too). One small query on preview_jobs (done jobs are deleted: it holds live work and
 * failures); generations is looked at only after such a failure. No 32 MB download: deep
 * health's mp4 codec check fetches and verifies the core in its own isolate.
 */
export type CoreIntegrity =
  | { state: 'ok' }
  | { state: 'rejected'; failures: number; lastFailureAt: string; lastError: string | null }
  | { state: 'unknown'; error: string };

export async function coreIntegrity(sql?: Sql): Promise<CoreIntegrity> {
  try {
    const f = await coreRejections('24 hours', sql);
    if (!f || f.failures === 0 || !f.last_at || f.poster_since) return { state: 'ok' };
    return {
      state: 'rejected',
      failures: f.failures,
      lastFailureAt: new Date(f.last_at).toISOString(),
      lastError: f.last_error,
    };
  } catch (err) {
    return { state: 'unknown', error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * coreIntegrity for the liveness answer anyone may ask for: at most one query every 5 s per
 * isolate, and never more than 3 s of waiting (a database that does not answer is deep health's
 * finding; liveness then says ok, as before).
 */
const CORE_CACHE_MS = 5_000;
let coreCache: { at: number; report: Promise<CoreIntegrity> } | null = null;

function cachedCoreIntegrity(): Promise<CoreIntegrity> {
  if (!coreCache || performance.now() - coreCache.at > CORE_CACHE_MS) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<CoreIntegrity>((done) => {
      timer = setTimeout(() => done({ state: 'unknown', error: 'no answer within 3 s' }), 3_000);
    });
    const report = Promise.race([coreIntegrity(), timeout]).finally(() => clearTimeout(timer));
    coreCache = { at: performance.now(), report };
  }
  return coreCache.report;
}
