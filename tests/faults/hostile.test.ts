// Hostile files through the whole path (KIE → callback → trigger → generate-preview in an
// isolate under the edge limits): each ends with its precise terminal code after one attempt,
// and no isolate of generate-preview is killed (no 546 WORKER_LIMIT in the gateway's log).
// A worker that does die on an item (here: killed twice) ends it WORKER_LIMIT after two
// attempts, not five, and not as a TIMEOUT.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE } from '../fixtures/hostile.ts';
import { startGeneration } from '../helpers/flow.ts';
import { expectSettledRow, expireLease, isolateServing, sweepNow } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { createUser, generation, logMark, logSince, sql, type TestUser, waitFor, waitForPreview } from '../helpers/stack.ts';

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
      expectSettledRow(row, { code: h.code, error: h.error, retryDue: false });
      expect(row.preview_attempts).toBe(1);
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
      const iso = await isolateServing('generate-preview', id);
      await waitFor(`claim ${attempt}`, async () => {
        const r = await generation(id);
        return r.preview_status === 'processing' && r.preview_attempts === attempt;
      });
      const mark = logMark();
      process.kill(iso.pid, 'SIGKILL');
      await waitFor('the gateway saw the isolate die', async () => logSince(mark, `[Gateway] isolate fn=generate-preview pid=${iso.pid} ended`).length > 0);
      await expireLease(id);
      await sweepNow(); // re-dispatches after the first death; ends the item after the second
    }
    const row = await waitForPreview(id);
    expectSettledRow(row, { code: 'WORKER_LIMIT', error: /^Preview worker stopped 2 times on this item/, retryDue: false });
    expect([row.preview_attempts, row.preview_expired_leases]).toEqual([2, 2]);
    const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from public.sweep_previews(1000) where id = ${id}`;
    expect(n).toBe(0);
  }, 90_000);
});
