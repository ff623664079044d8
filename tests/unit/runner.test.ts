// The job runner (shared/jobs/runner.ts) with a fake JobStore and fake handlers: what every kind
// shares. One claim at a time until none is due; the completion retried on a transient database
// error while the lease holds, and sent through the failure path once it does not; a batch kind
// (delete_object: cleanupHandler) claims up to its batch, deletes with one Storage call, and one
// failed call fails every job of the batch; a claim held when the isolate is ending is handed back,
// and an ending isolate claims nothing more.
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import { drain, type Handlers, type JobHandler } from '../../shared/jobs/runner.ts';
import type { ClaimedJob, JobFailure, JobKind, JobStore } from '../../shared/jobs/store.ts';
import { cleanupHandler } from '../../shared/preview/cleanup.ts';
import { resetIsolateBudget } from '../../shared/preview/isolate.ts';
import type { ObjectStore } from '../../shared/storage.ts';

const GEN = '22222222-2222-4222-8222-222222222222';

function job(id: number, kind: JobKind = 'preview', o: Partial<ClaimedJob> = {}): ClaimedJob {
  return {
    job_id: String(id), kind, generation_id: GEN, attempt: 1, lease_ms: 120_000,
    input: kind === 'delete_object' ? { path: `u1/previews/${id}_preview.webp`, reason: 'row_deleted' } : { type: 'photo' },
    ...o,
  };
}

type StoreOpts = {
  /** complete: each call takes the next answer (a value, or an error to throw); then true. */
  complete?: (boolean | Error)[];
  current?: (j: ClaimedJob) => boolean;
};

function fakeStore(queue: ClaimedJob[], opts: StoreOpts = {}) {
  const calls: string[] = [];
  const claims: Parameters<JobStore['claim']>[0][] = [];
  const failures: { job: string; failure: JobFailure }[] = [];
  const pending = [...queue];
  const answers = [...(opts.complete ?? [])];
  const store: JobStore = {
    claim: async (o) => {
      claims.push(o);
      const take = pending.filter((j) => !o.kinds || o.kinds.includes(j.kind)).slice(0, o.limit ?? 1);
      for (const j of take) pending.splice(pending.indexOf(j), 1);
      calls.push(`claim ${take.map((j) => j.job_id).join(',')}`);
      return take;
    },
    isCurrent: async (j) => (calls.push(`isCurrent ${j.job_id}`), opts.current?.(j) ?? true),
    complete: async (j) => {
      calls.push(`complete ${j.job_id}`);
      const a = answers.shift() ?? true;
      if (a instanceof Error) throw a;
      return a;
    },
    fail: async (j, e) => {
      calls.push(`fail ${j.job_id} ${e.code}`);
      failures.push({ job: j.job_id, failure: e });
      return e.retryable ? 'retry' : 'failed';
    },
    release: async (j) => (calls.push(`release ${j.job_id}`), true),
    adopt: async () => true,
    queueAnimated: async () => true,
    endWake: async () => 0,
    decide: async () => 0,
  };
  return { store, calls, claims, failures };
}

/** A handler that completes every job with `{ ok: id }` (after `work`, when given). */
function okHandler(work?: (j: ClaimedJob) => Promise<void>): JobHandler {
  return {
    prefix: '[Preview]',
    success: 'Ready',
    async run(j) {
      await work?.(j);
      return { result: { ok: j.job_id } };
    },
  };
}

/** A Postgres error as postgres.js throws it (a restart: admin_shutdown). */
const transient = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });

const events = new EventTarget();
beforeAll(() => {
  // the edge runtime (Deno) has a global event target for beforeunload; Node has none
  Object.assign(globalThis, { addEventListener: events.addEventListener.bind(events), dispatchEvent: events.dispatchEvent.bind(events) });
});
let logs: string[];
beforeEach(() => {
  resetIsolateBudget();
  logs = [];
  vi.spyOn(console, 'log').mockImplementation((l: string) => void logs.push(l));
  vi.spyOn(console, 'error').mockImplementation((l: string) => void logs.push(l));
});
afterEach(() => vi.restoreAllMocks());

describe('drain', () => {
  it('claims one job at a time, of the registered kinds (of the named row, for the wake), until none is due', async () => {
    const { store, calls, claims } = fakeStore([job(1), job(2), job(3, 'animated')]);
    const handlers: Handlers = { preview: okHandler() };
    const r = await drain({ store, handlers, wake: '7', generationId: GEN });
    expect(r.declined).toBeNull();
    expect(r.outcomes.map((o) => [o.jobId, o.kind, o.result])).toEqual([['1', 'preview', 'ready'], ['2', 'preview', 'ready']]);
    expect(calls).toEqual(['claim 1', 'complete 1', 'claim 2', 'complete 2', 'claim ']);
    expect(claims).toEqual(Array(3).fill({ kinds: ['preview'], generationId: GEN, wake: '7' }));
  });

  it('a handler\'s throw is that job\'s failure only: the next job still runs', async () => {
    const { store, failures, calls } = fakeStore([job(1), job(2)]);
    const r = await drain({
      store,
      handlers: { preview: okHandler(async (j) => {
        if (j.job_id === '1') throw new PreviewError('DECODE_FAILED', 'Decode failed: truncated');
      }) },
    });
    expect(failures).toEqual([{ job: '1', failure: { code: 'DECODE_FAILED', message: 'Decode failed: truncated', retryable: false } }]);
    expect(calls).toEqual(['claim 1', 'fail 1 DECODE_FAILED', 'claim 2', 'complete 2', 'claim ']);
    expect(r.outcomes.map((o) => o.result)).toEqual(['failed', 'ready']);
  });
});

describe('the completion', () => {
  it('is retried on a transient database error while the lease holds: completed once, never failed', async () => {
    const { store, calls, failures } = fakeStore([job(1)], { complete: [transient(), transient(), true] });
    const started = performance.now();
    const r = await drain({ store, handlers: { preview: okHandler() } });
    expect(r.outcomes).toEqual([{ generationId: GEN, jobId: '1', kind: 'preview', attempt: 1, result: 'ready' }]);
    expect(calls).toEqual(['claim 1', 'complete 1', 'complete 1', 'complete 1', 'claim ']);
    expect(failures).toEqual([]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(700); // 250 + 500 ms of backoff
    expect(logs.filter((l) => l.startsWith('[Preview] Completion retry'))).toEqual([
      `[Preview] Completion retry generationId=${GEN} code=57P01 inMs=250 jobId=1 kind=preview attempt=1`,
      `[Preview] Completion retry generationId=${GEN} code=57P01 inMs=500 jobId=1 kind=preview attempt=1`,
    ]);
  });

  it('is not retried past the lease (less its margin): the job goes through the failure path instead', async () => {
    // a lease of 2.1 s leaves 100 ms before the margin: the first 250 ms wait would pass it
    const { store, calls, failures } = fakeStore([job(1, 'preview', { lease_ms: 2_100 })], { complete: [transient()] });
    const r = await drain({ store, handlers: { preview: okHandler() } });
    expect(calls).toEqual(['claim 1', 'complete 1', 'fail 1 INTERNAL', 'claim ']);
    expect(failures[0].failure).toMatchObject({ code: 'INTERNAL', retryable: true });
    expect(r.outcomes[0]).toMatchObject({ result: 'retry', code: 'INTERNAL' });
  });

  it('is not retried on an error that is not the connection\'s', async () => {
    const { store, calls } = fakeStore([job(1)], { complete: [Object.assign(new Error('check constraint'), { code: '23514' })] });
    await drain({ store, handlers: { preview: okHandler() } });
    expect(calls).toEqual(['claim 1', 'complete 1', 'fail 1 INTERNAL', 'claim ']);
  });
});

describe('a batch kind: delete_object (cleanupHandler)', () => {
  function objects(fail?: Error) {
    const removed: string[][] = [];
    const o: ObjectStore = {
      upload: async () => {},
      size: async () => null,
      download: async () => new Uint8Array(),
      signMany: async () => new Map(),
      remove: async (paths) => {
        removed.push(paths);
        if (fail) throw fail;
      },
    };
    return { o, removed };
  }

  it('takes up to its batch in one more claim and deletes them with one Storage call; each job completes', async () => {
    const { store, calls, claims } = fakeStore([job(1, 'delete_object'), job(2, 'preview'), job(3, 'delete_object'), job(4, 'delete_object')]);
    const { o, removed } = objects();
    const r = await drain({ store, handlers: { delete_object: cleanupHandler({ objects: o }) } });
    expect(claims).toEqual([{ kinds: ['delete_object'] }, { kinds: ['delete_object'], limit: 99 }, { kinds: ['delete_object'] }]);
    expect(removed).toEqual([['u1/previews/1_preview.webp', 'u1/previews/3_preview.webp', 'u1/previews/4_preview.webp']]);
    expect(calls.filter((c) => c.startsWith('complete')).sort()).toEqual(['complete 1', 'complete 3', 'complete 4']);
    expect(r.outcomes.map((x) => [x.jobId, x.kind, x.result])).toEqual([['1', 'delete_object', 'ready'], ['3', 'delete_object', 'ready'], ['4', 'delete_object', 'ready']]);
    expect(logs).toContain('[Cleanup] Deleted path=u1/previews/3_preview.webp reason=row_deleted jobId=3 kind=delete_object attempt=1');
    expect(logs).toContain('[Cleanup] Processing path=u1/previews/1_preview.webp jobId=1 kind=delete_object attempt=1');
  });

  it('checks each claim before deleting: a job no longer current is fenced and its object left alone', async () => {
    const { store, calls } = fakeStore([job(1, 'delete_object'), job(2, 'delete_object')], { current: (j) => j.job_id !== '2' });
    const { o, removed } = objects();
    const r = await drain({ store, handlers: { delete_object: cleanupHandler({ objects: o }) } });
    expect(removed).toEqual([['u1/previews/1_preview.webp']]);
    expect(calls.filter((c) => c.startsWith('complete'))).toEqual(['complete 1']);
    expect(r.outcomes.map((x) => x.result)).toEqual(['ready', 'fenced']);
    expect(logs).toContain('[Cleanup] Fenced path=u1/previews/2_preview.webp reason=claim_lost_before_delete jobId=2 kind=delete_object attempt=1');
  });

  it('one failed Storage call fails every job of the batch through the failure path', async () => {
    const { store, calls, failures } = fakeStore([job(1, 'delete_object'), job(2, 'delete_object'), job(3, 'delete_object')]);
    const { o, removed } = objects(new Error('Delete failed: 503'));
    const r = await drain({ store, handlers: { delete_object: cleanupHandler({ objects: o }) } });
    expect(removed).toHaveLength(1);
    expect(calls.some((c) => c.startsWith('complete'))).toBe(false);
    expect(failures.map((f) => f.job).sort()).toEqual(['1', '2', '3']);
    for (const f of failures) expect(f.failure).toEqual({ code: 'INTERNAL', message: 'Internal error: Delete failed: 503', retryable: true });
    expect(r.outcomes.map((x) => x.result)).toEqual(['retry', 'retry', 'retry']);
    expect(logs).toContain('[Cleanup] ❌ Failed for u1/previews/2_preview.webp: Internal error: Delete failed: 503 path=u1/previews/2_preview.webp code=INTERNAL next=retry jobId=2 kind=delete_object attempt=1');
  });
});

describe('an isolate that is ending', () => {
  it('hands the claim it holds back at beforeunload (its late result is fenced by the database), then claims nothing more', async () => {
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let finish!: () => void;
    const blocked = new Promise<void>((r) => (finish = r));
    const { store, calls } = fakeStore([job(1), job(2)], { complete: [false] });
    const running = drain({ store, handlers: { preview: okHandler(async () => (entered(), await blocked)) } });
    await inside;
    dispatchEvent(Object.assign(new Event('beforeunload'), { detail: { reason: 'cpu' } }));
    await new Promise((r) => setTimeout(r, 10));
    expect(calls).toEqual(['claim 1', 'release 1']);
    finish();
    const r = await running;
    expect(r.declined).toBe('isolate_ending_cpu');
    expect(r.outcomes.map((o) => [o.jobId, o.result])).toEqual([['1', 'fenced']]);
    expect(calls).toEqual(['claim 1', 'release 1', 'complete 1']); // job 2 is never claimed
    expect(logs).toContain(`[Preview] Released generationId=${GEN} reason=isolate_ending jobId=1 kind=preview attempt=1`);
  });
});
