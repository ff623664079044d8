/**
 * Fault-injection helpers for tests/faults: the functions' env of the running stack, storage
 * upload faults and live isolates of the gateway, "time travel" on a row (move its lease or
 * its retry time into the past instead of waiting), the preview sweep, success rows whose
 * asset_url says anything at all (a callback with the real secret and signature), and the
 * invariant every fault case ends with.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { ERROR_CODES } from '../../shared/errors.ts';
import { generation, type GenerationRow, insertGeneration, postCallback, SERVICE_KEY, sql, stack, waitFor } from './stack.ts';
import { MODELS } from './flow.ts';
import { parseEnvFile } from '../../local/env-file.ts';

/** The functions' environment of this stack (local/stack.sh writes functions.env). */
export function functionsEnv(): Record<string, string> {
  const file = `${stack.STACK_DIR}/functions.env`;
  return existsSync(file) ? parseEnvFile(readFileSync(file, 'utf8')) : {};
}

export const downloadTimeoutMs = () => Number(functionsEnv().PREVIEW_DOWNLOAD_TIMEOUT_MS ?? 20_000);
export const maxSourceBytes = () => Number(functionsEnv().PREVIEW_MAX_SOURCE_BYTES ?? 100 * 1024 * 1024);

/** The next `times` uploads whose object name contains `pattern` fail with 503. Replaces earlier faults. */
export async function failUploads(pattern: string, times: number): Promise<void> {
  const res = await fetch(`${stack.API_URL}/_local/faults`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ failUploads: times > 0 ? [{ pattern, times }] : [] }),
  });
  expect(res.status).toBe(200);
}

export type IsolateInfo = { fn: string; pid: number; busy: boolean; requestId: string | null; body: string | null; sinceMs: number | null };

export async function isolates(): Promise<IsolateInfo[]> {
  const res = await fetch(`${stack.API_URL}/_local/isolates`, { headers: { authorization: `Bearer ${SERVICE_KEY}` } });
  expect(res.status).toBe(200);
  return (await res.json()).isolates;
}

/** Retires `fn`'s active isolates (as the platform does at its CPU soft limit): the next request starts a new one. */
export async function retireIsolates(fn: string): Promise<number> {
  const res = await fetch(`${stack.API_URL}/_local/isolates/retire`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ fn }),
  });
  expect(res.status).toBe(200);
  return (await res.json()).retired;
}

/** The isolate of `fn` whose current request names `needle` (e.g. a generation id). */
export function isolateServing(fn: string, needle: string, timeoutMs = 15_000): Promise<IsolateInfo> {
  return waitFor(`an isolate of ${fn} serving ${needle}`, async () =>
    (await isolates()).find((i) => i.fn === fn && i.busy && i.body?.includes(needle)), timeoutMs, 50);
}

/** Moves a processing row's lease start past the lease (as if the lease had run out). */
export async function expireLease(id: string): Promise<void> {
  await sql`update public.generations set preview_started_at = now() - public.preview_lease() - interval '1 second'
            where id = ${id} and preview_status = 'processing'`;
}

/** Makes a failed row's retry due now (as if its backoff had passed). */
export async function retryDueNow(id: string): Promise<void> {
  await sql`update public.generations set preview_next_attempt_at = now() - interval '1 second'
            where id = ${id} and preview_status = 'failed' and preview_next_attempt_at is not null`;
}

/** What pg_cron's `preview-sweep` job runs every minute, run now. */
export async function sweepNow(): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select public.dispatch_preview_sweep() as n`;
  return r.n;
}

/** Waits until the row has finished attempt `attempt` (ready, or failed with or without a retry due). */
export function waitForAttempt(id: string, attempt: number, timeoutMs = 60_000): Promise<GenerationRow> {
  return waitFor(`attempt ${attempt} of ${id} to settle`, async () => {
    const r = await generation(id);
    return r.preview_attempts >= attempt && (r.preview_status === 'ready' || r.preview_status === 'failed') ? r : null;
  }, timeoutMs, 200);
}

/** A KIE success callback in the market family's shape, for any result URL. */
export function successCallback(taskId: string, url: string) {
  return { code: 200, msg: 'success', data: { taskId, state: 'success', resultJson: JSON.stringify({ resultUrls: [url] }) } };
}

/**
 * A generation row (pending, a task id KIE never saw) that a callback with the real secret and
 * signature then marks success with `assetUrl`: the path a forged or hostile callback takes.
 */
export async function successRowWithAsset(userId: string, assetUrl: string, type: 'photo' | 'video' = 'photo', taskId = `task-${randomUUID()}`) {
  const id = await insertGeneration({ userId, type, taskId, model: MODELS.market });
  const res = await postCallback(successCallback(taskId, assetUrl), taskId);
  expect(res.status).toBe(200);
  return { id, taskId, callback: res };
}

/**
 * The fault matrix's invariant for one row: the generation is `success` and its preview is
 * `ready` with its object, or `failed` with a readable error and one of the closed codes; it
 * is not `processing`.
 */
export function expectSettledRow(row: GenerationRow, want: { ready: true } | { code: string; error?: RegExp | string; retryDue?: boolean }) {
  expect(row.status).toBe('success');
  expect(row.preview_status).not.toBe('processing');
  if ('ready' in want) {
    expect(row.preview_status).toBe('ready');
    expect(row.error).toBeNull();
    expect(row.preview_path ?? row.poster_path).toBeTruthy();
    return;
  }
  expect(row.preview_status).toBe('failed');
  expect(Object.keys(ERROR_CODES)).toContain(row.preview_error_code);
  expect(row.preview_error_code).toBe(want.code);
  expect(typeof row.error).toBe('string');
  expect(row.error.length).toBeGreaterThan(5);
  if (want.error instanceof RegExp) expect(row.error).toMatch(want.error);
  else if (want.error) expect(row.error).toBe(want.error);
  if (want.retryDue !== undefined) expect(row.preview_next_attempt_at !== null).toBe(want.retryDue);
}

/** After a sweep, none of these users' rows may still be processing past its lease. */
export async function expectNothingStuck(userIds: string[]): Promise<void> {
  await sweepNow();
  const stuck = await sql`
    select id from public.generations
     where user_id = any(${userIds}::uuid[]) and preview_status = 'processing'
       and preview_started_at + public.preview_lease() < now()`;
  expect(stuck).toHaveLength(0);
}
