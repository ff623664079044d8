/**
 * Fake KIE.ai server for local development and tests.
 *
 *   node_modules/@deno/linux-x64-glibc/deno run --allow-net --allow-env local/fake-kie.ts
 *
 * Environment (read in main, never at import):
 *   FAKE_KIE_PORT        port to listen on (default 54340; 0 = any free port, printed at start)
 *   FAKE_KIE_HOST        interface (default 127.0.0.1)
 *   FAKE_KIE_PUBLIC_URL  base of the result-file URLs (default http://127.0.0.1:<port>)
 *   FAKE_KIE_HMAC_KEY    when set, callbacks carry X-Webhook-Timestamp / X-Webhook-Signature
 *
 * Speaks KIE's documented shapes (see tests/fixtures/kie-payloads/): create routes answer
 * `{code:200,msg:"success",data:{taskId}}`, callbacks and record-info answers mirror each family.
 * Result files are uploaded first through the control API and served with Range support. Each
 * task can be told how to behave (fail, callback never/twice, broken asset…), see FakeBehaviour.
 *
 * This file wires the parts and routes requests: fake-kie/task.ts (tasks and their behaviour),
 * shapes.ts (each family's payloads), callbacks.ts, api.ts (create and record-info routes),
 * files.ts (the result files' server) and control.ts (the control API tests drive it with).
 */

import { createRoutes, createTask, recordInfo, recordRoutes } from './fake-kie/api.ts';
import { control, reset } from './fake-kie/control.ts';
import { serveFile } from './fake-kie/files.ts';
import { json, kieError, log } from './fake-kie/http.ts';
import type { FakeKieState } from './fake-kie/task.ts';

export type { FakeBehaviour } from './fake-kie/task.ts';

export function createFakeKie(opts: { publicUrl: () => string; hmacKey?: string | null }) {
  const s: FakeKieState = {
    tasks: new Map(),
    files: new Map(),
    requests: [],
    hmacKey: opts.hmacKey || null,
    publicUrl: opts.publicUrl,
    outage: null,
  };

  async function handler(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, '') || '/';
    try {
      if (path === '/health') {
        return json({ status: 'ok', tasks: s.tasks.size, files: s.files.size });
      }
      if (path.startsWith('/__control/')) return await control(s, req, url);
      if (path.startsWith('/files/') && (req.method === 'GET' || req.method === 'HEAD')) {
        const [, , taskId, name] = path.split('/');
        if (!taskId || !name) return new Response('Not Found', { status: 404 });
        return await serveFile(s, req, decodeURIComponent(taskId), decodeURIComponent(name));
      }
      if (path.startsWith('/api/')) {
        const auth = req.headers.get('authorization') ?? '';
        const m = /^Bearer\s+(\S.*)$/i.exec(auth);
        if (!m) {
          return json(
            {
              code: 401,
              msg:
                'You do not have access permissions: missing or invalid Authorization Bearer token',
            },
            401,
          );
        }
        const createFamily = createRoutes.get(path);
        if (createFamily && req.method === 'POST') return await createTask(s, createFamily, req);
        const recordFamily = recordRoutes.get(path);
        if (recordFamily && req.method === 'GET') return await recordInfo(s, recordFamily, url);
        return kieError(404, `Not Found: ${req.method} ${path}`, 404);
      }
      return new Response('Not Found', { status: 404 });
    } catch (err) {
      log(`error ${req.method} ${path}: ${err instanceof Error ? err.stack : String(err)}`);
      return kieError(500, 'Server error', 500);
    }
  }

  return { handler, reset: () => reset(s) };
}

function main(): void {
  const portRaw = Deno.env.get('FAKE_KIE_PORT') ?? '54340';
  const port = Number(portRaw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`[FakeKIE] FAKE_KIE_PORT must be a port number, got ${JSON.stringify(portRaw)}`);
    Deno.exit(2);
  }
  const hostname = Deno.env.get('FAKE_KIE_HOST') || '127.0.0.1';
  const publicUrlEnv = Deno.env.get('FAKE_KIE_PUBLIC_URL')?.replace(/\/+$/, '') || null;
  let actualPort = port;
  const fake = createFakeKie({
    publicUrl: () => publicUrlEnv ?? `http://127.0.0.1:${actualPort}`,
    hmacKey: Deno.env.get('FAKE_KIE_HMAC_KEY') || null,
  });
  const server = Deno.serve({
    port,
    hostname,
    onListen: (addr) => {
      actualPort = addr.port;
      log(
        `listening on http://${addr.hostname}:${addr.port} hmac=${
          Deno.env.get('FAKE_KIE_HMAC_KEY') ? 'on' : 'off'
        }`,
      );
    },
  }, fake.handler);
  const stop = () => {
    fake.reset();
    log('stopping');
    // A 'hang' download would keep a graceful shutdown waiting forever: give it a moment only.
    setTimeout(() => Deno.exit(0), 300);
    void server.shutdown().then(() => Deno.exit(0));
  };
  Deno.addSignalListener('SIGINT', stop);
  Deno.addSignalListener('SIGTERM', stop);
}

if (import.meta.main) main();
