/**
 * The animated preview of a video: ANIMATED.seconds from ANIMATED.start (past KIE's fade-ins),
 * ANIMATED.fps, at most ANIMATED.maxSide pixels a side, H.264 in an MP4 with faststart: what every
 * browser plays muted, looped and inline on hover (an animated WebP of the same clip was 3× the
 * bytes and cost more CPU to encode). Decoding the source is what costs: measured in one warm
 * ffmpeg.wasm instance here, with non-reference frames and the deblocking filter skipped, a
 * 720p source took ≈1.0 s of CPU and a 1080p one ≈3.1 s, over the edge's 2 s. So a source of
 * more than 1280×720 coded pixels is refused (OVER_CPU_BUDGET, terminal) before decoding: the size
 * its bitstream says (bitstream.ts), never the container's claim (a 1440p stream in a container
 * that said 720p killed the isolate five times). A source within that size whose frames would
 * still cost more CPU than an isolate has (a high bitrate: budget.ts's model) is refused too, or
 * handed to a fresh isolate when only this one is short of CPU.
 */
import { PreviewError, toPreviewError } from '../errors.ts';
import { frameBytes } from './bitstream.ts';
import { checkCarried, FreshIsolateNeeded, VIDEO_CPU, VIDEO_MEMORY } from './budget.ts';
import { coreHeldBytes, coreState, execFfmpeg, withCore, WORK_DIR } from './ffmpeg.ts';
import { carriedBytes, cpuRoom } from './isolate.ts';
import { readVideo, type VideoInput } from './video.ts';

export const ANIMATED = {
  start: 1.5,
  seconds: 4,
  fps: 12,
  maxSide: 320,
  maxSourcePixels: 1280 * 720,
};

/** The clip's filter and encoder settings (the bench's native anchor makes the same clip with them). */
export function animatedEncodeArgs(): string[] {
  return [
    '-vf',
    `fps=${ANIMATED.fps},scale=w='min(${ANIMATED.maxSide},iw)':h='min(${ANIMATED.maxSide},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2:flags=bilinear,format=yuv420p`,
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-tune',
    'fastdecode',
    '-crf',
    '30',
    '-movflags',
    '+faststart',
  ];
}

export async function renderAnimated(
  bytes: Uint8Array,
  o: { maxBytes: number },
): Promise<Uint8Array> {
  try {
    const video = readVideo(bytes, o.maxBytes);
    const { format, size } = video;
    const claim = video.stream && video.claimed &&
        (video.claimed.width !== size?.width || video.claimed.height !== size?.height)
      ? ` (the container says ${video.claimed.width}x${video.claimed.height})`
      : '';
    if (!size || size.width * size.height > ANIMATED.maxSourcePixels) {
      throw new PreviewError(
        'OVER_CPU_BUDGET',
        size
          ? `No animated preview: decoding a ${size.width}x${size.height} video${claim} takes more CPU than an edge request has (up to 1280x720)`
          : "No animated preview: neither the bitstream nor the container says the video's size",
      );
    }
    const ms = clipCpuMs(video);
    if (ms !== null) {
      const core = coreState();
      const total = ms + (core.cold ? VIDEO_CPU.coreColdMs : 0) +
        (core.instance ? VIDEO_CPU.coreInstanceMs : 0) + 2 * VIDEO_CPU.execMs;
      const room = cpuRoom(bytes.length);
      // refused for good by what a fresh isolate pays (the core's compile included)
      const cold = ms + VIDEO_CPU.coreColdMs + VIDEO_CPU.coreInstanceMs + 2 * VIDEO_CPU.execMs;
      const what =
        `No animated preview: decoding ${ANIMATED.seconds} s of this ${size.width}x${size.height} video${claim} takes about ${
          Math.round(total)
        } ms of CPU`;
      if (cold > room.freshMs) {
        throw new PreviewError(
          'OVER_CPU_BUDGET',
          `${what} in a fresh isolate (${
            Math.round(cold)
          } ms); an edge isolate has ${room.freshMs} ms`,
        );
      }
      if (total > room.roomMs) {
        throw new FreshIsolateNeeded(`${what}; this isolate has ${room.roomMs} ms left`);
      }
    }
    // the decoder's picture buffer and the encoder's, beside the source
    const frames = (video.stream ? video.stream.dpb + 2 : 6) *
      (video.stream ? frameBytes(video.stream) : size.width * size.height * 1.5);
    checkCarried(
      VIDEO_MEMORY.isolateBase + bytes.length + VIDEO_MEMORY.coreBase + frames,
      carriedBytes(),
      coreHeldBytes(),
      VIDEO_MEMORY.budget,
      `the clip of this ${size.width}x${size.height} video`,
    );
    return await withCore((core) => {
      core.FS.mkdir(WORK_DIR);
      const input = `${WORK_DIR}/in.${format}`;
      const output = `${WORK_DIR}/out.mp4`;
      core.FS.writeFile(input, bytes, { canOwn: true });
      // from ANIMATED.start, or from the beginning when the video is shorter than that
      for (const start of [ANIMATED.start, 0]) {
        execFfmpeg(core, [
          '-nostats',
          '-loglevel',
          'error',
          '-y',
          '-skip_frame',
          'noref',
          '-skip_loop_filter',
          'all',
          '-ss',
          String(start),
          '-t',
          String(ANIMATED.seconds),
          '-i',
          input,
          '-map',
          '0:v:0',
          '-an',
          '-sn',
          '-dn',
          ...animatedEncodeArgs(),
          output,
        ]);
        const out = core.FS.analyzePath(output).exists
          ? core.FS.readFile(output) as Uint8Array
          : new Uint8Array(0);
        if (out.length > 1024) return out.slice();
      }
      throw new PreviewError('NO_VIDEO_FRAME', 'No animated preview: ffmpeg wrote no frames');
    }, {
      memory: {
        staticCap: VIDEO_MEMORY.budget - VIDEO_MEMORY.isolateBase - bytes.length,
        what: `this ${size.width}x${size.height} video${claim}`,
      },
    });
  } catch (err) {
    throw toPreviewError(err);
  }
}

/** x264 (ultrafast) per encoded 320-px frame, and frames of the clip. */
const ENCODE_MS_PER_FRAME = 6;

/**
 * The clip's CPU by budget.ts's model: every reference frame from the key frame the seek lands on
 * (at or before ANIMATED.start) to the clip's end, and the encoder; null without a frame list.
 * The first attempt starts at ANIMATED.start; a video shorter than that is made from 0.
 */
export function clipCpuMs(video: VideoInput): number | null {
  const samples = video.track?.samples;
  const s = video.stream;
  if (!samples || !s) return null;
  const c = VIDEO_CPU;
  const fmb = frameBytes(s) / 1048576;
  const end = ANIMATED.start + ANIMATED.seconds;
  let from = 0;
  for (let i = 0; i < samples.length && samples[i].time <= ANIMATED.start; i++) {
    if (samples[i].key) from = i;
  }
  let ms = 0;
  for (let i = from; i < samples.length && samples[i].time < end; i++) {
    const x = samples[i];
    const mb = x.size / 1048576;
    ms += x.reference === false
      ? mb * c.skipMsPerMB + fmb * c.skipMsPerFrameMB[s.codec]
      : fmb * (x.key ? c.keyMsPerFrameMB : c.interMsPerFrameMB)[s.codec] + mb * c.bitsMsPerMB;
  }
  return c.margin * ms + ANIMATED.seconds * ANIMATED.fps * ENCODE_MS_PER_FRAME;
}
