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
  try {
    ready = factory({
      locateFile: (p: string) => p,
      instantiateWasm(imports: WebAssembly.Imports, done: (i: WebAssembly.Instance) => void) {
        const instance = new WebAssembly.Instance(module, imports);
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
  return await ready;
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
 */
export function withCore<T>(fn: (c: FFmpegCore) => Promise<T> | T): Promise<T> {
  const run = queue.then(async () => {
    for (let attempt = 0;; attempt++) {
      const reused = shared !== null;
      const c = shared ?? (shared = await newCore());
      let broken = false;
      try {
        return await fn(c);
      } catch (err) {
        if (err instanceof PreviewError) throw err;
        broken = true;
        if (reused && attempt === 0) continue;
        throw err;
      } finally {
        try {
          c.setLogger(() => {});
          clearWorkDir(c);
        } catch {
          broken = true;
        }
        if (broken && shared === c) shared = null;
      }
    }
  });
  queue = run.catch(() => {});
  return run;
}

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
