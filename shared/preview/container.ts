/**
 * The coded size of a video's first video track, read from its container before ffmpeg
 * decodes anything: MP4/MOV (ISO BMFF: moov → trak with a `vide` handler → stsd's visual
 * sample entry) and WebM/Matroska (Segment → Tracks → TrackEntry → Video → PixelWidth /
 * PixelHeight). Null when the container does not say (ffmpeg then decides, under the
 * platform's limits).
 */
import type { SniffResult } from './sniff.ts';

export type VideoSize = { width: number; height: number };

export function videoDimensions(
  bytes: Uint8Array,
  format: SniffResult['format'],
): VideoSize | null {
  try {
    if (format === 'mp4' || format === 'mov') return isoBmffSize(bytes);
    if (format === 'webm') return matroskaSize(bytes);
  } catch {
    // a container we cannot walk says nothing
  }
  return null;
}

// ---------------------------------------------------------------- ISO BMFF

type Box = { type: string; start: number; end: number };

function* boxes(bytes: Uint8Array, dv: DataView, from: number, to: number): Generator<Box> {
  let pos = from;
  while (pos + 8 <= to) {
    let size = dv.getUint32(pos);
    const type = String.fromCharCode(
      bytes[pos + 4],
      bytes[pos + 5],
      bytes[pos + 6],
      bytes[pos + 7],
    );
    let header = 8;
    if (size === 1) {
      if (pos + 16 > to) return;
      size = Number(dv.getBigUint64(pos + 8));
      header = 16;
    } else if (size === 0) {
      size = to - pos;
    }
    if (size < header) return;
    const end = Math.min(pos + size, to);
    yield { type, start: pos + header, end };
    pos += size;
  }
}

function child(bytes: Uint8Array, dv: DataView, box: Box, type: string): Box | null {
  for (const b of boxes(bytes, dv, box.start, box.end)) if (b.type === type) return b;
  return null;
}

function isoBmffSize(bytes: Uint8Array): VideoSize | null {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const top: Box = { type: 'file', start: 0, end: bytes.length };
  const moov = child(bytes, dv, top, 'moov');
  if (!moov) return null;
  for (const trak of boxes(bytes, dv, moov.start, moov.end)) {
    if (trak.type !== 'trak') continue;
    const mdia = child(bytes, dv, trak, 'mdia');
    const hdlr = mdia && child(bytes, dv, mdia, 'hdlr');
    if (!mdia || !hdlr || hdlr.start + 12 > hdlr.end) continue;
    const handler = String.fromCharCode(...bytes.subarray(hdlr.start + 8, hdlr.start + 12));
    if (handler !== 'vide') continue;
    const minf = child(bytes, dv, mdia, 'minf');
    const stbl = minf && child(bytes, dv, minf, 'stbl');
    const stsd = stbl && child(bytes, dv, stbl, 'stsd');
    if (!stsd) continue;
    // full box (4) + entry_count (4), then the first sample entry: size, type, 6 reserved,
    // data_reference_index (2), pre_defined/reserved (16), width (2), height (2)
    const entry = stsd.start + 8;
    if (entry + 36 > stsd.end) continue;
    return { width: dv.getUint16(entry + 32), height: dv.getUint16(entry + 34) };
  }
  return null;
}

// ---------------------------------------------------------------- Matroska / WebM

const SEGMENT = 0x18538067, TRACKS = 0x1654ae6b, TRACK_ENTRY = 0xae, VIDEO = 0xe0;
const PIXEL_WIDTH = 0xb0, PIXEL_HEIGHT = 0xba, CLUSTER = 0x1f43b675;

/** A variable-length integer at `pos`: its value (marker kept for ids) and length. */
function vint(
  bytes: Uint8Array,
  pos: number,
  keepMarker: boolean,
): { value: number; length: number; unknown: boolean } {
  const first = bytes[pos];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || pos + length > bytes.length) throw new Error('bad vint');
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === (0xff >> length);
  for (let i = 1; i < length; i++) {
    value = value * 256 + bytes[pos + i];
    if (bytes[pos + i] !== 0xff) allOnes = false;
  }
  return { value, length, unknown: !keepMarker && allOnes };
}

function matroskaSize(bytes: Uint8Array): VideoSize | null {
  const size: Partial<VideoSize> = {};
  const walk = (from: number, to: number): boolean => {
    let pos = from;
    while (pos < to) {
      const id = vint(bytes, pos, true);
      const len = vint(bytes, pos + id.length, false);
      const start = pos + id.length + len.length;
      const end = len.unknown ? to : Math.min(start + len.value, to);
      if (
        id.value === SEGMENT || id.value === TRACKS || id.value === TRACK_ENTRY ||
        id.value === VIDEO
      ) {
        if (walk(start, end)) return true;
      } else if (id.value === PIXEL_WIDTH || id.value === PIXEL_HEIGHT) {
        let v = 0;
        for (let i = start; i < end; i++) v = v * 256 + bytes[i];
        size[id.value === PIXEL_WIDTH ? 'width' : 'height'] = v;
        if (size.width && size.height) return true;
      } else if (id.value === CLUSTER && len.unknown) {
        return false; // media data of unknown length: the tracks were before it, or absent
      }
      pos = end;
    }
    return false;
  };
  walk(0, bytes.length);
  return size.width && size.height ? { width: size.width, height: size.height } : null;
}
