/**
 * ffmpeg.wasm (@ffmpeg/core, single-threaded build) loaded directly, without @ffmpeg/ffmpeg's
 * worker wrapper (browser-only): the emscripten factory gets the compiled wasm module, so no
 * fetch and no file: URL is needed, and a stand-in `self.location` for the few synchronous
 * lines that expect a worker. The compiled module is cached per isolate, and so is ONE instance
 * of it, reused by every call (see withCore): ffmpeg runs many times in the same heap, as
 * ffmpeg.wasm is meant to be used. A call cleans its files off the in-memory file system; an
 * instance that crashed is dropped and the next call gets a fresh one.
 */
import { PreviewError } from '../errors.ts';
import { isolateMemory } from './isolate.ts';
import { wasmModule } from './wasm.ts';

export type FFmpegCore = {
  exec(...args: string[]): number;
  ffprobe(...args: string[]): number;
  reset(): void;
  setLogger(fn: (m: { type: string; message: string }) => void): void;
  setTimeout(ms: number): void;
  FS: any;
};

let factoryPromise: Promise<(opts: any) => Promise<FFmpegCore>> | null = null;
let queue: Promise<unknown> = Promise.resolve();
/** The isolate's instance, reused across calls; null until first use and after a crash. */
let shared: FFmpegCore | null = null;
let instances = 0;
/** Each instance's wasm memory (its heap), for the guard and for dropping a grown instance. */
const memories = new WeakMap<FFmpegCore, WebAssembly.Memory>();

/**
 * The core's memory while a guarded call runs (withCore's `memory`): the platform ends an isolate
 * whose V8 heap + external memory (wasm memory included) reaches 256 MB, so no growth of the core's
 * heap may take the isolate past `CORE_MEMORY.guardTotal` (by the live measure where the runtime
 * gives one, else past the call's static cap). A refused growth fails the decoder's allocation
 * (emscripten's malloc returns NULL, ffmpeg's decoder errors out and exits normally), and the call
 * fails OVER_MEMORY_BUDGET instead of the isolate dying. After a call, an instance whose heap grew
 * past `keepBytes` is dropped, so a large decode does not hold its memory for the isolate's life.
 */
export const CORE_MEMORY = {
  guardTotal: 208 * 1048576,
  keepBytes: 64 * 1048576,
};
type Guard = { staticCap: number; refusedInRow: number; hit: boolean; peak: number };
let guard: Guard | null = null;

/** Whether a call now pays for compiling the core (once per isolate) or for a new instance. */
export function coreState(): { cold: boolean; instance: boolean } {
  return { cold: factoryPromise === null, instance: shared === null };
}

function guardGrowth(memory: WebAssembly.Memory): void {
  Object.defineProperty(memory, 'grow', {
    configurable: true,
    writable: true,
    value(this: WebAssembly.Memory, delta: number): number {
      const g = guard;
      const next = this.buffer.byteLength + delta * 65536;
      if (g) {
        const live = isolateMemory();
        const cap = live === null
          ? g.staticCap
          : CORE_MEMORY.guardTotal - (live - this.buffer.byteLength);
        if (next > cap) {
          // emscripten tries three sizes, each smaller, before malloc fails
          if (++g.refusedInRow >= 3) g.hit = true;
          throw new RangeError('the core may not grow past the memory budget');
        }
        g.refusedInRow = 0;
        g.peak = Math.max(g.peak, next);
      }
      // through the prototype: the runtime's own check of every grow is there
      return WebAssembly.Memory.prototype.grow.call(this, delta);
    },
  });
}

/** How many instances this isolate has created (for tests and benchmarks: 1 while none crashed). */
export function coreInstances(): number {
  return instances;
}

/**
 * A new instance of the compiled core (≈0.4 s of CPU for 32 MB of wasm, cached per isolate);
 * creating the instance itself costs ≈30 ms. Callers use withCore, which keeps one instance.
 */
export async function newCore(): Promise<FFmpegCore> {
  if (!factoryPromise) {
    factoryPromise = (async () => {
      const [{ default: factory }] = await Promise.all([
        import('./codecs/ffmpeg-core-glue.js'),
        wasmModule('ffmpeg-core'),
      ]);
      return factory as (opts: any) => Promise<FFmpegCore>;
    })();
    factoryPromise.catch(() => (factoryPromise = null));
  }
  const factory = await factoryPromise;
  const module = await wasmModule('ffmpeg-core');
  const g = globalThis as any;
  // The core was built for a worker: it reads self.location.href once, synchronously, in the
  // factory call. Provide a stand-in for that call only and restore the global afterwards.
  let locationOk = false;
  try {
    locationOk = !!g.self?.location?.href;
  } catch {
    locationOk = false;
  }
  const hadSelf = Object.prototype.hasOwnProperty.call(g, 'self');
  const savedSelf = hadSelf ? Object.getOwnPropertyDescriptor(g, 'self') : undefined;
  if (!locationOk) {
    try {
      Object.defineProperty(g, 'self', {
        value: { location: { href: 'file:///ffmpeg-core/' } },
        configurable: true,
        writable: true,
      });
    } catch (err) {
      throw new PreviewError(
        'INTERNAL',
        `Internal error: cannot prepare ffmpeg core (${(err as Error).message})`,
      );
    }
  }
  instances++;
  let ready: Promise<FFmpegCore>;
  let memory: WebAssembly.Memory | undefined;
  try {
    ready = factory({
      locateFile: (p: string) => p,
      instantiateWasm(imports: WebAssembly.Imports, done: (i: WebAssembly.Instance) => void) {
        const instance = new WebAssembly.Instance(module, imports);
        memory = Object.values(instance.exports).find((v) => v instanceof WebAssembly.Memory) as
          | WebAssembly.Memory
          | undefined;
        if (memory) guardGrowth(memory);
        done(instance);
        return instance.exports;
      },
    });
  } finally {
    if (!locationOk) {
      if (savedSelf) Object.defineProperty(g, 'self', savedSelf);
      else delete g.self;
    }
  }
  const core = await ready;
  if (memory) memories.set(core, memory);
  return core;
}

/** The wasm memory (bytes) of the instance the next call reuses (0: none yet). */
export function coreHeldBytes(): number {
  return shared ? coreMemoryBytes(shared) : 0;
}

/** The wasm memory (bytes) of an instance. */
export function coreMemoryBytes(core: FFmpegCore): number {
  return memories.get(core)?.buffer.byteLength ?? 0;
}

/**
 * Run `fn` with the isolate's ffmpeg instance; calls are serialised, so two decodes never share
 * the memory budget. One instance serves every call: its heap is allocated once and reused
 * (a fresh instance per call left each call's 30–50 MB heap to the garbage collector, and three
 * 1080p posters in a row peaked at 290 MB RSS). Reuse is safe because ffmpeg always ends
 * through its own exit path (see execFfmpeg; never through the core's timeout hook, after which
 * the next call crashed with `memory access out of bounds`), and WORK_DIR is emptied after each
 * call. If `fn` fails with anything but a PreviewError (a trap in the wasm, an abort, a file
 * system error), the instance is dropped; if it had served earlier calls, the call is retried
 * once on a fresh instance, so a poisoned instance costs one retry and never a wrong answer.
 * With `memory`, the call is guarded (CORE_MEMORY): a growth of the core's heap past the budget is
 * refused, and the call fails OVER_MEMORY_BUDGET naming `what` (`staticCap`: the most the heap
 * may hold where the isolate's own measure is not available).
 */
export function withCore<T>(
  fn: (c: FFmpegCore) => Promise<T> | T,
  opts: { memory?: { staticCap: number; what: string } } = {},
): Promise<T> {
  const run = queue.then(async () => {
    for (let attempt = 0;; attempt++) {
      const reused = shared !== null;
      const c = shared ?? (shared = await newCore());
      let broken = false;
      const g: Guard | null = opts.memory
        ? { staticCap: opts.memory.staticCap, refusedInRow: 0, hit: false, peak: 0 }
        : null;
      guard = g;
      try {
        const result = await fn(c);
        if (g?.hit) throw overBudget(opts.memory!.what);
        return result;
      } catch (err) {
        if (g?.hit) {
          broken = true; // its allocations failed half-way: never reused
          throw overBudget(opts.memory!.what);
        }
        if (err instanceof PreviewError) throw err;
        broken = true;
        if (reused && attempt === 0) continue;
        throw err;
      } finally {
        guard = null;
        try {
          c.setLogger(() => {});
          clearWorkDir(c);
        } catch {
          broken = true;
        }
        // a heap grown large is not kept for the isolate's life (wasm memory never shrinks)
        if (coreMemoryBytes(c) > CORE_MEMORY.keepBytes) broken = true;
        if (broken && shared === c) shared = null;
      }
    }
  });
  queue = run.catch(() => {});
  return run;
}

const overBudget = (what: string) =>
  new PreviewError(
    'OVER_MEMORY_BUDGET',
    `Over the memory budget: decoding ${what} needed more memory than an edge isolate has (the decoder was stopped at ${
      Math.round(CORE_MEMORY.guardTotal / 1048576)
    } MB)`,
  );

/** Remove WORK_DIR and everything in it (one level: calls create plain files only). */
function clearWorkDir(c: FFmpegCore): void {
  const FS = c.FS;
  if (!FS.analyzePath(WORK_DIR).exists) return;
  for (const name of FS.readdir(WORK_DIR) as string[]) {
    if (name !== '.' && name !== '..') FS.unlink(`${WORK_DIR}/${name}`);
  }
  FS.rmdir(WORK_DIR);
}

/**
 * Run ffmpeg once. Returns its exit code (0 or 1); throws a plain Error (so withCore drops the
 * instance) if ffmpeg did not reach its own exit: the core returns -1 when the run aborted.
 */
export function execFfmpeg(c: FFmpegCore, args: string[]): number {
  c.reset();
  const code = c.exec(...args);
  if (typeof code !== 'number' || code < 0) throw new Error(`ffmpeg did not finish (exit ${code})`);
  return code;
}

export const WORK_DIR = '/work';

/**
 * Lets ffmpeg read the file at `path` only below `cut` and inside `headers` (the container's
 * boxes or elements around the media data, wherever they lie): a read past them is the end of the
 * file, so ffmpeg decodes what it was given, flushes and exits normally. How a decode is held to
 * the frames its CPU budget allows (budget.ts planVideo); null: no limit.
 */
export function limitReads(
  core: FFmpegCore,
  path: string,
  cut: number | null,
  headers: [number, number][],
): void {
  if (cut === null) return;
  const node = core.FS.lookupPath(path).node;
  const ops = node.stream_ops;
  const readable = (pos: number) => {
    if (pos < cut) return cut - pos;
    for (const [from, to] of headers) if (pos >= from && pos < to) return to - pos;
    return 0;
  };
  node.stream_ops = {
    ...ops,
    read(stream: unknown, buffer: Uint8Array, offset: number, length: number, position: number) {
      const n = Math.min(length, readable(position));
      return n > 0 ? ops.read(stream, buffer, offset, n, position) : 0;
    },
  };
}
