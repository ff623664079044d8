import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import { renderPhotoPreview } from '../../shared/preview/photo.ts';
import { sniff } from '../../shared/preview/sniff.ts';
import { extractPoster } from '../../shared/preview/video.ts';
import { encodePhoto, ffmpeg, photoPng, read, videoMp4 } from '../fixtures/media.ts';
import { code } from '../helpers/preview-error.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-err-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));


const hex = (s: string) => new Uint8Array(s.split(' ').map((x) => parseInt(x, 16)));

describe('sniff', () => {
  it('recognises each format by magic bytes', () => {
    const ascii = (s: string) => new TextEncoder().encode(s);
    expect(sniff(hex('ff d8 ff e0 00 10'))).toEqual({ kind: 'image', format: 'jpeg', mime: 'image/jpeg' });
    expect(sniff(hex('89 50 4e 47 0d 0a 1a 0a 00')).format).toBe('png');
    expect(sniff(ascii('GIF89a......')).format).toBe('gif');
    expect(sniff(ascii('RIFF\0\0\0\0WEBPVP8 ')).format).toBe('webp');
    expect(sniff(ascii('\0\0\0\x18ftypisom\0\0\0\0')).format).toBe('mp4');
    expect(sniff(ascii('\0\0\0\x14ftypqt  \0\0\0\0')).format).toBe('mov');
    expect(sniff(ascii('\0\0\0\x08moov')).format).toBe('mov');
    expect(sniff(hex('1a 45 df a3 01 00'))).toEqual({ kind: 'video', format: 'webm', mime: 'video/webm' });
  });
  it('refuses anything else, including HEIC and empty input', () => {
    const ascii = (s: string) => new TextEncoder().encode(s);
    for (const b of [new Uint8Array(0), ascii('<html>hello</html>'), ascii('\0\0\0\x18ftypheic\0\0\0\0'), hex('42 4d 00 00')]) {
      expect(() => sniff(b)).toThrowError(PreviewError);
      try {
        sniff(b);
      } catch (e) {
        expect((e as PreviewError).code).toBe('UNSUPPORTED_FORMAT');
      }
    }
  });
});

describe('bad photo inputs give the right code and never hang', () => {
  let jpeg: Uint8Array, png: Uint8Array, webp: Uint8Array, gif: Uint8Array;
  beforeAll(async () => {
    const src = photoPng(dir, 800, 600);
    jpeg = read(await encodePhoto(src, 'jpeg', join(dir, 'a.jpeg')));
    png = read(await encodePhoto(src, 'png', join(dir, 'a.png')));
    webp = read(await encodePhoto(src, 'webp', join(dir, 'a.webp')));
    gif = read(await encodePhoto(src, 'gif', join(dir, 'a.gif')));
  });

  it('zero-length and unknown bytes → UNSUPPORTED_FORMAT', async () => {
    expect(await code(renderPhotoPreview(new Uint8Array(0)))).toBe('UNSUPPORTED_FORMAT');
    expect(await code(renderPhotoPreview(new TextEncoder().encode('not an image at all')))).toBe('UNSUPPORTED_FORMAT');
  });
  it('a video given as a photo → UNSUPPORTED_FORMAT', async () => {
    expect(await code(renderPhotoPreview(new TextEncoder().encode('\0\0\0\x18ftypisom\0\0\0\0')))).toBe('UNSUPPORTED_FORMAT');
  });
  it('truncated files → DECODE_FAILED', async () => {
    for (const b of [jpeg, png, webp, gif]) {
      for (const n of [20, Math.floor(b.length / 2)]) {
        expect(await code(renderPhotoPreview(b.slice(0, n))), `${b[0]} at ${n}`).toBe('DECODE_FAILED');
      }
    }
  });
  it('corrupt data after a valid header → DECODE_FAILED', async () => {
    const corrupt = (b: Uint8Array) => {
      const bad = b.slice();
      for (let i = Math.floor(b.length / 3); i < b.length - 10; i += 7) bad[i] ^= 0x5a;
      return bad;
    };
    for (const b of [jpeg, png]) expect(await code(renderPhotoPreview(corrupt(b)))).toBe('DECODE_FAILED');
    // libwebp conceals damage inside a lossy VP8 partition (sharp's libwebp too): any result is
    // fine as long as it is a valid preview or DECODE_FAILED, and it returns.
    expect(['OK', 'DECODE_FAILED']).toContain(await code(renderPhotoPreview(corrupt(webp))));
    const badHeader = webp.slice();
    badHeader.fill(0xff, 30, 60);
    expect(await code(renderPhotoPreview(badHeader))).toBe('DECODE_FAILED');
  });
  it('pixel cap is checked from the header before decoding → TOO_MANY_PIXELS', async () => {
    // a PNG header claiming 60000×60000 with no data: must be refused without decoding
    const fake = png.slice(0, 33);
    new DataView(fake.buffer).setUint32(16, 60000);
    new DataView(fake.buffer).setUint32(20, 60000);
    expect(await code(renderPhotoPreview(fake))).toBe('TOO_MANY_PIXELS');
    expect(await code(renderPhotoPreview(jpeg, { maxPixels: 800 * 600 - 1 }))).toBe('TOO_MANY_PIXELS');
    expect(await code(renderPhotoPreview(webp, { maxPixels: 1000 }))).toBe('TOO_MANY_PIXELS');
  });
  it('byte cap → SOURCE_TOO_LARGE', async () => {
    expect(await code(renderPhotoPreview(jpeg, { maxBytes: 1000 }))).toBe('SOURCE_TOO_LARGE');
  });
});

describe('bad video inputs', () => {
  it('zero-length → UNSUPPORTED_FORMAT; truncated/corrupt/sound-only MP4 → NO_VIDEO_FRAME; an M4A (audio, sniff.ts) → UNSUPPORTED_FORMAT', async () => {
    expect(await code(extractPoster(new Uint8Array(0)))).toBe('UNSUPPORTED_FORMAT');
    const mp4 = read(videoMp4(dir, 320, 240, 2, { fade: 0 }));
    expect(await code(extractPoster(mp4.slice(0, 2000)))).toBe('NO_VIDEO_FRAME');
    const garbage = mp4.slice();
    for (let i = 64; i < garbage.length; i++) garbage[i] = (i * 31) & 255;
    expect(await code(extractPoster(garbage))).toBe('NO_VIDEO_FRAME');
    // a video container whose only track is sound has no frame; an M4A is audio, not a video
    const soundOnly = join(dir, 'tone.mp4');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=d=1', '-c:a', 'aac', '-brand', 'isom', soundOnly]);
    expect(await code(extractPoster(read(soundOnly)))).toBe('NO_VIDEO_FRAME');
    const audio = join(dir, 'tone.m4a');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=d=1', '-c:a', 'aac', audio]);
    expect(await code(extractPoster(read(audio)))).toBe('UNSUPPORTED_FORMAT');
    expect(await code(extractPoster(mp4, { maxBytes: 100 }))).toBe('SOURCE_TOO_LARGE');
  });
});
