/**
 * Downloads a generation's asset with the limits the edge runtime needs and without SSRF:
 * only http(s), only public addresses (every hop of a redirect is checked again), a byte cap
 * enforced while streaming, one timeout for the whole download, and the HTTP status mapped
 * to a closed error code (`Download failed: 404` is what the row's `error` then says).
 */
import { PreviewError } from '../errors.ts';

export type FetchLimits = {
  maxBytes: number;
  timeoutMs: number;
  /** `host:port` pairs allowed although private (the local stack's fake KIE server). */
  allowedPrivateHosts: string[];
};

export type Resolver = (hostname: string) => Promise<string[]>;

export type FetchedSource = { bytes: Uint8Array; contentType: string | null };

const MAX_REDIRECTS = 5;

/** The 8 hextets of an IPv6 address (a dotted IPv4 tail allowed), or null when it is not one. */
function ipv6Hextets(ip: string): number[] | null {
  let v6 = ip.toLowerCase().replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const dotted = v6.match(/^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(2).map(Number);
    v6 = `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = v6.split('::');
  if (halves.length > 2) return null;
  const part = (s: string) => (s === '' ? [] : s.split(':'));
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? head.length !== 8 : fill < 1) return null;
  const groups = [...head, ...Array(halves.length === 2 ? fill : 0).fill('0'), ...tail];
  if (groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return null;
  return groups.map((g) => parseInt(g, 16));
}

function isPrivateV4(a: number, b: number): boolean {
  return a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
    (a === 192 && b === 0) || (a === 198 && (b === 18 || b === 19)) || a >= 224;
}

/**
 * True for addresses a server-side fetch must never reach (loopback, private, link-local…),
 * including IPv4 addresses embedded in IPv6 (mapped `::ffff:a9fe:a9fe`, compatible, SIIT,
 * 6to4): the URL parser writes `[::ffff:169.254.169.254]` in hex, and the OS connects it to
 * the IPv4 address.
 */
export function isPrivateAddress(ip: string): boolean {
  const v4 = ip.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (v4) return isPrivateV4(Number(v4[1]), Number(v4[2]));
  const h = ipv6Hextets(ip);
  if (!h) return true; // not an address we understand: refuse
  const zeros = (from: number, to: number) => h.slice(from, to).every((x) => x === 0);
  // ::/96 (unspecified, loopback, IPv4-compatible), ::ffff:0:0/96 (mapped), ::ffff:0:0:0/96 (SIIT)
  if (zeros(0, 5) && (h[5] === 0 || h[5] === 0xffff)) {
    if (h[5] === 0 && h[6] === 0) return true; // :: and ::1 and ::0.0.x.x
    return isPrivateV4(h[6] >> 8, h[6] & 0xff);
  }
  if (zeros(0, 4) && h[4] === 0xffff && h[5] === 0) return isPrivateV4(h[6] >> 8, h[6] & 0xff);
  if (h[0] === 0x2002) return isPrivateV4(h[1] >> 8, h[1] & 0xff); // 6to4 carries an IPv4 address
  if (h[0] === 0x64 && h[1] === 0xff9b) return true; // NAT64
  const first = h[0];
  return (first & 0xfe00) === 0xfc00 || // fc00::/7 unique local
    (first & 0xffc0) === 0xfe80 || // fe80::/10 link-local
    (first & 0xffc0) === 0xfec0 || // fec0::/10 site-local (deprecated)
    (first & 0xff00) === 0xff00; // multicast
}

function isIpLiteral(host: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(':');
}

/** DNS through the runtime: Deno.resolveDns on the edge, node:dns under Node (tests). */
export const systemResolver: Resolver = async (hostname) => {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (deno?.resolveDns) {
    const [a, aaaa] = await Promise.all([
      deno.resolveDns(hostname, 'A').catch(() => [] as string[]),
      deno.resolveDns(hostname, 'AAAA').catch(() => [] as string[]),
    ]);
    return [...a, ...aaaa];
  }
  const dns = await import('node:dns/promises');
  return (await dns.lookup(hostname, { all: true })).map((r) => r.address);
};

async function assertFetchable(url: URL, limits: FetchLimits, resolve: Resolver): Promise<void> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PreviewError('SOURCE_FORBIDDEN', `Download refused: ${url.protocol}// URLs are not allowed`);
  }
  const hostPort = `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
  if (limits.allowedPrivateHosts.includes(hostPort)) return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIpLiteral(host) ? [host] : await resolve(host);
  if (addresses.length === 0) {
    throw new PreviewError('SOURCE_UNREACHABLE', `Download failed: cannot resolve ${host}`);
  }
  const blocked = addresses.find(isPrivateAddress);
  if (blocked) {
    throw new PreviewError('SOURCE_FORBIDDEN', `Download refused: ${host} resolves to a private address (${blocked})`);
  }
}

function statusError(status: number): PreviewError {
  const message = `Download failed: ${status}`;
  if (status === 404 || status === 410) return new PreviewError('SOURCE_NOT_FOUND', message);
  if (status === 401 || status === 403) return new PreviewError('SOURCE_FORBIDDEN', message);
  if (status === 408 || status === 429 || status >= 500) return new PreviewError('SOURCE_UNREACHABLE', message);
  return new PreviewError('SOURCE_NOT_FOUND', message);
}

export async function fetchSource(
  rawUrl: string,
  limits: FetchLimits,
  deps: { fetch?: typeof fetch; resolve?: Resolver } = {},
): Promise<FetchedSource> {
  const doFetch = deps.fetch ?? fetch;
  const resolve = deps.resolve ?? systemResolver;
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new PreviewError('SOURCE_NOT_FOUND', `Download failed: invalid URL ${JSON.stringify(rawUrl)}`);
  }
  const signal = AbortSignal.timeout(limits.timeoutMs);
  const timeoutError = () => new PreviewError('TIMEOUT', `Download timed out after ${limits.timeoutMs} ms`);
  try {
    let res: Response | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      await assertFetchable(url, limits, resolve);
      res = await doFetch(url, { redirect: 'manual', signal });
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        url = new URL(location, url);
        continue;
      }
      break;
    }
    if (!res || (res.status >= 300 && res.status < 400)) {
      throw new PreviewError('SOURCE_UNREACHABLE', `Download failed: more than ${MAX_REDIRECTS} redirects`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw statusError(res.status);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > limits.maxBytes) {
      await res.body?.cancel();
      throw new PreviewError('SOURCE_TOO_LARGE', `Source is larger than the ${limits.maxBytes}-byte limit (${declared} bytes)`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limits.maxBytes) {
        await reader.cancel();
        throw new PreviewError('SOURCE_TOO_LARGE', `Source is larger than the ${limits.maxBytes}-byte limit`);
      }
      chunks.push(value);
    }
    if (Number.isFinite(declared) && total < declared) {
      throw new PreviewError('SOURCE_UNREACHABLE', `Download failed: body truncated at ${total} of ${declared} bytes`);
    }
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const c of chunks) {
      bytes.set(c, offset);
      offset += c.length;
    }
    return { bytes, contentType: res.headers.get('content-type') };
  } catch (err) {
    if (err instanceof PreviewError) throw err;
    if (signal.aborted) throw timeoutError();
    const message = err instanceof Error ? err.message : String(err);
    throw new PreviewError('SOURCE_UNREACHABLE', `Download failed: ${message}`, { cause: err });
  }
}
