/**
 * Does what pg_net's background worker does, for the local stack: takes committed rows from
 * `net.http_request_queue` (a NOTIFY from the queue's insert trigger arrives only at commit,
 * and a poll catches anything missed), sends each request with its timeout, and records the
 * outcome in `net._http_response` (status, body, timed_out, error_msg), keyed by the
 * request id that `net.http_post` returned.
 */
import type postgres from 'postgres';

type Queued = {
  id: number;
  method: string;
  url: string;
  headers: Record<string, string> | null;
  body: Uint8Array | null;
  timeout_milliseconds: number;
};

export function startNetWorker(sql: postgres.Sql, log: (line: string) => void, pollMs = 1000) {
  let running = true;
  let draining = false;
  let again = false;

  async function send(r: Queued) {
    const started = performance.now();
    try {
      const res = await fetch(r.url, {
        method: r.method,
        headers: r.headers ?? {},
        body: r.method === 'GET' || r.body === null ? undefined : new Uint8Array(r.body),
        signal: AbortSignal.timeout(r.timeout_milliseconds),
      });
      const content = await res.text();
      await sql`insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
        values (${r.id}, ${res.status}, ${res.headers.get('content-type')}, ${
        sql.json(Object.fromEntries(res.headers))
      }, ${content}, false, null)`;
      log(
        `[Net] id=${r.id} ${r.method} ${r.url} status=${res.status} ms=${
          Math.round(performance.now() - started)
        }`,
      );
    } catch (err) {
      const timedOut = err instanceof DOMException && err.name === 'TimeoutError';
      const message = timedOut ? `Timeout of ${r.timeout_milliseconds} ms reached` : String(err);
      await sql`insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
        values (${r.id}, null, null, null, null, ${timedOut}, ${message})`.catch(() => {});
      log(
        `[Net] id=${r.id} ${r.method} ${r.url} failed timed_out=${timedOut} error=${
          JSON.stringify(message)
        }`,
      );
    }
  }

  const MAX_IN_FLIGHT = 64;
  let inFlight = 0;

  /**
   * Takes committed requests off the queue while fewer than MAX_IN_FLIGHT are being sent,
   * and sends each on its own: one slow endpoint never holds back the rest of a batch.
   */
  async function drain() {
    if (draining) {
      again = true;
      return;
    }
    draining = true;
    try {
      do {
        again = false;
        const room = MAX_IN_FLIGHT - inFlight;
        if (room <= 0) break;
        const batch = await sql<Queued[]>`
          delete from net.http_request_queue where id in (
            select id from net.http_request_queue order by id limit ${room} for update skip locked)
          returning id, method::text, url, headers, body, timeout_milliseconds`;
        for (const r of batch) {
          inFlight++;
          void send(r).finally(() => {
            inFlight--;
            void drain();
          });
        }
        if (batch.length === room) again = true;
      } while (again && running);
    } catch (err) {
      if (running) log(`[Net] worker error: ${err instanceof Error ? err.message : err}`);
    } finally {
      draining = false;
    }
  }

  const listening = sql.listen('net_http_request_queue', () => void drain());
  const timer = setInterval(() => void drain(), pollMs);
  void drain();
  return {
    ready: listening,
    async stop() {
      running = false;
      clearInterval(timer);
      (await listening).unlisten().catch(() => {});
    },
  };
}
