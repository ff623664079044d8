// The isolate's share of the platform's budget (shared/preview/isolate.ts): one job busy at a time
// (the next is claimed when it ends, or when it parks on a slow source: then it renders beside it;
// a download beside the render holds BESIDE_BYTES at most without the isolate), at most JOBS_AT_ONCE
// jobs in all, no job once the estimated CPU leaves no room for the costliest one (except a
// request's first job in an idle isolate, which the platform has not retired: the estimate then
// starts again from the soft limit when it was above), none once the
// runtime announced the isolate's end (beforeunload), and the held claims handed back at that moment.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import { FreshIsolateNeeded, withSizesIfTheyFit } from '../../shared/preview/budget.ts';
import { busyFor } from '../helpers/cpu.ts';
import { BESIDE_BYTES, cpuRoom, CPU_HARD_LIMIT_MS, CPU_SOFT_LIMIT_MS, isolateBudget, JOB_OVERHEAD_MS, JOBS_AT_ONCE, measureRender, noteIo, resetIsolateBudget, runJob, WORST_JOB_MS } from '../../shared/preview/isolate.ts';

const events = new EventTarget();
beforeAll(() => {
  // Node has no global event target; the edge runtime (Deno) has one.
  Object.assign(globalThis, {
    addEventListener: events.addEventListener.bind(events),
    dispatchEvent: events.dispatchEvent.bind(events),
  });
});
afterEach(() => resetIsolateBudget());

describe('the isolate budget', () => {
  it('one job is busy at a time: the next is claimed when it ends, or when it parks on a slow source (then renders beside it)', async () => {
    const order: string[] = [];
    let parks!: () => void;
    let arrives!: () => void;
    const first = runJob(async (slot) => {
      order.push('first in');
      await new Promise<void>((r) => (parks = r));
      slot.park(); // its source has not answered: it stops counting
      await new Promise<void>((r) => (arrives = r));
      await slot.beside(1000); // its bytes arrive
      await slot.take();
      order.push('first holds');
    });
    const second = runJob(async (slot) => {
      order.push('second in');
      await slot.take();
      order.push('second holds');
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['first in']); // the second waits for the first
    parks();
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['first in', 'second in', 'second holds']); // claimed and rendered beside it
    arrives();
    await Promise.all([first, second]);
    expect(order).toEqual(['first in', 'second in', 'second holds', 'first holds']);
  });

  it('past JOBS_AT_ONCE jobs (all parked on slow sources) a job waits for a place', async () => {
    const proceed: (() => void)[] = [];
    const parked = Array.from({ length: JOBS_AT_ONCE }, () =>
      runJob(async (slot) => {
        slot.park();
        await new Promise<void>((r) => proceed.push(r));
      }));
    let ran = false;
    const waiting = runJob(async () => void (ran = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(proceed).toHaveLength(JOBS_AT_ONCE);
    expect(ran).toBe(false);
    proceed[0]();
    await waiting;
    expect(ran).toBe(true);
    for (const p of proceed) p();
    await Promise.all(parked);
  });

  it('a download beside the render past BESIDE_BYTES takes the isolate first: it waits for the render', async () => {
    const answers: string[] = [];
    let arrives!: () => void;
    const download = runJob(async (slot) => {
      slot.park();
      await new Promise<void>((r) => (arrives = r));
      await slot.beside(BESIDE_BYTES - 1000);
      answers.push(`within, holds the isolate: ${slot.holds()}`);
      await slot.beside(BESIDE_BYTES + 1);
      answers.push(`past, holds the isolate: ${slot.holds()}`);
    });
    let release!: () => void;
    const renders = runJob(async (slot) => {
      await slot.take();
      await new Promise<void>((r) => (release = r));
    });
    await new Promise((r) => setTimeout(r, 20));
    arrives();
    await new Promise((r) => setTimeout(r, 20));
    expect(answers).toEqual(['within, holds the isolate: false']); // waits for the isolate
    release();
    await Promise.all([renders, download]);
    expect(answers).toEqual(['within, holds the isolate: false', 'past, holds the isolate: true']);
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
    // the platform routed this request here, so the isolate is not retired: its real CPU is under
    // the soft limit, and the estimate starts again from there (it ran ahead of the truth)
    expect(await runJob(async () => ({ spentMs: isolateBudget().spentMs }), true)).toEqual({ done: { spentMs: CPU_SOFT_LIMIT_MS } });
    // the same request's next job goes by the estimate: the first job's render counts on top
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - CPU_SOFT_LIMIT_MS - WORST_JOB_MS)));
    expect(await runJob(async () => 'second')).toEqual({ declined: 'isolate_cpu_spent' });
    // two requests at once: only the one that found the isolate idle is let through
    let release!: () => void;
    const busy = runJob(async () => {
      await measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - CPU_SOFT_LIMIT_MS - WORST_JOB_MS));
      await new Promise<void>((r) => (release = r));
    }, true);
    const queued = runJob(async () => 'queued', true);
    await new Promise((r) => setTimeout(r, 10));
    release();
    expect(await busy).toEqual({ done: undefined });
    expect(await queued).toEqual({ declined: 'isolate_cpu_spent' });
  });

  it('jobs parked on slow sources do not make the isolate busy for an arriving request: its first job is taken, its next goes by the estimate', async () => {
    let arrives!: () => void;
    const parked = runJob(async (slot) => {
      slot.park(); // its source has not answered: it waits on the network
      await new Promise<void>((r) => (arrives = r));
    }, true);
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - WORST_JOB_MS)));
    // the platform routed a request here while the parked job waits: the isolate is not retired
    expect(await runJob(async () => ({ spentMs: isolateBudget().spentMs }), true)).toEqual({ done: { spentMs: CPU_SOFT_LIMIT_MS } });
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - CPU_SOFT_LIMIT_MS - WORST_JOB_MS)));
    // that request's next job goes by the estimate
    expect(await runJob(async () => 'next')).toEqual({ declined: 'isolate_cpu_spent' });
    arrives();
    expect(await parked).toEqual({ done: undefined });
  });

  it('on beforeunload: hands the running jobs\' claims back and declines what comes after', async () => {
    const released: string[] = [];
    const proceed: (() => void)[] = [];
    const job = (name: string) =>
      runJob(async (slot) => {
        slot.park(); // every one waits on its source: all JOBS_AT_ONCE are let in
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
      slot.park();
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

describe('the larger sizes are optional (budget.ts withSizesIfTheyFit)', () => {
  const planFor = (limitMs: number) => (sides: readonly number[]) => {
    // a plan costing 500 ms, and the larger sizes' share of the isolate as cpuRoom sets it aside
    const { roomMs } = cpuRoom(0, sides);
    if (500 > roomMs) throw new FreshIsolateNeeded(`needs 500 ms; ${roomMs} ms left`);
    if (500 > limitMs) throw new PreviewError('DECODE_FAILED', 'not a budget code');
    return roomMs;
  };

  it('keeps them when they fit, drops them (not the row) when only the first size fits', async () => {
    expect(withSizesIfTheyFit([1024], planFor(Infinity)).sides).toEqual([1024]);
    // spend until a 1024 size (157 ms) no longer fits beside a 500 ms render, but the render alone does
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - 100 - 150 - 500 - 100)));
    const r = withSizesIfTheyFit([1024], planFor(Infinity));
    expect(r.sides).toEqual([]);
    expect(r.plan).toBeGreaterThanOrEqual(500);
  });

  it('passes on what is not the budget, and what does not fit even without them', async () => {
    expect(() => withSizesIfTheyFit([1024], planFor(0))).toThrow('not a budget code');
    await runJob(() => measureRender(async () => busyFor(CPU_HARD_LIMIT_MS - 100 - 150 - 400)));
    expect(() => withSizesIfTheyFit([1024], planFor(Infinity))).toThrow(FreshIsolateNeeded);
  });
});
