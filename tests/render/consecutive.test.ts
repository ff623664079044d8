import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coreInstances, withCore } from '../../shared/preview/ffmpeg.ts';
import { extractPoster } from '../../shared/preview/video.ts';
import { read, videoMp4 } from '../fixtures/media.ts';
import { meanLuma, rgba } from '../fixtures/quality.ts';
import { LOCAL_CORE_WASM } from '../../local/local-core.ts';
import { edgeDenoBin } from '../../local/paths.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const DENO = edgeDenoBin();

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-consecutive-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as any).code ?? String(err);
  }
}

describe('consecutive posters in one process', () => {
  it('20 mixed calls (a NO_VIDEO_FRAME among them) reuse one ffmpeg instance and give correct posters', async () => {
    const cases = [
      { file: videoMp4(dir, 1920, 1080, 3, { fade: 0.5 }), size: [512, 288], bright: true },
      { file: videoMp4(dir, 1280, 720, 4, { black: 0.7, fade: 0.3 }), size: [512, 288], bright: true },
      { file: videoMp4(dir, 640, 360, 1, { fade: 0, rotate: 90 }), size: [288, 512], bright: true },
      { file: 'garbage', size: null, bright: false },
      { file: videoMp4(dir, 320, 240, 0.3, { fade: 0 }), size: [320, 240], bright: true },
      { file: videoMp4(dir, 320, 240, 1, { black: 5, fade: 0.1 }), size: [320, 240], bright: false },
    ];
    const good = read(cases[4].file);
    const garbage = good.slice();
    for (let i = 64; i < garbage.length; i++) garbage[i] = (i * 31) & 255;
    const input = (f: string) => (f === 'garbage' ? garbage : read(f));

    await extractPoster(good); // this process's instance exists from here on
    const before = coreInstances();
    for (let i = 0; i < 20; i++) {
      const c = cases[i % cases.length];
      if (!c.size) {
        expect(await code(extractPoster(input(c.file)))).toBe('NO_VIDEO_FRAME');
        continue;
      }
      const r = await extractPoster(input(c.file));
      expect([r.width, r.height]).toEqual(c.size);
      const px = await rgba(r.webp);
      expect([px.width, px.height]).toEqual(c.size);
      if (c.bright) expect(meanLuma(px.data)).toBeGreaterThan(60);
    }
    // no call crashed: the instance was never replaced
    expect(coreInstances()).toBe(before);
  }, 180_000);

  it('an instance that failed is dropped; a failure on a reused instance is retried once on a fresh one', async () => {
    const file = read(videoMp4(dir, 320, 240, 1, { fade: 0 }));
    await extractPoster(file);
    const before = coreInstances();
    let attempts = 0;
    const r = await withCore(() => {
      attempts++;
      if (attempts === 1) throw new Error('memory access out of bounds');
      return 'second';
    });
    expect(r).toBe('second');
    expect(attempts).toBe(2);
    expect(coreInstances()).toBe(before + 1);
    // failing again on the fresh instance: no third attempt; the next call gets a new instance
    let again = 0;
    await expect(withCore(() => {
      again++;
      throw new Error('trap');
    })).rejects.toThrow('trap');
    expect(again).toBe(2);
    const ok = await extractPoster(file);
    expect(ok.width).toBe(320);
    expect(coreInstances()).toBe(before + 3);
  });

  it('5 posters of 1080p 10 s and 720p in a row in one edge-Deno process stay under 256 MB, by the platform\'s measure and by RSS', async () => {
    const hd = videoMp4(dir, 1920, 1080, 10, { fade: 0.5 });
    const sd = videoMp4(dir, 1280, 720, 10, { fade: 0.5 });
    const files = [hd, sd, hd, sd, hd];
    // the edge runtime's Deno and import map, and its capabilities: reads of the inputs and the
    // core only, no FFI, no subprocesses, no workers
    const child = spawn(DENO, ['run', '--quiet', '--no-prompt', '--config', `${ROOT}functions/deno.json`,
      `--allow-read=${dir},${LOCAL_CORE_WASM.pathname}`, `${ROOT}bench/posters.ts`, '--hold', ...files], {
      cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, DENO_TLS_CA_STORE: 'system', NO_COLOR: '1' },
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const hwm = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (c) => reject(new Error(`posters.ts exited (${c}) before done: ${err}${out}`)));
      child.stdout.on('data', (d) => {
        out += d;
        if (/^done$/m.test(out)) {
          // VmHWM: this process's own peak RSS (not inherited across exec, unlike ru_maxrss)
          const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
          resolve(Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024);
          child.stdin.end();
        }
      });
    });
    const calls = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    writeFileSync(join(dir, 'posters.json'), JSON.stringify({ hwm, calls }));
    expect(calls).toHaveLength(5);
    for (const c of calls) expect([c.error, c.width, c.height]).toEqual([undefined, 512, 288]);
    expect(calls.at(-1).instances).toBe(1);
    // the platform's measure (V8 used heap + external, which counts the core's wasm memory):
    // at least the core's linear memory, and under the 256 MB limit at every call
    const heapExternal = calls.map((c) => c.heapExternalMb);
    expect(Math.min(...heapExternal), JSON.stringify(heapExternal)).toBeGreaterThan(30);
    expect(Math.max(...heapExternal), JSON.stringify(heapExternal)).toBeLessThan(256);
    // measured ≈210–220 MB (one fresh instance per call: 290 MB after three); the bound is the
    // runtime's limit, generous against allocator and GC timing
    expect(hwm).toBeGreaterThan(50);
    expect(hwm).toBeLessThan(256);
  }, 240_000);
});
