/**
 * Renders the embedded samples (samples.ts) through the real render path, one per codec:
 * JPEG, PNG, WebP and GIF previews (libjpeg-turbo's and libwebp's wasm, embedded in the bundle)
 * and an MP4 poster (ffmpeg's core, loaded from storage). What health?deep=1 reports, so the
 * first call after a deploy shows whether every codec is there and how long it took.
 */
import { renderPhotoPreview } from './photo.ts';
import { CODEC_SAMPLES } from './samples.ts';
import { extractPoster } from './video.ts';
import { decodeBase64 } from './wasm.ts';

export type CodecCheck = { ok: true; ms: number; width: number; height: number } | {
  ok: false;
  ms: number;
  code?: string;
  error: string;
};

export async function checkCodecs(): Promise<Record<keyof typeof CODEC_SAMPLES, CodecCheck>> {
  const out = {} as Record<keyof typeof CODEC_SAMPLES, CodecCheck>;
  for (
    const [name, sample] of Object.entries(CODEC_SAMPLES) as [
      keyof typeof CODEC_SAMPLES,
      (typeof CODEC_SAMPLES)[keyof typeof CODEC_SAMPLES],
    ][]
  ) {
    const started = performance.now();
    const bytes = decodeBase64(sample.base64);
    try {
      const r = sample.kind === 'video'
        ? await extractPoster(bytes)
        : await renderPhotoPreview(bytes);
      out[name] = {
        ok: true,
        ms: Math.round(performance.now() - started),
        width: r.width,
        height: r.height,
      };
    } catch (err) {
      const e = err as { code?: string; message?: string };
      out[name] = {
        ok: false,
        ms: Math.round(performance.now() - started),
        code: e.code,
        error: e.message ?? String(err),
      };
    }
  }
  return out;
}
