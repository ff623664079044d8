// Audio generations end to end (issue 26, part 1): KIE's Suno family runs a music task (progress
// callbacks, then the final one with the tracks and their cover image), the row becomes success,
// its preview job renders the waveform from the real MP3 with the ffmpeg core the posters use, and
// the row ends ready with KIE's cover as its tile and the waveform beside it (or the waveform as
// its tile when KIE sent no cover), the track's length, and the track copied to storage; the
// library lists it with signed URLs for the tile, the waveform and the track.
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { startGeneration } from '../helpers/flow.ts';
import { decodeWebp, kieFile, landscapeJpeg, musicMp3 } from '../helpers/media.ts';
import { createUser, invoke, sql, type TestUser, waitForPreview } from '../helpers/stack.ts';

let user: TestUser;
let track: string;
let trackMs: number;
let cover: string;

const stored = async (path: string) =>
  (await sql<{ size: number; mime: string }[]>`
    select (metadata ->> 'size')::int as size, metadata ->> 'mimetype' as mime from storage.objects where bucket_id = 'generations' and name = ${path}`)[0] ?? null;

beforeAll(async () => {
  user = await createUser('audio');
  const mp3 = musicMp3(30);
  trackMs = Number(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', '.local/e2e-media/music-30s.mp3']).toString()) * 1000;
  track = await kieFile(mp3, 'mp3', 'audio/mpeg');
  cover = await kieFile(await landscapeJpeg(), 'jpeg', 'image/jpeg');
}, 120_000);

describe('an audio generation', () => {
  it('with KIE\'s cover: the cover is its tile, the waveform is kept beside it, with the track\'s length and a copy of the track', async () => {
    const { id } = await startGeneration({ userId: user.id, type: 'audio', family: 'suno', fixture: track, cover });
    const row = await waitForPreview(id, 90_000);
    expect([row.status, row.preview_status, row.preview_error_code]).toEqual(['success', 'ready', null]);
    expect(row.preview_path).toBe(`${user.id}/previews/${id}_preview.webp`);
    expect(row.preview_waveform_path).toBe(`${user.id}/previews/${id}_waveform.webp`);
    expect(row.original_path).toBe(`${user.id}/originals/${id}.mp3`);
    expect(Math.abs(row.preview_duration_ms - trackMs), `${row.preview_duration_ms} ms against ffprobe's ${trackMs}`).toBeLessThan(100);
    // the tile is the cover (a 1600×1000 photo → 512×320), the waveform a 16:9 tile of its own
    expect([row.preview_width, row.preview_height]).toEqual([512, 320]);
    expect(await stored(row.original_path)).toMatchObject({ mime: 'audio/mpeg' });
    const tile = await stored(row.preview_path);
    const wave = await stored(row.preview_waveform_path);
    expect(tile && wave && tile.size !== wave.size).toBe(true);
  }, 120_000);

  it('without a cover: the waveform is its tile, and it shows the loud half and the quiet half', async () => {
    const { id } = await startGeneration({ userId: user.id, type: 'audio', family: 'suno', fixture: track });
    const row = await waitForPreview(id, 90_000);
    expect(row.preview_status).toBe('ready');
    expect(row.preview_waveform_path).toBe(row.preview_path);
    expect([row.preview_width, row.preview_height]).toEqual([512, 288]);
    // the waveform's pixels: the bars of the first half are taller than those of the second
    const signed = await invoke('library', { key: user.accessToken, method: 'GET' });
    const item = signed.json.items.find((i: { id: string }) => i.id === id);
    const png = new Uint8Array(await (await fetch(item.waveformUrl)).arrayBuffer());
    const { default: sharp } = await import('sharp');
    const { data, info } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const lit = (x0: number, x1: number) => {
      let n = 0;
      for (let y = 0; y < info.height; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * info.width + x) * 4;
          if (data[i] + data[i + 1] + data[i + 2] > 3 * 128) n++;
        }
      }
      return n / ((x1 - x0) * info.height);
    };
    const loud = lit(0, info.width / 2);
    const quiet = lit(info.width / 2, info.width);
    expect(loud, `bright share: loud half ${loud.toFixed(3)}, quiet half ${quiet.toFixed(3)}`).toBeGreaterThan(quiet * 2);
    expect((await decodeWebp(png)).width).toBe(512);
  }, 120_000);

  it('the library lists audio with its tile, waveform, length and the track to play', async () => {
    const r = await invoke('library', { key: user.accessToken, method: 'GET' });
    expect(r.status).toBe(200);
    const audio = r.json.items.filter((i: { type: string }) => i.type === 'audio');
    expect(audio).toHaveLength(2);
    for (const item of audio) {
      expect(item).toMatchObject({ previewStatus: 'ready', previewUrl: expect.stringContaining('/storage/v1/object/sign/'), waveformUrl: expect.any(String) });
      expect(Math.abs(item.durationMs - trackMs)).toBeLessThan(100);
      const res = await fetch(item.originalUrl);
      expect([res.status, res.headers.get('content-type')]).toEqual([200, 'audio/mpeg']);
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(600_000);
    }
  });
});
