/**
 * Posters in a row in ONE Deno process (one isolate), as a warm edge isolate serves them.
 * Run on the edge runtime's Deno with the functions' import map and the edge capabilities only
 * (read access to the inputs and the ffmpeg core; no FFI, no subprocesses, no workers).
 * Usage: posters.ts [--hold] [--marks] <video>...
 * Prints one JSON line per call ({ file, width, height, bytes, instances, heapExternalMb,
 * thread? } or { file, error }), then `done`. heapExternalMb is the call's peak of the
 * platform's memory measure (V8 used heap + external, bench/measure.ts). With --marks the
 * parent answers CPU marks (bench/measure.ts cpuMark) and `thread` is the call's JS-thread CPU
 * in ms. With --hold it then waits until stdin closes, so a parent can read this process's
 * VmHWM from /proc/<pid>/status (a child's getrusage maxRSS would include its parent's peak:
 * Linux carries ru_maxrss across exec).
 */
import { useLocalFfmpegCore } from '../local/local-core.ts';
import { coreInstances } from '../shared/preview/ffmpeg.ts';
import { extractPoster } from '../shared/preview/video.ts';
import { cpuMark, HeapExternalPeak, holdUntilStdinCloses } from './measure.ts';

useLocalFfmpegCore();

const hold = Deno.args.includes('--hold');
const marks = Deno.args.includes('--marks');
const files = Deno.args.filter((a) => !a.startsWith('--'));
const memory = new HeapExternalPeak();

for (const file of files) {
  const bytes = await Deno.readFile(file);
  memory.take();
  const c0 = await cpuMark(marks);
  try {
    const r = await extractPoster(bytes);
    const c1 = await cpuMark(marks);
    console.log(JSON.stringify({
      file,
      width: r.width,
      height: r.height,
      bytes: r.webp.length,
      instances: coreInstances(),
      heapExternalMb: Math.round(memory.get()),
      ...(c0 && c1 ? { thread: c1.thread - c0.thread } : {}),
    }));
  } catch (err) {
    console.log(
      JSON.stringify({ file, error: (err as any).code ?? String(err), instances: coreInstances() }),
    );
  }
}
memory.stop();
console.log('done');
if (hold) await holdUntilStdinCloses();
