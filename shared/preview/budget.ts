/**
 * What a decode will really allocate, estimated from the header before any pixel is decoded,
 * so that a file under every byte and pixel cap can still be refused with a precise terminal
 * code instead of killing the isolate (546 WORKER_LIMIT) again on every retry. Figures are
 * measured with the bench harness (peak RSS of one call in a fresh Deno process, edge
 * permissions; bench/RESULTS.md):
 *
 * - GIF streams its first frame row by row (gif.ts): nothing per pixel.
 * - WebP decodes with libwebp's own rescaler straight to the preview size (our build,
 *   scripts/codecs): a lossy WebP holds a few macroblock rows (7000², 49 MP: a 5.5 MB heap,
 *   60 MB peak RSS, 0.86 s); lossless (VP8L) holds its whole ARGB frame (4096²: a 75 MB heap,
 *   about 5 bytes per pixel) and a lossy one with an alpha plane holds the plane and its
 *   lossless-coded source (7000²: 283 MB, about 6 bytes per pixel).
 * - Streaming PNG (interlaced too) holds a few rows, but the runtime's native inflate hands out a new buffer per
 *   chunk and frees consumed ones lazily: peak RSS grows by up to a byte per inflated byte
 *   (16-bit RGBA 5000², 200 MB inflated: 249 MB peak; 7000², 392 MB: 304 MB, and
 *   1.9 s of CPU).
 * - Progressive JPEG keeps every DCT coefficient (2 bytes × 64 per 8×8 block of every
 *   component) until the last scan: about 1.5 × that in peak RSS (7000² 4:2:0: 147 MB of
 *   coefficients, 289 MB peak; 6000²: 235 MB; 5000²: 188 MB). Baseline JPEG decodes with
 *   DCT scaling and never holds the frame.
 * - Video: ffmpeg's H.264/HEVC/VP9 decoders hold several reference frames at the coded size:
 *   1440p peaked at 200 MB, 2160p at 253 MB, 4320p at 330 MB (one call, cold). With a 1.2 s
 *   fade-in (more frames decoded before the picture settles), 2160p H.264 took 3.2 s of
 *   JS-thread CPU cold and 281 MB, HEVC 3.5 s and 300 MB (bench/RESULTS.md, 2026-11-30):
 *   over both limits, so the worker would be stopped twice and the row end WORKER_LIMIT.
 *   So above 2560×1440 only keyframes are decoded (videoDecodeMode); a video whose keyframes
 *   show no picture falls back to KIE's cover image where the task has one.
 */
import { PreviewError } from '../errors.ts';
import type { VideoSize } from './container.ts';
import type { ImageHeader } from './header.ts';
import type { SniffResult } from './sniff.ts';

/** Bytes a photo decode may add to an isolate (256 MB less runtime, input and encoder). */
export const DECODE_BUDGET_BYTES = 160 * 1024 * 1024;
/** Peak bytes per pixel of libwebp's scaled decode: lossless, lossy with alpha, lossy. */
const WEBP_BYTES_PER_PIXEL = { lossless: 5, alpha: 6, lossy: 0.25 } as const;
/** Peak bytes per inflated byte of a streaming PNG decode. */
const PNG_BYTES_PER_INFLATED_BYTE = 1;
/** Peak bytes per byte of progressive-JPEG coefficients. */
const PROGRESSIVE_OVERHEAD = 1.5;
/** The largest coded video frame whose every reference frame ffmpeg.wasm decodes inside the limits: 2560×1440. */
export const VIDEO_MAX_DECODE_PIXELS = 2560 * 1440;
/**
 * Up to 4096×2160 (4K UHD and DCI), only keyframes are decoded: one frame at a time, no
 * reference chain (4K H.264, 1.2 s fade: 3 keyframes in 4 s took 0.93 s warm and 211 MB peak,
 * where decoding every reference frame took 2.8 s and 281 MB).
 */
export const VIDEO_MAX_KEYFRAME_PIXELS = 4096 * 2160;

const mb = (bytes: number) => Math.round(bytes / 1048576);

/** The frame the decoder will allocate (larger of canvas and first frame). */
export function decodedSize(header: ImageHeader): { width: number; height: number } {
  const f = header.frame;
  return f && f.width * f.height > header.width * header.height ? f : header;
}

/** Estimated peak bytes a decode of this image adds (0 for baseline JPEG and GIF: streamed). */
export function photoDecodeCost(format: SniffResult['format'], header: ImageHeader): number {
  const { width, height } = decodedSize(header);
  if (format === 'webp') {
    const kind = header.webp?.lossless ? 'lossless' : header.webp?.alpha ? 'alpha' : 'lossy';
    return WEBP_BYTES_PER_PIXEL[kind] * width * height;
  }
  if (format === 'png') {
    // Adam7's passes add a filter byte per pass row: ≈ height × 15/8 more bytes at most
    const inflated = height *
      (Math.ceil((width * (header.bitsPerPixel ?? 32)) / 8) + (header.interlaced ? 3 : 1));
    return PNG_BYTES_PER_INFLATED_BYTE * inflated;
  }
  if (format === 'jpeg' && header.progressive && header.components?.length) {
    const hMax = Math.max(...header.components.map((c) => c.h));
    const vMax = Math.max(...header.components.map((c) => c.v));
    const coefficients = header.components.reduce(
      (sum, c) =>
        sum + Math.ceil((width * c.h) / hMax / 8) * Math.ceil((height * c.v) / vMax / 8) * 64 * 2,
      0,
    );
    return PROGRESSIVE_OVERHEAD * coefficients;
  }
  return 0;
}

/**
 * Refuses, before decoding, an image whose decoded frame is over the pixel cap
 * (TOO_MANY_PIXELS) or whose decode would not fit the memory budget (OVER_MEMORY_BUDGET).
 */
export function checkPhotoBudget(
  format: SniffResult['format'],
  header: ImageHeader,
  maxPixels: number,
): void {
  const { width, height } = decodedSize(header);
  const pixels = width * height;
  const frame =
    header.frame && (header.frame.width !== header.width || header.frame.height !== header.height)
      ? ` (canvas ${header.width}x${header.height})`
      : '';
  if (pixels > maxPixels) {
    throw new PreviewError(
      'TOO_MANY_PIXELS',
      `Too many pixels: ${width}x${height}${frame} (${pixels} > ${maxPixels})`,
    );
  }
  if (
    format === 'webp' && header.frame &&
    (header.frame.width > header.width || header.frame.height > header.height)
  ) {
    // libwebp's demuxer refuses a frame outside its canvas too
    throw new PreviewError(
      'DECODE_FAILED',
      `Decode failed: WebP frame ${header.frame.width}x${header.frame.height} is larger than its canvas ${header.width}x${header.height}`,
    );
  }
  const cost = photoDecodeCost(format, header);
  if (cost > DECODE_BUDGET_BYTES) {
    const kind = format === 'jpeg'
      ? 'progressive JPEG'
      : format === 'png'
      ? `${header.bitsPerPixel}-bit-per-pixel PNG`
      : format === 'webp'
      ? (header.webp?.lossless ? 'lossless WebP' : 'WebP with alpha')
      : format.toUpperCase();
    throw new PreviewError(
      'OVER_MEMORY_BUDGET',
      `Over the memory budget: decoding this ${width}x${height}${frame} ${kind} needs about ${
        mb(cost)
      } MB (budget ${mb(DECODE_BUDGET_BYTES)} MB)`,
    );
  }
}

/**
 * How a video is decoded for its poster: every reference frame ('all'), or only keyframes
 * ('keyframes', above 2560×1440). Refuses a video over the pixel cap (TOO_MANY_PIXELS) or over
 * 4096×2160 (OVER_MEMORY_BUDGET: one 8K frame alone measured 330 MB).
 */
export function videoDecodeMode(size: VideoSize | null, maxPixels: number): 'all' | 'keyframes' {
  if (!size) return 'all';
  const pixels = size.width * size.height;
  if (pixels > maxPixels) {
    throw new PreviewError(
      'TOO_MANY_PIXELS',
      `Too many pixels: ${size.width}x${size.height} video (${pixels} > ${maxPixels})`,
    );
  }
  if (pixels > VIDEO_MAX_KEYFRAME_PIXELS) {
    throw new PreviewError(
      'OVER_MEMORY_BUDGET',
      `Over the memory budget: a ${size.width}x${size.height} video needs more memory and CPU to decode than an edge isolate has (up to 4096x2160)`,
    );
  }
  return pixels > VIDEO_MAX_DECODE_PIXELS ? 'keyframes' : 'all';
}
