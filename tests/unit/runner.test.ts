// The job runner (shared/jobs/runner.ts) with a fake JobStore and fake handlers: what every kind
// shares. One claim at a time until none is due; the completion retried on a transient database
// error while the lease holds (the store's calls under the one retry policy of shared/db.ts, over a
// fake postgres.js), and sent through the failure path once it does not; liveness: a heartbeat
// extends a held job's lease every third of it and stops with the job, a refused heartbeat makes
// isCurrent false at once, and a held job's calls ride out an outage past the default 5 s up to
// its lease; a batch kind (delete_object: cleanupHandler) claims up to its batch, deletes with one
// Storage call, and one failed call fails every job of the batch; a claim held when the isolate is
// ending is handed back, and an ending isolate claims nothing more.
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Sql } from '../../shared/db.ts';
import { PreviewError } from '../../shared/errors.ts';
import { drain, type Handlers, type JobHandler } from '../../shared/jobs/runner.ts';
import { type ClaimedJob, createJobStore, type JobFailure, type JobKind, type JobStore } from '../../shared/jobs/store.ts';
import { cleanupHandler } from '../../shared/preview/cleanup.ts';
import { CPU_HARD_LIMIT_MS, measureRender, resetIsolateBudget, runJob, WORST_JOB_MS } from '../../shared/preview/isolate.ts';
import type { ObjectStore } from '../../shared/storage.ts';
import { busyFor } from '../helpers/cpu.ts';

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
  /** What each heartbeat answers (true: still held). */
  extend?: (j: ClaimedJob) => boolean;
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
    extend: async (j) => (calls.push(`extend ${j.job_id}`), opts.extend?.(j) ?? true),
    noteObject: async () => true,
    objectWritten: async () => false,
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

/**
 * A handler that downloads first (preview): job 1's source answers only when `arrive()` is called,
 * the others' at once; `downloads` lists the jobs whose source arrived, in order.
 */
function slowFirstJob() {
  let answer!: () => void;
  const slow = new Promise<void>((r) => (answer = r));
  const downloads: string[] = [];
  const handler: JobHandler = {
    prefix: '[Preview]',
    success: 'Ready',
    downloadsFirst: true,
    async run(j, ctx) {
      if (j.job_id === '1') await slow;
      downloads.push(j.job_id);
      await ctx.isolate.take();
      return { result: { ok: j.job_id } };
    },
  };
  return { handler, downloads, arrive: () => answer() };
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

  it('a job still downloading after a moment gets the next job claimed beside it; the render waits for the isolate', async () => {
    const { store, calls } = fakeStore([job(1), job(2), job(3)]);
    const { handler, downloads, arrive } = slowFirstJob();
    const done = drain({ store, handlers: { preview: handler } });
    await new Promise((r) => setTimeout(r, 700)); // past BESIDE_AFTER_MS (500 ms)
    expect(downloads).toEqual(['2', '3']); // claimed and done beside the slow one
    arrive();
    const r = await done;
    expect(r.outcomes.map((o) => [o.jobId, o.result]).sort()).toEqual([['1', 'ready'], ['2', 'ready'], ['3', 'ready']]);
    expect(calls.filter((c) => c.startsWith('complete'))).toEqual(['complete 2', 'complete 3', 'complete 1']);
  });

  it('a decline is heard at once (onDeclined) while a job parked on a slow source still holds the drain', async () => {
    const { store, calls } = fakeStore([job(1), job(2), job(3)]);
    const { handler, arrive } = slowFirstJob();
    const run = (handler as Extract<JobHandler, { run: unknown }>).run;
    const spending: JobHandler = {
      ...handler,
      async run(j, ctx) {
        const done = await run(j, ctx);
        // job 2 renders beside the parked job 1 and leaves no room for the costliest job
        if (j.job_id === '2') await measureRender(async () => busyFor(100));
        return done;
      },
    };
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - WORST_JOB_MS - 210)));
    let heard = 0;
    let ended = false;
    const done = drain({ store, handlers: { preview: spending }, onDeclined: () => heard++ });
    void done.then(() => (ended = true));
    await new Promise((r) => setTimeout(r, 900)); // past BESIDE_AFTER_MS and job 2's render
    expect(heard).toBe(1);
    expect(ended).toBe(false); // job 1 still waits on its source
    arrive();
    const r = await done;
    expect(r.declined).toBe('isolate_cpu_spent');
    expect(r.outcomes.map((o) => [o.jobId, o.result]).sort()).toEqual([['1', 'ready'], ['2', 'ready']]);
    expect(calls.filter((c) => c.startsWith('claim'))).toEqual(['claim 1', 'claim 2']); // job 3 stays queued
  });

  it('a claim beside the first that fails ends only itself: the drain goes on and ends without an error', async () => {
    const { store } = fakeStore([job(1), job(2)]);
    let claimsSeen = 0;
    const claim = store.claim;
    store.claim = async (o) => {
      if (++claimsSeen === 2) throw new Error('connect ECONNREFUSED');
      return await claim(o);
    };
    const { handler, arrive } = slowFirstJob();
    const done = drain({ store, handlers: { preview: handler } });
    await new Promise((r) => setTimeout(r, 700));
    arrive();
    const r = await done;
    expect(r.outcomes.map((o) => [o.jobId, o.result])).toEqual([['1', 'ready'], ['2', 'ready']]);
    expect(logs.some((l) => l.includes('Claim beside failed: connect ECONNREFUSED'))).toBe(true);
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

/**
 * The real store (createJobStore) over a fake postgres.js: each SQL function answers from `script`
 * (rows, or an error to throw), by name; every call is recorded in order.
 */
function sqlStore(queue: ClaimedJob[], script: Partial<Record<string, () => unknown[] | Error>> = {}) {
  const calls: string[] = [];
  const names = ['claim_preview_jobs', 'preview_job_is_current', 'extend_preview_job_lease', 'complete_preview_job', 'fail_preview_job', 'release_preview_job'];
  const pending = [...queue];
  const defaults: Record<string, () => unknown[]> = {
    claim_preview_jobs: () => pending.splice(0, 1),
    preview_job_is_current: () => [{ ok: true }],
    extend_preview_job_lease: () => [{ ok: true }],
    complete_preview_job: () => [{ ok: true }],
    fail_preview_job: () => [{ state: 'retry' }],
    release_preview_job: () => [{ ok: true }],
  };
  const query = (strings: TemplateStringsArray) => {
    const name = names.find((n) => strings.join('?').includes(`public.${n}(`)) ?? '?';
    calls.push(name);
    const answer = (script[name] ?? defaults[name])?.() ?? [];
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  };
  return { store: createJobStore(Object.assign(query, { json: (v: unknown) => v }) as unknown as Sql), calls };
}

/** An answer that fails `times` times with `err()`, then gives `ok`. */
function failing(times: number, err: () => Error, ok: unknown[]) {
  let n = 0;
  return () => (n++ < times ? err() : ok);
}

describe('the completion (the store\'s calls under the one retry policy)', () => {
  it('is retried on a transient database error while the lease holds: completed once, never failed', async () => {
    const { store, calls } = sqlStore([job(1)], { complete_preview_job: failing(2, transient, [{ ok: true }]) });
    const started = performance.now();
    const r = await drain({ store, handlers: { preview: okHandler() } });
    expect(r.outcomes).toEqual([{ generationId: GEN, jobId: '1', kind: 'preview', attempt: 1, result: 'ready' }]);
    expect(calls).toEqual(['claim_preview_jobs', 'complete_preview_job', 'complete_preview_job', 'complete_preview_job', 'claim_preview_jobs']);
    expect(performance.now() - started).toBeGreaterThanOrEqual(550); // 200 + 400 ms of backoff
    expect(logs.filter((l) => l.startsWith('[Preview] Database retry'))).toEqual([
      `[Preview] Database retry generationId=${GEN} call=complete code=57P01 inMs=200 jobId=1 kind=preview attempt=1`,
      `[Preview] Database retry generationId=${GEN} call=complete code=57P01 inMs=400 jobId=1 kind=preview attempt=1`,
    ]);
  });

  it('is not retried past the lease (less its margin): the job goes through the failure path instead', async () => {
    // a lease of 2.1 s leaves 100 ms before the margin: the first 200 ms wait would pass it
    const { store, calls } = sqlStore([job(1, 'preview', { lease_ms: 2_100 })], { complete_preview_job: transient });
    const r = await drain({ store, handlers: { preview: okHandler() } });
    expect(calls).toEqual(['claim_preview_jobs', 'complete_preview_job', 'fail_preview_job', 'claim_preview_jobs']);
    expect(r.outcomes[0]).toMatchObject({ result: 'retry', code: 'INTERNAL' });
  });

  it('is not retried on an error that is not the connection\'s', async () => {
    const { store, calls } = sqlStore([job(1)], { complete_preview_job: () => Object.assign(new Error('check constraint'), { code: '23514' }) });
    await drain({ store, handlers: { preview: okHandler() } });
    expect(calls).toEqual(['claim_preview_jobs', 'complete_preview_job', 'fail_preview_job', 'claim_preview_jobs']);
  });
});

describe('liveness: the heartbeat of a held job', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('extends the lease every third of it while the handler runs, and stops with the job', async () => {
    // a 300 ms heartbeat lease: a beat every 100 ms
    const { store, calls } = fakeStore([job(1, 'preview', { lease_ms: 300 })]);
    await drain({ store, handlers: { preview: okHandler(() => sleep(350)) } });
    const beats = calls.filter((c) => c === 'extend 1').length;
    expect(beats).toBeGreaterThanOrEqual(2);
    expect(beats).toBeLessThanOrEqual(4);
    expect(calls.indexOf('extend 1')).toBeLessThan(calls.indexOf('complete 1'));
    await sleep(350);
    expect(calls.filter((c) => c === 'extend 1').length, 'no heartbeat after the job ended').toBe(beats);
  });

  it('stops on every exit path: a failure, a fenced job', async () => {
    const { store, calls } = fakeStore([job(1, 'preview', { lease_ms: 150 }), job(2, 'preview', { lease_ms: 150 })], { current: (j) => j.job_id !== '2' });
    await drain({
      store,
      handlers: {
        preview: {
          prefix: '[Preview]',
          success: 'Ready',
          async run(j, ctx) {
            await sleep(120);
            if (j.job_id === '1') throw new PreviewError('DECODE_FAILED', 'Decode failed: truncated');
            return (await ctx.isCurrent()) ? { result: {} } : { fenced: 'claim_lost_before_upload' };
          },
        },
      },
    });
    const before = calls.length;
    expect(calls).toEqual(expect.arrayContaining(['extend 1', 'fail 1 DECODE_FAILED', 'extend 2', 'isCurrent 2']));
    await sleep(300);
    expect(calls.slice(before)).toEqual([]);
  });

  it('a heartbeat the database refuses (the job is no longer this attempt\'s) makes isCurrent false at once, without asking', async () => {
    const { store, calls } = fakeStore([job(1, 'preview', { lease_ms: 150 })], { extend: () => false });
    let current: boolean | undefined;
    const r = await drain({
      store,
      handlers: {
        preview: {
          prefix: '[Preview]',
          success: 'Ready',
          async run(_j, ctx) {
            await sleep(120); // past the first beat (50 ms)
            current = await ctx.isCurrent();
            return current ? { result: {} } : { fenced: 'claim_lost_before_upload' };
          },
        },
      },
    });
    expect(current).toBe(false);
    expect(calls).toEqual(['claim 1', 'extend 1', 'claim ']); // one refused beat, no isCurrent, no complete
    expect(r.outcomes[0]).toMatchObject({ jobId: '1', result: 'fenced' });
    expect(logs).toContain(`[Preview] Lease lost generationId=${GEN} reason=heartbeat_refused jobId=1 kind=preview attempt=1`);
  });

  describe('a database outage (fake clock)', () => {
    beforeEach(() => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    });
    afterEach(() => {
      vi.useRealTimers();
    });

    const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    /** Fails every call from `from` to `to` ms (fake clock, from now) as a server that is down. */
    function outage(from: number, to: number) {
      const t0 = performance.now();
      return (ok: unknown[]) => () => {
        const t = performance.now() - t0;
        return t >= from && t < to ? refused() : ok;
      };
    }

    it('a worker holding a job rides out 8 s without a database (heartbeats, the check, the completion): ready at attempt 1', async () => {
      const down = outage(1_000, 9_000);
      const { store, calls } = sqlStore([job(1, 'preview', { lease_ms: 30_000, max_lease_ms: 120_000 })], {
        preview_job_is_current: down([{ ok: true }]),
        extend_preview_job_lease: down([{ ok: true }]),
        complete_preview_job: down([{ ok: true }]),
      });
      let checked = 0;
      const running = drain({
        store,
        handlers: {
          preview: {
            prefix: '[Preview]',
            success: 'Ready',
            async run(_j, ctx) {
              await new Promise((r) => setTimeout(r, 2_000)); // the render, inside the outage
              if (!(await ctx.isCurrent())) return { fenced: 'claim_lost_before_upload' };
              checked = performance.now();
              await new Promise((r) => setTimeout(r, 12_000)); // uploads, past a heartbeat
              return { result: {} };
            },
          },
        },
      });
      await vi.advanceTimersByTimeAsync(40_000);
      const r = await running;
      expect(r.outcomes).toEqual([{ generationId: GEN, jobId: '1', kind: 'preview', attempt: 1, result: 'ready' }]);
      expect(checked).toBeGreaterThanOrEqual(9_000); // the check waited for the database
      expect(calls.filter((c) => c === 'fail_preview_job')).toEqual([]);
      expect(calls.filter((c) => c === 'extend_preview_job_lease').length).toBeGreaterThanOrEqual(2);
      expect(logs.filter((l) => l.includes('Database retry') && l.includes('call=isCurrent') && l.includes('code=ECONNREFUSED')).length).toBeGreaterThan(5);
      expect(logs.filter((l) => l.includes('❌'))).toEqual([]);
    });

    it('… but not past its lease: an outage longer than the lease ends in the failure path, fenced by the database', async () => {
      const { store, calls } = sqlStore([job(1, 'preview', { lease_ms: 9_000 })], {
        preview_job_is_current: refused,
        extend_preview_job_lease: refused,
        fail_preview_job: refused,
      });
      const running = drain({
        store,
        handlers: {
          preview: {
            prefix: '[Preview]',
            success: 'Ready',
            async run(_j, ctx) {
              return (await ctx.isCurrent()) ? { result: {} } : { fenced: 'claim_lost_before_upload' };
            },
          },
        },
      }).catch((err: Error) => err);
      await vi.advanceTimersByTimeAsync(30_000);
      const err = await running;
      expect(err).toMatchObject({ code: 'ECONNREFUSED' });
      // the check retried until the lease less its margin (7 s), then the failure path could not be recorded either
      const retries = logs.filter((l) => l.includes('Database retry') && l.includes('call=isCurrent'));
      expect(retries.reduce((ms, l) => ms + Number(l.match(/inMs=(\d+)/)![1]), 0)).toBeLessThanOrEqual(7_000);
      expect(retries.reduce((ms, l) => ms + Number(l.match(/inMs=(\d+)/)![1]), 0)).toBeGreaterThan(5_000);
      expect(calls.at(-1)).toBe('fail_preview_job');
      expect(vi.getTimerCount(), 'no heartbeat left behind').toBe(0);
    });
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
