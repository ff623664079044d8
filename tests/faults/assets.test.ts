// Fault matrix, part 1: what the asset does (issue 7). Each case drives the real path — fake
// KIE callback → kie-callback → trigger → pg_net stand-in → generate-preview → storage — and
// ends with the invariant: the row is ready, or failed with a readable error and a closed
// code; retryable failures leave the row waiting (none, with the code) and its job queued after
// the backoff, and come back through the sweep (backoff skipped by moving the job's run_at into
// the past); no object is written twice for one attempt; nothing stays processing.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { read, videoMp4 } from '../fixtures/media.ts';
import { startGeneration } from '../helpers/flow.ts';
import { downloadTimeoutMs, expectNothingStuck, expectSettled, maxSourceBytes, previewJob, readyAttempts, retryDueNow, sweepNow, waitForAttempt } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg, transparentPng } from '../helpers/media.ts';
import { createUser, generation, kie, logMark, logSince, type TestUser, waitFor, waitForPreview, writesOf } from '../helpers/stack.ts';

let user: TestUser;
let photo: string;

beforeAll(async () => {
  user = await createUser('faults-assets');
  photo = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
});

afterAll(async () => {
  await expectNothingStuck([user.id]);
});

/** The callbacks KIE sent for the task were all answered 200 (a preview fault never breaks the sync). */
async function expectSyncAnswered200(taskId: string) {
  const calls = await waitFor('callback answered', async () => {
    const c = (await kie.getTask(taskId)).callbacks;
    return c.length > 0 && c.every((x) => x.done) ? c : null;
  });
  expect(calls.map((c) => c.status)).toEqual(calls.map(() => 200));
}

describe('fault matrix: the asset', () => {
  it('is a video whose every frame is black → KIE\'s cover image (from the callback) is the poster', async () => {
    const dark = await kieFile(read(videoMp4(join(process.cwd(), '.local', 'e2e-media'), 320, 240, 1, { black: 5, fade: 0.1 })), 'mp4', 'video/mp4');
    const cover = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg'); // 1600×1000
    const mark = logMark();
    const { id } = await startGeneration({ userId: user.id, type: 'video', family: 'veo', fixture: dark, cover });
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    expect(row.preview_cover_url).toMatch(new RegExp(`/${cover}$`));
    expect([row.preview_width, row.preview_height]).toEqual([512, 320]); // the cover's shape, not the video's 4:3
    expect(logSince(mark, `[Preview] Cover fallback generationId=${id}`)).toHaveLength(1);
  });

  it('answers 404 → failed SOURCE_NOT_FOUND "Download failed: 404", terminal, no object written', async () => {
    const mark = logMark();
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: '404' } });
    const row = await waitForPreview(id);
    const job = await expectSettled(row, { code: 'SOURCE_NOT_FOUND', error: 'Download failed: 404', retryDue: false });
    expect(job!.attempts).toBe(1);
    expect(logSince(mark, '[Storage] write', id)).toHaveLength(0);
    await expectSyncAnswered200(taskId);
  });

  it('answers 500 then recovers → SOURCE_UNREACHABLE, the job queued again after the backoff (row none), the sweep wakes a worker, ready on attempt 2', async () => {
    const mark = logMark();
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: '500-then-ok' } });
    const first = await waitForAttempt(id, 1);
    const job = await expectSettled(first, { code: 'SOURCE_UNREACHABLE', error: 'Download failed: 500', retryDue: true });
    expect(job!.attempts).toBe(1);
    // The backoff is preview_backoff(1) = 30 s from the failure.
    expect(new Date(job!.run_at).getTime() - Date.now()).toBeGreaterThan(20_000);
    await expectSyncAnswered200(taskId);
    await retryDueNow(id);
    await sweepNow();
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    expect(readyAttempts(mark, id)).toEqual([2]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
    expect((await kie.requests(taskId)).map((r) => r.status)).toEqual([500, 200]);
  });

  it('hangs past the download timeout → TIMEOUT, retryable (row none, job queued); recovers on the next attempt', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'hang' } });
    const mark = logMark();
    const first = await waitForAttempt(id, 1, downloadTimeoutMs() + 30_000);
    await expectSettled(first, { code: 'TIMEOUT', error: `Download timed out after ${downloadTimeoutMs()} ms`, retryDue: true });
    await expectSyncAnswered200(taskId);
    await kie.setTask(taskId, { asset: 'ok' });
    await retryDueNow(id);
    await sweepNow();
    await expectSettled(await waitForPreview(id), { ready: true });
    expect(readyAttempts(mark, id)).toEqual([2]);
  }, 90_000);

  it('is truncated mid-body → SOURCE_UNREACHABLE, retryable (row none, job queued), nothing rendered from half a file', async () => {
    const mark = logMark();
    const { id } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { asset: 'truncated' } });
    const row = await waitForAttempt(id, 1);
    await expectSettled(row, { code: 'SOURCE_UNREACHABLE', error: /^Download failed: /, retryDue: true });
    expect(logSince(mark, '[Storage] write', id)).toHaveLength(0);
  });

  it('is larger than the byte cap → failed SOURCE_TOO_LARGE, terminal, refused from Content-Length', async () => {
    const cap = maxSourceBytes();
    const big = new Uint8Array(cap + 1);
    big.set(await landscapeJpeg());
    const name = await kieFile(big, 'jpg', 'image/jpeg');
    const { id } = await startGeneration({ userId: user.id, type: 'photo', fixture: name });
    const row = await waitForPreview(id);
    await expectSettled(row, { code: 'SOURCE_TOO_LARGE', error: `Source is larger than the ${cap}-byte limit (${cap + 1} bytes)`, retryDue: false });
  });

  it('is an image whose header claims 30000×30000 → failed TOO_MANY_PIXELS before decoding', async () => {
    const png = (await transparentPng()).slice(0, 33);
    const view = new DataView(png.buffer);
    view.setUint32(16, 30000);
    view.setUint32(20, 30000);
    const { id } = await startGeneration({ userId: user.id, type: 'photo', fixture: await kieFile(png, 'png', 'image/png') });
    const row = await waitForPreview(id);
    await expectSettled(row, { code: 'TOO_MANY_PIXELS', error: /30000.*30000/, retryDue: false });
  });

  it('is not an image or a video at all → failed UNSUPPORTED_FORMAT (content sniffed, not the header trusted)', async () => {
    const text = new TextEncoder().encode('<html><body>Not an image, whatever the content-type says</body></html>');
    const { id } = await startGeneration({ userId: user.id, type: 'photo', fixture: await kieFile(text, 'jpg', 'image/jpeg') });
    const row = await waitForPreview(id);
    await expectSettled(row, { code: 'UNSUPPORTED_FORMAT', error: /^Unsupported format: not a JPEG, PNG/, retryDue: false });
    // the row's error never quotes the remote answer's bytes
    expect(row.preview_error).not.toMatch(/3c 68|html|Not an image/i);
  });

  it('is a video with no decodable frame → failed NO_VIDEO_FRAME', async () => {
    const mp4 = read(videoMp4(join(process.cwd(), '.local', 'e2e-media'), 320, 240, 2, { fade: 0 })).slice();
    for (let i = 64; i < mp4.length; i++) mp4[i] = (i * 31) & 255;
    const { id } = await startGeneration({ userId: user.id, type: 'video', family: 'veo', fixture: await kieFile(mp4, 'mp4', 'video/mp4') });
    const row = await waitForPreview(id, 90_000);
    await expectSettled(row, { code: 'NO_VIDEO_FRAME', retryDue: false });
    expect(row.poster_path).toBeNull();
  }, 120_000);

  it('a row with a status that is not success is never claimed (control)', async () => {
    const { id } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { state: 'fail', failMsg: 'nsfw' } });
    const row = await waitFor('failed generation', async () => {
      const r = await generation(id);
      return r.status === 'failed' ? r : null;
    });
    expect(row.preview_status).toBe('none');
    expect(await previewJob(id)).toBeNull();
  });
});
