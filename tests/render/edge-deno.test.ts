// The render path on the Deno the platform's edge runtime embeds (2.1.4, edgeDenoBin()), with the
// functions' own import map (functions/deno.json: npm packages from the registry, no
// node_modules) and read access to the inputs and the ffmpeg core only: JPEG (one with EXIF
// orientation), PNG with alpha, WebP, GIF previews, an MP4 poster past a black fade-in, and the
// encoder and thumbhash alone. The same cases rendered here in Node must give the same bytes:
// every step is our JS or wasm (libjpeg-turbo, libwebp, ffmpeg), deterministic on any engine.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CORE_WASM } from '../../local/local-core.ts';
import { edgeDenoBin, repoRoot } from '../../local/paths.ts';
import { encodePhoto, photoPng, videoMp4 } from '../fixtures/media.ts';
import { type RenderCase, renderCase, type RenderOutput } from '../fixtures/render-cases.ts';

let dir: string;
let cases: RenderCase[];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'render-edge-'));
  const photo = (w: number, h: number, format: 'jpeg' | 'png' | 'webp' | 'gif', opts: { alpha?: boolean; orientation?: number } = {}) =>
    encodePhoto(photoPng(dir, w, h, { alpha: opts.alpha }), format, join(dir, `${w}x${h}${opts.alpha ? 'a' : ''}${opts.orientation ?? ''}.${format}`), opts);
  cases = [
    { name: 'JPEG 1200×900', kind: 'photo', file: await photo(1200, 900, 'jpeg') },
    { name: 'JPEG 1000×700, EXIF orientation 6', kind: 'photo', file: await photo(1000, 700, 'jpeg', { orientation: 6 }) },
    { name: 'PNG 1000×750 with alpha', kind: 'photo', file: await photo(1000, 750, 'png', { alpha: true }) },
    { name: 'WebP 1024×1024', kind: 'photo', file: await photo(1024, 1024, 'webp') },
    { name: 'GIF 800×600', kind: 'photo', file: await photo(800, 600, 'gif') },
    { name: 'MP4 1280×720 poster past a 0.7 s black start', kind: 'poster', file: videoMp4(dir, 1280, 720, 3, { black: 0.7, fade: 0.3 }) },
    { name: 'encode + thumbhash of a 300×200 RGBA bitmap', kind: 'encode' },
  ];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function onEdgeDeno(): { deno: string; thumbhash: string; outputs: RenderOutput[] } {
  const root = repoRoot();
  const r = spawnSync(edgeDenoBin(), [
    'run', '--quiet', '--no-prompt',
    '--config', join(root, 'functions/deno.json'),
    // what this probe may read: its inputs and the ffmpeg core (a function reads nothing at all;
    // the core comes from storage there)
    `--allow-read=${dir},${LOCAL_CORE_WASM.pathname}`,
    join(root, 'tests/fixtures/edge-render-probe.ts'),
    JSON.stringify(cases),
  ], { cwd: root, encoding: 'utf8', env: { ...process.env, DENO_TLS_CA_STORE: 'system', NO_COLOR: '1' }, maxBuffer: 1 << 24 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

describe('the render path on the edge runtime\'s Deno 2.1.4', () => {
  it('renders every case, with the same output bytes as in Node', async () => {
    const edge = onEdgeDeno();
    expect(edge.deno).toBe('2.1.4');
    // thumbhash comes from the npm registry (Deno's npm cache) through the functions' import
    // map, not from the project's node_modules
    expect(edge.thumbhash).toMatch(/\/npm\/registry\.npmjs\.org\/thumbhash\/0\.1\.1\//);
    expect(edge.thumbhash).not.toContain('/node_modules/');
    const node: RenderOutput[] = [];
    for (const c of cases) node.push(await renderCase(c, async (f) => new Uint8Array(await readFile(f))));
    // the outputs are real previews: the sizes of the preview box, WebP bytes, a thumbhash each
    expect(node.map((o) => [o.name, o.width, o.height])).toEqual([
      ['JPEG 1200×900', 512, 384],
      ['JPEG 1000×700, EXIF orientation 6', 358, 512],
      ['PNG 1000×750 with alpha', 512, 384],
      ['WebP 1024×1024', 512, 512],
      ['GIF 800×600', 512, 384],
      ['MP4 1280×720 poster past a 0.7 s black start', 512, 288],
      ['encode + thumbhash of a 300×200 RGBA bitmap', 300, 200],
    ]);
    for (const o of node) {
      expect(o.bytes, o.name).toBeGreaterThan(500);
      expect(o.thumbhash, o.name).toMatch(/^[A-Za-z0-9+/]{20,}=*$/);
    }
    expect(edge.outputs).toEqual(node);
  }, 180_000);
});
