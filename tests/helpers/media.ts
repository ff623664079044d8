/**
 * Real media for end-to-end tests, generated once per run with ffmpeg and sharp (see
 * tests/fixtures/media.ts) and uploaded to the fake KIE server as task results.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import sharp from 'sharp';
import { encodePhoto, musicMp3 as musicMp3File, photoPng, read, videoMp4 } from '../fixtures/media.ts';
import { kie } from './stack.ts';

const DIR = join(process.cwd(), '.local', 'e2e-media');

export async function landscapeJpeg(): Promise<Uint8Array> {
  return read(await encodePhoto(photoPng(DIR, 1600, 1000), 'jpeg', join(DIR, 'landscape.jpg')));
}

export async function transparentPng(): Promise<Uint8Array> {
  return read(await encodePhoto(photoPng(DIR, 900, 700, { alpha: true }), 'png', join(DIR, 'transparent.png')));
}

/** A 720p H.264 clip that starts with 1 s of black and a 0.5 s fade in. */
export function fadeInVideo(): Uint8Array {
  return read(videoMp4(DIR, 1280, 720, 3, { black: 1, fade: 0.5 }));
}

/** A 192 kbit/s stereo MP3 of `seconds`, loud in its first half, quiet in its second. */
export function musicMp3(seconds: number): Uint8Array {
  return read(musicMp3File(DIR, seconds));
}

/** Uploads bytes to the fake KIE server under a unique name and returns the name. */
export async function kieFile(bytes: Uint8Array, ext: string, contentType: string): Promise<string> {
  const name = `${randomUUID()}.${ext}`;
  await kie.putFile(name, bytes, contentType);
  return name;
}

export async function decodeWebp(bytes: Uint8Array) {
  const img = sharp(bytes);
  const meta = await img.metadata();
  const { data, info } = await img.ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  let sum = 0;
  let sumSq = 0;
  const n = info.width * info.height;
  for (let i = 0; i < data.length; i += 4) {
    const y = 0.2126 * data[i] + 0.7152 * data[i + 1] + 0.0722 * data[i + 2];
    sum += y;
    sumSq += y * y;
  }
  const mean = sum / n;
  return { format: meta.format, width: info.width, height: info.height, meanLuma: mean, lumaStd: Math.sqrt(sumSq / n - mean * mean) };
}
