/**
 * The hostile-input corpus of issue "Hostile input round three": files under every byte and
 * pixel cap that killed an edge isolate (or could), made here with native ffmpeg (and sharp for
 * progressive JPEGs) into .local/hostile-corpus/ (never committed), each with what the render
 * path must answer now. tests/faults/hostile-video.test.ts runs every entry through the real
 * worker on a stack of its own; tests/fixtures/hostile-probe.ts measures one on the edge
 * runtime's Deno by the platform's measure (docs/rendering.md has the figures).
 *
 *   bash scripts/run-deno.sh scripts/hostile-corpus.ts [--list] [name…]   makes the files
 *
 * Runs under Deno and Node (vitest imports it).
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

export type Expect =
  | { ready: true }
  | { code: string; error: RegExp }
  | { cover: true; code: string; error: RegExp };

export type CorpusEntry = {
  name: string;
  /** What it is, for the test's title and the docs. */
  what: string;
  type: 'photo' | 'video';
  ext: string;
  mime: string;
  /** The poster's or the preview's outcome. */
  poster: Expect;
  /** The animated clip's outcome (videos, with PREVIEW_ANIMATED on), when it is asked for. */
  animated?: Expect;
  make(file: string): void | Promise<void>;
};

export const CORPUS_DIR = '.local/hostile-corpus';

function ffmpeg(args: string[]): void {
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

/** A moving test pattern with grain (so the encoder spends bits), `seconds` long. */
function pattern(w: number, h: number, seconds: number, fps = 24): string[] {
  return [
    '-f',
    'lavfi',
    '-i',
    `testsrc2=s=${w}x${h}:r=${fps}:d=${seconds},noise=alls=12:allf=t+u`,
  ];
}

/** An MP4 (faststart, so the index is first) with x264/x265/libvpx settings `codec`. */
function video(
  file: string,
  w: number,
  h: number,
  seconds: number,
  codec: string[],
  fps = 24,
): void {
  ffmpeg([...pattern(w, h, seconds, fps), ...codec, '-an', '-movflags', '+faststart', file]);
}

/** A grainy test pattern of side×side as a JPEG, with sharp's `options`. */
async function jpegFrom(
  file: string,
  side: number,
  grain: number,
  options: { quality: number; progressive?: boolean; chromaSubsampling?: string },
): Promise<void> {
  const src = `${file}.src.png`;
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    `testsrc2=s=${side}x${side},noise=alls=${grain}:allf=u`,
    '-frames:v',
    '1',
    src,
  ]);
  const { default: sharp } = await import('sharp');
  await sharp(src, { limitInputPixels: false }).jpeg(options).toFile(file);
}

// ------------------------------------------------------------------ container surgery

type Box = { type: string; start: number; end: number; header: number };

function* boxes(b: Uint8Array, from: number, to: number): Generator<Box> {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let pos = from;
  while (pos + 8 <= to) {
    let size = dv.getUint32(pos);
    let header = 8;
    if (size === 1) {
      size = Number(dv.getBigUint64(pos + 8));
      header = 16;
    } else if (size === 0) size = to - pos;
    if (size < header) return;
    yield {
      type: String.fromCharCode(...b.subarray(pos + 4, pos + 8)),
      start: pos,
      end: Math.min(pos + size, to),
      header,
    };
    pos += size;
  }
}

const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl']);

/**
 * Rewrites what an MP4's video track says its size is (tkhd's width/height and the first stsd
 * sample entry's), leaving the bitstream (and its SPS in avcC/hvcC) as it is.
 */
export function claimSize(bytes: Uint8Array, width: number, height: number): Uint8Array {
  const b = bytes.slice();
  const dv = new DataView(b.buffer);
  let patched = 0;
  const walk = (from: number, to: number) => {
    for (const box of boxes(b, from, to)) {
      if (CONTAINERS.has(box.type)) walk(box.start + box.header, box.end);
      else if (box.type === 'tkhd') {
        // width and height (16.16 fixed point) are the box's last 8 bytes
        if (dv.getUint32(box.end - 8) === 0) continue; // an audio track's tkhd says 0×0
        dv.setUint32(box.end - 8, width * 65536);
        dv.setUint32(box.end - 4, height * 65536);
        patched++;
      } else if (box.type === 'stsd') {
        const entry = box.start + box.header + 8;
        const fourcc = String.fromCharCode(...b.subarray(entry + 4, entry + 8));
        if (!/^(avc[13]|hev1|hvc1|vp09|av01|mp4v)$/.test(fourcc)) continue;
        dv.setUint16(entry + 32, width);
        dv.setUint16(entry + 34, height);
        patched++;
      }
    }
  };
  walk(0, b.length);
  if (patched < 2) throw new Error(`claimSize: patched ${patched} boxes, expected tkhd and stsd`);
  return b;
}

/** Matroska: turns PixelWidth and PixelHeight into Void elements of the same length. */
export function voidMatroskaSize(bytes: Uint8Array, width: number, height: number): Uint8Array {
  const b = bytes.slice();
  const find = (id: number, v: number) => {
    const pat = [id, 0x82, v >> 8, v & 255];
    for (let i = 0; i < Math.min(b.length, 1 << 16); i++) {
      if (pat.every((x, k) => b[i + k] === x)) return i;
    }
    throw new Error(`voidMatroskaSize: element ${id.toString(16)}=${v} not found`);
  };
  for (const [id, v] of [[0xb0, width], [0xba, height]]) b[find(id, v)] = 0xec;
  return b;
}

// ------------------------------------------------------------------ the corpus

const X264 = (extra: string[] = []) => [
  '-c:v',
  'libx264',
  '-preset',
  'ultrafast',
  '-pix_fmt',
  'yuv420p',
  ...extra,
];

const OVER = (w: number, h: number, claim?: string) =>
  new RegExp(`^Over the memory budget: .*${w}x${h}${claim ? `.*\\(${claim}\\)` : ''}`);
const NO_CLIP = (w: number, h: number, claim?: string) =>
  new RegExp(
    `^No animated preview: decoding a ${w}x${h} video${claim ? ` \\(${claim}\\)` : ''}`,
  );

export const CORPUS: CorpusEntry[] = [
  {
    name: 'h264-8k-claims-360p',
    what: 'an 8K H.264 stream (7680×4320) in an MP4 whose tkhd and stsd say 640×360',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { code: 'OVER_MEMORY_BUDGET', error: OVER(7680, 4320, 'the container says 640x360') },
    make: (f) => {
      const tmp = `${f}.src.mp4`;
      video(tmp, 7680, 4320, 0.5, X264());
      writeFileSync(f, claimSize(readFileSync(tmp), 640, 360));
    },
  },
  {
    name: 'h264-8k-claims-0x0',
    what: 'the same 8K stream in an MP4 that says 0×0',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: {
      code: 'OVER_MEMORY_BUDGET',
      error: OVER(7680, 4320, 'the container does not say its size'),
    },
    make: (f) => {
      const tmp = `${f}.src.mp4`;
      video(tmp, 7680, 4320, 0.5, X264());
      writeFileSync(f, claimSize(readFileSync(tmp), 0, 0));
    },
  },
  {
    name: 'h264-8k-unreadable-size',
    what: 'the same 8K stream in a Matroska file without PixelWidth/PixelHeight (voided)',
    type: 'video',
    ext: 'mkv',
    mime: 'video/x-matroska',
    poster: {
      code: 'OVER_MEMORY_BUDGET',
      error: OVER(7680, 4320, 'the container does not say its size'),
    },
    make: (f) => {
      const tmp = `${f}.src.mkv`;
      ffmpeg([...pattern(7680, 4320, 0.5), ...X264(), '-an', tmp]);
      writeFileSync(f, voidMatroskaSize(readFileSync(tmp), 7680, 4320));
    },
  },
  {
    name: 'h264-4k-claims-720p',
    what: 'a 4K H.264 stream (3840×2160, 3 s) in an MP4 that says 1280×720',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { ready: true },
    animated: {
      code: 'OVER_CPU_BUDGET',
      error: NO_CLIP(3840, 2160, 'the container says 1280x720'),
    },
    make: (f) => {
      const tmp = `${f}.src.mp4`;
      video(tmp, 3840, 2160, 3, X264(['-g', '24']));
      writeFileSync(f, claimSize(readFileSync(tmp), 1280, 720));
    },
  },
  {
    name: 'h264-1440p-claims-720p',
    what: 'a 1440p H.264 stream (2560×1440, 6 s) in an MP4 that says 1280×720',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { ready: true },
    animated: {
      code: 'OVER_CPU_BUDGET',
      error: NO_CLIP(2560, 1440, 'the container says 1280x720'),
    },
    make: (f) => {
      const tmp = `${f}.src.mp4`;
      video(tmp, 2560, 1440, 6, X264(['-preset', 'veryfast']));
      writeFileSync(f, claimSize(readFileSync(tmp), 1280, 720));
    },
  },
  {
    name: 'h264-4k-honest-40mb',
    what: 'an honest 4K H.264 file: 3840×2160, 6 s at 30 fps, about 40 MB (53 Mbit/s), GOP 2 s',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { ready: true },
    animated: { code: 'OVER_CPU_BUDGET', error: NO_CLIP(3840, 2160) },
    make: (f) =>
      video(
        f,
        3840,
        2160,
        6,
        X264([
          '-preset',
          'veryfast',
          '-b:v',
          '53M',
          '-maxrate',
          '60M',
          '-bufsize',
          '60M',
          '-g',
          '60',
        ]),
        30,
      ),
  },
  {
    name: 'h264-1440p-worst',
    what:
      '1440p H.264 High 4:4:4 10-bit, 16 reference frames, B-pyramid, 40 Mbit/s: its first key frame alone is 2.9 MB',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: {
      code: 'OVER_CPU_BUDGET',
      error:
        /^Over the CPU budget: decoding the first key frame of this 2560x1440 H\.264 4:4:4 10-bit video \(2\.\d MB\)/,
    },
    make: (f) =>
      video(f, 2560, 1440, 2, [
        '-c:v',
        'libx264',
        '-preset',
        'veryfast',
        '-pix_fmt',
        'yuv444p10le',
        '-refs',
        '16',
        '-bf',
        '8',
        '-b-pyramid',
        'normal',
        '-b:v',
        '40M',
      ]),
  },
  {
    name: 'h264-1440p-refs16',
    what:
      '1440p H.264 4:2:0 8-bit, 16 reference frames, B-pyramid, 40 Mbit/s (its picture buffer does not fit: key frames only)',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { ready: true },
    animated: { code: 'OVER_CPU_BUDGET', error: NO_CLIP(2560, 1440) },
    make: (f) =>
      video(f, 2560, 1440, 2, [
        '-c:v',
        'libx264',
        '-preset',
        'veryfast',
        '-pix_fmt',
        'yuv420p',
        '-refs',
        '16',
        '-bf',
        '8',
        '-b-pyramid',
        'normal',
        '-b:v',
        '40M',
      ]),
  },
  {
    name: 'h264-4k-444-10bit',
    what: '4K H.264 High 4:4:4 10-bit, 16 reference frames (three such frames are 150 MB)',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: {
      code: 'OVER_MEMORY_BUDGET',
      error:
        /^Over the memory budget: decoding this 3840x2160 H\.264 4:4:4 10-bit video needs about 2\d\d MB/,
    },
    make: (f) =>
      video(f, 3840, 2160, 1, [
        '-c:v',
        'libx264',
        '-preset',
        'ultrafast',
        '-pix_fmt',
        'yuv444p10le',
        '-refs',
        '16',
        '-g',
        '12',
      ]),
  },
  {
    name: 'hevc-1440p-444-10bit',
    what:
      '1440p HEVC Main 4:4:4 10, 16 reference frames (key frames only: its picture buffer would be 370 MB)',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { ready: true },
    animated: { code: 'OVER_CPU_BUDGET', error: NO_CLIP(2560, 1440) },
    make: (f) =>
      video(f, 2560, 1440, 1, [
        '-c:v',
        'libx265',
        '-preset',
        'ultrafast',
        '-pix_fmt',
        'yuv444p10le',
        '-tag:v',
        'hvc1',
        '-x265-params',
        'ref=16:bframes=8:rc-lookahead=10:b-pyramid=1:allow-non-conformance=1:log-level=error',
      ]),
  },
  {
    name: 'hevc-8k-claims-720p',
    what: 'an 8K HEVC stream in an MP4 that says 1280×720',
    type: 'video',
    ext: 'mp4',
    mime: 'video/mp4',
    poster: { code: 'OVER_MEMORY_BUDGET', error: OVER(7680, 4320, 'the container says 1280x720') },
    make: (f) => {
      const tmp = `${f}.src.mp4`;
      video(tmp, 7680, 4320, 0.25, [
        '-c:v',
        'libx265',
        '-preset',
        'ultrafast',
        '-tag:v',
        'hvc1',
        '-x265-params',
        'log-level=error',
      ]);
      writeFileSync(f, claimSize(readFileSync(tmp), 1280, 720));
    },
  },
  {
    name: 'vp9-8k-webm',
    what: 'an 8K VP9 stream in a WebM whose PixelWidth/PixelHeight are voided',
    type: 'video',
    ext: 'webm',
    mime: 'video/webm',
    poster: {
      code: 'OVER_MEMORY_BUDGET',
      error: OVER(7680, 4320, 'the container does not say its size'),
    },
    make: (f) => {
      const tmp = `${f}.src.webm`;
      ffmpeg([
        ...pattern(7680, 4320, 0.25),
        '-c:v',
        'libvpx-vp9',
        '-deadline',
        'realtime',
        '-cpu-used',
        '8',
        '-b:v',
        '2M',
        '-an',
        tmp,
      ]);
      writeFileSync(f, voidMatroskaSize(readFileSync(tmp), 7680, 4320));
    },
  },
  {
    name: 'vp9-1440p-444-10bit',
    what: '1440p VP9 profile 3 (4:4:4 10-bit) in a WebM (key frames only: 8 reference slots)',
    type: 'video',
    ext: 'webm',
    mime: 'video/webm',
    poster: { ready: true },
    animated: { code: 'OVER_CPU_BUDGET', error: NO_CLIP(2560, 1440) },
    make: (f) =>
      ffmpeg([
        ...pattern(2560, 1440, 1),
        '-c:v',
        'libvpx-vp9',
        '-deadline',
        'realtime',
        '-cpu-used',
        '8',
        '-pix_fmt',
        'yuv444p10le',
        '-b:v',
        '20M',
        '-an',
        f,
      ]),
  },
  {
    name: 'jpeg-baseline-7000-64mb',
    what: 'a baseline JPEG of 7000×7000, 4:4:4, about 64 MB',
    type: 'photo',
    ext: 'jpg',
    mime: 'image/jpeg',
    poster: { ready: true },
    make: (f) => jpegFrom(f, 7000, 30, { quality: 98, chromaSubsampling: '4:4:4' }),
  },
  {
    name: 'jpeg-progressive-5800',
    what: 'a progressive JPEG of 5800×5800, 4:2:0 (the budget estimated about 145 MB)',
    type: 'photo',
    ext: 'jpg',
    mime: 'image/jpeg',
    poster: { ready: true },
    make: (f) => jpegFrom(f, 5800, 30, { quality: 92, progressive: true }),
  },
];

/** The entry's file in `dir`, made once (a half-written file never counts: made aside, renamed). */
export async function corpusFile(entry: CorpusEntry, dir = CORPUS_DIR): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${entry.name}.${entry.ext}`);
  if (existsSync(file)) return file;
  const tmp = join(dir, `.${entry.name}.tmp.${entry.ext}`);
  await entry.make(tmp);
  renameSync(tmp, file);
  for (const name of readdirSync(dir)) {
    if (name.startsWith(`.${entry.name}.tmp.`)) rmSync(join(dir, name), { force: true });
  }
  return file;
}

if ((import.meta as { main?: boolean }).main) {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? [];
  const names = args.filter((a) => !a.startsWith('--'));
  for (const e of CORPUS.filter((x) => !names.length || names.includes(x.name))) {
    const started = performance.now();
    const file = args.includes('--list')
      ? join(CORPUS_DIR, `${e.name}.${e.ext}`)
      : await corpusFile(e);
    const size = existsSync(file) ? readFileSync(file).length : 0;
    console.log(
      `${e.name.padEnd(28)} ${(size / 1048576).toFixed(1).padStart(6)} MB  ${
        Math.round(performance.now() - started)
      } ms  ${e.what}`,
    );
  }
}
