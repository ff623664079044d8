/**
 * ffmpeg.wasm (@ffmpeg/core, single-threaded build) loaded directly, without @ffmpeg/ffmpeg's
 * worker wrapper (browser-only): the emscripten factory gets the compiled wasm module, so no
 * fetch and no file: URL is needed, and a stand-in `self.location` for the few synchronous
 * lines that expect a worker. The compiled module is cached per isolate; every call runs in a
 * fresh instance (see newCore), so nothing leaks from one call's file system or heap to the next.
 */
import { PreviewError } from '../errors.ts';
import { wasmModule, setWasmSource } from './wasm.ts';

export type FFmpegCore = {
  exec(...args: string[]): number;
  ffprobe(...args: string[]): number;
  reset(): void;
  setLogger(fn: (m: { type: string; message: string }) => void): void;
  setTimeout(ms: number): void;
  FS: any;
};

let coreLoader: (() => Promise<Uint8Array | ArrayBuffer>) | undefined;
let factoryPromise: Promise<(opts: any) => Promise<FFmpegCore>> | null = null;
let queue: Promise<unknown> = Promise.resolve();

/** Whether the core's wasm is already compiled in this isolate (for logs and benchmarks). */
export function isCoreCompiled(): boolean {
  return factoryPromise !== null;
}

/**
 * The compiled core (≈0.4 s of CPU for 32 MB of wasm) is cached per isolate; each call gets a
 * fresh instance of it (≈30 ms). Measured here: an instance reused after ffmpeg was stopped
 * early crashed the next call (memory access out of bounds), and a reused heap only grows;
 * a fresh instance has neither problem, and its heap is garbage as soon as the call returns.
 */
export async function newCore(loadCoreWasm?: () => Promise<Uint8Array | ArrayBuffer>): Promise<FFmpegCore> {
  if (loadCoreWasm && loadCoreWasm !== coreLoader) {
    coreLoader = loadCoreWasm;
    setWasmSource('ffmpeg-core', loadCoreWasm);
  }
  if (!factoryPromise) {
    factoryPromise = (async () => {
      const [{ default: factory }] = await Promise.all([import('@ffmpeg/core'), wasmModule('ffmpeg-core')]);
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
      throw new PreviewError('INTERNAL', `Internal error: cannot prepare ffmpeg core (${(err as Error).message})`);
    }
  }
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

/** Run `fn` with a fresh core; calls are serialised so two decodes never share the memory budget. */
export function withCore<T>(
  loadCoreWasm: (() => Promise<Uint8Array | ArrayBuffer>) | undefined,
  fn: (c: FFmpegCore) => Promise<T> | T,
): Promise<T> {
  const run = queue.then(async () => {
    const c = await newCore(loadCoreWasm);
    try {
      return await fn(c);
    } finally {
      c.setLogger(() => {});
    }
  });
  queue = run.catch(() => {});
  return run;
}

export const WORK_DIR = '/work';

/** Run ffmpeg, collecting its log; returns exit code and log lines. */
export function runFfmpeg(c: FFmpegCore, args: string[]): { code: number; log: string[] } {
  const log: string[] = [];
  c.setLogger((m) => log.push(m.message));
  c.reset();
  const code = c.exec(...args);
  return { code, log };
}
