/**
 * The local stack's API gateway on one port (54321 by default, like `supabase start`):
 *   /functions/v1/<name>  the function modules of supabase/config.toml, each in its own
 *                         isolate pool under the edge runtime's rules (functions-runner.ts)
 *   /storage/v1/…         the Storage REST API (storage-api.ts)
 *   /auth/v1/…            a minimal Auth API (auth-api.ts)
 *   /library              the example library page (library.html)
 *   /_local/faults        (service key) injected storage upload failures and delays, delete failures
 *   /_local/isolates      (service key) live function isolates: pid, CPU, memory, the requests in each
 *   /_local/isolates/retire  (service key, POST {fn}) retire a function's active isolates now
 * and, in the background, the pg_net stand-in (net-worker.ts).
 *
 * Environment (read in main only): STACK_DIR, GATEWAY_PORT, DB_URL, FUNCTIONS_ENV_FILE,
 * EXTRA_FUNCTIONS_CONFIG, LEGACY_API_KEYS (off: a project whose legacy anon / service_role keys
 * are disabled, as new projects have only sb_ keys: the API refuses them as API keys with 401
 * and the functions are not given them), and the isolates' limits (default: the platform's,
 * functions-runner.ts):
 * EDGE_CPU_SOFT_LIMIT_MS, EDGE_CPU_LIMIT_MS, EDGE_MEMORY_LIMIT_MB, EDGE_WALL_CLOCK_MS,
 * EDGE_RESPONSE_LIMIT_MS, EDGE_BEFOREUNLOAD_PCT.
 */
import postgres from 'postgres';
import { createAuthHandler } from './auth-api.ts';
import {
  identify,
  isLegacyApiKey,
  LOCAL_ANON_KEY,
  LOCAL_PUBLISHABLE_KEY,
  LOCAL_SECRET_KEY,
  LOCAL_SERVICE_ROLE_KEY,
  verifyJwt,
} from './keys.ts';
import { startNetWorker } from './net-worker.ts';
import {
  type FunctionSpec,
  FunctionsRunner,
  type IsolateStats,
  PLATFORM_LIMITS,
  type RequestStats,
} from './functions-runner.ts';
import { createStorageHandler, type StorageFaults } from './storage-api.ts';
import { dirname, repoRoot } from './paths.ts';
import { parseEnvFile } from './env-file.ts';
import { parse as parseToml } from 'smol-toml';

/**
 * The [functions.NAME] tables of a supabase config.toml: entrypoint (default
 * ./functions/NAME/index.ts), verify_jwt (default true) and import_map (default: the functions'
 * functions/deno.json), paths relative to the file, as the CLI reads them.
 */
export function readFunctionSpecs(tomlPath: string): FunctionSpec[] {
  const config = parseToml(Deno.readTextFileSync(tomlPath)) as {
    functions?: Record<string, { entrypoint?: string; verify_jwt?: boolean; import_map?: string }>;
  };
  const base = `file://${dirname(tomlPath)}/`;
  return Object.entries(config.functions ?? {}).map(([name, f]) => ({
    name,
    entry: new URL(f.entrypoint ?? `./functions/${name}/index.ts`, base).pathname,
    verifyJwt: f.verify_jwt !== false,
    importMap: f.import_map ? new URL(f.import_map, base).pathname : undefined,
  }));
}

function cors(res: Response): Response {
  const headers = new Headers(res.headers);
  headers.set('access-control-allow-origin', '*');
  headers.set(
    'access-control-allow-headers',
    'authorization, x-client-info, apikey, content-type, x-upsert, range',
  );
  headers.set('access-control-allow-methods', 'GET, POST, PUT, DELETE, HEAD, OPTIONS');
  headers.set('access-control-expose-headers', 'content-range, content-length');
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

async function main() {
  const root = repoRoot();
  const env = (n: string, d?: string) => Deno.env.get(n) || d;
  const stackDir = env('STACK_DIR', `${root}/.local/dev`)!;
  const port = Number(env('GATEWAY_PORT', '54321'));
  const dbUrl = env('DB_URL', 'postgresql://postgres:postgres@127.0.0.1:54322/postgres')!;
  const logDir = `${stackDir}/logs`;
  await Deno.mkdir(logDir, { recursive: true });
  const logFile = await Deno.open(`${logDir}/stack.log`, {
    create: true,
    append: true,
    write: true,
  });
  const encoder = new TextEncoder();
  const write = (source: string, line: string) => {
    const text = `${new Date().toISOString()} ${source} ${line}\n`;
    logFile.writeSync(encoder.encode(text));
    if (env('GATEWAY_QUIET') !== '1') Deno.stdout.writeSync(encoder.encode(text));
  };
  const log = (line: string) => write('gateway', line);

  // the platform's services reconnect promptly after a database restart (postgres.js waits up to 20 s by default)
  const sql = postgres(dbUrl, {
    max: 10,
    prepare: false,
    onnotice: () => {},
    backoff: (n: number) => Math.min(0.1 * n, 1),
  });
  const specs = readFunctionSpecs(`${root}/supabase/config.toml`);
  const extra = env('EXTRA_FUNCTIONS_CONFIG');
  if (extra) specs.push(...readFunctionSpecs(extra));

  const baseUrl = `http://127.0.0.1:${port}`;
  const legacyKeys = env('LEGACY_API_KEYS', 'on') !== 'off';
  const functionEnv: Record<string, string> = {
    HOME: env('HOME', '/root')!,
    ...(env('DENO_DIR') ? { DENO_DIR: env('DENO_DIR')! } : {}),
    // the isolates' Deno fetches the functions' npm packages from the registry (no node_modules,
    // as on the platform); this machine reaches it only through the system's CA store
    DENO_TLS_CA_STORE: 'system',
    SUPABASE_URL: baseUrl,
    ...(legacyKeys
      ? { SUPABASE_ANON_KEY: LOCAL_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY: LOCAL_SERVICE_ROLE_KEY }
      : {}),
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: LOCAL_PUBLISHABLE_KEY }),
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: LOCAL_SECRET_KEY }),
    SUPABASE_DB_URL: dbUrl,
    ...(env('FUNCTIONS_ENV_FILE')
      ? parseEnvFile(Deno.readTextFileSync(env('FUNCTIONS_ENV_FILE')!))
      : {}),
  };

  const limit = (name: string, platform: number) => Number(env(name, String(platform)));
  const runner = new FunctionsRunner(new Map(specs.map((s) => [s.name, s])), {
    cwd: root,
    env: functionEnv,
    tmp: `${stackDir}/tmp`,
    limits: {
      cpuSoftMs: limit('EDGE_CPU_SOFT_LIMIT_MS', PLATFORM_LIMITS.cpuSoftMs),
      cpuHardMs: limit('EDGE_CPU_LIMIT_MS', PLATFORM_LIMITS.cpuHardMs),
      memoryMb: limit('EDGE_MEMORY_LIMIT_MB', PLATFORM_LIMITS.memoryMb),
      wallClockMs: limit('EDGE_WALL_CLOCK_MS', PLATFORM_LIMITS.wallClockMs),
      responseMs: limit('EDGE_RESPONSE_LIMIT_MS', PLATFORM_LIMITS.responseMs),
      beforeunloadPct: limit('EDGE_BEFOREUNLOAD_PCT', PLATFORM_LIMITS.beforeunloadPct),
    },
    sink: (fn, line, pid) => write(`fn:${fn}#${pid}`, line),
    onStats: (s: RequestStats) =>
      log(
        `[Gateway] fn=${s.fn} status=${s.status} wallMs=${s.wallMs} cpuMs=${s.cpuMs} peakMb=${s.peakMb} isolate=${s.pid}${
          s.limit ? ` limit=${s.limit} WORKER_LIMIT` : ''
        }`,
      ),
    onIsolateEnd: (s: IsolateStats) =>
      log(
        `[Gateway] isolate fn=${s.fn} pid=${s.pid} ended reason=${s.reason} cpuMs=${s.cpuMs} peakMb=${s.peakMb} requests=${s.requests} lifeMs=${s.lifeMs}${
          ['cpu', 'memory', 'wall'].includes(s.reason) ? ' WORKER_LIMIT' : ''
        }`,
      ),
  });

  const faults: StorageFaults = { failUploads: [] };
  const storage = createStorageHandler({ sql, dir: `${stackDir}/storage`, log, faults });
  const auth = createAuthHandler(sql);
  const libraryPage = `${root}/example/library.html`;
  const supabaseUmd = `${root}/node_modules/@supabase/supabase-js/dist/umd/supabase.js`;

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const path = url.pathname;
    if (req.method === 'OPTIONS') return cors(new Response(null, { status: 204 }));
    const fnMatch = path.match(/^\/functions\/v1\/([\w-]+)(\/.*)?$/);
    if (fnMatch) {
      const spec = runner.spec(fnMatch[1]);
      if (!spec) {
        return Response.json({ code: 'NOT_FOUND', message: 'Requested function was not found' }, {
          status: 404,
        });
      }
      if (spec.verifyJwt) {
        const auth = req.headers.get('authorization');
        if (!auth) {
          return Response.json({ code: 401, message: 'Missing authorization header' }, {
            status: 401,
          });
        }
        // The platform's verify_jwt accepts a valid JWT only; the opaque sb_… keys are not JWTs.
        // Like the CLI's `functions serve` (supabase/cli internal/functions/serve/templates/main.ts,
        // verifyHybridJWT): HS256 with the shared secret, ES256/RS256 against the JWKS.
        const claims = await verifyJwt(auth.replace(/^Bearer\s+/i, ''));
        if (!claims) return Response.json({ code: 401, message: 'Invalid JWT' }, { status: 401 });
      }
      return cors(await runner.handle(spec.name, req, fnMatch[2] ?? ''));
    }
    // Legacy API keys disabled: the API gateway refuses them as the request's API key (the
    // `apikey` header, else the bearer); a legacy JWT beside an sb_ apikey still passes, as on
    // the platform (disabling the legacy keys does not revoke the JWT secret).
    if (!legacyKeys) {
      const presented = req.headers.get('apikey') ??
        req.headers.get('authorization')?.replace(/^Bearer\s+/i, '');
      if (isLegacyApiKey(presented)) {
        log(`[Gateway] request method=${req.method} path=${path} refused: legacy API key`);
        return cors(
          Response.json({ message: 'Legacy API keys are disabled' }, { status: 401 }),
        );
      }
    }
    // One line per API request with the caller's role: what a service key reached is greppable.
    const caller = await identify(req.headers);
    log(`[Gateway] request method=${req.method} path=${path} role=${caller?.role ?? 'none'}`);
    if (path.startsWith('/storage/v1/')) {
      return cors(await storage(req, path.slice('/storage/v1'.length), caller));
    }
    if (path.startsWith('/auth/v1/')) {
      return cors(await auth(req, path.slice('/auth/v1'.length), caller));
    }
    if (path === '/library' || path === '/library/') {
      return new Response(await Deno.readFile(libraryPage), {
        headers: { 'content-type': 'text/html; charset=utf-8' },
      });
    }
    if (path === '/vendor/supabase.js') {
      return new Response(await Deno.readFile(supabaseUmd), {
        headers: { 'content-type': 'text/javascript' },
      });
    }
    if (path === '/_local/faults' && req.method === 'POST') {
      const claims = caller;
      if (claims?.role !== 'service_role') {
        return Response.json({ message: 'service role only' }, { status: 403 });
      }
      const body = await req.json();
      faults.failUploads = (body.failUploads ?? []).map((
        f: { pattern: string; times: number },
      ) => ({ pattern: f.pattern, remaining: f.times }));
      faults.delayUploads = (body.delayUploads ?? []).map((
        f: { pattern: string; ms: number; times: number },
      ) => ({ pattern: f.pattern, ms: f.ms, remaining: f.times }));
      faults.failRemoves = (body.failRemoves ?? []).map((
        f: { pattern: string; times: number },
      ) => ({ pattern: f.pattern, remaining: f.times }));
      log(`[Gateway] faults set ${JSON.stringify(body)}`);
      return Response.json({ ok: true });
    }
    if (path === '/_local/isolates/retire' && req.method === 'POST') {
      if (caller?.role !== 'service_role') {
        return Response.json({ message: 'service role only' }, { status: 403 });
      }
      const { fn } = await req.json();
      return Response.json({ retired: runner.retire(String(fn)) });
    }
    if (path === '/_local/isolates' && req.method === 'GET') {
      const claims = caller;
      if (claims?.role !== 'service_role') {
        return Response.json({ message: 'service role only' }, { status: 403 });
      }
      return Response.json({ isolates: runner.isolates() });
    }
    if (path === '/_local/status') {
      return Response.json({
        status: 'ok',
        functions: specs.map((s) => s.name),
      });
    }
    return Response.json({ message: 'no Route matched with those values' }, { status: 404 });
  };

  await runner.start();
  const net = startNetWorker(sql, log);
  await net.ready;
  const server = Deno.serve({
    hostname: '127.0.0.1',
    port,
    onListen: () =>
      log(
        `[Gateway] listening on ${baseUrl} functions=${specs.map((s) => s.name).join(',')}`,
      ),
  }, async (req) => {
    try {
      return await handler(req);
    } catch (err) {
      log(
        `[Gateway] error ${req.method} ${new URL(req.url).pathname}: ${
          err instanceof Error ? err.stack : err
        }`,
      );
      return Response.json({ message: 'gateway error' }, { status: 500 });
    }
  });

  const shutdown = async () => {
    log('[Gateway] stopping');
    await net.stop();
    await runner.stop();
    await server.shutdown();
    await sql.end({ timeout: 2 });
    Deno.exit(0);
  };
  Deno.addSignalListener('SIGTERM', shutdown);
  Deno.addSignalListener('SIGINT', shutdown);
}

if (import.meta.main) await main();
