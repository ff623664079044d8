/**
 * The animated preview of a video: ANIMATED.seconds from ANIMATED.start (past KIE's fade-ins),
 * ANIMATED.fps, at most ANIMATED.maxSide pixels a side, H.264 in an MP4 with faststart: what every
 * browser plays muted, looped and inline on hover (an animated WebP of the same clip was 3× the
 * bytes and cost more CPU to encode). Decoding the source is what costs: measured in one warm
 * ffmpeg.wasm instance here, with non-reference frames and the deblocking filter skipped, a
 * 720p source took ≈1.0 s of CPU and a 1080p one ≈3.1 s, over the edge's 2 s. So a source of
 * more than 1280×720 coded pixels is refused (OVER_CPU_BUDGET, terminal) before decoding.
 */
import { PreviewError, toPreviewError } from '../errors.ts';
import { execFfmpeg, withCore, WORK_DIR } from './ffmpeg.ts';
import { readVideo } from './video.ts';

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
    const { format, size } = readVideo(bytes, o.maxBytes);
    if (!size || size.width * size.height > ANIMATED.maxSourcePixels) {
      throw new PreviewError(
        'OVER_CPU_BUDGET',
        size
          ? `No animated preview: decoding a ${size.width}x${size.height} video takes more CPU than an edge request has (up to 1280x720)`
          : "No animated preview: the container does not say the video's size",
      );
    }
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
    });
  } catch (err) {
    throw toPreviewError(err);
  }
}
