/**
 * One function isolate of the local gateway, as the edge runtime runs one (supabase/edge-runtime
 * v1.74.0): a Deno 2.1.4 process (the runtime's Deno) without FFI, subprocess, Worker or file
 * rights, serving one function module's `Deno.serve` handler on a loopback port the runner
 * (functions-runner.ts) proxies to. Several requests may be in it at once, as on the platform.
 *
 * What the runtime does inside the isolate, this module does:
 *   - EdgeRuntime.waitUntil (background work after the response), no Web Workers;
 *   - the memory check: V8's used heap + external memory (ArrayBuffers and wasm memory, counted
 *     at their length), the runtime's MemCheck (crates/base/src/runtime/mod.rs). The runtime
 *     checks on every ArrayBuffer allocation and GC; here the check runs every 20 ms of the
 *     event loop while a request or waitUntil work is in the isolate, at the end of each
 *     request, and on every JS-side WebAssembly.Memory grow (emscripten's heap growth), so a
 *     synchronous wasm call that grows memory by itself is seen when it returns;
 *   - `beforeunload` (a CustomEvent with detail.reason 'cpu' | 'memory' | 'wall_clock' |
 *     'early_drop', as the runtime's bootstrap.js dispatches it): memory at 90 % here, CPU and
 *     wall clock when the runner says so, early_drop before a retired isolate is dropped.
 *
 * Control lines to the runner start with `@@fnhost ` on stdout:
 *   READY <port>          the module loaded and the server listens
 *   BOOT_ERROR <message>  the module loaded but served nothing (the platform answers 503)
 *   IDLE <accepted>       no request in flight and no waitUntil work pending, after <accepted> requests
 *   MEM <bytes>           a new peak of heap + external
 *   MEM_HALF              heap + external reached half the limit (the supervisor's resource alert)
 *   MEMORY_LIMIT <bytes>  heap + external reached the limit: the isolate ends now
 * Lines from the runner on stdin: `BEFOREUNLOAD <reason>`, `DROP` (dispatch beforeunload
 * early_drop, then exit). EOF on stdin means the gateway is gone: the isolate exits with it.
 */
type Handler = (req: Request, info?: unknown) => Response | Promise<Response>;
export type HostLimits = { memoryMb: number; beforeunloadPct: number };

let handler: Handler | undefined;
let inFlight = 0;
let accepted = 0;
let pending = 0;

function control(line: string): void {
  console.log(`@@fnhost ${line}`);
}

/** The memory check's timer runs only while the isolate works: an idle isolate spends no CPU. */
let ticking: ReturnType<typeof setInterval> | undefined;

function reportIfIdle(): void {
  if (inFlight === 0 && pending === 0) {
    clearInterval(ticking);
    ticking = undefined;
    control(`IDLE ${accepted}`);
  }
}

function working(): void {
  ticking ??= setInterval(checkMemory, 20);
}

// The edge runtime's API for background work after the response.
(globalThis as any).EdgeRuntime = {
  waitUntil(promise: Promise<unknown>) {
    pending++;
    working();
    Promise.resolve(promise).catch((err) => {
      console.error(
        `[EdgeRuntime] waitUntil task failed: ${err instanceof Error ? err.stack : err}`,
      );
    }).finally(() => {
      pending--;
      reportIfIdle();
    });
    return promise;
  },
};

// The edge runtime has no Web Workers.
(globalThis as any).Worker = class {
  constructor() {
    throw new Error('Web Workers are not available in the Supabase edge runtime');
  }
};

const realServe = Deno.serve.bind(Deno);
// Function modules call Deno.serve(handler) or Deno.serve(options, handler): capture the handler.
(Deno as any).serve = (a: unknown, b?: unknown) => {
  handler =
    (typeof a === 'function' ? a : typeof b === 'function' ? b : (a as any)?.handler) as Handler;
  return {
    finished: new Promise(() => {}),
    shutdown: async () => {},
    ref() {},
    unref() {},
    addr: null,
  };
};

const dispatched = new Set<string>();
/** The runtime's dispatchBeforeUnloadEvent, once per reason. */
function beforeunload(reason: string): void {
  if (dispatched.has(reason)) return;
  dispatched.add(reason);
  try {
    globalThis.dispatchEvent(
      new CustomEvent('beforeunload', { cancelable: true, detail: { reason } }),
    );
  } catch (err) {
    console.error(
      `[EdgeRuntime] beforeunload handler failed: ${err instanceof Error ? err.stack : err}`,
    );
  }
}

let memory: { limit: number; alert: number; half: number; peak: number } | null = null;

/** The runtime's MemCheck: used heap + external, against the isolate's limit. */
function checkMemory(): void {
  if (!memory) return;
  const { heapUsed, external } = Deno.memoryUsage();
  const used = heapUsed + external;
  if (used >= memory.limit) {
    control(`MEMORY_LIMIT ${used}`);
    Deno.exit(137);
  }
  if (used > memory.peak + 1048576) {
    memory.peak = used;
    control(`MEM ${used}`);
  }
  if (used >= memory.half && memory.half > 0) {
    memory.half = 0;
    control('MEM_HALF');
  }
  if (used >= memory.alert) beforeunload('memory');
}

// emscripten grows its heap from JS (emscripten_resize_heap → memory.grow): check right after.
const realGrow = WebAssembly.Memory.prototype.grow;
WebAssembly.Memory.prototype.grow = function (this: WebAssembly.Memory, delta: number): number {
  const r = realGrow.call(this, delta);
  checkMemory();
  return r;
};

// Lines from the runner; EOF (or an error) means the gateway is gone, killed or crashed: a worker
// must not outlive it, still writing to the database with nobody reading its logs.
(async () => {
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for await (const chunk of Deno.stdin.readable) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [cmd, arg] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (cmd === 'BEFOREUNLOAD') beforeunload(arg);
        else if (cmd === 'DROP') {
          beforeunload('early_drop');
          Deno.exit(0);
        }
      }
    }
  } catch { /* closed */ }
  Deno.exit(0);
})();

/** Serve the handler the entry (imported before the call) gave to Deno.serve. */
export function start(limits: HostLimits): void {
  if (!handler) {
    control(`BOOT_ERROR ${JSON.stringify('Error: the module did not call Deno.serve(handler)')}`);
    Deno.exit(1);
  }
  const limit = limits.memoryMb * 1048576;
  memory = { limit, alert: (limit * limits.beforeunloadPct) / 100, half: limit / 2, peak: 0 };
  realServe({
    hostname: '127.0.0.1',
    port: 0,
    onListen: ({ port }) => control(`READY ${port}`),
  }, async (req, info) => {
    inFlight++;
    accepted++;
    working();
    try {
      return await handler!(req, info);
    } catch (err) {
      console.error(`[EdgeRuntime] uncaught error: ${err instanceof Error ? err.stack : err}`);
      return Response.json({
        code: 'INTERNAL_ERROR',
        message: 'The function threw an uncaught error',
      }, { status: 500 });
    } finally {
      inFlight--;
      checkMemory();
      queueMicrotask(reportIfIdle);
    }
  });
}
