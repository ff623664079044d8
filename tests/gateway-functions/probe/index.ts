// A function that does what a test asks, to prove the runner behaves as the platform's worker
// pool (tests/runner/runner.test.ts): ?sleep=ms waits, ?burn=ms spins on the CPU (yielding to
// the event loop every 50 ms, so events can be dispatched), ?alloc=mb holds an untouched
// ArrayBuffer (external memory, no RSS), ?wasm=mb grows a wasm memory from JS, ?wait=ms waits
// before answering. Answers with the isolate's pid and the beforeunload reasons it has seen;
// logs each one.
const seen: string[] = [];
const held: unknown[] = [];
addEventListener('beforeunload', (e) => {
  const reason = (e as CustomEvent).detail?.reason;
  seen.push(reason);
  console.log(`[probe] beforeunload reason=${reason} pid=${Deno.pid}`);
});

Deno.serve(async (req) => {
  const q = new URL(req.url).searchParams;
  const n = (k: string) => Number(q.get(k) ?? 0);
  if (n('sleep')) await new Promise((r) => setTimeout(r, n('sleep')));
  if (n('burn')) {
    const end = performance.now() + n('burn');
    let x = 0;
    while (performance.now() < end) {
      const slice = Math.min(end, performance.now() + 50);
      while (performance.now() < slice) x += Math.sqrt(x + 1);
      await new Promise((r) => setTimeout(r, 0));
    }
    held.push(x);
  }
  if (n('alloc')) held.push(new ArrayBuffer(n('alloc') * 1048576));
  if (n('wasm')) {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
    memory.grow(n('wasm') * 16);
    held.push(memory);
  }
  if (q.get('free')) held.length = 0;
  if (n('wait')) await new Promise((r) => setTimeout(r, n('wait')));
  return Response.json({ pid: Deno.pid, beforeunload: seen });
});
