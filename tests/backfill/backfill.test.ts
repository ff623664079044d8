// Checklist row 3 (../shared/ACCEPTANCE.md): the backfill CLI, run as a subprocess against
// the test stack. Old success rows (inserted with the enqueue trigger muted: no job) end `ready`,
// each object is written once (one claim of one job per row: the attempts are the jobs', read
// from the `[Preview] Processing … attempt=N` lines, since a done job is deleted), a rerun and a
// second concurrent run find nothing to redo, and --dry-run / --type / --retry-failed / --stale
// do what they say. Every test works in its own far-past window (--since/--until) so other
// suites' rows are never picked up.
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { adminClient, createUser, generation, logMark, logSince, sql, type TestUser, writesOf } from '../helpers/stack.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { read, videoMp4 } from '../fixtures/media.ts';
import { insertOldSuccess, kieAssetUrl, pastWindow, runBackfillCli } from '../helpers/backfill.ts';

let owner: TestUser;
let photoUrl: string;
let videoUrl: string;

beforeAll(async () => {
  owner = await createUser('backfill');
  photoUrl = await kieAssetUrl(await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg'));
  // A small clip with a black fade-in: a video render costs most of the edge CPU budget, and
  // the backfill tests are about the walk, the claim and the writes, not the renderer.
  videoUrl = await kieAssetUrl(await kieFile(read(videoMp4(join(process.cwd(), '.local', 'e2e-media'), 640, 360, 2, { black: 0.5, fade: 0.5 })), 'mp4', 'video/mp4'), 'veo');
});

const pathOf = (id: string, type: 'photo' | 'video') =>
  type === 'video' ? `${owner.id}/posters/${id}_poster.webp` : `${owner.id}/previews/${id}_preview.webp`;

async function seed(at: (i: number) => Date, rows: { type: 'photo' | 'video'; preview?: Parameters<typeof insertOldSuccess>[0]['preview']; assetUrl?: string }[]) {
  const ids: { id: string; type: 'photo' | 'video' }[] = [];
  for (const [i, r] of rows.entries()) {
    const id = await insertOldSuccess({ userId: owner.id, type: r.type, assetUrl: r.assetUrl ?? (r.type === 'video' ? videoUrl : photoUrl), createdAt: at(i), preview: r.preview });
    ids.push({ id, type: r.type });
  }
  return ids;
}

/** The attempt of each claim of the row's preview job since `mark` (one `Processing` line per claim). */
function claims(mark: number, id: string): number[] {
  return logSince(mark, `[Preview] Processing generationId=${id} `, ' kind=preview ').map((l) => Number(l.match(/ attempt=(\d+)/)?.[1]));
}

/** The row's preview jobs (live or failed): a done job is deleted. */
async function jobsOf(ids: string[]) {
  return await sql`select generation_id, state, attempts from public.preview_jobs where generation_id in ${sql(ids)} and kind = 'preview'`;
}

function queueLines(stdout: string) {
  return stdout.split('\n').filter((l) => l.startsWith('📸 Queuing photo preview for ') || l.startsWith('🎬 Queuing video poster for '));
}

describe('backfill: npm run backfill:previews -- --limit=10 --concurrency=2', () => {
  it('makes old rows (fresh and reset to none) ready, writes each object once, and a rerun finds nothing', async () => {
    const w = pastWindow();
    const items = await seed(w.at, [
      { type: 'photo' },
      { type: 'photo', preview: { status: 'none', stalePath: true } }, // reset to none
      { type: 'video', preview: { status: 'none', stalePath: true } }, // reset to none
      { type: 'photo' },
      { type: 'photo' },
    ]);
    const mark = logMark();
    const run = await runBackfillCli(['--limit=10', '--concurrency=2', ...w.args]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    console.log(`backfill: ${items.length} items (4 photos, 1 video) in ${run.ms} ms; ${run.stdout.match(/[\d.]+ items\/s/)?.[0]}`);

    // Oldest first, one queue line per item, with the checklist's wording.
    expect(queueLines(run.stdout)).toHaveLength(items.length);
    for (const { id, type } of items) {
      expect(run.stdout).toContain(type === 'video' ? `🎬 Queuing video poster for ${id}` : `📸 Queuing photo preview for ${id}`);
    }
    const firstQueued = queueLines(run.stdout).map((l) => l.split(' ').pop());
    expect(firstQueued.slice(0, 2).sort()).toEqual(items.slice(0, 2).map((i) => i.id).sort());
    expect(run.stdout).toMatch(/│ total\s+│\s+5 │\s+0 │\s+0 │/);

    for (const { id, type } of items) {
      const row = await generation(id);
      expect(row.preview_status).toBe('ready');
      expect(type === 'video' ? row.poster_path : row.preview_path).toBe(pathOf(id, type));
      expect(row.preview_width).toBeGreaterThan(0);
      expect(row.original_path).toMatch(new RegExp(`^${owner.id}/originals/${id}\\.`));
      expect(writesOf(mark, pathOf(id, type))).toBe(1);
      expect(writesOf(mark, row.original_path)).toBe(1);
      expect(logSince(mark, `[Preview] Ready generationId=${id} type=${type} path=${pathOf(id, type)}`)).toHaveLength(1);
      expect(claims(mark, id)).toEqual([1]);
    }
    expect(await jobsOf(items.map((i) => i.id))).toEqual([]);

    const rerunMark = logMark();
    const rerun = await runBackfillCli(['--limit=10', '--concurrency=2', ...w.args]);
    expect(rerun.code).toBe(0);
    expect(queueLines(rerun.stdout)).toHaveLength(0);
    expect(rerun.stdout).toContain('nothing to do');
    for (const { id, type } of items) expect(writesOf(rerunMark, pathOf(id, type))).toBe(0);
    expect(logSince(rerunMark, '[Preview] Processing', ...[]).filter((l) => items.some((i) => l.includes(i.id)))).toHaveLength(0);
  }, 300_000);

  it('two runs at once write every object exactly once', async () => {
    const w = pastWindow();
    const items = await seed(w.at, [{ type: 'photo' }, { type: 'photo' }, { type: 'photo' }, { type: 'photo' }, { type: 'photo' }, { type: 'photo' }]);
    const mark = logMark();
    const [a, b] = await Promise.all([
      runBackfillCli(['--concurrency=2', ...w.args]),
      runBackfillCli(['--concurrency=2', ...w.args]),
    ]);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    const readyLines = [a, b].flatMap((r) => r.stdout.split('\n').filter((l) => l.startsWith('✓ ')));
    for (const { id, type } of items) {
      const row = await generation(id);
      expect(row.preview_status).toBe('ready');
      // one claim and one write per row, whichever run (or woken worker) took it
      expect(claims(mark, id)).toEqual([1]);
      expect(writesOf(mark, pathOf(id, type))).toBe(1);
      // a run whose row another took waits for that job and reports the row's outcome: ready in
      // one run or both, never failed or skipped
      expect(readyLines.filter((l) => l.includes(id)).length).toBeGreaterThanOrEqual(1);
    }
    expect([a, b].flatMap((r) => r.stdout.split('\n').filter((l) => /^[✗·] /.test(l)))).toEqual([]);
  }, 300_000);

  it('--dry-run lists what it would queue and changes nothing', async () => {
    const w = pastWindow();
    const items = await seed(w.at, [{ type: 'photo' }, { type: 'video' }]);
    const before = await sql`select id, preview_status, preview_error_code, updated_at from public.generations where id in ${sql(items.map((i) => i.id))} order by id`;
    const mark = logMark();
    const run = await runBackfillCli(['--dry-run', ...w.args]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    for (const { id, type } of items) expect(run.stdout).toContain(`would queue ${type} ${id}`);
    expect(run.stdout).toContain('dry run: nothing changed');
    const after = await sql`select id, preview_status, preview_error_code, updated_at from public.generations where id in ${sql(items.map((i) => i.id))} order by id`;
    expect(after).toEqual(before);
    expect(await jobsOf(items.map((i) => i.id))).toEqual([]); // nothing queued
    expect(logSince(mark).filter((l) => items.some((i) => l.includes(i.id)))).toEqual([]);
    await sql`delete from public.generations where id in ${sql(items.map((i) => i.id))}`;
  });

  it('--type takes only that type', async () => {
    const w = pastWindow();
    const [photo, video] = await seed(w.at, [{ type: 'photo' }, { type: 'video' }]);
    const videos = await runBackfillCli(['--type=video', ...w.args]);
    expect(videos.code, videos.stdout + videos.stderr).toBe(0);
    expect(queueLines(videos.stdout)).toEqual([`🎬 Queuing video poster for ${video.id}`]);
    expect((await generation(video.id)).preview_status).toBe('ready');
    expect((await generation(photo.id)).preview_status).toBe('none');
    const photos = await runBackfillCli(['--type=photo', ...w.args]);
    expect(queueLines(photos.stdout)).toEqual([`📸 Queuing photo preview for ${photo.id}`]);
    expect((await generation(photo.id)).preview_status).toBe('ready');
  }, 300_000);

  it('--retry-failed picks up terminal failures; without it they stay failed', async () => {
    const w = pastWindow();
    const [failed] = await seed(w.at, [{ type: 'photo', preview: { status: 'failed', attempts: 5, error: 'Download failed: 500', code: 'SOURCE_UNREACHABLE' } }]);
    const plain = await runBackfillCli(w.args);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('nothing to do');
    expect((await generation(failed.id)).preview_status).toBe('failed');
    expect(await jobsOf([failed.id])).toEqual([{ generation_id: failed.id, state: 'failed', attempts: 5 }]);

    const mark = logMark();
    const retry = await runBackfillCli(['--retry-failed', ...w.args]);
    expect(retry.code, retry.stdout + retry.stderr).toBe(0);
    expect(queueLines(retry.stdout)).toEqual([`📸 Queuing photo preview for ${failed.id}`]);
    const row = await generation(failed.id);
    expect(row.preview_status).toBe('ready');
    // a fresh job with a full attempt budget: claimed once, as attempt 1; the failed one is gone
    expect(claims(mark, failed.id)).toEqual([1]);
    expect(await jobsOf([failed.id])).toEqual([]);
    expect([row.preview_error, row.error]).toEqual([null, null]);
    expect(row.preview_error_code).toBeNull();
    expect(writesOf(mark, pathOf(failed.id, 'photo'))).toBe(1);
  }, 300_000);

  it('--stale re-renders, oldest first, only the ready previews another renderer or other settings made', async () => {
    const w = pastWindow();
    const items = await seed(w.at, [{ type: 'photo' }, { type: 'photo' }, { type: 'photo' }]);
    expect((await runBackfillCli(['--concurrency=2', ...w.args])).code).toBe(0);
    const current = (await generation(items[0].id)).preview_version;
    expect(current).toMatch(/^r\d+-s\d+(,\d+)*-q\d+$/);
    // two were made by an older renderer (or before versions existed); the third is current
    await sql`update public.generations set preview_version = 'r0-s512-q80' where id = ${items[0].id}`;
    await sql`update public.generations set preview_version = null where id = ${items[1].id}`;
    const untouched = await generation(items[2].id);
    const mark = logMark();
    const run = await runBackfillCli(['--stale', '--concurrency=1', ...w.args]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain(`--stale: re-rendering ready previews not made by ${current}`);
    expect(queueLines(run.stdout)).toEqual([items[0], items[1]].map((i) => `📸 Queuing photo preview for ${i.id}`));
    for (const { id } of items.slice(0, 2)) {
      const row = await generation(id);
      expect([row.preview_status, row.preview_version]).toEqual(['ready', current]);
      expect(claims(mark, id)).toEqual([1]);
      expect(writesOf(mark, pathOf(id, 'photo'))).toBe(1);
    }
    const after = await generation(items[2].id);
    expect(after.updated_at).toEqual(untouched.updated_at);
    expect(writesOf(mark, pathOf(items[2].id, 'photo'))).toBe(0);
    expect(queueLines((await runBackfillCli(['--stale', ...w.args])).stdout)).toHaveLength(0);
  });

  it('exits non-zero and names the item when a preview fails', async () => {
    const w = pastWindow();
    const gone = await kieAssetUrl(await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg'), 'market', { asset: '404' });
    const [ok, bad] = await seed(w.at, [{ type: 'photo' }, { type: 'photo', assetUrl: gone }]);
    const run = await runBackfillCli(w.args);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`✗ photo ${bad.id}: failed SOURCE_NOT_FOUND Download failed: 404`);
    expect((await generation(ok.id)).preview_status).toBe('ready');
    const row = await generation(bad.id);
    expect(row.preview_status).toBe('failed');
    expect([row.preview_error, row.error]).toEqual(['Download failed: 404', null]);
  }, 300_000);

  it('re-renders ready rows the library shows blank (a legacy mp4-only video, a missing object), leaves the mp4 and good rows, and a rerun finds nothing', async () => {
    const w = pastWindow();
    const bucket = adminClient().storage.from('generations');
    const upload = async (path: string, bytes: Uint8Array, contentType: string) => {
      const { error } = await bucket.upload(path, bytes, { contentType, upsert: true });
      if (error) throw new Error(`upload ${path}: ${error.message}`);
    };
    // the older server's video: ready, its only preview the 4 s clip in preview_path, no poster
    const [legacy, missing, good] = await seed(w.at, [
      { type: 'video', preview: { status: 'ready' } },
      { type: 'photo', preview: { status: 'ready', stalePath: true } }, // our webp path, no object
      { type: 'photo', preview: { status: 'ready', stalePath: true } }, // our webp path, object there
    ]);
    const mp4Path = `${owner.id}/previews/${legacy.id}_preview.mp4`;
    const mp4 = read(videoMp4(join(process.cwd(), '.local', 'e2e-media'), 640, 360, 2, { black: 0.5, fade: 0.5 }));
    await upload(mp4Path, mp4, 'video/mp4');
    await sql.begin(async (tx) => {
      await tx`set local app.skip_preview_dispatch = 'on'`;
      await tx`update public.generations set preview_path = ${mp4Path} where id = ${legacy.id}`;
    });
    await upload(pathOf(good.id, 'photo'), new Uint8Array(await sharp(await landscapeJpeg()).resize(64).webp().toBuffer()), 'image/webp');
    const reasons = async () =>
      Object.fromEntries((await sql<{ id: string; reason: string | null }[]>`
        select id::text, public.preview_unusable_reason(g) as reason from public.generations g where id in ${sql([legacy.id, missing.id, good.id])}`)
        .map((r) => [r.id, r.reason]));
    expect(await reasons()).toEqual({ [legacy.id]: 'legacy_video_preview', [missing.id]: 'missing_object', [good.id]: null });
    const goodBefore = await generation(good.id);

    const mark = logMark();
    const run = await runBackfillCli(['--concurrency=2', ...w.args]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(queueLines(run.stdout).sort()).toEqual([
      `🎬 Queuing video poster for ${legacy.id} (ready without a usable preview: legacy_video_preview)`,
      `📸 Queuing photo preview for ${missing.id} (ready without a usable preview: missing_object)`,
    ].sort());
    expect(run.stdout).toMatch(/│ total\s+│\s+2 │\s+0 │\s+0 │/);

    // the video: a real poster at this system's path; the app's mp4 stays, in preview_path and in storage
    const video = await generation(legacy.id);
    expect([video.preview_status, video.poster_path, video.preview_path, video.error]).toEqual(['ready', pathOf(legacy.id, 'video'), mp4Path, null]);
    expect(writesOf(mark, pathOf(legacy.id, 'video'))).toBe(1);
    expect(claims(mark, legacy.id)).toEqual([1]);
    const poster = await bucket.download(pathOf(legacy.id, 'video'));
    expect(poster.error).toBeNull();
    const meta = await sharp(new Uint8Array(await poster.data!.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', video.preview_width, video.preview_height]);
    expect(writesOf(mark, mp4Path)).toBe(0);
    const kept = await bucket.download(mp4Path);
    expect(kept.error).toBeNull();
    expect(new Uint8Array(await kept.data!.arrayBuffer())).toEqual(mp4);
    // the photo whose object was missing: rendered again at the same path
    const photo = await generation(missing.id);
    expect([photo.preview_status, photo.preview_path]).toEqual(['ready', pathOf(missing.id, 'photo')]);
    expect(writesOf(mark, pathOf(missing.id, 'photo'))).toBe(1);
    // the good one is untouched
    expect(await generation(good.id)).toEqual(goodBefore);
    expect(writesOf(mark, pathOf(good.id, 'photo'))).toBe(0);
    expect(await reasons()).toEqual({ [legacy.id]: null, [missing.id]: null, [good.id]: null });

    const rerunMark = logMark();
    const rerun = await runBackfillCli(['--concurrency=2', ...w.args]);
    expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
    expect(queueLines(rerun.stdout)).toHaveLength(0);
    expect(rerun.stdout).toContain('nothing to do');
    for (const { id, type } of [legacy, missing, good]) expect(writesOf(rerunMark, pathOf(id, type))).toBe(0);
  }, 300_000);

  it('rejects bad usage with exit code 2', async () => {
    const run = await runBackfillCli(['--type=music']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--type must be photo, product, video or audio');
  });
});
