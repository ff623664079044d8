/**
 * One bench case of our render path, in its own process of the edge runtime's Deno (2.1.4,
 * with the functions' import map), so peak memory is per case: wasm memory never shrinks. Run
 * with the edge capabilities only: reads of the input and the ffmpeg core, writes of the
 * output; no FFI, no subprocesses, no workers. Started by bench/run.ts (runOurs), which answers
 * its CPU marks and reads its peak RSS. Usage: ours.ts photo|photo-sizes|video|video-sizes|animated|audio <input> <output> <calls>
 * (photo, video, audio: 512 only, as the anchors make; photo-sizes, video-sizes: 512 and 1024
 * from one decode, as deployed, the 1024 one written to <output>)
 * Prints one JSON line: per call wall ms, CPU ms (process: all threads; thread: the JS thread
 * only, which the edge runtime's CPU limit counts) and the peak of the platform's memory
 * measure (V8 used heap + external, `heapExt` MB; bench/measure.ts), then `done`, and waits
 * until stdin closes.
 */
import { useLocalFfmpegCore } from '../local/local-core.ts';
import { PREVIEW_SIZES_DEFAULT } from '../shared/preview/defaults.ts';
import { renderPhotoPreview } from '../shared/preview/photo.ts';
import { extractPoster } from '../shared/preview/video.ts';
import { renderAnimated } from '../shared/preview/animated.ts';
import { renderWaveform } from '../shared/preview/audio.ts';
import { cpuMark, HeapExternalPeak, holdUntilStdinCloses } from './measure.ts';

useLocalFfmpegCore();

const [kind, input, output, callsArg] = Deno.args;
// *-sizes: every size of PREVIEW_SIZES' default (512, 1024) from one decode, as deployed
const [maxSide, ...sides] = PREVIEW_SIZES_DEFAULT;
const production = { maxSide, sides };
const calls = Number(callsArg ?? 3);
const memory = new HeapExternalPeak();

const bytes = await Deno.readFile(input);
const baseHeapExt = memory.take();
const runs = [];
let outBytes = 0;
let error: string | null = null;
for (let i = 0; i < calls && !error; i++) {
  memory.take();
  const c0 = (await cpuMark(true))!, w0 = performance.now();
  let r: { webp: Uint8Array; sizes?: { webp: Uint8Array }[] } | null = null;
  try {
    r = kind === 'video'
      ? await extractPoster(bytes)
      : kind === 'video-sizes'
      ? await extractPoster(bytes, production)
      : kind === 'animated'
      ? { webp: await renderAnimated(bytes, { maxBytes: 2 ** 31 }) }
      : kind === 'audio'
      ? await renderWaveform(bytes)
      : kind === 'photo-sizes'
      ? await renderPhotoPreview(bytes, production)
      : await renderPhotoPreview(bytes);
  } catch (err) {
    // a refusal (e.g. TOO_MANY_PIXELS) is a result too: reported with its cost
    error = (err as any).code ?? String(err);
  }
  const wall = performance.now() - w0, c1 = (await cpuMark(true))!;
  runs.push({
    wall,
    cpu: c1.process - c0.process,
    thread: c1.thread - c0.thread,
    heapExt: memory.get(),
  });
  if (r && i === 0) {
    await Deno.writeFile(output, r.sizes?.at(-1)?.webp ?? r.webp);
    outBytes = r.webp.length + (r.sizes ?? []).reduce((n, x) => n + x.webp.length, 0);
  }
}
memory.stop();
console.log(JSON.stringify({
  ...(error ? { error } : {}),
  runs,
  baseHeapExt,
  peakHeapExt: Math.max(...runs.map((x) => x.heapExt)),
  outBytes,
}));
console.log('done');
await holdUntilStdinCloses();
