/**
 * Video posters with ffmpeg.wasm (see ffmpeg.ts for how the core is loaded and reused).
 *
 * One ffmpeg run decodes from the start, takes a sample every SAMPLE_STEP seconds, scales it
 * to the preview box (area filter, rotation metadata applied by ffmpeg's autorotate) and
 * writes it to the in-memory file system; showinfo logs each sample, and the log reaches JS
 * synchronously, so the choice is made while ffmpeg runs. As soon as a sample is both not
 * black/uniform and stable (the next sample's mean luma is close: the fade-in is over), the
 * input file is truncated: ffmpeg's next read hits end of file, it drains what it already
 * holds and exits through its normal end-of-input path, so the instance stays reusable (the
 * core's timeout hook also stops ffmpeg, but the next run in that instance crashed). That
 * bounds decoding to a little past the fade. If no sample qualifies within MAX_WINDOW seconds,
 * the best sample wins. Non-reference frames and the deblocking filter are skipped while
 * decoding (the chosen frame is a reference frame; at a 3-4x downscale the difference is not
 * visible, SSIM in bench/RESULTS.md), which roughly halves the CPU cost.
 *
 * Before ffmpeg runs, the decode is planned from what the bitstream says (readVideo,
 * budget.ts planVideo): every reference frame or key frames only, and how far into the media
 * ffmpeg may read (past the plan's cut the input reads as ended, so the frames decoded fit the
 * CPU this isolate has left). While it runs, every decoded frame is checked against the size the
 * bitstream's header said (showinfo@dec) and the core's heap against the memory budget
 * (ffmpeg.ts withCore).
 */
import { PreviewError, toPreviewError } from '../errors.ts';
import { isReference, nalLengthSize, type StreamInfo, streamInfo } from './bitstream.ts';
import {
  checkCarried,
  FreshIsolateNeeded,
  planVideo,
  VIDEO_MAX_KEYFRAME_PIXELS,
  VIDEO_MEMORY,
  type VideoPlan,
  withSizesIfTheyFit,
} from './budget.ts';
import { type VideoSize, type VideoTrack, videoTrack } from './container.ts';
import { finishPreview, type Rendered, renderSide } from './encode.ts';
import {
  CORE_MEMORY,
  coreHeldBytes,
  coreState,
  execFfmpeg,
  type FFmpegCore,
  limitReads,
  withCore,
  WORK_DIR,
} from './ffmpeg.ts';
import { releaseSource } from './fetch.ts';
import { carriedBytes, cpuRoom, isolateMemory } from './isolate.ts';
import { checkBytes, type RenderOptions, renderPhotoBitmap, resolveOptions } from './photo.ts';
import { sniff } from './sniff.ts';

export type { Rendered } from './encode.ts';

export type PosterOptions = RenderOptions & {
  /**
   * KIE's own cover image of the video (Runway image_url, Veo imageUrls), fetched only when
   * needed: the poster when none can be made within the limits (too many pixels, over the
   * memory budget, no decodable frame) or when every sampled frame is black. Used only if it
   * is not black itself.
   */
  loadCover?: () => Promise<Uint8Array | null>;
};

/** Seconds between samples. */
export const SAMPLE_STEP = 0.2;
/** Decode at most this many seconds from the start. */
export const MAX_WINDOW = 3;
/** Keyframes-only decoding (above 2560×1440): how far in, and how many keyframes at most. */
export const KEYFRAME_WINDOW = 8;
export const MAX_KEYFRAMES = 4;

export type FrameStats = { mean: number; contrast: number };

/** Luma statistics of an RGBA bitmap (BT.601, full range 0..255): mean and p90 - p10. */
export function lumaStats(rgba: Uint8ClampedArray | Uint8Array): FrameStats {
  const hist = new Uint32Array(256);
  let sum = 0;
  const n = rgba.length >> 2;
  for (let i = 0; i < rgba.length; i += 4) {
    const a = rgba[i + 3] / 255;
    const y = (0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]) * a;
    sum += y;
    hist[y | 0]++;
  }
  const pct = (p: number) => {
    let acc = 0;
    for (let v = 0; v < 256; v++) if ((acc += hist[v]) >= p * n) return v;
    return 255;
  };
  return { mean: n ? sum / n : 0, contrast: pct(0.9) - pct(0.1) };
}

/** Not black and not nearly uniform (full-range luma). */
export function hasContent(s: FrameStats): boolean {
  return s.mean >= 28 && s.contrast >= 16;
}

const score = (s: FrameStats) => (hasContent(s) ? 1000 : 0) + s.mean + 2 * s.contrast;

/** Poster failures KIE's cover image can stand in for. */
const COVER_FALLBACK = new Set([
  'TOO_MANY_PIXELS',
  'OVER_MEMORY_BUDGET',
  'OVER_CPU_BUDGET',
  'NO_VIDEO_FRAME',
]);

export type VideoInput = {
  format: string;
  /** The size the decoder allocates: the bitstream's, else the container's claim. */
  size: VideoSize | null;
  /** What the container says. */
  claimed: VideoSize | null;
  track: VideoTrack | null;
  stream: StreamInfo | null;
};

/**
 * A video's container format, its first video track and what its bitstream says (bitstream.ts),
 * after the byte cap; anything else is UNSUPPORTED_FORMAT. Each listed frame is marked as one
 * `-skip_frame noref` decodes or skips (H.264/HEVC: from its NAL header).
 */
export function readVideo(bytes: Uint8Array, maxBytes: number): VideoInput {
  checkBytes(bytes, maxBytes);
  const s = sniff(bytes);
  if (s.kind !== 'video') {
    throw new PreviewError('UNSUPPORTED_FORMAT', `Unsupported format: ${s.format} is not a video`);
  }
  const track = videoTrack(bytes, s.format);
  const at = (x: { offset: number; size: number }, max = x.size) =>
    bytes.subarray(x.offset, x.offset + Math.min(x.size, max));
  const first = track?.samples?.[0];
  const stream = track ? streamInfo(track.codec, track.config, first ? at(first) : null) : null;
  if (track?.samples && (track.codec === 'h264' || track.codec === 'hevc')) {
    const lengthSize = nalLengthSize(track.codec, track.config);
    for (const x of track.samples) x.reference = isReference(track.codec, at(x, 4096), lengthSize);
  }
  const claimed = track?.claimed ?? null;
  return {
    format: s.format,
    size: stream ? { width: stream.width, height: stream.height } : claimed,
    claimed,
    track,
    stream,
  };
}

/** The poster's decode, planned from the bitstream for what this isolate has left (budget.ts). */
export function planPoster(
  video: VideoInput,
  inputBytes: number,
  maxPixels: number,
  sides: readonly number[] = [],
): VideoPlan {
  const core = coreState();
  const room = cpuRoom(inputBytes, sides);
  return planVideo({
    track: video.track,
    stream: video.stream,
    inputBytes,
    maxPixels,
    cpu: { ...room, coreCold: core.cold, coreInstance: core.instance },
    window: {
      all: MAX_WINDOW,
      keyframes: KEYFRAME_WINDOW,
      maxKeyframes: MAX_KEYFRAMES,
      sampleStep: SAMPLE_STEP,
    },
    sides,
  });
}

export async function extractPoster(bytes: Uint8Array, options?: PosterOptions): Promise<Rendered> {
  let o = resolveOptions(options);
  let frame: Frame;
  try {
    const video = readVideo(bytes, o.maxBytes);
    const planned = withSizesIfTheyFit(
      o.sides,
      (sides) => planPoster(video, bytes.length, o.maxPixels, sides),
    );
    const plan = planned.plan;
    o = { ...o, sides: planned.sides };
    checkCarried(
      plan.memoryBytes,
      carriedBytes(),
      coreHeldBytes(),
      VIDEO_MEMORY.budget,
      `this ${plan.size?.width}x${plan.size?.height} video`,
    );
    frame = await withCore((core) => pickFrame(core, bytes, video.format, o, plan), {
      memory: {
        // where the isolate's own measure is not available (tests in Node): the plan's budget
        staticCap: VIDEO_MEMORY.budget - (plan.memoryBytes - plan.coreBytes),
        what: `this ${plan.size?.width}x${plan.size?.height} video${plan.claimNote}`,
      },
    });
    if (frame.width * frame.height > o.maxPixels) {
      throw new PreviewError('TOO_MANY_PIXELS', `Too many pixels: ${frame.width}x${frame.height}`);
    }
  } catch (err) {
    const pe = toPreviewError(err);
    // not the file's limit but this isolate's: handed back to a fresh one (generate.ts)
    if (pe instanceof FreshIsolateNeeded || !COVER_FALLBACK.has(pe.code)) throw pe;
    const cover = await tryCover(options?.loadCover, o);
    if (cover) return cover;
    throw pe;
  }
  try {
    if (!hasContent(lumaStats(frame.data))) {
      const cover = await tryCover(options?.loadCover, o);
      if (cover) return cover; // every sample was black: KIE's cover is the better poster
    }
    return await finishPreview(frame.data, frame.width, frame.height, o);
  } catch (err) {
    throw toPreviewError(err);
  }
}

/** KIE's cover as the poster, or null: none, unreadable, or black. Never fails the poster. */
async function tryCover(
  load: PosterOptions['loadCover'],
  o: ReturnType<typeof resolveOptions>,
): Promise<Rendered | null> {
  if (!load) return null;
  let bytes: Uint8Array | null = null;
  try {
    bytes = await load();
    if (!bytes || bytes.length === 0) return null;
    const bmp = await renderPhotoBitmap(bytes, o);
    releaseSource(bytes);
    if (!hasContent(lumaStats(bmp.data))) return null;
    return await finishPreview(
      bmp.data,
      bmp.width,
      bmp.height,
      { ...o, sides: bmp.sides },
      bmp.natural,
    );
  } catch {
    return null;
  } finally {
    releaseSource(bytes);
  }
}

type Frame = { data: Uint8ClampedArray; width: number; height: number };

/**
 * The poster frame. mode 'all': every reference frame is decoded, a sample every SAMPLE_STEP
 * seconds, and a sample wins once it has content and the next one is stable (the fade is
 * over). mode 'keyframes' (above 2560×1440): only keyframes are decoded, each is a sample, and
 * the first with content wins (a keyframe is a whole picture, there is nothing to wait for);
 * at most MAX_KEYFRAMES within KEYFRAME_WINDOW seconds. When none has content (a 4K fade-in
 * from black whose only keyframe is the first), a second pass in the same core decodes every
 * reference frame from the start, each one a sample, and the first with content wins, lightened
 * when it is caught in the fade (lightenFade); it runs only as the planner allows it
 * (budget.ts planReferences: the core's real memory, sources up to about 25 MB at 4K, the CPU the
 * keyframe pass leaves). No picture, or no room for that pass, is NO_VIDEO_FRAME or the
 * planner's refusal (KIE's cover stands in when there is one).
 */
function pickFrame(
  core: FFmpegCore,
  bytes: Uint8Array,
  format: string,
  o: ReturnType<typeof resolveOptions>,
  plan: VideoPlan,
): Frame {
  core.FS.mkdir(WORK_DIR);
  // the instance before the keyframe pass grows it: what extractPoster's checkCarried counted as
  // reused (an instance new to this job counts its first 32 MB too; the live check below does not)
  const reused = coreHeldBytes();
  const picked = decodePass(core, bytes, format, o, plan);
  if (picked) return picked.frame;
  // mode 'keyframes', and no keyframe showed a picture
  const next = plan.references;
  if (!next) throw noKeyframePicture(plan);
  if ('refused' in next) throw next.refused;
  const size = next.plan.size;
  const what = `decoding the reference frames of this ${size?.width}x${size?.height} video`;
  checkCarried(next.plan.memoryBytes, carriedBytes(), reused, VIDEO_MEMORY.budget, what);
  // and by what the isolate holds now (the platform's measure): the cores of earlier posters that
  // the collector has not freed yet count until it does, and the memory guard would stop the pass
  // half-way (ffmpeg.ts withCore), failing for good what a fresh isolate renders
  const live = isolateMemory();
  if (live !== null) {
    const during = live - coreHeldBytes() + next.plan.coreBytes;
    if (during > CORE_MEMORY.guardTotal) {
      throw new FreshIsolateNeeded(
        `Over the memory budget: ${what} takes this isolate to about ${
          Math.round(during / 1048576)
        } MB while it decodes: it holds ${
          Math.round(live / 1048576)
        } MB now (the decoder is stopped at ${Math.round(CORE_MEMORY.guardTotal / 1048576)} MB)`,
      );
    }
  }
  emptyWorkDir(core);
  const found = decodePass(core, bytes, format, o, next.plan);
  if (!found) {
    throw new PreviewError(
      'NO_VIDEO_FRAME',
      `No video frame: no frame of this ${size?.width}x${size?.height} video up to ${
        next.plan.seconds.toFixed(1)
      } s shows a picture (its keyframes, then its reference frames, were decoded)`,
    );
  }
  lightenFade(found.frame.data, found.stats, found.before);
  return found.frame;
}

/** The keyframe pass's NO_VIDEO_FRAME, when no second pass is planned. */
function noKeyframePicture(plan: VideoPlan): PreviewError {
  const size = plan.size;
  return new PreviewError(
    'NO_VIDEO_FRAME',
    `No video frame: no keyframe of this ${size?.width}x${size?.height} video within ${
      Math.min(KEYFRAME_WINDOW, plan.keyframes ? plan.seconds + SAMPLE_STEP : KEYFRAME_WINDOW)
        .toFixed(1)
    } s shows a picture (${
      plan.stream && plan.stream.width * plan.stream.height <= 2560 * 1440
        ? 'its reference frames do not fit the memory budget, so'
        : 'above 2560x1440'
    } only keyframes are decoded)`,
  );
}

/** Removes every file of WORK_DIR (the input and the samples of a pass), keeping the folder. */
function emptyWorkDir(core: FFmpegCore): void {
  for (const name of core.FS.readdir(WORK_DIR) as string[]) {
    if (name !== '.' && name !== '..') core.FS.unlink(`${WORK_DIR}/${name}`);
  }
}

/** A pass's winning sample, its statistics and those of the sample before it. */
type Picked = { frame: Frame; stats: FrameStats; before: FrameStats | null };

/**
 * One ffmpeg run of `plan` (see pickFrame): the chosen sample, or null when mode 'keyframes' or
 * 'references' found no sample with content (mode 'all' falls back to the best sample).
 */
function decodePass(
  core: FFmpegCore,
  bytes: Uint8Array,
  format: string,
  o: ReturnType<typeof resolveOptions>,
  plan: VideoPlan,
): Picked | null {
  const keyframes = plan.mode === 'keyframes';
  // keyframes and every reference frame: each decoded frame is a sample, the first with content wins
  const firstWins = plan.mode !== 'all';
  const size = plan.size;
  const FS = core.FS;
  const input = `${WORK_DIR}/in.${format}`;
  // canOwn: the file system keeps a view of the caller's bytes instead of a copy (ffmpeg only
  // reads it; truncating or unlinking it drops the view and never touches the bytes)
  FS.writeFile(input, bytes, { canOwn: true });
  // only as many frames as the plan's CPU allows: the media past its cut reads as the file's end
  limitReads(core, input, plan.cut, plan.headers);
  // the reference-frame pass makes the first size only: with a larger box its samples took the
  // isolate past the budget (a 23 MB 4K file: 215–231 MB with 1024, 190–198 MB with 512 alone)
  const box = plan.mode === 'references' ? o.maxSide : renderSide(o);
  const vf = [
    // every decoded frame, at its decoded size: one larger than the bitstream's header said (a
    // size change in band) stops the decode before it allocates more of them
    'showinfo@dec=checksum=0',
    ...(plan.mode === 'references'
      ? []
      : [`select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,${SAMPLE_STEP - 0.01})'`]),
    `scale='min(${box},iw)':'min(${box},ih)':force_original_aspect_ratio=decrease:flags=area`,
    'format=rgba',
  ].join(',');
  const allowedPixels = size ? size.width * size.height * 1.05 : VIDEO_MAX_KEYFRAME_PIXELS;
  let oversize: string | null = null;

  const stats: FrameStats[] = [];
  let chosen = -1;
  let best = -1; // the best-scoring sample judged so far (the fallback); the others are deleted
  let written = 0; // samples whose statistics are known
  let shown = 0; // samples that passed showinfo (the last one may not be written yet)
  const sampleFile = (i: number) => `${WORK_DIR}/f${String(i + 1).padStart(4, '0')}.pam`;
  // a written sample's bytes, read in place (no copy: only the chosen one is copied out)
  const sample = (i: number): Uint8Array => {
    const node = FS.lookupPath(sampleFile(i)).node;
    return node.contents ? node.contents.subarray(0, node.usedBytes) : new Uint8Array(0);
  };
  const measure = (i: number) => {
    stats[i] = lumaStats(readPam(sample(i), false).data);
  };
  const drop = (i: number) => {
    try {
      FS.unlink(sampleFile(i));
    } catch {
      // already gone
    }
  };
  // Judge sample k once sample k+1 is known. A rejected sample is kept only while it is the
  // best fallback, so at most three samples are on the file system at any time.
  const judge = (k: number) => {
    if (firstWins ? hasContent(stats[k]) : isChosen(stats, k)) {
      chosen = k;
      return;
    }
    if (best < 0 || score(stats[k]) > score(stats[best])) {
      if (best >= 0) drop(best);
      best = k;
    } else drop(k);
  };
  // showinfo logs each sample (synchronously, through the logger) just before it is encoded,
  // so when sample n is logged, samples < n are on the in-memory file system.
  const onSample = () => {
    shown++;
    while (chosen < 0 && written < shown - 1) {
      measure(written);
      written++;
      if (firstWins) judge(written - 1);
      else if (written >= 2) judge(written - 2);
      if (chosen >= 0) FS.truncate(input, 0); // end of input: ffmpeg finishes after what it holds
    }
    if (keyframes && shown >= MAX_KEYFRAMES && chosen < 0) FS.truncate(input, 0);
  };
  const log: string[] = [];
  core.setLogger((m) => {
    if (m.message.includes('showinfo@dec')) {
      const s = /\bs:(\d+)x(\d+)/.exec(m.message);
      if (s && !oversize && Number(s[1]) * Number(s[2]) > allowedPixels) {
        oversize = `${s[1]}x${s[2]}`;
        FS.truncate(input, 0);
      }
    } else if (m.message.includes('showinfo@out') && /\bn:\s*\d+/.test(m.message)) {
      try {
        if (!oversize) onSample();
      } catch {
        // a sample that cannot be read is simply not a candidate
      }
    } else if (log.length < 200) log.push(m.message);
  });
  let code: number;
  try {
    code = execFfmpeg(core, [
      '-nostats',
      '-loglevel',
      'info',
      '-skip_frame',
      keyframes ? 'nokey' : 'noref',
      '-skip_loop_filter',
      'all',
      '-t',
      String(keyframes ? KEYFRAME_WINDOW : MAX_WINDOW),
      '-i',
      input,
      '-map',
      '0:v:0',
      '-an',
      '-sn',
      '-dn',
      '-vf',
      `${vf},showinfo@out=checksum=0`,
      '-fps_mode',
      'vfr',
      '-c:v',
      'pam',
      '-f',
      'image2',
      `${WORK_DIR}/f%04d.pam`,
    ]);
  } finally {
    core.setLogger(() => {});
  }
  if (oversize) {
    throw new PreviewError(
      'OVER_MEMORY_BUDGET',
      `Over the memory budget: this video's frames decode to ${oversize}, larger than the ${
        size ? `${size.width}x${size.height} its bitstream header says` : '4096x2160 decoded here'
      }${plan.claimNote}`,
    );
  }
  // account for everything written (the last sample has no successor)
  while (chosen < 0 && FS.analyzePath(sampleFile(written)).exists) {
    try {
      measure(written);
    } catch {
      break;
    }
    written++;
    if (firstWins) judge(written - 1);
    else if (written >= 2) judge(written - 2);
  }
  // stopped short by this isolate's CPU before the picture settled: a fresh isolate reads further
  if (plan.limitedByRoom && chosen < 0) {
    throw new FreshIsolateNeeded(
      `Over the CPU budget: this isolate had CPU for ${
        plan.seconds.toFixed(1)
      } s of this video and no ${plan.mode === 'references' ? '' : 'settled '}picture within them`,
    );
  }
  if (written === 0) {
    const reason = ffmpegReason(log);
    throw new PreviewError(
      'NO_VIDEO_FRAME',
      `No video frame: ffmpeg exit ${code}${reason ? `: ${reason}` : ''}`,
    );
  }
  if (chosen < 0 && firstWins) return null;
  if (chosen < 0) {
    const last = written - 1; // never judged: no successor
    chosen = best >= 0 && score(stats[best]) >= score(stats[last]) ? best : last;
  }
  return {
    frame: readPam(sample(chosen), true),
    stats: stats[chosen],
    before: stats[chosen - 1] ?? null,
  };
}

/** The most a frame caught in a fade-in is lightened by (lightenFade). */
export const MAX_FADE_GAIN = 4;

/**
 * A frame the reference-frame pass found in a fade-in from black is the first with content, so it
 * is dim (a 1.2 s fade at 4K: mean luma 31 of 255, a quarter into the fade). A fade scales the
 * picture toward black, so a gain undoes it: the brightest 1 % of the picture is taken to full
 * scale, by MAX_FADE_GAIN at most, in place. Only when the sample before it was already lit (at
 * least half as bright: a fade in progress); a cut from black to a dark scene is left as it is.
 * About 1 ms for 512×288 (a lookup table). Returns the gain (1: unchanged).
 */
export function lightenFade(
  rgba: Uint8ClampedArray,
  stats: FrameStats,
  before: FrameStats | null,
): number {
  if (!before || before.mean < stats.mean / 2) return 1;
  const hist = new Uint32Array(256);
  for (let i = 0; i < rgba.length; i += 4) {
    const r = rgba[i], g = rgba[i + 1], b = rgba[i + 2];
    hist[r > g ? (r > b ? r : b) : g > b ? g : b]++;
  }
  const n = rgba.length >> 2;
  let top = 255;
  for (let v = 0, acc = 0; v < 256; v++) {
    if ((acc += hist[v]) >= 0.99 * n) {
      top = v;
      break;
    }
  }
  const gain = Math.min(MAX_FADE_GAIN, 255 / Math.max(1, top));
  if (gain < 1.05) return 1;
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.round(v * gain);
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = lut[rgba[i]];
    rgba[i + 1] = lut[rgba[i + 1]];
    rgba[i + 2] = lut[rgba[i + 2]];
  }
  return gain;
}

/**
 * Why ffmpeg found no frame, in our words: its log can quote the file (metadata, names), and
 * the row's error must never carry bytes of a remote answer.
 */
const FFMPEG_REASONS: [RegExp, string][] = [
  [/moov atom not found/i, 'the MP4 index (moov) is missing'],
  [/does not contain any stream|matches no streams|no video stream/i, 'no video stream'],
  [/Invalid data found/i, 'invalid data'],
  [/decoder .* not found|Decoding requested, but no decoder/i, 'no decoder for this codec'],
];

function ffmpegReason(log: string[]): string {
  return [
    ...new Set(
      log.flatMap((l) => FFMPEG_REASONS.filter(([re]) => re.test(l)).map(([, why]) => why)),
    ),
  ].join('; ');
}

/** Sample k has content and the picture has settled (next sample's mean luma is close). */
function isChosen(stats: FrameStats[], k: number): boolean {
  const s = stats[k];
  if (!s || !hasContent(s)) return false;
  const next = stats[k + 1];
  if (!next) return false;
  return Math.abs(next.mean - s.mean) <= Math.max(4, 0.08 * s.mean);
}

/** Parse a PAM (P7, RGB_ALPHA) file written by ffmpeg; `copy: false` returns a view into `bytes`. */
function readPam(
  bytes: Uint8Array,
  copy: boolean,
): { data: Uint8ClampedArray; width: number; height: number } {
  let i = 0;
  let header = '';
  while (i < bytes.length && !header.endsWith('ENDHDR\n')) {
    header += String.fromCharCode(bytes[i++]);
  }
  const w = Number(/WIDTH (\d+)/.exec(header)?.[1]);
  const h = Number(/HEIGHT (\d+)/.exec(header)?.[1]);
  const depth = Number(/DEPTH (\d+)/.exec(header)?.[1]);
  if (!w || !h || depth !== 4 || bytes.length - i < w * h * 4) {
    throw new PreviewError('NO_VIDEO_FRAME', 'No video frame: unreadable frame from ffmpeg');
  }
  const data = new Uint8ClampedArray(bytes.buffer, bytes.byteOffset + i, w * h * 4);
  return { data: copy ? data.slice() : data, width: w, height: h };
}
