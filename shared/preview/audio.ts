/**
 * An audio generation's waveform tile (issue 26): KIE's Suno music (MP3, 2–8 minutes), and M4A,
 * ADTS AAC, WAV, Ogg (Vorbis, Opus) and FLAC, decoded by the same ffmpeg.wasm core and instance
 * as posters (ffmpeg.ts: one instance per isolate, its heap guarded), drawn as rounded bars on the
 * library's card colour, and encoded like every preview (encode.ts: WebP + thumbhash).
 *
 * ffmpeg decodes to mono 16-bit PCM at 8 kHz, picking every n-th sample (`aresample` with a
 * one-tap filter: no low-pass, so the RMS of the picked samples is the track's, high frequencies
 * included, and the resampler costs nothing next to the decoder; its default 32-tap filter added
 * 45 % to the decode). Its output never reaches the file system: the output file's writes are read
 * as they come (2 ms blocks' peaks and sums of squares), so a track of any length holds a few
 * hundred KB. Each bar shows its peak (dim; AUDIO_LEVELS) and its RMS × √2 (light: the peak of a
 * sine of that power), both against the loudest bar's peak.
 *
 * What it costs, measured on Deno 2.1.4 (the edge runtime's; bench/RESULTS.md): the MP3 decoder
 * is nearly all of it, about 2.6–2.8 ms of JS-thread CPU per second of stereo 44.1 kHz (a 4-minute
 * track 0.6–0.76 s warm; 1.0–1.3 s whole in a fresh isolate, which also compiles the core and
 * decodes before V8 has optimised it). So before ffmpeg runs, the decode is planned from
 * the file's own headers (the MPEG frames it lists, or the container's duration) against the CPU
 * this isolate has left (isolate.ts cpuRoom) and, for MPEG audio, AUDIO_CPU.renderMs: the whole
 * track when it fits, else runs of frames spread over every bar (AUDIO_RUNS; a fresh isolate
 * decodes 71 % of a 4-minute 192 kbit/s MP3 in 0.8–1.0 s, its bars within 2–4 % of the whole
 * decode's on average). Another format that does not fit is handed to a fresh isolate
 * (FreshIsolateNeeded) or, if not even a fresh one has the CPU, refused OVER_CPU_BUDGET. While
 * ffmpeg runs, what it has read and decoded is costed by the same model, and its input ends once
 * the plan's CPU is spent: a file whose headers understate its length (or junk that decodes to
 * nothing) is stopped there, and handed to a fresh isolate or refused.
 */
import { PreviewError, toPreviewError } from '../errors.ts';
import { checkCarried, FreshIsolateNeeded, VIDEO_CPU, VIDEO_MEMORY } from './budget.ts';
import { isoBmffTracks } from './container.ts';
import { finishPreview, type Rendered, renderSide } from './encode.ts';
import {
  coreHeldBytes,
  coreState,
  execFfmpeg,
  type FFmpegCore,
  withCore,
  WORK_DIR,
} from './ffmpeg.ts';
import { carriedBytes, cpuRoom } from './isolate.ts';
import { checkBytes, type RenderOptions, resolveOptions } from './photo.ts';
import { type AudioFormat, id3v2End, mpegAudioFrame, sniff } from './sniff.ts';

/** The waveform tile and the track's length (ms). */
export type Waveform = Rendered & { durationMs: number };

/** maxSide (the tile's long side; 16:9), sides (its larger sizes), quality (WebP), maxBytes (the byte cap). */
export type WaveformOptions = Pick<RenderOptions, 'maxSide' | 'quality' | 'maxBytes' | 'sides'>;

/** The tile's look: the library page's colours (example/library.html). */
export const WAVEFORM_STYLE = {
  /** width : height */
  aspect: 16 / 9,
  /** --card */
  background: [0x1b, 0x1e, 0x26],
  /** peaks: --muted at 55 % over the card */
  peak: [0x59, 0x5e, 0x6d],
  /** RMS: --fg */
  rms: [0xe8, 0xea, 0xf0],
  /** a bar's width and the gap after it, per px of tile width */
  barPerPx: 1 / 128,
  gapPerBar: 0.5,
  /** free margins, as a share of the tile's width and height */
  marginX: 0.045,
  marginY: 0.14,
  /**
   * Heights are against the loudest peak, or this level if the loudest peak is quieter
   * (−30 dBFS): a near-silent track stays near flat instead of being blown up.
   */
  floor: 10 ** (-30 / 20),
};

/** PCM rate asked of ffmpeg (mono, s16). */
export const PCM_RATE = 8000;

/**
 * A bar's peak is a high quantile of the peaks of its 2 ms blocks (`blockSamples` at PCM_RATE),
 * not their maximum: the maximum is a rare event (a beat's attack meeting the other voices in
 * phase) that decoding part of a bar (AUDIO_RUNS) misses.
 */
export const AUDIO_LEVELS = { peakQuantile: 0.95, blockSamples: 16 };

/**
 * JS-thread CPU of the decode (ms per second of audio at 44.1 kHz, mono / stereo: the decoder,
 * the resampler's pick and the downmix), measured on Deno 2.1.4 with the warm core on 4-minute
 * files (MP3 128–320 kbps 0.60–0.68 s stereo, 0.41 s mono; AAC 0.45–0.49 s; Vorbis 0.52 s; Opus
 * 0.86 s; FLAC 0.67 s; WAV 0.19 s for 42 MB). Besides: per MB read, `readMsPerMB` (WAV's whole
 * cost), and `junkMsPerMB` for bytes between MPEG frames, which ffmpeg reads through to
 * resynchronise (50 MB of random bytes after an MP3's first second took 0.65 s, and listing its
 * frames 0.15–0.19 s more). A run in a fresh isolate adds the core's compile (budget.ts VIDEO_CPU:
 * coreColdMs, coreInstanceMs, execMs); `drawMs`: the tile's drawing, WebP encoding and thumbhash.
 * All multiplied by `margin`, as the video plan is.
 */
export const AUDIO_CPU = {
  msPerSecond: {
    mpeg: [1.8, 2.8],
    aac: [1.4, 2.0],
    vorbis: [1.6, 2.3],
    opus: [2.4, 3.6],
    flac: [1.6, 2.8],
    pcm: [0, 0],
    /** a codec named nowhere here (ALAC, AC-3, …): as Opus, the costliest measured */
    other: [2.4, 3.6],
  } as Record<AudioCodec, [number, number]>,
  readMsPerMB: 5,
  junkMsPerMB: 20,
  drawMs: 40,
  /** the WebP encoder's compile and first use, counted when the core is cold too (a fresh isolate) */
  encoderColdMs: 100,
  margin: 1.2,
  /**
   * The most a waveform of MPEG audio plans to spend (ms, by this model, core included), whatever
   * the isolate has left: a longer track is decoded in runs (AUDIO_RUNS). The model measured
   * 1.25–1.4× the JS thread's CPU, so this holds a render near 1.1 s (a 4-minute 192 kbit/s MP3
   * decoded whole in a fresh isolate took 0.97–1.28 s, 0.7–0.76 s warm).
   */
  renderMs: 1400,
};

/**
 * Runs of frames when the whole track does not fit: spread evenly over each bar's span, as many
 * frames as the CPU allows (at least `minBody` a bar), each after `lead` frames whose output is
 * dropped (Layer III's bit reservoir reaches up to 511 bytes back, two frames at 128 kbit/s; the
 * filter bank overlaps one). Up to `maxPerBar` runs a bar, none shorter than `runFrames` (about
 * half a second) where the CPU allows: runs of 8 frames (0.2 s) spaced about a beat apart kept
 * missing the beats' attacks (a bar's peak off by up to 45 % of the tile's height), and one run in
 * the middle of a bar missed a crescendo at its edge. A plan that would keep under `minShare` of
 * what a fresh isolate would is handed to a fresh isolate instead.
 */
export const AUDIO_RUNS = { lead: 2, minBody: 4, minShare: 0.5, runFrames: 20, maxPerBar: 4 };

const MB = 1048576;

/** The MPEG audio or ADTS frames of a file (without a Xing/Info/VBRI frame). */
type Frames = {
  offsets: Uint32Array;
  lengths: Uint32Array;
  count: number;
  /** Samples per channel per frame, the stream's rate and channels (the first frame's). */
  samples: number;
  sampleRate: number;
  channels: number;
  /** The encoder's delay and padding (LAME tag), which ffmpeg drops. */
  delay: number;
  padding: number;
};

/** What decodes the track, for its cost (AUDIO_CPU). */
export type AudioCodec = 'mpeg' | 'aac' | 'vorbis' | 'opus' | 'flac' | 'pcm' | 'other';

export type AudioInput = {
  format: AudioFormat;
  codec: AudioCodec;
  sampleRate: number | null;
  channels: number | null;
  /** The track's length (s) from its headers; null when they do not say. */
  seconds: number | null;
  frames: Frames | null;
};

/**
 * An audio file's format and what its headers say (length, rate, channels; MPEG audio and ADTS:
 * its frames), after the byte cap. Anything else is UNSUPPORTED_FORMAT; an MP4 or MOV is taken
 * when its only tracks are sound.
 */
export function readAudio(bytes: Uint8Array, maxBytes: number): AudioInput {
  checkBytes(bytes, maxBytes);
  const s = sniff(bytes);
  let format: AudioFormat;
  if (s.kind === 'audio') format = s.format as AudioFormat;
  else if ((s.format === 'mp4' || s.format === 'mov') && isoTracks(bytes).soundOnly) {
    format = 'm4a';
  } else {
    throw new PreviewError(
      'UNSUPPORTED_FORMAT',
      `Unsupported format: ${s.format} is ${
        s.kind === 'image' ? 'an image' : 'a video'
      }, not audio`,
    );
  }
  const codec: AudioCodec = format === 'mp3'
    ? 'mpeg'
    : format === 'aac'
    ? 'aac'
    : format === 'wav'
    ? 'pcm'
    : format === 'flac'
    ? 'flac'
    : 'other';
  const none = { codec, sampleRate: null, channels: null, seconds: null, frames: null };
  try {
    switch (format) {
      case 'mp3':
      case 'aac': {
        const frames = scanFrames(bytes, format === 'aac');
        if (!frames || frames.count === 0) return { format, ...none };
        const samples = Math.max(0, frames.count * frames.samples - frames.delay - frames.padding);
        return {
          format,
          codec,
          sampleRate: frames.sampleRate,
          channels: frames.channels || null,
          seconds: samples / frames.sampleRate,
          frames,
        };
      }
      case 'wav':
        return { format, ...none, ...wavInfo(bytes) };
      case 'ogg':
        return { format, ...none, ...oggInfo(bytes) };
      case 'flac':
        return { format, ...none, ...flacInfo(bytes) };
      case 'm4a': {
        const t = isoTracks(bytes);
        return { format, ...none, ...(t.sound ?? {}) };
      }
    }
  } catch {
    // headers we cannot read say nothing: the decode is held by the plan's CPU alone
  }
  return { format, ...none };
}

/** One planned decode: the whole file, or runs of frames (source frame indexes). */
export type AudioPlan = {
  mode: 'all' | 'runs';
  runs: { start: number; lead: number; body: number }[];
  /** Frames decoded and kept, over the track's frames (1 for 'all'). */
  share: number;
  /** Estimated CPU (ms) of the render, core and tile included. */
  cpuMs: number;
  /**
   * What the decode may spend (ms, by the model: `msPerSecond` per second decoded, `msPerMB` per
   * MB read) before its input ends; `fresh`: a fresh isolate would have no more.
   */
  budgetMs: number;
  msPerSecond: number;
  msPerMB: number;
  /** Bytes per second of the track's frames (MPEG audio): bytes read beyond them cost msPerMB. */
  bytesPerSecond: number;
  fresh: boolean;
  /** Estimated peak of the isolate (bytes, the platform's measure), and the core's part. */
  memoryBytes: number;
  coreBytes: number;
  /** The bytes ffmpeg reads (runs: the frames concatenated). */
  inputBytes: number;
};

/** ms of the decode per second of this input (margin included). */
function msPerSecond(a: AudioInput): number {
  const [mono, stereo] = AUDIO_CPU.msPerSecond[a.codec];
  const ch = a.channels ?? 2;
  const perChannel = ch <= 1 ? mono : stereo * (ch / 2);
  // Opus decodes at 48 kHz whatever it says; the others in proportion to their rate
  const rate = a.codec === 'opus' ? 48000 : a.sampleRate ?? 44100;
  return AUDIO_CPU.margin * perChannel * (Math.max(8000, Math.min(rate, 192000)) / 44100);
}

/**
 * The decode, planned for what this isolate has left (see the module's comment). `bars`: the
 * tile's bar count (runs: at least one per bar); `sides`: the tile's larger sizes (their cost).
 */
export function planAudio(
  a: AudioInput,
  inputBytes: number,
  bars: number,
  sides: readonly number[] = [],
): AudioPlan {
  const core = coreState();
  const room = cpuRoom(inputBytes, sides);
  const c = VIDEO_CPU;
  const draw = AUDIO_CPU.margin * AUDIO_CPU.drawMs;
  const encoder = AUDIO_CPU.margin * AUDIO_CPU.encoderColdMs;
  const fixed = (core.cold ? c.coreColdMs + encoder : 0) + (core.instance ? c.coreInstanceMs : 0) +
    c.execMs + draw;
  const freshFixed = c.coreColdMs + encoder + c.coreInstanceMs + c.execMs + draw;
  const perSecond = msPerSecond(a);
  // a length the headers do not give: the whole room, and the guard stops a longer one
  const seconds = a.seconds ?? 0;
  // MPEG frames are costed by their seconds, the bytes between them as junk; other formats' bytes
  // at the read rate
  const f = a.frames;
  const framed = f ? sumLengths(f) : 0;
  const perMB = AUDIO_CPU.margin * (f ? AUDIO_CPU.junkMsPerMB : AUDIO_CPU.readMsPerMB);
  const allMs = perSecond * seconds + perMB * ((inputBytes - framed) / MB);
  // MPEG audio can be decoded in runs: held to renderMs; another format takes what the isolate has
  const cap = f ? AUDIO_CPU.renderMs : Infinity;
  const hereMs = Math.min(room.roomMs, room.freshMs, cap) - fixed;
  const freshMs = Math.min(room.freshMs, cap) - freshFixed;
  const guard = {
    budgetMs: Math.round(hereMs),
    msPerSecond: perSecond,
    msPerMB: perMB,
    bytesPerSecond: f && a.seconds ? framed / a.seconds : 0,
    fresh: hereMs >= freshMs,
  };
  const memory = (extra: number) => ({
    memoryBytes: VIDEO_MEMORY.isolateBase + inputBytes + extra + VIDEO_MEMORY.encoder +
      VIDEO_MEMORY.coreBase,
    coreBytes: VIDEO_MEMORY.coreBase,
  });
  const what = `this ${
    a.seconds === null ? '' : `${(seconds / 60).toFixed(1)}-minute `
  }${a.format.toUpperCase()} track`;
  if (allMs <= hereMs) {
    return {
      mode: 'all',
      runs: [],
      share: 1,
      cpuMs: Math.round(fixed + allMs),
      ...guard,
      budgetMs: guardBudget(hereMs, allMs),
      ...memory(0),
      inputBytes,
    };
  }
  if (!f) {
    if (allMs <= freshMs) {
      throw new FreshIsolateNeeded(
        `Over the CPU budget: decoding ${what} takes about ${
          Math.round(fixed + allMs)
        } ms of CPU and this isolate has ${room.roomMs} ms left`,
      );
    }
    throw new PreviewError(
      'OVER_CPU_BUDGET',
      `Over the CPU budget: decoding ${what} takes about ${
        Math.round(freshFixed + allMs)
      } ms of CPU; an edge isolate has ${room.freshMs} ms for a render`,
    );
  }
  // runs spread over each bar's frames, as long as the CPU allows
  const frameMs = perSecond * (f.samples / f.sampleRate);
  const R = AUDIO_RUNS;
  /** frames a bar may decode, leads included */
  const perBar = (ms: number) => Math.floor(ms / frameMs / bars);
  const bodyFor = (ms: number) => perBar(ms) - R.lead;
  const fresh = f.count * frameMs <= freshMs ? Infinity : bodyFor(freshMs);
  if (fresh < R.minBody) {
    throw new PreviewError(
      'OVER_CPU_BUDGET',
      `Over the CPU budget: ${what} (${f.count} frames) takes more CPU than an edge isolate has (${room.freshMs} ms for a render) even when ${bars} runs of ${R.minBody} frames stand for it`,
    );
  }
  const frames = perBar(hereMs);
  const k = Math.max(1, Math.min(R.maxPerBar, Math.floor(frames / (R.runFrames + R.lead))));
  const body = Math.floor(frames / k) - R.lead;
  const share = Math.min(1, (body * k * bars) / f.count);
  if (body < R.minBody || share < R.minShare * Math.min(1, (fresh * bars) / f.count)) {
    throw new FreshIsolateNeeded(
      `Over the CPU budget: this isolate has ${room.roomMs} ms left, enough for ${
        Math.round(100 * Math.max(0, share))
      } % of ${what}`,
    );
  }
  const runs: AudioPlan['runs'] = [];
  let bytes = 0;
  let kept = 0;
  let end = 0; // the last run's end: runs never overlap
  for (let i = 0; i < bars * k; i++) {
    const from = (i * f.count) / (bars * k), to = ((i + 1) * f.count) / (bars * k);
    const n = Math.min(body, Math.floor(to - from));
    if (n <= 0) continue;
    const start = Math.max(end, Math.floor(from + (to - from - n) / 2));
    // frames right after the previous run need no lead: the decoder carries on from it
    const lead = Math.min(R.lead, start - end);
    if (start + n > f.count) break;
    runs.push({ start, lead, body: n });
    end = start + n;
    kept += n;
    const last = start + n - 1;
    bytes += f.offsets[last] + f.lengths[last] - f.offsets[start - lead];
  }
  const decoded = runs.reduce((n, r) => n + r.lead + r.body, 0);
  return {
    mode: 'runs',
    runs,
    share: kept / f.count,
    cpuMs: Math.round(fixed + decoded * frameMs),
    ...guard,
    budgetMs: guardBudget(hereMs, decoded * frameMs),
    // the runs are frames only: no junk to read through
    msPerMB: 0,
    bytesPerSecond: 0,
    ...memory(bytes),
    inputBytes: bytes,
  };
}

/**
 * What the guard lets a planned decode spend: the room, and never less than its own estimate and
 * a little (an honest file's decode ends at its estimate, give or take ffmpeg's reading ahead).
 */
function guardBudget(roomMs: number, estimateMs: number): number {
  return Math.round(Math.max(roomMs, 1.1 * estimateMs + 20));
}

function sumLengths(f: Frames): number {
  let n = 0;
  for (let i = 0; i < f.count; i++) n += f.lengths[i];
  return n;
}

/**
 * The tile's size and bar layout for a long side of `maxSide` px; `barCount`: that many bars
 * (a larger size of the same tile draws the first size's bars, at most as many as fit).
 */
export function waveformLayout(maxSide: number, barCount?: number) {
  const st = WAVEFORM_STYLE;
  const width = Math.max(16, Math.round(maxSide));
  const height = Math.max(9, Math.round(width / st.aspect));
  const barWidth = Math.max(1, Math.round(width * st.barPerPx));
  const gap = Math.max(1, Math.round(barWidth * st.gapPerBar));
  const pitch = barWidth + gap;
  const inner = width - 2 * Math.round(width * st.marginX);
  const fit = Math.max(1, Math.floor((inner + gap) / pitch));
  const bars = barCount === undefined ? fit : Math.max(1, Math.min(barCount, fit));
  const left = (width - (bars * pitch - gap)) / 2;
  const maxHeight = height - 2 * Math.round(height * st.marginY);
  return { width, height, barWidth, pitch, bars, left, maxHeight, minHeight: barWidth };
}

/** Peak (0..1) and RMS (0..1) of each bar. */
export type Levels = { peak: Float32Array; rms: Float32Array };

export async function renderWaveform(
  bytes: Uint8Array,
  options?: WaveformOptions,
): Promise<Waveform> {
  try {
    const o = resolveOptions(options);
    const { levels, durationMs } = await waveformLevels(bytes, o);
    // drawn once, in the largest size's box, with the first size's bars: each size scales it down
    const layout = waveformLayout(renderSide(o), levels.peak.length);
    const rgba = drawWaveform(levels, renderSide(o));
    const natural = { width: layout.width, height: layout.height };
    const tile = await finishPreview(rgba, layout.width, layout.height, o, natural);
    return { ...tile, durationMs };
  } catch (err) {
    throw toPreviewError(err);
  }
}

/**
 * The bars' levels of a track for a tile of `maxSide` (its bar count), its length, and how it was
 * read and planned: renderWaveform before drawing.
 */
export async function waveformLevels(
  bytes: Uint8Array,
  options?: WaveformOptions,
): Promise<{ levels: Levels; durationMs: number; input: AudioInput; plan: AudioPlan }> {
  try {
    const o = resolveOptions(options);
    const bars = waveformLayout(o.maxSide).bars;
    const input = readAudio(bytes, o.maxBytes);
    const plan = planAudio(input, bytes.length, bars, o.sides);
    const what = `this ${input.format.toUpperCase()} track`;
    if (plan.memoryBytes > VIDEO_MEMORY.budget) {
      throw new PreviewError(
        'OVER_MEMORY_BUDGET',
        `Over the memory budget: decoding ${what} of ${
          Math.round(bytes.length / MB)
        } MB takes the isolate to about ${Math.round(plan.memoryBytes / MB)} MB (budget ${
          Math.round(VIDEO_MEMORY.budget / MB)
        } MB)`,
      );
    }
    checkCarried(plan.memoryBytes, carriedBytes(), coreHeldBytes(), VIDEO_MEMORY.budget, what);
    const decoded = await withCore((core) => decode(core, bytes, input, plan, bars), {
      memory: { staticCap: VIDEO_MEMORY.budget - (plan.memoryBytes - plan.coreBytes), what },
    });
    return { ...decoded, input, plan };
  } catch (err) {
    throw toPreviewError(err);
  }
}

/**
 * Per-block peak and sum of squares of the PCM ffmpeg writes, read from its writes to the output
 * file (which stays empty). A block is `block` samples.
 */
class BlockStats {
  peak: Uint16Array;
  sumSq: Float64Array;
  samples = 0;
  private carry = -1;

  constructor(readonly block: number, expectedSamples: number) {
    const n = Math.min(1 << 18, Math.max(64, Math.ceil((expectedSamples * 1.1) / block) + 1));
    this.peak = new Uint16Array(n);
    this.sumSq = new Float64Array(n);
  }

  get blocks(): number {
    return Math.ceil(this.samples / this.block);
  }

  private grow(): void {
    const peak = new Uint16Array(this.peak.length * 2);
    peak.set(this.peak);
    const sumSq = new Float64Array(this.sumSq.length * 2);
    sumSq.set(this.sumSq);
    this.peak = peak;
    this.sumSq = sumSq;
  }

  private add(v: number): void {
    const k = Math.floor(this.samples / this.block);
    if (k >= this.peak.length) this.grow();
    const a = v < 0 ? -v : v;
    if (a > this.peak[k]) this.peak[k] = a;
    this.sumSq[k] += v * v;
    this.samples++;
  }

  /** Little-endian s16 bytes, split anywhere. */
  write(b: Uint8Array): void {
    let i = 0;
    if (this.carry >= 0 && b.length > 0) {
      this.add(((b[0] << 24) >> 16) | this.carry);
      this.carry = -1;
      i = 1;
    }
    for (; i + 1 < b.length; i += 2) this.add(((b[i + 1] << 24) >> 16) | b[i]);
    if (i < b.length) this.carry = b[i];
  }
}

type Decoded = { levels: Levels; durationMs: number };

/** ffmpeg's log lines that say why no audio came out, in our words (never the file's bytes). */
const FFMPEG_REASONS: [RegExp, string][] = [
  [/moov atom not found/i, 'the MP4 index (moov) is missing'],
  [/matches no streams|does not contain any stream|no audio stream/i, 'no audio stream'],
  [/Invalid data found/i, 'invalid data'],
  [/decoder .* not found|Decoding requested, but no decoder/i, 'no decoder for this codec'],
];

function decode(
  core: FFmpegCore,
  bytes: Uint8Array,
  a: AudioInput,
  plan: AudioPlan,
  bars: number,
): Decoded {
  const FS = core.FS;
  FS.mkdir(WORK_DIR);
  const input = `${WORK_DIR}/in.${a.format}`;
  const f = a.frames;
  const runs = plan.mode === 'runs' && f ? plan.runs : null;
  if (runs && f) {
    // the runs' frames, one after another (their leads first)
    const data = new Uint8Array(plan.inputBytes);
    let at = 0;
    for (const r of runs) {
      const from = f.offsets[r.start - r.lead];
      const last = r.start + r.body - 1;
      const to = f.offsets[last] + f.lengths[last];
      data.set(bytes.subarray(from, to), at);
      at += to - from;
    }
    FS.writeFile(input, data, { canOwn: true });
  } else {
    // canOwn: the file system keeps a view of the caller's bytes (ffmpeg only reads them)
    FS.writeFile(input, bytes, { canOwn: true });
  }
  // the PCM: read from ffmpeg's writes, never stored
  // (a length the headers do not give: as if a minute, the arrays grow as needed)
  const expected = (a.seconds || 60) * PCM_RATE * (runs ? plan.share : 1);
  // 2 ms blocks, fewer for a track so short a bar holds few of them, longer for a very long one
  const block = Math.max(
    Math.min(AUDIO_LEVELS.blockSamples, Math.floor(expected / bars / 8)),
    Math.ceil(expected / 500000),
    1,
  );
  const stats = new BlockStats(block, expected);
  // once what ffmpeg read and decoded costs the plan's CPU (by the model), the input reads as ended
  let read = 0;
  let over = false;
  const spent = () => {
    const seconds = stats.samples / PCM_RATE;
    return plan.msPerSecond * seconds +
      plan.msPerMB * (Math.max(0, read - seconds * plan.bytesPerSecond) / MB);
  };
  {
    const node = FS.lookupPath(input).node;
    const ops = node.stream_ops;
    node.stream_ops = {
      ...ops,
      read(stream: unknown, buffer: Uint8Array, offset: number, length: number, position: number) {
        if (over || spent() > plan.budgetMs) {
          over = true;
          return 0;
        }
        const n = ops.read(stream, buffer, offset, length, position);
        read += n;
        return n;
      },
    };
  }
  const output = `${WORK_DIR}/pcm.raw`;
  FS.writeFile(output, new Uint8Array(0));
  {
    const node = FS.lookupPath(output).node;
    node.stream_ops = {
      ...node.stream_ops,
      write(_stream: unknown, buffer: Int8Array, offset: number, length: number) {
        stats.write(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, length));
        return length;
      },
    };
  }
  const log: string[] = [];
  core.setLogger((m) => {
    if (log.length < 100) log.push(m.message);
  });
  let code: number;
  try {
    code = execFfmpeg(core, [
      '-nostats',
      '-loglevel',
      'error',
      '-y',
      '-i',
      input,
      '-map',
      '0:a:0',
      '-vn',
      '-sn',
      '-dn',
      '-af',
      `aresample=${PCM_RATE}:filter_size=1:phase_shift=0,aformat=sample_fmts=s16:channel_layouts=mono`,
      '-c:a',
      'pcm_s16le',
      '-f',
      's16le',
      output,
    ]);
  } finally {
    core.setLogger(() => {});
  }
  if (over) {
    const what = `Over the CPU budget: this ${a.format.toUpperCase()} file ${
      a.seconds === null
        ? 'is longer than it could decode'
        : `holds more than its headers say (${a.seconds.toFixed(1)} s)`
    }: ${(stats.samples / PCM_RATE).toFixed(1)} s decoded and ${
      (read / MB).toFixed(1)
    } MB read spent the ${plan.budgetMs} ms`;
    if (plan.fresh) throw new PreviewError('OVER_CPU_BUDGET', `${what} an edge isolate has for it`);
    throw new FreshIsolateNeeded(`${what} this isolate had left for it`);
  }
  if (stats.samples === 0) {
    const reason = [
      ...new Set(
        log.flatMap((l) => FFMPEG_REASONS.filter(([re]) => re.test(l)).map(([, why]) => why)),
      ),
    ].join('; ');
    throw new PreviewError(
      'DECODE_FAILED',
      `Decode failed: no audio decoded from this ${a.format.toUpperCase()} file (ffmpeg exit ${code}${
        reason ? `: ${reason}` : ''
      })`,
    );
  }
  const levels = runs && f ? runLevels(stats, runs, f.count, bars) : allLevels(stats, bars);
  const durationMs = runs && a.seconds !== null
    ? Math.round(a.seconds * 1000)
    : Math.round((stats.samples / PCM_RATE) * 1000);
  return { levels, durationMs };
}

/** Bars over the whole decoded track: block k at its share of the samples. */
function allLevels(s: BlockStats, bars: number): Levels {
  return aggregate(s, bars, (k) => ((k + 0.5) * s.block) / s.samples);
}

/**
 * Bars over runs of frames: block k's place in the decoded frames (the output is spread evenly over
 * them: every MPEG frame decodes to the same number of samples), dropped inside a run's lead, else
 * at its source frame's share of the track.
 */
function runLevels(s: BlockStats, runs: AudioPlan['runs'], frames: number, bars: number): Levels {
  const decoded = runs.reduce((n, r) => n + r.lead + r.body, 0);
  const firsts = new Float64Array(runs.length);
  let acc = 0;
  runs.forEach((r, i) => {
    firsts[i] = acc;
    acc += r.lead + r.body;
  });
  let i = 0;
  return aggregate(s, bars, (k) => {
    const d = (((k + 0.5) * s.block) / s.samples) * decoded;
    while (i + 1 < runs.length && firsts[i + 1] <= d) i++;
    while (i > 0 && firsts[i] > d) i--;
    const e = d - firsts[i] - runs[i].lead;
    return e < 0 ? null : (runs[i].start + e) / frames;
  });
}

/** Bins of the block peaks' histogram (s16 >> 5). */
const BINS = 1024;

/**
 * Peak (AUDIO_LEVELS.peakQuantile of the bar's block peaks) and RMS per bar; `at(k)`: block k's
 * place in the track (0..1), or null to drop it. A bar no block fell in takes its nearest
 * neighbour's.
 */
function aggregate(s: BlockStats, bars: number, at: (k: number) => number | null): Levels {
  const hist = new Uint32Array(bars * BINS);
  const sumSq = new Float64Array(bars);
  const count = new Float64Array(bars);
  const blocks = new Float64Array(bars);
  const n = s.blocks;
  for (let k = 0; k < n; k++) {
    const u = at(k);
    if (u === null) continue;
    const b = Math.min(bars - 1, Math.max(0, Math.floor(u * bars)));
    hist[b * BINS + (s.peak[k] >> 5)]++;
    blocks[b]++;
    sumSq[b] += s.sumSq[k];
    count[b] += Math.min(s.block, s.samples - k * s.block);
  }
  const peak = new Float32Array(bars);
  const rms = new Float32Array(bars);
  for (let b = 0; b < bars; b++) {
    if (!count[b]) continue;
    // the quantile of the bar's block peaks (its bin's middle; the lowest bin, under −60 dBFS, is 0)
    const want = Math.max(1, Math.ceil(AUDIO_LEVELS.peakQuantile * blocks[b]));
    let acc = 0, v = 0;
    for (; v < BINS - 1; v++) if ((acc += hist[b * BINS + v]) >= want) break;
    peak[b] = v === 0 ? 0 : (v + 0.5) / BINS;
    rms[b] = Math.min(peak[b], Math.sqrt(sumSq[b] / count[b]) / 32768);
  }
  for (let b = 0; b < bars; b++) {
    if (count[b]) continue;
    for (let d = 1; d < bars; d++) {
      const x = [b - d, b + d].find((x) => x >= 0 && x < bars && count[x]);
      if (x !== undefined) {
        peak[b] = peak[x];
        rms[b] = rms[x];
        break;
      }
    }
  }
  return { peak, rms };
}

/**
 * The tile: bars centred vertically, each a vertical capsule (round ends) drawn with coverage
 * anti-aliasing: the peak in the dim colour, RMS × √2 over it in the light one. Heights are against
 * the loudest peak (or WAVEFORM_STYLE.floor); a silent bar is a dot.
 */
export function drawWaveform(levels: Levels, maxSide: number): Uint8ClampedArray {
  const L = waveformLayout(maxSide, levels.peak.length);
  const st = WAVEFORM_STYLE;
  const { width, height } = L;
  const rgba = new Uint8ClampedArray(width * height * 4);
  const [br, bg, bb] = st.background;
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = br;
    rgba[i + 1] = bg;
    rgba[i + 2] = bb;
    rgba[i + 3] = 255;
  }
  let loudest = 0;
  for (let b = 0; b < L.bars && b < levels.peak.length; b++) {
    loudest = Math.max(loudest, levels.peak[b]);
  }
  const ref = Math.max(loudest, st.floor);
  const span = L.maxHeight - L.minHeight;
  const r = L.barWidth / 2;
  const cy = height / 2;
  const capsule = (cx: number, h: number, color: number[]) => {
    // a vertical capsule of width 2r and total height h (>= 2r) centred at (cx, cy)
    const half = Math.max(0, h / 2 - r);
    const x0 = Math.max(0, Math.floor(cx - r - 1)), x1 = Math.min(width - 1, Math.ceil(cx + r + 1));
    const y0 = Math.max(0, Math.floor(cy - half - r - 1));
    const y1 = Math.min(height - 1, Math.ceil(cy + half + r + 1));
    for (let y = y0; y <= y1; y++) {
      const dy = Math.max(0, Math.abs(y + 0.5 - cy) - half);
      for (let x = x0; x <= x1; x++) {
        const dx = Math.abs(x + 0.5 - cx);
        const cover = Math.min(1, Math.max(0, r + 0.5 - Math.sqrt(dx * dx + dy * dy)));
        if (cover <= 0) continue;
        const i = (y * width + x) * 4;
        rgba[i] += (color[0] - rgba[i]) * cover;
        rgba[i + 1] += (color[1] - rgba[i + 1]) * cover;
        rgba[i + 2] += (color[2] - rgba[i + 2]) * cover;
      }
    }
  };
  for (let b = 0; b < L.bars; b++) {
    const cx = L.left + b * L.pitch + r;
    const p = Math.min(1, (levels.peak[b] ?? 0) / ref);
    const q = Math.min(p, ((levels.rms[b] ?? 0) * Math.SQRT2) / ref);
    capsule(cx, L.minHeight + span * p, st.peak);
    capsule(cx, L.minHeight + span * q, st.rms);
  }
  return rgba;
}

// ------------------------------------------------------------------ headers

/**
 * The MPEG audio (Layer I–III) or ADTS frames from the first one (after ID3v2 tags): a frame is
 * taken where a header of the first frame's kind and rate lies, anything else (junk, a damaged
 * frame) is skipped to the next such header that another one follows; an ID3v1, APE or Lyrics tag
 * ends the stream. A Layer III Xing/Info or VBRI frame is no audio (ffmpeg skips it) and gives the
 * LAME tag's encoder delay and padding.
 */
function scanFrames(b: Uint8Array, adts: boolean): Frames | null {
  let pos = id3v2End(b, 0);
  while (pos < b.length && b[pos] === 0 && pos < 1 << 20) pos++;
  const same = (at: number, first: { sampleRate: number; layer: number }) => {
    const h = mpegAudioFrame(b, at);
    return h && h.adts === adts && h.sampleRate === first.sampleRate && h.layer === first.layer &&
        at + h.length <= b.length
      ? h
      : null;
  };
  let first = mpegAudioFrame(b, pos);
  if (!first || first.adts !== adts) return null;
  let offsets = new Uint32Array(4096);
  let lengths = new Uint32Array(4096);
  let count = 0;
  let delay = 0, padding = 0;
  let channels = first.channels;
  // the first frame: a Xing/Info/VBRI tag instead of audio?
  if (!adts && first.layer === 3) {
    const side = first.version === 1
      ? (first.channels === 1 ? 17 : 32)
      : (first.channels === 1 ? 9 : 17);
    const at = pos + 4 + (first.crc ? 2 : 0) + side;
    const tag = ascii(b, at, 4);
    if (tag === 'Xing' || tag === 'Info') {
      const flags = b[at + 7];
      const lame = at + 8 + (flags & 1 ? 4 : 0) + (flags & 2 ? 4 : 0) + (flags & 4 ? 100 : 0) +
        (flags & 8 ? 4 : 0);
      const encoder = ascii(b, lame, 4);
      if (encoder === 'LAME' || encoder === 'Lavf' || encoder === 'Lavc') {
        const v = (b[lame + 21] << 16) | (b[lame + 22] << 8) | b[lame + 23];
        delay = v >> 12;
        padding = v & 4095;
      }
      pos += first.length;
    } else if (ascii(b, pos + 36, 4) === 'VBRI') pos += first.length;
  }
  first = mpegAudioFrame(b, pos) ?? first;
  while (pos + 4 <= b.length) {
    const h = same(pos, first);
    if (h) {
      if (count === offsets.length) {
        const o = new Uint32Array(count * 2), l = new Uint32Array(count * 2);
        o.set(offsets);
        l.set(lengths);
        offsets = o;
        lengths = l;
      }
      offsets[count] = pos;
      lengths[count] = h.length;
      count++;
      if (h.channels > channels) channels = h.channels;
      pos += h.length;
      continue;
    }
    const word = ascii(b, pos, 3);
    if (word === 'TAG' || word === 'APE' || word === 'LYR') break;
    // resynchronise: the next header of the same kind that another one follows
    let next = pos + 1;
    for (; next + 4 <= b.length; next++) {
      if (b[next] !== 0xff) continue;
      const g = same(next, first);
      if (g && (next + g.length >= b.length || same(next + g.length, first))) break;
    }
    pos = next;
  }
  return {
    offsets,
    lengths,
    count,
    samples: first.samples,
    sampleRate: first.sampleRate,
    channels,
    delay,
    padding,
  };
}

function ascii(b: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = at; i < at + n && i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

const u16le = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
const u32le = (b: Uint8Array, at: number) =>
  (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
const u32be = (b: Uint8Array, at: number) =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

type Info = { sampleRate: number | null; channels: number | null; seconds: number | null };

/** WAV: `fmt ` (channels, rate, block size) and the `data` chunk's size. */
function wavInfo(b: Uint8Array): Partial<Info> {
  let at = 12;
  let channels = 0, rate = 0, align = 0;
  while (at + 8 <= b.length) {
    const id = ascii(b, at, 4);
    const size = u32le(b, at + 4);
    if (id === 'fmt ') {
      channels = u16le(b, at + 10);
      rate = u32le(b, at + 12);
      align = u16le(b, at + 20);
    } else if (id === 'data') {
      const bytes = size === 0 || size === 0xffffffff ? b.length - at - 8 : size;
      if (!rate || !align) return {};
      return {
        sampleRate: rate,
        channels,
        seconds: Math.min(bytes, b.length - at - 8) / align / rate,
      };
    }
    at += 8 + size + (size & 1);
  }
  return {};
}

/** Ogg: the identification header (Vorbis, Opus) and the last page's granule position. */
function oggInfo(b: Uint8Array): Partial<Info & { codec: AudioCodec }> {
  const p = 27 + b[26];
  let rate: number, channels: number, skip = 0, codec: AudioCodec;
  if (ascii(b, p, 7) === '\x01vorbis') {
    channels = b[p + 11];
    rate = u32le(b, p + 12);
    codec = 'vorbis';
  } else if (ascii(b, p, 8) === 'OpusHead') {
    channels = b[p + 9];
    skip = u16le(b, p + 10);
    rate = 48000;
    codec = 'opus';
  } else return { codec: 'flac' };
  const serial = u32le(b, 14);
  // the stream's last page (a page is at most 65307 bytes): its granule position is the length
  for (let at = b.length - 27; at >= 0 && at >= b.length - 65536 - 27; at--) {
    if (b[at] !== 0x4f || ascii(b, at, 4) !== 'OggS' || b[at + 4] !== 0) continue;
    if (u32le(b, at + 14) !== serial) continue;
    const lo = u32le(b, at + 6), hi = u32le(b, at + 10);
    if (lo === 0xffffffff && hi === 0xffffffff) continue; // no packet ends on this page
    return {
      codec,
      sampleRate: rate,
      channels,
      seconds: Math.max(0, hi * 2 ** 32 + lo - skip) / rate,
    };
  }
  return { codec, sampleRate: rate, channels };
}

/** FLAC: STREAMINFO's rate, channels and total samples (0: not known). */
function flacInfo(b: Uint8Array): Partial<Info> {
  const at = id3v2End(b, 0) + 4;
  if ((b[at] & 0x7f) !== 0) return {};
  const x = at + 4 + 10;
  const rate = (b[x] << 12) | (b[x + 1] << 4) | (b[x + 2] >> 4);
  const channels = ((b[x + 2] >> 1) & 7) + 1;
  const total = (b[x + 3] & 15) * 2 ** 32 + u32be(b, x + 4);
  if (!rate) return {};
  return { sampleRate: rate, channels, seconds: total ? total / rate : null };
}

/**
 * ISO BMFF: whether any track is not sound (video, subtitles aside), and the first sound track's
 * length, rate and channels (mdhd, and stsd's audio sample entry).
 */
function isoTracks(
  b: Uint8Array,
): { soundOnly: boolean; sound: Partial<Info & { codec: AudioCodec }> | null } {
  let sound: Partial<Info & { codec: AudioCodec }> | null = null;
  let other = false;
  try {
    for (const { handler, mdia, child } of isoBmffTracks(b)) {
      if (handler === 'vide') other = true;
      if (handler !== 'soun' || sound) continue;
      const info: Partial<Info & { codec: AudioCodec }> = {};
      const mdhd = child(mdia, 'mdhd');
      if (mdhd) {
        const v1 = b[mdhd.start] === 1;
        const scale = u32be(b, mdhd.start + (v1 ? 20 : 12));
        const duration = v1
          ? u32be(b, mdhd.start + 24) * 2 ** 32 + u32be(b, mdhd.start + 28)
          : u32be(b, mdhd.start + 16);
        if (scale) info.seconds = duration / scale;
      }
      const minf = child(mdia, 'minf');
      const stbl = minf && child(minf, 'stbl');
      const stsd = stbl && child(stbl, 'stsd');
      if (stsd) {
        const entry = stsd.start + 8; // version, flags, entry count
        info.channels = (b[entry + 24] << 8) | b[entry + 25];
        info.sampleRate = u32be(b, entry + 32) >>> 16;
        const type = ascii(b, entry + 4, 4);
        info.codec = type === 'mp4a'
          ? 'aac'
          : type === 'Opus'
          ? 'opus'
          : type === 'fLaC'
          ? 'flac'
          : type === '.mp3'
          ? 'mpeg'
          : 'other';
      }
      sound = info;
    }
  } catch {
    // a box we cannot read ends the walk: what it found so far stands
  }
  return { soundOnly: !!sound && !other, sound };
}
