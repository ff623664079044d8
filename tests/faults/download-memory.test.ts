// A download close to the byte cap must not be held twice (a list of chunks, then their joined
// copy: a 99 MB file peaked at 287 MB and killed the isolate; this probe measured 2.2× the
// file). Measured under Deno, the functions' runtime, from /proc. With a Content-Length the
// body is read straight into one buffer: the process grows by about the file's size. Without
// one, the runtime's own read chunks are freed lazily on top of the one growing buffer.
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MB = 96;
const chunk = Buffer.alloc(256 * 1024, 7);
let server: Server;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (!req.url?.includes('chunked')) res.setHeader('content-length', String(MB * 1048576));
    let left = MB * 4;
    const more = () => {
      while (left > 0) {
        left--;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function probe(path: string): Promise<{ bytes: number; growthMb: number }> {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${path}`;
  const { stdout } = await promisify(execFile)('bash', ['scripts/run-deno.sh', 'tests/helpers/download-probe.ts', url], { timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

describe(`a ${MB} MB download is held once`, () => {
  it('with Content-Length: read straight into one buffer of that size (under 1.35× the file)', async () => {
    const r = await probe('with-length.bin');
    expect(r.bytes).toBe(MB * 1048576);
    expect(r.growthMb, JSON.stringify(r)).toBeLessThan(MB * 1.35);
  });

  it('without Content-Length: one buffer grown in place (under 1.75×; the chunk list and its copy were 2.2×)', async () => {
    const r = await probe('chunked.bin');
    expect(r.bytes).toBe(MB * 1048576);
    expect(r.growthMb, JSON.stringify(r)).toBeLessThan(MB * 1.75);
  });
});
