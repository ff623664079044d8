// Run by tests/faults/rebinding.test.ts under Deno (the runtime the functions use): a DNS
// rebinding attempt on shared/preview/fetch.ts. The guard's resolver says the name is public
// (93.184.216.34); the system resolver, which fetch would use, says 127.0.0.1, where a trap
// server listens. Prints one JSON line: the outcome and how many requests reached the trap.
import { fetchSource, type Pinner } from '../../shared/preview/fetch.ts';
import { PreviewError } from '../../shared/errors.ts';

const mode = Deno.args[0] as 'pinned' | 'unpinned' | 'no-pinner';
let hits = 0;
const trap = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen() {} }, () => {
  hits++;
  return new Response('internal secret', { headers: { 'content-type': 'image/jpeg' } });
});
const port = (trap.addr as Deno.NetAddr).port;
const unpinned: Pinner = () => ({ init: {}, close() {} });
const pin = mode === 'unpinned' ? unpinned : mode === 'no-pinner' ? () => null : undefined;
let outcome: string;
try {
  const r = await fetchSource(`http://localhost:${port}/x.jpg`, { maxBytes: 1 << 20, timeoutMs: 1500, allowedPrivateHosts: [] }, {
    resolve: async () => ['93.184.216.34'],
    pin,
  });
  outcome = `fetched ${r.bytes.length} bytes`;
} catch (err) {
  outcome = err instanceof PreviewError ? err.code : String(err);
}
await trap.shutdown();
console.log(JSON.stringify({ outcome, hits }));
