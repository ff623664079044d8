/**
 * What a bench child (ours.ts, posters.ts) measures in itself, on the edge runtime's Deno
 * (2.1.4, where `process.threadCpuUsage`/`resourceUsage` are missing and `process.cpuUsage` is
 * a stub) and with the edge capabilities only (Deno reads /proc/self only with --allow-all):
 *
 * - the platform's memory measure, V8 used heap + external (ArrayBuffers and wasm memory at
 *   their length), from `Deno.memoryUsage()`: sampled at every mark and every 5 ms while the
 *   event loop is free. A transient heap peak inside one synchronous wasm call is not seen;
 *   wasm memory, the bulk, never shrinks, so its peak is seen right after.
 * - CPU, asked of the parent at each mark (`--marks`): the parent reads this process's
 *   /proc/<pid>/task/<pid>/stat (the JS thread: Deno runs it on the main thread, tid = pid) and
 *   /proc/<pid>/stat (all threads), utime + stime in clock ticks (100 Hz, so 10 ms steps), and
 *   answers one line `<thread ms> <process ms>` (bench/run.ts cpuMarks()).
 */

export type Cpu = { thread: number; process: number };

/** Peak of heapUsed + external since the last reset, in MB. */
export class HeapExternalPeak {
  private peak = 0;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(everyMs = 5) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): number {
    const m = Deno.memoryUsage();
    const mb = (m.heapUsed + m.external) / 1048576;
    if (mb > this.peak) this.peak = mb;
    return mb;
  }

  /** The peak since the last reset (sampled now too), then starts a new window. */
  take(): number {
    this.sample();
    const p = this.peak;
    this.peak = 0;
    this.sample();
    return p;
  }

  /** The peak since the last reset, sampled now too, without starting a new window. */
  get(): number {
    this.sample();
    return this.peak;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const encoder = new TextEncoder();
let lines: AsyncIterator<string> | null = null;

async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of Deno.stdin.readable) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
}

/**
 * This process's CPU so far, from the parent (see above), or null when the parent does not
 * answer marks (`--marks` not given).
 */
export async function cpuMark(enabled: boolean): Promise<Cpu | null> {
  if (!enabled) return null;
  Deno.stdout.writeSync(encoder.encode('@@cpu\n'));
  lines ??= stdinLines();
  const next = await lines.next();
  if (next.done) throw new Error('the parent closed stdin before answering a CPU mark');
  const [thread, process] = next.value.trim().split(' ').map(Number);
  return { thread, process };
}

/** Waits until the parent closes stdin (it reads VmHWM from /proc/<pid>/status meanwhile). */
export async function holdUntilStdinCloses(): Promise<void> {
  lines ??= stdinLines();
  while (!(await lines.next()).done) {
    // ignore input
  }
}
