/**
 * One bench case of our render path, in its own Deno process (so peak RSS is per case: wasm
 * memory never shrinks). Run with the edge runtime's capabilities only: no FFI, no
 * subprocesses, no workers. Usage: ours.ts photo|video|animated <input> <output> <calls>
 * Prints one JSON line: per call wall/CPU (process: all threads; thread: the JS thread only,
 * which is what the edge runtime's CPU limit counts), baseline and peak RSS.
 */
import process from 'node:process';
import { useLocalFfmpegCore } from '../local/local-core.ts';
import { renderPhotoPreview } from '../shared/preview/photo.ts';
import { extractPoster } from '../shared/preview/video.ts';
import { renderAnimated } from '../shared/preview/animated.ts';

useLocalFfmpegCore();

const [kind, input, output, callsArg] = Deno.args;
const calls = Number(callsArg ?? 3);

// getrusage through node:process (Deno reads /proc/self only with --allow-all)
const peakRssMb = () => process.resourceUsage().maxRSS / 1024;
const threadCpu = () => {
  const u = (process as any).threadCpuUsage();
  return (u.user + u.system) / 1000;
};
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const bytes = await Deno.readFile(input);
const base = process.memoryUsage().rss / 1048576;
const runs = [];
let outBytes = 0;
for (let i = 0; i < calls; i++) {
  const c0 = cpu(), t0 = threadCpu(), w0 = performance.now();
  let r;
  try {
    r = kind === 'video'
      ? await extractPoster(bytes)
      : kind === 'animated'
      ? { webp: await renderAnimated(bytes, { maxBytes: 2 ** 31 }) }
      : await renderPhotoPreview(bytes);
  } catch (err) {
    // a refusal (e.g. TOO_MANY_PIXELS) is a result too: report it with its cost
    console.log(
      JSON.stringify({
        error: (err as any).code ?? String(err),
        runs: [{ wall: performance.now() - w0, cpu: cpu() - c0, thread: threadCpu() - t0 }],
      }),
    );
    Deno.exit(0);
  }
  runs.push({ wall: performance.now() - w0, cpu: cpu() - c0, thread: threadCpu() - t0 });
  if (i === 0) {
    await Deno.writeFile(output, r.webp);
    outBytes = r.webp.length;
  }
}
console.log(JSON.stringify({ runs, baseRss: base, peakRss: peakRssMb(), outBytes }));
