// The isolate's share of the platform's budget (shared/preview/isolate.ts): one job at a time,
// no job once the estimated CPU leaves no room for the costliest one (except a request's first job
// in an idle isolate, which the platform has not retired), none once the runtime announced the
// isolate's end (beforeunload), and the held claim handed back at that moment.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CPU_HARD_LIMIT_MS, isolateBudget, JOB_OVERHEAD_MS, measureRender, noteIo, resetIsolateBudget, runJob, WORST_JOB_MS } from '../../shared/preview/isolate.ts';

const events = new EventTarget();
beforeAll(() => {
  // Node has no global event target; the edge runtime (Deno) has one.
  Object.assign(globalThis, {
    addEventListener: events.addEventListener.bind(events),
    dispatchEvent: events.dispatchEvent.bind(events),
  });
});
afterEach(() => resetIsolateBudget());

const busyFor = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* the CPU of a render */ }
};

describe('the isolate budget', () => {
  it('runs one job at a time: a second waits for the first', async () => {
    const order: string[] = [];
    let release!: () => void;
    const first = runJob(async () => {
      order.push('first start');
      await new Promise<void>((r) => (release = r));
      order.push('first end');
    });
    const second = runJob(async () => void order.push('second'));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['first start']);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first start', 'first end', 'second']);
  });

  it('counts a render\'s wall time less the downloads inside it, plus a fixed cost per job', async () => {
    await runJob(() =>
      measureRender(async () => {
        busyFor(60);
        const started = performance.now();
        await new Promise((r) => setTimeout(r, 200)); // a download: not CPU
        noteIo(performance.now() - started);
      })
    );
    const { spentMs } = isolateBudget();
    expect(spentMs).toBeGreaterThanOrEqual(60 + JOB_OVERHEAD_MS);
    expect(spentMs).toBeLessThan(60 + JOB_OVERHEAD_MS + 50);
  });

  it('takes a job while even the costliest one ends under the hard limit, then declines without running it', async () => {
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - WORST_JOB_MS - 300)));
    expect(await runJob(async () => 'taken')).toEqual({ done: 'taken' });
    await runJob(() => measureRender(async () => busyFor(250)));
    let ran = false;
    const r = await runJob(async () => void (ran = true));
    expect(r).toEqual({ declined: 'isolate_cpu_spent' });
    expect(ran).toBe(false);
  });

  it('a request that finds the isolate idle takes its first job even when the estimate says spent; one queued behind another does not', async () => {
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - WORST_JOB_MS)));
    // the platform routed this request here, so the isolate is not retired: its real CPU is under 1 s
    expect(await runJob(async () => 'first', true)).toEqual({ done: 'first' });
    // the same request's next job goes by the estimate
    expect(await runJob(async () => 'second')).toEqual({ declined: 'isolate_cpu_spent' });
    // two requests at once: only the one that found the isolate idle is let through
    let release!: () => void;
    const busy = runJob(async () => new Promise<void>((r) => (release = r)), true);
    const queued = runJob(async () => 'queued', true);
    await new Promise((r) => setTimeout(r, 10));
    release();
    expect(await busy).toEqual({ done: undefined });
    expect(await queued).toEqual({ declined: 'isolate_cpu_spent' });
  });

  it('on beforeunload: hands the held claim back and declines what comes after', async () => {
    const released: string[] = [];
    let proceed!: () => void;
    const job = runJob(async (hold) => {
      hold({ release: async () => void released.push('claim-1') });
      await new Promise<void>((r) => (proceed = r));
      return 'finished';
    });
    const next = runJob(async () => 'ran');
    await new Promise((r) => setTimeout(r, 10));
    dispatchEvent(new CustomEvent('beforeunload', { detail: { reason: 'cpu' } }));
    expect(released).toEqual(['claim-1']);
    proceed();
    expect(await job).toEqual({ done: 'finished' }); // its result is fenced by the database
    expect(await next).toEqual({ declined: 'isolate_ending_cpu' });
    expect(isolateBudget().ending).toBe('cpu');
    // an ending isolate takes nothing, not even a request's first job on arrival
    expect(await runJob(async () => 'late', true)).toEqual({ declined: 'isolate_ending_cpu' });
  });
});
