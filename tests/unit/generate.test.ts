// The `preview` job behind its narrow interfaces, swapped for in-memory fakes: the handler
// (previewHandler(deps).run(job, ctx): read → render → still ours? → upload) on its own, and the
// job runner (drain() of shared/jobs/runner.ts with a fake JobStore) around it: the order of
// claim → read → render → check → upload → complete, the fencing of a worker that lost its claim
// before uploading or whose completion comes too late, the mapping of errors to the one failure
// path, and the guards on a source that is already in our storage.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import { drain, type JobContext, type JobDone, type JobFenced, type JobHandler } from '../../shared/jobs/runner.ts';
import type { ClaimedJob, JobFailure, JobStore } from '../../shared/jobs/store.ts';
import { type PreviewDeps, previewHandler } from '../../shared/preview/generate.ts';
import { resetIsolateBudget } from '../../shared/preview/isolate.ts';
import type { ObjectStore } from '../../shared/storage.ts';

const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
/** A real MP3 (KIE's Suno fixture): what sniff.ts takes for audio. */
const MP3 = new Uint8Array(readFileSync(join(process.cwd(), 'tests/fixtures/kie-payloads/media/suno-track.mp3')));
// an ISO-BMFF header with an mp4 brand: sniffed as a video
const MP4 = new Uint8Array([0, 0, 0, 0x18, ...new TextEncoder().encode('ftypisom'), 0, 0, 2, 0, ...new TextEncoder().encode('isommp41')]);
const ID = '11111111-1111-4111-8111-111111111111';
const PREVIEW = `u1/previews/${ID}_preview.webp`;
const PREVIEW_1024 = `u1/previews/${ID}_preview_1024.webp`;
const ORIGINAL_COPY = `u1/originals/${ID}.jpg`;

/** A claimed preview job as claim_preview_jobs returns it (input: preview_job_input). */
function previewJob(input: Record<string, unknown> = {}, o: Partial<ClaimedJob> = {}): ClaimedJob {
  return {
    job_id: '41', kind: 'preview', generation_id: ID, attempt: 3, lease_ms: 120_000,
    input: {
      user_id: 'u1', type: 'photo', kind: 'image', original_path: null, source_url: 'https://kie.example/a.jpg', model: null,
      target_path: PREVIEW, size_stem: `u1/previews/${ID}_preview`, original_stem: `u1/originals/${ID}`, cover_url: null, ...input,
    },
    ...o,
  };
}

type Opts = {
  /** What isCurrent answers (true). */
  current?: boolean;
  /** What complete answers (true). */
  complete?: boolean;
  /** What fail answers (by retryability: 'retry' or 'failed'). */
  fail?: 'retry' | 'failed' | null;
  fetchError?: Error;
  animated?: boolean;
  /** Objects an earlier attempt of the job already wrote (objectWritten answers true for them). */
  writtenBefore?: string[];
  /** The fetch of KIE's cover (a URL ending in .jpeg) fails with this. */
  coverError?: Error;
  /** PREVIEW_SIZES ([512]). */
  sizes?: number[];
};

/** The fakes, every call recorded in order in `calls`. `queue`: what claim hands out. */
function fakes(opts: Opts = {}, queue: ClaimedJob[] = [previewJob()]) {
  const calls: string[] = [];
  const objects = new Map<string, Uint8Array>();
  const failures: { job: string; failure: JobFailure }[] = [];
  const completions: { job: string; attempt: number; result: Record<string, unknown> }[] = [];
  const pending = [...queue];
  const store: JobStore = {
    claim: async (o) => {
      calls.push('claim');
      const take = pending.filter((j) => !o.kinds || o.kinds.includes(j.kind)).slice(0, o.limit ?? 1);
      for (const j of take) pending.splice(pending.indexOf(j), 1);
      return take;
    },
    isCurrent: async (j) => (calls.push(`isCurrent ${j.job_id}`), opts.current ?? true),
    extend: async () => opts.current ?? true,
    noteObject: async (j, o) => (calls.push(`note ${o.path}`), opts.current ?? true),
    objectWritten: async (_j, o) => opts.writtenBefore?.includes(o.path) ?? false,
    complete: async (j, result) => {
      calls.push(`complete ${j.job_id}`);
      completions.push({ job: j.job_id, attempt: j.attempt, result });
      return opts.complete ?? true;
    },
    fail: async (j, e) => {
      calls.push(`fail ${j.job_id} ${e.code}`);
      failures.push({ job: j.job_id, failure: e });
      return opts.fail !== undefined ? opts.fail : e.retryable ? 'retry' : 'failed';
    },
    release: async (j) => (calls.push(`release ${j.job_id}`), true),
    adopt: async (id) => (calls.push(`adopt ${id}`), true),
    queueAnimated: async (id) => (calls.push(`queueAnimated ${id}`), true),
    endWake: async (w) => (calls.push(`endWake ${w}`), 0),
    decide: async () => (calls.push('decide'), 0),
  };
  const objectStore: ObjectStore = {
    upload: async (path, bytes) => void (calls.push(`upload ${path}`), objects.set(path, bytes)),
    size: async (path) => objects.get(path)?.length ?? null,
    download: async (path) => (calls.push(`download ${path}`), JPEG),
    signMany: async () => new Map(),
    remove: async (paths) => void calls.push(`remove ${paths.join(' ')}`),
  };
  const deps: PreviewDeps = {
    objects: objectStore,
    fetchSource: async (url: string) => {
      calls.push('fetch');
      if (opts.fetchError) throw opts.fetchError;
      if (url.endsWith('.jpeg') && opts.coverError) throw opts.coverError;
      return { bytes: url.endsWith('.mp3') ? MP3 : JPEG, contentType: null } as never;
    },
    // a photo of 1600x1000: its 1024 size when PREVIEW_SIZES asks for it
    renderPhoto: async (_bytes, o) => (calls.push('render photo'), {
      webp: new Uint8Array([1, 2, 3]), width: 512, height: 320, thumbhash: 'abc',
      ...(o.sides?.includes(1024) ? { sizes: [{ side: 1024, webp: new Uint8Array([1, 2, 3, 4, 5, 6]), width: 1024, height: 640 }] } : {}),
    }),
    renderPoster: async () => (calls.push('render poster'), { webp: new Uint8Array([4, 5, 6, 7]), width: 512, height: 288, thumbhash: 'def' }),
    renderWaveform: async () => (calls.push('render waveform'), { webp: new Uint8Array([9, 9, 9, 9, 9]), width: 512, height: 288, thumbhash: 'wav', durationMs: 1567 }),
    config: {
      supabaseUrl: 'https://abc.supabase.co',
      preview: { bucket: 'generations', sizes: opts.sizes ?? [512], quality: 80, maxSourceBytes: 1e6, maxPixels: 1e7, downloadTimeoutMs: 1000, allowedPrivateHosts: [], ffmpegCoreWasmUrl: undefined, ffmpegCoreWasmPath: 'x', animated: opts.animated ?? false },
    },
  };
  // the handler on its own: writeOnce writes (the runner's own writeOnce is tested through drain)
  const ctx: JobContext = {
    store,
    isolate: { take: async () => {}, handBack: async () => {} },
    isCurrent: () => store.isCurrent(queue[0]),
    writeOnce: async (_path, _bytes, write) => (await write(), 'written'),
  };
  const run = () => drain({ store, handlers: { preview: previewHandler(deps) } });
  return { deps, store, ctx, calls, objects, failures, completions, run };
}

/** The handler's own run (no runner around it). */
function runHandler(job: ClaimedJob, deps: PreviewDeps, ctx: JobContext): Promise<JobDone | JobFenced> {
  const h: JobHandler = previewHandler(deps);
  if (!('run' in h)) throw new Error('the preview handler runs one job at a time');
  return h.run(job, ctx);
}

let logs: string[];
beforeEach(() => {
  resetIsolateBudget();
  logs = [];
  vi.spyOn(console, 'log').mockImplementation((l: string) => void logs.push(l));
  vi.spyOn(console, 'error').mockImplementation((l: string) => void logs.push(l));
});
afterEach(() => vi.restoreAllMocks());

describe('previewHandler(deps).run(job, ctx)', () => {
  it('reads, renders, checks the claim, uploads the original copy and the preview, and returns the row\'s result', async () => {
    const { deps, ctx, calls, objects } = fakes();
    const done = await runHandler(previewJob(), deps, ctx);
    expect(calls).toEqual(['fetch', 'render photo', 'isCurrent 41', `upload ${ORIGINAL_COPY}`, `upload ${PREVIEW}`]);
    expect(objects.get(ORIGINAL_COPY)).toEqual(JPEG);
    expect(objects.get(PREVIEW)).toEqual(new Uint8Array([1, 2, 3]));
    expect(done).toMatchObject({
      result: { path: PREVIEW, width: 512, height: 320, thumbhash: 'abc', originalPath: ORIGINAL_COPY },
      outcome: { type: 'photo', path: PREVIEW },
    });
    expect((done as JobDone).result.version).toMatch(/^r\d+-s512-q80$/);
    expect((done as JobDone).result.sizes).toEqual([]);
    expect((done as JobDone).after).toBeUndefined(); // a photo asks for no clip
  });

  it('PREVIEW_SIZES 512,1024: the larger size goes to the path the database named ({size_stem}_1024.webp), listed in the result', async () => {
    const { deps, ctx, calls, objects } = fakes({ sizes: [512, 1024] });
    const done = await runHandler(previewJob(), deps, ctx) as JobDone;
    expect(calls).toEqual(['fetch', 'render photo', 'isCurrent 41', `upload ${ORIGINAL_COPY}`, `upload ${PREVIEW}`, `upload ${PREVIEW_1024}`]);
    expect(objects.get(PREVIEW_1024)).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6]));
    expect(done.result).toMatchObject({ path: PREVIEW, width: 512, height: 320, sizes: [{ side: 1024, path: PREVIEW_1024, width: 1024, height: 640 }] });
    expect(done.result.version).toMatch(/^r\d+-s512,1024-q80$/);
  });

  it('an audio row with KIE\'s cover: the cover is the tile, the waveform is written beside it, with the length', async () => {
    const job = previewJob({ type: 'audio', kind: 'audio', source_url: 'https://kie.example/t.mp3', cover_url: 'https://kie.example/c.jpeg', waveform_path: `u1/previews/${ID}_waveform.webp` });
    const { deps, ctx, calls } = fakes({}, [job]);
    const r = await runHandler(job, deps, ctx) as JobDone;
    expect(r.result).toMatchObject({ path: PREVIEW, width: 512, height: 320, thumbhash: 'abc', originalPath: `u1/originals/${ID}.mp3`, waveformPath: `u1/previews/${ID}_waveform.webp`, durationMs: 1567 });
    expect(calls.filter((c) => c.startsWith('render') || c.startsWith('upload'))).toEqual([
      'render waveform', 'render photo', `upload u1/originals/${ID}.mp3`, `upload ${PREVIEW}`, `upload u1/previews/${ID}_waveform.webp`,
    ]);
  });

  it('an audio row whose cover cannot be fetched: the waveform is the tile (one object), and the log says why', async () => {
    const job = previewJob({ type: 'audio', kind: 'audio', source_url: 'https://kie.example/t.mp3', cover_url: 'https://kie.example/c.jpeg', waveform_path: `u1/previews/${ID}_waveform.webp` });
    const { deps, ctx, calls } = fakes({ coverError: new PreviewError('SOURCE_NOT_FOUND', 'Download failed: 404') }, [job]);
    const r = await runHandler(job, deps, ctx) as JobDone;
    expect(r.result).toMatchObject({ path: PREVIEW, width: 512, height: 288, thumbhash: 'wav', waveformPath: PREVIEW, durationMs: 1567 });
    expect(calls.filter((c) => c.startsWith('upload'))).toEqual([`upload u1/originals/${ID}.mp3`, `upload ${PREVIEW}`]);
    expect(logs.some((l) => l.includes(`[Preview] Cover unusable generationId=${ID} reason=SOURCE_NOT_FOUND`))).toBe(true);
  });

  it('a worker that lost its claim while rendering uploads nothing and says so (claim_lost_before_upload)', async () => {
    const { deps, ctx, calls, objects } = fakes({ current: false });
    expect(await runHandler(previewJob(), deps, ctx)).toEqual({ fenced: 'claim_lost_before_upload' });
    expect(objects.size).toBe(0);
    expect(calls).toEqual(['fetch', 'render photo', 'isCurrent 41']);
  });

  it('an upload whose stored size differs is an UPLOAD_FAILED error', async () => {
    const { deps, ctx } = fakes();
    deps.objects.size = async () => 2;
    await expect(runHandler(previewJob(), deps, ctx)).rejects.toMatchObject({ code: 'UPLOAD_FAILED', message: 'Upload check failed: stored 2 bytes, expected 3' });
  });

  it('an asset of the other kind than the database said is UNSUPPORTED_FORMAT, and nothing is uploaded', async () => {
    const { deps, ctx, objects } = fakes();
    await expect(runHandler(previewJob({ type: 'video', kind: 'video' }), deps, ctx)).rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
    expect(objects.size).toBe(0);
  });
});

describe('the preview job through the runner (drain with a fake JobStore)', () => {
  it('claims, reads, renders, checks, uploads, completes with the result, and claims again until none is due', async () => {
    const { calls, completions, failures, run } = fakes({ sizes: [512, 1024] });
    const { outcomes, declined } = await run();
    expect(declined).toBeNull();
    expect(calls).toEqual(['claim', 'fetch', 'render photo', 'isCurrent 41', `note ${ORIGINAL_COPY}`, `upload ${ORIGINAL_COPY}`, `note ${PREVIEW}`, `upload ${PREVIEW}`, `note ${PREVIEW_1024}`, `upload ${PREVIEW_1024}`, 'complete 41', 'claim']);
    expect(completions).toEqual([{
      job: '41', attempt: 3,
      result: {
        path: PREVIEW, width: 512, height: 320, thumbhash: 'abc', originalPath: ORIGINAL_COPY, version: expect.stringMatching(/^r\d+-s512,1024-q80$/),
        sizes: [{ side: 1024, path: PREVIEW_1024, width: 1024, height: 640 }],
      },
    }]);
    expect(failures).toEqual([]);
    expect(outcomes).toEqual([{ generationId: ID, jobId: '41', kind: 'preview', attempt: 3, result: 'ready', type: 'photo', path: PREVIEW }]);
    // one line per state change, the subject first, the job's fields last
    expect(logs.filter((l) => l.startsWith('[Preview] Processing'))).toEqual([`[Preview] Processing generationId=${ID} type=photo jobId=41 kind=preview attempt=3`]);
    expect(logs.filter((l) => l.startsWith('[Preview] Ready'))).toEqual([
      expect.stringMatching(new RegExp(`^\\[Preview\\] Ready generationId=${ID} type=photo path=${PREVIEW} width=512 height=320 bytes=3 sizes=1024x640 isolateCpuMs=\\d+ jobId=41 kind=preview attempt=3$`)),
    ]);
  });

  it('exactly once across attempts: what an earlier attempt of the job already wrote is kept, not uploaded again', async () => {
    // attempt 2 after a worker was killed between its uploads and its completion
    const { calls, completions, objects, run } = fakes({ writtenBefore: [ORIGINAL_COPY, PREVIEW] });
    objects.set(ORIGINAL_COPY, JPEG).set(PREVIEW, new Uint8Array([1, 2, 3]));
    const { outcomes } = await run();
    expect(calls).toEqual(['claim', 'fetch', 'render photo', 'isCurrent 41', 'complete 41', 'claim']);
    expect(completions.map((c) => c.result.path)).toEqual([PREVIEW]);
    expect(outcomes.map((o) => o.result)).toEqual(['ready']);
    expect(logs.filter((l) => l.startsWith('[Preview] Kept')).map((l) => l.match(/ path=(\S+)/)?.[1])).toEqual([ORIGINAL_COPY, PREVIEW]);
  });

  it('the fence before upload: a claim that is no longer current uploads nothing, completes nothing, fails nothing', async () => {
    const { calls, objects, completions, failures, run } = fakes({ current: false });
    const { outcomes } = await run();
    expect(outcomes).toEqual([{ generationId: ID, jobId: '41', kind: 'preview', attempt: 3, result: 'fenced' }]);
    expect(objects.size).toBe(0);
    expect(completions).toEqual([]);
    expect(failures).toEqual([]);
    expect(calls.filter((c) => c.startsWith('upload'))).toEqual([]);
    expect(logs).toContain(`[Preview] Fenced generationId=${ID} reason=claim_lost_before_upload jobId=41 kind=preview attempt=3`);
  });

  it('a stale completion (a newer attempt holds the job) is fenced, not failed, and logs no Ready', async () => {
    const { completions, failures, run } = fakes({ complete: false });
    const { outcomes } = await run();
    expect(completions).toHaveLength(1);
    expect(failures).toEqual([]);
    expect(outcomes).toEqual([{ generationId: ID, jobId: '41', kind: 'preview', attempt: 3, result: 'fenced' }]);
    expect(logs).toContain(`[Preview] Fenced generationId=${ID} reason=newer_attempt jobId=41 kind=preview attempt=3`);
    expect(logs.some((l) => l.startsWith('[Preview] Ready'))).toBe(false);
  });

  it('a PreviewError goes to the failure path with its code, message and retryability', async () => {
    const terminal = fakes({ fetchError: new PreviewError('SOURCE_NOT_FOUND', 'Download failed: 404') });
    const t = await terminal.run();
    expect(terminal.failures).toEqual([{ job: '41', failure: { code: 'SOURCE_NOT_FOUND', message: 'Download failed: 404', retryable: false } }]);
    expect(terminal.completions).toEqual([]);
    expect(t.outcomes).toEqual([{ generationId: ID, jobId: '41', kind: 'preview', attempt: 3, result: 'failed', code: 'SOURCE_NOT_FOUND', error: 'Download failed: 404' }]);
    expect(logs).toContain(`[Preview] ❌ Failed for ${ID}: Download failed: 404 generationId=${ID} code=SOURCE_NOT_FOUND next=failed jobId=41 kind=preview attempt=3`);

    const retryable = fakes({ fetchError: new PreviewError('SOURCE_UNREACHABLE', 'Download failed: 503') });
    const r = await retryable.run();
    expect(retryable.failures).toEqual([{ job: '41', failure: { code: 'SOURCE_UNREACHABLE', message: 'Download failed: 503', retryable: true } }]);
    expect(r.outcomes[0]).toMatchObject({ result: 'retry', code: 'SOURCE_UNREACHABLE' });
  });

  it('an unknown throw becomes INTERNAL and retryable; a failure the database fenced is `fenced`', async () => {
    const { deps, failures, run } = fakes();
    deps.renderPhoto = async () => {
      throw new TypeError('boom');
    };
    const { outcomes } = await run();
    expect(failures).toEqual([{ job: '41', failure: { code: 'INTERNAL', message: 'Internal error: boom', retryable: true } }]);
    expect(outcomes[0]).toMatchObject({ result: 'retry', code: 'INTERNAL', error: 'Internal error: boom' });

    const late = fakes({ fetchError: new PreviewError('SOURCE_NOT_FOUND', 'Download failed: 404'), fail: null });
    expect((await late.run()).outcomes[0]).toMatchObject({ result: 'fenced', code: 'SOURCE_NOT_FOUND' });
    expect(logs.some((l) => l.includes(`❌ Failed for ${ID}: Download failed: 404 generationId=${ID} code=SOURCE_NOT_FOUND next=fenced `))).toBe(true);
  });

  it('a video\'s poster asks for its clip after the completion (PREVIEW_ANIMATED on), never before it nor after a fenced one', async () => {
    const video = previewJob({ type: 'video', kind: 'video', target_path: `u1/posters/${ID}_poster.webp` });
    const on = fakes({ animated: true }, [video]);
    on.deps.fetchSource = async () => (on.calls.push('fetch'), { bytes: MP4, contentType: 'video/mp4' } as never);
    expect((await on.run()).outcomes[0]).toMatchObject({ result: 'ready', path: `u1/posters/${ID}_poster.webp` });
    expect(on.calls).toEqual(['claim', 'fetch', 'render poster', 'isCurrent 41', `note u1/originals/${ID}.mp4`, `upload u1/originals/${ID}.mp4`,
      `note u1/posters/${ID}_poster.webp`, `upload u1/posters/${ID}_poster.webp`,
      'complete 41', `queueAnimated ${ID}`, 'claim']);
    expect(logs).toContain(`[Preview] Queued generationId=${ID} reason=animated type=video`);

    for (const o of [{ animated: false }, { animated: true, complete: false }]) {
      const f = fakes(o, [video]);
      f.deps.fetchSource = async () => ({ bytes: MP4, contentType: 'video/mp4' } as never);
      await f.run();
      expect(f.calls.filter((c) => c.startsWith('queueAnimated')), JSON.stringify(o)).toEqual([]);
    }
  });
});

describe('a source already in our storage', () => {
  it('reads the owner\'s own object and keeps it as the original (no copy)', async () => {
    const { calls, completions, run } = fakes({}, [previewJob({ source_url: `https://abc.supabase.co/storage/v1/object/public/generations/u1/uploads/${ID}.jpg` })]);
    expect((await run()).outcomes[0].result).toBe('ready');
    expect(calls).toContain(`download u1/uploads/${ID}.jpg`);
    expect(calls).not.toContain('fetch');
    expect(calls.filter((c) => c.startsWith('upload'))).toEqual([`upload ${PREVIEW}`]);
    expect(completions[0].result.originalPath).toBe(`u1/uploads/${ID}.jpg`);
  });

  it('takes original_path before the URL, and the URL when the stored original is gone', async () => {
    const stored = `u1/image/${ID}_1700000000000.jpg`;
    const first = fakes({}, [previewJob({ original_path: stored })]);
    expect((await first.run()).outcomes[0].result).toBe('ready');
    expect(first.calls).toContain(`download ${stored}`);
    expect(first.calls).not.toContain('fetch');
    expect(first.completions[0].result).toMatchObject({ path: PREVIEW, originalPath: stored });

    const gone = fakes({}, [previewJob({ original_path: stored })]);
    gone.deps.objects.download = async (path) => {
      gone.calls.push(`download ${path}`);
      throw new PreviewError('SOURCE_NOT_FOUND', 'Download failed: 404');
    };
    expect((await gone.run()).outcomes[0].result).toBe('ready');
    expect(gone.calls.slice(1, 3)).toEqual([`download ${stored}`, 'fetch']);
    expect(gone.completions[0].result).toMatchObject({ path: PREVIEW, originalPath: ORIGINAL_COPY });
  });

  it('refuses an original_path outside the owner\'s folder (SOURCE_FORBIDDEN, terminal), reading nothing', async () => {
    for (const path of ['victim/image/x.jpg', 'u1/../victim/x.jpg', 'u1x/image/x.jpg']) {
      const { calls, failures, run } = fakes({}, [previewJob({ original_path: path })]);
      expect((await run()).outcomes[0], path).toMatchObject({ result: 'failed', code: 'SOURCE_FORBIDDEN' });
      expect(failures.map((f) => f.failure.retryable), path).toEqual([false]);
      expect(calls.some((c) => c.startsWith('download') || c.startsWith('upload') || c === 'fetch'), path).toBe(false);
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
      const { calls, failures, completions, run } = fakes({}, [previewJob({ source_url: url })]);
      expect((await run()).outcomes[0], url).toMatchObject({ result: 'failed', code: 'SOURCE_FORBIDDEN' });
      expect(failures.map((f) => f.failure.code), url).toEqual(['SOURCE_FORBIDDEN']);
      expect(completions, url).toEqual([]);
      expect(calls.some((c) => c.startsWith('download') || c.startsWith('upload') || c === 'fetch'), url).toBe(false);
    }
  });
});
