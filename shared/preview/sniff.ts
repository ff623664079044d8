/**
 * Content sniffing from magic bytes. Headers and file extensions are hints, never trusted:
 * the kind and format of an asset come from its first bytes only.
 */
import { PreviewError } from '../errors.ts';

export type SniffResult = {
  kind: 'image' | 'video';
  format: 'jpeg' | 'png' | 'webp' | 'gif' | 'mp4' | 'mov' | 'webm';
  mime: string;
};

const MIME = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
} as const;

function ascii(bytes: Uint8Array, start: number, length: number): string {
  let s = '';
  for (let i = start; i < start + length && i < bytes.length; i++) {
    s += String.fromCharCode(bytes[i]);
  }
  return s;
}

/** ISO-BMFF brands that are still images (HEIF/AVIF), which this system does not render. */
const IMAGE_BRANDS = new Set([
  'heic',
  'heix',
  'hevc',
  'hevx',
  'heim',
  'heis',
  'mif1',
  'msf1',
  'avif',
  'avis',
]);
/** Top-level QuickTime atoms that may open a .mov that has no `ftyp`. */
const QT_ATOMS = new Set(['moov', 'mdat', 'wide', 'free', 'skip', 'pnot']);

export function sniff(bytes: Uint8Array): SniffResult {
  const b = bytes;
  const hit = (format: SniffResult['format']): SniffResult => ({
    kind: format === 'mp4' || format === 'mov' || format === 'webm' ? 'video' : 'image',
    format,
    mime: MIME[format],
  });
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return hit('jpeg');
  if (
    b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 &&
    b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a
  ) return hit('png');
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) {
    return hit('gif');
  }
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return hit('webp');
  if (b.length >= 12 && ascii(b, 4, 4) === 'ftyp') {
    const major = ascii(b, 8, 4);
    if (IMAGE_BRANDS.has(major)) {
      throw new PreviewError(
        'UNSUPPORTED_FORMAT',
        `Unsupported format: HEIF/AVIF image (${major.trim()})`,
      );
    }
    return hit(major === 'qt  ' ? 'mov' : 'mp4');
  }
  if (b.length >= 8 && QT_ATOMS.has(ascii(b, 4, 4))) return hit('mov');
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) {
    return hit('webm');
  }
  if (b.length === 0) {
    throw new PreviewError('UNSUPPORTED_FORMAT', 'Unsupported format: empty file');
  }
  // The message never quotes the bytes: it lands on the row, and the bytes are a remote answer.
  throw new PreviewError(
    'UNSUPPORTED_FORMAT',
    'Unsupported format: not a JPEG, PNG, GIF, WebP, MP4, MOV or WebM file',
  );
}
