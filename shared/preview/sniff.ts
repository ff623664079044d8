/**
 * Content sniffing from magic bytes. Headers and file extensions are hints, never trusted:
 * the kind and format of an asset come from its first bytes only. Audio (issue 26): MP3 and ADTS
 * AAC (after any ID3v2 tags: two frame headers in a row), M4A (ISO BMFF with an audio brand; other
 * brands stay video), WAV, Ogg (Vorbis, Opus, FLAC) and FLAC, the formats the ffmpeg core decodes.
 */
import { PreviewError } from '../errors.ts';

export type SniffResult = {
  kind: 'image' | 'video' | 'audio';
  format:
    | 'jpeg'
    | 'png'
    | 'webp'
    | 'gif'
    | 'mp4'
    | 'mov'
    | 'webm'
    | AudioFormat;
  mime: string;
};

export type AudioFormat = 'mp3' | 'aac' | 'm4a' | 'wav' | 'ogg' | 'flac';

const MIME = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  webm: 'video/webm',
  mp3: 'audio/mpeg',
  aac: 'audio/aac',
  m4a: 'audio/mp4',
  wav: 'audio/wav',
  ogg: 'audio/ogg',
  flac: 'audio/flac',
} as const;

const AUDIO_FORMATS = new Set<string>(['mp3', 'aac', 'm4a', 'wav', 'ogg', 'flac']);

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
/** ISO-BMFF major brands of audio-only files (iTunes/ffmpeg M4A, audiobooks, Flash audio). */
const AUDIO_BRANDS = new Set(['M4A ', 'M4B ', 'M4P ', 'F4A ', 'F4B ']);
/** Top-level QuickTime atoms that may open a .mov that has no `ftyp`. */
const QT_ATOMS = new Set(['moov', 'mdat', 'wide', 'free', 'skip', 'pnot']);

export function sniff(bytes: Uint8Array): SniffResult {
  const b = bytes;
  const hit = (format: SniffResult['format']): SniffResult => ({
    kind: format === 'mp4' || format === 'mov' || format === 'webm'
      ? 'video'
      : AUDIO_FORMATS.has(format)
      ? 'audio'
      : 'image',
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
    if (AUDIO_BRANDS.has(major)) return hit('m4a');
    return hit(major === 'qt  ' ? 'mov' : 'mp4');
  }
  if (b.length >= 8 && QT_ATOMS.has(ascii(b, 4, 4))) return hit('mov');
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) {
    return hit('webm');
  }
  const audio = sniffAudio(b);
  if (audio) return hit(audio);
  if (b.length === 0) {
    throw new PreviewError('UNSUPPORTED_FORMAT', 'Unsupported format: empty file');
  }
  // The message never quotes the bytes: it lands on the row, and the bytes are a remote answer.
  throw new PreviewError(
    'UNSUPPORTED_FORMAT',
    'Unsupported format: not a JPEG, PNG, GIF, WebP, MP4, MOV, WebM, MP3, M4A, AAC, WAV, Ogg or FLAC file',
  );
}

/**
 * The audio formats besides M4A (an ISO BMFF brand, read in sniff's `ftyp` branch): WAV, Ogg with
 * an audio codec's first packet, FLAC, and MPEG audio or ADTS AAC after any ID3v2 tags. MPEG audio
 * has no magic number, only an 11-bit frame sync, so two valid frame headers in a row are asked for
 * (one where the file holds a single frame).
 */
function sniffAudio(b: Uint8Array): AudioFormat | null {
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WAVE') return 'wav';
  if (b.length >= 28 && ascii(b, 0, 4) === 'OggS') {
    // the first page holds the codec's identification header, after its segment table
    const at = 27 + b[26];
    const id = ascii(b, at, 8);
    return id.startsWith('\x01vorbis') || id === 'OpusHead' || id.startsWith('\x7fFLAC')
      ? 'ogg'
      : null;
  }
  const start = id3v2End(b, 0);
  if (b.length >= start + 4 && ascii(b, start, 4) === 'fLaC') return 'flac';
  // a tag may be followed by padding the tag's size did not count
  let at = start;
  while (start > 0 && at < b.length && at < start + 4096 && b[at] === 0) at++;
  const first = mpegAudioFrame(b, at);
  if (!first) return null;
  const next = at + first.length;
  const second = mpegAudioFrame(b, next);
  const alone = next >= b.length - 128; // one frame, perhaps an ID3v1 tag after it
  if (
    second
      ? second.adts !== first.adts || second.sampleRate !== first.sampleRate ||
        second.layer !== first.layer
      : !alone
  ) return null;
  return first.adts ? 'aac' : 'mp3';
}

/** Where the ID3v2 tags at `at` end (consecutive tags are skipped too): `at` when there are none. */
export function id3v2End(b: Uint8Array, at: number): number {
  while (
    at + 10 <= b.length && b[at] === 0x49 && b[at + 1] === 0x44 && b[at + 2] === 0x33 &&
    b[at + 3] < 0xff && b[at + 4] < 0xff &&
    ((b[at + 6] | b[at + 7] | b[at + 8] | b[at + 9]) & 0x80) === 0
  ) {
    const size = (b[at + 6] << 21) | (b[at + 7] << 14) | (b[at + 8] << 7) | b[at + 9];
    at += 10 + size + (b[at + 5] & 0x10 ? 10 : 0); // a footer adds 10 bytes
  }
  return at;
}

/** An MPEG audio (Layer I–III) or ADTS AAC frame header. */
export type MpegAudioFrame = {
  adts: boolean;
  /** MPEG audio: 1 (MPEG-1), 2 (MPEG-2) or 2.5; ADTS: 4. */
  version: number;
  /** 1, 2 or 3 (MPEG audio); 0 for ADTS. */
  layer: number;
  /** Bytes, header included. */
  length: number;
  sampleRate: number;
  /** Samples per channel the frame decodes to. */
  samples: number;
  /** 1 or 2 (ADTS: its channel configuration, 0 when the stream says it elsewhere). */
  channels: number;
  /** kbit/s (ADTS: 0). */
  bitrate: number;
  crc: boolean;
};

const MPEG_RATES = [44100, 48000, 32000];
const BITRATES = {
  v1: [
    [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
    [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  ],
  v2: [
    [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  ],
};
const ADTS_RATES = [
  96000,
  88200,
  64000,
  48000,
  44100,
  32000,
  24000,
  22050,
  16000,
  12000,
  11025,
  8000,
  7350,
];

/**
 * The MPEG audio or ADTS frame header at `at`, or null when there is none (free-format MPEG
 * audio, whose frame length the header does not give, included).
 */
export function mpegAudioFrame(b: Uint8Array, at: number): MpegAudioFrame | null {
  if (at < 0 || at + 4 > b.length || b[at] !== 0xff || (b[at + 1] & 0xe0) !== 0xe0) return null;
  const b1 = b[at + 1], b2 = b[at + 2], b3 = b[at + 3];
  const layerBits = (b1 >> 1) & 3;
  if (layerBits === 0) {
    // ADTS: a 12-bit sync, layer 00
    if ((b1 & 0xf0) !== 0xf0 || at + 7 > b.length) return null;
    const rate = ADTS_RATES[(b2 >> 2) & 15];
    const length = ((b3 & 3) << 11) | (b[at + 4] << 3) | (b[at + 5] >> 5);
    const crc = (b1 & 1) === 0;
    if (!rate || ((b2 >> 6) & 3) === 3 || length < (crc ? 9 : 7)) return null;
    const channels = ((b2 & 1) << 2) | (b3 >> 6);
    const blocks = (b[at + 6] & 3) + 1;
    return {
      adts: true,
      version: 4,
      layer: 0,
      length,
      sampleRate: rate,
      samples: 1024 * blocks,
      channels,
      bitrate: 0,
      crc,
    };
  }
  const versionBits = (b1 >> 3) & 3;
  if (versionBits === 1) return null;
  const version = versionBits === 3 ? 1 : versionBits === 2 ? 2 : 2.5;
  const layer = 4 - layerBits;
  const bitrateIndex = b2 >> 4;
  const rateIndex = (b2 >> 2) & 3;
  if (bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return null;
  const bitrate = BITRATES[version === 1 ? 'v1' : 'v2'][layer - 1][bitrateIndex];
  const sampleRate = MPEG_RATES[rateIndex] / (version === 1 ? 1 : version === 2 ? 2 : 4);
  const padding = (b2 >> 1) & 1;
  const samples = layer === 1 ? 384 : layer === 3 && version !== 1 ? 576 : 1152;
  const length = layer === 1
    ? (Math.floor((12000 * bitrate) / sampleRate) + padding) * 4
    : Math.floor(((samples / 8) * 1000 * bitrate) / sampleRate) + padding;
  return {
    adts: false,
    version,
    layer,
    length,
    sampleRate,
    samples,
    channels: b3 >> 6 === 3 ? 1 : 2,
    bitrate,
    crc: (b1 & 1) === 0,
  };
}
