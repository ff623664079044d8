/**
 * The one output path for photos and posters: lossy WebP through libwebp compiled to wasm
 * (@jsquash/webp's codec: its glue and wasm generated into codecs/, loaded with our own module
 * loader), plus a thumbhash placeholder.
 */
import { rgbaToThumbHash } from 'thumbhash';
import { PreviewError } from '../errors.ts';
import { fitInside, resizeArea } from './resize.ts';
import { ensureImageData, wasmModule } from './wasm.ts';

/** One more size of a preview (PREVIEW_SIZES past the first): for screens of a higher density. */
export type SizedWebp = { side: number; webp: Uint8Array; width: number; height: number };

/**
 * A preview: the WebP in the first size's box, its dimensions and thumbhash, and the larger sizes
 * made from the same decode (none when the picture is no larger than the first box).
 */
export type Rendered = {
  webp: Uint8Array;
  width: number;
  height: number;
  thumbhash: string;
  sizes?: SizedWebp[];
};

type WebpEncoderModule = {
  encode(
    data: Uint8ClampedArray,
    width: number,
    height: number,
    options: Record<string, number>,
  ): Uint8Array | null;
};

let encoder: Promise<WebpEncoderModule> | null = null;

/** The libwebp encoder (SIMD build; the edge runtime, Deno and Node 20 all have wasm SIMD). */
function webpEncoder(): Promise<WebpEncoderModule> {
  if (!encoder) {
    encoder = (async () => {
      ensureImageData();
      const [{ default: factory }, module] = await Promise.all([
        import('./codecs/webp-enc-simd-glue.js'),
        wasmModule('webp-enc-simd'),
      ]);
      return await instantiateEmscripten<WebpEncoderModule>(factory, module);
    })();
    encoder.catch(() => (encoder = null));
  }
  return encoder;
}

/** Instantiate an emscripten factory with an already compiled module (no fetch, no file: URL). */
function instantiateEmscripten<T>(
  factory: (opts: any) => Promise<T>,
  module: WebAssembly.Module,
): Promise<T> {
  return factory({
    noInitialRun: true,
    locateFile: (p: string) => p,
    instantiateWasm(imports: WebAssembly.Imports, done: (i: WebAssembly.Instance) => void) {
      const instance = new WebAssembly.Instance(module, imports);
      done(instance);
      return instance.exports;
    },
  });
}

/** WebP-encode an RGBA bitmap (straight alpha). */
export async function encodeWebp(
  rgba: Uint8ClampedArray,
  width: number,
  height: number,
  quality: number,
): Promise<Uint8Array> {
  const enc = await webpEncoder();
  const opts = {
    quality,
    target_size: 0,
    target_PSNR: 0,
    method: 4,
    sns_strength: 50,
    filter_strength: 60,
    filter_sharpness: 0,
    filter_type: 1,
    partitions: 0,
    segments: 4,
    pass: 1,
    show_compressed: 0,
    preprocessing: 0,
    autofilter: 0,
    partition_limit: 0,
    alpha_compression: 1,
    alpha_filtering: 1,
    alpha_quality: 100,
    lossless: 0,
    exact: 0,
    image_hint: 0,
    emulate_jpeg_size: 0,
    thread_level: 0,
    low_memory: 0,
    near_lossless: 100,
    use_delta_palette: 0,
    use_sharp_yuv: 0,
  };
  const out = enc.encode(rgba, width, height, opts);
  if (!out) throw new PreviewError('INTERNAL', 'Internal error: WebP encoding failed');
  // copy out of the wasm heap view
  return new Uint8Array(out);
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

/** Thumbhash (base64) of an RGBA bitmap: shrunk to ≤100 px by area averaging first. */
export function thumbhashOf(rgba: Uint8ClampedArray, width: number, height: number): string {
  const box = fitInside(width, height, 100);
  const small = box.width === width && box.height === height
    ? rgba
    : resizeArea(rgba, width, height, 4, box.width, box.height);
  return toBase64(rgbaToThumbHash(box.width, box.height, small));
}

/**
 * The long side of the bitmap a renderer makes: the largest of the preview's sizes (`maxSide`, the
 * first, and `sides`, the larger ones), so every size comes from one decode.
 */
export function renderSide(o: { maxSide: number; sides?: readonly number[] }): number {
  return Math.max(o.maxSide, ...(o.sides ?? []));
}

/**
 * The preview from the upright bitmap a renderer made in the box of renderSide: the first size
 * (`maxSide`: WebP, dimensions, thumbhash) and each larger one of `sides` whose box holds more of
 * the picture than the sizes before it (a picture no larger than a box has nothing more to give),
 * each scaled down by area from the bitmap. `natural`: the picture's own upright size, which the
 * boxes fit (the bitmap's when omitted).
 */
export async function finishPreview(
  rgba: Uint8ClampedArray,
  width: number,
  height: number,
  o: { maxSide: number; quality: number; sides?: readonly number[] },
  natural: { width: number; height: number } = { width, height },
): Promise<Rendered> {
  const boxed = (side: number) => {
    const box = fitInside(natural.width, natural.height, side);
    // never past the bitmap itself (a renderer that could not reach the box: never enlarged)
    if (box.width >= width || box.height >= height) return { width, height, data: rgba };
    return { ...box, data: resizeArea(rgba, width, height, 4, box.width, box.height) };
  };
  const first = boxed(o.maxSide);
  const rendered: Rendered = {
    webp: await encodeWebp(first.data, first.width, first.height, o.quality),
    width: first.width,
    height: first.height,
    thumbhash: thumbhashOf(first.data, first.width, first.height),
  };
  let last = first;
  for (const side of [...(o.sides ?? [])].sort((a, b) => a - b)) {
    if (side <= o.maxSide) continue;
    const b = boxed(side);
    if (b.width <= last.width && b.height <= last.height) continue;
    rendered.sizes = [...(rendered.sizes ?? []), {
      side,
      webp: await encodeWebp(b.data, b.width, b.height, o.quality),
      width: b.width,
      height: b.height,
    }];
    last = b;
  }
  return rendered;
}
