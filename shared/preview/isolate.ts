/**
 * This isolate's share of the platform's budget. The edge runtime gives every concurrent
 * request for a function to the same active isolate and counts CPU over the isolate's whole
 * life: at 1 s (soft) it retires the isolate (no new requests), at 2 s (hard) it kills it with
 * every request inside (546 WORKER_LIMIT). So an isolate renders one job at a time: a job holds
 * the isolate (take) for its render and what follows; a worker that finds it held waits (spending
 * no CPU), then claims its next job only if even the costliest job still ends under the hard
 * limit; otherwise, or once the runtime announced the isolate's end, it declines before claiming
 * (the jobs stay queued) and its wake ends (shared/jobs/runner.ts).
 *
 * A source's download is not the render: a job whose download is slow (a slow file host, KIE's
 * CDN under load) held the isolate for it, and every job of the project waited behind it. So a job
 * whose source has not answered after a moment parks (runner.ts): it stops counting, and the next
 * job is claimed and rendered beside it, up to JOBS_AT_ONCE jobs in all. Once a parked job's bytes
 * arrive it downloads beside the render while what the downloads beside hold together stays within
 * BESIDE_BYTES; a source that would take them past it takes the isolate first (its download waits
 * meanwhile: the socket's flow control holds the rest).
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
/** The platform routes no new request to an isolate past this much CPU (soft limit: retired). */
export const CPU_SOFT_LIMIT_MS = 1000;
/**
 * The costliest job's CPU, measured on Deno 2.1.4 (a fresh isolate, the ffmpeg core fetched and
 * compiled inside): a 4K poster whose only keyframe is black (the reference-frame pass) 700–790 ms,
 * a 1080p poster with its 1024 size 670 ms, a 4K keyframe poster 570 ms, a 4096² PNG 360 ms
 * (docs/worker-model.md, docs/rendering.md). Inputs past the caps of budget.ts are refused before
 * decoding.
 */
export const WORST_JOB_MS = 850;
/** Kept free under the hard limit: the runtime samples CPU, and GC runs when it runs. */
const MARGIN_MS = 100;
/**
 * No job is claimed while the isolate holds this much by the platform's measure (an idle isolate
 * holds about 12 MB, a kept ffmpeg instance up to 64 MB more): what is above it is garbage of
 * earlier jobs that the collector has not freed yet (upload bodies, storage downloads held twice:
 * as a Blob and as its bytes), and it counts until then. Measured: an isolate that had made a
 * 47 MB video's poster held 105 MB when it claimed the clip, and the clip's download of the same
 * 47 MB from storage took it to 220 MB.
 */
export const MEMORY_DECLINE_BYTES = 96 * 1048576;
/** What a declined request costs the isolate. */
export const DECLINE_OVERHEAD_MS = 25;
/** What a job costs besides its render: the request, the claim, the uploads, the completion. */
export const JOB_OVERHEAD_MS = 20;

/** Jobs running at once in an isolate: one holds it (renders), the others download beside it. */
export const JOBS_AT_ONCE = 6;
/**
 * What the downloads beside the render hold together at most (KIE's photos are 0.3–5 MB; a video is
 * larger and takes the isolate first). The job holding the isolate plans its render with this much
 * more held by the others (carriedBytes).
 */
export const BESIDE_BYTES = 24 * 1048576;

type Held = { release(): Promise<unknown> };

/** A FIFO lock: `acquire` resolves with its release once the holders before it released. */
function fifoLock(slots: number) {
  let free = slots;
  const waiting: (() => void)[] = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else free++;
  };
  return {
    acquire(): Promise<() => void> {
      if (free > 0) {
        free--;
        return Promise.resolve(release);
      }
      return new Promise((resolve) => waiting.push(() => resolve(release)));
    },
  };
}

const state = {
  spentMs: 0,
  ioMs: 0,
  /** The beforeunload reason once the runtime announced the isolate's end. */
  ending: null as string | null,
  /** JOBS_AT_ONCE places for jobs; the isolate itself, held by one job at a time. */
  slots: fifoLock(JOBS_AT_ONCE),
  isolate: fifoLock(1),
  /** Jobs waiting for a place or running. */
  pending: 0,
  /** Jobs running (in a place). */
  running: 0,
  /** Running jobs parked on a slow source (they do not count against the admission of others). */
  parked: 0,
  /** Jobs waiting for admission (runJob). */
  waiting: [] as (() => void)[],
  /** What each download beside the render holds (bytes), by job. */
  beside: new Map<symbol, number>(),
  /** What the running jobs hold (their claims), handed back at the isolate's end. */
  held: new Set<Held>(),
  /**
   * The isolate's memory (platform measure) when the job holding the isolate took it, with a
   * download beside it counted at its most: what earlier jobs left and the other job may hold.
   */
  heldAtStart: null as number | null,
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
export function isolateBudget(): { spentMs: number; ending: string | null; memoryMb?: number } {
  const memory = isolateMemory();
  return {
    spentMs: Math.round(state.spentMs),
    ending: state.ending,
    ...(memory === null ? {} : { memoryMb: Math.round(memory / 1048576) }),
  };
}

/**
 * Why this isolate would not take a job now, or null when it would. `arrived`: the first job of a
 * request that found the isolate idle (or running only jobs parked on a slow source). The platform routes a request only to an isolate it has not
 * retired, that is one whose CPU is under the soft limit (1 s): with nothing else running, the
 * costliest job (850 ms) still ends under the hard limit whatever the estimate says. Taking it
 * gets an isolate whose estimate ran ahead of its real CPU retired; declining it would bounce
 * every request off that isolate until its real CPU crept up to the soft limit.
 */
function declineReason(arrived: boolean): string | null {
  if (state.ending) return `isolate_ending_${state.ending}`;
  // an isolate holding garbage of earlier jobs: another large job in it could take it past the
  // limit before the collector runs (the next isolate starts clean)
  const memory = isolateMemory();
  if (memory !== null && memory >= MEMORY_DECLINE_BYTES) return 'isolate_memory_held';
  if (arrived) return null;
  if (state.spentMs + WORST_JOB_MS >= CPU_HARD_LIMIT_MS - MARGIN_MS) return 'isolate_cpu_spent';
  return null;
}

/**
 * What a running job may do with the isolate: `hold` registers what it holds (its claim), released
 * if the runtime announces the isolate's end meanwhile; `take` waits for the isolate and holds it
 * to the job's end (idempotent). A job that has not taken the isolate runs beside the one that
 * holds it: it may wait on the network, not render, and asks `beside(bytes)` before it holds
 * `bytes` in all: that returns at once while the downloads beside stay within BESIDE_BYTES, else it
 * takes the isolate.
 */
export type JobSlot = {
  hold(held: Held | null): void;
  take(): Promise<void>;
  /** Whether the job holds the isolate (has taken it). */
  holds(): boolean;
  /**
   * Whether the job got past waiting for its source: its download asked `beside` (the first bytes
   * arrived) or it took the isolate (or waits for it).
   */
  started(): boolean;
  /**
   * The job waits on a slow source: until its first bytes arrive it does not count against the
   * admission of other jobs (a job beside it may be claimed and rendered meanwhile).
   */
  park(): void;
  beside(bytes: number): Promise<void>;
  /**
   * Hands this job's claim back to the queue (as at the isolate's end: due again at once, its late
   * result fenced) and takes no further job in this isolate: a render that does not fit what this
   * isolate has left but fits a fresh one. The caller asks its job context whether the job was
   * handed back (it no longer holds it); if not (at the attempt cap), it fails the job instead.
   */
  handBack(reason: string): Promise<void>;
};

/** What the downloads beside the render hold together, `except` one job's. */
function besideHeld(except?: symbol): number {
  let held = 0;
  for (const [job, bytes] of state.beside) if (job !== except) held += bytes;
  return held;
}

/** Wakes the jobs waiting for admission: a job ended or parked. */
function changed(): void {
  for (const w of state.waiting.splice(0)) w();
}

/**
 * Whether a job may be claimed now: null to go on, else why not (declined). One job at a time is
 * busy here (claimed, not parked on a slow source): the next waits for it to end or park, then the
 * rule of an idle isolate applies (declineReason). Two busy jobs were tried: their downloads and
 * claims inflate each other's render estimates (wall time), and a burst of 50 was twice as slow,
 * with more declines, jobs handed to fresh isolates and a 4K poster's isolate at 235 MB.
 */
async function admission(arrived: boolean): Promise<string | null> {
  for (;;) {
    const busy = state.running - state.parked;
    const reason = busy === 0
      ? declineReason(arrived)
      : state.ending
      ? `isolate_ending_${state.ending}`
      : undefined;
    if (reason === undefined) {
      await new Promise<void>((r) => state.waiting.push(r));
      continue;
    }
    // counted in the same step as the check: the next job's check sees this one
    if (reason === null) state.running++;
    // a request that found the isolate idle was routed here while its CPU was under the soft
    // limit: an estimate above it ran ahead of the truth (wall time on a busy machine), and the
    // job's render would be planned, or handed to a fresh isolate, for CPU this one still has
    if (reason === null && arrived) state.spentMs = Math.min(state.spentMs, CPU_SOFT_LIMIT_MS);
    return reason;
  }
}

/**
 * Runs `job` in one of the isolate's JOBS_AT_ONCE places when one is free, unless the isolate is
 * spent or ending by then: `{ declined: reason }` and `job` never runs. `first`: the request's
 * first job (taken when the request found the isolate idle but for parked jobs, see declineReason).
 */
export function runJob<T>(
  job: (slot: JobSlot) => Promise<T>,
  first = false,
): Promise<{ done: T } | { declined: string }> {
  listenForUnload();
  // idle but for jobs parked on a slow source: they wait on the network, and each plans its render
  // against the estimate when its bytes arrive (handed to a fresh isolate if it no longer fits)
  const arrived = first && state.pending === state.parked;
  state.pending++;
  return state.slots.acquire().then(async (leave) => {
    try {
      const reason = await admission(arrived);
      if (reason) {
        // a declined request is not free: its parse, claim check and answer (about 20 ms a time on
        // the local runner; an isolate holding garbage declined 18 wakes in a row)
        state.spentMs += DECLINE_OVERHEAD_MS;
        return { declined: reason };
      }
      const me = Symbol('job');
      let parked = false;
      const unpark = () => {
        if (!parked) return;
        parked = false;
        state.parked--;
      };
      let held: Held | null = null;
      let taking: Promise<void> | null = null;
      let unlock: (() => void) | null = null;
      const slot: JobSlot = {
        hold(h) {
          if (held) state.held.delete(held);
          held = h;
          if (h) state.held.add(h);
        },
        park() {
          if (parked || slot.started()) return;
          parked = true;
          state.parked++;
          changed();
        },
        take() {
          unpark();
          taking ??= state.isolate.acquire().then((release) => {
            unlock = release;
            state.beside.delete(me); // what it holds now counts in the isolate's memory
            const memory = isolateMemory();
            // the downloads beside may grow to their bound while this job renders
            state.heldAtStart = memory === null
              ? null
              : memory + (state.running > 1 ? Math.max(0, BESIDE_BYTES - besideHeld()) : 0);
          });
          return taking;
        },
        holds: () => unlock !== null,
        started: () => taking !== null || state.beside.has(me),
        beside(bytes) {
          unpark();
          if (taking) return taking;
          if (besideHeld(me) + bytes <= BESIDE_BYTES) {
            state.beside.set(me, bytes);
            return Promise.resolve();
          }
          return slot.take();
        },
        async handBack(reason) {
          state.ending = reason;
          const h = held;
          slot.hold(null);
          await h?.release().catch(() => {});
        },
      };
      try {
        return { done: await job(slot) };
      } finally {
        if (held) state.held.delete(held);
        state.beside.delete(me);
        unpark();
        state.running--;
        state.spentMs += JOB_OVERHEAD_MS;
        (unlock as (() => void) | null)?.();
        changed();
      }
    } finally {
      state.pending--;
      leave();
    }
  });
}

/** The runtime's beforeunload (CPU, memory or wall clock at 90 %, or an early drop). */
function listenForUnload(): void {
  if (state.listening || typeof addEventListener !== 'function') return;
  state.listening = true;
  addEventListener('beforeunload', (e) => {
    state.ending = String((e as CustomEvent).detail?.reason ?? 'unload');
    const held = [...state.held];
    state.held.clear();
    // hand the claims back now rather than leaving them to the lease
    for (const h of held) h.release().catch(() => {});
  });
}

/**
 * What a job does besides its render (the claim, the download and the upload of the original copy,
 * the preview's upload, the completion), set aside from the render's CPU: a fixed part and a part
 * per MB of the source (measured on the local runner: a 40 MB source's download and upload about
 * 120 ms of the isolate's thread).
 */
export const RENDER_RESERVE_MS = 150;
export const RESERVE_MS_PER_MB = 3;
/**
 * What each larger size of the preview (PREVIEW_SIZES past the first) adds, per MP of its box: the
 * decode to the larger box, the area scaling and the WebP encode. Measured on Deno 2.1.4 (bench,
 * 2048² JPEG, PNG, WebP): 512 and 1024 from one decode took 130–155 ms more of the JS thread than
 * 512 alone, cold and warm.
 */
export const LARGER_SIZE_MS_PER_MP = 150;
/** A fresh isolate's CPU before its first job (boot, the first request). */
export const BOOT_MS = 60;

/**
 * The CPU (ms) a render of `inputBytes` may still spend in this isolate (`roomMs`) and would have
 * in a fresh one (`freshMs`), the rest of the job, the larger sizes (`sides`) and the margin set
 * aside. The planners size
 * their decodes to `roomMs` and refuse, terminally, only what does not fit `freshMs`.
 */
export function cpuRoom(
  inputBytes: number,
  sides: readonly number[] = [],
): { roomMs: number; freshMs: number } {
  const reserve = RENDER_RESERVE_MS + RESERVE_MS_PER_MB * (inputBytes / 1048576) +
    sides.reduce((ms, side) => ms + LARGER_SIZE_MS_PER_MP * side * side / 1e6, 0);
  const freshMs = Math.round(CPU_HARD_LIMIT_MS - MARGIN_MS - BOOT_MS - reserve);
  const roomMs = Math.round(
    Math.min(freshMs, CPU_HARD_LIMIT_MS - MARGIN_MS - state.spentMs - reserve),
  );
  return { roomMs: Math.max(0, roomMs), freshMs };
}

/**
 * The platform's memory measure of this isolate (V8 used heap + external, wasm memory included:
 * `Deno.memoryUsage()`, which the edge runtime answers from the same heap statistics its MemCheck
 * reads), or null where that is not this isolate's budget (Node, where tests run: its heap is the
 * test runner's).
 */
export function isolateMemory(): number | null {
  const deno =
    (globalThis as { Deno?: { memoryUsage?: () => { heapUsed: number; external: number } } })
      .Deno;
  if (!deno?.memoryUsage) return null;
  try {
    const m = deno.memoryUsage();
    return m.heapUsed + m.external;
  } catch {
    return null;
  }
}

/** What an idle isolate of generate-preview holds by the platform's measure (runtime, modules). */
export const IDLE_ISOLATE_BYTES = 16 * 1048576;

/**
 * What earlier jobs left in this isolate when the running job started (a kept decoder instance,
 * sources and upload bodies the collector has not freed yet), beyond an idle isolate's; 0 where it
 * cannot be measured. A job whose estimate fits a fresh isolate but not with this on top is handed
 * to a fresh isolate (budget.ts checkCarried).
 */
export function carriedBytes(): number {
  return state.heldAtStart === null ? 0 : Math.max(0, state.heldAtStart - IDLE_ISOLATE_BYTES);
}

/** For tests: a fresh isolate. */
export function resetIsolateBudget(): void {
  state.spentMs = 0;
  state.ioMs = 0;
  state.ending = null;
  state.held.clear();
  state.heldAtStart = null;
  state.pending = 0;
  state.running = 0;
  state.parked = 0;
  state.waiting.length = 0;
  state.beside.clear();
  state.slots = fifoLock(JOBS_AT_ONCE);
  state.isolate = fifoLock(1);
}
