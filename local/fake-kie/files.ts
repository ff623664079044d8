/** The result files' server: what KIE's CDN does (ranges, HEAD), and the faults tests ask for. */
import { log, sleep } from './http.ts';
import type { FakeKieState } from './task.ts';

function parseRange(
  header: string | null,
  size: number,
): { start: number; end: number } | 'bad' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'bad';
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'bad';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return 'bad';
  return { start, end };
}

export async function serveFile(
  s: FakeKieState,
  req: Request,
  taskId: string,
  name: string,
): Promise<Response> {
  const range = req.headers.get('range');
  const record = (status: number, bytes: number, mode: string) => {
    s.requests.push({
      at: new Date().toISOString(),
      method: req.method,
      path: new URL(req.url).pathname,
      taskId,
      name,
      status,
      bytes,
      range,
      mode,
    });
    log(
      `file task=${taskId} name=${name} status=${status} bytes=${bytes} mode=${mode}${
        range ? ` range=${range}` : ''
      }`,
    );
  };
  const t = s.tasks.get(taskId);
  const file = s.files.get(name);
  if (!t || !file || !(t.fixtures.includes(name) || t.coverFixture === name)) {
    record(404, 0, 'unknown');
    return new Response('Not Found', { status: 404 });
  }
  const hits = (t.fileHits.get(name) ?? 0) + 1;
  t.fileHits.set(name, hits);
  const mode = t.fake.asset;
  if (mode === '404') {
    record(404, 0, mode);
    return new Response('Not Found', { status: 404 });
  }
  if (mode === '500' || (mode === '500-then-ok' && hits === 1)) {
    record(500, 0, mode);
    return new Response('Internal Server Error', { status: 500 });
  }
  if (mode === 'slow') await sleep(t.fake.slowMs);

  const size = file.bytes.length;
  const head = req.method === 'HEAD';
  const baseHeaders: Record<string, string> = {
    'content-type': file.contentType,
    'accept-ranges': 'bytes',
    'cache-control': 'no-store',
  };

  if (mode === 'truncated') {
    // Announce every byte, send half, then break the connection.
    const half = file.bytes.slice(0, Math.max(1, Math.floor(size / 2)));
    record(200, half.length, mode);
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        controller.enqueue(half);
        await sleep(20);
        controller.error(new Error('fake truncation'));
      },
    });
    return new Response(head ? null : stream, {
      status: 200,
      headers: { ...baseHeaders, 'content-length': String(size) },
    });
  }
  if (mode === 'hang') {
    // Headers and a first chunk, then nothing ever again (until the client gives up).
    const first = file.bytes.slice(0, Math.min(size, 16));
    record(200, first.length, mode);
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (!sent) {
          sent = true;
          controller.enqueue(first);
          return;
        }
        return new Promise<void>(() => {}); // never resolves
      },
    });
    return new Response(head ? null : stream, {
      status: 200,
      headers: { ...baseHeaders, 'content-length': String(size) },
    });
  }

  const r = parseRange(range, size);
  if (r === 'bad') {
    record(416, 0, mode);
    return new Response(null, {
      status: 416,
      headers: { ...baseHeaders, 'content-range': `bytes */${size}` },
    });
  }
  if (r) {
    const part = file.bytes.slice(r.start, r.end + 1);
    record(206, head ? 0 : part.length, mode);
    return new Response(head ? null : part, {
      status: 206,
      headers: {
        ...baseHeaders,
        'content-length': String(part.length),
        'content-range': `bytes ${r.start}-${r.end}/${size}`,
      },
    });
  }
  record(200, head ? 0 : size, mode);
  return new Response(head ? null : file.bytes, {
    status: 200,
    headers: { ...baseHeaders, 'content-length': String(size) },
  });
}
