// A burst of 50 mixed generations under the platform's worker model (issue 21): 35 photos and 15
// videos finish at KIE at once. The functions run as the edge runtime runs them (the runner:
// shared isolates, CPU accumulated per isolate, 546 at 2 s), dispatch is bounded
// (preview_dispatch_limit) and every isolate renders one job at a time within its CPU. All 50
// must end ready, with no WORKER_LIMIT anywhere. Prints the figures docs/reliability.md quotes.
import { join } from 'node:path';
import sharp from 'sharp';
import { expect, it } from 'vitest';
import { read, videoMp4 } from '../fixtures/media.ts';
import { startGeneration } from '../helpers/flow.ts';
import { kieFile, landscapeJpeg, transparentPng } from '../helpers/media.ts';
import { createUser, logMark, logSince, sql, waitFor } from '../helpers/stack.ts';

const PHOTOS = 35;
const VIDEOS = 15;

it('a burst of 50 photos and videos: every one ready, no WORKER_LIMIT, one job per isolate at a time', async () => {
  const user = await createUser('burst');
  const dir = join(process.cwd(), '.local', 'e2e-media');
  const jpeg = await landscapeJpeg();
  const photos = [
    await kieFile(jpeg, 'jpg', 'image/jpeg'),
    await kieFile(await transparentPng(), 'png', 'image/png'),
    await kieFile(new Uint8Array(await sharp(jpeg).resize(2048, 2048).jpeg().toBuffer()), 'jpg', 'image/jpeg'),
  ];
  const videos = [
    await kieFile(read(videoMp4(dir, 1280, 720, 3, { fade: 0.5 })), 'mp4', 'video/mp4'),
    await kieFile(read(videoMp4(dir, 1920, 1080, 2, { fade: 0.5 })), 'mp4', 'video/mp4'),
  ];
  const mark = logMark();
  const started = Date.now();
  const kinds = [...Array(PHOTOS).fill('photo'), ...Array(VIDEOS).fill('video')] as ('photo' | 'video')[];
  const ids = await Promise.all(kinds.map((type, i) =>
    startGeneration({ userId: user.id, type, fixture: type === 'photo' ? photos[i % photos.length] : videos[i % videos.length] })
      .then((g) => g.id)
  ));

  const rows = await waitFor('all 50 previews to settle', async () => {
    const r = await sql<{ preview_status: string; preview_error_code: string | null; preview_attempts: number; updated_at: Date }[]>`
      select preview_status, preview_error_code, preview_attempts, updated_at from public.generations where id = any(${ids}::uuid[])`;
    return r.every((x) => x.preview_status === 'ready' || (x.preview_status === 'failed' && x.preview_error_code)) ? r : null;
  }, 480_000, 1000);
  const seconds = (Math.max(...rows.map((r) => r.updated_at.getTime())) - started) / 1000;

  const ended = logSince(mark, '[Gateway] isolate fn=generate-preview').map((l) => ({
    reason: l.match(/reason=(\S+)/)![1],
    cpuMs: Number(l.match(/cpuMs=(\d+)/)![1]),
    peakMb: Number(l.match(/peakMb=(\d+)/)![1]),
  }));
  const isolates = new Set(logSince(mark, '[Gateway] fn=generate-preview').map((l) => l.match(/isolate=(\d+)/)?.[1]));
  const declined = logSince(mark, 'fn:generate-preview', '[Preview] Declined').length;
  console.log(`burst: ${rows.filter((r) => r.preview_status === 'ready').length}/${ids.length} ready in ${seconds.toFixed(0)} s; ` +
    `${isolates.size} generate-preview isolates; ended ${ended.length} (max cpuMs ${Math.max(0, ...ended.map((e) => e.cpuMs))}, ` +
    `max peakMb ${Math.max(0, ...ended.map((e) => e.peakMb))}, reasons ${[...new Set(ended.map((e) => e.reason))].join(',')}); ` +
    `declined ${declined}; attempts>1: ${rows.filter((r) => r.preview_attempts > 1).length}`);

  expect(rows.map((r) => r.preview_status)).toEqual(ids.map(() => 'ready'));
  expect(logSince(mark, 'WORKER_LIMIT')).toEqual([]);
  expect(ended.filter((e) => e.reason === 'cpu' || e.reason === 'memory' || e.reason === 'wall')).toEqual([]);
  // a render at a time per isolate: never two claims past their lease
  expect(rows.filter((r) => r.preview_attempts > 1)).toEqual([]);
}, 600_000);
