/**
 * Where a deployed function's ffmpeg core comes from: its 32 MB wasm is over the bundle limit,
 * so it is fetched from FFMPEG_CORE_WASM_URL, else from our bucket (FFMPEG_CORE_WASM_PATH).
 * Registered once per isolate as the core's source (wasm.ts setWasmSource), the one place the
 * render path gets it from; wasm.ts keeps the compiled module, and the fetched bytes are not
 * kept (they were 31 MB of RSS held beside the module). Tests and the bench register the
 * installed package's copy instead (local/local-core.ts).
 *
 * Verified: the fetched bytes' SHA-256 must be FFMPEG_CORE_SHA256 (core-digest.ts), the digest
 * of the core this version ships. Bytes that differ (a core overwritten in a bucket whose write
 * policies were still open to anon, a wrong version, a CDN serving something else) are never
 * compiled: the job fails CORE_INTEGRITY (terminal), the message names the source and both
 * digests, and the line `[Preview] ffmpeg core rejected` is logged. Hashing costs little:
 * SHA-256 of the 32 MB core measured 45 ms of CPU on Deno 2.1.4 (x86-64 with SHA extensions),
 * of which 15 ms on the isolate's own thread (the copy Web Crypto takes) and the rest on
 * Deno's blocking pool; compiling the core costs about 0.4 s.
 */
import { getConfig } from '../config.ts';
import { PreviewError } from '../errors.ts';
import { log } from '../log.ts';
import { FFMPEG_CORE_SHA256, sha256Hex } from './core-digest.ts';
import { noteIo } from './isolate.ts';
import { setWasmSource } from './wasm.ts';

let registered = false;

/** Make the deployed source the core's source in this isolate (once; later calls do nothing). */
export function useDeployedFfmpegCore(): void {
  if (registered) return;
  registered = true;
  setWasmSource('ffmpeg-core', verifiedCoreLoader(deployedCoreSource));
}

/** Where the core is read from: its URL, the request's headers, and its name for messages. */
export type CoreSource = { url: string; headers: Record<string, string>; from: string };

function deployedCoreSource(): CoreSource {
  const config = getConfig();
  const { preview } = config;
  if (preview.ffmpegCoreWasmUrl) {
    return { url: preview.ffmpegCoreWasmUrl, headers: {}, from: 'FFMPEG_CORE_WASM_URL' };
  }
  // a plain fetch: half the time of supabase-js's Blob download
  return {
    url: `${config.supabaseUrl}/storage/v1/object/authenticated/${preview.bucket}/` +
      preview.ffmpegCoreWasmPath.split('/').map(encodeURIComponent).join('/'),
    headers: { apikey: config.serviceKey, authorization: `Bearer ${config.serviceKey}` },
    from: `storage (${preview.bucket}/${preview.ffmpegCoreWasmPath})`,
  };
}

/** How long a rejection is answered from memory when the source cannot say (by ETag) whether the core changed. */
export const CORE_RECHECK_MS = 60_000;

/**
 * The core's loader: fetched, hashed, returned only when its digest is `expected`.
 *
 * After a rejection: wasm.ts forgets a failed load, so every later job asks this loader again,
 * and a fixed core must load without restarting the isolate; but fetching 32 MB again for every
 * job while the stored core is still the bad one would spend each job's I/O for nothing. So the
 * isolate remembers the rejection with the source's ETag, and a later load first asks a HEAD
 * (a few hundred bytes): the same ETag → the same bytes → CORE_INTEGRITY again, nothing fetched;
 * another ETag (deploy uploaded the right core) → fetched and verified again at once. Only when
 * the source gives no ETag or the HEAD fails is the answer kept for CORE_RECHECK_MS, then fetched
 * again. An ETag is only ever trusted to refuse, never to accept: accepted bytes are always the
 * bytes just hashed.
 */
export function verifiedCoreLoader(
  source: () => CoreSource,
  expected = FFMPEG_CORE_SHA256,
  now: () => number = Date.now,
): () => Promise<Uint8Array> {
  let rejected: { etag: string | null; at: number; found: string; message: string } | null = null;
  return async () => {
    const where = source();
    if (rejected && await unchangedSince(where, rejected, now)) {
      log.error('[Preview]', 'ffmpeg core rejected', {
        from: where.from,
        expected,
        found: rejected.found,
        fetched: false,
      });
      throw new PreviewError('CORE_INTEGRITY', rejected.message);
    }
    const started = performance.now();
    const res = await fetch(where.url, { headers: where.headers });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`Loading the ffmpeg core from ${where.from} failed: ${res.status}`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    noteIo(performance.now() - started);
    const found = await sha256Hex(bytes);
    if (found !== expected) {
      const message = `The ffmpeg core from ${where.from} is not the one this version ships: ` +
        `sha256 ${found} (${bytes.length} bytes), expected ${expected}; it was not compiled ` +
        '(put the right one back: npm run deploy -- --only core)';
      rejected = { etag: res.headers.get('etag'), at: now(), found, message };
      log.error('[Preview]', 'ffmpeg core rejected', {
        from: where.from,
        expected,
        found,
        bytes: bytes.length,
        fetched: true,
      });
      throw new PreviewError('CORE_INTEGRITY', message);
    }
    rejected = null;
    log.info('[Preview]', 'ffmpeg core loaded', {
      bytes: bytes.length,
      ms: Math.round(performance.now() - started),
      sha256: 'verified',
    });
    return bytes;
  };
}

/** Whether the source still serves the rejected bytes, as far as can be told without fetching them. */
async function unchangedSince(
  where: CoreSource,
  rejected: { etag: string | null; at: number },
  now: () => number,
): Promise<boolean> {
  if (rejected.etag) {
    const started = performance.now();
    try {
      const head = await fetch(where.url, { method: 'HEAD', headers: where.headers });
      await head.body?.cancel();
      const etag = head.ok ? head.headers.get('etag') : null;
      if (etag) return etag === rejected.etag;
    } catch {
      // unanswered: decided by time, below
    } finally {
      noteIo(performance.now() - started);
    }
  }
  return now() - rejected.at < CORE_RECHECK_MS;
}
