// Fault matrix, part 2: the pipeline around the asset (issue 7) — storage refusing uploads,
// the trigger's request lost, the worker killed while it holds the claim, and a late worker
// whose result must be refused by the fencing token. Time is not waited for: the tests move a
// lease or a retry time into the past and run what pg_cron's preview-sweep runs.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGeneration } from '../helpers/flow.ts';
import { expectNothingStuck, expectSettledRow, expireLease, failUploads, isolateServing, retireIsolates, retryDueNow, sweepNow, waitForAttempt } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { createUser, generation, kie, logMark, logSince, netFence, sql, type TestUser, waitFor, waitForPreview, writesOf } from '../helpers/stack.ts';

let user: TestUser;
let photo: string;

beforeAll(async () => {
  user = await createUser('faults-pipeline');
  photo = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
});

afterEach(async () => {
  await failUploads('', 0);
});

afterAll(async () => {
  await expectNothingStuck([user.id]);
});

describe('fault matrix: storage', () => {
  it('rejects the preview upload once → failed UPLOAD_FAILED (retryable), the sweep retries, ready; one write per attempt', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { stayPending: true } });
    await failUploads(`${id}_preview`, 1);
    const mark = logMark();
    await kie.setTask(taskId, { stayPending: false });
    const first = await waitForAttempt(id, 1);
    expectSettledRow(first, { code: 'UPLOAD_FAILED', error: /^Upload failed: /, retryDue: true });
    expect(logSince(mark, '[Storage] injected upload failure', `${id}_preview`)).toHaveLength(1);
    const mid = logMark();
    await retryDueNow(id);
    await sweepNow();
    const row = await waitForPreview(id);
    expectSettledRow(row, { ready: true });
    expect(row.preview_attempts).toBe(2);
    // attempt 1 wrote the original and no preview; attempt 2 wrote each once.
    expect(writesOf(mark, row.preview_path)).toBe(1);
    expect(writesOf(mid, row.preview_path)).toBe(1);
    expect(writesOf(mark, row.original_path)).toBe(2);
    expect(writesOf(mid, row.original_path)).toBe(1);
  });

  it('rejects every upload → failed UPLOAD_FAILED, retried with backoff up to the attempt cap, then terminal', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { stayPending: true } });
    await failUploads(id, 1000);
    await kie.setTask(taskId, { stayPending: false });
    const [{ cap }] = await sql<{ cap: number }[]>`select public.preview_max_attempts() as cap`;
    for (let attempt = 1; attempt < cap; attempt++) {
      const row = await waitForAttempt(id, attempt);
      expectSettledRow(row, { code: 'UPLOAD_FAILED', retryDue: true });
      await retryDueNow(id);
      await sweepNow();
    }
    const last = await waitFor('terminal failure at the cap', async () => {
      const r = await generation(id);
      return r.preview_attempts === cap && r.preview_status === 'failed' ? r : null;
    });
    expectSettledRow(last, { code: 'UPLOAD_FAILED', error: /^Upload failed: /, retryDue: false });
    // At the cap the sweep no longer picks it up.
    const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from public.sweep_previews(1000) where id = ${id}`;
    expect(n).toBe(0);
  }, 90_000);
});

describe('fault matrix: dispatch and workers', () => {
  it('the trigger\'s request is lost → the row stays none until the sweep dispatches it (lost_webhook) → ready', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { callback: 'never' } });
    const assetUrl = (await kie.getTask(taskId)).resultUrls[0];
    // What kie-callback's write does, in one transaction whose pg_net request is then lost
    // (deleted before commit: the worker never sees it).
    await sql.begin(async (tx) => {
      await tx`select * from public.apply_kie_result(${taskId}, 'success', ${tx.json([assetUrl])}, ${assetUrl}, null)`;
      const lost = await tx`delete from net.http_request_queue where convert_from(body, 'utf8')::jsonb->>'generationId' = ${id} returning id`;
      expect(lost).toHaveLength(1);
    });
    await netFence(); // everything queued before now was sent: the lost request was not among it
    let row = await generation(id);
    expect([row.status, row.preview_status]).toEqual(['success', 'none']);
    // The sweep's grace (1 minute since the last update) is skipped by ageing the row.
    // (an explicit updated_at is kept by the touch trigger; the row was eligible before, so no dispatch)
    await sql`update public.generations set updated_at = now() - interval '2 minutes' where id = ${id}`;
    // and the lost request was queued longer ago than the sweep gives a queued request
    await sql`update public.preview_dispatches set dispatched_at = now() - public.preview_redispatch_after() - interval '1 second' where generation_id = ${id}`;
    const [{ reason }] = await sql<{ reason: string }[]>`select reason from public.sweep_previews(1000) where id = ${id}`;
    expect(reason).toBe('lost_webhook');
    const mark = logMark();
    expect(await sweepNow()).toBeGreaterThanOrEqual(1);
    row = await waitForPreview(id);
    expectSettledRow(row, { ready: true });
    expect(row.preview_attempts).toBe(1);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  });

  it('generate-preview is killed while it holds the claim → processing until the lease expires, the sweep re-claims (attempt 2) → ready; attempt 1 is fenced', async () => {
    // A slow asset keeps the worker busy downloading long enough to kill its isolate.
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'slow', slowMs: 4000 } });
    const iso = await isolateServing('generate-preview', id);
    await waitFor('claim', async () => (await generation(id)).preview_status === 'processing');
    const mark = logMark();
    process.kill(iso.pid, 'SIGKILL');
    await waitFor('the gateway saw the isolate die', async () => logSince(mark, `[Gateway] isolate fn=generate-preview pid=${iso.pid} ended`).length > 0);
    await kie.setTask(taskId, { asset: 'ok' });
    let row = await generation(id);
    expect([row.preview_status, row.preview_attempts]).toEqual(['processing', 1]);
    // Within the lease the sweep leaves it alone, and a second claim is refused.
    await sweepNow();
    const [{ n: claimable }] = await sql<{ n: number }[]>`select count(*)::int as n from public.sweep_previews(1000) where id = ${id}`;
    expect(claimable).toBe(0);
    await expireLease(id);
    const [{ reason }] = await sql<{ reason: string }[]>`select reason from public.sweep_previews(1000) where id = ${id}`;
    expect(reason).toBe('lease_expired');
    await sweepNow();
    row = await waitForPreview(id);
    expectSettledRow(row, { ready: true });
    expect(row.preview_attempts).toBe(2);
    // The killed attempt's result, were it to arrive now, is refused by the fencing token.
    const [{ ok }] = await sql<{ ok: boolean }[]>`select public.complete_preview(${id}, 1, 'stale/path.webp', 1, 1, 'x') as ok`;
    expect(ok).toBe(false);
    const [{ state }] = await sql<{ state: string | null }[]>`select public.fail_preview(${id}, 1, 'INTERNAL', 'stale', true) as state`;
    expect(state).toBeNull();
    const after = await generation(id);
    expect([after.preview_status, after.preview_path, after.preview_attempts]).toEqual(['ready', row.preview_path, 2]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  }, 60_000);

  it('a late worker (lease expired while it worked, row re-claimed) finishes after the new attempt: its result is fenced', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'slow', slowMs: 3500 } });
    const late = await isolateServing('generate-preview', id);
    await waitFor('claim', async () => (await generation(id)).preview_status === 'processing');
    const mark = logMark();
    await kie.setTask(taskId, { asset: 'ok' });
    // The platform retires the worker's isolate (its CPU past the soft limit) while the job goes
    // on: the retry reaches another isolate instead of waiting behind the job in this one.
    expect(await retireIsolates('generate-preview')).toBeGreaterThan(0);
    await expireLease(id);
    await sweepNow();
    const row = await waitForPreview(id);
    expectSettledRow(row, { ready: true });
    expect(row.preview_attempts).toBe(2);
    // The first worker wakes up, renders, and is refused at complete_preview.
    await waitFor('late worker fenced', async () => logSince(mark, '[Preview] Fenced', id)[0], 20_000);
    const after = await generation(id);
    expect([after.preview_status, after.preview_attempts, after.preview_path]).toEqual(['ready', 2, row.preview_path]);
    expect(late.pid).toBeGreaterThan(0);
    // The late worker checked its claim before uploading and stopped: only attempt 2 wrote
    // the deterministic preview path.
    expect(logSince(mark, '[Preview] Fenced', id, 'reason=claim_lost_before_upload')).toHaveLength(1);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  }, 60_000);
});
