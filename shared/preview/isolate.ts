/**
 * This isolate's share of the platform's budget. The edge runtime gives every concurrent
 * request for a function to the same active isolate and counts CPU over the isolate's whole
 * life: at 1 s (soft) it retires the isolate (no new requests), at 2 s (hard) it kills it with
 * every request inside (546 WORKER_LIMIT). So an isolate runs one job at a time: a worker that
 * finds it busy waits (spending no CPU), then claims its next job only if even the costliest job
 * still ends under the hard limit; otherwise, or once the runtime announced the isolate's end, it
 * declines before claiming (the jobs stay queued) and its wake ends (shared/jobs/runner.ts).
 *
 * The isolate cannot read its own CPU on the runtime's Deno (2.1.4: process.cpuUsage is a stub,
 * /proc is out of reach), so it is estimated from above: the wall time of each render less the
 * downloads inside it (the ffmpeg core, KIE's cover), plus a fixed cost per job. Wall time is
 * CPU plus whatever the machine's other work took from the thread, so the estimate is never
 * below the truth (measured on the local runner: 1.0–1.6× the isolate's thread CPU). Declining
 * too early costs a round trip (a successor is woken, into the same isolate while the platform
 * has not retired it); declining too late would cost a 546, so the rule is set against the hard
 * limit, not the soft one.
 */

/** The platform kills an isolate at this much CPU (per_worker hard limit). */
export const CPU_HARD_LIMIT_MS = 2000;
/**
 * The costliest job's CPU, measured on the local runner (Deno 2.1.4, a fresh isolate, the ffmpeg
 * core fetched and compiled inside): 4K H.264 poster 620 ms, 1080p poster 510 ms, 4096² PNG
 * 360 ms (docs/worker-model.md). Inputs past the caps of budget.ts are refused before decoding.
 */
export const WORST_JOB_MS = 800;
/** Kept free under the hard limit: the runtime samples CPU, and GC runs when it runs. */
const MARGIN_MS = 100;
/** What a job costs besides its render: the request, the claim, the uploads, the completion. */
export const JOB_OVERHEAD_MS = 20;

type Held = { release(): Promise<unknown> };

const state = {
  spentMs: 0,
  ioMs: 0,
  /** The beforeunload reason once the runtime announced the isolate's end. */
  ending: null as string | null,
  queue: Promise.resolve() as Promise<unknown>,
  /** Jobs waiting for the isolate or running in it. */
  pending: 0,
  held: null as Held | null,
  listening: false,
};

/** Time spent waiting on the network inside a render (not CPU). */
export function noteIo(ms: number): void {
  state.ioMs += ms;
}

/** Runs a render, adding its CPU estimate (wall time less the downloads inside) to the isolate's. */
export async function measureRender<T>(fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const io = state.ioMs;
  try {
    return await fn();
  } finally {
    state.spentMs += Math.max(0, performance.now() - started - (state.ioMs - io));
  }
}

/** The isolate's estimated CPU so far, and whether the runtime announced its end. */
export function isolateBudget(): { spentMs: number; ending: string | null } {
  return { spentMs: Math.round(state.spentMs), ending: state.ending };
}

/**
 * Why this isolate would not take a job now, or null when it would. `arrived`: the first job of a
 * request that found the isolate idle. The platform routes a request only to an isolate it has not
 * retired, that is one whose CPU is under the soft limit (1 s): with nothing else running, the
 * costliest job (800 ms) still ends under the hard limit whatever the estimate says. Taking it
 * gets an isolate whose estimate ran ahead of its real CPU retired; declining it would bounce
 * every request off that isolate until its real CPU crept up to the soft limit.
 */
function declineReason(arrived: boolean): string | null {
  if (state.ending) return `isolate_ending_${state.ending}`;
  if (arrived) return null;
  if (state.spentMs + WORST_JOB_MS >= CPU_HARD_LIMIT_MS - MARGIN_MS) return 'isolate_cpu_spent';
  return null;
}

/**
 * Runs `job` when the isolate is free (one job at a time), unless the isolate is spent or
 * ending by then: `{ declined: reason }` and `job` never runs. `hold` registers what the job
 * holds (its claim), released if the runtime announces the isolate's end meanwhile. `first`: the
 * request's first job (taken when the request found the isolate idle, see declineReason).
 */
export function runJob<T>(
  job: (hold: (held: Held | null) => void) => Promise<T>,
  first = false,
): Promise<{ done: T } | { declined: string }> {
  listenForUnload();
  const arrived = first && state.pending === 0;
  state.pending++;
  const run = state.queue.then(async () => {
    try {
      const reason = declineReason(arrived);
      if (reason) return { declined: reason };
      try {
        return { done: await job((held) => (state.held = held)) };
      } finally {
        state.held = null;
        state.spentMs += JOB_OVERHEAD_MS;
      }
    } finally {
      state.pending--;
    }
  });
  state.queue = run.catch(() => {});
  return run;
}

/** The runtime's beforeunload (CPU, memory or wall clock at 90 %, or an early drop). */
function listenForUnload(): void {
  if (state.listening || typeof addEventListener !== 'function') return;
  state.listening = true;
  addEventListener('beforeunload', (e) => {
    state.ending = String((e as CustomEvent).detail?.reason ?? 'unload');
    const held = state.held;
    state.held = null;
    // hand the claim back now rather than leaving it to the lease
    held?.release().catch(() => {});
  });
}

/** For tests: a fresh isolate. */
export function resetIsolateBudget(): void {
  state.spentMs = 0;
  state.ioMs = 0;
  state.ending = null;
  state.held = null;
  state.pending = 0;
}
