/**
 * Photo previews: sniff, check byte and pixel caps and the decoder's memory from the header
 * (budget.ts), decode straight to the preview size (see decode.ts), apply EXIF orientation,
 * encode lossy WebP, thumbhash.
 * Runs on JavaScript + WebAssembly only (the edge runtime's rules), in Deno and in Node.
 */
import { PreviewError, toPreviewError } from '../errors.ts';
import {
  checkCarried,
  checkPhotoBudget,
  PHOTO_MEMORY,
  photoPeakBytes,
  withSizesIfTheyFit,
} from './budget.ts';
import { carriedBytes, cpuRoom } from './isolate.ts';
import { decodeToSize } from './decode.ts';
import { RENDER_DEFAULTS } from './defaults.ts';
import { finishPreview, type Rendered, renderSide } from './encode.ts';
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
  /** Larger long sides made from the same decode (PREVIEW_SIZES past the first; default none). */
  sides?: readonly number[];
};

export function resolveOptions(options: RenderOptions = {}) {
  const o: {
    maxSide: number;
    quality: number;
    maxPixels: number;
    maxBytes: number;
    sides: readonly number[];
  } = { ...RENDER_DEFAULTS, sides: [] };
  for (const k of Object.keys(RENDER_DEFAULTS) as (keyof typeof RENDER_DEFAULTS)[]) {
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
  for (const side of options.sides ?? []) {
    if (!Number.isInteger(side) || side <= 0) {
      throw new PreviewError('INTERNAL', `Internal error: invalid preview size ${side}`);
    }
  }
  o.sides = options.sides ?? [];
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
    return await finishPreview(up.data, up.width, up.height, { ...o, sides: up.sides }, up.natural);
  } catch (err) {
    throw toPreviewError(err);
  }
}

/**
 * The upright RGBA bitmap of a photo in the box of its largest preview size (before WebP
 * encoding), the photo's own upright size, and the larger sizes it was planned for (none when
 * they did not fit: withSizesIfTheyFit).
 */
export async function renderPhotoBitmap(
  bytes: Uint8Array,
  o: ReturnType<typeof resolveOptions>,
): Promise<{
  data: Uint8ClampedArray;
  width: number;
  height: number;
  natural: { width: number; height: number };
  sides: readonly number[];
}> {
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
    const { sides } = withSizesIfTheyFit(
      o.sides,
      (sides) =>
        checkPhotoBudget(s.format, header, o.maxPixels, bytes.length, cpuRoom(bytes.length, sides)),
    );
    checkCarried(
      photoPeakBytes(s.format, header, bytes.length),
      carriedBytes(),
      0,
      PHOTO_MEMORY.budget,
      `this ${header.width}x${header.height} ${s.format.toUpperCase()}`,
    );
    const box = fitInside(header.width, header.height, renderSide({ maxSide: o.maxSide, sides }));
    const rgba = await decodeToSize(bytes, s.format, header, box.width, box.height);
    const turned = header.orientation >= 5 && header.orientation <= 8;
    return {
      ...orient(rgba, box.width, box.height, header.orientation),
      sides,
      natural: turned
        ? { width: header.height, height: header.width }
        : { width: header.width, height: header.height },
    };
  }
}
