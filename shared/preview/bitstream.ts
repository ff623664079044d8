/**
 * What a video decoder will really allocate, read from the bitstream itself rather than from the
 * container around it (a container's tkhd/stsd or PixelWidth can say 640×360 over an 8K stream,
 * 0×0, or nothing, and ffmpeg decodes the stream): the coded size after cropping, the chroma
 * format, the bit depth and how many frames the decoder keeps for reference and reordering.
 *
 * - H.264: the sequence parameter set (from avcC, or length-prefixed/Annex B NAL units of a
 *   sample): pic_width_in_mbs, pic_height_in_map_units, frame_mbs_only, cropping,
 *   chroma_format_idc, bit depth, max_num_ref_frames and the VUI's max_dec_frame_buffering /
 *   max_num_reorder_frames.
 * - HEVC: the SPS (from hvcC or a sample): pic_width/height_in_luma_samples, the conformance
 *   window, chroma_format_idc, bit depth, sps_max_dec_pic_buffering and max_num_reorder_pics.
 * - VP9: the uncompressed header of a key frame (profile, bit depth, subsampling, frame size).
 * - AV1: the sequence header OBU (from av1C or a sample): max_frame_width/height, bit depth,
 *   subsampling.
 * Anything else (VP8, MPEG-4 part 2, ProRes…) is not parsed: the container's size stands, and
 * the decoder's memory is capped while it runs (ffmpeg.ts).
 */

export type Codec = 'h264' | 'hevc' | 'vp9' | 'av1' | 'other';

export type StreamInfo = {
  codec: Codec;
  /** Displayed (cropped) size. */
  width: number;
  height: number;
  /** The size the decoder allocates per frame (whole macroblocks / coding blocks). */
  codedWidth: number;
  codedHeight: number;
  /** 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4. */
  chroma: number;
  bitDepth: number;
  /** Frames the decoder may hold for reference and reordering (the DPB), current frame excluded. */
  dpb: number;
  /** Frames a decoded frame waits for before it is output (display reordering). */
  reorder: number;
};

/** Bytes of one decoded frame at the coded size (planar, 1 or 2 bytes a sample). */
export function frameBytes(s: StreamInfo): number {
  const chroma = [0, 0.5, 1, 2][s.chroma] ?? 2;
  return s.codedWidth * s.codedHeight * (1 + chroma) * (s.bitDepth > 8 ? 2 : 1);
}

// ---------------------------------------------------------------- bits

class Bits {
  private pos = 0;
  constructor(private readonly b: Uint8Array) {}
  get left(): number {
    return this.b.length * 8 - this.pos;
  }
  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) {
      if (this.pos >= this.b.length * 8) throw new Error('bitstream ends early');
      v = v * 2 + ((this.b[this.pos >> 3] >> (7 - (this.pos & 7))) & 1);
      this.pos++;
    }
    return v;
  }
  flag(): boolean {
    return this.u(1) === 1;
  }
  skip(n: number): void {
    this.pos += n;
    if (this.pos > this.b.length * 8) throw new Error('bitstream ends early');
  }
  /** Exp-Golomb, unsigned. */
  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) {
      if (++zeros > 31) throw new Error('bad exp-golomb code');
    }
    return 2 ** zeros - 1 + this.u(zeros);
  }
  se(): number {
    const k = this.ue();
    return k & 1 ? (k + 1) / 2 : -k / 2;
  }
}

/** A NAL unit's payload without emulation-prevention bytes (00 00 03 → 00 00). */
export function unescapeNal(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(nal.length);
  let n = 0;
  let zeros = 0;
  for (let i = 0; i < nal.length; i++) {
    const v = nal[i];
    if (zeros >= 2 && v === 3) {
      zeros = 0;
      continue;
    }
    zeros = v === 0 ? zeros + 1 : 0;
    out[n++] = v;
  }
  return out.subarray(0, n);
}

/** The NAL units of a sample: length-prefixed (MP4/Matroska, `lengthSize` 1–4) or Annex B (0). */
export function nalUnits(data: Uint8Array, lengthSize: number, max = 64): Uint8Array[] {
  const out: Uint8Array[] = [];
  if (lengthSize > 0) {
    let p = 0;
    while (p + lengthSize <= data.length && out.length < max) {
      let len = 0;
      for (let i = 0; i < lengthSize; i++) len = len * 256 + data[p + i];
      p += lengthSize;
      if (len === 0) break;
      // a NAL unit cut short by the bytes given (a sample's head) is kept as far as it goes
      out.push(data.subarray(p, Math.min(p + len, data.length)));
      p += len;
    }
    return out;
  }
  let start = -1;
  for (let i = 0; i + 2 < data.length && out.length < max; i++) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1) {
      if (start >= 0) out.push(trimZeros(data.subarray(start, i)));
      start = i + 3;
      i += 2;
    }
  }
  if (start >= 0 && out.length < max) out.push(data.subarray(start));
  return out;
}

const trimZeros = (b: Uint8Array) => {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return b.subarray(0, end);
};

// ---------------------------------------------------------------- H.264

/** MaxDpbMbs by level_idc (H.264 table A-1). */
const H264_MAX_DPB_MBS: Record<number, number> = {
  9: 396,
  10: 396,
  11: 900,
  12: 2376,
  13: 2376,
  20: 2376,
  21: 4752,
  22: 8100,
  30: 8100,
  31: 18000,
  32: 20480,
  40: 32768,
  41: 32768,
  42: 34816,
  50: 110400,
  51: 184320,
  52: 184320,
  60: 696320,
  61: 696320,
  62: 696320,
};

/** An H.264 sequence parameter set (the NAL unit, header byte included). */
export function parseH264Sps(nal: Uint8Array): StreamInfo {
  const r = new Bits(unescapeNal(nal.subarray(1)));
  const profile = r.u(8);
  r.skip(8); // constraint flags
  const level = r.u(8);
  r.ue(); // seq_parameter_set_id
  let chroma = 1;
  let bitDepth = 8;
  if ([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].includes(profile)) {
    chroma = r.ue();
    if (chroma > 3) throw new Error('bad chroma_format_idc');
    if (chroma === 3) r.skip(1); // separate_colour_plane_flag
    bitDepth = 8 + r.ue();
    const chromaDepth = 8 + r.ue();
    bitDepth = Math.max(bitDepth, chromaDepth);
    r.skip(1); // qpprime_y_zero_transform_bypass_flag
    if (r.flag()) {
      // seq_scaling_matrix_present_flag
      for (let i = 0; i < (chroma !== 3 ? 8 : 12); i++) {
        if (r.flag()) skipScalingList(r, i < 6 ? 16 : 64);
      }
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) r.ue();
  else if (pocType === 1) {
    r.skip(1);
    r.se();
    r.se();
    const n = r.ue();
    if (n > 255) throw new Error('bad num_ref_frames_in_pic_order_cnt_cycle');
    for (let i = 0; i < n; i++) r.se();
  }
  const maxRefFrames = r.ue();
  r.skip(1); // gaps_in_frame_num_value_allowed_flag
  const mbsW = r.ue() + 1;
  const mapUnitsH = r.ue() + 1;
  const frameMbsOnly = r.flag();
  if (!frameMbsOnly) r.skip(1); // mb_adaptive_frame_field_flag
  r.skip(1); // direct_8x8_inference_flag
  const codedWidth = mbsW * 16;
  const codedHeight = mapUnitsH * 16 * (frameMbsOnly ? 1 : 2);
  let width = codedWidth;
  let height = codedHeight;
  if (r.flag()) {
    // frame_cropping_flag: offsets in chroma units
    const [l, rr, t, b] = [r.ue(), r.ue(), r.ue(), r.ue()];
    const cx = chroma === 1 || chroma === 2 ? 2 : 1;
    const cy = (chroma === 1 ? 2 : 1) * (frameMbsOnly ? 1 : 2);
    width = Math.max(0, codedWidth - cx * (l + rr));
    height = Math.max(0, codedHeight - cy * (t + b));
  }
  // the DPB the level allows at this size, unless the VUI says how many frames are needed
  const levelDpb = Math.min(
    16,
    Math.floor((H264_MAX_DPB_MBS[level] ?? 696320) / (mbsW * mapUnitsH * (frameMbsOnly ? 1 : 2))),
  );
  let dpb = Math.max(maxRefFrames, Math.min(16, levelDpb));
  let reorder = dpb;
  try {
    if (r.flag()) {
      const vui = h264Vui(r);
      if (vui) {
        dpb = Math.max(maxRefFrames, vui.maxDecFrameBuffering);
        reorder = vui.maxNumReorderFrames;
      }
    }
  } catch {
    // a VUI we cannot read: the level's DPB stands
  }
  return {
    codec: 'h264',
    width,
    height,
    codedWidth,
    codedHeight,
    chroma,
    bitDepth,
    dpb: Math.min(16, Math.max(1, dpb)),
    reorder: Math.min(16, reorder),
  };
}

function skipScalingList(r: Bits, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

function skipHrd(r: Bits): void {
  const count = r.ue() + 1;
  r.skip(8);
  for (let i = 0; i < count; i++) {
    r.ue();
    r.ue();
    r.skip(1);
  }
  r.skip(20);
}

function h264Vui(r: Bits): { maxDecFrameBuffering: number; maxNumReorderFrames: number } | null {
  if (r.flag()) {
    // aspect_ratio_info_present_flag
    if (r.u(8) === 255) r.skip(32);
  }
  if (r.flag()) r.skip(1); // overscan
  if (r.flag()) {
    // video_signal_type_present_flag
    r.skip(4);
    if (r.flag()) r.skip(24);
  }
  if (r.flag()) {
    r.ue();
    r.ue();
  }
  if (r.flag()) r.skip(65); // timing info
  const nal = r.flag();
  if (nal) skipHrd(r);
  const vcl = r.flag();
  if (vcl) skipHrd(r);
  if (nal || vcl) r.skip(1);
  r.skip(1); // pic_struct_present_flag
  if (!r.flag()) return null; // bitstream_restriction_flag
  r.skip(1);
  r.ue();
  r.ue();
  r.ue();
  r.ue();
  const maxNumReorderFrames = r.ue();
  const maxDecFrameBuffering = r.ue();
  return { maxDecFrameBuffering, maxNumReorderFrames };
}

/** The SPS NAL units of an avcC box payload, and its NAL length size. */
export function avcC(config: Uint8Array): { lengthSize: number; sps: Uint8Array[] } {
  if (config.length < 7 || config[0] !== 1) throw new Error('not an avcC record');
  const lengthSize = (config[4] & 3) + 1;
  const count = config[5] & 31;
  const sps: Uint8Array[] = [];
  let p = 6;
  for (let i = 0; i < count && p + 2 <= config.length; i++) {
    const len = (config[p] << 8) | config[p + 1];
    sps.push(config.subarray(p + 2, p + 2 + len));
    p += 2 + len;
  }
  return { lengthSize, sps };
}

// ---------------------------------------------------------------- HEVC

function skipProfileTierLevel(r: Bits, maxSubLayersMinus1: number): void {
  r.skip(88); // general profile space/tier/idc, compatibility flags, constraint flags
  r.skip(8); // general_level_idc
  const present: [boolean, boolean][] = [];
  for (let i = 0; i < maxSubLayersMinus1; i++) present.push([r.flag(), r.flag()]);
  if (maxSubLayersMinus1 > 0) r.skip(2 * (8 - maxSubLayersMinus1));
  for (const [profile, level] of present) {
    if (profile) r.skip(88);
    if (level) r.skip(8);
  }
}

/** An HEVC sequence parameter set (the NAL unit, its two header bytes included). */
export function parseHevcSps(nal: Uint8Array): StreamInfo {
  const r = new Bits(unescapeNal(nal.subarray(2)));
  r.skip(4); // sps_video_parameter_set_id
  const maxSubLayersMinus1 = r.u(3);
  r.skip(1);
  skipProfileTierLevel(r, maxSubLayersMinus1);
  r.ue(); // sps_seq_parameter_set_id
  const chroma = r.ue();
  if (chroma > 3) throw new Error('bad chroma_format_idc');
  if (chroma === 3) r.skip(1);
  const codedWidth = r.ue();
  const codedHeight = r.ue();
  let width = codedWidth;
  let height = codedHeight;
  if (r.flag()) {
    const [l, rr, t, b] = [r.ue(), r.ue(), r.ue(), r.ue()];
    const cx = chroma === 1 || chroma === 2 ? 2 : 1;
    const cy = chroma === 1 ? 2 : 1;
    width = Math.max(0, codedWidth - cx * (l + rr));
    height = Math.max(0, codedHeight - cy * (t + b));
  }
  const bitDepth = Math.max(8 + r.ue(), 8 + r.ue());
  r.ue(); // log2_max_pic_order_cnt_lsb_minus4
  const allLayers = r.flag();
  let dpb = 1;
  let reorder = 0;
  for (let i = allLayers ? 0 : maxSubLayersMinus1; i <= maxSubLayersMinus1; i++) {
    dpb = Math.max(dpb, r.ue() + 1);
    reorder = Math.max(reorder, r.ue());
    r.ue();
  }
  return {
    codec: 'hevc',
    width,
    height,
    codedWidth,
    codedHeight,
    chroma,
    bitDepth,
    dpb: Math.min(16, dpb),
    reorder: Math.min(16, reorder),
  };
}

/** The SPS NAL units of an hvcC box payload, and its NAL length size. */
export function hvcC(config: Uint8Array): { lengthSize: number; sps: Uint8Array[] } {
  if (config.length < 23) throw new Error('not an hvcC record');
  const lengthSize = (config[21] & 3) + 1;
  const arrays = config[22];
  const sps: Uint8Array[] = [];
  let p = 23;
  for (let a = 0; a < arrays && p + 3 <= config.length; a++) {
    const type = config[p] & 0x3f;
    const count = (config[p + 1] << 8) | config[p + 2];
    p += 3;
    for (let i = 0; i < count && p + 2 <= config.length; i++) {
      const len = (config[p] << 8) | config[p + 1];
      if (type === 33) sps.push(config.subarray(p + 2, p + 2 + len));
      p += 2 + len;
    }
  }
  return { lengthSize, sps };
}

// ---------------------------------------------------------------- VP9

/** A VP9 key frame's uncompressed header (a superframe's first frame), or null for an inter frame. */
export function parseVp9Frame(frame: Uint8Array): StreamInfo | null {
  const r = new Bits(frame);
  if (r.u(2) !== 2) throw new Error('not a VP9 frame');
  const profile = r.u(1) | (r.u(1) << 1);
  if (profile === 3) r.skip(1);
  if (r.flag()) return null; // show_existing_frame
  if (r.u(1) !== 0) return null; // frame_type: not a key frame
  r.skip(2); // show_frame, error_resilient_mode
  if (r.u(24) !== 0x498342) throw new Error('bad VP9 sync code');
  let bitDepth = 8;
  let chroma = 1;
  if (profile >= 2) bitDepth = r.flag() ? 12 : 10;
  const colorSpace = r.u(3);
  if (colorSpace !== 7) {
    r.skip(1);
    if (profile === 1 || profile === 3) {
      const sx = r.u(1);
      const sy = r.u(1);
      chroma = sx && sy ? 1 : sx ? 2 : 3;
      r.skip(1);
    }
  } else {
    chroma = 3;
    if (profile === 1 || profile === 3) r.skip(1);
  }
  const width = r.u(16) + 1;
  const height = r.u(16) + 1;
  return {
    codec: 'vp9',
    width,
    height,
    codedWidth: Math.ceil(width / 64) * 64,
    codedHeight: Math.ceil(height / 64) * 64,
    chroma,
    bitDepth,
    // eight reference slots, each may hold a distinct frame
    dpb: 8,
    reorder: 0,
  };
}

// ---------------------------------------------------------------- AV1

/** The first sequence header OBU in `data` (av1C's configOBUs, or a temporal unit). */
export function parseAv1(data: Uint8Array): StreamInfo | null {
  let p = 0;
  while (p < data.length) {
    const header = data[p];
    const type = (header >> 3) & 15;
    const ext = (header >> 2) & 1;
    const hasSize = (header >> 1) & 1;
    p += 1 + ext;
    let size = data.length - p;
    if (hasSize) {
      size = 0;
      for (let i = 0; i < 8; i++) {
        const b = data[p++];
        size |= (b & 0x7f) << (7 * i);
        if (!(b & 0x80)) break;
      }
    }
    if (type === 1) return av1SequenceHeader(data.subarray(p, p + size));
    p += size;
  }
  return null;
}

function av1SequenceHeader(obu: Uint8Array): StreamInfo {
  const r = new Bits(obu);
  const profile = r.u(3);
  r.skip(1); // still_picture
  const reduced = r.flag();
  if (reduced) r.skip(5);
  else {
    let decoderModel = false;
    let delayBits = 0;
    if (r.flag()) {
      // timing_info_present_flag
      r.skip(64);
      if (r.flag()) r.ue(); // equal_picture_interval: num_ticks_per_picture_minus_1 (uvlc)
      decoderModel = r.flag();
      if (decoderModel) {
        delayBits = r.u(5) + 1;
        r.skip(32 + 5 + 5);
      }
    }
    const initialDisplayDelay = r.flag();
    const ops = r.u(5) + 1;
    for (let i = 0; i < ops; i++) {
      r.skip(12);
      const level = r.u(5);
      if (level > 7) r.skip(1);
      if (decoderModel && r.flag()) r.skip(2 * delayBits + 1);
      if (initialDisplayDelay && r.flag()) r.skip(4);
    }
  }
  const wBits = r.u(4) + 1;
  const hBits = r.u(4) + 1;
  const width = r.u(wBits) + 1;
  const height = r.u(hBits) + 1;
  return {
    codec: 'av1',
    width,
    height,
    codedWidth: Math.ceil(width / 8) * 8,
    codedHeight: Math.ceil(height / 8) * 8,
    chroma: profile === 1 ? 3 : profile === 2 ? 2 : 1,
    bitDepth: profile === 2 ? 12 : 10,
    dpb: 8,
    reorder: 0,
  };
}

// ---------------------------------------------------------------- per codec

/**
 * The stream's parameters from its decoder configuration (avcC, hvcC, av1C payload, or a
 * Matroska CodecPrivate of the same layout) and, where the configuration has none or for VP9,
 * from the first sample. Every parameter set found is read; the largest frame wins (a stream may
 * carry a second, larger SPS in band). Null when nothing can be read.
 */
export function streamInfo(
  codec: Codec,
  config: Uint8Array | null,
  firstSample: Uint8Array | null,
): StreamInfo | null {
  const found: StreamInfo[] = [];
  const tryParse = (f: () => StreamInfo | null) => {
    try {
      const s = f();
      if (s && s.width > 0 && s.height > 0) found.push(s);
    } catch {
      // unreadable: not evidence either way
    }
  };
  if (codec === 'h264' || codec === 'hevc') {
    let lengthSize = 4;
    if (config) {
      try {
        const c = codec === 'h264' ? avcC(config) : hvcC(config);
        lengthSize = c.lengthSize;
        for (const sps of c.sps) {
          tryParse(() => codec === 'h264' ? parseH264Sps(sps) : parseHevcSps(sps));
        }
      } catch {
        // not a configuration record: perhaps Annex B parameter sets
        for (const nal of nalUnits(config, 0)) scanNal(codec, nal, tryParse);
      }
    }
    if (firstSample) {
      const nals = nalUnits(firstSample, lengthSize);
      for (const nal of nals.length ? nals : nalUnits(firstSample, 0)) {
        scanNal(codec, nal, tryParse);
      }
    }
  } else if (codec === 'vp9' && firstSample) {
    tryParse(() => parseVp9Frame(firstSample));
  } else if (codec === 'av1') {
    // av1C: 4 bytes of marker/profile/level, then configOBUs
    if (config && config.length > 4) tryParse(() => parseAv1(config.subarray(4)));
    if (firstSample) tryParse(() => parseAv1(firstSample));
  }
  if (!found.length) return null;
  return found.reduce((a, b) => (frameBytes(b) > frameBytes(a) ? b : a));
}

function scanNal(codec: Codec, nal: Uint8Array, tryParse: (f: () => StreamInfo) => void): void {
  if (!nal.length) return;
  if (codec === 'h264' && (nal[0] & 31) === 7) tryParse(() => parseH264Sps(nal));
  if (codec === 'hevc' && ((nal[0] >> 1) & 63) === 33) tryParse(() => parseHevcSps(nal));
}

/**
 * Whether a sample is decoded with `-skip_frame noref`: false when its first slice is a
 * non-reference one (H.264 nal_ref_idc 0; HEVC sub-layer non-reference NAL types), true
 * otherwise (and for every other codec).
 */
export function isReference(codec: Codec, sample: Uint8Array, lengthSize = 4): boolean {
  if (codec !== 'h264' && codec !== 'hevc') return true;
  for (const nal of nalUnits(sample, lengthSize, 8)) {
    if (!nal.length) continue;
    if (codec === 'h264') {
      const type = nal[0] & 31;
      if (type === 1 || type === 5) return (nal[0] & 0x60) !== 0;
    } else {
      const type = (nal[0] >> 1) & 63;
      if (type <= 31) return !(type <= 14 && type % 2 === 0);
    }
  }
  return true;
}

/** The NAL length size of an avcC / hvcC record (4 when it cannot be read). */
export function nalLengthSize(codec: Codec, config: Uint8Array | null): number {
  try {
    if (config && codec === 'h264') return avcC(config).lengthSize;
    if (config && codec === 'hevc') return hvcC(config).lengthSize;
  } catch {
    // not a configuration record
  }
  return 4;
}
