// Objects follow their rows: a deleted generation (or user) loses exactly its preview/poster and
// the original copy we made, through the Storage API (one delete_object job per object, run by the
// woken generate-preview workers), retried after a storage failure with the one backoff; objects
// of rows that still exist are never touched; orphans at our paths are reported and removed on
// request, other files never.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { startGeneration } from '../helpers/flow.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { adminClient, createUser, logMark, logSince, SERVICE_KEY, sql, stack, type TestUser, waitFor, waitForPreview } from '../helpers/stack.ts';

let photo: string;

async function readyPhoto(userId: string) {
  const { id } = await startGeneration({ userId, type: 'photo', fixture: photo });
  const row = await waitForPreview(id);
  expect(row.preview_status).toBe('ready');
  return row as { id: string; preview_path: string; original_path: string };
}

async function stored(paths: string[]): Promise<string[]> {
  return (await sql<{ name: string }[]>`select name from storage.objects where bucket_id = 'generations' and name = any(${paths})`).map((r) => r.name).sort();
}

async function faults(body: Record<string, unknown>) {
  const res = await fetch(`${stack.API_URL}/_local/faults`, {
    method: 'POST', headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  photo = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
});

describe('objects follow their rows', () => {
  let user: TestUser;
  beforeAll(async () => {
    user = await createUser('lifecycle');
  });

  it('deleting a row removes its preview and original copy through the Storage API, and nothing of a row that still exists', async () => {
    const gone = await readyPhoto(user.id);
    const kept = await readyPhoto(user.id);
    const mark = logMark();
    await sql`delete from public.generations where id = ${gone.id}`;
    await waitFor('the objects to be deleted', async () => (await stored([gone.preview_path, gone.original_path])).length === 0, 60_000, 250);
    expect(await stored([kept.preview_path, kept.original_path])).toEqual([kept.preview_path, kept.original_path].sort());
    expect(logSince(mark, '[Gateway] request method=DELETE path=/storage/v1/object/generations role=service_role').length).toBeGreaterThanOrEqual(1);
    for (const path of [gone.preview_path, gone.original_path]) {
      expect(logSince(mark, `[Cleanup] Deleted path=${path} reason=row_deleted jobId=`, ' kind=delete_object ')).toHaveLength(1);
    }
    expect(logSince(mark, '[Cleanup] Deleted', kept.id)).toEqual([]);
    // done jobs are deleted: nothing of the row is left in the queue (its preview job neither)
    await waitFor('the deletion jobs to be done', async () =>
      (await sql`select 1 from public.preview_jobs where generation_id = ${gone.id}`).length === 0, 10_000, 100);
  }, 120_000);

  it('deleting a user removes the objects of all their rows (the cascade)', async () => {
    const other = await createUser('lifecycle-cascade');
    const a = await readyPhoto(other.id);
    const b = await readyPhoto(other.id);
    const { error } = await adminClient().auth.admin.deleteUser(other.id);
    expect(error).toBeNull();
    const paths = [a.preview_path, a.original_path, b.preview_path, b.original_path];
    await waitFor('the user\'s objects to be deleted', async () => (await stored(paths)).length === 0, 60_000, 250);
  }, 120_000);

  it('a failed Storage API delete is retried after the backoff', async () => {
    const row = await readyPhoto(user.id);
    // the preview, its larger size and the original copy
    const paths = [row.preview_path, ...row.preview_sizes.map((x: { path: string }) => x.path), row.original_path];
    expect(paths).toHaveLength(3);
    // every delete naming the row fails until cleared: the jobs may be claimed in one batch or more
    await faults({ failRemoves: [{ pattern: row.id, times: 100 }] });
    let queued: { path: string; state: string; attempts: number; code: string | null; error: string | null; due_in: number }[];
    try {
      await sql`delete from public.generations where id = ${row.id}`;
      queued = await waitFor('every deletion to have failed once', async () => {
        const jobs = await sql<typeof queued>`
          select payload->>'path' as path, state, attempts, last_error_code as code, last_error as error,
                 extract(epoch from run_at - now())::int as due_in
            from public.preview_jobs where generation_id = ${row.id} and kind = 'delete_object' order by 1`;
        return jobs.length === paths.length && jobs.every((j) => j.state === 'queued' && j.attempts === 1) ? jobs : null;
      }, 60_000, 250);
    } finally {
      await faults({ failRemoves: [] });
    }
    expect(queued.map((j) => j.path)).toEqual([...paths].sort());
    for (const j of queued) {
      // a failed Storage call is not one of the closed codes' own: INTERNAL, retryable
      expect([j.code, j.error]).toEqual(['INTERNAL', 'Internal error: Delete failed: 503']);
      expect(j.due_in).toBeGreaterThan(20); // 30 s: preview_backoff(1)
    }
    expect(await stored(paths)).toHaveLength(paths.length);
    await sql`update public.preview_jobs set run_at = now() where generation_id = ${row.id} and kind = 'delete_object' and state = 'queued'`; // the backoff has passed
    await sql`select public.wake_preview_workers()`;
    await waitFor('the retry to delete them', async () => (await stored(paths)).length === 0, 60_000, 250);
    await waitFor('the retried jobs to be done', async () =>
      (await sql`select 1 from public.preview_jobs where generation_id = ${row.id}`).length === 0, 10_000, 100);
  }, 120_000);

  it('npm run orphans lists objects at our paths without a row and, with --apply, deletes them; other files stay', async () => {
    const orphan = `${user.id}/previews/${randomUUID()}_preview.webp`;
    const notOurs = `${user.id}/image/${randomUUID()}_1700000000000.jpg`;
    for (const p of [orphan, notOurs]) {
      expect((await adminClient().storage.from('generations').upload(p, new Uint8Array([1, 2, 3]), { contentType: 'image/webp' })).error).toBeNull();
    }
    // --user: other suites on this stack plant objects at our paths on purpose
    const run = (args: string[]) => promisify(execFile)('bash', ['scripts/run-deno.sh', 'scripts/orphans.ts', '--db-url', stack.DB_URL, '--user', user.id, ...args], { timeout: 60_000 })
      .then((o) => o.stdout);
    const listed = await run([]);
    expect(listed).toContain(`orphan  ${orphan}`);
    expect(listed).not.toContain(notOurs);
    expect(await stored([orphan])).toEqual([orphan]); // listing changes nothing
    expect(await run(['--apply'])).toMatch(/orphans: \d+ queued for deletion/);
    await waitFor('the orphan to be deleted', async () => (await stored([orphan])).length === 0, 60_000, 250);
    expect(await stored([notOurs])).toEqual([notOurs]);
  }, 120_000);
});
