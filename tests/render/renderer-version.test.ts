// RENDERER_VERSION tied to the bytes (issue 22): a fixed set of inputs per kind (photo previews
// of every format we decode, video posters on both decode paths, the animated clip) is rendered
// on the edge runtime's Deno 2.1.4 as edge-deno.test.ts does (tests/fixtures/renderer-version-
// probe.ts), twice, and each output's sha256, size and thumbhash is compared with
// renderer-version.golden.json, which records the RENDERER_VERSION it was made with:
//   - output differs, same version: fails, bump RENDERER_VERSION and regenerate;
//   - version differs from the golden's: fails, regenerate (the two are committed together);
//   - UPDATE_RENDER_GOLDEN=1 rewrites the golden (not over changed output of an unchanged version).
// The inputs are made here, the same bytes on every machine with this lockfile and Debian's
// ffmpeg: pixels from integer arithmetic (syntheticRgba), JPEG/WebP/PNG by the pinned sharp (PNG
// stored, compression 0, so zlib-ng's match finder plays no part), GIF by the writer below, H.264
// by ffmpeg with one x264 thread (x264's bytes depend on its thread count, which defaults to the
// machine's cores: videoMp4() is not machine-independent) and bitexact muxing. The golden keeps
// each input's sha256 too, so other input bytes are reported as such, not as a renderer change.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CORE_WASM } from '../../local/local-core.ts';
import { edgeDenoBin, repoRoot } from '../../local/paths.ts';
import { RENDERER_VERSION } from '../../shared/preview/version.ts';
import { ffmpeg } from '../fixtures/media.ts';
import { syntheticRgba } from '../fixtures/render-cases.ts';
import type { VersionCase, VersionOutput } from '../fixtures/renderer-version-probe.ts';

const GOLDEN = join(repoRoot(), 'tests/render/renderer-version.golden.json');
const UPDATE = process.env.UPDATE_RENDER_GOLDEN === '1';
const BUMP = 'renderer output changed: bump RENDERER_VERSION in shared/preview/version.ts and regenerate with UPDATE_RENDER_GOLDEN=1';

type Output = Omit<VersionOutput, 'name'>;
type GoldenCase = { name: string; kind: VersionCase['kind']; input: { sha256: string; bytes: number }; output: Output };
type Golden = { rendererVersion: number; generators: Record<string, string>; cases: GoldenCase[] };

// ---------------------------------------------------------------- inputs

/** syntheticRgba's picture without its alpha (RGB). */
function rgbPixels(w: number, h: number): Buffer {
  const rgba = syntheticRgba(w, h);
  const rgb = Buffer.alloc(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) rgb.set(rgba.subarray(i, i + 3), j);
  return rgb;
}

const raw = (w: number, h: number, alpha = false) =>
  alpha
    ? sharp(Buffer.from(syntheticRgba(w, h).buffer), { raw: { width: w, height: h, channels: 4 } })
    : sharp(rgbPixels(w, h), { raw: { width: w, height: h, channels: 3 } });

/**
 * A GIF89a of the RGB picture: a fixed 3-3-2 palette, ordered (Bayer 4×4) dither, LZW as GIF
 * encoders write it (omggif's scheme). Integer arithmetic only: no quantiser whose choices could
 * move between versions.
 */
function gif(w: number, h: number): Buffer {
  const rgb = rgbPixels(w, h);
  const bayer = [0, 8, 2, 10, 12, 4, 14, 6, 3, 11, 1, 9, 15, 7, 13, 5];
  const q = (v: number, levels: number, t: number) => Math.min(levels, ((v * levels * 16 + t * 255) / (255 * 16)) | 0);
  const indices = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      const t = bayer[(y & 3) * 4 + (x & 3)];
      indices[y * w + x] = (q(rgb[p], 7, t) << 5) | (q(rgb[p + 1], 7, t) << 2) | q(rgb[p + 2], 3, t);
    }
  }
  const palette: number[] = [];
  for (let i = 0; i < 256; i++) palette.push(Math.round(((i >> 5) & 7) * 255 / 7), Math.round(((i >> 2) & 7) * 255 / 7), Math.round((i & 3) * 255 / 3));
  // LZW, minimum code size 8
  const codes: number[] = [];
  let acc = 0;
  let bits = 0;
  const emit = (code: number, size: number) => {
    acc |= code << bits;
    bits += size;
    for (; bits >= 8; bits -= 8, acc >>>= 8) codes.push(acc & 0xff);
  };
  const clear = 256;
  const eoi = 257;
  let next = eoi + 1;
  let size = 9;
  let table = new Map<number, number>();
  emit(clear, size);
  let code = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const key = (code << 8) | indices[i];
    const hit = table.get(key);
    if (hit !== undefined) {
      code = hit;
      continue;
    }
    emit(code, size);
    if (next === 4096) {
      emit(clear, size);
      next = eoi + 1;
      size = 9;
      table = new Map();
    } else {
      if (next >= 1 << size) size++;
      table.set(key, next++);
    }
    code = indices[i];
  }
  emit(code, size);
  emit(eoi, size);
  if (bits > 0) codes.push(acc & 0xff);
  const blocks: number[] = [8];
  for (let i = 0; i < codes.length; i += 255) {
    const chunk = codes.slice(i, i + 255);
    blocks.push(chunk.length, ...chunk);
  }
  blocks.push(0);
  const u16 = (v: number) => [v & 0xff, v >> 8];
  return Buffer.from([
    ...Buffer.from('GIF89a'), ...u16(w), ...u16(h), 0xf7, 0, 0, ...palette, // global palette, 256 colours
    0x2c, ...u16(0), ...u16(0), ...u16(w), ...u16(h), 0, ...blocks, 0x3b,
  ]);
}

/** H.264 MP4 of videoMp4()'s moving test pattern with grain and a fade-in, made the same on any machine. */
function h264(file: string, w: number, h: number, seconds: number, o: { fps: number; black: number; fade: number; keyint?: number }): string {
  ffmpeg([
    '-f', 'lavfi', '-i', `testsrc2=s=${w}x${h}:r=${o.fps}:d=${seconds}`,
    '-vf', `noise=alls=6:allf=t:all_seed=1,fade=in:st=${o.black}:d=${o.fade},format=yuv420p`,
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-threads', '1',
    ...(o.keyint ? ['-x264-params', `keyint=${o.keyint}:min-keyint=${o.keyint}:scenecut=0`] : []),
    '-fflags', '+bitexact', '-flags:v', '+bitexact', '-movflags', '+faststart', file,
  ]);
  return file;
}

async function makeInputs(dir: string): Promise<VersionCase[]> {
  const put = async (name: string, bytes: Buffer | Promise<Buffer>) => {
    const file = join(dir, name);
    writeFileSync(file, await bytes);
    return file;
  };
  return [
    { name: 'PNG 1000×750 RGBA', kind: 'photo', file: await put('rgba.png', raw(1000, 750, true).png({ compressionLevel: 0, adaptiveFiltering: true }).toBuffer()) },
    { name: 'PNG 900×600 interlaced (Adam7)', kind: 'photo', file: await put('adam7.png', raw(900, 600).png({ compressionLevel: 0, adaptiveFiltering: true, progressive: true }).toBuffer()) },
    { name: 'JPEG 1200×900 q90', kind: 'photo', file: await put('a.jpeg', raw(1200, 900).jpeg({ quality: 90 }).toBuffer()) },
    { name: 'JPEG 1000×700 q90, EXIF orientation 6', kind: 'photo', file: await put('o6.jpeg', raw(1000, 700).jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer()) },
    { name: 'WebP 1024×768 lossy', kind: 'photo', file: await put('a.webp', raw(1024, 768).webp({ quality: 90 }).toBuffer()) },
    { name: 'GIF 800×600', kind: 'photo', file: await put('a.gif', gif(800, 600)) },
    { name: 'H.264 640×360 poster past a 0.4 s black start', kind: 'poster', file: h264(join(dir, 'p.mp4'), 640, 360, 2, { fps: 30, black: 0.4, fade: 0.3 }) },
    // above 2560×1440 only keyframes are decoded (the 4K path): keyframe 0 is black, 0.5 s is not
    { name: 'H.264 2688×1512 poster, keyframes only', kind: 'poster', file: h264(join(dir, 'k.mp4'), 2688, 1512, 1, { fps: 10, black: 0, fade: 0.5, keyint: 5 }) },
    { name: 'H.264 640×360 6 s animated clip', kind: 'animated', file: h264(join(dir, 'a.mp4'), 640, 360, 6, { fps: 24, black: 0, fade: 0.5 }) },
  ];
}

// ---------------------------------------------------------------- rendering

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function onEdgeDeno(dir: string, cases: VersionCase[]): { deno: string; passes: VersionOutput[][]; ms: number[] } {
  const root = repoRoot();
  const r = spawnSync(edgeDenoBin(), [
    'run', '--quiet', '--no-prompt',
    '--config', join(root, 'functions/deno.json'),
    `--allow-read=${dir},${LOCAL_CORE_WASM.pathname}`,
    join(root, 'tests/fixtures/renderer-version-probe.ts'),
    JSON.stringify(cases),
  ], { cwd: root, encoding: 'utf8', env: { ...process.env, DENO_TLS_CA_STORE: 'system', NO_COLOR: '1' }, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`renderer-version-probe.ts exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

let dir: string;
let cases: GoldenCase[];
let generators: Record<string, string>;
let probe: ReturnType<typeof onEdgeDeno>;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'render-version-'));
  const t0 = Date.now();
  const inputs = await makeInputs(dir);
  const t1 = Date.now();
  probe = onEdgeDeno(dir, inputs);
  console.log(`inputs ${t1 - t0} ms; rendering on Deno ${probe.deno}: passes ${probe.ms.join(' + ')} ms, ${Date.now() - t1} ms with start-up`);
  cases = inputs.map((c, i) => {
    const bytes = readFileSync(c.file);
    const { name: _, ...output } = probe.passes[0][i];
    return { name: c.name, kind: c.kind, input: { sha256: sha256(bytes), bytes: bytes.length }, output };
  });
  generators = {
    ffmpeg: execFileSync('ffmpeg', ['-version']).toString().split('\n')[0],
    sharp: `${sharp.versions.sharp} (libvips ${sharp.versions.vips}, mozjpeg ${sharp.versions.mozjpeg}, libwebp ${sharp.versions.webp})`,
  };
}, 120_000);
afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

const differs = (a: Output, b: Output) => JSON.stringify(a) !== JSON.stringify(b);

describe('RENDERER_VERSION is tied to the renderer\'s bytes', () => {
  it('renders every case on the edge runtime\'s Deno 2.1.4, the same bytes twice', () => {
    expect(probe.deno).toBe('2.1.4');
    expect(probe.passes[0].map((o) => o.name)).toEqual(cases.map((c) => c.name));
    // pass 2 reuses pass 1's ffmpeg instance and runs seconds later: nothing in the outputs may
    // depend on the instance's history or on the time (an MP4's creation time, say)
    expect(probe.passes[1], 'the renderer is not deterministic: the golden cannot hold its bytes').toEqual(probe.passes[0]);
    for (const c of cases) {
      expect(c.output.bytes, c.name).toBeGreaterThan(500);
      expect(Math.max(c.output.width, c.output.height), c.name).toBe(c.kind === 'animated' ? 320 : 512);
    }
  });

  it(`matches${UPDATE ? ' (rewrites)' : ''} renderer-version.golden.json, made with the current RENDERER_VERSION`, () => {
    expect(probe.passes[1], 'not deterministic').toEqual(probe.passes[0]);
    const golden: Golden | null = existsSync(GOLDEN) ? JSON.parse(readFileSync(GOLDEN, 'utf8')) : null;
    const byName = new Map(golden?.cases.map((c) => [c.name, c]) ?? []);
    // cases whose input is the golden's and whose output is not
    const changed = cases.filter((c) => {
      const g = byName.get(c.name);
      return g && g.input.sha256 === c.input.sha256 && differs(g.output, c.output);
    }).map((c) => ({ name: c.name, golden: byName.get(c.name)!.output, now: c.output }));

    if (UPDATE) {
      // the golden follows a bump; it never absorbs a change of an unchanged version
      if (golden?.rendererVersion === RENDERER_VERSION) expect(changed, `${BUMP} (first the bump: RENDERER_VERSION is still ${RENDERER_VERSION})`).toEqual([]);
      const next: Golden = { rendererVersion: RENDERER_VERSION, generators, cases };
      writeFileSync(GOLDEN, `${JSON.stringify(next, null, 2)}\n`);
      console.log(`wrote ${GOLDEN} for RENDERER_VERSION ${RENDERER_VERSION}`);
      return;
    }

    expect(golden, `${GOLDEN} is missing: make it with UPDATE_RENDER_GOLDEN=1`).not.toBeNull();
    expect(
      golden!.rendererVersion,
      `RENDERER_VERSION is ${RENDERER_VERSION} but the golden was made with ${golden!.rendererVersion}: regenerate it with ` +
        'UPDATE_RENDER_GOLDEN=1 npx vitest run tests/render/renderer-version.test.ts and commit it with the bump',
    ).toBe(RENDERER_VERSION);
    expect(cases.map((c) => c.name), 'the cases are not the golden\'s: regenerate with UPDATE_RENDER_GOLDEN=1')
      .toEqual(golden!.cases.map((c) => c.name));
    // the golden can judge the renderer only on the inputs it was made from
    const otherInputs = cases.filter((c) => byName.get(c.name)!.input.sha256 !== c.input.sha256).map((c) => c.name);
    expect(
      otherInputs,
      `these inputs are not the bytes the golden was made from, so it cannot judge the renderer on them (generators here: ` +
        `${JSON.stringify(generators)}; the golden's: ${JSON.stringify(golden!.generators)}); if shared/preview is as it was ` +
        'when the golden was made, regenerate with UPDATE_RENDER_GOLDEN=1',
    ).toEqual([]);
    expect(changed, BUMP).toEqual([]);
  });
});
