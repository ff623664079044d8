/**
 * A streaming GIF decoder for the first frame: LZW codes are decoded into one row of palette
 * indices at a time, and each finished row goes to the area resizer at its place on the
 * logical screen (interlaced frames send their rows in the four passes' order; the resizer
 * sums in any order). Memory is the input plus the 4096-entry LZW table and one row, whatever
 * the picture's size. Pixels outside the frame, and the transparent index, are transparent.
 */
import { PreviewError } from '../errors.ts';
import type { AreaResizer } from './resize.ts';

const fail = (why: string) => new PreviewError('DECODE_FAILED', `Decode failed: GIF ${why}`);

/** The rows of an interlaced frame of height h, in the order they are stored. */
function* interlacedRows(h: number): Generator<number> {
  for (const [start, step] of [[0, 8], [4, 8], [2, 4], [1, 2]]) {
    for (let y = start; y < h; y += step) {
      yield y;
    }
  }
}

export function decodeGifStreaming(bytes: Uint8Array, resizer: AreaResizer): void {
  const u16 = (p: number) => bytes[p] | (bytes[p + 1] << 8);
  if (bytes.length < 13) throw fail('is truncated');
  let pos = 13;
  let palette: Uint8Array | null = null;
  if (bytes[10] & 0x80) {
    const n = 3 * (2 << (bytes[10] & 7));
    palette = bytes.subarray(pos, pos + n);
    pos += n;
  }
  let transparent = -1;
  const skipSubBlocks = () => {
    while (pos < bytes.length && bytes[pos] !== 0) pos += bytes[pos] + 1;
    pos++;
  };
  for (;;) {
    if (pos >= bytes.length) throw fail('is truncated (no image)');
    const block = bytes[pos];
    if (block === 0x21) {
      const label = bytes[pos + 1];
      if (label === 0xf9 && bytes[pos + 2] >= 4) {
        transparent = bytes[pos + 3] & 1 ? bytes[pos + 6] : -1;
      }
      pos += 2;
      skipSubBlocks();
    } else if (block === 0x2c) break;
    else {throw fail(
        block === 0x3b ? 'has no image' : `has an unknown block 0x${block.toString(16)}`,
      );}
  }
  if (pos + 10 > bytes.length) throw fail('is truncated');
  const fx = u16(pos + 1),
    fy = u16(pos + 3),
    fw = u16(pos + 5),
    fh = u16(pos + 7),
    packed = bytes[pos + 9];
  pos += 10;
  if (packed & 0x80) {
    const n = 3 * (2 << (packed & 7));
    palette = bytes.subarray(pos, pos + n);
    pos += n;
  }
  if (!palette) throw fail('has no colour table');
  if (pos >= bytes.length) throw fail('is truncated');
  const minSize = bytes[pos++];
  if (minSize < 2 || minSize > 11) throw fail(`has an invalid LZW code size ${minSize}`);

  // RGBA of each index (transparent index: alpha 0; indices past the table: opaque black)
  const colours = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) {
    if (i * 3 + 2 < palette.length) colours.set(palette.subarray(i * 3, i * 3 + 3), i * 4);
    colours[i * 4 + 3] = i === transparent ? 0 : 255;
  }
  const visibleW = Math.max(0, Math.min(fw, resizer.srcWidth - fx));
  const rowOrder = packed & 0x40 ? interlacedRows(fh) : null;
  const rgba = new Uint8Array(Math.max(1, visibleW) * 4);
  const indices = new Uint8Array(Math.max(1, fw));
  let x = 0, rowsDone = 0;
  const emit = (index: number) => {
    indices[x++] = index;
    if (x < fw) return;
    x = 0;
    const r = rowOrder ? rowOrder.next().value as number : rowsDone;
    rowsDone++;
    const y = fy + r;
    if (y >= resizer.srcHeight || visibleW === 0) return;
    for (let i = 0; i < visibleW; i++) {
      rgba.set(colours.subarray(indices[i] * 4, indices[i] * 4 + 4), i * 4);
    }
    resizer.pushPixels(rgba, 0, 4, y, fx, 1, visibleW);
  };

  // LZW: prefix/suffix table, codes read LSB first across the data sub-blocks
  const prefix = new Int16Array(4096), suffix = new Uint8Array(4096), stack = new Uint8Array(4097);
  const clear = 1 << minSize, end = clear + 1;
  let codeSize = minSize + 1, next = clear + 2, old = -1, first = 0;
  let bits = 0, acc = 0, blockLeft = 0;
  const total = fw * fh;
  let emitted = 0;
  decode: while (emitted < total) {
    while (bits < codeSize) {
      if (blockLeft === 0) {
        if (pos >= bytes.length || bytes[pos] === 0) break decode;
        blockLeft = bytes[pos++];
      }
      if (pos >= bytes.length) break decode;
      acc |= bytes[pos++] << bits;
      bits += 8;
      blockLeft--;
    }
    const code = acc & ((1 << codeSize) - 1);
    acc >>>= codeSize;
    bits -= codeSize;
    if (code === clear) {
      codeSize = minSize + 1;
      next = clear + 2;
      old = -1;
      continue;
    }
    if (code === end) break;
    if (old < 0) {
      if (code >= clear) throw fail('data is corrupt');
      emit(code);
      emitted++;
      old = first = code;
      continue;
    }
    let c = code, sp = 0;
    if (code >= next) {
      if (code > next) throw fail('data is corrupt');
      stack[sp++] = first;
      c = old;
    }
    while (c >= clear) {
      stack[sp++] = suffix[c];
      c = prefix[c];
    }
    first = c;
    stack[sp++] = c;
    while (sp > 0 && emitted < total) {
      emit(stack[--sp]);
      emitted++;
    }
    if (next < 4096) {
      prefix[next] = old;
      suffix[next] = first;
      next++;
      if (next === 1 << codeSize && codeSize < 12) codeSize++;
    }
    old = code;
  }
  if (emitted < total) throw fail(`is truncated (${emitted} of ${total} pixels)`);
}
