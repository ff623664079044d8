// The SSRF guard of shared/preview/fetch.ts, without a network: every blocked address is
// refused before fetch is ever called, including IPv4 addresses hidden in IPv6 forms (found
// by the fault matrix: `http://[::ffff:169.254.169.254]/` used to get through, because the
// URL parser rewrites it to `[::ffff:a9fe:a9fe]`), and redirects are checked hop by hop.
import { describe, expect, it } from 'vitest';
import { fetchSource, isPrivateAddress } from '../../shared/preview/fetch.ts';
import { PreviewError } from '../../shared/errors.ts';

const limits = { maxBytes: 1024, timeoutMs: 1000, allowedPrivateHosts: ['127.0.0.1:54340'] };

function recordingFetch(responses: Record<string, Response> = {}) {
  const calls: string[] = [];
  const f = (async (input: URL | string) => {
    const url = String(input);
    calls.push(url);
    return responses[url] ?? new Response('ok', { status: 200 });
  }) as typeof fetch;
  return { calls, fetch: f };
}

async function refusal(url: string, deps: Parameters<typeof fetchSource>[2]) {
  try {
    await fetchSource(url, limits, deps);
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(PreviewError);
    return { code: (err as PreviewError).code, message: (err as PreviewError).message };
  }
}

/**
 * Every block of IANA's IPv4 and IPv6 Special-Purpose Address Registries (as of 2025, incl.
 * RFC 9637's 3fff::/20 and RFC 9780's dummy prefix), plus the deprecated forms a host could
 * still route: first and last address of each. The guard refuses them all, the "globally
 * reachable" ones too (AS112, AMT, NAT64…): no image host lives there.
 */
const IANA_SPECIAL: [block: string, first: string, last: string][] = [
  ['0.0.0.0/8', '0.0.0.0', '0.255.255.255'],
  ['10.0.0.0/8', '10.0.0.0', '10.255.255.255'],
  ['100.64.0.0/10', '100.64.0.0', '100.127.255.255'],
  ['127.0.0.0/8', '127.0.0.0', '127.255.255.255'],
  ['169.254.0.0/16', '169.254.0.0', '169.254.255.255'],
  ['172.16.0.0/12', '172.16.0.0', '172.31.255.255'],
  ['192.0.0.0/24 (incl. /29 DS-Lite, .8, .9, .10, .170, .171)', '192.0.0.0', '192.0.0.255'],
  ['192.0.2.0/24', '192.0.2.0', '192.0.2.255'],
  ['192.31.196.0/24', '192.31.196.0', '192.31.196.255'],
  ['192.52.193.0/24', '192.52.193.0', '192.52.193.255'],
  ['192.88.99.0/24', '192.88.99.0', '192.88.99.255'],
  ['192.168.0.0/16', '192.168.0.0', '192.168.255.255'],
  ['192.175.48.0/24', '192.175.48.0', '192.175.48.255'],
  ['198.18.0.0/15', '198.18.0.0', '198.19.255.255'],
  ['198.51.100.0/24', '198.51.100.0', '198.51.100.255'],
  ['203.0.113.0/24', '203.0.113.0', '203.0.113.255'],
  ['224.0.0.0/4 multicast', '224.0.0.0', '239.255.255.255'],
  ['240.0.0.0/4', '240.0.0.0', '255.255.255.254'],
  ['255.255.255.255/32', '255.255.255.255', '255.255.255.255'],
  ['::1/128', '::1', '::1'],
  ['::/128', '::', '::'],
  ['::ffff:0:0/96 (mapped; judged as its IPv4)', '::ffff:127.0.0.1', '::ffff:a9fe:a9fe'],
  ['64:ff9b::/96', '64:ff9b::', '64:ff9b::ffff:ffff'],
  ['64:ff9b:1::/48', '64:ff9b:1::', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff'],
  ['100::/64', '100::', '100::ffff:ffff:ffff:ffff'],
  ['100:0:0:1::/64', '100:0:0:1::', '100:0:0:1:ffff:ffff:ffff:ffff'],
  ['2001::/23', '2001::', '2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2001::/32 Teredo (one that encodes 127.0.0.1)', '2001:0:4136:e378:8000:63bf:80ff:fffe', '2001:0:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2001:1::1/128, ::2, ::3', '2001:1::1', '2001:1::3'],
  ['2001:2::/48', '2001:2::', '2001:2:0:ffff:ffff:ffff:ffff:ffff'],
  ['2001:3::/32', '2001:3::', '2001:3:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2001:4:112::/48', '2001:4:112::', '2001:4:112:ffff:ffff:ffff:ffff:ffff'],
  ['2001:10::/28', '2001:10::', '2001:1f:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2001:20::/28', '2001:20::', '2001:2f:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2001:30::/28', '2001:30::', '2001:3f:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2001:db8::/32', '2001:db8::', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2002::/16 6to4', '2002:7f00:1::', '2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['2620:4f:8000::/48', '2620:4f:8000::', '2620:4f:8000:ffff:ffff:ffff:ffff:ffff'],
  ['3fff::/20', '3fff::', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['5f00::/16', '5f00::', '5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['fc00::/7', 'fc00::', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['fe80::/10', 'fe80::', 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  // not in the registry, but routable by some hosts: deprecated site-local, IPv4-compatible, SIIT, multicast
  ['fec0::/10', 'fec0::', 'feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['::/96 IPv4-compatible', '::7f00:1', '::a9fe:a9fe'],
  ['::ffff:0:0:0/96 SIIT', '::ffff:0:7f00:1', '::ffff:0:a9fe:a9fe'],
  ['ff00::/8', 'ff00::', 'ff02::1'],
];

describe('isPrivateAddress', () => {
  for (const [block, first, last] of IANA_SPECIAL) {
    it(`refuses ${block}`, () => {
      expect(isPrivateAddress(first), first).toBe(true);
      expect(isPrivateAddress(last), last).toBe(true);
    });
  }

  it('refuses what does not parse, and lets public unicast through', () => {
    for (const ip of ['not-an-address', '', '1.2.3', '::g', 'fe80::1%eth0']) expect(isPrivateAddress(ip), ip).toBe(true);
    for (const ip of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '::ffff:808:808', '[2606:4700:4700::1111]', '2a00:1450:4001:82a::200e', '2001:4860:4860::8888']) {
      expect(isPrivateAddress(ip), ip).toBe(false);
    }
  });

  it('through fetchSource: a literal Teredo address that encodes 127.0.0.1 is refused before connecting', async () => {
    const rec = recordingFetch();
    const r = await refusal('http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x.jpg', { fetch: rec.fetch });
    expect(r?.code).toBe('SOURCE_FORBIDDEN');
    expect(rec.calls).toEqual([]);
  });
});

describe('fetchSource refuses before connecting', () => {
  for (const url of [
    'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/x.jpg', 'http://127.0.0.1:5432/', 'http://[::1]/',
    'http://[::ffff:169.254.169.254]/x.jpg', 'http://[::ffff:10.0.0.1]/x.jpg', 'http://2852039166/x.jpg', 'http://0x7f.1/x.jpg',
  ]) {
    it(url, async () => {
      const rec = recordingFetch();
      const r = await refusal(url, { fetch: rec.fetch, resolve: async () => ['93.184.216.34'] });
      expect(r?.code).toBe('SOURCE_FORBIDDEN');
      expect(r?.message).toMatch(/^Download refused: .* resolves to a private address/);
      expect(rec.calls).toEqual([]);
    });
  }

  it('a public name that resolves to a private address is refused', async () => {
    const rec = recordingFetch();
    const r = await refusal('https://metadata.example.com/x.jpg', { fetch: rec.fetch, resolve: async () => ['93.184.216.34', '169.254.169.254'] });
    expect(r).toEqual({ code: 'SOURCE_FORBIDDEN', message: 'Download refused: metadata.example.com resolves to a private address (169.254.169.254)' });
    expect(rec.calls).toEqual([]);
  });

  it('file:, ftp:, data: and gopher: URLs are refused', async () => {
    const rec = recordingFetch();
    for (const url of ['file:///etc/passwd', 'ftp://example.com/x', 'data:image/png;base64,AAAA', 'gopher://example.com/']) {
      expect((await refusal(url, { fetch: rec.fetch }))?.code).toBe('SOURCE_FORBIDDEN');
    }
    expect(rec.calls).toEqual([]);
  });

  it('a redirect from a public host to a private one is refused at the second hop', async () => {
    const rec = recordingFetch({
      'https://cdn.example.com/a.jpg': new Response(null, { status: 302, headers: { location: 'http://169.254.169.254/latest/' } }),
    });
    const r = await refusal('https://cdn.example.com/a.jpg', { fetch: rec.fetch, resolve: async () => ['93.184.216.34'] });
    expect(r?.code).toBe('SOURCE_FORBIDDEN');
    expect(rec.calls).toEqual(['https://cdn.example.com/a.jpg']);
  });

  it('only the allowed host:port is let through on loopback, not another port', async () => {
    const rec = recordingFetch();
    expect(await refusal('http://127.0.0.1:54340/f.jpg', { fetch: rec.fetch })).toBeNull();
    expect((await refusal('http://127.0.0.1:54341/f.jpg', { fetch: rec.fetch }))?.code).toBe('SOURCE_FORBIDDEN');
    expect(rec.calls).toEqual(['http://127.0.0.1:54340/f.jpg']);
  });
});
