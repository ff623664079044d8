/**
 * A streaming PNG decoder that never holds the full-size bitmap: IDAT data goes through the
 * runtime's native inflate (DecompressionStream, in Deno and Node alike), each scanline is
 * unfiltered against the previous one and handed to the area resizer as it arrives. Memory is
 * the compressed input plus a few rows, whatever the image size. Interlaced (Adam7) files too:
 * each pass is a small image of its own, and its rows go to the resizer at their places.
 */
import { PreviewError } from '../errors.ts';
import { AreaResizer } from './resize.ts';

type Ihdr = { width: number; height: number; depth: number; colorType: number; interlace: number };

/** Channels per PNG colour type (header.ts reads it too, for the decode budget). */
export const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Compressed bytes per write to the inflater (deflate expands at most ~1032:1: ≤ 4 MB out). */
const INFLATE_SLICE = 4096;

/** Adam7's passes: first column, first row, column step, row step. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [
  0,
  1,
  1,
  2,
]];

const fail = (why: string) => new PreviewError('DECODE_FAILED', `Decode failed: PNG ${why}`);

export async function decodePngStreaming(bytes: Uint8Array, resizer: AreaResizer): Promise<void> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let ihdr: Ihdr | null = null;
  let palette: Uint8Array | null = null;
  let trns: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  let pos = 8;
  let sawEnd = false;
  while (pos + 8 <= bytes.length) {
    const len = dv.getUint32(pos);
    const type = String.fromCharCode(
      bytes[pos + 4],
      bytes[pos + 5],
      bytes[pos + 6],
      bytes[pos + 7],
    );
    const start = pos + 8;
    if (start + len > bytes.length) {
      if (type === 'IDAT') idat.push(bytes.subarray(start)); // truncated: inflate will tell
      break;
    }
    const data = bytes.subarray(start, start + len);
    if (type === 'IHDR') {
      ihdr = {
        width: dv.getUint32(start),
        height: dv.getUint32(start + 4),
        depth: data[8],
        colorType: data[9],
        interlace: data[12],
      };
    } else if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') trns = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') {
      sawEnd = true;
      break;
    }
    pos = start + len + 4;
  }
  if (!ihdr) throw fail('has no IHDR');
  const { width, height, depth, colorType } = ihdr;
  const channels = CHANNELS[colorType];
  if (!channels || ![1, 2, 4, 8, 16].includes(depth)) {
    throw fail(`has an invalid colour type/bit depth ${colorType}/${depth}`);
  }
  if (colorType === 3 && !palette) throw fail('has no palette');
  if (idat.length === 0) throw fail('has no image data');
  void sawEnd;

  const bitsPerPixel = channels * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  // the passes' sub-images (one covering everything when not interlaced), empty ones skipped
  const passes = (ihdr.interlace === 1 ? ADAM7 : [[0, 0, 1, 1]])
    .map(([x0, y0, dx, dy]) => ({
      x0,
      y0,
      dx,
      dy,
      w: Math.ceil((width - x0) / dx),
      h: Math.ceil((height - y0) / dy),
    }))
    .filter((q) => q.w > 0 && q.h > 0);
  const totalLines = passes.reduce((n, q) => n + q.h, 0);
  const lineLenOf = (q: { w: number }) => Math.ceil((q.w * bitsPerPixel) / 8) + 1;
  let pass = 0, passRow = 0, lines = 0;
  let lineLen = lineLenOf(passes[0]);
  let prev = new Uint8Array(Math.ceil((width * bitsPerPixel) / 8) + 1); // the longest line
  let cur = new Uint8Array(prev.length);
  let fill = 0;

  // direct paths push the unfiltered line as is; others convert to RGBA first
  const direct = depth === 8 &&
    (colorType === 2 || colorType === 6 || colorType === 0 || colorType === 4) &&
    !(trns && (colorType === 0 || colorType === 2));
  const rgba = direct ? null : new Uint8Array(width * 4);
  const paletteRgba = colorType === 3 ? buildPalette(palette!, trns) : null;

  const emitLine = () => {
    const q = passes[pass];
    unfilter(cur, prev, lineLen - 1, bpp);
    const y = q.y0 + passRow * q.dy;
    if (direct) {
      resizer.pushPixels(cur, 1, channels as 1 | 2 | 3 | 4, y, q.x0, q.dx, q.w);
    } else {
      toRgba(cur, rgba!, q.w, depth, colorType, paletteRgba, trns);
      resizer.pushPixels(rgba!, 0, 4, y, q.x0, q.dx, q.w);
    }
    const t = prev;
    prev = cur;
    cur = t;
    lines++;
    if (++passRow === q.h && ++pass < passes.length) {
      // a new pass: its first line is filtered against zeros
      passRow = 0;
      lineLen = lineLenOf(passes[pass]);
      prev.fill(0);
    }
  };

  const ds = new DecompressionStream('deflate');
  const writer = ds.writable.getWriter();
  // Small writes: the stream waits for our reads before inflating the next one, so no single
  // output chunk holds the whole image (a flat IDAT of a few hundred KB inflates to hundreds of
  // MB). The runtime frees consumed chunks lazily, so memory still grows with the inflated size:
  // budget.ts counts it.
  const writing = (async () => {
    for (const chunk of idat) {
      for (let o = 0; o < chunk.length; o += INFLATE_SLICE) {
        await writer.ready;
        await writer.write(chunk.subarray(o, o + INFLATE_SLICE) as Uint8Array<ArrayBuffer>);
      }
    }
    await writer.close();
  })();
  writing.catch(() => {}); // surfaced through the reader
  const reader = ds.readable.getReader();
  try {
    while (lines < totalLines) {
      const { value, done } = await reader.read();
      if (done) break;
      let off = 0;
      while (off < value.length && lines < totalLines) {
        const take = Math.min(lineLen - fill, value.length - off);
        cur.set(value.subarray(off, off + take), fill);
        fill += take;
        off += take;
        if (fill === lineLen) {
          emitLine();
          fill = 0;
        }
      }
    }
  } catch (err) {
    throw new PreviewError(
      'DECODE_FAILED',
      `Decode failed: PNG data is corrupt (${(err as Error).message})`,
      { cause: err },
    );
  } finally {
    reader.cancel().catch(() => {});
  }
  if (lines < totalLines) throw fail(`is truncated (${lines} of ${totalLines} rows)`);
}

function unfilter(line: Uint8Array, prev: Uint8Array, rowBytes: number, bpp: number): void {
  const f = line[0];
  const n = rowBytes + 1;
  switch (f) {
    case 0:
      return;
    case 1:
      for (let i = 1 + bpp; i < n; i++) line[i] = (line[i] + line[i - bpp]) & 255;
      return;
    case 2:
      for (let i = 1; i < n; i++) line[i] = (line[i] + prev[i]) & 255;
      return;
    case 3:
      for (let i = 1; i < 1 + bpp && i < n; i++) line[i] = (line[i] + (prev[i] >> 1)) & 255;
      for (let i = 1 + bpp; i < n; i++) {
        line[i] = (line[i] + ((line[i - bpp] + prev[i]) >> 1)) & 255;
      }
      return;
    case 4: {
      for (let i = 1; i < 1 + bpp && i < n; i++) line[i] = (line[i] + prev[i]) & 255;
      for (let i = 1 + bpp; i < n; i++) {
        const a = line[i - bpp], b = prev[i], c = prev[i - bpp];
        const p = a + b - c;
        const pa = p > a ? p - a : a - p;
        const pb = p > b ? p - b : b - p;
        const pc = p > c ? p - c : c - p;
        line[i] = (line[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 255;
      }
      return;
    }
    default:
      throw fail(`has an invalid filter type ${f}`);
  }
}

function buildPalette(plte: Uint8Array, trns: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) {
    if (i * 3 + 2 < plte.length) {
      out[i * 4] = plte[i * 3];
      out[i * 4 + 1] = plte[i * 3 + 1];
      out[i * 4 + 2] = plte[i * 3 + 2];
    }
    out[i * 4 + 3] = trns && i < trns.length ? trns[i] : 255;
  }
  return out;
}

/** Any non-direct PNG line (bit depths 1-16, palette, colour keys) to 8-bit RGBA. */
function toRgba(
  line: Uint8Array,
  out: Uint8Array,
  width: number,
  depth: number,
  colorType: number,
  pal: Uint8Array | null,
  trns: Uint8Array | null,
): void {
  const src = 1;
  if (depth < 8) {
    const perByte = 8 / depth;
    const mask = (1 << depth) - 1;
    const scale = 255 / mask;
    const key = colorType === 0 && trns && trns.length >= 2
      ? ((trns[0] << 8) | trns[1]) & mask
      : -1;
    for (let x = 0; x < width; x++) {
      const byte = line[src + Math.floor(x / perByte)];
      const shift = 8 - depth * (1 + (x % perByte));
      const v = (byte >> shift) & mask;
      const o = x * 4;
      if (colorType === 3) {
        const p = v * 4;
        out[o] = pal![p];
        out[o + 1] = pal![p + 1];
        out[o + 2] = pal![p + 2];
        out[o + 3] = pal![p + 3];
      } else {
        const l = Math.round(v * scale);
        out[o] = out[o + 1] = out[o + 2] = l;
        out[o + 3] = v === key ? 0 : 255;
      }
    }
    return;
  }
  const step = depth === 16 ? 2 : 1;
  const read = (i: number) => line[src + i * step]; // high byte of 16-bit samples
  const read16 = (i: number) =>
    depth === 16 ? (line[src + i * 2] << 8) | line[src + i * 2 + 1] : line[src + i];
  for (let x = 0; x < width; x++) {
    const o = x * 4;
    switch (colorType) {
      case 0: {
        const l = read(x);
        out[o] = out[o + 1] = out[o + 2] = l;
        out[o + 3] = trns && trns.length >= 2 && read16(x) === ((trns[0] << 8) | trns[1]) ? 0 : 255;
        break;
      }
      case 2: {
        out[o] = read(x * 3);
        out[o + 1] = read(x * 3 + 1);
        out[o + 2] = read(x * 3 + 2);
        out[o + 3] = trns && trns.length >= 6 && read16(x * 3) === ((trns[0] << 8) | trns[1]) &&
            read16(x * 3 + 1) === ((trns[2] << 8) | trns[3]) &&
            read16(x * 3 + 2) === ((trns[4] << 8) | trns[5])
          ? 0
          : 255;
        break;
      }
      case 3: {
        const p = line[src + x] * 4;
        out[o] = pal![p];
        out[o + 1] = pal![p + 1];
        out[o + 2] = pal![p + 2];
        out[o + 3] = pal![p + 3];
        break;
      }
      case 4: {
        const l = read(x * 2);
        out[o] = out[o + 1] = out[o + 2] = l;
        out[o + 3] = read(x * 2 + 1);
        break;
      }
      default: {
        out[o] = read(x * 4);
        out[o + 1] = read(x * 4 + 1);
        out[o + 2] = read(x * 4 + 2);
        out[o + 3] = read(x * 4 + 3);
      }
    }
  }
}
