/**
 * Runs edge functions the way Supabase's edge runtime (supabase/edge-runtime v1.74.0, the
 * release the supabase CLI 2.117 serves with, policy `per_worker`) does, so they fail where the
 * platform fails:
 *
 *   - Each isolate is a Deno 2.1.4 process (the runtime's Deno) started by function-host.ts
 *     without FFI, subprocess, Worker or file rights, with the functions' import map.
 *   - A request goes to an active isolate of its function, round robin, with no busy check: an
 *     isolate serves several requests at once. A new isolate starts only when the function has
 *     no active one (crates/base/src/worker/pool.rs, ActiveWorkerRegistry).
 *   - CPU is the isolate thread's (CLOCK_THREAD_CPUTIME_ID there; /proc's per-thread counters
 *     here), accumulated over the isolate's life: at the soft limit (1000 ms) the isolate
 *     retires (finishes what it has, takes nothing new), at 90 % of the hard limit it gets
 *     `beforeunload` (reason cpu), at the hard limit (2000 ms) it is terminated and every
 *     request in it gets 546 WORKER_LIMIT (supervisor/strategy_per_worker.rs).
 *   - Memory is V8's used heap + external memory (ArrayBuffers, wasm memory), checked inside
 *     the isolate (function-host.ts): `beforeunload` (memory) at 90 %, terminated at 256 MB;
 *     from half the limit the isolate is dropped once idle.
 *   - Wall clock (400 s): retire at half, `beforeunload` (wall_clock) at 90 %, terminate at the
 *     full value.
 *   - A retired isolate with nothing in flight and no waitUntil work pending is dropped
 *     (`beforeunload` early_drop, then it ends).
 *   - A response not begun within 150 s is answered 504 (the platform's request idle timeout).
 */
import { edgeDenoBin, repoRoot } from './paths.ts';

export type FunctionSpec = {
  name: string;
  entry: string;
  verifyJwt: boolean;
  /** The function's import map (config.toml's import_map); default functions/deno.json. */
  importMap?: string;
};

export type RunnerLimits = {
  cpuSoftMs: number;
  cpuHardMs: number;
  memoryMb: number;
  wallClockMs: number;
  responseMs: number;
  /** `beforeunload` at this share of the CPU (hard), memory and wall-clock limits. */
  beforeunloadPct: number;
};

export const PLATFORM_LIMITS: RunnerLimits = {
  cpuSoftMs: 1000,
  cpuHardMs: 2000,
  memoryMb: 256,
  wallClockMs: 400_000,
  responseMs: 150_000,
  beforeunloadPct: 90,
};

export type Limit = 'cpu' | 'memory' | 'wall';

export type RequestStats = {
  fn: string;
  status: number;
  wallMs: number;
  /** The isolate's accumulated CPU when the response ended. */
  cpuMs: number;
  /** The isolate's peak heap + external so far (the platform's measure). */
  peakMb: number;
  pid: number;
  limit?: Limit;
};

export type IsolateStats = {
  fn: string;
  pid: number;
  reason: Limit | 'early_drop' | 'boot' | 'crash' | 'stopped';
  cpuMs: number;
  peakMb: number;
  requests: number;
  lifeMs: number;
};

const CLK_TCK = 100;
const HOST = new URL('./function-host.ts', import.meta.url).href;

/**
 * An isolate's main module, written to its temp folder: the host, the function's entry and the
 * start call as static imports, so the function's whole module graph loads without read rights.
 */
function isolateMain(spec: FunctionSpec, tmp: string, limits: RunnerLimits): string {
  const file = `${tmp}/isolate-${spec.name}.ts`;
  Deno.mkdirSync(tmp, { recursive: true });
  Deno.writeTextFileSync(
    file,
    [
      `import { start } from ${JSON.stringify(HOST)};`,
      `import ${JSON.stringify(new URL(spec.entry, 'file:///').href)};`,
      `start(${
        JSON.stringify({ memoryMb: limits.memoryMb, beforeunloadPct: limits.beforeunloadPct })
      });`,
      '',
    ].join('\n'),
  );
  return file;
}

/** CPU time of the isolate's JavaScript thread (Deno runs it on the main thread, tid = pid). */
function readCpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

/** A line the isolate wrote, with the function and the isolate's pid. */
type LineSink = (fn: string, line: string, pid: number) => void;
type InFlight = { requestId: string; body: string; since: number };

class Isolate {
  readonly proc: Deno.ChildProcess;
  port = 0;
  /** Takes no new request (CPU soft limit, half the wall clock, or on its way out). */
  retired = false;
  dead = false;
  /** Why the runner ended it: what its in-flight requests are answered with. */
  limit: Limit | null = null;
  dropping = false;
  memHalf = false;
  bootError: string | null = null;
  readonly born = performance.now();
  /** CPU of the process when the function's module graph began to evaluate. */
  cpuBase: number | null = null;
  cpuMs = 0;
  peakBytes = 0;
  sent = 0;
  accepted = 0;
  idle = true;
  readonly inFlight = new Map<string, InFlight>();
  /** The requests since the isolate was last idle: their responses may be sent, their waitUntil work not done. */
  readonly recent = new Map<string, InFlight>();
  readonly ready: Promise<void>;
  /** Resolves when the isolate's stdout is closed: every control line it wrote has been read. */
  readonly output: Promise<void>;
  stopped = false;
  private readonly told = new Set<string>();
  private readonly stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(
    readonly spec: FunctionSpec,
    args: {
      deno: string;
      config: string;
      cwd: string;
      env: Record<string, string>;
      tmp: string;
      limits: RunnerLimits;
      sink: LineSink;
    },
  ) {
    this.proc = new Deno.Command(args.deno, {
      args: [
        'run',
        '--no-prompt',
        '--quiet',
        '--config',
        args.config,
        '--allow-net',
        '--allow-env',
        '--allow-sys',
        // The platform creates the isolate with its heap limit at the memory limit.
        `--v8-flags=--max-heap-size=${args.limits.memoryMb}`,
        // Like a deployed bundle: the function's module graph is loaded (static imports of the
        // main module need no read right) and nothing else can be read, not even its own package
        // files, nor the stack's state. Scratch space only in the temp folder.
        `--allow-read=${args.tmp}`,
        `--allow-write=${args.tmp}`,
        isolateMain(spec, args.tmp, args.limits),
      ],
      cwd: args.cwd,
      env: { ...args.env, TMPDIR: args.tmp },
      clearEnv: true,
      // the runner's control lines; closed when the gateway dies, and the isolate exits with it
      stdin: 'piped',
      stdout: 'piped',
      stderr: 'piped',
    }).spawn();
    this.stdin = this.proc.stdin.getWriter();
    let resolveReady!: () => void;
    this.ready = new Promise((r) => (resolveReady = r));
    const onLine = (line: string) => {
      if (!line.startsWith('@@fnhost ')) return args.sink(spec.name, line, this.pid);
      const [, kind, rest = ''] = line.match(/^@@fnhost (\S+) ?(.*)$/) ?? [];
      if (kind === 'READY') {
        this.port = Number(rest);
        resolveReady();
      } else if (kind === 'BOOT_ERROR') {
        this.bootError = rest;
        args.sink(spec.name, `[Gateway] BOOT_ERROR fn=${spec.name} ${rest}`, this.pid);
      } else if (kind === 'IDLE') {
        this.accepted = Number(rest);
        this.idle = this.accepted === this.sent;
        if (this.idle) this.recent.clear();
      } else if (kind === 'MEM') {
        this.peakBytes = Math.max(this.peakBytes, Number(rest));
      } else if (kind === 'MEM_HALF') {
        this.memHalf = true;
      } else if (kind === 'MEMORY_LIMIT') {
        this.peakBytes = Math.max(this.peakBytes, Number(rest));
        this.limit ??= 'memory';
      }
    };
    this.output = pipeLines(this.proc.stdout, onLine);
    const stderrTail: string[] = [];
    pipeLines(this.proc.stderr, (l) => {
      stderrTail.push(l);
      if (stderrTail.length > 20) stderrTail.shift();
      // V8's own heap limit (the isolate's heap is capped at the memory limit, as on the platform)
      if (/out of memory/i.test(l)) this.limit ??= 'memory';
      args.sink(spec.name, l, this.pid);
    });
    this.proc.status.then(() => {
      if (!this.port && !this.bootError) {
        // the module graph failed to load (e.g. a native addon without FFI): the platform's BOOT_ERROR
        // deno-lint-ignore no-control-regex
        const text = stderrTail.join(' ').replace(/\x1b\[[0-9;]*m/g, '');
        this.bootError = JSON.stringify(
          text.match(/error: (.*?)(?:\s+at |$)/)?.[1] ?? text.slice(0, 300),
        );
        args.sink(spec.name, `[Gateway] BOOT_ERROR fn=${spec.name} ${this.bootError}`, this.pid);
      }
      this.dead = true;
      this.retired = true;
      resolveReady();
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** A control line to the host, once per distinct line. */
  tell(line: string): void {
    if (this.dead || this.told.has(line)) return;
    this.told.add(line);
    this.stdin.write(new TextEncoder().encode(`${line}\n`)).catch(() => {});
  }

  kill(limit?: Limit): void {
    if (this.dead) return;
    if (limit) this.limit ??= limit;
    this.retired = true;
    try {
      this.proc.kill('SIGKILL');
    } catch { /* already gone */ }
  }
}

async function pipeLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  let buffered = '';
  const decoder = new TextDecoder();
  for await (const bytes of stream) {
    buffered += decoder.decode(bytes, { stream: true });
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
  private next = new Map<string, number>();
  private starting = new Map<string, Promise<Isolate>>();
  private seq = 0;
  private monitor: ReturnType<typeof setInterval> | undefined;

  constructor(
    private specs: Map<string, FunctionSpec>,
    private opts: {
      cwd: string;
      env: Record<string, string>;
      tmp: string;
      limits: RunnerLimits;
      sink: LineSink;
      onStats: (s: RequestStats) => void;
      onIsolateEnd: (s: IsolateStats) => void;
      /** The Deno the isolates run (default: the edge runtime's, edgeDenoBin()). */
      deno?: string;
    },
  ) {}

  /** Starts the supervisor and warms one isolate per function, as a deployed function is warm after its first call. */
  async start(): Promise<void> {
    await Deno.mkdir(this.opts.tmp, { recursive: true });
    this.monitor = setInterval(() => this.supervise(), 20);
    await Promise.all([...this.specs.values()].map((spec) => this.activeIsolate(spec)));
  }

  /** Every live isolate with the requests in it (tests find and kill the one doing their work). */
  isolates(): {
    fn: string;
    pid: number;
    busy: boolean;
    retired: boolean;
    cpuMs: number;
    peakMb: number;
    /** The requests in it: answered or not, until the isolate is idle (waitUntil work done). */
    requests: InFlight[];
    /** Their bodies, joined (what a test looks for). */
    body: string | null;
  }[] {
    return [...this.pools.entries()].flatMap(([fn, pool]) =>
      pool.filter((i) => !i.dead).map((i) => ({
        fn,
        pid: i.pid,
        busy: !i.idle || i.inFlight.size > 0,
        retired: i.retired,
        cpuMs: Math.round(i.cpuMs),
        peakMb: Math.round(i.peakBytes / 1048576),
        requests: [...i.recent.values()],
        body: i.recent.size ? [...i.recent.values()].map((r) => r.body).join('\n') : null,
      }))
    );
  }

  /**
   * Retires the function's active isolates now, as the platform does at the CPU soft limit or
   * half the wall clock: they finish what they have, new requests start a new isolate (tests
   * make a row's retry reach another isolate than the one still working on it).
   */
  retire(name: string): number {
    const active = (this.pools.get(name) ?? []).filter((i) => !i.retired && !i.dead);
    for (const i of active) i.retired = true;
    return active.length;
  }

  has(name: string): boolean {
    return this.specs.has(name);
  }

  spec(name: string): FunctionSpec | undefined {
    return this.specs.get(name);
  }

  private spawn(spec: FunctionSpec): Isolate {
    const iso = new Isolate(spec, {
      ...this.opts,
      deno: this.opts.deno ?? edgeDenoBin(),
      config: spec.importMap ?? `${repoRoot()}/functions/deno.json`,
    });
    const pool = this.pools.get(spec.name) ?? [];
    pool.push(iso);
    this.pools.set(spec.name, pool);
    iso.proc.status.then(() => {
      this.pools.set(spec.name, (this.pools.get(spec.name) ?? []).filter((i) => i !== iso));
      this.opts.onIsolateEnd({
        fn: spec.name,
        pid: iso.pid,
        reason: iso.limit ??
          (iso.dropping
            ? 'early_drop'
            : iso.stopped
            ? 'stopped'
            : iso.bootError
            ? 'boot'
            : 'crash'),
        cpuMs: Math.round(iso.cpuMs),
        peakMb: Math.round(iso.peakBytes / 1048576),
        requests: iso.sent,
        lifeMs: Math.round(performance.now() - iso.born),
      });
    });
    return iso;
  }

  /** An active isolate of the function (round robin over them), or a new one if it has none. */
  private activeIsolate(spec: FunctionSpec): Promise<Isolate> {
    const active = (this.pools.get(spec.name) ?? []).filter((i) => !i.retired && i.port > 0);
    if (active.length) {
      const n = (this.next.get(spec.name) ?? 0) % active.length;
      this.next.set(spec.name, n + 1);
      return Promise.resolve(active[n]);
    }
    // requests that arrive while the new isolate boots wait for that one
    let starting = this.starting.get(spec.name);
    if (!starting) {
      const iso = this.spawn(spec);
      starting = iso.ready.then(() => iso);
      starting.finally(() => this.starting.delete(spec.name));
      this.starting.set(spec.name, starting);
    }
    return starting;
  }

  /** The supervisor's loop: each isolate's CPU and wall clock against the limits. */
  private supervise(): void {
    const l = this.opts.limits;
    for (const iso of [...this.pools.values()].flat()) {
      if (iso.dead) continue;
      const age = performance.now() - iso.born;
      const cpu = iso.port ? readCpuMs(iso.pid) : null;
      if (cpu !== null) {
        iso.cpuBase ??= cpu;
        iso.cpuMs = cpu - iso.cpuBase;
      }
      if (iso.cpuMs >= l.cpuHardMs) iso.kill('cpu');
      else if (age >= l.wallClockMs) iso.kill('wall');
      if (iso.dead || iso.limit) continue;
      if (iso.cpuMs >= (l.cpuHardMs * l.beforeunloadPct) / 100) iso.tell('BEFOREUNLOAD cpu');
      if (age >= (l.wallClockMs * l.beforeunloadPct) / 100) iso.tell('BEFOREUNLOAD wall_clock');
      if (iso.cpuMs >= l.cpuSoftMs || age >= l.wallClockMs / 2) iso.retired = true;
      // a retired isolate (or one past half its memory) is dropped once nothing is left in it
      if ((iso.retired || iso.memHalf) && iso.idle && iso.inFlight.size === 0 && iso.port) {
        iso.retired = true;
        iso.dropping = true;
        iso.tell('DROP');
      }
    }
  }

  /** Proxies one request into an isolate of the function, enforcing the platform's limits. */
  async handle(name: string, req: Request, subpath: string): Promise<Response> {
    const spec = this.specs.get(name)!;
    // Read the body first: a caller that gives up early (pg_net's timeout) throws here.
    const body = req.body ? await req.arrayBuffer() : undefined;
    const iso = await this.activeIsolate(spec);
    if (iso.dead && !iso.port) {
      return Response.json({
        code: 'BOOT_ERROR',
        message: 'Function failed to start (please check logs)',
      }, { status: 503 });
    }
    const requestId = String(++this.seq);
    const started = performance.now();
    iso.sent++;
    iso.idle = false;
    const entry = {
      requestId,
      body: body ? new TextDecoder().decode(body.slice(0, 2048)) : '',
      since: Date.now(),
    };
    iso.inFlight.set(requestId, entry);
    iso.recent.set(requestId, entry);
    let response: Response;
    try {
      const target = new URL(`http://127.0.0.1:${iso.port}/${name}${subpath}`);
      target.search = new URL(req.url).search;
      const headers = new Headers(req.headers);
      headers.set('accept-encoding', 'identity'); // the body is passed on as it is, uncompressed
      const upstream = await fetch(target, {
        method: req.method,
        headers,
        body,
        signal: AbortSignal.timeout(this.opts.limits.responseMs),
      });
      const bytes = await upstream.arrayBuffer();
      const out = new Headers(upstream.headers);
      out.delete('content-encoding'); // fetch has decoded it, whatever the isolate sent
      out.delete('content-length');
      response = new Response(bytes, { status: upstream.status, headers: out });
    } catch (err) {
      if (!iso.dead && !iso.limit && err instanceof DOMException && err.name === 'TimeoutError') {
        response = Response.json({
          code: 'REQUEST_IDLE_TIMEOUT',
          message: 'The function did not answer in time',
        }, { status: 504 });
      } else {
        await Promise.all([iso.proc.status, iso.output]).catch(() => {});
        response = iso.limit ? workerLimit(iso.limit) : Response.json({
          code: 'WORKER_ERROR',
          message: `Function crashed: ${String(err)}`,
        }, { status: 500 });
      }
    }
    iso.inFlight.delete(requestId);
    this.opts.onStats({
      fn: name,
      status: response.status,
      wallMs: Math.round(performance.now() - started),
      cpuMs: Math.round(iso.cpuMs),
      peakMb: Math.round(iso.peakBytes / 1048576),
      pid: iso.pid,
      limit: response.status === 546 ? iso.limit ?? undefined : undefined,
    });
    return response;
  }

  async stop(): Promise<void> {
    clearInterval(this.monitor);
    const all = [...this.pools.values()].flat();
    for (const iso of all) {
      iso.stopped = true;
      iso.kill();
    }
    await Promise.all(all.map((i) => i.proc.status.catch(() => {})));
  }
}

function workerLimit(limit: Limit): Response {
  const what = limit === 'cpu' ? 'CPU time' : limit === 'memory' ? 'memory' : 'wall clock time';
  return Response.json({
    code: 'WORKER_LIMIT',
    message: `Function failed due to not having enough compute resources (${what} limit exceeded)`,
  }, { status: 546 });
}
