/**
 * The preview version stamped on every preview (generations.preview_version): the renderer and
 * the settings that shape its output. `npm run backfill:previews -- --stale` re-renders ready
 * rows of any other version, oldest first.
 */

/**
 * Bump when the renderer's output changes for the same input (decoder, resizer, encoder, frame
 * choice); tests/render/renderer-version.test.ts fails until you do (its golden keeps the bytes).
 */
// 2 (was 1): new JPEG, WebP, GIF and interlaced PNG decoders; 4K posters from keyframes.
// 3: every size from one decode in the largest size's box (the first scaled down from it).
export const RENDERER_VERSION = 3;

/** `r3-s512,1024-q80`: the renderer, PREVIEW_SIZES and PREVIEW_QUALITY. */
export function previewVersion(p: { sizes: readonly number[]; quality: number }): string {
  return `r${RENDERER_VERSION}-s${p.sizes.join(',')}-q${p.quality}`;
}
