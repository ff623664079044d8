/**
 * What a video's container says about its first video track, read before ffmpeg decodes
 * anything: MP4/MOV (ISO BMFF: moov → trak with a `vide` handler → stsd's visual sample entry,
 * its decoder configuration box, and the sample table) and WebM/Matroska (Segment → Tracks →
 * TrackEntry → CodecID, CodecPrivate, Video → PixelWidth / PixelHeight, and the blocks of the
 * first clusters).
 *
 * The size the container states is only a claim (`videoDimensions`): the decoder allocates what
 * the bitstream says (bitstream.ts), and budget.ts plans the decode from that. The sample table
 * (where each of the first frames lies, how large it is, when it is shown, whether it is a key
 * frame) lets the plan say how much bitstream ffmpeg may read (`VideoTrack.samples`), and the
 * header ranges which bytes besides the media data it must be able to read (an index at the end).
 */
import type { Codec } from './bitstream.ts';
import type { SniffResult } from './sniff.ts';

export type VideoSize = { width: number; height: number };

/**
 * One coded frame: where it lies, its size, its decode time (s), whether it is a key frame, and
 * whether `-skip_frame noref` decodes it (unknown: true; video.ts reads it from its NAL units).
 */
export type Sample = {
  offset: number;
  size: number;
  time: number;
  key: boolean;
  reference?: boolean;
};

export type VideoTrack = {
  /** What the container says the size is (null: nothing, or 0×0). */
  claimed: VideoSize | null;
  codec: Codec;
  /** avcC / hvcC / av1C payload, or Matroska's CodecPrivate. */
  config: Uint8Array | null;
  /** The first frames in decode order (up to SCAN_SECONDS), or null when they cannot be listed. */
  samples: Sample[] | null;
  /** Byte ranges outside the media data that a demuxer reads (boxes or elements around it). */
  headers: [number, number][];
};

/** How far into a video its frames are listed (the poster reads at most 8 s, the clip 5.5 s). */
export const SCAN_SECONDS = 10;
const MAX_SAMPLES = 4000;

const FOURCC: Record<string, Codec> = {
  avc1: 'h264',
  avc3: 'h264',
  hev1: 'hevc',
  hvc1: 'hevc',
  vp09: 'vp9',
  av01: 'av1',
};
const CODEC_ID: Record<string, Codec> = {
  'V_MPEG4/ISO/AVC': 'h264',
  'V_MPEGH/ISO/HEVC': 'hevc',
  V_VP9: 'vp9',
  V_AV1: 'av1',
};

/** The first video track's codec, configuration, claimed size and first samples; null if none. */
export function videoTrack(bytes: Uint8Array, format: SniffResult['format']): VideoTrack | null {
  try {
    if (format === 'mp4' || format === 'mov') return isoBmffTrack(bytes);
    if (format === 'webm') return matroskaTrack(bytes);
  } catch {
    // a container we cannot walk says nothing
  }
  return null;
}

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

/** A box: its type, its content's start, its end, and where its header begins. */
export type Box = { type: string; start: number; end: number; from: number };

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
    yield { type, start: pos + header, end, from: pos };
    pos += size;
  }
}

function child(bytes: Uint8Array, dv: DataView, box: Box, type: string): Box | null {
  for (const b of boxes(bytes, dv, box.start, box.end)) if (b.type === type) return b;
  return null;
}

/**
 * The tracks of an ISO BMFF file, in moov order: each with its handler (`vide`, `soun`, …) and its
 * mdia box; `child` reads a box inside one of them. Nothing when there is no moov.
 */
export function* isoBmffTracks(
  bytes: Uint8Array,
): Generator<{ handler: string; mdia: Box; child: (box: Box, type: string) => Box | null }> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const top: Box = { type: 'file', start: 0, end: bytes.length, from: 0 };
  const moov = child(bytes, dv, top, 'moov');
  if (!moov) return;
  const inside = (box: Box, type: string) => child(bytes, dv, box, type);
  for (const trak of boxes(bytes, dv, moov.start, moov.end)) {
    if (trak.type !== 'trak') continue;
    const mdia = inside(trak, 'mdia');
    const hdlr = mdia && inside(mdia, 'hdlr');
    if (!mdia || !hdlr || hdlr.start + 12 > hdlr.end) continue;
    const handler = String.fromCharCode(...bytes.subarray(hdlr.start + 8, hdlr.start + 12));
    yield { handler, mdia, child: inside };
  }
}

/**
 * The first video track whose sample description (stsd) holds at least `entryBytes` of its first
 * sample entry: that entry's offset, its stbl and its mdia.
 */
function isoBmffVideo(
  bytes: Uint8Array,
  entryBytes: number,
): { mdia: Box; stbl: Box; stsd: Box; entry: number } | null {
  for (const { handler, mdia, child } of isoBmffTracks(bytes)) {
    if (handler !== 'vide') continue;
    const minf = child(mdia, 'minf');
    const stbl = minf && child(minf, 'stbl');
    const stsd = stbl && child(stbl, 'stsd');
    // full box (4) + entry_count (4), then the first sample entry
    if (stbl && stsd && stsd.start + 8 + entryBytes <= stsd.end) {
      return { mdia, stbl, stsd, entry: stsd.start + 8 };
    }
  }
  return null;
}

function isoBmffSize(bytes: Uint8Array): VideoSize | null {
  // the sample entry: size, type, 6 reserved, data_reference_index (2), pre_defined/reserved
  // (16), width (2), height (2)
  const video = isoBmffVideo(bytes, 36);
  if (!video) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: dv.getUint16(video.entry + 32), height: dv.getUint16(video.entry + 34) };
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

// ---------------------------------------------------------------- ISO BMFF: the whole track

const u32 = (dv: DataView, p: number) => dv.getUint32(p);

function isoBmffTrack(bytes: Uint8Array): VideoTrack | null {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headers: [number, number][] = [];
  for (const b of boxes(bytes, dv, 0, bytes.length)) {
    if (b.type !== 'mdat') headers.push([b.from, b.end]);
  }
  const video = isoBmffVideo(bytes, 86);
  if (!video) return null;
  const { mdia, stbl, stsd, entry } = video;
  const mdhd = child(bytes, dv, mdia, 'mdhd');
  const timescale = mdhd
    ? (bytes[mdhd.start] === 1 ? u32(dv, mdhd.start + 20) : u32(dv, mdhd.start + 12))
    : 0;
  const entryEnd = Math.min(stsd.end, entry + u32(dv, entry));
  const fourcc = String.fromCharCode(...bytes.subarray(entry + 4, entry + 8));
  const w = dv.getUint16(entry + 32);
  const h = dv.getUint16(entry + 34);
  let config: Uint8Array | null = null;
  for (const c of boxes(bytes, dv, entry + 86, entryEnd)) {
    if (c.type === 'avcC' || c.type === 'hvcC' || c.type === 'av1C') {
      config = bytes.subarray(c.start, c.end);
    }
  }
  let samples: Sample[] | null = null;
  try {
    samples = timescale > 0 ? sampleTable(bytes, dv, stbl, timescale) : null;
  } catch {
    samples = null;
  }
  return {
    claimed: w && h ? { width: w, height: h } : null,
    codec: FOURCC[fourcc] ?? 'other',
    config,
    samples: samples?.length ? samples : null,
    headers,
  };
}

/** The first samples of a track's sample table (stsz, stsc, stco/co64, stts, stss). */
function sampleTable(bytes: Uint8Array, dv: DataView, stbl: Box, timescale: number): Sample[] {
  const box = (t: string) => child(bytes, dv, stbl, t);
  const stsz = box('stsz');
  const stsc = box('stsc');
  const stco = box('stco') ?? box('co64');
  const stts = box('stts');
  if (!stsz || !stsc || !stco || !stts) return [];
  const wide = stco.type === 'co64';
  const fixed = u32(dv, stsz.start + 4);
  const count = Math.min(u32(dv, stsz.start + 8), MAX_SAMPLES);
  const sizeOf = (i: number) => fixed || u32(dv, stsz.start + 12 + 4 * i);
  const chunks = u32(dv, stco.start + 4);
  const chunkOffset = (c: number) =>
    wide ? Number(dv.getBigUint64(stco.start + 8 + 8 * c)) : u32(dv, stco.start + 8 + 4 * c);
  const runs = u32(dv, stsc.start + 4);
  const run = (k: number) => ({
    first: u32(dv, stsc.start + 8 + 12 * k) - 1,
    per: u32(dv, stsc.start + 12 + 12 * k),
  });
  const stss = box('stss');
  const keys = stss ? new Set<number>() : null;
  if (stss) {
    const n = Math.min(u32(dv, stss.start + 4), 100_000);
    for (let k = 0; k < n; k++) {
      const s = u32(dv, stss.start + 8 + 4 * k) - 1;
      if (s >= count) break;
      keys!.add(s);
    }
  }
  const ttsRuns = u32(dv, stts.start + 4);
  let tts = 0;
  let ttsLeft = ttsRuns ? u32(dv, stts.start + 8) : 0;
  let delta = ttsRuns ? u32(dv, stts.start + 12) : 0;
  let time = 0;
  const out: Sample[] = [];
  let i = 0;
  for (let k = 0; k < runs && i < count; k++) {
    const { first, per } = run(k);
    const last = k + 1 < runs ? run(k + 1).first : chunks;
    for (let c = first; c < last && c < chunks && i < count; c++) {
      let offset = chunkOffset(c);
      for (let j = 0; j < per && i < count; j++, i++) {
        const size = sizeOf(i);
        if (time / timescale > SCAN_SECONDS) return out;
        out.push({ offset, size, time: time / timescale, key: keys ? keys.has(i) : true });
        offset += size;
        while (ttsLeft === 0 && tts + 1 < ttsRuns) {
          tts++;
          ttsLeft = u32(dv, stts.start + 8 + 8 * tts);
          delta = u32(dv, stts.start + 12 + 8 * tts);
        }
        time += delta;
        ttsLeft--;
      }
    }
  }
  // decode order is file order within a track; keep it, but the walk above is by chunk
  return out;
}

// ---------------------------------------------------------------- Matroska: the whole track

const EBML = 0x1a45dfa3, INFO = 0x1549a966, TIMECODE_SCALE = 0x2ad7b1, TRACK_NUMBER = 0xd7;
const TRACK_TYPE = 0x83, CODEC_ID_EL = 0x86, CODEC_PRIVATE = 0x63a2, TIMECODE = 0xe7;
const SIMPLE_BLOCK = 0xa3, BLOCK_GROUP = 0xa0, BLOCK = 0xa1, REFERENCE_BLOCK = 0xfb;
/** Elements that may follow a cluster of unknown size at the segment's level. */
const SEGMENT_LEVEL = new Set([
  CLUSTER,
  0x1c53bb6b, // Cues
  0x1254c367, // Tags
  0x1043a770, // Chapters
  0x1941a469, // Attachments
  0x114d9b74, // SeekHead
  INFO,
  TRACKS,
]);

type El = { id: number; from: number; start: number; end: number; unknown: boolean };

function* elements(bytes: Uint8Array, from: number, to: number): Generator<El> {
  let pos = from;
  while (pos < to) {
    const id = vint(bytes, pos, true);
    const len = vint(bytes, pos + id.length, false);
    const start = pos + id.length + len.length;
    const end = len.unknown ? to : Math.min(start + len.value, to);
    yield { id: id.value, from: pos, start, end, unknown: len.unknown };
    pos = end;
  }
}

const uint = (bytes: Uint8Array, e: El) => {
  let v = 0;
  for (let i = e.start; i < e.end; i++) v = v * 256 + bytes[i];
  return v;
};

function matroskaTrack(bytes: Uint8Array): VideoTrack | null {
  const headers: [number, number][] = [];
  let scale = 1_000_000;
  let track:
    | { number: number; codec: Codec; config: Uint8Array | null; claimed: VideoSize | null }
    | null = null;
  const samples: Sample[] = [];
  let scanning = true;
  const cluster = (from: number, to: number, unknown: boolean): number => {
    let base = 0;
    for (const e of elements(bytes, from, to)) {
      if (unknown && SEGMENT_LEVEL.has(e.id)) return e.from;
      if (e.id === TIMECODE) base = uint(bytes, e);
      else if ((e.id === SIMPLE_BLOCK || e.id === BLOCK_GROUP) && track && scanning) {
        let block = e;
        let key = e.id === SIMPLE_BLOCK ? false : true;
        if (e.id === BLOCK_GROUP) {
          const parts = [...elements(bytes, e.start, e.end)];
          block = parts.find((p) => p.id === BLOCK) ?? e;
          if (parts.some((p) => p.id === REFERENCE_BLOCK)) key = false;
        }
        const n = vint(bytes, block.start, false);
        if (n.value !== track.number || block.start + n.length + 3 > block.end) continue;
        const flags = bytes[block.start + n.length + 2];
        if (e.id === SIMPLE_BLOCK) key = (flags & 0x80) !== 0;
        const rel =
          (bytes[block.start + n.length] << 8 | bytes[block.start + n.length + 1]) << 16 >> 16;
        const time = ((base + rel) * scale) / 1e9;
        if (time > SCAN_SECONDS || samples.length >= MAX_SAMPLES) {
          scanning = false;
          continue;
        }
        const offset = block.start + n.length + 3;
        samples.push({ offset, size: block.end - offset, time, key });
      }
    }
    return to;
  };
  for (const top of elements(bytes, 0, bytes.length)) {
    if (top.id === EBML) headers.push([top.from, top.end]);
    if (top.id !== SEGMENT) continue;
    headers.push([top.from, top.start]);
    let pos = top.start;
    while (pos < top.end) {
      const [e] = elements(bytes, pos, top.end);
      if (!e) break;
      if (e.id === CLUSTER) {
        pos = scanning || e.unknown ? cluster(e.start, e.end, e.unknown) : e.end;
        if (pos <= e.from) break;
        continue;
      }
      headers.push([e.from, e.end]);
      if (e.id === INFO) {
        for (const i of elements(bytes, e.start, e.end)) {
          if (i.id === TIMECODE_SCALE) scale = uint(bytes, i) || scale;
        }
      } else if (e.id === TRACKS && !track) {
        for (const t of elements(bytes, e.start, e.end)) {
          if (t.id !== TRACK_ENTRY) continue;
          let number = 0, type = 0, codec = '';
          let config: Uint8Array | null = null;
          const claimed: Partial<VideoSize> = {};
          for (const f of elements(bytes, t.start, t.end)) {
            if (f.id === TRACK_NUMBER) number = uint(bytes, f);
            else if (f.id === TRACK_TYPE) type = uint(bytes, f);
            else if (f.id === CODEC_ID_EL) {
              codec = String.fromCharCode(...bytes.subarray(f.start, f.end)).replace(/\0+$/, '');
            } else if (f.id === CODEC_PRIVATE) config = bytes.subarray(f.start, f.end);
            else if (f.id === VIDEO) {
              for (const v of elements(bytes, f.start, f.end)) {
                if (v.id === PIXEL_WIDTH) claimed.width = uint(bytes, v);
                if (v.id === PIXEL_HEIGHT) claimed.height = uint(bytes, v);
              }
            }
          }
          if (type !== 1) continue;
          track = {
            number,
            codec: CODEC_ID[codec] ?? 'other',
            config,
            claimed: claimed.width && claimed.height ? claimed as VideoSize : null,
          };
          break;
        }
      }
      pos = e.end;
    }
  }
  if (!track) return null;
  return {
    claimed: track.claimed,
    codec: track.codec,
    config: track.config,
    samples: samples.length ? samples : null,
    headers,
  };
}
