/**
 * The health function: liveness for anyone, and ?version=1 the preview version this deployment
 * stamps; with ?deep=1 (service role only, since it
 * reports queue figures and error text) the database, storage, queue depth, and every codec
 * rendering a tiny embedded sample through the real path (selftest.ts).
 */
import { isServiceRequest } from './auth.ts';
import { getConfig } from './config.ts';
import { getSql } from './db.ts';
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
  if (params.get('deep') !== '1') return json({ status: 'ok' });
  if (!isServiceRequest(req, getConfig())) {
    return errorResponse(401, 'UNAUTHORIZED', 'health?deep=1 is for the service role');
  }
  const checks: Record<string, unknown> = {};
  let ok = true;
  try {
    const stats =
      await getSql()`select type, preview_status, total, extract(epoch from oldest_waiting_age)::int as oldest_waiting_seconds, failures_by_code from public.preview_stats`;
    const jobs =
      await getSql()`select kind, state, total, due, expired_leases, extract(epoch from oldest_age)::int as oldest_seconds, failures_by_code from public.preview_job_stats`;
    checks.database = { ok: true };
    checks.queue = stats;
    checks.jobs = jobs;
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
