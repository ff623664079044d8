/**
 * Where a deployed function's ffmpeg core comes from: its 32 MB wasm is over the bundle limit,
 * so it is fetched from FFMPEG_CORE_WASM_URL, else from our bucket (FFMPEG_CORE_WASM_PATH).
 * Registered once per isolate as the core's source (wasm.ts setWasmSource), the one place the
 * render path gets it from; wasm.ts keeps the compiled module, and the fetched bytes are not
 * kept (they were 31 MB of RSS held beside the module). Tests and the bench register the
 * installed package's copy instead (local/local-core.ts).
 */
import { getConfig } from '../config.ts';
import { log } from '../log.ts';
import { noteIo } from './isolate.ts';
import { setWasmSource } from './wasm.ts';

let registered = false;

/** Make the deployed source the core's source in this isolate (once; later calls do nothing). */
export function useDeployedFfmpegCore(): void {
  if (registered) return;
  registered = true;
  setWasmSource('ffmpeg-core', fetchCoreWasm);
}

async function fetchCoreWasm(): Promise<Uint8Array> {
  const config = getConfig();
  const { preview } = config;
  const started = performance.now();
  // a plain fetch: half the time of supabase-js's Blob download
  const stored = `${config.supabaseUrl}/storage/v1/object/authenticated/${preview.bucket}/` +
    preview.ffmpegCoreWasmPath.split('/').map(encodeURIComponent).join('/');
  const res = await fetch(preview.ffmpegCoreWasmUrl ?? stored, {
    headers: preview.ffmpegCoreWasmUrl
      ? {}
      : { apikey: config.serviceKey, authorization: `Bearer ${config.serviceKey}` },
  });
  if (!res.ok) {
    const from = preview.ffmpegCoreWasmUrl
      ? 'FFMPEG_CORE_WASM_URL'
      : `storage (${preview.bucket}/${preview.ffmpegCoreWasmPath})`;
    throw new Error(`Loading the ffmpeg core from ${from} failed: ${res.status}`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  noteIo(performance.now() - started);
  log.info('[Preview]', 'ffmpeg core loaded', {
    bytes: bytes.length,
    ms: Math.round(performance.now() - started),
  });
  return bytes;
}
