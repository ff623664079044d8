/**
 * Exact area-averaging downscale (a box filter with fractional pixel coverage), fed one source
 * row (or an interlaced pass's part of one) at a time so a decoder can stream rows into it and
 * never hold the full-size bitmap.
 * Colour is premultiplied by alpha while averaging, so transparent pixels do not bleed.
 */

/** Dimensions that fit inside a maxSide box, never enlarged. */
export function fitInside(
  width: number,
  height: number,
  maxSide: number,
): { width: number; height: number } {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

export class AreaResizer {
  readonly srcWidth: number;
  readonly srcHeight: number;
  readonly width: number;
  readonly height: number;
  private readonly acc: Float32Array;
  private readonly hrow: Float32Array;
  private readonly xIndex: Int32Array;
  private readonly xWeight: Float32Array;
  private readonly sy: number;
  private y = 0;
  private sawAlpha = false;

  constructor(srcWidth: number, srcHeight: number, width: number, height: number) {
    if (width > srcWidth || height > srcHeight) throw new RangeError('AreaResizer only shrinks');
    this.srcWidth = srcWidth;
    this.srcHeight = srcHeight;
    this.width = width;
    this.height = height;
    this.acc = new Float32Array(width * height * 4);
    this.hrow = new Float32Array((width + 1) * 4);
    this.xIndex = new Int32Array(srcWidth);
    this.xWeight = new Float32Array(srcWidth);
    const sx = srcWidth / width;
    for (let x = 0; x < srcWidth; x++) {
      const j = Math.min(width - 1, Math.floor(x / sx));
      this.xIndex[x] = j;
      // share of source pixel [x, x+1) that lies in output pixel j; the rest goes to j+1
      this.xWeight[x] = Math.min(1, (j + 1) * sx - x);
    }
    this.sy = srcHeight / height;
  }

  /** Whether any pushed pixel had alpha < 255. */
  get hasAlpha(): boolean {
    return this.sawAlpha;
  }

  /**
   * Add the next source row. `channels`: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (8-bit each);
   * `offset` is where the row starts in `row`.
   */
  pushRow(row: Uint8Array, offset: number, channels: 1 | 2 | 3 | 4): void {
    if (this.y >= this.srcHeight) return;
    this.pushPixels(row, offset, channels, this.y++, 0, 1, this.srcWidth);
  }

  /**
   * Add `n` pixels of source row `y`, at x = x0, x0 + dx, … (an interlaced pass's row). The
   * average is a sum, so pixels may arrive in any order; each must arrive once.
   */
  pushPixels(
    row: Uint8Array,
    offset: number,
    channels: 1 | 2 | 3 | 4,
    y: number,
    x0: number,
    dx: number,
    n: number,
  ): void {
    const { xIndex, xWeight } = this;
    const h = this.hrow;
    h.fill(0);
    let p = offset;
    if (channels === 3) {
      for (let k = 0, x = x0; k < n; k++, x += dx, p += 3) {
        const j = xIndex[x] << 2, w = xWeight[x], v = 1 - w;
        const r = row[p], g = row[p + 1], b = row[p + 2];
        h[j] += r * w;
        h[j + 1] += g * w;
        h[j + 2] += b * w;
        h[j + 3] += 255 * w;
        h[j + 4] += r * v;
        h[j + 5] += g * v;
        h[j + 6] += b * v;
        h[j + 7] += 255 * v;
      }
    } else if (channels === 4) {
      let alpha = 255;
      for (let k = 0, x = x0; k < n; k++, x += dx, p += 4) {
        const j = xIndex[x] << 2, w = xWeight[x], v = 1 - w;
        const a = row[p + 3];
        alpha &= a;
        const q = a / 255;
        const r = row[p] * q, g = row[p + 1] * q, b = row[p + 2] * q;
        h[j] += r * w;
        h[j + 1] += g * w;
        h[j + 2] += b * w;
        h[j + 3] += a * w;
        h[j + 4] += r * v;
        h[j + 5] += g * v;
        h[j + 6] += b * v;
        h[j + 7] += a * v;
      }
      if (alpha !== 255) this.sawAlpha = true;
    } else if (channels === 1) {
      for (let k = 0, x = x0; k < n; k++, x += dx, p++) {
        const j = xIndex[x] << 2, w = xWeight[x], v = 1 - w;
        const l = row[p];
        h[j] += l * w;
        h[j + 3] += 255 * w;
        h[j + 4] += l * v;
        h[j + 7] += 255 * v;
      }
      // gray: copy the luma sum into G and B at the end of the row
      for (let j = 0; j < h.length; j += 4) h[j + 1] = h[j + 2] = h[j];
    } else {
      let alpha = 255;
      for (let k = 0, x = x0; k < n; k++, x += dx, p += 2) {
        const j = xIndex[x] << 2, w = xWeight[x], v = 1 - w;
        const a = row[p + 1];
        alpha &= a;
        const l = row[p] * a / 255;
        h[j] += l * w;
        h[j + 3] += a * w;
        h[j + 4] += l * v;
        h[j + 7] += a * v;
      }
      for (let j = 0; j < h.length; j += 4) h[j + 1] = h[j + 2] = h[j];
      if (alpha !== 255) this.sawAlpha = true;
    }
    this.addRow(h, y);
  }

  private addRow(h: Float32Array, y: number): void {
    const { sy, width, height, acc } = this;
    const r = Math.min(height - 1, Math.floor(y / sy));
    const w = Math.min(1, (r + 1) * sy - y);
    const n = width * 4;
    let o = r * n;
    for (let i = 0; i < n; i++) acc[o + i] += h[i] * w;
    if (w < 1 && r + 1 < height) {
      const v = 1 - w;
      o += n;
      for (let i = 0; i < n; i++) acc[o + i] += h[i] * v;
    }
  }

  /** The averaged RGBA bitmap (straight alpha). Rows not pushed count as transparent black. */
  finish(): Uint8ClampedArray {
    const { acc } = this;
    const out = new Uint8ClampedArray(acc.length);
    const area = (this.srcWidth / this.width) * (this.srcHeight / this.height);
    const inv = 1 / area;
    for (let i = 0; i < acc.length; i += 4) {
      const a = acc[i + 3];
      if (a <= 0) continue;
      const k = 255 / a; // un-premultiply: colour sums were weighted by alpha/255
      out[i] = acc[i] * k + 0.5;
      out[i + 1] = acc[i + 1] * k + 0.5;
      out[i + 2] = acc[i + 2] * k + 0.5;
      out[i + 3] = a * inv + 0.5;
    }
    return out;
  }
}

/** Downscale a whole RGBA (or RGB/gray) bitmap. */
export function resizeArea(
  data: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  dstWidth: number,
  dstHeight: number,
): Uint8ClampedArray {
  const r = new AreaResizer(width, height, dstWidth, dstHeight);
  const u8 = data instanceof Uint8Array
    ? data
    : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const stride = width * channels;
  for (let y = 0; y < height; y++) r.pushRow(u8, y * stride, channels);
  return r.finish();
}

/** Apply an EXIF orientation (1..8) to an RGBA bitmap; returns the upright bitmap. */
export function orient(
  data: Uint8ClampedArray,
  width: number,
  height: number,
  orientation: number,
): { data: Uint8ClampedArray; width: number; height: number } {
  if (orientation < 2 || orientation > 8) return { data, width, height };
  const swap = orientation >= 5;
  const W = swap ? height : width;
  const H = swap ? width : height;
  const src = new Uint32Array(data.buffer, data.byteOffset, width * height);
  const outU8 = new Uint8ClampedArray(W * H * 4);
  const out = new Uint32Array(outU8.buffer);
  for (let Y = 0; Y < H; Y++) {
    for (let X = 0; X < W; X++) {
      let x: number, y: number;
      switch (orientation) {
        case 2:
          x = width - 1 - X;
          y = Y;
          break;
        case 3:
          x = width - 1 - X;
          y = height - 1 - Y;
          break;
        case 4:
          x = X;
          y = height - 1 - Y;
          break;
        case 5:
          x = Y;
          y = X;
          break;
        case 6:
          x = Y;
          y = height - 1 - X;
          break;
        case 7:
          x = width - 1 - Y;
          y = height - 1 - X;
          break;
        default:
          x = width - 1 - Y;
          y = X;
          break; // 8
      }
      out[Y * W + X] = src[y * width + x];
    }
  }
  return { data: outU8, width: W, height: H };
}
