// Hostile files under every byte cap (and all but one under the pixel cap) that used to kill the
// isolate: each is refused from its header, before any decoder allocates, with a precise
// terminal code; the sizes each check reads are the ones the decoders really use.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import { checkPhotoBudget, DECODE_BUDGET_BYTES, photoDecodeCost } from '../../shared/preview/budget.ts';
import { videoDimensions } from '../../shared/preview/container.ts';
import { readImageHeader } from '../../shared/preview/header.ts';
import { renderPhotoPreview } from '../../shared/preview/photo.ts';
import { extractPoster } from '../../shared/preview/video.ts';
import { animatedWebpBomb, gifFrameBomb, HOSTILE } from '../fixtures/hostile.ts';
import { ffmpeg, read } from '../fixtures/media.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hostile-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function refusal(p: Promise<unknown>): Promise<PreviewError> {
  const err = await p.then(() => null, (e) => e);
  expect(err).toBeInstanceOf(PreviewError);
  return err as PreviewError;
}

describe('hostile inputs are refused before decoding', () => {
  for (const h of HOSTILE) {
    it(`${h.name} → ${h.code}`, async () => {
      const bytes = await h.make(dir);
      const started = performance.now();
      const err = await refusal(h.type === 'video' ? extractPoster(bytes) : renderPhotoPreview(bytes));
      expect(err.code).toBe(h.code);
      expect(err.message).toMatch(h.error);
      expect(err.retryable).toBe(false);
      // refused from the header: no decoder ran (a decode of any of these takes seconds)
      expect(performance.now() - started).toBeLessThan(500);
    }, 60_000);
  }
});

describe('the sizes the checks read', () => {
  it('GIF: the first image descriptor after extensions and the colour table', () => {
    const h = readImageHeader(gifFrameBomb(), 'gif');
    expect([h.width, h.height, h.frame]).toEqual([100, 100, { width: 8000, height: 8000 }]);
  });

  it('animated WebP: the first frame\'s bitstream, not the canvas nor the ANMF header', async () => {
    const h = readImageHeader(await animatedWebpBomb(3000), 'webp');
    expect([h.width, h.height, h.frame, h.webp]).toEqual([100, 100, { width: 3000, height: 3000 }, { lossless: true, alpha: false }]);
  });

  it('JPEG: progressive flag and sampling factors (baseline costs nothing: DCT-scaled)', async () => {
    const make = (progressive: boolean, sub: '4:2:0' | '4:4:4') => sharp({ create: { width: 64, height: 48, channels: 3, background: '#888' } })
      .jpeg({ progressive, chromaSubsampling: sub }).toBuffer().then((b) => new Uint8Array(b));
    const p420 = readImageHeader(await make(true, '4:2:0'), 'jpeg');
    expect([p420.progressive, p420.components]).toEqual([true, [{ h: 2, v: 2 }, { h: 1, v: 1 }, { h: 1, v: 1 }]]);
    const p444 = readImageHeader(await make(true, '4:4:4'), 'jpeg');
    expect(p444.components).toEqual([{ h: 1, v: 1 }, { h: 1, v: 1 }, { h: 1, v: 1 }]);
    expect(readImageHeader(await make(false, '4:2:0'), 'jpeg').progressive).toBe(false);
    // 7000² 4:2:0: (875² + 2·438²) blocks × 128 bytes × 1.5
    expect(Math.round(photoDecodeCost('jpeg', { ...p420, width: 7000, height: 7000 }) / 1048576)).toBe(210);
    expect(photoDecodeCost('jpeg', { ...p420, width: 7000, height: 7000, progressive: false })).toBe(0);
  });

  it('the budget lets through what the bench renders inside the limits', () => {
    const ok: [string, Parameters<typeof checkPhotoBudget>[1], 'jpeg' | 'png' | 'webp'][] = [
      ['progressive JPEG 5000² 4:2:0 (188 MB peak measured)', { width: 5000, height: 5000, orientation: 1, progressive: true, components: [{ h: 2, v: 2 }, { h: 1, v: 1 }, { h: 1, v: 1 }] }, 'jpeg'],
      ['8-bit RGBA PNG 4096²', { width: 4096, height: 4096, orientation: 1, bitsPerPixel: 32 }, 'png'],
      ['lossy WebP 7000² (60 MB peak measured)', { width: 7000, height: 7000, orientation: 1, webp: { lossless: false, alpha: false } }, 'webp'],
      ['lossless WebP 4096² (134 MB peak measured)', { width: 4096, height: 4096, orientation: 1, webp: { lossless: true, alpha: false } }, 'webp'],
      ['WebP with alpha 5000²', { width: 5000, height: 5000, orientation: 1, webp: { lossless: false, alpha: true } }, 'webp'],
    ];
    for (const [what, header, format] of ok) {
      expect(() => checkPhotoBudget(format, header, 50_000_000), what).not.toThrow();
      expect(photoDecodeCost(format, header), what).toBeLessThanOrEqual(DECODE_BUDGET_BYTES);
    }
  });

  it('video: the coded size from MP4, MOV and WebM containers (what ffprobe says)', () => {
    const cases: [string, string[]][] = [
      ['mp4', ['-c:v', 'libx264', '-pix_fmt', 'yuv420p']],
      ['mov', ['-c:v', 'libx264', '-pix_fmt', 'yuv420p']],
      ['webm', ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8']],
    ];
    for (const [ext, codec] of cases) {
      const file = join(dir, `size.${ext}`);
      ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=328x184:r=10:d=0.3', ...codec, file]);
      expect(videoDimensions(read(file), ext as 'mp4'), ext).toEqual({ width: 328, height: 184 });
    }
    // the index at the end of the file (no faststart) is found too
    const late = join(dir, 'late.mp4');
    ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=200x120:r=10:d=0.3', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', late]);
    expect(videoDimensions(read(late), 'mp4')).toEqual({ width: 200, height: 120 });
    expect(videoDimensions(new Uint8Array(64), 'mp4')).toBeNull();
  });
});
