/**
 * The one ffmpeg core this version ships, pinned by content: @ffmpeg/core 0.12.10's
 * dist/esm/ffmpeg-core.wasm (package.json pins the version). generate-preview compiles only a
 * core with this digest (core-source.ts), and deploy uploads only a file with it
 * (scripts/deploy.ts). tests/unit/core-digest.test.ts checks it against the installed file, so a
 * version bump that forgets to update it fails.
 */
export const FFMPEG_CORE_SHA256 =
  '9f57947a5bd530d8f00c5b3f2cb2a3492faa7e5d823315342d6a8656d0a6b7b7';

/** SHA-256 of bytes, as lowercase hex (Web Crypto: Deno, Node and the edge runtime alike). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
