// The ffmpeg core is verified: the pinned digest is the installed core's (a version bump that
// forgets it fails here), the deployed loader compiles nothing whose digest differs
// (CORE_INTEGRITY, terminal, through the poster path unchanged), and after a rejection it
// neither refetches 32 MB per job nor keeps refusing a core that was fixed.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LOCAL_CORE_WASM, useLocalFfmpegCore } from '../../local/local-core.ts';
import { loadConfig } from '../../shared/config.ts';
import { ERROR_CODES, PreviewError, toPreviewError } from '../../shared/errors.ts';
import { FFMPEG_CORE_SHA256, sha256Hex } from '../../shared/preview/core-digest.ts';
import { CORE_RECHECK_MS, type CoreSource, verifiedCoreLoader } from '../../shared/preview/core-source.ts';
import { CODEC_SAMPLES } from '../../shared/preview/samples.ts';
import { extractPoster } from '../../shared/preview/video.ts';
import { decodeBase64, setWasmSource } from '../../shared/preview/wasm.ts';

const root = join(import.meta.dirname, '..', '..');
const SOURCE: CoreSource = { url: 'https://cdn.test/ffmpeg-core.wasm', headers: {}, from: 'FFMPEG_CORE_WASM_URL' };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** fetch stubbed with a queue of answers; records each request's method. */
function stubFetch(answers: (() => Response)[]) {
  const calls: string[] = [];
  vi.stubGlobal('fetch', vi.fn(async (_url: string, init?: RequestInit) => {
    calls.push(init?.method ?? 'GET');
    const next = answers.shift();
    if (!next) throw new Error('unexpected fetch');
    return next();
  }));
  return calls;
}

async function rejection(p: Promise<unknown>): Promise<PreviewError> {
  const err = await p.then(() => null, (e) => e);
  expect(err).toBeInstanceOf(PreviewError);
  return err as PreviewError;
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  useLocalFfmpegCore();
});

describe('the pinned ffmpeg core', () => {
  it('is the installed @ffmpeg/core, the version package.json pins, and the one deploy and the config name', async () => {
    const bytes = new Uint8Array(readFileSync(LOCAL_CORE_WASM));
    expect(sha(bytes)).toBe(FFMPEG_CORE_SHA256);
    expect(await sha256Hex(bytes)).toBe(FFMPEG_CORE_SHA256);
    const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).dependencies['@ffmpeg/core'];
    const installed = JSON.parse(readFileSync(join(root, 'node_modules/@ffmpeg/core/package.json'), 'utf8')).version;
    expect(installed).toBe(pinned);
    // the object path names the version: a bump updates it and the digest together
    const config = loadConfig((n) => ({ SUPABASE_URL: 'https://x.supabase.co', SUPABASE_DB_URL: 'postgresql://x', SUPABASE_SERVICE_ROLE_KEY: 'k' } as Record<string, string>)[n]);
    expect(config.preview.ffmpegCoreWasmPath).toBe(`_runtime/ffmpeg-core-${pinned}.wasm`);
    expect(readFileSync(join(root, 'scripts/deploy.ts'), 'utf8')).toContain(`path: '_runtime/ffmpeg-core-${pinned}.wasm'`);
  });

  it('CORE_INTEGRITY is a terminal code', () => {
    expect(ERROR_CODES.CORE_INTEGRITY).toEqual({ retryable: false });
  });
});

describe('verifiedCoreLoader', () => {
  const good = new TextEncoder().encode('the core this version ships');
  const bad = new TextEncoder().encode('the core anon uploaded.....'); // same size
  const wasm = (b: Uint8Array, etag?: string) => () => new Response(b.slice(), { headers: etag ? { etag } : {} });
  const head = (etag: string) => () => new Response(null, { headers: { etag } });

  it('returns bytes whose digest is the pinned one; refuses others with a message naming the source and both digests', async () => {
    expect(bad.length).toBe(good.length);
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    stubFetch([wasm(good)]);
    expect(await verifiedCoreLoader(() => SOURCE, sha(good))()).toEqual(good);
    stubFetch([wasm(bad)]);
    const err = await rejection(verifiedCoreLoader(() => SOURCE, sha(good))());
    expect(err.code).toBe('CORE_INTEGRITY');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('FFMPEG_CORE_WASM_URL');
    expect(err.message).toContain(`sha256 ${sha(bad)}`);
    expect(err.message).toContain(`expected ${sha(good)}`);
    const line = errors.mock.calls.map((c) => String(c[0])).find((l) => l.startsWith('[Preview] ffmpeg core rejected'));
    expect(line).toContain(`expected=${sha(good)}`);
    expect(line).toContain(`found=${sha(bad)}`);
    expect(line).toContain('from=FFMPEG_CORE_WASM_URL');
  });

  it('after a rejection: the same ETag is refused after a HEAD only; another ETag is fetched and verified at once', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const load = verifiedCoreLoader(() => SOURCE, sha(good));
    const calls = stubFetch([wasm(bad, '"bad"'), head('"bad"'), head('"bad"'), head('"good"'), wasm(good, '"good"')]);
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY');
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY');
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY');
    expect(calls).toEqual(['GET', 'HEAD', 'HEAD']);
    expect(await load()).toEqual(good);
    expect(calls).toEqual(['GET', 'HEAD', 'HEAD', 'HEAD', 'GET']);
  });

  it('without an ETag (or when the HEAD fails): the rejection is kept for CORE_RECHECK_MS, then the core is fetched again', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    let now = 1_000_000;
    const load = verifiedCoreLoader(() => SOURCE, sha(good), () => now);
    const unanswered = () => new Response(null, { status: 503 });
    const calls = stubFetch([wasm(bad), wasm(bad, '"bad"'), unanswered, unanswered, wasm(good)]);
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY');
    now += CORE_RECHECK_MS - 1;
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY'); // from memory, nothing fetched
    expect(calls).toEqual(['GET']);
    now += 2;
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY'); // fetched again: still bad
    expect(calls).toEqual(['GET', 'GET']);
    now += 1; // its ETag is asked; the HEAD fails: still within the window
    expect((await rejection(load())).code).toBe('CORE_INTEGRITY');
    now += CORE_RECHECK_MS;
    expect(await load()).toEqual(good);
    expect(calls).toEqual(['GET', 'GET', 'HEAD', 'HEAD', 'GET']);
  });

  it('a source that fails is an ordinary (retryable) error, not CORE_INTEGRITY', async () => {
    stubFetch([() => new Response('no', { status: 500 })]);
    const err = await verifiedCoreLoader(() => SOURCE, sha(good))().then(() => null, (e) => e);
    expect(toPreviewError(err).code).toBe('INTERNAL');
  });
});

describe('a poster with a tampered core', () => {
  it('fails CORE_INTEGRITY through extractPoster (never compiled, no cover fallback), and the fixed core renders it in the same process', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const real = new Uint8Array(readFileSync(LOCAL_CORE_WASM));
    const tampered = real.slice();
    for (let i = 1 << 20; i < (1 << 20) + 1024; i++) tampered[i] ^= 0xff;
    const compile = vi.spyOn(WebAssembly, 'compile');
    const calls = stubFetch([
      () => new Response(tampered, { headers: { etag: '"t"' } }),
      () => new Response(null, { headers: { etag: '"r"' } }),
      () => new Response(real, { headers: { etag: '"r"' } }),
    ]);
    setWasmSource('ffmpeg-core', verifiedCoreLoader(() => SOURCE));
    const video = decodeBase64(CODEC_SAMPLES.mp4.base64);
    let covers = 0;
    const err = await rejection(extractPoster(video, { loadCover: async () => (covers++, null) }));
    expect(err.code).toBe('CORE_INTEGRITY');
    expect(toPreviewError(err)).toBe(err); // the job runner's failure path keeps the code
    expect(covers).toBe(0);
    expect(compile).not.toHaveBeenCalled();
    // the next poster: the stored core was fixed meanwhile (another ETag)
    const poster = await extractPoster(video);
    expect(poster.width).toBe(64);
    // compiled once, the verified bytes (the WebP encoder's own wasm is compiled beside it)
    const cores = compile.mock.calls.map((c) => c[0] as Uint8Array).filter((b) => b.byteLength === real.length);
    expect(cores.map((b) => sha(b))).toEqual([FFMPEG_CORE_SHA256]);
    expect(calls).toEqual(['GET', 'HEAD', 'GET']);
  }, 60_000);
});
