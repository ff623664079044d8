/**
 * Image dimensions (and JPEG EXIF orientation) read from the container header, before any
 * pixel is decoded, so byte and pixel caps are enforced without spending memory.
 */
import { PreviewError } from '../errors.ts';
import type { SniffResult } from './sniff.ts';

export type ImageHeader = {
  width: number;
  height: number;
  /** EXIF orientation 1..8 (JPEG only; 1 when absent). */
  orientation: number;
  /** PNG only: interlaced (Adam7). */
  interlaced?: boolean;
};

const truncated = (what: string) => new PreviewError('DECODE_FAILED', `Decode failed: truncated or corrupt ${what} header`);

export function readImageHeader(bytes: Uint8Array, format: SniffResult['format']): ImageHeader {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let h: ImageHeader;
  switch (format) {
    case 'png': {
      if (bytes.length < 33 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') throw truncated('PNG');
      h = { width: dv.getUint32(16), height: dv.getUint32(20), orientation: 1, interlaced: bytes[28] === 1 };
      break;
    }
    case 'gif': {
      if (bytes.length < 13) throw truncated('GIF');
      h = { width: dv.getUint16(6, true), height: dv.getUint16(8, true), orientation: 1 };
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
    return { width: w, height: hh, orientation: 1 };
  }
  if (chunk === 'VP8 ') {
    // frame tag (3 bytes) + start code 9d 01 2a + 14-bit width/height
    if (bytes[23] !== 0x9d || bytes[24] !== 0x01 || bytes[25] !== 0x2a) throw truncated('WebP VP8');
    return { width: dv.getUint16(26, true) & 0x3fff, height: dv.getUint16(28, true) & 0x3fff, orientation: 1 };
  }
  if (chunk === 'VP8L') {
    if (bytes[20] !== 0x2f) throw truncated('WebP VP8L');
    const bits = dv.getUint32(21, true);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, orientation: 1 };
  }
  throw truncated('WebP');
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
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (i + 9 > bytes.length) throw truncated('JPEG');
      return { height: dv.getUint16(i + 5), width: dv.getUint16(i + 7), orientation };
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
