// The functions runner alone (local/functions-runner.ts), for tests/stack/runner.test.ts: serves
// tests/gateway-functions' functions on a loopback port with the limits given as JSON in
// Deno.args[0] (the platform's by default), and records what the runner reports.
//   /<fn>?…      a request into the function's isolates
//   /_events     {lines, ended, stats}: isolate log lines, isolates that ended, request stats
// Prints `port=<n>` when ready. Run with the tooling Deno: bash scripts/run-deno.sh.
import { FunctionsRunner, type IsolateStats, PLATFORM_LIMITS, type RequestStats } from '../../local/functions-runner.ts';
import { readFunctionSpecs } from '../../local/gateway.ts';
import { repoRoot } from '../../local/paths.ts';

const limits = { ...PLATFORM_LIMITS, ...JSON.parse(Deno.args[0] ?? '{}') };
const root = repoRoot();
const specs = readFunctionSpecs(`${root}/tests/gateway-functions/config.toml`).filter((s) => s.name === 'test-probe');
const lines: string[] = [];
const ended: IsolateStats[] = [];
const stats: RequestStats[] = [];
const tmp = await Deno.makeTempDir({ prefix: 'runner-harness-' });
const runner = new FunctionsRunner(new Map(specs.map((s) => [s.name, s])), {
  cwd: root,
  env: { HOME: Deno.env.get('HOME') ?? '/root', DENO_TLS_CA_STORE: 'system' },
  tmp,
  limits,
  sink: (_fn, line) => lines.push(line),
  onStats: (s) => stats.push(s),
  onIsolateEnd: (s) => ended.push(s),
});
await runner.start();
const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen: ({ port }) => console.log(`port=${port}`) }, (req) => {
  const url = new URL(req.url);
  if (url.pathname === '/_events') return Response.json({ lines, ended, stats, isolates: runner.isolates() });
  const name = url.pathname.slice(1);
  if (!runner.has(name)) return new Response('no such function', { status: 404 });
  return runner.handle(name, req, '');
});
// stdin closes when the test ends (or dies): stop everything with it
for await (const _ of Deno.stdin.readable) { /* nothing is sent */ }
await runner.stop();
await server.shutdown();
await Deno.remove(tmp, { recursive: true });
