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

describe('isPrivateAddress', () => {
  it('classifies private, loopback, link-local and embedded-IPv4 forms', () => {
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1',
      '::1', '::', 'fd00::1', 'fe80::1', 'ff02::1', '::ffff:a9fe:a9fe', '::ffff:169.254.169.254', '::ffff:7f00:1', '::a00:1',
      '::ffff:0:a9fe:a9fe', '2002:a9fe:a9fe::1', '64:ff9b::a9fe:a9fe', 'not-an-address']) {
      expect(isPrivateAddress(ip), ip).toBe(true);
    }
    for (const ip of ['8.8.8.8', '1.1.1.1', '::ffff:808:808', '2002:808:808::1', '2606:4700:4700::1111', '2a00:1450:4001:82a::200e']) {
      expect(isPrivateAddress(ip), ip).toBe(false);
    }
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
