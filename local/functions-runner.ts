/**
 * Runs edge functions the way Supabase's edge runtime does, closely enough to fail where
 * the platform fails: each function gets its own pool of isolates (Deno processes started
 * by function-host.ts without FFI, subprocess or Worker rights), each isolate serves one
 * request at a time and is reused while warm, and every request's CPU time and peak memory
 * are measured from /proc. Past the limits the isolate is killed and the caller gets the
 * platform's answer: HTTP 546 WORKER_LIMIT.
 */
import { fromFileUrl } from './paths.ts';

export type FunctionSpec = { name: string; entry: string; verifyJwt: boolean };

export type RunnerLimits = {
  cpuMs: number;
  memoryMb: number;
  responseMs: number;
  backgroundMs: number;
  isolatesPerFunction: number;
  /** How long a worker stays active and serves requests (the platform's wall-clock limit). */
  workerLifetimeMs: number;
};

export type RequestStats = {
  fn: string;
  status: number;
  wallMs: number;
  cpuMs: number;
  peakMb: number;
  limit?: 'cpu' | 'memory' | 'wall';
};

const CLK_TCK = 100;
const HOST = new URL('./function-host.ts', import.meta.url).href;

/**
 * An isolate's main module, written to its temp folder: the host, the function's entry and the
 * start call as static imports, so the function's whole module graph loads without read rights.
 */
function isolateMain(spec: FunctionSpec, tmp: string): string {
  const file = `${tmp}/isolate-${spec.name}.ts`;
  Deno.mkdirSync(tmp, { recursive: true });
  Deno.writeTextFileSync(
    file,
    [
      `import { start } from ${JSON.stringify(HOST)};`,
      `import ${JSON.stringify(new URL(spec.entry, 'file:///').href)};`,
      'start();',
      '',
    ].join('\n'),
  );
  return file;
}

/**
 * CPU time of the isolate's JavaScript thread (Deno runs it on the process's main thread,
 * tid = pid). Supabase's edge runtime counts the same thing: its CPU timer is a per-thread
 * timer (timer_create with CLOCK_THREAD_CPUTIME_ID) on the worker's thread, so V8's
 * background threads (wasm tier-up compilation, concurrent GC) are not charged.
 */
function readCpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

function readStatusKb(pid: number, key: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(new RegExp(`${key}:\\s+(\\d+)`));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch { /* not fatal: the peak then covers the isolate's life */ }
}

type LineSink = (fn: string, line: string) => void;

class Isolate {
  readonly proc: Deno.ChildProcess;
  port = 0;
  busy = false;
  dead = false;
  /** The request this isolate is serving (until its background work settles): for /_local/isolates. */
  current: { requestId: string; body: string; since: number } | null = null;
  bootError: string | null = null;
  readonly born = performance.now();
  readonly ready: Promise<void>;
  private settled = new Map<string, () => void>();

  constructor(
    readonly spec: FunctionSpec,
    args: { deno: string; cwd: string; env: Record<string, string>; tmp: string; sink: LineSink },
  ) {
    this.proc = new Deno.Command(args.deno, {
      args: [
        'run',
        '--no-prompt',
        '--quiet',
        '--config',
        `${args.cwd}/deno.json`,
        '--allow-net',
        '--allow-env',
        '--allow-sys',
        // Like a deployed bundle: the function's module graph is loaded (static imports of the main module need no read
        // right) and nothing else can be read, not even its own package files (a codec that
        // reads a .wasm from node_modules fails here as it would on the platform), nor the
        // stack's state. Scratch space only in the temp folder.
        `--allow-read=${args.tmp}`,
        `--allow-write=${args.tmp}`,
        isolateMain(spec, args.tmp),
      ],
      cwd: args.cwd,
      env: { ...args.env, TMPDIR: args.tmp },
      clearEnv: true,
      // held open and never written: the worker exits at EOF, i.e. when this gateway dies
      stdin: 'piped',
      stdout: 'piped',
      stderr: 'piped',
    }).spawn();
    let resolveReady!: () => void;
    this.ready = new Promise((r) => (resolveReady = r));
    const onLine = (line: string) => {
      if (!line.startsWith('@@fnhost ')) return args.sink(spec.name, line);
      const [, kind, rest = ''] = line.match(/^@@fnhost (\S+) ?(.*)$/) ?? [];
      if (kind === 'READY') {
        this.port = Number(rest);
        resolveReady();
      } else if (kind === 'BOOT_ERROR') {
        this.bootError = rest;
        args.sink(spec.name, `[Gateway] BOOT_ERROR fn=${spec.name} ${rest}`);
      } else if (kind === 'SETTLED') {
        this.settled.get(rest)?.();
        this.settled.delete(rest);
      }
    };
    pipeLines(this.proc.stdout, onLine);
    const stderrTail: string[] = [];
    pipeLines(this.proc.stderr, (l) => {
      stderrTail.push(l);
      if (stderrTail.length > 20) stderrTail.shift();
      args.sink(spec.name, l);
    });
    this.proc.status.then(() => {
      if (!this.port && !this.bootError) {
        // the module graph failed to load (e.g. a native addon without FFI): the platform's BOOT_ERROR
        // deno-lint-ignore no-control-regex
        const text = stderrTail.join(' ').replace(/\x1b\[[0-9;]*m/g, '');
        this.bootError = JSON.stringify(
          text.match(/error: (.*?)(?:\s+at |$)/)?.[1] ?? text.slice(0, 300),
        );
        args.sink(spec.name, `[Gateway] BOOT_ERROR fn=${spec.name} ${this.bootError}`);
      }
      this.dead = true;
      resolveReady();
      for (const done of this.settled.values()) done();
      this.settled.clear();
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  waitSettled(requestId: string): Promise<void> {
    return new Promise((resolve) => {
      if (this.dead) return resolve();
      this.settled.set(requestId, resolve);
    });
  }

  kill(): void {
    if (this.dead) return;
    try {
      this.proc.kill('SIGKILL');
    } catch { /* already gone */ }
  }
}

async function pipeLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  let buffered = '';
  const decoder = new TextDecoder();
  for await (const bytes of stream) {
    const chunk = decoder.decode(bytes, { stream: true });
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      onLine(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered) onLine(buffered);
}

export class FunctionsRunner {
  private pools = new Map<string, Isolate[]>();
  private waiters = new Map<string, (() => void)[]>();
  private baselineKb = 0;
  private seq = 0;

  constructor(
    private specs: Map<string, FunctionSpec>,
    private opts: {
      deno: string;
      cwd: string;
      env: Record<string, string>;
      tmp: string;
      limits: RunnerLimits;
      sink: LineSink;
      onStats: (s: RequestStats) => void;
    },
  ) {}

  /** Measures the RSS of an isolate with no function loaded: the platform's limit is above it. */
  async start(): Promise<void> {
    await Deno.mkdir(this.opts.tmp, { recursive: true });
    const probe = new Isolate({
      name: '(baseline)',
      entry: fromFileUrl(new URL('./baseline-function.ts', import.meta.url)),
      verifyJwt: false,
    }, { ...this.opts, sink: () => {} });
    await probe.ready;
    await new Promise((r) => setTimeout(r, 200));
    this.baselineKb = readStatusKb(probe.pid, 'VmRSS') ?? 0;
    probe.kill();
    // Warm one isolate per function, as a deployed function is warm after its first call.
    await Promise.all([...this.specs.values()].map(async (spec) => {
      const iso = this.spawn(spec);
      await iso.ready;
    }));
  }

  get baselineMb(): number {
    return Math.round(this.baselineKb / 1024);
  }

  /** Every live isolate with the request it serves (tests find and kill the one doing their work). */
  isolates(): {
    fn: string;
    pid: number;
    busy: boolean;
    requestId: string | null;
    body: string | null;
    sinceMs: number | null;
  }[] {
    return [...this.pools.entries()].flatMap(([fn, pool]) =>
      pool.filter((i) => !i.dead).map((i) => ({
        fn,
        pid: i.pid,
        busy: i.busy,
        requestId: i.current?.requestId ?? null,
        body: i.current?.body ?? null,
        sinceMs: i.current ? Math.round(performance.now() - i.current.since) : null,
      }))
    );
  }

  has(name: string): boolean {
    return this.specs.has(name);
  }

  spec(name: string): FunctionSpec | undefined {
    return this.specs.get(name);
  }

  private spawn(spec: FunctionSpec): Isolate {
    const iso = new Isolate(spec, this.opts);
    const pool = this.pools.get(spec.name) ?? [];
    pool.push(iso);
    this.pools.set(spec.name, pool);
    iso.proc.status.then(() => {
      const p = this.pools.get(spec.name) ?? [];
      this.pools.set(spec.name, p.filter((i) => i !== iso));
      this.wake(spec.name);
    });
    return iso;
  }

  private wake(name: string) {
    const w = this.waiters.get(name);
    w?.shift()?.();
  }

  private async acquire(spec: FunctionSpec): Promise<Isolate> {
    for (;;) {
      const pool = this.pools.get(spec.name) ?? [];
      // Like the platform, a worker serves requests only within its wall-clock lifetime;
      // an older idle one is retired, so memory it kept does not follow it forever.
      for (
        const old of pool.filter((i) =>
          !i.busy && !i.dead && performance.now() - i.born > this.opts.limits.workerLifetimeMs
        )
      ) {
        old.kill();
        old.dead = true;
      }
      const idle = pool.find((i) => !i.busy && !i.dead);
      if (idle) {
        idle.busy = true;
        await idle.ready;
        if (!idle.dead) return idle;
        continue;
      }
      if (pool.filter((i) => !i.dead).length < this.opts.limits.isolatesPerFunction) {
        const iso = this.spawn(spec);
        iso.busy = true;
        await iso.ready;
        return iso;
      }
      await new Promise<void>((resolve) => {
        const list = this.waiters.get(spec.name) ?? [];
        list.push(resolve);
        this.waiters.set(spec.name, list);
      });
    }
  }

  private release(iso: Isolate) {
    iso.busy = false;
    iso.current = null;
    this.wake(iso.spec.name);
  }

  /** Proxies one request into an isolate of the function, enforcing the platform's limits. */
  async handle(name: string, req: Request, subpath: string): Promise<Response> {
    const spec = this.specs.get(name)!;
    const limits = this.opts.limits;
    // Read the body before taking an isolate: a caller that gives up while queued (pg_net's
    // timeout) makes this throw, and must not leave an isolate marked busy forever (its
    // SETTLED line would never come, since the isolate never got the request).
    const body = req.body ? await req.arrayBuffer() : undefined;
    const iso = await this.acquire(spec);
    if (iso.dead) {
      this.release(iso);
      return Response.json({
        code: 'BOOT_ERROR',
        message: 'Function failed to start (please check logs)',
      }, { status: 503 });
    }
    const requestId = String(++this.seq);
    const started = performance.now();
    resetPeak(iso.pid);
    const cpuStart = readCpuMs(iso.pid) ?? 0;
    let cpuMs = 0;
    let peakKb = 0;
    let limit: RequestStats['limit'];
    const check = () => {
      const cpu = readCpuMs(iso.pid);
      const hwm = readStatusKb(iso.pid, 'VmHWM');
      if (cpu !== null) cpuMs = cpu - cpuStart;
      if (hwm !== null) peakKb = Math.max(peakKb, hwm - this.baselineKb);
      if (limit) return;
      if (cpuMs > limits.cpuMs) limit = 'cpu';
      else if (peakKb > limits.memoryMb * 1024) limit = 'memory';
      else if (performance.now() - started > limits.backgroundMs) limit = 'wall';
      if (limit) iso.kill();
    };
    const monitor = setInterval(check, 25);
    const settled = iso.waitSettled(requestId);

    let response: Response;
    try {
      const target = new URL(`http://127.0.0.1:${iso.port}/${name}${subpath}`);
      target.search = new URL(req.url).search;
      const headers = new Headers(req.headers);
      headers.set('x-fnhost-request-id', requestId);
      iso.current = {
        requestId,
        body: body ? new TextDecoder().decode(body.slice(0, 2048)) : '',
        since: performance.now(),
      };
      const upstream = await fetch(target, {
        method: req.method,
        headers,
        body,
        signal: AbortSignal.timeout(limits.responseMs),
      });
      const bytes = await upstream.arrayBuffer();
      response = new Response(bytes, { status: upstream.status, headers: upstream.headers });
    } catch (err) {
      check();
      if (
        limit === undefined && !iso.dead && err instanceof DOMException &&
        err.name === 'TimeoutError'
      ) {
        limit = 'wall';
        iso.kill();
      }
      response = limit
        ? workerLimit(limit)
        : Response.json({ code: 'WORKER_ERROR', message: `Function crashed: ${String(err)}` }, {
          status: 500,
        });
    }
    settled.then(() => {
      check();
      clearInterval(monitor);
      this.opts.onStats({
        fn: name,
        status: limit && response.status >= 500 ? 546 : response.status,
        wallMs: Math.round(performance.now() - started),
        cpuMs: Math.round(cpuMs),
        peakMb: Math.round(peakKb / 1024),
        limit,
      });
      this.release(iso);
    });
    return response;
  }

  async stop(): Promise<void> {
    for (const pool of this.pools.values()) for (const iso of pool) iso.kill();
    await Promise.all([...this.pools.values()].flat().map((i) => i.proc.status.catch(() => {})));
  }
}

function workerLimit(limit: 'cpu' | 'memory' | 'wall'): Response {
  const what = limit === 'cpu' ? 'CPU time' : limit === 'memory' ? 'memory' : 'wall clock time';
  return Response.json({
    code: 'WORKER_LIMIT',
    message: `Function failed due to not having enough compute resources (${what} limit exceeded)`,
  }, { status: 546 });
}
