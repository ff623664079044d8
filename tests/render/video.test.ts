import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPoster } from '../../shared/preview/video.ts';
import { nativeFrame, read, videoMp4 } from '../fixtures/media.ts';
import { meanLuma, rgba, ssim } from '../fixtures/quality.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-video-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('extractPoster', () => {
  it('skips a black first second and matches a frame from after the fade', async () => {
    const file = videoMp4(dir, 1280, 720, 4, { black: 0.7, fade: 0.3 });
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([512, 288]);
    const px = await rgba(r.webp);
    expect([px.width, px.height]).toEqual([512, 288]);
    const y = meanLuma(px.data);
    const black = meanLuma(nativeFrame(file, 0.2, 512, 288));
    expect(black).toBeLessThan(20);
    expect(y).toBeGreaterThan(60);
    const after = nativeFrame(file, 1.4, 512, 288);
    expect(Math.abs(meanLuma(after) - y)).toBeLessThan(8);
    expect(ssim(px.data, after, 512, 288)).toBeGreaterThan(0.6);
    const early = nativeFrame(file, 0.85, 512, 288); // mid-fade
    expect(ssim(px.data, after, 512, 288)).toBeGreaterThan(ssim(px.data, early, 512, 288));
  });

  it('a 0.5 s fade-in at 1080p gives a bright poster', async () => {
    const file = videoMp4(dir, 1920, 1080, 3, { fade: 0.5 });
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([512, 288]);
    const px = await rgba(r.webp);
    const ref = nativeFrame(file, 1.0, 512, 288);
    expect(meanLuma(px.data)).toBeGreaterThan(meanLuma(ref) - 8);
    expect(r.thumbhash.length).toBeGreaterThan(10);
  });

  it('honours rotation metadata', async () => {
    const file = videoMp4(dir, 640, 360, 1, { fade: 0, rotate: 90 });
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([288, 512]);
  });

  it('handles videos shorter than a second and never enlarges', async () => {
    const file = videoMp4(dir, 320, 240, 0.3, { fade: 0 });
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([320, 240]);
    expect(meanLuma((await rgba(r.webp)).data)).toBeGreaterThan(40);
  });

  it('falls back to the best frame of an all-dark video', async () => {
    const file = videoMp4(dir, 320, 240, 1, { black: 5, fade: 0.1 });
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([320, 240]);
  });

  it('uses a cover image only when it is not black', async () => {
    const file = read(videoMp4(dir, 640, 360, 1, { fade: 0 }));
    const square = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#ffffff' } }).png().toBuffer();
    const bright = new Uint8Array(
      await sharp({ create: { width: 800, height: 400, channels: 3, background: '#3080c0' } })
        .composite([{ input: square, left: 50, top: 50 }])
        .jpeg()
        .toBuffer(),
    );
    const withCover = await extractPoster(file, { coverImage: bright });
    expect([withCover.width, withCover.height]).toEqual([512, 256]);
    const black = new Uint8Array(await sharp({ create: { width: 800, height: 400, channels: 3, background: '#000000' } }).jpeg().toBuffer());
    const fromVideo = await extractPoster(file, { coverImage: black });
    expect([fromVideo.width, fromVideo.height]).toEqual([512, 288]);
  });

  it('accepts the core wasm from a loader', async () => {
    const { assetUrl, readLocalFile } = await import('../../shared/preview/wasm.ts');
    let calls = 0;
    const file = read(videoMp4(dir, 320, 240, 1, { fade: 0 }));
    const r = await extractPoster(file, {
      loadCoreWasm: async () => {
        calls++;
        return await readLocalFile(assetUrl('ffmpeg-core'));
      },
    });
    expect(r.width).toBe(320);
    expect(calls).toBeLessThanOrEqual(1);
  });
});
