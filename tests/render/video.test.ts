import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CORE_WASM } from '../../local/local-core.ts';
import { edgeDenoBin } from '../../local/paths.ts';
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

  it('with a larger size (PREVIEW_SIZES 512,1024): the same frame in both, the 1024 one against native ffmpeg at 1024', async () => {
    const file = videoMp4(dir, 1920, 1080, 3, { fade: 0.5 });
    const alone = await extractPoster(read(file));
    const r = await extractPoster(read(file), { maxSide: 512, sides: [1024] });
    expect([r.width, r.height]).toEqual([512, 288]);
    expect(r.sizes?.map((s) => [s.side, s.width, s.height])).toEqual([[1024, 1024, 576]]);
    const small = await rgba(r.webp), big = await rgba(r.sizes![0].webp);
    expect(Math.abs(meanLuma(small.data) - meanLuma((await rgba(alone.webp)).data))).toBeLessThan(3);
    // the frame's 1024 size matches a native frame of the settled picture at 1024
    expect(ssim(big.data, nativeFrame(file, 1.0, 1024, 576), 1024, 576)).toBeGreaterThan(0.9);
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

  it('falls back to KIE\'s cover only when the video gives no poster, and only to a cover that is not black', async () => {
    const square = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#ffffff' } }).png().toBuffer();
    const bright = new Uint8Array(
      await sharp({ create: { width: 800, height: 400, channels: 3, background: '#3080c0' } })
        .composite([{ input: square, left: 50, top: 50 }])
        .jpeg()
        .toBuffer(),
    );
    const blackCover = new Uint8Array(await sharp({ create: { width: 800, height: 400, channels: 3, background: '#000000' } }).jpeg().toBuffer());
    let loads = 0;
    const cover = (bytes: Uint8Array) => async () => (loads++, bytes);
    // the poster is the cover's picture (512×256, its blue with the white square), not a frame
    const coverRef = await sharp(bright).resize(512, 256).ensureAlpha().raw().toBuffer();
    const expectCover = async (r: { webp: Uint8Array; width: number; height: number }) => {
      expect([r.width, r.height]).toEqual([512, 256]);
      expect(ssim((await rgba(r.webp)).data, new Uint8Array(coverRef), 512, 256)).toBeGreaterThan(0.9);
    };

    // a video with a picture: its own frame, the cover is never fetched
    const good = read(videoMp4(dir, 640, 360, 1, { fade: 0 }));
    expect([(await extractPoster(good, { loadCover: cover(bright) })).width, loads]).toEqual([512, 0]);

    // every frame black: the cover (800×400 → 512×256)
    const dark = read(videoMp4(dir, 320, 240, 1, { black: 5, fade: 0.1 }));
    const fromCover = await extractPoster(dark, { loadCover: cover(bright) });
    expect(loads).toBe(1);
    await expectCover(fromCover);
    // … unless the cover is black too: the video's best frame
    expect([(await extractPoster(dark, { loadCover: cover(blackCover) })).width]).toEqual([320]);

    // no poster within the limits (here: a pixel cap the 1280×720 video is over, the 800×400 cover is not): the cover
    const large = read(videoMp4(dir, 1280, 720, 1, { fade: 0 }));
    await expectCover(await extractPoster(large, { maxPixels: 500_000, loadCover: cover(bright) }));
    await expect(extractPoster(large, { maxPixels: 500_000 })).rejects.toMatchObject({ code: 'TOO_MANY_PIXELS' });
    // a cover that cannot be fetched leaves the original reason
    await expect(extractPoster(large, { maxPixels: 500_000, loadCover: async () => { throw new Error('404'); } }))
      .rejects.toMatchObject({ code: 'TOO_MANY_PIXELS' });
    // above 2560×1440 only keyframes are decoded; when none shows a picture (a fade-in whose
    // only keyframe is black), its reference frames are decoded next, before any cover is fetched
    // (tests/render/video-keyframe.test.ts) …
    const fading = read(videoMp4(dir, 2688, 1512, 1, { fade: 0.9, keyint: 300 }));
    const before = loads;
    expect((await extractPoster(fading, { loadCover: cover(bright) })).width).toBe(512);
    expect(loads).toBe(before);
    // … and when they show none either (black throughout), there is no poster and the cover stands in
    const big = read(videoMp4(dir, 2688, 1512, 1, { black: 5, fade: 0.1, keyint: 300 }));
    await expect(extractPoster(big)).rejects.toMatchObject({
      code: 'NO_VIDEO_FRAME',
      message: expect.stringContaining('no frame of this 2688x1512 video'),
    });
    await expectCover(await extractPoster(big, { loadCover: cover(bright) }));
    // not a video at all: no fallback
    await expect(extractPoster(bright, { loadCover: cover(bright) })).rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
  });

  it('above 2560×1440: the first keyframe with a picture, past a black fade-in', async () => {
    // 2688×1512, a 0.5 s fade-in, a keyframe every 0.5 s: keyframe 0 is black, keyframe 1 is not
    const file = videoMp4(dir, 2688, 1512, 1.5, { fade: 0.5, keyint: 15 });
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([512, 288]);
    const px = await rgba(r.webp);
    expect(meanLuma(px.data)).toBeGreaterThan(60);
    // it is the keyframe at 0.5 s, as native ffmpeg decodes it
    const s = ssim(px.data, nativeFrame(file, 0.5, 512, 288), 512, 288);
    expect(s, `ssim ${s.toFixed(3)}`).toBeGreaterThan(0.8);
  }, 60_000);

  it('asks the core\'s source once per isolate, and again after a failed load', () => {
    const file = videoMp4(dir, 320, 240, 1, { fade: 0 });
    const probe = join(import.meta.dirname, '../fixtures/core-loader-probe.ts');
    const root = join(import.meta.dirname, '../..');
    // on the edge runtime's Deno with the functions' import map, reading only the video and the core
    const r = spawnSync(edgeDenoBin(), ['run', '--quiet', '--no-prompt', '--config', join(root, 'functions/deno.json'),
      `--allow-read=${file},${LOCAL_CORE_WASM.pathname}`, probe, file], {
      cwd: root, encoding: 'utf8', env: { ...process.env, DENO_TLS_CA_STORE: 'system', NO_COLOR: '1' },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(out.first).toMatch(/storage unavailable/);
    expect(out).toMatchObject({ deno: '2.1.4', calls: 2, widths: [320, 320] });
  }, 60_000);
});
