// A download close to the byte cap, measured the way the platform counts an isolate: V8 used heap +
// external memory (the source's buffer is external), and the CPU of the isolate's thread, on the
// edge runtime's Deno (2.1.4) through shared/preview/fetch.ts (tests/fixtures/hostile-probe.ts; the
// server is this test's own process, so only the download counts).
// - Held once: a list of chunks joined at the end held the file twice (a 99 MB file peaked at
//   287 MB RSS that way). With a Content-Length the body goes into one buffer of that size; without
//   one into a resizable buffer grown in place (which the runtime's measure does not even count).
// - Cheap: a BYOB reader straight into the buffer, used before, cost 0.95–1.39 s of the thread for
//   99 MB (each read transfers the whole buffer), half an isolate's life; chunks copied in: 0.2 s.
// - A compressed answer counts what it inflates to: the runtime inflates gzip by itself (Deno 2.1.4
//   even when identity is asked, and drops Content-Encoding and Content-Length), so 96 KB of gzip
//   that inflate to 99 MB are held to the byte cap while they stream, and refused past it.
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { edgeDenoBin } from '../../local/paths.ts';

const MB = 96;
const chunk = Buffer.alloc(256 * 1024, 7);
const gzipped = gzipSync(Buffer.alloc(MB * 1048576, 0), { level: 9 });
let server: Server;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url?.includes('gzip')) {
      res.setHeader('content-encoding', 'gzip');
      res.setHeader('content-length', String(gzipped.length));
      res.end(gzipped);
      return;
    }
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

type Probe = { bytes?: number; code?: string; error?: string; baseMb: number; peakMb: number; cpuMs: number };

async function probe(path: string, maxBytes = 100 * 1048576): Promise<Probe> {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${path}`;
  const { stdout } = await promisify(execFile)(edgeDenoBin(), [
    'run', '-A', '--quiet', '--config', 'functions/deno.json', 'tests/fixtures/hostile-probe.ts', 'download', url, String(maxBytes),
  ], { timeout: 60_000, env: { ...process.env, NO_COLOR: '1', DENO_TLS_CA_STORE: 'system' } });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

describe(`a ${MB} MB download, by the platform's measure`, () => {
  it('with Content-Length: one buffer of that size (heap + external under 1.35× the file), chunks copied in (under 0.6 s of CPU)', async () => {
    const r = await probe('with-length.bin');
    expect(r.bytes).toBe(MB * 1048576);
    expect(r.peakMb - r.baseMb, JSON.stringify(r)).toBeLessThan(MB * 1.35);
    expect(r.cpuMs, JSON.stringify(r)).toBeLessThan(600);
  });

  it('without Content-Length: one buffer grown in place (under 1.35×, under 0.6 s)', async () => {
    const r = await probe('chunked.bin');
    expect(r.bytes).toBe(MB * 1048576);
    expect(r.peakMb - r.baseMb, JSON.stringify(r)).toBeLessThan(MB * 1.35);
    expect(r.cpuMs, JSON.stringify(r)).toBeLessThan(600);
  });

  it(`gzip: ${Math.round(gzipped.length / 1024)} KB that inflate to ${MB} MB count as ${MB} MB (held once, the inflation under 1 s of CPU)`, async () => {
    const r = await probe('gzip.bin');
    expect(r.bytes).toBe(MB * 1048576);
    expect(r.peakMb - r.baseMb, JSON.stringify(r)).toBeLessThan(MB * 1.35);
    expect(r.cpuMs, JSON.stringify(r)).toBeLessThan(1000);
  });

  it('gzip inflating past the byte cap: SOURCE_TOO_LARGE while it streams, not after', async () => {
    const r = await probe('gzip.bin', 16 * 1048576);
    expect([r.code, r.error]).toEqual(['SOURCE_TOO_LARGE', `Source is larger than the ${16 * 1048576}-byte limit`]);
    expect(r.peakMb - r.baseMb, JSON.stringify(r)).toBeLessThan(40);
  });
});
