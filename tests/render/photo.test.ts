import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageHeader } from '../../shared/preview/header.ts';
import { renderPhotoPreview } from '../../shared/preview/photo.ts';
import { animatedWebp } from '../fixtures/hostile.ts';
import { encodePhoto, photoPng, read } from '../fixtures/media.ts';
import { areaReference, rgba, ssim } from '../fixtures/quality.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-photo-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function golden(input: Uint8Array, maxSide = 512) {
  const ours = await renderPhotoPreview(input, { maxSide, quality: 80 });
  const oursPx = await rgba(ours.webp);
  expect(oursPx.width).toBe(ours.width);
  expect(oursPx.height).toBe(ours.height);
  expect(Math.max(ours.width, ours.height)).toBe(maxSide);
  const sharpWebp = await sharp(input, { limitInputPixels: false, animated: false })
    .resize(maxSide, maxSide, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 80 })
    .toBuffer();
  const sharpPx = await rgba(new Uint8Array(sharpWebp));
  expect([sharpPx.width, sharpPx.height]).toEqual([ours.width, ours.height]);
  const ref = areaReference(await rgba(input), ours.width, ours.height);
  const sOurs = ssim(oursPx.data, ref, ours.width, ours.height);
  const sSharp = ssim(sharpPx.data, ref, ours.width, ours.height);
  console.log(`ssim ours=${sOurs.toFixed(4)} sharp=${sSharp.toFixed(4)} ${ours.width}x${ours.height} ${ours.webp.length}B`);
  return { ours, sOurs, sSharp };
}

describe('renderPhotoPreview golden (SSIM vs an area-average reference, sharp as anchor)', () => {
  const cases: [string, 'jpeg' | 'png' | 'webp' | 'gif', number, number, { alpha?: boolean }][] = [
    ['JPEG 2048²', 'jpeg', 2048, 2048, {}],
    ['JPEG 1536×2752 portrait', 'jpeg', 1536, 2752, {}],
    ['JPEG 1000×700 (non-integer DCT ratio)', 'jpeg', 1000, 700, {}],
    ['PNG 2048²', 'png', 2048, 2048, {}],
    ['PNG 1200×900 with alpha', 'png', 1200, 900, { alpha: true }],
    ['WebP 2048²', 'webp', 2048, 2048, {}],
    ['WebP 1000×1000 with alpha', 'webp', 1000, 1000, { alpha: true }],
    // over the 10 MP a full-size decode allowed: libwebp decodes it straight to the preview size
    ['WebP 6000×2000 panorama', 'webp', 6000, 2000, {}],
    ['GIF 800×600', 'gif', 800, 600, {}],
  ];
  for (const [name, format, w, h, opts] of cases) {
    it(name, async () => {
      const src = photoPng(dir, w, h, opts);
      const file = await encodePhoto(src, format, join(dir, `${w}x${h}${opts.alpha ? 'a' : ''}.${format}`));
      const { ours, sOurs, sSharp } = await golden(read(file));
      expect(ours.thumbhash).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expect(ours.webp.length).toBeGreaterThan(100);
      expect(sOurs, `ours ${sOurs.toFixed(4)} sharp ${sSharp.toFixed(4)}`).toBeGreaterThanOrEqual(sSharp - 0.01);
      if (opts.alpha) {
        const px = await rgba(ours.webp);
        let transparent = 0;
        for (let i = 3; i < px.data.length; i += 4) if (px.data[i] < 128) transparent++;
        expect(transparent).toBeGreaterThan(0.1 * px.width * px.height);
      }
    });
  }

  it('never enlarges a small image', async () => {
    const src = photoPng(dir, 300, 200);
    const r = await renderPhotoPreview(read(await encodePhoto(src, 'png', join(dir, 'small.png'))));
    expect([r.width, r.height]).toEqual([300, 200]);
  });

  it('honours maxSide and quality', async () => {
    const src = photoPng(dir, 1000, 700);
    const input = read(await encodePhoto(src, 'jpeg', join(dir, 'q.jpeg')));
    const small = await renderPhotoPreview(input, { maxSide: 200, quality: 30 });
    const big = await renderPhotoPreview(input, { maxSide: 200, quality: 95 });
    expect([small.width, small.height]).toEqual([200, 140]);
    expect(big.webp.length).toBeGreaterThan(small.webp.length);
  });
});

describe('PNG variants through the streaming decoder', () => {
  const variants: [string, string[]][] = [
    ['palette', ['-pix_fmt', 'pal8']],
    ['gray', ['-pix_fmt', 'gray']],
    ['gray+alpha', ['-pix_fmt', 'ya8']],
    ['16-bit RGB', ['-pix_fmt', 'rgb48be']],
    ['16-bit RGBA', ['-pix_fmt', 'rgba64be']],
    ['interlaced RGB', []],
    ['interlaced palette', []],
  ];
  for (const [name, args] of variants) {
    it(name, async () => {
      const src = photoPng(dir, 900, 600);
      const out = join(dir, `var-${name.replace(/\W+/g, '_')}.png`);
      const { ffmpeg } = await import('../fixtures/media.ts');
      if (name.startsWith('interlaced')) {
        await sharp(src).png({ progressive: true, palette: name.endsWith('palette') }).toFile(out);
      } else {
        ffmpeg(['-i', src, ...args, out]);
      }
      const input = read(out);
      const { ours, sOurs, sSharp } = await golden(input);
      expect([ours.width, ours.height]).toEqual([512, 341]);
      expect(sOurs, `ours ${sOurs.toFixed(4)} sharp ${sSharp.toFixed(4)}`).toBeGreaterThanOrEqual(sSharp - 0.01);
    });
  }
});

describe('interlaced PNG (Adam7) streams too', () => {
  it('13.5 MP (the full-frame decoder it replaced was refused above about 10 MP)', async () => {
    const src = photoPng(dir, 4500, 3000, { seed: 5 });
    const out = join(dir, 'interlaced-4500x3000.png');
    await sharp(src).png({ progressive: true, compressionLevel: 1 }).toFile(out);
    const input = read(out);
    expect(readImageHeader(input, 'png').interlaced).toBe(true);
    const { ours, sOurs, sSharp } = await golden(input);
    expect([ours.width, ours.height]).toEqual([512, 341]);
    expect(sOurs, `ours ${sOurs.toFixed(4)} sharp ${sSharp.toFixed(4)}`).toBeGreaterThanOrEqual(sSharp - 0.01);
  });

  it('sizes whose first passes are empty (7×5, 1×1)', async () => {
    for (const [w, h] of [[7, 5], [1, 1]]) {
      const { data } = await sharp(photoPng(dir, 64, 64, { seed: 9 })).resize(w, h, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
      const plain = await sharp(data, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
      const adam7 = await sharp(data, { raw: { width: w, height: h, channels: 3 } }).png({ progressive: true }).toBuffer();
      const a = await renderPhotoPreview(new Uint8Array(plain), { quality: 100 });
      const b = await renderPhotoPreview(new Uint8Array(adam7), { quality: 100 });
      expect([b.width, b.height]).toEqual([w, h]);
      expect(Buffer.from(b.webp).equals(Buffer.from(a.webp)), `${w}x${h}: same pixels as the non-interlaced file`).toBe(true);
    }
  });
});

describe('GIF streams its first frame', () => {
  it('interlaced, with a transparent index', async () => {
    const src = photoPng(dir, 1500, 1000, { alpha: true, seed: 11 });
    const out = join(dir, 'interlaced-alpha.gif');
    await sharp(src).gif({ interlace: true }).toFile(out);
    const input = read(out);
    const { ours, sOurs, sSharp } = await golden(input);
    expect([ours.width, ours.height]).toEqual([512, 341]);
    expect(sOurs, `ours ${sOurs.toFixed(4)} sharp ${sSharp.toFixed(4)}`).toBeGreaterThanOrEqual(sSharp - 0.01);
    const px = await rgba(ours.webp);
    let transparent = 0;
    for (let i = 3; i < px.data.length; i += 4) if (px.data[i] < 128) transparent++;
    expect(transparent).toBeGreaterThan(0.1 * px.width * px.height);
  });

  it('a first frame smaller than the screen lands at its offset, the rest transparent', async () => {
    const gif = new Uint8Array(await sharp({ create: { width: 100, height: 50, channels: 3, background: { r: 20, g: 200, b: 40 } } }).gif().toBuffer());
    const dv = new DataView(gif.buffer);
    dv.setUint16(6, 200, true); // logical screen 200×100
    dv.setUint16(8, 100, true);
    let p = 13 + (gif[10] & 0x80 ? 3 * (2 << (gif[10] & 7)) : 0);
    while (gif[p] === 0x21) for (p += 2; gif[p] !== 0; p += gif[p] + 1);
    while (gif[p] !== 0x2c) p++;
    dv.setUint16(p + 1, 50, true); // frame at (50, 26)
    dv.setUint16(p + 3, 26, true);
    const ours = await renderPhotoPreview(gif);
    expect([ours.width, ours.height]).toEqual([200, 100]);
    const px = await rgba(ours.webp);
    const at = (x: number, y: number) => Array.from(px.data.subarray((y * 200 + x) * 4, (y * 200 + x) * 4 + 4));
    expect(at(100, 50)[1]).toBeGreaterThan(170);
    expect(at(100, 50)[3]).toBe(255);
    for (const [x, y] of [[10, 10], [40, 50], [160, 50], [100, 20], [100, 80]]) expect(at(x, y)[3], `alpha at ${x},${y}`).toBe(0);
  });
});

describe('animated WebP', () => {
  it('the first frame, scaled with the canvas and placed at its offset on a transparent canvas', async () => {
    const red = new Uint8Array(await sharp({ create: { width: 400, height: 200, channels: 3, background: { r: 220, g: 20, b: 30 } } })
      .webp({ quality: 90 }).toBuffer());
    const input = animatedWebp(red, { width: 1600, height: 800 }, { x: 600, y: 300, width: 400, height: 200 });
    const ours = await renderPhotoPreview(input, { maxSide: 400 });
    expect([ours.width, ours.height]).toEqual([400, 200]);
    const px = await rgba(ours.webp);
    const at = (x: number, y: number) => Array.from(px.data.subarray((y * px.width + x) * 4, (y * px.width + x) * 4 + 4));
    // the frame covers x 150..250, y 75..125 of the preview
    const [r, g, b, a] = at(200, 100);
    expect(r).toBeGreaterThan(180);
    expect(Math.max(g, b)).toBeLessThan(70);
    expect(a).toBe(255);
    for (const [x, y] of [[10, 10], [140, 100], [260, 100], [200, 60], [200, 140], [390, 190]]) expect(at(x, y)[3], `alpha at ${x},${y}`).toBe(0);
  });
});

describe('JPEG colour spaces', () => {
  it('CMYK (as Photoshop and libvips write it) comes out with the right colours', async () => {
    const src = photoPng(dir, 800, 600, { seed: 4 });
    const input = new Uint8Array(await sharp(src).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer());
    expect((await sharp(input).metadata()).space).toBe('cmyk');
    const ours = await renderPhotoPreview(input, { maxSide: 256 });
    const ref = await sharp(src).resize(256, 256, { fit: 'inside' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([ours.width, ours.height]).toEqual([ref.info.width, ref.info.height]);
    const px = await rgba(ours.webp);
    expect(ssim(px.data, new Uint8Array(ref.data), ours.width, ours.height)).toBeGreaterThan(0.8);
  });

  it('grayscale', async () => {
    const src = photoPng(dir, 800, 600, { seed: 6 });
    const input = new Uint8Array(await sharp(src).grayscale().jpeg().toBuffer());
    const { ours, sOurs, sSharp } = await golden(input);
    expect([ours.width, ours.height]).toEqual([512, 384]);
    expect(sOurs, `ours ${sOurs.toFixed(4)} sharp ${sSharp.toFixed(4)}`).toBeGreaterThanOrEqual(sSharp - 0.01);
  });
});

describe('EXIF orientation', () => {
  for (let o = 1; o <= 8; o++) {
    it(`orientation ${o} comes out upright`, async () => {
      // an asymmetric picture: sharp writes the tag without touching the pixels
      const src = photoPng(dir, 640, 400, { seed: 3 });
      const file = await encodePhoto(src, 'jpeg', join(dir, `orient${o}.jpeg`), { orientation: o });
      const input = read(file);
      const meta = await sharp(input).metadata();
      expect(meta.orientation).toBe(o);
      const ours = await renderPhotoPreview(input, { maxSide: 256 });
      const upright = await sharp(input).rotate().resize(256, 256, { fit: 'inside' }).raw().ensureAlpha()
        .toBuffer({ resolveWithObject: true });
      expect([ours.width, ours.height]).toEqual([upright.info.width, upright.info.height]);
      const px = await rgba(ours.webp);
      const s = ssim(px.data, new Uint8Array(upright.data), ours.width, ours.height);
      expect(s).toBeGreaterThan(0.85);
    });
  }
});

describe('sizes (PREVIEW_SIZES 512,1024): every size from one decode, each against sharp at its size', () => {
  /** Our size at `side` against an area-average reference, sharp's resize to that side as the anchor. */
  async function sizeAgainstSharp(input: Uint8Array, webp: Uint8Array, width: number, height: number, side: number) {
    const px = await rgba(webp);
    expect([px.width, px.height]).toEqual([width, height]);
    const sharpPx = await rgba(new Uint8Array(
      await sharp(input).rotate().resize(side, side, { fit: 'inside', withoutEnlargement: true }).webp({ quality: 80 }).toBuffer(),
    ));
    expect([sharpPx.width, sharpPx.height]).toEqual([width, height]);
    const ref = areaReference(await rgba(new Uint8Array(await sharp(input).rotate().png().toBuffer())), width, height);
    const sOurs = ssim(px.data, ref, width, height);
    const sSharp = ssim(sharpPx.data, ref, width, height);
    console.log(`size ${side}: ssim ours=${sOurs.toFixed(4)} sharp=${sSharp.toFixed(4)} ${width}x${height} ${webp.length}B`);
    expect(sOurs, `${side}: ours ${sOurs.toFixed(4)} sharp ${sSharp.toFixed(4)}`).toBeGreaterThanOrEqual(sSharp - 0.01);
  }

  const cases: [string, 'jpeg' | 'png' | 'webp', number, number, { alpha?: boolean }][] = [
    ['JPEG 2048²', 'jpeg', 2048, 2048, {}],
    ['PNG 1600×1000 with alpha', 'png', 1600, 1000, { alpha: true }],
    ['WebP 3000×1000 panorama', 'webp', 3000, 1000, {}],
  ];
  for (const [name, format, w, h, opts] of cases) {
    it(name, async () => {
      const file = await encodePhoto(photoPng(dir, w, h, opts), format, join(dir, `sizes-${w}x${h}.${format}`));
      const input = read(file);
      const r = await renderPhotoPreview(input, { maxSide: 512, sides: [1024], quality: 80 });
      // the first size is where it always was: the same box as a render of that size alone
      const alone = await renderPhotoPreview(input, { maxSide: 512, quality: 80 });
      expect([r.width, r.height]).toEqual([alone.width, alone.height]);
      expect(r.thumbhash).toMatch(/^[A-Za-z0-9+/]+=*$/);
      await sizeAgainstSharp(input, r.webp, r.width, r.height, 512);
      expect(r.sizes?.map((s) => s.side)).toEqual([1024]);
      const [big] = r.sizes!;
      expect(Math.max(big.width, big.height)).toBe(1024);
      await sizeAgainstSharp(input, big.webp, big.width, big.height, 1024);
    });
  }

  it('a picture no larger than a box gets no size past it; one between the boxes gets its own size', async () => {
    const small = read(await encodePhoto(photoPng(dir, 400, 300), 'png', join(dir, 'sizes-small.png')));
    const r = await renderPhotoPreview(small, { maxSide: 512, sides: [1024, 2048] });
    expect([r.width, r.height, r.sizes]).toEqual([400, 300, undefined]);
    const mid = read(await encodePhoto(photoPng(dir, 900, 700), 'png', join(dir, 'sizes-mid.png')));
    const m = await renderPhotoPreview(mid, { maxSide: 512, sides: [1024, 2048] });
    expect([m.width, m.height]).toEqual([512, 398]);
    expect(m.sizes?.map((s) => [s.side, s.width, s.height])).toEqual([[1024, 900, 700]]);
  });

  it('an EXIF-turned photo: every size upright, in its own box', async () => {
    const input = read(await encodePhoto(photoPng(dir, 1600, 1000, { seed: 3 }), 'jpeg', join(dir, 'sizes-orient6.jpeg'), { orientation: 6 }));
    const r = await renderPhotoPreview(input, { maxSide: 512, sides: [1024] });
    expect([r.width, r.height]).toEqual([320, 512]);
    await sizeAgainstSharp(input, r.sizes![0].webp, 640, 1024, 1024);
    expect(r.sizes!.map((s) => [s.width, s.height])).toEqual([[640, 1024]]);
  });
});
