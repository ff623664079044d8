/**
 * Decoders, each feeding the area resizer so the preview never needs more than one full-size
 * bitmap (and JPEG and PNG none at all):
 * - JPEG: libjpeg-turbo (our wasm build) with DCT-domain scaling (n/8: the smallest scale at
 *   least as large as the preview box), rows read in place from the wasm heap.
 * - PNG: our streaming decoder (png.ts), interlaced files included.
 * - GIF: our streaming decoder (gif.ts), first frame placed on the logical screen.
 * - WebP: libwebp's decoder with its rescaler (our build), straight to the preview size;
 *   animated files through their first ANMF frame.
 * Every wasm decoder gets a fresh instance per call, so its grown heap is garbage once the call
 * returns (wasm memory never shrinks while an instance lives).
 */
import { PreviewError } from '../errors.ts';
import type { ImageHeader } from './header.ts';
import { decodeGifStreaming } from './gif.ts';
import { decodePngStreaming } from './png.ts';
import { AreaResizer } from './resize.ts';
import type { SniffResult } from './sniff.ts';
import { wasmModule } from './wasm.ts';

const failed = (format: string, why: string, cause?: unknown) =>
  new PreviewError(
    'DECODE_FAILED',
    `Decode failed: ${format} ${why}`,
    cause ? { cause } : undefined,
  );

/** Decode `bytes` into an RGBA bitmap of (dstWidth × dstHeight), before EXIF orientation. */
export async function decodeToSize(
  bytes: Uint8Array,
  format: SniffResult['format'],
  header: ImageHeader,
  dstWidth: number,
  dstHeight: number,
): Promise<Uint8ClampedArray> {
  try {
    switch (format) {
      case 'jpeg':
        return await decodeJpeg(bytes, dstWidth, dstHeight);
      case 'png': {
        const r = new AreaResizer(header.width, header.height, dstWidth, dstHeight);
        await decodePngStreaming(bytes, r);
        return r.finish();
      }
      case 'gif': {
        const r = new AreaResizer(header.width, header.height, dstWidth, dstHeight);
        decodeGifStreaming(bytes, r);
        return r.finish();
      }
      case 'webp':
        return await decodeWebp(bytes, header, dstWidth, dstHeight);
      default:
        throw new PreviewError(
          'UNSUPPORTED_FORMAT',
          `Unsupported format: ${format} is not an image`,
        );
    }
  } catch (err) {
    if (err instanceof PreviewError) throw err;
    // wasm traps (unreachable, out of bounds) and decoder errors on corrupt data
    throw failed(format.toUpperCase(), `(${(err as Error)?.message ?? err})`, err);
  }
}

// ---------------------------------------------------------------- JPEG (libjpeg-turbo, scaled decode)

/** Imports of our libjpeg-turbo build: its stdio and exit are never reached (errors trap). */
const JPEG_IMPORTS = {
  wasi_snapshot_preview1: {
    fd_write: () => 52,
    fd_close: () => 52,
    fd_seek: () => 52,
    proc_exit: () => {
      throw new Error('libjpeg exited');
    },
  },
};

async function decodeJpeg(
  bytes: Uint8Array,
  dstWidth: number,
  dstHeight: number,
): Promise<Uint8ClampedArray> {
  if (!hasJpegEnd(bytes)) throw failed('JPEG', 'is truncated (no end-of-image marker)');
  const wasm = new WebAssembly.Instance(await wasmModule('jpeg-scaled'), JPEG_IMPORTS)
    .exports as any;
  const bptr = wasm.malloc(bytes.length);
  if (!bptr) throw failed('JPEG', "does not fit the decoder's memory");
  new Uint8Array(wasm.memory.buffer, bptr, bytes.length).set(bytes);
  // libjpeg-turbo scales by n/8 in the DCT domain to the smallest size at least as large as the
  // box (sharp's shrink-on-load does the same) and our area filter finishes. Asking for twice the
  // box gained ≈0.001–0.006 SSIM for ≈30 % more CPU (bench/RESULTS.md).
  let resPtr: number;
  try {
    resPtr = wasm.decode(bptr, bytes.length, dstWidth, dstHeight);
  } catch (err) {
    // a fatal libjpeg error traps (no setjmp in this build)
    throw failed('JPEG', 'data is corrupt', err);
  }
  // (the heap may have grown during the decode: views are made after it)
  const [width, height, channels, colorspace, warnings, ptr] = new Int32Array(
    wasm.memory.buffer,
    resPtr,
    6,
  );
  // libjpeg-turbo conceals corrupt entropy data with a warning; a damaged file is not a preview
  if (warnings > 0) throw failed('JPEG', 'data is corrupt');
  const buf = new Uint8Array(wasm.memory.buffer, ptr, width * height * channels);
  const r = new AreaResizer(width, height, Math.min(dstWidth, width), Math.min(dstHeight, height));
  if (colorspace === 2) {
    // CMYK as Adobe writes it (inverted): colour = channel × K / 255
    const row = new Uint8Array(width * 3);
    for (let y = 0; y < height; y++) {
      let s = y * width * 4;
      for (let x = 0, d = 0; x < width; x++, s += 4) {
        const k = buf[s + 3] / 255;
        row[d++] = buf[s] * k;
        row[d++] = buf[s + 1] * k;
        row[d++] = buf[s + 2] * k;
      }
      r.pushRow(row, 0, 3);
    }
  } else {
    const stride = width * channels;
    for (let y = 0; y < height; y++) r.pushRow(buf, y * stride, channels as 1 | 3);
  }
  const out = r.finish();
  return r.width === dstWidth && r.height === dstHeight
    ? out
    : upscaleNearest(out, r.width, r.height, dstWidth, dstHeight);
}

/** A complete JPEG ends with FFD9 (allowing trailing padding/garbage in its last bytes). */
function hasJpegEnd(bytes: Uint8Array): boolean {
  const from = Math.max(2, bytes.length - 4096);
  for (let i = bytes.length - 2; i >= from; i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
  }
  return false;
}

/** Only for a decoder that returned less than asked (never expected; keeps sizes exact). */
function upscaleNearest(
  src: Uint8ClampedArray,
  w: number,
  h: number,
  W: number,
  H: number,
): Uint8ClampedArray {
  const out = new Uint8ClampedArray(W * H * 4);
  const s32 = new Uint32Array(src.buffer), o32 = new Uint32Array(out.buffer);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      o32[y * W + x] = s32[Math.floor((y * h) / H) * w + Math.floor((x * w) / W)];
    }
  }
  return out;
}

// ---------------------------------------------------------------- WebP (libwebp, scaled decode)

/** libwebp's VP8StatusCode, by value. */
const WEBP_STATUS = [
  'OK',
  'OUT_OF_MEMORY',
  'INVALID_PARAM',
  'BITSTREAM_ERROR',
  'UNSUPPORTED_FEATURE',
  'SUSPENDED',
  'USER_ABORT',
  'NOT_ENOUGH_DATA',
];

/**
 * libwebp's decoder with its own rescaler (our build, scripts/codecs/build-webp-scaled.sh): the
 * picture is decoded straight to the preview size, so a lossy WebP never exists at full size
 * (the budget in budget.ts covers the lossless and alpha cases, which libwebp holds whole).
 * An animated file's first frame is scaled by the canvas's factor and placed on the canvas.
 */
async function decodeWebp(
  bytes: Uint8Array,
  header: ImageHeader,
  dstWidth: number,
  dstHeight: number,
): Promise<Uint8ClampedArray> {
  const frame = firstAnimationFrame(bytes);
  const src = frame ? frame.bytes : bytes;
  const fw = header.frame?.width ?? header.width, fh = header.frame?.height ?? header.height;
  const sx = dstWidth / header.width, sy = dstHeight / header.height;
  const ox = frame ? Math.min(dstWidth - 1, Math.round(frame.x * sx)) : 0;
  const oy = frame ? Math.min(dstHeight - 1, Math.round(frame.y * sy)) : 0;
  const w = Math.max(1, Math.min(dstWidth - ox, Math.round(fw * sx)));
  const h = Math.max(1, Math.min(dstHeight - oy, Math.round(fh * sy)));
  const wasm = new WebAssembly.Instance(await wasmModule('webp-scaled')).exports as any;
  const inPtr = wasm.malloc(src.length), outPtr = wasm.malloc(w * h * 4);
  if (!inPtr || !outPtr) throw failed('WebP', "does not fit the decoder's memory");
  new Uint8Array(wasm.memory.buffer, inPtr, src.length).set(src);
  const status = wasm.decode_scaled(inPtr, src.length, outPtr, w, h, w !== fw || h !== fh ? 1 : 0);
  if (status !== 0) throw failed('WebP', `data is corrupt (${WEBP_STATUS[status] ?? status})`);
  const out = new Uint8ClampedArray(wasm.memory.buffer.slice(outPtr, outPtr + w * h * 4));
  if (w === dstWidth && h === dstHeight) return out;
  const canvas = new Uint8ClampedArray(dstWidth * dstHeight * 4); // transparent around the frame
  for (let y = 0; y < h; y++) {
    canvas.set(out.subarray(y * w * 4, (y + 1) * w * 4), ((oy + y) * dstWidth + ox) * 4);
  }
  return canvas;
}

/** For an animated WebP (VP8X with the animation flag), the first ANMF frame as a still WebP. */
function firstAnimationFrame(
  bytes: Uint8Array,
): { bytes: Uint8Array; x: number; y: number } | null {
  const tag = (i: number) =>
    String.fromCharCode(bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]);
  if (tag(12) !== 'VP8X' || !(bytes[20] & 0x02)) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 12;
  while (pos + 8 <= bytes.length) {
    const size = dv.getUint32(pos + 4, true);
    if (tag(pos) === 'ANMF') {
      const p = pos + 8;
      const x = 2 * (bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16));
      const y = 2 * (bytes[p + 3] | (bytes[p + 4] << 8) | (bytes[p + 5] << 16));
      const w = 1 + (bytes[p + 6] | (bytes[p + 7] << 8) | (bytes[p + 8] << 16));
      const h = 1 + (bytes[p + 9] | (bytes[p + 10] << 8) | (bytes[p + 11] << 16));
      const inner = bytes.subarray(p + 16, Math.min(bytes.length, p + size));
      const hasAlpha = tag(p + 16) === 'ALPH';
      const parts: Uint8Array[] = [];
      if (hasAlpha) {
        const vp8x = new Uint8Array(18);
        vp8x.set([0x56, 0x50, 0x38, 0x58, 10, 0, 0, 0, 0x10, 0, 0, 0]);
        vp8x.set([(w - 1) & 255, ((w - 1) >> 8) & 255, ((w - 1) >> 16) & 255], 12);
        vp8x.set([(h - 1) & 255, ((h - 1) >> 8) & 255, ((h - 1) >> 16) & 255], 15);
        parts.push(vp8x);
      }
      parts.push(inner);
      const body = parts.reduce((n, b) => n + b.length, 0);
      const out = new Uint8Array(12 + body);
      out.set([0x52, 0x49, 0x46, 0x46]);
      new DataView(out.buffer).setUint32(4, 4 + body, true);
      out.set([0x57, 0x45, 0x42, 0x50], 8);
      let o = 12;
      for (const b of parts) {
        out.set(b, o);
        o += b.length;
      }
      return { bytes: out, x, y };
    }
    pos += 8 + size + (size & 1);
  }
  throw failed('WebP', 'is animated but has no frame');
}
