/**
 * The one output path for photos and posters: lossy WebP through libwebp compiled to wasm
 * (@jsquash/webp's codec: its glue and wasm generated into codecs/, loaded with our own module
 * loader), plus a thumbhash placeholder.
 */
import { rgbaToThumbHash } from 'thumbhash';
import { PreviewError } from '../errors.ts';
import { fitInside, resizeArea } from './resize.ts';
import { ensureImageData, wasmModule } from './wasm.ts';

export type Rendered = { webp: Uint8Array; width: number; height: number; thumbhash: string };

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

/** WebP + dimensions + thumbhash of the final (already sized and upright) bitmap. */
export async function finishPreview(
  rgba: Uint8ClampedArray,
  width: number,
  height: number,
  quality: number,
): Promise<Rendered> {
  const webp = await encodeWebp(rgba, width, height, quality);
  return { webp, width, height, thumbhash: thumbhashOf(rgba, width, height) };
}
