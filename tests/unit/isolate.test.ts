// The isolate's share of the platform's budget (shared/preview/isolate.ts): one job holds the
// isolate at a time (a second may wait on the network beside it, a third waits for a place), no job once the estimated CPU leaves no room for the costliest one (except a request's first job
// in an idle isolate, which the platform has not retired), none once the runtime announced the
// isolate's end (beforeunload), and the held claim handed back at that moment.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BESIDE_BYTES, CPU_HARD_LIMIT_MS, isolateBudget, JOB_OVERHEAD_MS, JOBS_AT_ONCE, measureRender, noteIo, resetIsolateBudget, runJob, WORST_JOB_MS } from '../../shared/preview/isolate.ts';

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
  it('one job holds the isolate at a time; the others run beside it until they take it; past JOBS_AT_ONCE a job waits for a place', async () => {
    const order: string[] = [];
    let release!: () => void;
    const first = runJob(async (slot) => {
      await slot.take();
      order.push('first holds');
      await new Promise<void>((r) => (release = r));
      order.push('first end');
    });
    const beside = Array.from({ length: JOBS_AT_ONCE - 1 }, (_, i) =>
      runJob(async (slot) => {
        order.push(`beside ${i}`);
        await slot.take();
        order.push(`holds ${i}`);
      }));
    const waiting = runJob(async () => void order.push('in a place'));
    await new Promise((r) => setTimeout(r, 20));
    const besides = Array.from({ length: JOBS_AT_ONCE - 1 }, (_, i) => `beside ${i}`);
    expect([...order].sort()).toEqual([...besides, 'first holds'].sort());
    release();
    await Promise.all([first, ...beside, waiting]);
    expect(order.indexOf('first end')).toBeLessThan(order.indexOf('holds 0'));
    expect(order.indexOf('first end')).toBeLessThan(order.indexOf('in a place'));
    expect(order.filter((e) => e.startsWith('holds'))).toEqual(besides.map((b) => b.replace('beside', 'holds')));
  });

  it('downloads beside the render hold BESIDE_BYTES together at most: past it a job takes the isolate (waits for it)', async () => {
    let release!: () => void;
    const renders = runJob(async (slot) => {
      await slot.take();
      await new Promise<void>((r) => (release = r));
    });
    const answers: string[] = [];
    let bGoesOn!: () => void;
    let cEnds!: () => void;
    const b = runJob(async (slot) => {
      await slot.beside(1000);
      answers.push('b: within');
      await new Promise<void>((r) => (bGoesOn = r));
      await slot.beside(1001); // with c's share, past the bound
      answers.push(`b: holds the isolate ${slot.holds()}`);
    });
    const c = runJob(async (slot) => {
      await slot.beside(BESIDE_BYTES - 1000);
      answers.push('c: within');
      await new Promise<void>((r) => (cEnds = r));
    });
    await new Promise((r) => setTimeout(r, 10));
    bGoesOn();
    await new Promise((r) => setTimeout(r, 10));
    expect(answers).toEqual(['b: within', 'c: within']); // b waits for the isolate
    release();
    await Promise.all([renders, b]);
    expect(answers).toEqual(['b: within', 'c: within', 'b: holds the isolate true']);
    cEnds();
    await c;
  });

  it('take is once per job: a second take returns at once, and the isolate is free again at the job\'s end', async () => {
    const r = await runJob(async (slot) => {
      await slot.take();
      await slot.take();
      return 'held twice, taken once';
    });
    expect(r).toEqual({ done: 'held twice, taken once' });
    expect(await runJob(async (slot) => (await slot.take(), 'next'))).toEqual({ done: 'next' });
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

  it('on beforeunload: hands the running jobs\' claims back and declines what comes after', async () => {
    const released: string[] = [];
    const proceed: (() => void)[] = [];
    const job = (name: string) =>
      runJob(async (slot) => {
        slot.hold({ release: async () => void released.push(name) });
        await new Promise<void>((r) => proceed.push(r));
        return 'finished';
      });
    const running = Array.from({ length: JOBS_AT_ONCE }, (_, i) => job(`claim-${i + 1}`));
    const next = runJob(async () => 'ran');
    await new Promise((r) => setTimeout(r, 10));
    dispatchEvent(new CustomEvent('beforeunload', { detail: { reason: 'cpu' } }));
    expect(released.sort()).toEqual(Array.from({ length: JOBS_AT_ONCE }, (_, i) => `claim-${i + 1}`));
    for (const p of proceed) p();
    for (const r of running) expect(await r).toEqual({ done: 'finished' }); // their results are fenced by the database
    expect(await next).toEqual({ declined: 'isolate_ending_cpu' });
    expect(isolateBudget().ending).toBe('cpu');
    // an ending isolate takes nothing, not even a request's first job on arrival
    expect(await runJob(async () => 'late', true)).toEqual({ declined: 'isolate_ending_cpu' });
  });

  it('handBack gives back its own job\'s claim only, and ends the isolate\'s claims', async () => {
    const released: string[] = [];
    let proceed!: () => void;
    const beside = runJob(async (slot) => {
      slot.hold({ release: async () => void released.push('beside') });
      await new Promise<void>((r) => (proceed = r));
      return 'beside finished';
    });
    const handed = runJob(async (slot) => {
      slot.hold({ release: async () => void released.push('handed') });
      await slot.take();
      await slot.handBack('cpu_for_render');
      return 'handed back';
    });
    expect(await handed).toEqual({ done: 'handed back' });
    expect(released).toEqual(['handed']);
    proceed();
    expect(await beside).toEqual({ done: 'beside finished' });
    expect(await runJob(async () => 'late')).toEqual({ declined: 'isolate_ending_cpu_for_render' });
  });
});
