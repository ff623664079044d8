/**
 * The one place for the preview defaults: the render path's options default to these, and so
 * do config.ts's PREVIEW_* variables (a leaf module, so the config imports no render code).
 */
export const RENDER_DEFAULTS = {
  /** Long side of the preview box, px. */
  maxSide: 512,
  /** WebP quality 0..100. */
  quality: 80,
  /** Pixel cap, checked from the header before decoding. */
  maxPixels: 50_000_000,
  /** Byte cap of the input. */
  maxBytes: 100 * 1024 * 1024,
} as const;

/**
 * The preview's sizes (long side, px): the first is the preview (preview_path, poster_path), the
 * others are larger sizes for screens of a higher density, made from the same decode.
 */
export const PREVIEW_SIZES_DEFAULT: readonly number[] = [512, 1024];
