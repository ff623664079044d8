// A burst of mixed generations under the platform's worker model: by default 35 photos and 15
// videos finish at KIE at once (BURST_PHOTOS / BURST_VIDEOS for more: docs/worker-model.md's 200).
// The functions run as the edge runtime runs them (the runner: shared isolates, CPU accumulated
// per isolate, 546 at 2 s); the database enqueues one job per row and keeps at most
// preview_worker_limit() workers awake, each draining jobs one at a time within its isolate's CPU.
// Every row must end ready, once, with no WORKER_LIMIT anywhere. Prints the figures
// docs/worker-model.md quotes.
import { join } from 'node:path';
import sharp from 'sharp';
import { expect, it } from 'vitest';
import { read, videoMp4 } from '../fixtures/media.ts';
import { startGeneration } from '../helpers/flow.ts';
import { kieFile, landscapeJpeg, transparentPng } from '../helpers/media.ts';
import { createUser, logMark, logSince, sql, waitFor } from '../helpers/stack.ts';

const PHOTOS = Number(process.env.BURST_PHOTOS ?? 35);
const VIDEOS = Number(process.env.BURST_VIDEOS ?? 15);

it(`a burst of ${PHOTOS + VIDEOS} photos and videos: every one ready once, no WORKER_LIMIT, requests bounded by the workers`, async () => {
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

  const [{ limit }] = await sql<{ limit: number }[]>`select public.preview_worker_limit() as limit`;
  let mostAwake = 0;
  let mostWakeRows = 0;
  const rows = await waitFor(`all ${ids.length} previews to settle`, async () => {
    // awake as the database counts them (holding a job, not answered yet, or between two jobs);
    // the wakes table also holds workers pausing after a decline, which take nothing more
    const [w] = await sql<{ awake: number; rows: number }[]>`
      select public.preview_workers_awake() as awake, (select count(*)::int from public.preview_worker_wakes) as rows`;
    mostAwake = Math.max(mostAwake, w.awake);
    mostWakeRows = Math.max(mostWakeRows, w.rows);
    const r = await sql<{ id: string; preview_status: string; preview_error_code: string | null; updated_at: Date }[]>`
      select id, preview_status, preview_error_code, updated_at from public.generations where id = any(${ids}::uuid[])`;
    return r.every((x) => x.preview_status === 'ready' || (x.preview_status === 'failed' && x.preview_error_code)) ? r : null;
  }, 900_000, 250);
  const seconds = (Math.max(...rows.map((r) => r.updated_at.getTime())) - started) / 1000;

  const ended = logSince(mark, '[Gateway] isolate fn=generate-preview').map((l) => ({
    reason: l.match(/reason=(\S+)/)![1],
    cpuMs: Number(l.match(/cpuMs=(\d+)/)![1]),
    peakMb: Number(l.match(/peakMb=(\d+)/)![1]),
  }));
  const isolates = new Set(logSince(mark, '[Gateway] fn=generate-preview').map((l) => l.match(/isolate=(\d+)/)?.[1]));
  const requests = logSince(mark, '[Gateway] fn=generate-preview').length;
  const declined = logSince(mark, 'fn:generate-preview', '[Preview] Declined').length;
  // every Ready line of these rows: one per row, at attempt 1 (a job claimed twice would show)
  const ready = logSince(mark, 'fn:generate-preview', '[Preview] Ready').filter((l) => ids.some((id) => l.includes(`generationId=${id}`)));
  const readyPerRow = ids.map((id) => ready.filter((l) => l.includes(`generationId=${id} `)).length);
  const duplicates = readyPerRow.filter((n) => n > 1).length;
  // a job handed to a fresh isolate (its render needed more CPU than this one had left by the
  // estimate) is claimed again at once: rendered once, at attempt 2; anything else retried is not
  const handedBack = new Set(logSince(mark, 'fn:generate-preview', '[Preview] Fenced')
    .filter((l) => l.includes('reason=handed_to_fresh_isolate'))
    .map((l) => l.match(/generationId=(\S+)/)![1]));
  const later = ready.filter((l) => !l.includes(' attempt=1'));
  const retried = later.filter((l) => !handedBack.has(l.match(/generationId=(\S+)/)![1])).length;
  console.log(`burst: ${rows.filter((r) => r.preview_status === 'ready').length}/${ids.length} ready in ${seconds.toFixed(0)} s; ` +
    `worker limit ${limit}, most awake ${mostAwake} (wake rows ${mostWakeRows}); ${requests} generate-preview requests; ${isolates.size} isolates; ended ${ended.length} ` +
    `(max cpuMs ${Math.max(0, ...ended.map((e) => e.cpuMs))}, max peakMb ${Math.max(0, ...ended.map((e) => e.peakMb))}, ` +
    `reasons ${[...new Set(ended.map((e) => e.reason))].join(',')}); declined ${declined}; duplicates ${duplicates}; ` +
    `handed back ${handedBack.size}; retried otherwise ${retried}; WORKER_LIMIT ${logSince(mark, 'WORKER_LIMIT').length}`);

  expect(rows.map((r) => r.preview_status)).toEqual(ids.map(() => 'ready'));
  expect(logSince(mark, 'WORKER_LIMIT')).toEqual([]);
  expect(ended.filter((e) => e.reason === 'cpu' || e.reason === 'memory' || e.reason === 'wall')).toEqual([]);
  // each row rendered once, by its first claim or by the one after a hand-back
  expect(readyPerRow).toEqual(ids.map(() => 1));
  expect(retried).toBe(0);
  // the estimate runs ahead of the isolate's CPU on a busy machine; it may hand a few jobs on
  expect(handedBack.size).toBeLessThanOrEqual(ids.length / 10);
  // pulled, not pushed: never more workers awake than the limit, however many rows are due
  expect(mostAwake).toBeGreaterThan(0);
  expect(mostAwake).toBeLessThanOrEqual(limit);
}, 960_000);
