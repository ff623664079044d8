/**
 * Loading WebAssembly modules the same way in Deno (the edge runtime) and in Node (vitest).
 *
 * Every module is compiled once per isolate/process and cached. By default the bytes are read
 * from the installed npm package (resolved with `import.meta.resolve`, falling back to the
 * repository's node_modules folder); production can supply any module's bytes instead with
 * `setWasmSource` (e.g. fetched from storage), which is also how the ffmpeg core (too big for
 * the 20 MB bundle) is meant to arrive. Nothing here reads the environment.
 */

export type WasmName =
  | 'imagescript-jpeg'
  | 'imagescript-png'
  | 'imagescript-gif'
  | 'webp-enc'
  | 'webp-enc-simd'
  | 'webp-dec'
  | 'ffmpeg-core';

type BytesLoader = () => Promise<Uint8Array | ArrayBuffer>;

/** Package-relative locations of each module (spec for import.meta.resolve, path in node_modules). */
const ASSETS: Record<WasmName, { spec: string; path: string }> = {
  'imagescript-jpeg': { spec: 'imagescript/wasm/any/jpeg.wasm', path: 'imagescript/wasm/any/jpeg.wasm' },
  'imagescript-png': { spec: 'imagescript/wasm/any/png.wasm', path: 'imagescript/wasm/any/png.wasm' },
  'imagescript-gif': { spec: 'imagescript/wasm/any/gif.wasm', path: 'imagescript/wasm/any/gif.wasm' },
  'webp-enc': {
    spec: '@jsquash/webp/codec/enc/webp_enc.wasm',
    path: '@jsquash/webp/codec/enc/webp_enc.wasm',
  },
  'webp-enc-simd': {
    spec: '@jsquash/webp/codec/enc/webp_enc_simd.wasm',
    path: '@jsquash/webp/codec/enc/webp_enc_simd.wasm',
  },
  'webp-dec': {
    spec: '@jsquash/webp/codec/dec/webp_dec.wasm',
    path: '@jsquash/webp/codec/dec/webp_dec.wasm',
  },
  'ffmpeg-core': { spec: '@ffmpeg/core/wasm', path: '@ffmpeg/core/dist/esm/ffmpeg-core.wasm' },
};

const sources = new Map<WasmName, BytesLoader>();
const modules = new Map<WasmName, Promise<WebAssembly.Module>>();

/** Supply a module's bytes from elsewhere (storage, URL). Clears the cached module. */
export function setWasmSource(name: WasmName, loader: BytesLoader): void {
  sources.set(name, loader);
  modules.delete(name);
}

/** The compiled module, compiled once per process. */
export function wasmModule(name: WasmName): Promise<WebAssembly.Module> {
  let p = modules.get(name);
  if (!p) {
    p = (async () => {
      const bytes = await wasmBytes(name);
      return await WebAssembly.compile(bytes as BufferSource);
    })();
    // A failed load must not poison the cache: the next request tries again.
    p.catch(() => modules.delete(name));
    modules.set(name, p);
  }
  return p;
}

/** The raw bytes of a module (from the configured source, else the installed package). */
export async function wasmBytes(name: WasmName): Promise<Uint8Array | ArrayBuffer> {
  const custom = sources.get(name);
  if (custom) return await custom();
  return await readLocalFile(assetUrl(name));
}

/** file: URL of a packaged asset: import.meta.resolve when it yields a file, else node_modules. */
export function assetUrl(name: WasmName): URL {
  const { spec, path } = ASSETS[name];
  try {
    const resolved = (import.meta as any).resolve?.(spec);
    if (typeof resolved === 'string' && resolved.startsWith('file:')) return new URL(resolved);
  } catch {
    // fall through: not resolvable in this runtime (e.g. vitest, package exports)
  }
  return new URL(`../../node_modules/${path}`, import.meta.url);
}

/** Read a local file in Deno or Node without importing node: modules in Deno. */
export async function readLocalFile(url: URL): Promise<Uint8Array> {
  const deno = (globalThis as any).Deno;
  if (deno?.readFile) return await deno.readFile(url);
  const fs = await import('node:fs/promises');
  return new Uint8Array(await fs.readFile(url));
}

/** Node 20 has no ImageData; jsquash's glue constructs and accepts it. A minimal stand-in. */
export function ensureImageData(): void {
  const g = globalThis as any;
  if (typeof g.ImageData === 'function') return;
  g.ImageData = class ImageData {
    data: Uint8ClampedArray;
    width: number;
    height: number;
    colorSpace = 'srgb';
    constructor(data: Uint8ClampedArray, width: number, height: number) {
      this.data = data;
      this.width = width;
      this.height = height;
    }
  };
}
