// The animated preview renderer on real bytes: an H.264 MP4 of ANIMATED.seconds at ANIMATED.fps,
// at most 320 px a side with even dimensions, taken from after the fade-in, checked with
// ffprobe and against native ffmpeg's frame at the same time; sources over 720p are refused
// before any decoding (OVER_CPU_BUDGET); short videos start from the beginning.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANIMATED, renderAnimated } from '../../shared/preview/animated.ts';
import { nativeFrame, read, videoMp4 } from '../fixtures/media.ts';
import { meanLuma } from '../fixtures/quality.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-animated-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function probe(bytes: Uint8Array) {
  const file = join(dir, `probe-${Math.random().toString(36).slice(2)}.mp4`);
  writeFileSync(file, bytes);
  const out = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries',
    'stream=codec_name,width,height,pix_fmt,nb_read_frames,avg_frame_rate:format=duration', '-of', 'json', file]).toString());
  return { file, stream: out.streams[0], duration: Number(out.format.duration) };
}

const MAX = 16 * 1024 * 1024;

describe('renderAnimated', () => {
  it('makes a 4 s, 12 fps, 320 px H.264 MP4 from after the fade-in', async () => {
    const src = videoMp4(dir, 1280, 720, 7, { black: 0.5, fade: 0.5 });
    const clip = await renderAnimated(read(src), { maxBytes: MAX });
    const { file, stream, duration } = probe(clip);
    expect(stream).toMatchObject({ codec_name: 'h264', width: 320, height: 180, pix_fmt: 'yuv420p', avg_frame_rate: '12/1' });
    expect(Number(stream.nb_read_frames)).toBe(ANIMATED.seconds * ANIMATED.fps);
    expect(duration).toBeCloseTo(ANIMATED.seconds, 0);
    expect(clip.length).toBeLessThan(400 * 1024);
    // the first frame is the source at ANIMATED.start, past the black and the fade: bright
    const first = nativeFrame(file, 0, 320, 180);
    expect(meanLuma(first)).toBeGreaterThan(60);
    expect(Math.abs(meanLuma(first) - meanLuma(nativeFrame(src, ANIMATED.start, 320, 180)))).toBeLessThan(10);
  });

  it('keeps a portrait video within 320 px, with even sides', async () => {
    const clip = await renderAnimated(read(videoMp4(dir, 640, 360, 6, { fade: 0, rotate: 90 })), { maxBytes: MAX });
    const { stream } = probe(clip);
    expect(Math.max(stream.width, stream.height)).toBe(320);
    expect(stream.width % 2 + stream.height % 2).toBe(0);
  });

  it('starts from the beginning when the video is shorter than the start time', async () => {
    const clip = await renderAnimated(read(videoMp4(dir, 640, 360, 1, { fade: 0 })), { maxBytes: MAX });
    const { stream } = probe(clip);
    expect(Number(stream.nb_read_frames)).toBe(ANIMATED.fps);
  });

  it('refuses a source over 1280×720 before decoding (OVER_CPU_BUDGET), and anything not a video', async () => {
    await expect(renderAnimated(read(videoMp4(dir, 1920, 1080, 1, { fade: 0 })), { maxBytes: MAX }))
      .rejects.toMatchObject({ code: 'OVER_CPU_BUDGET', message: expect.stringContaining('1920x1080') });
    await expect(renderAnimated(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0]), { maxBytes: MAX }))
      .rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
  });
});
