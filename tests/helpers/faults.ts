/**
 * Fault-injection helpers for tests/faults: the functions' env of the running stack, storage
 * upload faults and live isolates of the gateway, "time travel" on a row's preview job (move its
 * lease or its retry time into the past instead of waiting), the preview sweep, success rows whose
 * asset_url says anything at all (a callback with the real secret and signature), and the
 * invariant every fault case ends with.
 *
 * The job model (issue 22): a row's preview work is a job in public.preview_jobs (attempts is the
 * fencing token, run_at the backoff, lease_until the claim's lease, expired_leases the dead
 * workers). A retryable failure leaves the row `none` with preview_error_code and the job queued
 * after its backoff; a terminal one leaves the row `failed` with its code and text and the job
 * `failed`; a done job is deleted (its attempt is then read from the `[Preview] Ready` line).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { ERROR_CODES } from '../../shared/errors.ts';
import { generation, type GenerationRow, insertGeneration, logSince, postCallback, SERVICE_KEY, sql, stack, waitFor } from './stack.ts';
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

export type IsolateInfo = {
  fn: string; pid: number; busy: boolean; retired: boolean;
  requests: { requestId: string; body: string; since: number }[]; body: string | null;
};

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

// ---------------------------------------------------------------- the row's job

export type PreviewJob = {
  id: string; kind: string; state: 'queued' | 'running' | 'failed'; attempts: number; max_attempts: number;
  expired_leases: number; run_at: Date; locked_by: string | null; locked_at: Date | null; lease_until: Date | null;
  last_error_code: string | null; last_error: string | null;
};

/** The row's newest job of `kind` (live, or terminally failed), or null: done (deleted) or never queued. */
export async function previewJob(id: string, kind = 'preview'): Promise<PreviewJob | null> {
  const [j] = await sql<PreviewJob[]>`
    select id::text as id, kind, state, attempts, max_attempts, expired_leases, run_at, locked_by, locked_at, lease_until,
           last_error_code, last_error
      from public.preview_jobs where generation_id = ${id} and kind = ${kind} order by id desc limit 1`;
  return j ?? null;
}

/** Waits until the row's preview job is running attempt `attempt` (claimed by a worker). */
export function waitForClaim(id: string, attempt = 1, timeoutMs = 30_000): Promise<PreviewJob> {
  return waitFor(`claim ${attempt} of ${id}`, async () => {
    const j = await previewJob(id);
    return j?.state === 'running' && j.attempts === attempt ? j : null;
  }, timeoutMs, 50);
}

/**
 * The isolate of generate-preview that works on the row's running preview job (attempt `attempt`):
 * the one whose request is the wake the job was claimed by (`locked_by = wake:N`), or, for a row
 * named directly, whose request names the row.
 */
export function isolateWorkingOn(id: string, attempt = 1, timeoutMs = 15_000): Promise<IsolateInfo> {
  return waitFor(`an isolate of generate-preview working on ${id} (attempt ${attempt})`, async () => {
    const j = await previewJob(id);
    if (j?.state !== 'running' || j.attempts !== attempt || !j.locked_by) return null;
    const wake = j.locked_by.startsWith('wake:') ? j.locked_by.slice('wake:'.length) : null;
    const names = (body: string) => {
      if (wake === null) return body.includes(id);
      try {
        return String(JSON.parse(body).wake) === wake;
      } catch {
        return false;
      }
    };
    return (await isolates()).find((i) => i.fn === 'generate-preview' && i.busy && i.requests.some((r) => names(r.body)));
  }, timeoutMs, 50);
}

/**
 * Moves the lease of the row's running preview job into the past, as if its worker had stopped
 * heartbeating a heartbeat lease ago: its job is lost (a late heartbeat of the worker is refused,
 * extend_preview_job_lease) and due to the next claim.
 */
export async function expireLease(id: string): Promise<void> {
  const moved = await sql`
    update public.preview_jobs set lease_until = now() - interval '1 second'
     where generation_id = ${id} and kind = 'preview' and state = 'running' returning id`;
  expect(moved, `a running preview job of ${id}`).toHaveLength(1);
}

/** Makes the row's queued preview retry due now (as if its backoff had passed). */
export async function retryDueNow(id: string): Promise<void> {
  const moved = await sql`
    update public.preview_jobs set run_at = now()
     where generation_id = ${id} and kind = 'preview' and state = 'queued' and run_at > now() returning id`;
  expect(moved, `a preview job of ${id} waiting for its retry`).toHaveLength(1);
}

/** What pg_cron's `preview-sweep` job runs every minute, run now. Returns the workers it woke. */
export async function sweepNow(): Promise<number> {
  // With room for this file's wake: npm test's files share one stack, and other files' workers
  // (some killed on purpose, holding places until their leases run out) may fill its limit, when
  // the sweep would rightly wake nobody and this file's job would wait for a place. The limit
  // itself is tested in tests/sql/16_worker_wakes.sql and tests/e2e/burst.test.ts.
  return await sql.begin(async (tx) => {
    await tx`set local app.preview_worker_limit = '1000'`;
    const [r] = await tx<{ n: number }[]>`select public.preview_sweep() as n`;
    return r.n;
  });
}

/**
 * Waits until the row's preview has finished attempt `attempt`: ready (its job done), or its job
 * back in the queue (a retryable failure) or failed (terminal) after at least that many attempts.
 */
export function waitForAttempt(id: string, attempt: number, timeoutMs = 60_000): Promise<GenerationRow> {
  return waitFor(`attempt ${attempt} of ${id} to settle`, async () => {
    const r = await generation(id);
    if (r.preview_status === 'ready') return r;
    const j = await previewJob(id);
    return j && j.attempts >= attempt && j.state !== 'running' && r.preview_status !== 'processing' ? r : null;
  }, timeoutMs, 200);
}

/** The attempt of each `[Preview] Ready` line of the row's preview job since `mark` (one line per completion). */
export function readyAttempts(mark: number, id: string): number[] {
  return logSince(mark, `[Preview] Ready generationId=${id} `, ' kind=preview ').map((l) => Number(l.match(/ attempt=(\d+)/)?.[1]));
}

/** The `[Preview] Processing` lines of the row's preview job since `mark`: one per claim. */
export function claimsOf(mark: number, id: string): number[] {
  return logSince(mark, `[Preview] Processing generationId=${id} `, ' kind=preview ').map((l) => Number(l.match(/ attempt=(\d+)/)?.[1]));
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
 * The fault matrix's invariant for one row: the generation is `success` and not `processing`,
 * and its preview is
 * - `ready` with its object, no error, no live job (done jobs are deleted);
 * - or, terminal (`retryDue` false, the default), `failed` with one of the closed codes and a
 *   readable error on the row, its job `failed` with the same code and text;
 * - or, retryable (`retryDue: true`), back to `none` with the code in preview_error_code and its
 *   job queued again with the code and the readable text.
 * Returns the row's preview job (null when done).
 */
export async function expectSettled(
  row: GenerationRow,
  want: { ready: true } | { code: string; error?: RegExp | string; retryDue?: boolean },
): Promise<PreviewJob | null> {
  expect(row.status).toBe('success');
  expect(row.preview_status).not.toBe('processing');
  const job = await previewJob(row.id);
  if ('ready' in want) {
    expect(row.preview_status).toBe('ready');
    expect(row.error).toBeNull();
    expect(row.preview_error_code).toBeNull();
    expect(row.preview_path ?? row.poster_path).toBeTruthy();
    // done jobs are deleted: no live preview job is left (a failed one of an earlier asset may stay)
    expect(job === null || job.state === 'failed').toBe(true);
    return null;
  }
  expect(Object.keys(ERROR_CODES)).toContain(want.code);
  expect(row.preview_error_code).toBe(want.code);
  expect(job, `the preview job of ${row.id}`).not.toBeNull();
  expect(job!.last_error_code).toBe(want.code);
  let message: string;
  if (want.retryDue) {
    expect(row.preview_status).toBe('none');
    expect(job!.state).toBe('queued');
    expect(job!.attempts).toBeLessThan(job!.max_attempts);
    message = job!.last_error!;
  } else {
    expect(row.preview_status).toBe('failed');
    expect(job!.state).toBe('failed');
    // the reason is the preview's own column; the generation's `error` stays the app's
    expect(row.preview_error).toBe(job!.last_error);
    expect(row.error).toBeNull();
    message = row.preview_error;
  }
  expect(typeof message).toBe('string');
  expect(message.length).toBeGreaterThan(5);
  if (want.error instanceof RegExp) expect(message).toMatch(want.error);
  else if (want.error) expect(message).toBe(want.error);
  return job;
}

/**
 * After a sweep, none of these users' rows may be processing without a live lease of ours (a dead
 * worker's job is back in the queue or failed), and none that wants a preview may be left
 * without a live job (work nobody would ever do).
 */
export async function expectNothingStuck(userIds: string[]): Promise<void> {
  await sweepNow();
  const stuck = await sql`
    select g.id, g.preview_status from public.generations g
     where g.user_id = any(${userIds}::uuid[])
       and ((g.preview_status = 'processing' and not exists (
               select 1 from public.preview_jobs j
                where j.generation_id = g.id and j.kind = 'preview' and j.state = 'running' and j.lease_until >= now()))
         or (public.preview_wanted(g) and not exists (
               select 1 from public.preview_jobs j
                where j.generation_id = g.id and j.kind = 'preview' and j.state in ('queued', 'running'))))`;
  expect(stuck).toEqual([]);
}
