/**
 * Image dimensions (and JPEG EXIF orientation) read from the container header, before any
 * pixel is decoded, so byte and pixel caps are enforced without spending memory.
 */
import { PreviewError } from '../errors.ts';
import { CHANNELS } from './png.ts';
import type { SniffResult } from './sniff.ts';

export type ImageHeader = {
  width: number;
  height: number;
  /** EXIF orientation 1..8 (JPEG only; 1 when absent). */
  orientation: number;
  /** PNG only: interlaced (Adam7), and bits per pixel of the raw rows (channels × bit depth). */
  interlaced?: boolean;
  bitsPerPixel?: number;
  /**
   * The size of the bitmap the decoder really allocates, when it is not the canvas: a GIF's
   * first frame (its image descriptor may be far larger than the logical screen) or the
   * bitstream of a WebP (an animated file's first frame says its own size inside ANMF).
   */
  frame?: { width: number; height: number };
  /** JPEG only: progressive (the decoder keeps every DCT coefficient) and each component's sampling factors. */
  progressive?: boolean;
  components?: { h: number; v: number }[];
  /**
   * WebP only: the first bitstream is lossless (VP8L: libwebp holds its whole ARGB frame) or
   * lossy with an alpha plane (ALPH: libwebp holds the whole plane); a plain lossy one is
   * decoded row by row.
   */
  webp?: { lossless: boolean; alpha: boolean };
};

const truncated = (what: string) =>
  new PreviewError('DECODE_FAILED', `Decode failed: truncated or corrupt ${what} header`);

export function readImageHeader(bytes: Uint8Array, format: SniffResult['format']): ImageHeader {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let h: ImageHeader;
  switch (format) {
    case 'png': {
      if (bytes.length < 33 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') {
        throw truncated('PNG');
      }
      const channels = CHANNELS[bytes[25]] ?? 4;
      h = {
        width: dv.getUint32(16),
        height: dv.getUint32(20),
        orientation: 1,
        interlaced: bytes[28] === 1,
        bitsPerPixel: channels * bytes[24],
      };
      break;
    }
    case 'gif': {
      if (bytes.length < 13) throw truncated('GIF');
      h = {
        width: dv.getUint16(6, true),
        height: dv.getUint16(8, true),
        orientation: 1,
        frame: gifFirstFrame(bytes, dv),
      };
      break;
    }
    case 'webp':
      h = webpHeader(bytes, dv);
      break;
    case 'jpeg':
      h = jpegHeader(bytes, dv);
      break;
    default:
      throw new PreviewError('UNSUPPORTED_FORMAT', `Unsupported format: ${format} is not an image`);
  }
  if (!(h.width > 0 && h.height > 0)) {
    throw new PreviewError('DECODE_FAILED', `Decode failed: ${format} header has no dimensions`);
  }
  return h;
}

function webpHeader(bytes: Uint8Array, dv: DataView): ImageHeader {
  if (bytes.length < 30) throw truncated('WebP');
  const chunk = String.fromCharCode(...bytes.subarray(12, 16));
  if (chunk === 'VP8X') {
    const w = 1 + (bytes[24] | (bytes[25] << 8) | (bytes[26] << 16));
    const hh = 1 + (bytes[27] | (bytes[28] << 8) | (bytes[29] << 16));
    const first = webpFirstBitstream(bytes, dv, 30);
    if (!first) return { width: w, height: hh, orientation: 1 };
    const { lossless, alpha, ...frame } = first;
    return { width: w, height: hh, orientation: 1, frame, webp: { lossless, alpha } };
  }
  const size = bitstreamSize(bytes, dv, 12);
  if (!size) throw truncated('WebP');
  const { lossless, ...dims } = size;
  return { ...dims, orientation: 1, webp: { lossless, alpha: false } };
}

type Bitstream = { width: number; height: number; lossless: boolean };

/** Width and height a VP8 or VP8L chunk at `pos` (its tag) declares, and which it is, or null. */
function bitstreamSize(bytes: Uint8Array, dv: DataView, pos: number): Bitstream | null {
  const tag = String.fromCharCode(...bytes.subarray(pos, pos + 4));
  if (tag === 'VP8 ' && pos + 18 <= bytes.length) {
    // frame tag (3 bytes) + start code 9d 01 2a + 14-bit width/height
    if (bytes[pos + 11] !== 0x9d || bytes[pos + 12] !== 0x01 || bytes[pos + 13] !== 0x2a) {
      throw truncated('WebP VP8');
    }
    return {
      width: dv.getUint16(pos + 14, true) & 0x3fff,
      height: dv.getUint16(pos + 16, true) & 0x3fff,
      lossless: false,
    };
  }
  if (tag === 'VP8L' && pos + 13 <= bytes.length) {
    if (bytes[pos + 8] !== 0x2f) throw truncated('WebP VP8L');
    const bits = dv.getUint32(pos + 9, true);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, lossless: true };
  }
  return null;
}

/**
 * In an extended WebP, the first image bitstream libwebp will decode (the still image's VP8/VP8L
 * chunk, or the one inside the first ANMF frame) and whether an ALPH chunk comes with it.
 */
function webpFirstBitstream(
  bytes: Uint8Array,
  dv: DataView,
  from: number,
): (Bitstream & { alpha: boolean }) | null {
  const chunks = (start: number, end: number) => {
    const out: number[] = [];
    for (
      let p = start;
      p + 8 <= end;
      p += 8 + dv.getUint32(p + 4, true) + (dv.getUint32(p + 4, true) & 1)
    ) out.push(p);
    return out;
  };
  const tagAt = (p: number) => String.fromCharCode(...bytes.subarray(p, p + 4));
  let alpha = false;
  for (const p of chunks(from, bytes.length)) {
    const tag = tagAt(p);
    if (tag === 'ALPH') alpha = true;
    if (tag === 'VP8 ' || tag === 'VP8L') {
      const size = bitstreamSize(bytes, dv, p);
      return size && { ...size, alpha };
    }
    if (tag === 'ANMF') {
      const end = Math.min(bytes.length, p + 8 + dv.getUint32(p + 4, true));
      for (const q of chunks(p + 24, end)) {
        if (tagAt(q) === 'ALPH') alpha = true;
        const size = bitstreamSize(bytes, dv, q);
        if (size) return { ...size, alpha };
      }
      return null;
    }
  }
  return null;
}

/** A GIF's first image descriptor's size (extensions and the colour table skipped). */
function gifFirstFrame(
  bytes: Uint8Array,
  dv: DataView,
): { width: number; height: number } | undefined {
  let pos = 13;
  if (bytes[10] & 0x80) pos += 3 * (2 << (bytes[10] & 7)); // global colour table
  while (pos < bytes.length) {
    const block = bytes[pos];
    if (block === 0x2c) {
      if (pos + 9 > bytes.length) throw truncated('GIF');
      return { width: dv.getUint16(pos + 5, true), height: dv.getUint16(pos + 7, true) };
    }
    if (block !== 0x21) return undefined; // trailer or garbage: no frame
    pos += 2; // extension introducer and label, then sub-blocks up to a zero length
    while (pos < bytes.length && bytes[pos] !== 0) pos += bytes[pos] + 1;
    pos++;
  }
  return undefined;
}

function jpegHeader(bytes: Uint8Array, dv: DataView): ImageHeader {
  let orientation = 1;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) throw truncated('JPEG');
    const marker = bytes[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2;
      continue;
    }
    const len = dv.getUint16(i + 2);
    if (len < 2) throw truncated('JPEG');
    if (marker === 0xe1 && i + 4 + len - 2 <= bytes.length) {
      const o = exifOrientation(bytes.subarray(i + 4, i + 2 + len));
      if (o) orientation = o;
    }
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
      marker !== 0xcc;
    if (isSof) {
      if (i + 10 > bytes.length) throw truncated('JPEG');
      const count = bytes[i + 9];
      const components = [];
      for (let c = 0; c < count && i + 13 + 3 * c <= bytes.length; c++) {
        const hv = bytes[i + 11 + 3 * c];
        components.push({ h: hv >> 4 || 1, v: hv & 15 || 1 });
      }
      // SOF2, SOF6, SOF10, SOF14: progressive
      const progressive = marker === 0xc2 || marker === 0xc6 || marker === 0xca || marker === 0xce;
      return {
        height: dv.getUint16(i + 5),
        width: dv.getUint16(i + 7),
        orientation,
        progressive,
        components,
      };
    }
    if (marker === 0xd9 || marker === 0xda) break; // EOI / SOS before SOF: corrupt
    i += 2 + len;
  }
  throw truncated('JPEG');
}

/** Orientation tag (0x0112) from an APP1 payload ("Exif\0\0" + TIFF), or 0 when absent. */
export function exifOrientation(app1: Uint8Array): number {
  if (app1.length < 14 || String.fromCharCode(...app1.subarray(0, 4)) !== 'Exif') return 0;
  const tiff = app1.subarray(6);
  const dv = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const order = String.fromCharCode(tiff[0], tiff[1]);
  if (order !== 'II' && order !== 'MM') return 0;
  const le = order === 'II';
  if (dv.getUint16(2, le) !== 42) return 0;
  const ifd = dv.getUint32(4, le);
  if (ifd + 2 > tiff.length) return 0;
  const count = dv.getUint16(ifd, le);
  for (let k = 0; k < count; k++) {
    const e = ifd + 2 + 12 * k;
    if (e + 12 > tiff.length) return 0;
    if (dv.getUint16(e, le) === 0x0112) {
      const v = dv.getUint16(e + 8, le);
      return v >= 1 && v <= 8 ? v : 0;
    }
  }
  return 0;
}
