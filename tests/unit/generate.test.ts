// generatePreview behind its narrow interfaces (store, objects, fetch, render), swapped for
// in-memory fakes: the order of claim → fetch → render → check → upload → complete, the
// fencing of a worker that lost its claim, and the mapping of errors to fail_preview.
import { describe, expect, it } from 'vitest';
import type { Claim, PreviewStore } from '../../shared/db.ts';
import { PreviewError } from '../../shared/errors.ts';
import { generatePreview, type PreviewDeps } from '../../shared/preview/generate.ts';
import type { ObjectStore } from '../../shared/storage.ts';

const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
const claim: Claim = { id: '11111111-1111-4111-8111-111111111111', user_id: 'u1', type: 'photo', kind: 'image', original_path: null, source_url: 'https://kie.example/a.jpg', model: null, attempt: 3, lease_ms: 120_000,
  target_path: 'u1/previews/11111111-1111-4111-8111-111111111111_preview.webp', original_stem: 'u1/originals/11111111-1111-4111-8111-111111111111', cover_url: null };

function fakes(opts: { current?: boolean; fetchError?: PreviewError } = {}) {
  const calls: string[] = [];
  const objects = new Map<string, Uint8Array>();
  const store: PreviewStore = {
    claim: async () => (calls.push('claim'), claim),
    isCurrent: async () => (calls.push('isCurrent'), opts.current ?? true),
    complete: async (_c, r) => (calls.push(`complete ${r.path} ${r.originalPath}`), true),
    fail: async (_c, e) => (calls.push(`fail ${e.code} ${e.message} ${e.retryable}`), e.retryable ? 'retry' : 'failed'),
    requestAnimated: async (id) => (calls.push(`requestAnimated ${id}`), true),
    releaseClaim: async (c) => (calls.push(`releaseClaim ${c.attempt}`), true),
    releaseDispatches: async (ids) => void calls.push(`releaseDispatches ${ids.join(' ')}`),
    dispatchNext: async () => (calls.push('dispatchNext'), 0),
  };
  const objectStore: ObjectStore = {
    upload: async (path, bytes) => void (calls.push(`upload ${path}`), objects.set(path, bytes)),
    size: async (path) => objects.get(path)?.length ?? null,
    download: async () => new Uint8Array(),
    signMany: async () => new Map(),
    remove: async (paths) => void calls.push(`remove ${paths.join(' ')}`),
  };
  const deps: PreviewDeps = {
    store,
    objects: objectStore,
    fetchSource: async () => {
      calls.push('fetch');
      if (opts.fetchError) throw opts.fetchError;
      return { bytes: JPEG, contentType: 'image/jpeg' };
    },
    renderPhoto: async () => (calls.push('render'), { webp: new Uint8Array([1, 2, 3]), width: 512, height: 320, thumbhash: 'abc' }),
    renderPoster: async () => {
      throw new Error('not a video');
    },
    config: { supabaseUrl: 'https://abc.supabase.co', preview: { bucket: 'generations', maxSide: 512, quality: 80, maxSourceBytes: 1e6, maxPixels: 1e7, downloadTimeoutMs: 1000, allowedPrivateHosts: [], ffmpegCoreWasmUrl: undefined, ffmpegCoreWasmPath: 'x' } },
  };
  return { deps, calls, objects };
}

describe('generatePreview', () => {
  it('claims, fetches, renders, checks the claim, uploads original and preview, then completes', async () => {
    const { deps, calls } = fakes();
    const out = await generatePreview(claim.id, deps);
    expect(out).toMatchObject({ result: 'ready', path: `u1/previews/${claim.id}_preview.webp`, attempt: 3 });
    expect(calls).toEqual([
      'claim', 'fetch', 'render', 'isCurrent',
      `upload u1/originals/${claim.id}.jpg`, `upload u1/previews/${claim.id}_preview.webp`,
      `complete u1/previews/${claim.id}_preview.webp u1/originals/${claim.id}.jpg`,
    ]);
  });

  it('a worker that lost its claim while rendering uploads nothing', async () => {
    const { deps, calls, objects } = fakes({ current: false });
    const out = await generatePreview(claim.id, deps);
    expect(out.result).toBe('fenced');
    expect(objects.size).toBe(0);
    expect(calls.some((c) => c.startsWith('complete') || c.startsWith('fail'))).toBe(false);
  });

  it('maps a download error to fail_preview with its code, message and retryability', async () => {
    const { deps, calls } = fakes({ fetchError: new PreviewError('SOURCE_NOT_FOUND', 'Download failed: 404') });
    const out = await generatePreview(claim.id, deps);
    expect(out).toMatchObject({ result: 'failed', code: 'SOURCE_NOT_FOUND', error: 'Download failed: 404' });
    expect(calls).toContain('fail SOURCE_NOT_FOUND Download failed: 404 false');
  });

  it('an unexpected error becomes INTERNAL and retryable', async () => {
    const { deps } = fakes();
    deps.renderPhoto = async () => {
      throw new TypeError('boom');
    };
    const out = await generatePreview(claim.id, deps);
    expect(out).toMatchObject({ result: 'retry', code: 'INTERNAL', error: 'Internal error: boom' });
  });
});

describe('generatePreview with an asset already in our storage', () => {
  it('reads the owner\'s own object and keeps it as the original (no copy)', async () => {
    const { deps, calls } = fakes();
    const own = { ...claim, source_url: `https://abc.supabase.co/storage/v1/object/public/generations/u1/uploads/${claim.id}.jpg` };
    deps.store.claim = async () => own;
    deps.objects.download = async (path) => (calls.push(`download ${path}`), JPEG);
    const out = await generatePreview(claim.id, deps);
    expect(out.result).toBe('ready');
    expect(calls).toContain(`download u1/uploads/${claim.id}.jpg`);
    expect(calls.filter((c) => c.startsWith('upload'))).toEqual([`upload u1/previews/${claim.id}_preview.webp`]);
  });

  it('takes original_path before the URL, and the URL when the stored original is gone', async () => {
    const stored = { ...claim, original_path: `u1/image/${claim.id}_1700000000000.jpg` };
    let { deps, calls } = fakes();
    deps.store.claim = async () => stored;
    deps.objects.download = async (path) => (calls.push(`download ${path}`), JPEG);
    expect((await generatePreview(claim.id, deps)).result).toBe('ready');
    expect(calls).toContain(`download ${stored.original_path}`);
    expect(calls).not.toContain('fetch');
    expect(calls).toContain(`complete u1/previews/${claim.id}_preview.webp ${stored.original_path}`);

    ({ deps, calls } = fakes());
    deps.store.claim = async () => stored;
    deps.objects.download = async (path) => {
      calls.push(`download ${path}`);
      throw new PreviewError('SOURCE_NOT_FOUND', 'Download failed: 404');
    };
    expect((await generatePreview(claim.id, deps)).result).toBe('ready');
    expect(calls.slice(0, 2)).toEqual([`download ${stored.original_path}`, 'fetch']);
    expect(calls).toContain(`complete u1/previews/${claim.id}_preview.webp u1/originals/${claim.id}.jpg`);
  });

  it('refuses an original_path outside the owner\'s folder (SOURCE_FORBIDDEN), reading nothing', async () => {
    for (const path of ['victim/image/x.jpg', 'u1/../victim/x.jpg', 'u1x/image/x.jpg']) {
      const { deps, calls } = fakes();
      deps.store.claim = async () => ({ ...claim, original_path: path });
      deps.objects.download = async (p) => (calls.push(`download ${p}`), JPEG);
      expect(await generatePreview(claim.id, deps), path).toMatchObject({ result: 'failed', code: 'SOURCE_FORBIDDEN' });
      expect(calls.some((c) => c.startsWith('download') || c === 'fetch'), path).toBe(false);
    }
  });

  it('refuses another user\'s object or another bucket named by the URL (SOURCE_FORBIDDEN), reading nothing', async () => {
    for (const url of [
      'https://abc.supabase.co/storage/v1/object/public/generations/victim/originals/x.png',
      'https://abc.supabase.co/storage/v1/object/authenticated/other-bucket/u1/x.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1/../victim/x.png',
      // an encoded separator or backslash passes a per-segment check, then resolves in the request
      'https://abc.supabase.co/storage/v1/object/public/generations/u1%2F..%2Fvictim/x.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1%2f..%2fvictim%2fx.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1%5C..%5Cvictim/x.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1/%2e%2e/victim/x.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1%252F..%252Fvictim/x.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1/x%00.png',
      'https://abc.supabase.co\\storage/v1/object/public/generations/u1/x.png',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1/%E2%82%AC.png',
      // our origin, but not an object route: refused, never fetched as a public URL
      'https://abc.supabase.co/rest/v1/generations?select=*',
      'https://abc.supabase.co/storage/v1/object/public/generations/u1%2F..%2F..%2F..%2F..%2Fauth/v1/admin/users',
    ]) {
      const { deps, calls } = fakes();
      deps.store.claim = async () => ({ ...claim, source_url: url });
      deps.objects.download = async (path) => (calls.push(`download ${path}`), JPEG);
      const out = await generatePreview(claim.id, deps);
      expect(out, url).toMatchObject({ result: 'failed', code: 'SOURCE_FORBIDDEN' });
      expect(calls.some((c) => c.startsWith('download') || c.startsWith('upload') || c === 'fetch'), url).toBe(false);
    }
  });
});
