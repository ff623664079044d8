// One anchor case with sharp (libvips, native) in its own Node process: same box, WebP q80.
// Usage: node sharp-case.mjs <input> <output.webp> <calls> [<sides, e.g. 512,1024>]
// With several sides, each size is its own pipeline from the same input (as the Firebase resize
// extension makes its sizes), and the largest is written to <output.webp>.
import { readFileSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';

const [input, output, callsArg, sidesArg] = process.argv.slice(2);
const sides = (sidesArg ?? '512').split(',').map(Number);
const calls = Number(callsArg ?? 3);
// libvips works on its own threads: the JS-thread figure is not meaningful for sharp
const threadCpu = () => NaN;
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const bytes = readFileSync(input);
const base = process.memoryUsage().rss / 1048576;
const runs = [];
let outBytes = 0;
for (let i = 0; i < calls; i++) {
  const c0 = cpu(), t0 = threadCpu(), w0 = performance.now();
  const outs = await Promise.all(
    sides.map((side) =>
      sharp(bytes, { limitInputPixels: false }).rotate()
        .resize(side, side, { fit: 'inside', withoutEnlargement: true }).webp({ quality: 80 })
        .toBuffer()
    ),
  );
  runs.push({ wall: performance.now() - w0, cpu: cpu() - c0, thread: threadCpu() - t0 });
  if (i === 0) {
    writeFileSync(output, outs.at(-1));
    outBytes = outs.reduce((n, o) => n + o.length, 0);
  }
}
console.log(
  JSON.stringify({ runs, baseRss: base, peakRss: process.resourceUsage().maxRSS / 1024, outBytes }),
);
