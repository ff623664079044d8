/**
 * What a decode will really allocate, estimated from the header before any pixel is decoded,
 * so that a file under every byte and pixel cap can still be refused with a precise terminal
 * code instead of killing the isolate (546 WORKER_LIMIT) again on every retry. Figures are
 * measured with the bench harness (peak RSS of one call in a fresh Deno process, edge
 * permissions; bench/RESULTS.md):
 *
 * - GIF streams its first frame row by row (gif.ts): nothing per pixel.
 * - WebP decodes with libwebp's own rescaler straight to the preview size (our build,
 *   scripts/codecs): a lossy WebP holds a few macroblock rows (7000², 49 MP: a 5.5 MB heap,
 *   60 MB peak RSS, 0.86 s); lossless (VP8L) holds its whole ARGB frame (4096²: a 75 MB heap,
 *   about 5 bytes per pixel) and a lossy one with an alpha plane holds the plane and its
 *   lossless-coded source (7000²: 283 MB, about 6 bytes per pixel).
 * - Streaming PNG (interlaced too) holds a few rows, but the runtime's native inflate hands out a new buffer per
 *   chunk and frees consumed ones lazily: peak RSS grows by up to a byte per inflated byte
 *   (16-bit RGBA 5000², 200 MB inflated: 249 MB peak; 7000², 392 MB: 304 MB, and
 *   1.9 s of CPU).
 * - Progressive JPEG keeps every DCT coefficient (2 bytes × 64 per 8×8 block of every
 *   component) until the last scan: about 1.5 × that in peak RSS (7000² 4:2:0: 147 MB of
 *   coefficients, 289 MB peak; 6000²: 235 MB; 5000²: 188 MB). Baseline JPEG decodes with
 *   DCT scaling and never holds the frame.
 * - Video: ffmpeg's H.264/HEVC/VP9 decoders hold several reference frames at the coded size:
 *   1440p peaked at 200 MB, 2160p at 253 MB, 4320p at 330 MB (one call, cold). With a 1.2 s
 *   fade-in (more frames decoded before the picture settles), 2160p H.264 took 3.2 s of
 *   JS-thread CPU cold and 281 MB, HEVC 3.5 s and 300 MB (bench/RESULTS.md, 2026-11-30):
 *   over both limits, so the worker would be stopped twice and the row end WORKER_LIMIT.
 *   So above 2560×1440 only keyframes are decoded; a video whose keyframes show no picture falls
 *   back to KIE's cover image where the task has one. Those figures were peak RSS; by the
 *   platform's measure (V8 heap + external) and from the bitstream's own parameters, the video
 *   plan below (planVideo, VIDEO_MEMORY, VIDEO_CPU) decides, measured on the corpus of
 *   scripts/hostile-corpus.ts (docs/rendering.md "Hostile files").
 */
import { PreviewError } from '../errors.ts';
import { type Codec, frameBytes, type StreamInfo } from './bitstream.ts';
import type { Sample, VideoSize, VideoTrack } from './container.ts';
import type { ImageHeader } from './header.ts';
import type { SniffResult } from './sniff.ts';

/** Bytes a photo decode may add to an isolate (256 MB less runtime, input and encoder). */
export const DECODE_BUDGET_BYTES = 160 * 1024 * 1024;
/** Peak bytes per pixel of libwebp's scaled decode: lossless, lossy with alpha, lossy. */
const WEBP_BYTES_PER_PIXEL = { lossless: 5, alpha: 6, lossy: 0.25 } as const;
/** Peak bytes per inflated byte of a streaming PNG decode. */
const PNG_BYTES_PER_INFLATED_BYTE = 1;
/** Peak bytes per byte of progressive-JPEG coefficients. */
const PROGRESSIVE_OVERHEAD = 1.5;
/** The largest coded video frame whose every reference frame ffmpeg.wasm decodes inside the limits: 2560×1440. */
export const VIDEO_MAX_DECODE_PIXELS = 2560 * 1440;
/**
 * Up to 4096×2160 (4K UHD and DCI), only keyframes are decoded: one frame at a time, no
 * reference chain (4K H.264, 1.2 s fade: 3 keyframes in 4 s took 0.93 s warm and 211 MB peak,
 * where decoding every reference frame took 2.8 s and 281 MB).
 */
export const VIDEO_MAX_KEYFRAME_PIXELS = 4096 * 2160;

const MB = 1048576;
const mb = (bytes: number) => Math.round(bytes / MB);

/** The frame the decoder will allocate (larger of canvas and first frame). */
export function decodedSize(header: ImageHeader): { width: number; height: number } {
  const f = header.frame;
  return f && f.width * f.height > header.width * header.height ? f : header;
}

/** Estimated peak bytes a decode of this image adds (0 for baseline JPEG and GIF: streamed). */
export function photoDecodeCost(format: SniffResult['format'], header: ImageHeader): number {
  const { width, height } = decodedSize(header);
  if (format === 'webp') {
    const kind = header.webp?.lossless ? 'lossless' : header.webp?.alpha ? 'alpha' : 'lossy';
    return WEBP_BYTES_PER_PIXEL[kind] * width * height;
  }
  if (format === 'png') {
    // Adam7's passes add a filter byte per pass row: ≈ height × 15/8 more bytes at most
    const inflated = height *
      (Math.ceil((width * (header.bitsPerPixel ?? 32)) / 8) + (header.interlaced ? 3 : 1));
    return PNG_BYTES_PER_INFLATED_BYTE * inflated;
  }
  if (format === 'jpeg' && header.progressive && header.components?.length) {
    const hMax = Math.max(...header.components.map((c) => c.h));
    const vMax = Math.max(...header.components.map((c) => c.v));
    const coefficients = header.components.reduce(
      (sum, c) =>
        sum + Math.ceil((width * c.h) / hMax / 8) * Math.ceil((height * c.v) / vMax / 8) * 64 * 2,
      0,
    );
    return PROGRESSIVE_OVERHEAD * coefficients;
  }
  return 0;
}

/**
 * By the platform's measure (heap + external), a photo's render holds besides the decoder: the
 * isolate (24 MB), the source, a copy of it in the decoder's heap (libjpeg-turbo and libwebp
 * read from there) and the WebP encoder (16 MB); libjpeg-turbo's heap holds about 24 MB of its own
 * on top (a 62.5 MB baseline 7000² JPEG: 161 MB peak). A progressive JPEG's coefficients cost
 * about 1.05× their size in wasm memory (5800² 4:2:0: 97 MB of coefficients, 110 MB of heap with
 * its 12 MB copy): photoDecodeCost's 1.5× is the peak RSS, which the platform does not count.
 */
export const PHOTO_MEMORY = {
  isolateBase: 24 * MB,
  encoder: 16 * MB,
  jpegHeap: 24 * MB,
  progressivePerCoefficientByte: 1.05,
  /** what a photo may take the isolate to, by this estimate */
  budget: 208 * MB,
};

/**
 * Photo decoding CPU on the isolate's thread (Deno 2.1.4, measured on sharp-made JPEGs of 2–62 MB):
 * a baseline JPEG about 15 ms per MB of file plus 2.5 ms per megapixel (DCT-scaled), a progressive
 * one about 80 ms per MB plus 4 ms per megapixel; a streaming PNG about 9 ms per MB inflated; the
 * first decode of an isolate about 250 ms more. Multiplied by `margin`.
 */
export const PHOTO_CPU = {
  coldMs: 250,
  jpegMsPerMB: { baseline: 15, progressive: 80 },
  jpegMsPerMP: { baseline: 2.5, progressive: 4 },
  pngMsPerInflatedMB: 9,
  margin: 1.1,
};

/** The isolate's peak by the platform's measure while this photo renders (estimate). */
export function photoPeakBytes(
  format: SniffResult['format'],
  header: ImageHeader,
  inputBytes: number,
): number {
  const base = PHOTO_MEMORY.isolateBase + PHOTO_MEMORY.encoder + inputBytes;
  if (format === 'jpeg') {
    const progressive = header.progressive
      ? (photoDecodeCost(format, header) / PROGRESSIVE_OVERHEAD) *
        PHOTO_MEMORY.progressivePerCoefficientByte
      : 0;
    return base + inputBytes + PHOTO_MEMORY.jpegHeap + progressive;
  }
  if (format === 'webp') return base + inputBytes + photoDecodeCost(format, header);
  return base + photoDecodeCost(format, header);
}

/** The photo's decode CPU (ms) by PHOTO_CPU, cold (the decoder's first use in the isolate). */
export function photoCpuMs(
  format: SniffResult['format'],
  header: ImageHeader,
  inputBytes: number,
): number {
  const c = PHOTO_CPU;
  const { width, height } = decodedSize(header);
  if (format === 'jpeg') {
    const kind = header.progressive ? 'progressive' : 'baseline';
    return c.coldMs +
      c.margin *
        ((inputBytes / MB) * c.jpegMsPerMB[kind] + (width * height / 1e6) * c.jpegMsPerMP[kind]);
  }
  if (format === 'png') {
    return c.coldMs + c.margin * (photoDecodeCost(format, header) / MB) * c.pngMsPerInflatedMB;
  }
  return 0;
}

/**
 * Refuses, before decoding, an image whose decoded frame is over the pixel cap
 * (TOO_MANY_PIXELS), whose decode would not fit the decoder's memory budget or, with its source,
 * the isolate's (OVER_MEMORY_BUDGET), or whose decode would take more CPU than a fresh isolate has
 * (OVER_CPU_BUDGET; `cpu`: what this isolate has left and what a fresh one has; one that fits a
 * fresh isolate only is FreshIsolateNeeded).
 */
export function checkPhotoBudget(
  format: SniffResult['format'],
  header: ImageHeader,
  maxPixels: number,
  inputBytes = 0,
  cpu?: { roomMs: number; freshMs: number },
): void {
  const { width, height } = decodedSize(header);
  const pixels = width * height;
  const frame =
    header.frame && (header.frame.width !== header.width || header.frame.height !== header.height)
      ? ` (canvas ${header.width}x${header.height})`
      : '';
  if (pixels > maxPixels) {
    throw new PreviewError(
      'TOO_MANY_PIXELS',
      `Too many pixels: ${width}x${height}${frame} (${pixels} > ${maxPixels})`,
    );
  }
  if (
    format === 'webp' && header.frame &&
    (header.frame.width > header.width || header.frame.height > header.height)
  ) {
    // libwebp's demuxer refuses a frame outside its canvas too
    throw new PreviewError(
      'DECODE_FAILED',
      `Decode failed: WebP frame ${header.frame.width}x${header.frame.height} is larger than its canvas ${header.width}x${header.height}`,
    );
  }
  const kind = format === 'jpeg'
    ? (header.progressive ? 'progressive JPEG' : 'baseline JPEG')
    : format === 'png'
    ? `${header.bitsPerPixel}-bit-per-pixel PNG`
    : format === 'webp'
    ? (header.webp?.lossless ? 'lossless WebP' : header.webp?.alpha ? 'WebP with alpha' : 'WebP')
    : format.toUpperCase();
  const cost = photoDecodeCost(format, header);
  if (cost > DECODE_BUDGET_BYTES) {
    throw new PreviewError(
      'OVER_MEMORY_BUDGET',
      `Over the memory budget: decoding this ${width}x${height}${frame} ${kind} needs about ${
        mb(cost)
      } MB (budget ${mb(DECODE_BUDGET_BYTES)} MB)`,
    );
  }
  const peak = photoPeakBytes(format, header, inputBytes);
  if (peak > PHOTO_MEMORY.budget) {
    throw new PreviewError(
      'OVER_MEMORY_BUDGET',
      `Over the memory budget: rendering this ${width}x${height}${frame} ${kind} of ${
        mb(inputBytes)
      } MB takes the isolate to about ${mb(peak)} MB (budget ${mb(PHOTO_MEMORY.budget)} MB)`,
    );
  }
  if (cpu) {
    const ms = Math.round(photoCpuMs(format, header, inputBytes));
    const what = `Over the CPU budget: decoding this ${width}x${height}${frame} ${kind} of ${
      mb(inputBytes)
    } MB takes about ${ms} ms of CPU`;
    if (ms > cpu.freshMs) {
      throw new PreviewError('OVER_CPU_BUDGET', `${what}; an edge isolate has ${cpu.freshMs} ms`);
    }
    if (ms > cpu.roomMs) {
      throw new FreshIsolateNeeded(`${what}; this isolate has ${cpu.roomMs} ms left`);
    }
  }
}

/** What a plan needs from the isolate: the CPU left for this render, and what a fresh one has. */
export type CpuRoom = { roomMs: number; freshMs: number; coreCold: boolean; coreInstance: boolean };

/**
 * Video decoding as measured here (Deno 2.1.4, the ffmpeg core with non-reference frames and the
 * loop filter skipped; docs/rendering.md "Hostile video"): the JS thread's CPU per decoded frame is
 * about frame MB × (8 for a key frame incl. its scaling to the preview, 2.5–4 for an inter frame)
 * plus 220 ms per MB of its bitstream (CABAC; CAVLC is cheaper); a frame read but skipped costs
 * about 25 ms per MB (its NAL units are still unescaped; a skipped VP9 frame about 1.2 ms per frame
 * MB); compiling the core and the first use of a decoder's code is up to 500 ms once per isolate,
 * an ffmpeg run 40 ms. The estimate is multiplied by `margin`.
 */
export const VIDEO_CPU = {
  coreColdMs: 500,
  coreInstanceMs: 60,
  execMs: 40,
  bitsMsPerMB: 220,
  skipMsPerMB: 25,
  /** VP9 and the rest parse a skipped frame further: per frame MB as well */
  skipMsPerFrameMB: { h264: 0, hevc: 0, vp9: 1.2, av1: 1.2, other: 1.2 } as Record<Codec, number>,
  keyMsPerFrameMB: { h264: 8, hevc: 8, vp9: 11, av1: 12, other: 12 } as Record<Codec, number>,
  interMsPerFrameMB: { h264: 2.5, hevc: 4, vp9: 4, av1: 5, other: 5 } as Record<Codec, number>,
  /** every SAMPLE_STEP a sample is scaled to the preview box and converted */
  sampleMsPerFrameMB: 1,
  margin: 1.2,
};

/**
 * Video memory by the platform's measure (heap + external), measured on the corpus of
 * scripts/hostile-corpus.ts: the core starts at 32 MB of wasm memory and grows by about 16 MB of
 * buffers plus whole frames at the coded size: the decoded picture buffer (the SPS's
 * max_dec_frame_buffering / sps_max_dec_pic_buffering, 8 slots for VP9) plus two when every
 * reference frame is decoded, three when only key frames are. Besides the core: the isolate
 * (24 MB), the input, the WebP encoder (16 MB).
 */
export const VIDEO_MEMORY = {
  isolateBase: 24 * MB,
  encoder: 16 * MB,
  coreBase: 48 * MB,
  /**
   * The reference-frame pass past a black key frame (planReferences) at 4K: the core itself is as
   * modelled (coreBase + picture buffer + 2 frames: 119 MB for 4K H.264 with 4 slots; 115 MB
   * measured), but the isolate peaked this much higher than the other terms say (measured on Deno
   * 2.1.4 in a fresh isolate, docs/rendering.md "4K whose only keyframe is black").
   */
  referencesExtra: 24 * MB,
  /**
   * Each larger size of the poster (PREVIEW_SIZES past the first), per pixel of its box: the
   * samples in its box in the core's file system, the chosen frame's copy, its scaling and WebP
   * encode. Measured on Deno 2.1.4 with a 1024 size: 4K keyframe poster 140 → 159 MB, 1080p
   * poster 98 → 106 MB.
   */
  perLargerBoxPixel: 18,
  /** what a poster may take the isolate to, by this estimate */
  budget: 208 * MB,
};

/**
 * One planned decode of a poster (or a clip): how, what it will hold, how far ffmpeg may read.
 * Modes: 'all', every reference frame with a sample every sample step; 'keyframes', key frames
 * only; 'references', every reference frame and each one a sample (the pass after a key-frame
 * pass that found no picture, planReferences).
 */
export type VideoPlan = {
  mode: 'all' | 'keyframes' | 'references';
  /** The size the decoder allocates (bitstream), or the container's claim when unreadable. */
  size: VideoSize | null;
  stream: StreamInfo | null;
  /** What the container says, when it disagrees with the bitstream: for messages. */
  claimNote: string;
  /** Estimated wasm memory of the core (bytes) and of the whole isolate. */
  coreBytes: number;
  memoryBytes: number;
  /** ffmpeg reads the media data only below this offset (and the headers): null, all of it. */
  cut: number | null;
  /** The container's byte ranges besides the media data (readable whatever the cut). */
  headers: [number, number][];
  /** Estimated CPU (ms) of the planned decode, core included. */
  cpuMs: number;
  /** Seconds of video the cut reaches, and the key frames it holds. */
  seconds: number;
  keyframes: number;
  /** This isolate's room stopped the plan short of what a fresh isolate would decode. */
  limitedByRoom: boolean;
  /**
   * Mode 'keyframes': the pass to run when no key frame decoded shows a picture (the same core,
   * right after), or why it cannot run; null when there is none (no frame list to plan it by).
   */
  references?: ReferencePass | null;
};

/** The reference-frame pass after a key-frame pass (planReferences): its plan, or its refusal. */
export type ReferencePass = { plan: VideoPlan } | { refused: PreviewError };

/**
 * A render that does not fit the CPU this isolate has left but fits a fresh isolate's: the job is
 * handed back (generate.ts) rather than failed for a reason that is not the file's. If it cannot be
 * handed back, it fails as what it is: OVER_CPU_BUDGET.
 */
export class FreshIsolateNeeded extends PreviewError {
  constructor(message: string) {
    super('OVER_CPU_BUDGET', message);
  }
}

const frameMB = (s: StreamInfo) => frameBytes(s) / MB;

/**
 * A render estimated at `peakBytes` in a fresh isolate, in this one: with what earlier jobs left
 * (`carried`, isolate.ts carriedBytes; `reused`, the part of it a kept decoder instance the render
 * reuses) it must still fit `budget`, else the job goes to a fresh isolate (FreshIsolateNeeded).
 */
export function checkCarried(
  peakBytes: number,
  carried: number,
  reused: number,
  budget: number,
  what: string,
): void {
  const total = peakBytes + Math.max(0, carried - reused);
  if (carried > 0 && total > budget) {
    throw new FreshIsolateNeeded(
      `Over the memory budget: ${what} needs about ${
        mb(peakBytes)
      } MB, and this isolate still holds ${mb(carried)} MB from earlier jobs (budget ${
        mb(budget)
      } MB)`,
    );
  }
}

/**
 * A render's plan with its larger sizes (PREVIEW_SIZES past the first) when they fit this isolate,
 * else with the first size alone: the larger sizes are optional, so a row is never refused or
 * handed back for their sake. `plan` throws PreviewError (the budget's codes) when a plan does
 * not fit; it runs before anything is decoded.
 */
export function withSizesIfTheyFit<T>(
  sides: readonly number[],
  plan: (sides: readonly number[]) => T,
): { plan: T; sides: readonly number[] } {
  if (sides.length === 0) return { plan: plan(sides), sides };
  try {
    return { plan: plan(sides), sides };
  } catch (err) {
    if (
      !(err instanceof PreviewError) ||
      (err.code !== 'OVER_CPU_BUDGET' && err.code !== 'OVER_MEMORY_BUDGET')
    ) throw err;
    return { plan: plan([]), sides: [] };
  }
}

/** The container's claim beside the bitstream's size, when they disagree. */
function claimNote(claimed: VideoSize | null, stream: StreamInfo | null): string {
  if (!stream) return '';
  if (!claimed) return ' (the container does not say its size)';
  const off = (a: number, b: number) => Math.abs(a - b) > 16;
  return off(claimed.width, stream.width) || off(claimed.height, stream.height)
    ? ` (the container says ${claimed.width}x${claimed.height})`
    : '';
}

/**
 * The poster's decode, planned before ffmpeg runs, from what the decoder will really hold: the
 * bitstream's size (never the container's), its chroma format, bit depth and reference frames.
 * - over the pixel cap: TOO_MANY_PIXELS; over 4096×2160, or over the memory budget even with key
 *   frames only: OVER_MEMORY_BUDGET (the message names the container's claim when it lies);
 * - every reference frame is decoded up to 2560×1440 while the picture buffer fits, else only
 *   key frames;
 * - ffmpeg may read the media only up to `cut`: as many frames as the CPU this isolate has left
 *   allows (MAX_WINDOW / the key-frame window at most). If not even the first key frame fits a
 *   fresh isolate: OVER_CPU_BUDGET; if it fits a fresh one but not this one: FreshIsolateNeeded.
 */
export function planVideo(o: {
  track: VideoTrack | null;
  stream: StreamInfo | null;
  inputBytes: number;
  maxPixels: number;
  cpu: CpuRoom;
  window: { all: number; keyframes: number; maxKeyframes: number; sampleStep: number };
  /** The poster's larger sizes (long sides): their boxes' memory. */
  sides?: readonly number[];
}): VideoPlan {
  const { track, stream } = o;
  const note = claimNote(track?.claimed ?? null, stream);
  const size: VideoSize | null = stream
    ? { width: stream.width, height: stream.height }
    : track?.claimed ?? null;
  const larger = (o.sides ?? []).reduce(
    (bytes, side) => bytes + VIDEO_MEMORY.perLargerBoxPixel * side * side,
    0,
  );
  const base = VIDEO_MEMORY.isolateBase + o.inputBytes + VIDEO_MEMORY.encoder +
    VIDEO_MEMORY.coreBase + larger;
  if (size) {
    const pixels = size.width * size.height;
    if (pixels > o.maxPixels) {
      throw new PreviewError(
        'TOO_MANY_PIXELS',
        `Too many pixels: ${size.width}x${size.height} video${note} (${pixels} > ${o.maxPixels})`,
      );
    }
    if (pixels > VIDEO_MAX_KEYFRAME_PIXELS) {
      throw new PreviewError(
        'OVER_MEMORY_BUDGET',
        `Over the memory budget: a ${size.width}x${size.height} video${note} needs more memory and CPU to decode than an edge isolate has (up to 4096x2160)`,
      );
    }
  }
  // a stream we cannot read (a codec not parsed here, or no readable track): planned as the
  // container says, else as 1080p, 4:2:0, 8-bit; the decoder's memory is then held by the guard
  // while it runs (ffmpeg.ts) and its frames by their decoded size (video.ts)
  const s: StreamInfo = stream ?? {
    codec: track?.codec ?? 'other',
    width: size?.width ?? 1920,
    height: size?.height ?? 1080,
    codedWidth: size?.width ?? 1920,
    codedHeight: size?.height ?? 1080,
    chroma: 1,
    bitDepth: 8,
    dpb: 4,
    reorder: 2,
  };
  const frame = frameBytes(s);
  const memory = (frames: number) => base + frames * frame;
  let mode: VideoPlan['mode'] =
    s.width * s.height <= VIDEO_MAX_DECODE_PIXELS && memory(s.dpb + 2) <= VIDEO_MEMORY.budget
      ? 'all'
      : 'keyframes';
  const frames = mode === 'all' ? s.dpb + 2 : 3;
  if (memory(frames) > VIDEO_MEMORY.budget && (stream || size)) {
    throw new PreviewError(
      'OVER_MEMORY_BUDGET',
      `Over the memory budget: decoding this ${s.width}x${s.height} ${
        streamKind(s)
      } video${note} needs about ${mb(memory(frames))} MB with its ${
        o.inputBytes >> 20
      } MB file (budget ${mb(VIDEO_MEMORY.budget)} MB)`,
    );
  }
  const fixed = (o.cpu.coreCold ? VIDEO_CPU.coreColdMs : 0) +
    (o.cpu.coreInstance ? VIDEO_CPU.coreInstanceMs : 0) + VIDEO_CPU.execMs;
  // a fresh isolate compiles the core: what is refused for good is refused by that, whatever
  // this isolate has already loaded
  const freshFixed = VIDEO_CPU.coreColdMs + VIDEO_CPU.coreInstanceMs + VIDEO_CPU.execMs;
  const fresh = cutFor(track, s, mode, o.cpu.freshMs - freshFixed, o.window);
  const here = cutFor(track, s, mode, Math.min(o.cpu.roomMs, o.cpu.freshMs) - fixed, o.window);
  const what = `this ${s.width}x${s.height} ${streamKind(s)} video${note}`;
  if (fresh.units === 0) {
    throw new PreviewError(
      'OVER_CPU_BUDGET',
      `Over the CPU budget: decoding the first key frame of ${what} (${
        (fresh.firstKeyBytes / MB).toFixed(1)
      } MB) takes about ${
        Math.round(freshFixed + fresh.firstKeyMs)
      } ms of CPU; an edge isolate has ${o.cpu.freshMs} ms for a render`,
    );
  }
  if (here.units === 0) {
    throw new FreshIsolateNeeded(
      `Over the CPU budget: ${what} needs about ${
        Math.round(fixed + fresh.firstKeyMs)
      } ms of CPU and this isolate has ${o.cpu.roomMs} ms left`,
    );
  }
  mode = here.mode;
  return {
    mode,
    size,
    stream,
    claimNote: note,
    coreBytes: VIDEO_MEMORY.coreBase + frames * frame,
    memoryBytes: memory(frames),
    cut: here.cut,
    headers: track?.headers ?? [],
    cpuMs: Math.round(fixed + here.ms),
    seconds: here.seconds,
    keyframes: here.keyframes,
    limitedByRoom: here.cut !== null && (fresh.cut === null || here.cut < fresh.cut),
    ...(mode === 'keyframes'
      ? {
        references: planReferences(o, s, size, note, {
          here: fixed + here.ms,
          fresh: freshFixed + fresh.ms,
        }),
      }
      : {}),
  };
}

/**
 * The pass after a key-frame pass that found no picture (every key frame in its window black: a
 * 4K fade-in from black whose only key frame is the first, as x264 writes without scene cuts), in
 * the same core, right after it: every reference frame from the start (`-skip_frame noref
 * -skip_loop_filter all`), each one a sample, the first with content wins (MAX_WINDOW at most).
 * Allowed up to 4096×2160 (the key-frame limit), planned with the core's real memory: the picture
 * buffer plus two frames at the coded size and what the isolate was measured to hold beyond the
 * model (VIDEO_MEMORY.referencesExtra), so with the budget it runs for 4K sources up to about 25 MB.
 * Its CPU is what the key-frame pass leaves (`spent`: that pass's estimate here and in a fresh
 * isolate), the core already loaded. Refused: over the memory budget (OVER_MEMORY_BUDGET), no frame
 * past the first key frame within a fresh isolate's CPU (OVER_CPU_BUDGET), past it in a fresh
 * isolate only (FreshIsolateNeeded). Null without a frame list (nothing to plan the cut by).
 */
function planReferences(
  o: Parameters<typeof planVideo>[0],
  s: StreamInfo,
  size: VideoSize | null,
  note: string,
  spent: { here: number; fresh: number },
): ReferencePass | null {
  const samples = o.track?.samples;
  if (!samples?.length || !isMonotonic(samples)) return null;
  const frames = s.dpb + 2;
  const coreBytes = VIDEO_MEMORY.coreBase + frames * frameBytes(s);
  const memoryBytes = VIDEO_MEMORY.isolateBase + o.inputBytes + VIDEO_MEMORY.encoder + coreBytes +
    VIDEO_MEMORY.referencesExtra;
  const what = `no keyframe of this ${s.width}x${s.height} ${
    streamKind(s)
  } video${note} shows a picture, and decoding its reference frames to find one`;
  if (memoryBytes > VIDEO_MEMORY.budget) {
    return {
      refused: new PreviewError(
        'OVER_MEMORY_BUDGET',
        `Over the memory budget: ${what} needs about ${mb(memoryBytes)} MB with its ${
          mb(o.inputBytes)
        } MB file (budget ${mb(VIDEO_MEMORY.budget)} MB)`,
      ),
    };
  }
  const fixed = VIDEO_CPU.execMs;
  const fresh = cutFor(o.track, s, 'references', o.cpu.freshMs - spent.fresh - fixed, o.window);
  const here = cutFor(
    o.track,
    s,
    'references',
    Math.min(o.cpu.roomMs, o.cpu.freshMs) - spent.here - fixed,
    o.window,
  );
  // the first frame is the black key frame: a pass that decodes nothing past it finds nothing
  if (fresh.units < 2) {
    return {
      refused: new PreviewError(
        'OVER_CPU_BUDGET',
        `Over the CPU budget: ${what} takes more CPU than an edge isolate has left after its keyframes (${
          Math.max(0, Math.round(o.cpu.freshMs - spent.fresh))
        } ms)`,
      ),
    };
  }
  if (here.units < 2) {
    return {
      refused: new FreshIsolateNeeded(
        `Over the CPU budget: ${what} needs more CPU than this isolate has left (${
          Math.max(0, Math.round(o.cpu.roomMs - spent.here))
        } ms after its keyframes)`,
      ),
    };
  }
  return {
    plan: {
      mode: 'references',
      size,
      stream: o.stream,
      claimNote: note,
      coreBytes,
      memoryBytes,
      cut: here.cut,
      headers: o.track?.headers ?? [],
      cpuMs: Math.round(fixed + here.ms),
      seconds: here.seconds,
      keyframes: here.keyframes,
      limitedByRoom: here.cut !== null && (fresh.cut === null || here.cut < fresh.cut),
    },
  };
}

function streamKind(s: StreamInfo): string {
  const chroma = ['4:0:0', '4:2:0', '4:2:2', '4:4:4'][s.chroma] ?? '';
  const codec = { h264: 'H.264 ', hevc: 'HEVC ', vp9: 'VP9 ', av1: 'AV1 ', other: '' }[s.codec];
  return `${codec}${chroma} ${s.bitDepth}-bit`;
}

type Cut = {
  mode: VideoPlan['mode'];
  /** decodable units that fit (frames, or key frames): 0 when not even the first does */
  units: number;
  cut: number | null;
  ms: number;
  seconds: number;
  keyframes: number;
  firstKeyMs: number;
  firstKeyBytes: number;
};

/**
 * How far ffmpeg may read so that the frames it decodes fit `budgetMs`: frames in decode order,
 * each costed by the model (VIDEO_CPU), up to the window. Without a frame list, by bytes alone
 * (every byte a decoded one, a frame every 16 KB).
 */
function cutFor(
  track: VideoTrack | null,
  s: StreamInfo,
  mode: VideoPlan['mode'],
  budgetMs: number,
  window: { all: number; keyframes: number; maxKeyframes: number; sampleStep: number },
): Cut {
  const c = VIDEO_CPU;
  const fmb = frameMB(s);
  const keyMs = (bytes: number) =>
    c.margin * (fmb * c.keyMsPerFrameMB[s.codec] + (bytes / MB) * c.bitsMsPerMB);
  const samples = track?.samples;
  if (!samples || !isMonotonic(samples)) {
    // no frame list: bytes alone, from the start of the file (headers first)
    const perMB = c.margin * (c.bitsMsPerMB + (fmb * c.interMsPerFrameMB[s.codec] * MB) / 16384);
    const first = keyMs(0);
    const bytes = Math.max(0, Math.floor(((budgetMs - first) / perMB) * MB));
    const lead =
      track?.headers.reduce((end, [from, to]) => (from <= end ? Math.max(end, to) : end), 0) ?? 0;
    return {
      mode,
      units: budgetMs >= first ? 1 : 0,
      cut: lead + bytes,
      ms: budgetMs,
      seconds: NaN,
      keyframes: NaN,
      firstKeyMs: first,
      firstKeyBytes: 0,
    };
  }
  const firstKey = samples.find((x) => x.key) ?? samples[0];
  const out: Cut = {
    mode,
    units: 0,
    cut: null,
    ms: 0,
    seconds: 0,
    keyframes: 0,
    firstKeyMs: keyMs(firstKey.size),
    firstKeyBytes: firstKey.size,
  };
  let ms = 0;
  let skipped = 0;
  let nextSample = 0;
  // key frames only: nothing after the last one planned is needed (its output is flushed at the
  // end of the input); every frame: the next one's start
  let lastEnd = 0;
  const stop = (at: number) => ({ ...out, cut: mode === 'keyframes' ? lastEnd : at });
  for (let i = 0; i < samples.length; i++) {
    const x = samples[i];
    const inWindow = x.time < (mode === 'keyframes' ? window.keyframes : window.all);
    if (!inWindow) return stop(x.offset);
    let cost: number;
    if (mode === 'keyframes') {
      if (!x.key) {
        skipped += c.margin * ((x.size / MB) * c.skipMsPerMB + fmb * c.skipMsPerFrameMB[s.codec]);
        continue;
      }
      if (out.keyframes >= window.maxKeyframes) return stop(x.offset);
      cost = keyMs(x.size) + skipped;
    } else if (x.reference === false) {
      cost = c.margin * ((x.size / MB) * c.skipMsPerMB + fmb * c.skipMsPerFrameMB[s.codec]);
    } else {
      cost = x.key ? keyMs(x.size) : c.margin *
        (fmb * c.interMsPerFrameMB[s.codec] + (x.size / MB) * c.bitsMsPerMB);
      // 'references': every decoded frame is a sample
      if (mode === 'references' || x.time >= nextSample) {
        cost += c.margin * fmb * c.sampleMsPerFrameMB;
        nextSample = x.time + window.sampleStep;
      }
    }
    if (ms + cost > budgetMs) return stop(x.offset);
    ms += cost;
    skipped = 0;
    lastEnd = x.offset + x.size;
    out.ms = ms;
    out.units++;
    out.seconds = x.time;
    if (x.key) out.keyframes++;
  }
  return mode === 'keyframes' ? { ...out, cut: lastEnd } : { ...out, cut: null };
}

const isMonotonic = (samples: Sample[]) =>
  samples.every((x, i) => i === 0 || x.offset >= samples[i - 1].offset + samples[i - 1].size);
