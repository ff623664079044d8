// A download beside another job's render (shared/preview/fetch.ts Beside, isolate.ts
// JobSlot.beside): it asks before it holds more: a source with a Content-Length once, before its
// buffer is allocated; one of unknown length before each growth, its reading waiting for the answer.
import { describe, expect, it } from 'vitest';
import { fetchSource } from '../../shared/preview/fetch.ts';

const limits = { maxBytes: 1 << 20, timeoutMs: 2000, allowedPrivateHosts: [] };
const URL_ = 'https://cdn.example.com/a.jpg';

/** A response of `chunks` (each `size` bytes), recording each chunk's read; `length`: Content-Length. */
function served(events: string[], chunks: number, size: number, length: boolean) {
  let n = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n === chunks) return c.close();
      events.push(`read ${++n}`);
      c.enqueue(new Uint8Array(size).fill(n));
    },
  }, { highWaterMark: 0 });
  const headers = length ? { 'content-length': String(chunks * size) } : undefined;
  return (async () => new Response(body, { status: 200, headers })) as unknown as typeof fetch;
}

/** Downloads with a `beside` that lets 1000 bytes through at once and makes a larger hold wait 30 ms (the isolate). */
async function download(events: string[], chunks: number, size: number, length: boolean) {
  const beside = async (bytes: number) => {
    events.push(`beside ${bytes}`);
    if (bytes <= 1000) return;
    await new Promise((r) => setTimeout(r, 30)); // the other job still renders
    events.push(`isolate ${bytes}`);
  };
  const got = await fetchSource(URL_, limits, { fetch: served(events, chunks, size, length), resolve: async () => ['93.184.216.34'] }, beside);
  return got.bytes;
}

describe('a download beside another job\'s render asks before it holds more', () => {
  it('a source with a Content-Length asks once, for all of it, before its buffer exists', async () => {
    const events: string[] = [];
    expect((await download(events, 2, 400, true)).length).toBe(800);
    expect(events).toEqual(['beside 800', 'read 1', 'read 2']);
    const large: string[] = [];
    expect((await download(large, 5, 1000, true)).length).toBe(5000);
    expect(large.slice(0, 2)).toEqual(['beside 5000', 'isolate 5000']);
    expect(large.filter((e) => e.startsWith('beside'))).toHaveLength(1);
  });

  it('a source of unknown length asks before each growth, and its reading waits for the answer', async () => {
    const events: string[] = [];
    const bytes = await download(events, 3, 600, false);
    expect(bytes.length).toBe(1800);
    expect([...bytes.subarray(0, 600)].every((b) => b === 1) && [...bytes.subarray(1200)].every((b) => b === 3)).toBe(true);
    expect(events.filter((e) => e.startsWith('beside'))).toEqual(['beside 600', 'beside 1200', 'beside 1800']);
    // the bytes past the bound are read only once the isolate is this job's
    expect(events.indexOf('read 3')).toBeGreaterThan(events.indexOf('isolate 1200'));
  });
});
