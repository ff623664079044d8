/**
 * Photo previews: sniff, check byte and pixel caps and the decoder's memory from the header
 * (budget.ts), decode straight to the preview size (see decode.ts), apply EXIF orientation,
 * encode lossy WebP, thumbhash.
 * Runs on JavaScript + WebAssembly only (the edge runtime's rules), in Deno and in Node.
 */
import { PreviewError, toPreviewError } from '../errors.ts';
import { checkCarried, checkPhotoBudget, PHOTO_MEMORY, photoPeakBytes } from './budget.ts';
import { carriedBytes, cpuRoom } from './isolate.ts';
import { decodeToSize } from './decode.ts';
import { RENDER_DEFAULTS } from './defaults.ts';
import { finishPreview, type Rendered } from './encode.ts';
import { readImageHeader } from './header.ts';
import { fitInside, orient } from './resize.ts';
import { sniff } from './sniff.ts';

export type { Rendered } from './encode.ts';

export type RenderOptions = {
  /** Long side of the preview box, px (default 512). Never enlarges. */
  maxSide?: number;
  /** WebP quality 0..100 (default 80). */
  quality?: number;
  /** Pixel cap checked from the header before decoding (default 50 MP). */
  maxPixels?: number;
  /** Byte cap of the input (default 100 MB). */
  maxBytes?: number;
};

export function resolveOptions(options: RenderOptions = {}) {
  const o: { maxSide: number; quality: number; maxPixels: number; maxBytes: number } = {
    ...RENDER_DEFAULTS,
  };
  for (const k of Object.keys(RENDER_DEFAULTS) as (keyof RenderOptions)[]) {
    const v = options[k];
    if (v !== undefined) {
      if (!Number.isFinite(v) || v <= 0) {
        throw new PreviewError('INTERNAL', `Internal error: invalid render option ${k}=${v}`);
      }
      (o as any)[k] = v;
    }
  }
  o.quality = Math.min(100, o.quality);
  o.maxSide = Math.max(1, Math.round(o.maxSide));
  return o;
}

export function checkBytes(bytes: Uint8Array, maxBytes: number): void {
  if (bytes.length > maxBytes) {
    throw new PreviewError(
      'SOURCE_TOO_LARGE',
      `Source too large: ${bytes.length} bytes (limit ${maxBytes})`,
    );
  }
}

export async function renderPhotoPreview(
  bytes: Uint8Array,
  options?: RenderOptions,
): Promise<Rendered> {
  try {
    const o = resolveOptions(options);
    const up = await renderPhotoBitmap(bytes, o);
    return await finishPreview(up.data, up.width, up.height, o.quality);
  } catch (err) {
    throw toPreviewError(err);
  }
}

/** The upright, preview-sized RGBA bitmap of a photo (before WebP encoding). */
export async function renderPhotoBitmap(
  bytes: Uint8Array,
  o: ReturnType<typeof resolveOptions>,
): Promise<{ data: Uint8ClampedArray; width: number; height: number }> {
  {
    checkBytes(bytes, o.maxBytes);
    const s = sniff(bytes);
    if (s.kind !== 'image') {
      throw new PreviewError(
        'UNSUPPORTED_FORMAT',
        `Unsupported format: ${s.format} is ${
          s.kind === 'audio' ? 'audio' : 'a video'
        }, not a photo`,
      );
    }
    const header = readImageHeader(bytes, s.format);
    checkPhotoBudget(s.format, header, o.maxPixels, bytes.length, cpuRoom(bytes.length));
    checkCarried(
      photoPeakBytes(s.format, header, bytes.length),
      carriedBytes(),
      0,
      PHOTO_MEMORY.budget,
      `this ${header.width}x${header.height} ${s.format.toUpperCase()}`,
    );
    const box = fitInside(header.width, header.height, o.maxSide);
    const rgba = await decodeToSize(bytes, s.format, header, box.width, box.height);
    return orient(rgba, box.width, box.height, header.orientation);
  }
}
