// Run by tests/faults/download-memory.test.ts under Deno: downloads a URL through
// shared/preview/fetch.ts (the server is the test's own process, so only the download counts)
// and prints the growth of this process's peak RSS over the download, from /proc (VmHWM,
// reset right before it starts).
import { fetchSource } from '../../shared/preview/fetch.ts';

const url = new URL(Deno.args[0]);
const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(Deno.readTextFileSync('/proc/self/status'))![1]);
Deno.writeTextFileSync('/proc/self/clear_refs', '5'); // VmHWM := current RSS
const before = kb('VmRSS');
const { bytes } = await fetchSource(url.href, { maxBytes: 200 * 1048576, timeoutMs: 60_000, allowedPrivateHosts: [url.host] });
console.log(JSON.stringify({ bytes: bytes.length, growthMb: Math.round((kb('VmHWM') - before) / 1024) }));
