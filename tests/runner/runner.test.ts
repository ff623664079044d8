// The local functions runner behaves as the platform's worker pool (supabase/edge-runtime
// v1.74.0, per_worker): requests share an isolate; CPU accumulates per isolate (soft 1 s:
// retire, hard 2 s: 546 for everything in it); memory is heap + external (not RSS) up to
// 256 MB; beforeunload at 90 %; the wall clock retires at half and terminates at the full
// value. Each case drives real Deno 2.1.4 isolates of tests/gateway-functions/probe through the
// runner alone (tests/helpers/runner-harness.ts). CPU is burnt by wall-clock spinning, sized so
// each side of a limit holds even with the other core busy.
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';

type Events = {
  lines: string[];
  ended: { pid: number; reason: string; cpuMs: number; peakMb: number; requests: number }[];
  stats: { pid: number; status: number; cpuMs: number; peakMb: number; limit?: string }[];
  isolates: { pid: number; retired: boolean; busy: boolean }[];
};

function startHarness(limits: Record<string, number> = {}): Promise<{ base: string; child: ChildProcess }> {
  const child = spawn('bash', ['scripts/run-deno.sh', 'tests/helpers/runner-harness.ts', JSON.stringify(limits)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.on('exit', (code) => reject(new Error(`runner harness exited (${code}): ${out}`)));
    child.stdout!.on('data', (d) => {
      out += d;
      const m = out.match(/port=(\d+)/);
      if (m) resolve({ base: `http://127.0.0.1:${m[1]}`, child });
    });
  });
}

describe('the runner, as the platform\'s worker pool', () => {
  let base = '';
  let child: ChildProcess;
  const probe = async (query: string) => {
    const res = await fetch(`${base}/test-probe?${query}`);
    return { status: res.status, body: await res.json() };
  };
  const events = async (): Promise<Events> => (await fetch(`${base}/_events`)).json();
  /** Ends the isolates that are there now (a fresh one serves the next case). */
  const freshIsolate = async () => {
    const { pid } = (await probe('sleep=1')).body;
    await probe('burn=1300'); // past the soft limit: retired, then dropped once idle
    await waitFor('the isolate to end', async () => (await events()).ended.find((e) => e.pid === pid), 10_000, 50);
  };

  beforeAll(async () => {
    ({ base, child } = await startHarness());
  });
  afterAll(() => {
    child?.stdin?.end();
  });

  it('concurrent requests share one isolate', async () => {
    const rs = await Promise.all([probe('sleep=400'), probe('sleep=400'), probe('sleep=400')]);
    expect(rs.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(new Set(rs.map((r) => r.body.pid)).size).toBe(1);
  });

  it('CPU accumulates over the isolate\'s requests: past the soft limit it retires and a new one serves', async () => {
    await freshIsolate();
    const a = await probe('burn=300');
    const b = await probe('burn=1300');
    expect(b.body.pid).toBe(a.body.pid); // 300 ms did not retire it
    const c = await probe('sleep=1');
    expect(c.status).toBe(200);
    expect(c.body.pid).not.toBe(a.body.pid);
    const ended = await waitFor('the retired isolate to be dropped', async () => (await events()).ended.find((e) => e.pid === a.body.pid), 10_000, 50);
    expect(ended.reason).toBe('early_drop');
    expect(ended.cpuMs).toBeGreaterThanOrEqual(1000);
    expect(ended.cpuMs).toBeLessThan(2000);
    expect((await events()).lines).toContain(`[probe] beforeunload reason=early_drop pid=${a.body.pid}`);
  });

  it('at the hard limit the isolate is terminated and every request in it gets 546, after beforeunload (cpu)', async () => {
    await freshIsolate();
    const neighbour = probe('sleep=9000');
    const burner = probe('burn=7000');
    const [n, b] = await Promise.all([neighbour, burner]);
    expect([n.status, b.status]).toEqual([546, 546]);
    expect(b.body.code).toBe('WORKER_LIMIT');
    const ev = await events();
    const killed = ev.ended.find((e) => e.reason === 'cpu');
    expect(killed?.cpuMs).toBeGreaterThanOrEqual(2000);
    expect(ev.lines).toContain(`[probe] beforeunload reason=cpu pid=${killed!.pid}`);
  }, 30_000);

  it('memory is heap + external: 300 MB of untouched ArrayBuffer (no RSS) or wasm memory gets 546; 100 MB does not', async () => {
    expect((await probe('alloc=100&free=1')).status).toBe(200);
    const ab = await probe('alloc=300');
    expect(ab.status).toBe(546);
    expect(ab.body.code).toBe('WORKER_LIMIT');
    const wasm = await probe('wasm=300');
    expect(wasm.status).toBe(546);
    const ended = (await events()).ended.filter((e) => e.reason === 'memory');
    expect(ended).toHaveLength(2);
  });

  it('beforeunload (memory) at 90 % of the limit; past half the isolate is dropped once idle', async () => {
    const r = await probe('alloc=235&wait=100');
    expect(r.status).toBe(200);
    expect(r.body.beforeunload).toContain('memory');
    const ended = await waitFor('the isolate past half its memory to be dropped', async () => (await events()).ended.find((e) => e.pid === r.body.pid), 10_000, 50);
    expect(ended.reason).toBe('early_drop');
    expect(ended.peakMb).toBeGreaterThanOrEqual(235);
  });
});

describe('the runner\'s wall clock (4 s here, 400 s on the platform)', () => {
  let base = '';
  let child: ChildProcess;
  beforeAll(async () => {
    ({ base, child } = await startHarness({ wallClockMs: 4000 }));
  });
  afterAll(() => {
    child?.stdin?.end();
  });

  it('retires the isolate at half, sends beforeunload (wall_clock) at 90 % and terminates it at the full value', async () => {
    const started = Date.now();
    const long = fetch(`${base}/test-probe?sleep=8000`).then(async (r) => ({ status: r.status, at: Date.now() - started }));
    const first = await (await fetch(`${base}/test-probe?sleep=1`)).json();
    await new Promise((r) => setTimeout(r, 2500));
    const later = await (await fetch(`${base}/test-probe?sleep=1`)).json();
    expect(later.pid).not.toBe(first.pid); // retired at 2 s: a new isolate took the request
    const { status, at } = await long;
    expect(status).toBe(546);
    expect(at).toBeGreaterThan(3500);
    expect(at).toBeLessThan(6000);
    const ev = (await (await fetch(`${base}/_events`)).json()) as Events;
    expect(ev.ended.find((e) => e.pid === first.pid)?.reason).toBe('wall');
    expect(ev.lines).toContain(`[probe] beforeunload reason=wall_clock pid=${first.pid}`);
  }, 30_000);
});
