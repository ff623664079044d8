// Fault matrix, part 2: the pipeline around the asset (issue 7) — storage refusing uploads,
// the wake lost or no job written, the worker killed while it holds the claim, and a late worker
// whose result must be refused by the fencing token (the job's attempt). Time is not waited for:
// the tests move a job's lease or retry time into the past and run what pg_cron's preview-sweep
// runs.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGeneration } from '../helpers/flow.ts';
import { expectNothingStuck, expectSettled, expireLease, failUploads, isolateWorkingOn, previewJob, readyAttempts, retireIsolates, retryDueNow, sweepNow, waitForAttempt, waitForClaim } from '../helpers/faults.ts';
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
  it('rejects the preview upload once → UPLOAD_FAILED, retryable (row none, job queued), the sweep retries, ready; each object written once across the attempts', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { stayPending: true } });
    await failUploads(`${id}_preview`, 1);
    const mark = logMark();
    await kie.setTask(taskId, { stayPending: false });
    // the attempt the injected failure hit: 1, or later when a busy machine's isolate handed an
    // attempt to a fresh one first (isolate.ts; the release keeps the attempt's number)
    const first = await waitFor(`the failed upload of ${id} to settle`, async () => {
      const j = await previewJob(id);
      return j?.last_error_code === 'UPLOAD_FAILED' && j.state !== 'running' ? generation(id) : null;
    }, 60_000, 200);
    const job = await expectSettled(first, { code: 'UPLOAD_FAILED', error: /^Upload failed: /, retryDue: true });
    const handedBack = (since: number) => logSince(since, `[Preview] Fenced generationId=${id} `, 'reason=handed_to_fresh_isolate').length;
    expect(job!.attempts).toBe(1 + handedBack(mark));
    expect(logSince(mark, '[Storage] injected upload failure', `${id}_preview`)).toHaveLength(1);
    expect(logSince(mark, `[Preview] ❌ Failed for ${id}: Upload failed: `, 'code=UPLOAD_FAILED', 'next=retry', `jobId=${job!.id} `)).toHaveLength(1);
    const mid = logMark();
    await retryDueNow(id);
    await sweepNow();
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    const readyAt = job!.attempts + 1 + handedBack(mid);
    expect(readyAttempts(mark, id)).toEqual([readyAt]);
    // attempt 1 wrote the original and no preview; attempt 2 kept that original (the same bytes,
    // noted on the job) and wrote the preview: each object once in all
    expect(writesOf(mark, row.preview_path)).toBe(1);
    expect(writesOf(mid, row.preview_path)).toBe(1);
    expect(writesOf(mark, row.original_path)).toBe(1);
    expect(writesOf(mid, row.original_path)).toBe(0);
    expect(logSince(mid, `[Preview] Kept generationId=${id} `, `path=${row.original_path} `, ` attempt=${readyAt}`)).toHaveLength(1);
  });

  it('rejects every upload → UPLOAD_FAILED, retried with backoff up to the attempt cap, then terminal', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { stayPending: true } });
    await failUploads(id, 1000);
    await kie.setTask(taskId, { stayPending: false });
    const [{ cap }] = await sql<{ cap: number }[]>`select public.preview_max_attempts() as cap`;
    let backoff = 0;
    for (let attempt = 1; attempt < cap; attempt++) {
      const row = await waitForAttempt(id, attempt);
      const job = await expectSettled(row, { code: 'UPLOAD_FAILED', retryDue: true });
      expect(job!.attempts).toBe(attempt);
      // the backoff grows with each attempt (30 s, 1 min, 2 min, …)
      const wait = new Date(job!.run_at).getTime() - Date.now();
      expect(wait).toBeGreaterThan(backoff);
      backoff = wait;
      await retryDueNow(id);
      await sweepNow();
    }
    const last = await waitFor('terminal failure at the cap', async () => {
      const r = await generation(id);
      return r.preview_status === 'failed' ? r : null;
    });
    const job = await expectSettled(last, { code: 'UPLOAD_FAILED', error: new RegExp(`^Upload failed: .*\\(gave up after ${cap} attempts\\)$`), retryDue: false });
    expect(job!.attempts).toBe(cap);
    // At the cap the sweep no longer picks it up: the job stays failed, no new one is queued.
    await sweepNow();
    expect(await previewJob(id)).toMatchObject({ id: job!.id, state: 'failed', attempts: cap });
    expect((await generation(id)).preview_status).toBe('failed');
  }, 90_000);
});

describe('fault matrix: dispatch and workers', () => {
  it('the trigger\'s wake is lost → the job is there all the same, and the sweep wakes a worker for it → ready', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { callback: 'never' } });
    const assetUrl = (await kie.getTask(taskId)).resultUrls[0];
    const mark = logMark();
    // What kie-callback's write does, in one transaction whose wakes (pg_net requests) are then
    // lost as a crash loses them (deleted before commit: the pg_net worker never sees them; the
    // wake records go with them, as both UNLOGGED tables are emptied by a crash).
    const jobId = await sql.begin(async (tx) => {
      await tx`set local app.preview_worker_limit = '1000'`; // room for a wake, whatever other files' workers are awake
      await tx`select * from public.apply_kie_result(${taskId}, 'success', ${tx.json([assetUrl])}, ${assetUrl}, null)`;
      const [job] = await tx<{ id: string }[]>`select id::text as id from public.preview_jobs where generation_id = ${id} and kind = 'preview' and state = 'queued'`;
      expect(job).toBeDefined();
      // this transaction's wakes: written by it or by a subtransaction of it (the enqueue trigger's
      // exception block), so still in progress; other sessions' uncommitted wakes are not visible
      const lost = await tx`
        delete from net.http_request_queue q using public.preview_worker_wakes w
         where w.request_id = q.id
           and pg_xact_status(((pg_current_xact_id()::text::bigint >> 32 << 32) + w.xmin::text::bigint)::text::xid8) = 'in progress'
        returning q.id`;
      expect(lost.length).toBeGreaterThanOrEqual(1);
      await tx`delete from public.preview_worker_wakes where request_id = any(${lost.map((l) => l.id)}::bigint[])`;
      return job.id;
    });
    // The work itself is not lost with the wake: the job committed with the row.
    expect(await previewJob(id)).toMatchObject({ id: jobId });
    await netFence(); // everything queued before now was sent: the lost wakes were not among it
    // On its own nothing runs the job now (a worker another file woke may take it: workers drain
    // every due job); the sweep wakes a worker for it.
    await sweepNow();
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    // that very job, at its first attempt
    expect(logSince(mark, `[Preview] Ready generationId=${id} `)).toEqual([expect.stringMatching(new RegExp(` jobId=${jobId} kind=preview attempt=1$`))]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  });

  it('a row left waiting without a job (the enqueue muted, or its trigger failed) → queued by the sweep after its grace minute → ready', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { callback: 'never' } });
    const assetUrl = (await kie.getTask(taskId)).resultUrls[0];
    await sql.begin(async (tx) => {
      await tx`set local app.skip_preview_dispatch = 'on'`;
      await tx`select * from public.apply_kie_result(${taskId}, 'success', ${tx.json([assetUrl])}, ${assetUrl}, null)`;
    });
    let row = await generation(id);
    expect([row.status, row.preview_status]).toEqual(['success', 'none']);
    expect(await previewJob(id)).toBeNull();
    // Within its grace minute the sweep leaves it (the row's own transaction may still enqueue).
    await sweepNow();
    expect(await previewJob(id)).toBeNull();
    // The grace is skipped by ageing the row (an explicit updated_at is kept by the touch trigger;
    // the row wanted a preview before, so the enqueue trigger does nothing).
    await sql`update public.generations set updated_at = now() - interval '2 minutes' where id = ${id}`;
    expect(await previewJob(id)).toBeNull();
    const mark = logMark();
    await sweepNow();
    const queued = await previewJob(id);
    expect(queued).not.toBeNull();
    row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    expect(readyAttempts(mark, id)).toEqual([1]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  });

  it('generate-preview is killed while it holds the claim → processing until its heartbeat lease runs out, then TIMEOUT and claimed again (attempt 2) → ready; attempt 1 is fenced', async () => {
    // A slow asset keeps the worker busy downloading long enough to kill its isolate.
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'slow', slowMs: 4000 } });
    const claimed = await waitForClaim(id, 1);
    const iso = await isolateWorkingOn(id, 1);
    const mark = logMark();
    process.kill(iso.pid, 'SIGKILL');
    await waitFor('the gateway saw the isolate die', async () => logSince(mark, `[Gateway] isolate fn=generate-preview pid=${iso.pid} ended`).length > 0);
    await kie.setTask(taskId, { asset: 'ok' });
    expect((await generation(id)).preview_status).toBe('processing');
    // Within the lease the sweep leaves it alone, and a second claim is refused.
    await sweepNow();
    expect(await previewJob(id)).toMatchObject({ id: claimed.id, state: 'running', attempts: 1, expired_leases: 0 });
    expect(await sql`select job_id from public.claim_preview_jobs(array['preview'], 1, ${id}::uuid)`).toHaveLength(0);
    expect((await generation(id)).preview_status).toBe('processing');
    // The dead worker extends its lease no more; the heartbeat lease runs out: its job goes through
    // the failure path (TIMEOUT, retryable, due again at once) and attempt 1 no longer holds it.
    await expireLease(id);
    const [{ beat }] = await sql<{ beat: boolean }[]>`select public.extend_preview_job_lease(${claimed.id}::bigint, 1) as beat`;
    expect(beat, 'a late heartbeat cannot take the job back').toBe(false);
    await sql`select public.expire_preview_job_leases()`;
    const expired = await previewJob(id);
    expect(expired).toMatchObject({ id: claimed.id, expired_leases: 1, last_error_code: 'TIMEOUT' });
    expect(expired!.last_error).toMatch(/^The worker of attempt 1 did not finish within its lease: it stopped renewing it \(heartbeat lease /);
    // The killed attempt's result, were it to arrive now, is refused by the fencing token.
    const [{ current }] = await sql<{ current: boolean }[]>`select public.preview_job_is_current(${claimed.id}::bigint, 1) as current`;
    expect(current).toBe(false);
    const [{ ok }] = await sql<{ ok: boolean }[]>`
      select public.complete_preview_job(${claimed.id}::bigint, 1, ${sql.json({ path: 'stale/path.webp', width: 1, height: 1, thumbhash: 'x' })}) as ok`;
    expect(ok).toBe(false);
    const [{ state }] = await sql<{ state: string | null }[]>`select public.fail_preview_job(${claimed.id}::bigint, 1, 'INTERNAL', 'stale', true) as state`;
    expect(state).toBeNull();
    expect((await generation(id)).preview_path).toBeNull();
    // The sweep wakes a worker for the due job: attempt 2 renders it.
    await sweepNow();
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    expect(readyAttempts(mark, id)).toEqual([2]);
    const after = await generation(id);
    expect([after.preview_status, after.preview_path]).toEqual(['ready', row.preview_path]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  }, 60_000);

  it('a late worker (lease expired while it worked, row re-claimed) finishes after the new attempt: its result is fenced', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'slow', slowMs: 3500 } });
    const claimed = await waitForClaim(id, 1);
    const late = await isolateWorkingOn(id, 1);
    const mark = logMark();
    await kie.setTask(taskId, { asset: 'ok' });
    // The platform retires the worker's isolate (its CPU past the soft limit) while the job goes
    // on: the retry reaches another isolate instead of waiting behind the job in this one.
    expect(await retireIsolates('generate-preview')).toBeGreaterThan(0);
    await expireLease(id);
    await sweepNow(); // attempt 1's lease expires (TIMEOUT, due at once) and a worker is woken
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    expect(readyAttempts(mark, id)).toEqual([2]);
    // The first worker wakes up, renders, and is refused: it checks its claim before uploading.
    const fenced = await waitFor('late worker fenced', async () => logSince(mark, `[Preview] Fenced generationId=${id} `)[0], 20_000);
    expect(fenced).toContain(`jobId=${claimed.id} `);
    expect(fenced).toMatch(/ attempt=1$/);
    const after = await generation(id);
    expect([after.preview_status, after.preview_path]).toEqual(['ready', row.preview_path]);
    expect(readyAttempts(mark, id)).toEqual([2]);
    expect(late.pid).toBeGreaterThan(0);
    // The late worker checked its claim before uploading and stopped: only attempt 2 wrote
    // the deterministic preview path.
    expect(logSince(mark, `[Preview] Fenced generationId=${id} `, 'reason=claim_lost_before_upload')).toHaveLength(1);
    expect(writesOf(mark, row.preview_path)).toBe(1);
  }, 60_000);
});
