// Hostile files through the whole path (KIE → callback → trigger → generate-preview in an
// isolate under the edge limits): each ends with its precise terminal code after one attempt,
// and no isolate of generate-preview is killed (no 546 WORKER_LIMIT in the gateway's log).
// A worker that does die on an item (here: killed twice) ends its job WORKER_LIMIT after two
// attempts, not five, and not as a TIMEOUT.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE } from '../fixtures/hostile.ts';
import { startGeneration } from '../helpers/flow.ts';
import { expectSettled, expireLease, isolateWorkingOn, previewJob, sweepNow, waitForClaim } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { createUser, logMark, logSince, sql, type TestUser, waitFor, waitForPreview } from '../helpers/stack.ts';

let user: TestUser;
let dir: string;

beforeAll(async () => {
  user = await createUser('hostile');
  dir = mkdtempSync(join(tmpdir(), 'hostile-stack-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hostile files end with their precise code, one attempt, no killed isolate', () => {
  for (const h of HOSTILE) {
    it(`${h.name} → failed ${h.code}`, async () => {
      const fixture = await kieFile(await h.make(dir), h.ext, h.mime);
      const mark = logMark();
      const { id } = await startGeneration({ userId: user.id, type: h.type, fixture });
      const row = await waitForPreview(id);
      const job = await expectSettled(row, { code: h.code, error: h.error, retryDue: false });
      expect(job!.attempts).toBe(1);
      expect(logSince(mark, 'fn=generate-preview', 'WORKER_LIMIT')).toEqual([]);
      expect(logSince(mark, '[Preview] ❌ Failed for', id)).toHaveLength(1);
    }, 60_000);
  }
});

describe('a worker that dies on an item', () => {
  it('killed twice → failed WORKER_LIMIT after two attempts (terminal, not TIMEOUT, no third try)', async () => {
    const photo = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
    const { id } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'slow', slowMs: 8000 } });
    for (const attempt of [1, 2]) {
      await waitForClaim(id, attempt);
      const iso = await isolateWorkingOn(id, attempt);
      const mark = logMark();
      process.kill(iso.pid, 'SIGKILL');
      await waitFor('the gateway saw the isolate die', async () => logSince(mark, `[Gateway] isolate fn=generate-preview pid=${iso.pid} ended`).length > 0);
      await expireLease(id);
      await sweepNow(); // the first death: TIMEOUT, due again at once, a worker woken; the second ends the job
    }
    const row = await waitForPreview(id);
    const job = await expectSettled(row, { code: 'WORKER_LIMIT', error: /^Preview worker stopped 2 times on this item/, retryDue: false });
    expect([job!.attempts, job!.expired_leases]).toEqual([2, 2]);
    // no third try: the sweep neither re-queues the row nor revives the job
    await sweepNow();
    expect(await previewJob(id)).toMatchObject({ id: job!.id, state: 'failed', attempts: 2, last_error_code: 'WORKER_LIMIT' });
    const [{ live }] = await sql<{ live: number }[]>`
      select count(*)::int as live from public.preview_jobs where generation_id = ${id} and state in ('queued', 'running')`;
    expect(live).toBe(0);
  }, 90_000);
});
