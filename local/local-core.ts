/**
 * For code that renders posters outside a deployed function (tests, the bench): the ffmpeg
 * core's wasm from the installed package. A deployed function fetches it from storage instead
 * (shared/preview/handler.ts): it is over the 20 MB bundle limit and not embedded.
 */
import { setWasmSource } from '../shared/preview/wasm.ts';

export const LOCAL_CORE_WASM = new URL(
  '../node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm',
  import.meta.url,
);

export function useLocalFfmpegCore(): void {
  setWasmSource('ffmpeg-core', async () => {
    const deno = (globalThis as { Deno?: { readFile(u: URL): Promise<Uint8Array> } }).Deno;
    if (deno) return await deno.readFile(LOCAL_CORE_WASM);
    const fs = await import('node:fs/promises');
    return new Uint8Array(await fs.readFile(LOCAL_CORE_WASM));
  });
}
