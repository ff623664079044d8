/**
 * One function "isolate" of the local gateway: a Deno process started without FFI, subprocess
 * or Worker rights (what Supabase's edge runtime forbids) and without the right to read files,
 * that serves one function module's `Deno.serve` handler on a loopback port the gateway
 * proxies to.
 *
 * Its main module is generated per function by the runner (functions-runner.ts) and imports,
 * statically, this module, then the function's entry, then calls start(): a deployed bundle's
 * whole module graph is loaded without file access, and a static import graph is too (a
 * computed dynamic import would need read rights). Importing this module first installs what
 * the edge runtime provides (EdgeRuntime.waitUntil, no Worker) and captures the handler the
 * entry passes to Deno.serve. A module that fails to load fails the process before READY: the
 * runner reports that as BOOT_ERROR.
 *
 * Control lines to the gateway start with `@@fnhost ` on stdout:
 *   READY <port>          the module loaded and the server listens
 *   BOOT_ERROR <message>  the module loaded but served nothing (the platform answers 503 BOOT_ERROR)
 *   SETTLED <requestId>   the request's response and its EdgeRuntime.waitUntil work are done
 */
type Handler = (req: Request, info?: unknown) => Response | Promise<Response>;

let handler: Handler | undefined;
const background: Promise<unknown>[] = [];

// The edge runtime's API for background work after the response.
(globalThis as any).EdgeRuntime = {
  waitUntil(promise: Promise<unknown>) {
    background.push(
      Promise.resolve(promise).catch((err) => {
        console.error(
          `[EdgeRuntime] waitUntil task failed: ${err instanceof Error ? err.stack : err}`,
        );
      }),
    );
  },
};

// The edge runtime has no Web Workers.
(globalThis as any).Worker = class {
  constructor() {
    throw new Error('Web Workers are not available in the Supabase edge runtime');
  }
};

const realServe = Deno.serve.bind(Deno);
// Function modules call Deno.serve(handler) or Deno.serve(options, handler): capture the handler.
(Deno as any).serve = (a: unknown, b?: unknown) => {
  handler =
    (typeof a === 'function' ? a : typeof b === 'function' ? b : (a as any)?.handler) as Handler;
  return {
    finished: new Promise(() => {}),
    shutdown: async () => {},
    ref() {},
    unref() {},
    addr: null,
  };
};

// Die with the gateway: stdin is a pipe the gateway holds open and never writes to, so EOF (or an
// error) means the gateway is gone, killed or crashed. A worker must not outlive it, still
// writing to the database with nobody reading its logs.
(async () => {
  const buf = new Uint8Array(64);
  try {
    while ((await Deno.stdin.read(buf)) !== null) { /* nothing is ever sent */ }
  } catch { /* closed */ }
  Deno.exit(0);
})();

function control(line: string): void {
  console.log(`@@fnhost ${line}`);
}

/** Serve the handler the entry (imported before the call) gave to Deno.serve. */
export function start(): void {
  if (!handler) {
    control(`BOOT_ERROR ${JSON.stringify('Error: the module did not call Deno.serve(handler)')}`);
    Deno.exit(1);
  }
  realServe({
    hostname: '127.0.0.1',
    port: 0,
    onListen: ({ port }) => control(`READY ${port}`),
  }, async (req, info) => {
    const requestId = req.headers.get('x-fnhost-request-id') ?? '';
    let response: Response;
    try {
      response = await handler!(req, info);
    } catch (err) {
      console.error(`[EdgeRuntime] uncaught error: ${err instanceof Error ? err.stack : err}`);
      response = Response.json({
        code: 'INTERNAL_ERROR',
        message: 'The function threw an uncaught error',
      }, {
        status: 500,
      });
    }
    // Report when the background work of this request has settled (one request at a time).
    queueMicrotask(async () => {
      while (background.length) await background.shift();
      control(`SETTLED ${requestId}`);
    });
    return response;
  });
}
