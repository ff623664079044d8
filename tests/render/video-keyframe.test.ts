// Issue 26 part 3: a 4K H.264 video whose only keyframe is its black first frame (x264 without
// scene cuts: keyint past the length, scenecut=0) fading in over 1.2 s. The keyframe pass finds only
// black; the reference-frame pass in the same core (video.ts pickFrame, budget.ts planReferences)
// finds the first frame with content and lightens it. Checked against native ffmpeg's frames, on
// the edge runtime's Deno 2.1.4 by the platform's measures (tests/fixtures/hostile-probe.ts, as
// tests/faults/download-memory.test.ts does), and for a source over the pass's memory budget: the
// planner's refusal (or KIE's cover), the pass never attempted.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { edgeDenoBin, repoRoot } from '../../local/paths.ts';
import { FreshIsolateNeeded, planVideo } from '../../shared/preview/budget.ts';
import { cpuRoom, measureRender, resetIsolateBudget } from '../../shared/preview/isolate.ts';
import {
  extractPoster,
  KEYFRAME_WINDOW,
  lightenFade,
  lumaStats,
  MAX_KEYFRAMES,
  MAX_WINDOW,
  planPoster,
  readVideo,
  SAMPLE_STEP,
} from '../../shared/preview/video.ts';
import { read, videoMp4 } from '../fixtures/media.ts';
import { meanLuma, rgba, ssim } from '../fixtures/quality.ts';

const MB = 1048576;
let dir: string;
let file: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-video-keyframe-'));
  // x264 veryfast (≈30 s here; medium ≈100 s): High profile, CABAC, B-frames as references, the
  // same 4-frame picture buffer; the bench's case is the medium-preset file (bench/run.ts)
  file = videoMp4(dir, 3840, 2160, 8, { fade: 1.2, keyint: 300, preset: 'veryfast' });
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Native ffmpeg's first `seconds` of frames, scaled by area to w×h, as RGBA (30 fps: frame i at i/30 s). */
function nativeFrames(f: string, seconds: number, w: number, h: number): Uint8Array[] {
  const out = execFileSync('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-t',
    String(seconds),
    '-i',
    f,
    '-vf',
    `scale=${w}:${h}:flags=area,format=rgba`,
    '-f',
    'rawvideo',
    '-',
  ], { maxBuffer: 1 << 28 });
  const size = w * h * 4;
  return Array.from(
    { length: Math.floor(out.length / size) },
    (_, i) => new Uint8Array(out.subarray(i * size, (i + 1) * size)),
  );
}

/** The file with an ISO BMFF `free` box of `pad` bytes appended: a larger source, the same video. */
function padded(src: string, pad: number): Uint8Array {
  const bytes = read(src);
  const out = new Uint8Array(bytes.length + pad);
  out.set(bytes);
  new DataView(out.buffer).setUint32(bytes.length, pad);
  out.set([0x66, 0x72, 0x65, 0x65], bytes.length + 4); // 'free'
  return out;
}

describe('a 4K video whose only keyframe is the black first frame', () => {
  it('is what it says: one keyframe in 8 s, black, a 1.2 s fade-in, a source under 25 MB', () => {
    const flags = execFileSync('ffprobe', [
      '-v',
      'error',
      '-select_streams',
      'v:0',
      '-show_entries',
      'packet=flags',
      '-of',
      'csv=p=0',
      file,
    ], { encoding: 'utf8' })
      .trim().split('\n');
    expect(flags.length).toBe(240);
    expect(flags.filter((f) => f.startsWith('K')).length).toBe(1);
    expect(readFileSync(file).length).toBeLessThan(25 * MB);
    const [first] = nativeFrames(file, 0.04, 512, 288);
    expect(meanLuma(first)).toBeLessThan(20);
    // the keyframe pass alone finds nothing: its plan has a second pass, and it fits a fresh isolate
    const plan = planPoster(readVideo(read(file), 100 * MB), readFileSync(file).length, 50_000_000);
    expect(plan.mode).toBe('keyframes');
    expect(plan.references && 'plan' in plan.references && plan.references.plan.mode).toBe(
      'references',
    );
  });

  it('gets a poster: the first frame with content, caught in the fade, lightened', async () => {
    const r = await extractPoster(read(file));
    expect([r.width, r.height]).toEqual([512, 288]);
    const px = (await rgba(r.webp)).data;
    expect(meanLuma(px)).toBeGreaterThan(80);
    // the native frame it is: the best match among the first 0.7 s, each lightened the same way
    const natives = nativeFrames(file, 0.7, 512, 288);
    const scores = natives.map((n) => {
      const lit = new Uint8ClampedArray(n);
      const s = lumaStats(lit);
      lightenFade(lit, s, s);
      return ssim(px, new Uint8Array(lit.buffer), 512, 288);
    });
    const at = scores.indexOf(Math.max(...scores));
    expect(scores[at], `ssim ${scores[at].toFixed(3)} at ${(at / 30).toFixed(3)} s`)
      .toBeGreaterThan(0.9);
    // inside the fade: native ffmpeg's own frame there is dim, and the one before it dimmer
    expect(at / 30).toBeGreaterThan(0.1);
    expect(at / 30).toBeLessThan(0.6);
    expect(meanLuma(natives[at])).toBeLessThan(50);
    expect(meanLuma(natives[at])).toBeGreaterThan(meanLuma(natives[at - 1]));
  }, 60_000);

  it(
    "on the edge runtime's Deno 2.1.4, a fresh isolate: within 2 s of CPU and under the 230 MB warning level",
    async () => {
      const { stdout } = await promisify(execFile)(edgeDenoBin(), [
        'run',
        '-A',
        '--quiet',
        '--config',
        'functions/deno.json',
        'tests/fixtures/hostile-probe.ts',
        'video',
        file,
      ], {
        cwd: repoRoot(),
        timeout: 60_000,
        env: { ...process.env, NO_COLOR: '1', DENO_TLS_CA_STORE: 'system' },
      });
      const r = JSON.parse(stdout.trim().split('\n').pop()!);
      expect(r, JSON.stringify(r)).toMatchObject({ mode: 'keyframes', width: 512, height: 288 });
      // the platform's measures: V8 heap + external (limit 256 MB, its warning at 90 %), the JS
      // thread's CPU (hard limit 2 s over the isolate's life, with the core compiled inside)
      expect(r.peakMb, JSON.stringify(r)).toBeLessThan(230);
      expect(r.cpuMs, JSON.stringify(r)).toBeLessThan(1800);
    },
    60_000,
  );

  it(
    "the pass is planned with the CPU the keyframe pass leaves: a fresh isolate's fit is handed back, a never-fit refused",
    async () => {
      const bytes = read(file);
      const video = readVideo(bytes, 100 * MB);
      const window = {
        all: MAX_WINDOW,
        keyframes: KEYFRAME_WINDOW,
        maxKeyframes: MAX_KEYFRAMES,
        sampleStep: SAMPLE_STEP,
      };
      const plan = (roomMs: number, freshMs: number) =>
        planVideo({
          track: video.track,
          stream: video.stream,
          inputBytes: bytes.length,
          maxPixels: 50_000_000,
          cpu: { roomMs, freshMs, coreCold: true, coreInstance: true },
          window,
        });
      const fresh = cpuRoom(bytes.length).freshMs;
      const ok = plan(fresh, fresh);
      expect(ok.references && 'plan' in ok.references).toBe(true);
      // this isolate has room for the keyframe pass only: the pass goes to a fresh isolate
      const here = plan(ok.cpuMs + 100, fresh).references;
      expect(here && 'refused' in here && here.refused).toBeInstanceOf(FreshIsolateNeeded);
      // not even a fresh isolate has room for it: refused for good
      const never = plan(ok.cpuMs + 100, ok.cpuMs + 100).references;
      expect(never && 'refused' in never && never.refused).toMatchObject({
        code: 'OVER_CPU_BUDGET',
      });
      expect(never && 'refused' in never && never.refused).not.toBeInstanceOf(FreshIsolateNeeded);

      // through extractPoster: an isolate that already spent most of its CPU runs the keyframe pass,
      // then hands the job back (FreshIsolateNeeded) rather than take KIE's cover
      try {
        const first = planPoster(video, bytes.length, 50_000_000);
        await measureRender(() =>
          new Promise((r) => setTimeout(r, cpuRoom(bytes.length).roomMs - (first.cpuMs + 150)))
        );
        const now = planPoster(video, bytes.length, 50_000_000);
        expect(now.references && 'refused' in now.references && now.references.refused)
          .toBeInstanceOf(FreshIsolateNeeded);
        let loads = 0;
        await expect(extractPoster(bytes, { loadCover: () => Promise.resolve((loads++, null)) }))
          .rejects
          .toBeInstanceOf(FreshIsolateNeeded);
        expect(loads).toBe(0);
      } finally {
        resetIsolateBudget();
      }
    },
    60_000,
  );

  it(
    "a source over the pass's memory budget: refused from the plan (or KIE's cover), never decoded past the keyframe",
    async () => {
      const big = padded(file, 12 * MB);
      const plan = planPoster(readVideo(big, 100 * MB), big.length, 50_000_000);
      expect(plan.references && 'refused' in plan.references && plan.references.refused.code).toBe(
        'OVER_MEMORY_BUDGET',
      );
      await expect(extractPoster(big)).rejects.toMatchObject({
        code: 'OVER_MEMORY_BUDGET',
        message: expect.stringMatching(
          /no keyframe of this 3840x2160 .*video shows a picture, and decoding its reference frames to find one needs about \d+ MB with its \d+ MB file/,
        ),
      });
      const cover = new Uint8Array(
        await sharp({ create: { width: 800, height: 450, channels: 3, background: '#3080c0' } })
          .composite([{
            input: await sharp({
              create: { width: 200, height: 200, channels: 3, background: '#ffffff' },
            }).png().toBuffer(),
            left: 50,
            top: 50,
          }])
          .jpeg().toBuffer(),
      );
      const r = await extractPoster(big, { loadCover: () => Promise.resolve(cover) });
      expect([r.width, r.height]).toEqual([512, 288]);
      // the cover's blue, not a frame of the test pattern
      const px = (await rgba(r.webp)).data;
      expect(Math.abs(px[4 * (200 * 512 + 400) + 2] - 0xc0)).toBeLessThan(12);
    },
    60_000,
  );
});
