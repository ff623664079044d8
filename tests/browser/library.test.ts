// Checklist row 8 in a real browser: Debian's Chromium (headless) driven by playwright-core
// opens the local stack's /library page, signs in through the login link, and the test
// checks what a customer sees: every tile's image loaded, a video tile that is not black
// (pixels sampled through a canvas), the aspect ratio from width/height, a clear failed
// state, a click that opens the full-size photo, a click that plays the video, an audio tile's
// length and play control (its track plays), and a second user who sees none of the first user's
// items. A screenshot goes to tests/artifacts/.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, chromium, type Page } from 'playwright-core';
import { API_URL, createUser, type GenerationRow, type TestUser, waitForPreview } from '../helpers/stack.ts';
import { fadeInVideo, kieFile, landscapeJpeg, musicMp3, transparentPng } from '../helpers/media.ts';
import { startGeneration } from '../helpers/flow.ts';

let browser: Browser;
let alice: TestUser;
let photo: GenerationRow;
let png: GenerationRow;
let video: GenerationRow;
let failed: GenerationRow;
let song: GenerationRow;
let voice: GenerationRow;

beforeAll(async () => {
  alice = await createUser('browser');
  const jpg = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
  const pngFile = await kieFile(await transparentPng(), 'png', 'image/png');
  const mp4 = await kieFile(fadeInVideo(), 'mp4', 'video/mp4');
  const mp3 = await kieFile(musicMp3(30), 'mp3', 'audio/mpeg');
  const ids = [
    await startGeneration({ userId: alice.id, type: 'photo', fixture: jpg }),
    await startGeneration({ userId: alice.id, type: 'photo', family: 'flux-kontext', fixture: pngFile }),
    await startGeneration({ userId: alice.id, type: 'video', family: 'veo', fixture: mp4 }),
    await startGeneration({ userId: alice.id, type: 'photo', fixture: jpg, fake: { asset: '404' } }),
    // music with KIE's cover, and a track without one (its waveform is its tile)
    await startGeneration({ userId: alice.id, type: 'audio', family: 'suno', fixture: mp3, cover: jpg }),
    await startGeneration({ userId: alice.id, type: 'audio', family: 'suno', fixture: mp3 }),
  ];
  // A video's first render can meet the edge CPU limit on a cold isolate; the sweep then
  // retries it after the lease, so allow for one retry.
  [photo, png, video, failed, song, voice] = await Promise.all(ids.map((g) => waitForPreview(g.id, 200_000)));
  // playwright gives each launch a fresh temporary profile (its own --user-data-dir).
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
});

async function openLibrary(user: TestUser, deviceScaleFactor = 1): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 }, deviceScaleFactor });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${API_URL}/library#email=${encodeURIComponent(user.email)}&password=${encodeURIComponent(user.password)}`);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 30_000 });
  expect(errors).toEqual([]);
  // The password does not stay in the address bar.
  expect(page.url()).not.toContain('password');
  return page;
}

/**
 * Each ready tile's image as loaded: the file the browser chose from its srcset (currentSrc) and
 * that file's own pixel size (naturalWidth is in CSS pixels once a srcset has w descriptors).
 */
async function loadedImages(page: Page) {
  return await page.$$eval('.tile[data-status="ready"]', (els) => Promise.all(els.map(async (e) => {
    const img = e.querySelector('img')!;
    const box = e.getBoundingClientRect();
    const bitmap = await createImageBitmap(await (await fetch(img.currentSrc)).blob());
    return {
      id: (e as HTMLElement).dataset.id,
      src: new URL(img.currentSrc).pathname,
      natural: [bitmap.width, bitmap.height],
      ratio: box.width / box.height,
    };
  })));
}

describe('the library page in Chromium', () => {
  it('shows every preview and poster, the failed state, opens photos and plays videos', async () => {
    expect([photo, png, video].map((r) => r.preview_status)).toEqual(['ready', 'ready', 'ready']);
    expect(failed.preview_status).toBe('failed');
    const page = await openLibrary(alice);

    const tiles = await page.$$eval('#grid .tile', (els) => els.map((e) => ({ id: (e as HTMLElement).dataset.id, type: (e as HTMLElement).dataset.type, status: (e as HTMLElement).dataset.status })));
    expect(tiles).toHaveLength(6);
    expect(new Map(tiles.map((t) => [t.id, `${t.type}:${t.status}`]))).toEqual(new Map([
      [photo.id, 'photo:ready'], [png.id, 'photo:ready'], [video.id, 'video:ready'], [failed.id, 'photo:failed'],
      [song.id, 'audio:ready'], [voice.id, 'audio:ready'],
    ]));

    // Every ready tile's image loads.
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('.tile[data-status="ready"] img')]
      .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: 30_000 });
    const sizes = await loadedImages(page);
    // the 512 size on a screen of density 1
    for (const row of [photo, png, video, song, voice]) {
      const s = sizes.find((x) => x.id === row.id)!;
      expect(s.src.endsWith(`/${row.preview_path ?? row.poster_path}`), s.src).toBe(true);
      expect(s.natural).toEqual([row.preview_width, row.preview_height]);
      expect(s.ratio).toBeCloseTo(row.preview_width / row.preview_height, 1);
    }
    // The thumbhash placeholder is decoded in the page.
    const bg = await page.$eval(`.tile[data-id="${video.id}"]`, (e) => (e as HTMLElement).style.backgroundImage);
    expect(bg).toMatch(/^url\("data:image\/png;base64,/);

    // The video tile is a real frame, not black: sample its pixels through a canvas.
    const luma = await page.$eval(`.tile[data-id="${video.id}"] img`, (img) => {
      const i = img as HTMLImageElement;
      const c = document.createElement('canvas');
      c.width = i.naturalWidth;
      c.height = i.naturalHeight;
      const ctx = c.getContext('2d')!;
      ctx.drawImage(i, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let sum = 0, sq = 0;
      const n = d.length / 4;
      for (let k = 0; k < d.length; k += 4) {
        const y = 0.2126 * d[k] + 0.7152 * d[k + 1] + 0.0722 * d[k + 2];
        sum += y;
        sq += y * y;
      }
      const mean = sum / n;
      return { mean, std: Math.sqrt(sq / n - mean * mean) };
    });
    expect(luma.mean).toBeGreaterThan(40);
    expect(luma.std).toBeGreaterThan(15);

    // The failed tile says why.
    expect(await page.textContent(`.tile[data-id="${failed.id}"]`)).toContain('Download failed: 404');

    mkdirSync('tests/artifacts', { recursive: true });
    await page.screenshot({ path: 'tests/artifacts/library.png', fullPage: true });

    // A click on a photo opens the full-size image (the original, larger than the preview).
    await page.click(`.tile[data-id="${photo.id}"]`);
    await page.waitForFunction(() => {
      const img = document.querySelector<HTMLImageElement>('#viewer img[data-role="full"]');
      return img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: 20_000 });
    const full = await page.$eval('#viewer img[data-role="full"]', (i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
    expect(full).toEqual([1600, 1000]);
    await page.keyboard.press('Escape');
    expect(await page.isHidden('#viewer')).toBe(true);

    // A click on a video plays it: its current time advances.
    await page.click(`.tile[data-id="${video.id}"]`);
    await page.waitForFunction(() => {
      const v = document.querySelector<HTMLVideoElement>('#viewer video[data-role="full"]');
      return v && !v.paused && v.currentTime > 0.5;
    }, null, { timeout: 20_000 });
    const v = await page.$eval('#viewer video', (e) => ({ w: (e as HTMLVideoElement).videoWidth, error: (e as HTMLVideoElement).error }));
    expect(v).toEqual({ w: 1280, error: null });
    await page.keyboard.press('Escape');

    // An audio tile shows its length and plays its track behind its play control, in the tile.
    for (const row of [song, voice]) {
      expect(await page.textContent(`.tile[data-id="${row.id}"] .badge`)).toBe('♪ 0:30');
    }
    await page.click(`.tile[data-id="${song.id}"] button[data-role="play"]`);
    await page.waitForFunction((id) => {
      const a = document.querySelector<HTMLAudioElement>(`.tile[data-id="${id}"] audio[data-role="audio"]`);
      return a && !a.paused && a.currentTime > 0.5;
    }, song.id, { timeout: 20_000 });
    expect(await page.getAttribute(`.tile[data-id="${song.id}"]`, 'data-playing')).toBe('true');
    expect(await page.isHidden('#viewer')).toBe(true); // it plays in the tile, no viewer
    await page.click(`.tile[data-id="${song.id}"] button[data-role="play"]`);
    await page.waitForFunction((id) => document.querySelector<HTMLAudioElement>(`.tile[data-id="${id}"] audio`)?.paused === true, song.id);
    await page.close();
  }, 120_000);

  it('a screen of twice the density loads the 1024 size of every tile that has one', async () => {
    const rows = [photo, png, video, song, voice];
    // the sizes the database lists: each row has its larger size (the fixtures are over 1024 px)
    for (const row of rows) {
      expect(row.preview_sizes.map((x: { side: number }) => x.side), row.id).toEqual([1024]);
    }
    const page = await openLibrary(alice, 2);
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('.tile[data-status="ready"] img')]
      .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: 30_000 });
    const loaded = await loadedImages(page);
    for (const row of rows) {
      const [size] = row.preview_sizes as { path: string; width: number; height: number }[];
      const l = loaded.find((x) => x.id === row.id)!;
      expect(l.src.endsWith(`/${size.path}`), `${l.src} is ${size.path}`).toBe(true);
      expect(l.natural).toEqual([size.width, size.height]);
    }
    await page.close();
  }, 60_000);

  it('a second user sees none of the first user\'s items', async () => {
    const bob = await createUser('bob-browser');
    const page = await openLibrary(bob);
    expect(await page.$$eval('#grid .tile', (els) => els.map((e) => (e as HTMLElement).dataset.id))).toEqual([]);
    expect(await page.textContent('#message')).toBe('No generations yet.');
    const content = await page.content();
    for (const row of [photo, png, video, failed]) expect(content).not.toContain(row.id);
    await page.close();
  }, 60_000);
});
