/**
 * Posters in a row in ONE Deno process (one isolate), as a warm edge isolate serves them.
 * Run with the edge runtime's capabilities only (--allow-read, no FFI, no subprocesses, no
 * workers). Usage: posters.ts [--hold] <video>...
 * Prints one JSON line per call ({ file, width, height, bytes, thread, instances } or
 * { file, error }), then `done`. With --hold it then waits until stdin closes, so a parent can
 * read this process's VmHWM from /proc/<pid>/status (a child's getrusage maxRSS would include
 * its parent's peak: Linux carries ru_maxrss across exec).
 */
import process from 'node:process';
import { useLocalFfmpegCore } from '../local/local-core.ts';
import { coreInstances } from '../shared/preview/ffmpeg.ts';
import { extractPoster } from '../shared/preview/video.ts';

useLocalFfmpegCore();

const hold = Deno.args.includes('--hold');
const files = Deno.args.filter((a) => a !== '--hold');
const threadCpu = () => {
  const u = (process as any).threadCpuUsage();
  return (u.user + u.system) / 1000;
};

for (const file of files) {
  const bytes = await Deno.readFile(file);
  const t0 = threadCpu();
  try {
    const r = await extractPoster(bytes);
    console.log(JSON.stringify({
      file,
      width: r.width,
      height: r.height,
      bytes: r.webp.length,
      thread: threadCpu() - t0,
      instances: coreInstances(),
      maxRss: Math.round(process.resourceUsage().maxRSS / 1024), // see above: valid under a small parent
    }));
  } catch (err) {
    console.log(
      JSON.stringify({ file, error: (err as any).code ?? String(err), instances: coreInstances() }),
    );
  }
}
console.log('done');
if (hold) {
  // wait for the parent to close stdin
  for await (const _ of Deno.stdin.readable) {
    // ignore input
  }
}
