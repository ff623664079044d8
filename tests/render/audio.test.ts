// The waveform tile of an audio generation (shared/preview/audio.ts), rendered in Node with the
// installed ffmpeg core (tests/setup.ts), inputs made by native ffmpeg at run time. Heights are read
// back from the decoded WebP, column by column at each bar's centre.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import {
  readAudio,
  renderWaveform,
  waveformLayout,
  waveformLevels,
  WAVEFORM_STYLE,
} from '../../shared/preview/audio.ts';
import { FreshIsolateNeeded } from '../../shared/preview/budget.ts';
import { measureRender, resetIsolateBudget } from '../../shared/preview/isolate.ts';
import { sniff } from '../../shared/preview/sniff.ts';
import { ffmpeg, read } from '../fixtures/media.ts';
import { rgba } from '../fixtures/quality.ts';
import { code } from '../helpers/preview-error.ts';

const FIXTURE = 'tests/fixtures/kie-payloads/media/suno-track.mp3';
const OPTIONS = { maxSide: 512, quality: 80, maxBytes: 100 * 1024 * 1024 };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'render-audio-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => resetIsolateBudget());

/** ffprobe's duration of a file, in ms. */
function probeMs(file: string): number {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  return Number(out.trim()) * 1000;
}

/** A music-like stereo signal (chords, a beat, pink noise) of `seconds`, loudness `envelope(t)`. */
function music(name: string, seconds: number, codecArgs: string[], envelope = '0.5+0.3*sin(2*PI*t/7)'): string {
  const file = join(dir, name);
  const voice = (f: number, ph = 0) => `sin(2*PI*${f}*t+${ph})`;
  const mix = (shift: number) =>
    `(${envelope})*(0.5*exp(-9*mod(t+${shift}\\,0.5))*${voice(55)}+0.25*${voice(220 + shift * 100)}+0.18*${voice(277.2, 1)}+0.12*${voice(329.6, 2)})`;
  ffmpeg([
    '-f', 'lavfi', '-i', `aevalsrc=exprs='${mix(0)}|${mix(0.01)}':s=44100:d=${seconds}`,
    '-f', 'lavfi', '-i', `anoisesrc=c=pink:a=0.05:d=${seconds}:r=44100:seed=3`,
    '-filter_complex', '[1]aformat=channel_layouts=mono,asplit[n1][n2];[n1][n2]join=inputs=2:channel_layout=stereo[n];[0][n]amix=inputs=2:normalize=0',
    ...codecArgs, file,
  ]);
  return file;
}

const MP3 = ['-c:a', 'libmp3lame', '-b:a', '128k'];

/** Per bar of the tile: how many pixels of its centre column are lit (peak layer) and bright (RMS layer). */
async function barHeights(webp: Uint8Array, maxSide = 512): Promise<{ lit: number[]; bright: number[] }> {
  const px = await rgba(webp);
  const L = waveformLayout(maxSide);
  expect([px.width, px.height]).toEqual([L.width, L.height]);
  const lit: number[] = [], bright: number[] = [];
  for (let b = 0; b < L.bars; b++) {
    const x = Math.floor(L.left + b * L.pitch + L.barWidth / 2);
    let l = 0, h = 0;
    for (let y = 0; y < L.height; y++) {
      const i = (y * L.width + x) * 4;
      const luma = 0.299 * px.data[i] + 0.587 * px.data[i + 1] + 0.114 * px.data[i + 2];
      if (luma > 60) l++;
      if (luma > 160) h++;
    }
    lit.push(l);
    bright.push(h);
  }
  return { lit, bright };
}


describe('renderWaveform', () => {
  it("draws KIE's Suno fixture as a 16:9 tile with its length", async () => {
    const r = await renderWaveform(read(FIXTURE), OPTIONS);
    expect([r.width, r.height]).toEqual([512, 288]);
    const px = await rgba(r.webp);
    expect([px.width, px.height]).toEqual([512, 288]);
    expect(r.webp.length).toBeGreaterThan(500);
    expect(r.thumbhash).toMatch(/^[A-Za-z0-9+/]{20,}=*$/);
    expect(Math.abs(r.durationMs - probeMs(FIXTURE))).toBeLessThan(50);
    // the card colour in a corner, bars in the middle
    const [br, bg, bb] = WAVEFORM_STYLE.background;
    expect(Math.abs(px.data[0] - br) + Math.abs(px.data[1] - bg) + Math.abs(px.data[2] - bb)).toBeLessThan(12);
    const { bright } = await barHeights(r.webp);
    expect(Math.max(...bright)).toBeGreaterThan(100);
  });

  it('sizes the tile by maxSide (long side, 16:9)', async () => {
    const r = await renderWaveform(read(FIXTURE), { ...OPTIONS, maxSide: 400 });
    expect([r.width, r.height]).toEqual([400, 225]);
    const px = await rgba(r.webp);
    expect([px.width, px.height]).toEqual([400, 225]);
  });

  it('with a larger size (PREVIEW_SIZES 512,1024): the same bars in both, each size its own 16:9 tile', async () => {
    const r = await renderWaveform(read(FIXTURE), { ...OPTIONS, sides: [1024] });
    expect([r.width, r.height]).toEqual([512, 288]);
    expect(r.sizes?.map((s) => [s.side, s.width, s.height])).toEqual([[1024, 1024, 576]]);
    const big = await rgba(r.sizes![0].webp);
    expect([big.width, big.height]).toEqual([1024, 576]);
    // the first size scaled from the larger drawing: its bars as the first size drawn alone
    const alone = await barHeights((await renderWaveform(read(FIXTURE), OPTIONS)).webp);
    const both = await barHeights(r.webp);
    expect(both.lit.length).toBe(alone.lit.length);
    const diff = both.lit.map((h, i) => Math.abs(h - alone.lit[i]));
    expect(Math.max(...diff), `bar heights ${both.lit} vs ${alone.lit}`).toBeLessThanOrEqual(4);
  });

  it('a silent track gives flat bars', async () => {
    const file = join(dir, 'silence.mp3');
    ffmpeg(['-f', 'lavfi', '-i', 'anullsrc=r=44100:cl=stereo', '-t', '20', ...MP3, file]);
    const r = await renderWaveform(read(file), OPTIONS);
    expect(Math.abs(r.durationMs - 20000)).toBeLessThan(50);
    const { levels } = await waveformLevels(read(file), OPTIONS);
    expect(Math.max(...levels.peak, ...levels.rms)).toBe(0);
    // every bar a dot of the bar's width (lossy WebP: ±1 px at its ends)
    const { lit } = await barHeights(r.webp);
    const L = waveformLayout(512);
    expect(Math.max(...lit) - Math.min(...lit)).toBeLessThanOrEqual(2);
    expect(Math.max(...lit)).toBeLessThanOrEqual(L.minHeight + 2);
  });

  it('a loud/quiet alternating track gives visibly different bar heights, in time', async () => {
    // 16 s: 2 s loud (−3 dBFS), 2 s quiet (−30 dBFS), twice
    const file = join(dir, 'alternating.mp3');
    ffmpeg(['-f', 'lavfi', '-i', "aevalsrc=exprs='if(lt(mod(t\\,4)\\,2)\\,0.7\\,0.03)*sin(2*PI*440*t)':s=44100:d=16", '-ac', '2', ...MP3, file]);
    const r = await renderWaveform(read(file), OPTIONS);
    expect(Math.abs(r.durationMs - 16000)).toBeLessThan(50);
    const { lit, bright } = await barHeights(r.webp);
    const L = waveformLayout(512);
    const at = (b: number) => ((b + 0.5) / L.bars) * 16; // the bar's time, s
    const inside = (from: number, to: number) => [...bright.keys()].filter((b) => mod(at(b), 4) > from && mod(at(b), 4) < to);
    const loud = inside(0.3, 1.7), quiet = inside(2.3, 3.7);
    expect(loud.length).toBeGreaterThan(20);
    expect(quiet.length).toBeGreaterThan(20);
    expect(Math.min(...loud.map((b) => bright[b]))).toBeGreaterThan(0.8 * L.maxHeight);
    expect(Math.max(...quiet.map((b) => bright[b]))).toBeLessThan(0.15 * L.maxHeight);
    // a steady sine: its peak and its RMS × √2 are the same height
    for (const b of [...loud, ...quiet]) expect(Math.abs(lit[b] - bright[b]), `bar ${b}`).toBeLessThanOrEqual(4);
  });

  const formats: [string, string[]][] = [
    ['MP3 192 kbit/s with an ID3 tag', ['-c:a', 'libmp3lame', '-b:a', '192k', '-metadata', 'title=Suno']],
    ['MP3 mono 22.05 kHz', ['-ac', '1', '-ar', '22050', '-c:a', 'libmp3lame', '-b:a', '48k']],
    ['M4A (AAC)', ['-c:a', 'aac', '-b:a', '128k']],
    ['ADTS AAC', ['-c:a', 'aac', '-b:a', '128k', '-f', 'adts']],
    ['WAV', ['-c:a', 'pcm_s16le']],
    ['Ogg Vorbis', ['-c:a', 'libvorbis', '-q:a', '4']],
    ['Ogg Opus', ['-c:a', 'libopus', '-b:a', '96k']],
    ['FLAC', ['-c:a', 'flac']],
  ];
  const ext: Record<string, string> = { 'M4A (AAC)': 'm4a', 'ADTS AAC': 'aac', WAV: 'wav', 'Ogg Vorbis': 'ogg', 'Ogg Opus': 'opus', FLAC: 'flac' };
  for (const [name, args] of formats) {
    it(`decodes ${name}`, async () => {
      const file = music(`f_${name.replace(/\W+/g, '_')}.${ext[name] ?? 'mp3'}`, 6, args);
      const bytes = read(file);
      const r = await renderWaveform(bytes, OPTIONS);
      expect([r.width, r.height]).toEqual([512, 288]);
      expect(Math.abs(r.durationMs - 6000), `${r.durationMs} ms`).toBeLessThan(60);
      // ffprobe counts an MP3's or ADTS stream's every frame, the encoder's delay and padding too
      expect(Math.abs(r.durationMs - probeMs(file)), `${r.durationMs} ms`).toBeLessThan(100);
      expect(readAudio(bytes, OPTIONS.maxBytes).seconds).toBeCloseTo(6, 0);
      const { bright } = await barHeights(r.webp);
      expect(Math.max(...bright)).toBeGreaterThan(30);
    });
  }

  it('non-audio bytes → UNSUPPORTED_FORMAT; over the byte cap → SOURCE_TOO_LARGE', async () => {
    const jpeg = join(dir, 'a.jpeg');
    ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=320x240', '-frames:v', '1', jpeg]);
    const mp4 = join(dir, 'a.mp4');
    ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=320x240:d=1', '-f', 'lavfi', '-i', 'sine=d=1', '-c:v', 'libx264', '-c:a', 'aac', '-shortest', mp4]);
    for (const bytes of [new Uint8Array(0), new TextEncoder().encode('<html>not a song</html>'), read(jpeg), read(mp4), new Uint8Array(4096).fill(0xff)]) {
      expect(await code(renderWaveform(bytes, OPTIONS))).toBe('UNSUPPORTED_FORMAT');
    }
    expect(await code(renderWaveform(read(FIXTURE), { ...OPTIONS, maxBytes: 1000 }))).toBe('SOURCE_TOO_LARGE');
  });

  it('an MP4 with a sound track only is audio; one with video is not', async () => {
    const m4a = join(dir, 'sound-only.mp4');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=d=3', '-c:a', 'aac', '-brand', 'isom', m4a]);
    expect(sniff(read(m4a)).kind).toBe('video'); // sniff goes by the brand
    const r = await renderWaveform(read(m4a), OPTIONS);
    expect(Math.abs(r.durationMs - 3000)).toBeLessThan(60);
  });

  it('audio that does not decode → DECODE_FAILED', async () => {
    // a WAV header and nothing after it
    const wav = read(music('short.wav', 1, ['-c:a', 'pcm_s16le'])).slice(0, 44);
    expect(await code(renderWaveform(wav, OPTIONS))).toBe('DECODE_FAILED');
    // an M4A without its index (moov at the end, cut off)
    const m4a = read(music('cut.m4a', 3, ['-c:a', 'aac']));
    expect(await code(renderWaveform(m4a.slice(0, Math.floor(m4a.length / 2)), OPTIONS))).toBe('DECODE_FAILED');
  });

  it('a truncated MP3 decodes what it has', async () => {
    const bytes = read(music('whole.mp3', 10, MP3));
    const r = await renderWaveform(bytes.slice(0, Math.floor(bytes.length / 2)), OPTIONS);
    expect(Math.abs(r.durationMs - 5000)).toBeLessThan(150);
  });
});

describe('the decode fits what the isolate has left', () => {
  const spend = (ms: number) => measureRender(() => new Promise((r) => setTimeout(r, ms)));

  it('decodes runs of frames of a long MP3 when the whole track does not fit, with the same bars', async () => {
    // 3 minutes, 16 s loud then 16 s quiet (a bar is 2.3 s)
    const file = music('long.mp3', 180, MP3, 'if(lt(mod(t\\,32)\\,16)\\,0.8\\,0.08)');
    const bytes = read(file);
    await renderWaveform(read(FIXTURE), OPTIONS); // the core compiled and its instance kept
    const full = await waveformLevels(bytes, OPTIONS);
    expect(full.plan.mode).toBe('all');
    await spend(1150); // leaves about 0.5 s: 75–85 % of the track (a late timer leaves less)
    const part = await waveformLevels(bytes, OPTIONS);
    expect(part.plan.mode).toBe('runs');
    expect(part.plan.share).toBeGreaterThan(0.4);
    expect(part.plan.share).toBeLessThan(0.95);
    expect(Math.abs(part.durationMs - full.durationMs)).toBeLessThan(50);
    const bars = waveformLayout(512).bars;
    for (let b = 0; b < bars; b++) {
      // RMS within 15 % of the full decode's; loud and quiet bars as loud and quiet
      expect(Math.abs(part.levels.rms[b] - full.levels.rms[b]), `bar ${b}`).toBeLessThan(0.15 * full.levels.rms[b] + 0.005);
    }
    resetIsolateBudget();
  });

  it('hands a track to a fresh isolate when this one has too little left', async () => {
    const bytes = read(music('long2.mp3', 120, MP3));
    await renderWaveform(read(FIXTURE), OPTIONS);
    await spend(1650);
    const err = await waveformLevels(bytes, OPTIONS).catch((e) => e);
    expect(err).toBeInstanceOf(FreshIsolateNeeded);
    expect(err.code).toBe('OVER_CPU_BUDGET');
  });

  it('stops a file whose header understates its length', async () => {
    // an M4A of 4 minutes whose sound track's mdhd says 2 s
    const file = music('liar.m4a', 240, ['-c:a', 'aac', '-b:a', '64k']);
    const bytes = read(file);
    const at = Buffer.from(bytes).indexOf('mdhd') + 4; // the box's payload
    expect(bytes[at]).toBe(0); // version 0: timescale at +12, duration at +16
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    view.setUint32(at + 16, view.getUint32(at + 12) * 2);
    expect(readAudio(bytes, OPTIONS.maxBytes).seconds).toBe(2);
    await renderWaveform(read(FIXTURE), OPTIONS);
    await spend(1300);
    const err = await waveformLevels(bytes, OPTIONS).catch((e) => e);
    expect(err).toBeInstanceOf(FreshIsolateNeeded);
    expect(err.message).toMatch(/holds more than its headers say/);
  });
});

describe('sniff: audio', () => {
  it('recognises MP3 with and without ID3, M4A, ADTS, WAV, Ogg and FLAC; images and videos as before', () => {
    const fixture = read(FIXTURE);
    expect(fixture[0]).toBe(0xff); // no ID3 tag
    expect(sniff(fixture)).toEqual({ kind: 'audio', format: 'mp3', mime: 'audio/mpeg' });
    const tagged = read(music('tagged.mp3', 1, [...MP3, '-metadata', 'title=x']));
    expect(new TextDecoder().decode(tagged.slice(0, 3))).toBe('ID3');
    expect(sniff(tagged).format).toBe('mp3');
    const cases: [string, string[], string][] = [
      ['s.m4a', ['-c:a', 'aac'], 'm4a'],
      ['s.aac', ['-c:a', 'aac', '-f', 'adts'], 'aac'],
      ['s.wav', ['-c:a', 'pcm_s16le'], 'wav'],
      ['s.ogg', ['-c:a', 'libvorbis'], 'ogg'],
      ['s.opus', ['-c:a', 'libopus'], 'ogg'],
      ['s.flac', ['-c:a', 'flac'], 'flac'],
    ];
    for (const [name, args, format] of cases) {
      const s = sniff(read(music(name, 1, args)));
      expect(s.kind, name).toBe('audio');
      expect(s.format, name).toBe(format);
    }
    const ascii = (s: string) => new TextEncoder().encode(s);
    expect(sniff(ascii('\0\0\0\x18ftypM4A \0\0\0\0')).format).toBe('m4a');
    expect(sniff(ascii('\0\0\0\x18ftypisom\0\0\0\0')).format).toBe('mp4');
    expect(sniff(ascii('RIFF\0\0\0\0WEBPVP8 ')).format).toBe('webp');
    expect(sniff(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])).format).toBe('jpeg');
    // one MPEG frame header and junk after it is not enough
    expect(() => sniff(new Uint8Array([0xff, 0xfb, 0x90, 0x64, ...new Array(2000).fill(7)]))).toThrowError(PreviewError);
  });
});

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}
