/**
 * Downloads a generation's asset with the limits the edge runtime needs and without SSRF:
 * only http(s), only public addresses (every hop of a redirect is checked again), a byte cap
 * enforced while streaming, one timeout for the whole download, and the HTTP status mapped
 * to a closed error code (`Download failed: 404` is what the row's `error` then says).
 */
import ipaddr from 'ipaddr.js';
import { PreviewError } from '../errors.ts';

export type FetchLimits = {
  maxBytes: number;
  timeoutMs: number;
  /** `host:port` pairs allowed although private (the local stack's fake KIE server). */
  allowedPrivateHosts: string[];
};

export type Resolver = (hostname: string) => Promise<string[]>;

export type FetchedSource = { bytes: Uint8Array; contentType: string | null };

/**
 * A download running beside another job's render (isolate.ts JobSlot.beside): asked with the
 * bytes the download is about to hold in all, before its buffer is allocated (a declared length)
 * or grown (an unknown one); it returns when the download may hold them (at once while the
 * downloads beside stay small, else once this job holds the isolate: reading waits meanwhile).
 */
export type Beside = (bytes: number) => Promise<void>;

const MAX_REDIRECTS = 5;

/**
 * True for every address a server-side fetch must not reach: anything that is not plain
 * global unicast in a maintained registry of special-purpose ranges (ipaddr.js: private,
 * loopback, link-local, CGNAT, multicast, reserved and documentation ranges, Teredo, 6to4,
 * NAT64, ORCHID, AS112, AMT, benchmarking, discard, segment routing…). IPv4 written inside
 * IPv6 (`::ffff:a9fe:a9fe`, which the URL parser makes of `[::ffff:169.254.169.254]` and the
 * OS connects to the IPv4 address) is judged as that IPv4 address, and IPv6 outside
 * 2000::/3 (the only block IANA allocates for global unicast, so also ::a.b.c.d and 100::/64)
 * is refused. Anything that does not parse is refused.
 */
export function isPrivateAddress(ip: string): boolean {
  const text = ip.replace(/^\[|\]$/g, '');
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) addr = ipaddr.IPv4.parse(text);
  else if (ipaddr.IPv6.isValid(text)) addr = ipaddr.IPv6.parse(text);
  else return true; // not a canonical address (e.g. `1.2.3`, `0x7f.1`): refuse
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    addr = (addr as ipaddr.IPv6).toIPv4Address();
  }
  if (addr.range() !== 'unicast') return true;
  return addr.kind() === 'ipv6' && !addr.match(GLOBAL_UNICAST_V6);
}

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

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

/**
 * Checks a URL before connecting and says where to connect: null for an IP literal or an
 * allowed private host:port (nothing to resolve again), else the checked public address.
 */
async function assertFetchable(
  url: URL,
  limits: FetchLimits,
  resolve: Resolver,
): Promise<string | null> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PreviewError(
      'SOURCE_FORBIDDEN',
      `Download refused: ${url.protocol}// URLs are not allowed`,
    );
  }
  const hostPort = `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
  if (limits.allowedPrivateHosts.includes(hostPort)) return null;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const literal = isIpLiteral(host);
  const addresses = literal ? [host] : await resolve(host);
  if (addresses.length === 0) {
    throw new PreviewError('SOURCE_UNREACHABLE', `Download failed: cannot resolve ${host}`);
  }
  const blocked = addresses.find(isPrivateAddress);
  if (blocked) {
    throw new PreviewError(
      'SOURCE_FORBIDDEN',
      `Download refused: ${host} resolves to a private address (${blocked})`,
    );
  }
  return literal ? null : addresses[0];
}

/**
 * DNS rebinding: the name was checked, but fetch resolves it again, and the second answer may
 * be private. For `https:` the certificate check binds the connection to the name (a rebound
 * connection to an internal service fails the TLS handshake: it holds no certificate for the
 * attacker's name). For plain `http:` nothing does, so the request goes to the checked address
 * itself: Deno's HTTP client to that address (the URL, and so the Host header, stay as they
 * are). Deno 2.5.1 and later take a TCP transport to the address; the edge runtime's Deno
 * (2.1.4) has none (its createHttpClient throws on it) but takes the address as an HTTP proxy,
 * which sends the same request and Host header to it. Where the runtime has neither, plain http
 * by name is refused rather than fetched unpinned.
 */
export type Pinner = (address: string, port: number) => { init: RequestInit; close(): void } | null;

export const denoPinner: Pinner = (address, port) => {
  const deno =
    (globalThis as { Deno?: { createHttpClient?: (o: unknown) => { close(): void } } }).Deno;
  if (!deno?.createHttpClient) return null;
  const host = address.includes(':') ? `[${address}]` : address;
  for (
    const proxy of [
      { transport: 'tcp', hostname: address, port },
      { url: `http://${host}:${port}` },
    ]
  ) {
    try {
      const client = deno.createHttpClient({ proxy });
      return { init: { client } as RequestInit, close: () => client.close() };
    } catch { /* this runtime's client does not take that form: try the next */ }
  }
  return null;
};

function statusError(status: number): PreviewError {
  const message = `Download failed: ${status}`;
  if (status === 404 || status === 410) return new PreviewError('SOURCE_NOT_FOUND', message);
  if (status === 401 || status === 403) return new PreviewError('SOURCE_FORBIDDEN', message);
  if (status === 408 || status === 429 || status >= 500) {
    return new PreviewError('SOURCE_UNREACHABLE', message);
  }
  return new PreviewError('SOURCE_NOT_FOUND', message);
}

export async function fetchSource(
  rawUrl: string,
  limits: FetchLimits,
  deps: { fetch?: typeof fetch; resolve?: Resolver; pin?: Pinner } = {},
  beside?: Beside,
): Promise<FetchedSource> {
  const doFetch = deps.fetch ?? fetch;
  const resolve = deps.resolve ?? systemResolver;
  const pin = deps.pin ?? denoPinner;
  const clients: { close(): void }[] = [];
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new PreviewError(
      'SOURCE_NOT_FOUND',
      `Download failed: invalid URL ${JSON.stringify(rawUrl)}`,
    );
  }
  const signal = AbortSignal.timeout(limits.timeoutMs);
  const timeoutError = () =>
    new PreviewError('TIMEOUT', `Download timed out after ${limits.timeoutMs} ms`);
  try {
    let res: Response | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const address = await assertFetchable(url, limits, resolve);
      // plain bytes, please: the runtime's fetch inflates a compressed body by itself (Deno 2.1.4
      // does even when identity was asked, and drops Content-Encoding and Content-Length), so an
      // encoded answer is read as what it inflates to and held to the byte cap while it streams
      let init: RequestInit = {
        redirect: 'manual',
        signal,
        headers: { 'accept-encoding': 'identity' },
      };
      if (address && url.protocol === 'http:') {
        const pinned = pin(address, Number(url.port || 80));
        if (!pinned) {
          throw new PreviewError(
            'SOURCE_FORBIDDEN',
            `Download refused: plain http to ${url.hostname} cannot be pinned to its checked address on this runtime`,
          );
        }
        clients.push(pinned);
        init = { ...init, ...pinned.init };
      }
      res = await doFetch(url, init);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        url = new URL(location, url);
        continue;
      }
      break;
    }
    if (!res || (res.status >= 300 && res.status < 400)) {
      throw new PreviewError(
        'SOURCE_UNREACHABLE',
        `Download failed: more than ${MAX_REDIRECTS} redirects`,
      );
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw statusError(res.status);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > limits.maxBytes) {
      await res.body?.cancel();
      throw new PreviewError(
        'SOURCE_TOO_LARGE',
        `Source is larger than the ${limits.maxBytes}-byte limit (${declared} bytes)`,
      );
    }
    return {
      bytes: await readCapped(res.body!, declared, limits.maxBytes, beside),
      contentType: res.headers.get('content-type'),
    };
  } catch (err) {
    if (err instanceof PreviewError) throw err;
    if (signal.aborted) throw timeoutError();
    const message = err instanceof Error ? err.message : String(err);
    throw new PreviewError('SOURCE_UNREACHABLE', `Download failed: ${message}`, { cause: err });
  } finally {
    for (const c of clients) c.close();
  }
}

const tooLong = (declared: number) =>
  new PreviewError(
    'SOURCE_UNREACHABLE',
    `Download failed: body longer than its Content-Length (${declared})`,
  );
const truncated = (total: number, declared: number) =>
  new PreviewError(
    'SOURCE_UNREACHABLE',
    `Download failed: body truncated at ${total} of ${declared} bytes`,
  );

/** The buffers fetchSource filled: only these are released by releaseSource. */
const owned = new WeakSet<ArrayBuffer>();

/**
 * Frees a downloaded source's memory now (its buffer is detached: every view of it reads as
 * empty). The platform counts an ArrayBuffer against the isolate's 256 MB until the garbage
 * collector frees it, and a worker draining several jobs in one isolate carried each job's
 * source into the next (a 47 MB video, downloaded again for its clip, took an isolate to 267 MB).
 * Anything fetchSource did not allocate is left alone.
 */
export function releaseSource(bytes: Uint8Array | null | undefined): void {
  const buf = bytes?.buffer as
    | (ArrayBuffer & { transfer?: (n: number) => ArrayBuffer })
    | undefined;
  if (!buf || !owned.has(buf) || typeof buf.transfer !== 'function') return;
  owned.delete(buf);
  try {
    buf.transfer(0);
  } catch {
    // already detached
  }
}

/**
 * Marks bytes this job alone holds (a storage download's fresh copy) as releasable by
 * releaseSource, where the platform's measure applies (the runtime's Deno; never under Node, where
 * tests hand the same bytes to many calls).
 */
export function adoptSource(bytes: Uint8Array): Uint8Array {
  const buf = bytes.buffer as ArrayBuffer;
  const deno = (globalThis as { Deno?: { memoryUsage?: unknown } }).Deno;
  if (deno?.memoryUsage && bytes.byteOffset === 0 && bytes.byteLength === buf.byteLength) {
    owned.add(buf);
  }
  return bytes;
}

/**
 * The body into ONE buffer, never over `maxBytes`, counting the bytes as they arrive (after the
 * runtime's inflation of a compressed body: what is counted is what is held). With a
 * Content-Length (file hosts and KIE's CDN send one): a buffer of exactly that size, each chunk
 * copied in. Without one: a resizable buffer grown in place as chunks arrive. A list of chunks
 * joined at the end held the file twice (a 99 MB download peaked at 287 MB that way). A BYOB reader
 * straight into the buffer, used before, cost 5× the CPU on Deno 2.1.4 (99 MB: 0.95–1.39 s of the
 * isolate's thread against 0.19 s; each read transfers the whole buffer). `beside` is asked
 * before the buffer is allocated (a declared length) or grown (an unknown one).
 */
async function readCapped(
  body: ReadableStream<Uint8Array>,
  declared: number,
  maxBytes: number,
  beside?: Beside,
): Promise<Uint8Array> {
  const known = Number.isFinite(declared) && declared >= 0;
  if (known) await beside?.(declared);
  // deno-lint-ignore no-explicit-any
  const buf: any = known
    ? new ArrayBuffer(declared)
    : new (ArrayBuffer as any)(0, { maxByteLength: maxBytes });
  const reader = body.getReader();
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (total + value.length > maxBytes) {
      await reader.cancel();
      throw new PreviewError(
        'SOURCE_TOO_LARGE',
        `Source is larger than the ${maxBytes}-byte limit`,
      );
    }
    if (total + value.length > buf.byteLength) {
      if (known) {
        await reader.cancel();
        throw tooLong(declared);
      }
      await beside?.(total + value.length);
      buf.resize(total + value.length);
    }
    new Uint8Array(buf, total, value.length).set(value);
    total += value.length;
  }
  if (known && total < declared) throw truncated(total, declared);
  owned.add(buf);
  return new Uint8Array(buf, 0, total);
}
