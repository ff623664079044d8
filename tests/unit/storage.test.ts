// The service-key storage client's guards, on storage-js itself (the client supabase-js wraps)
// with a recording fetch:
// which keys it accepts, which URLs of ours name an object, and that a request whose final
// URL leaves /storage/v1/object/…/{bucket}/ is never sent.
import { StorageClient } from '@supabase/storage-js';
import { describe, expect, it } from 'vitest';
import { storageObjectFromUrl } from '../../shared/preview/paths.ts';
import { createObjectStore, isSafeObjectKey, objectRoutesOnly, SIGN_URLS_PER_REQUEST, storageErrorStatus } from '../../shared/storage.ts';

const BASE = 'https://abc.supabase.co';

function recordingStore() {
  const sent: string[] = [];
  const inner = (async (input: RequestInfo | URL, init?: RequestInit) => {
    sent.push(new URL(input instanceof Request ? input.url : String(input)).pathname);
    return (init?.method ?? 'GET') === 'GET'
      ? new Response(new Uint8Array([1, 2, 3]), { status: 200, headers: { 'content-type': 'application/octet-stream' } })
      : Response.json({ Key: 'generations/x', Id: 'x' });
  }) as typeof fetch;
  const client = new StorageClient(`${BASE}/storage/v1`, { apikey: 'service-key', Authorization: 'Bearer service-key' }, objectRoutesOnly(BASE, 'generations', inner));
  return { sent, client, store: createObjectStore('generations', client) };
}

describe('isSafeObjectKey', () => {
  it('takes the keys this system writes and the storage server\'s alphabet', () => {
    for (const k of ['u1/previews/id_preview.webp', 'u1/originals/id.jpg', 'u1/image/id_1700000000000.png', "a b/&$@=;:+,!*'().x"]) {
      expect(isSafeObjectKey(k), k).toBe(true);
    }
  });

  it('refuses dot segments, empty segments, separators in disguise, NUL, % and non-ASCII', () => {
    for (const k of ['', 'u1/../u2/x', '../x', 'u1/./x', 'u1//x', '/u1/x', 'u1/x/', 'u1\\..\\u2', 'u1/x\u0000.png', 'u1%2F..%2Fu2', 'u1/€.png', 'u1/x?y=1', 'u1/x#y', 'u1/x\n']) {
      expect(isSafeObjectKey(k), JSON.stringify(k)).toBe(false);
    }
  });
});

describe('storageObjectFromUrl', () => {
  it('names the object of a canonical URL of ours, in every read mode', () => {
    for (const mode of ['public/', 'authenticated/', 'sign/', '']) {
      expect(storageObjectFromUrl(`${BASE}/storage/v1/object/${mode}generations/u1/a%20b.jpg?token=x`, BASE))
        .toEqual({ ours: true, object: { bucket: 'generations', path: 'u1/a b.jpg' } });
    }
  });

  it('another origin is not ours (fetched as a public URL, without keys)', () => {
    expect(storageObjectFromUrl('https://other.supabase.co/storage/v1/object/public/generations/u1/a.jpg', BASE)).toEqual({ ours: false });
    expect(storageObjectFromUrl('not a url', BASE)).toEqual({ ours: false });
  });
});

describe('objectRoutesOnly: the service key reaches objects of our bucket only', () => {
  it('sends downloads and uploads inside the bucket', async () => {
    const { sent, store } = recordingStore();
    await store.download('u1/originals/x.jpg');
    await store.upload('u1/previews/x.webp', new Uint8Array([1]), 'image/webp');
    expect(sent).toEqual(['/storage/v1/object/generations/u1/originals/x.jpg', '/storage/v1/object/generations/u1/previews/x.webp']);
  });

  it('never sends a request whose final URL leaves the bucket, whatever the key says', async () => {
    const { sent, client, store } = recordingStore();
    // the object store refuses unsafe keys itself…
    await expect(store.download('u1/../../../../rest/v1/x')).rejects.toMatchObject({ code: 'SOURCE_FORBIDDEN' });
    // …and the client's fetch refuses what supabase-js would send for them anyway
    for (const key of ['u1/../../../../rest/v1/x', 'u1/../../other-bucket/x', '../../../auth/v1/admin/users']) {
      const { error } = await client.from('generations').download(key);
      expect(error, key).not.toBeNull();
    }
    const { error } = await client.from('other-bucket').download('u1/x.jpg');
    expect(error).not.toBeNull();
    expect(sent).toEqual([]);
  });
});

describe('storageErrorStatus', () => {
  it('reads the real code from the body (the real server answers HTTP 400 with statusCode "404")', () => {
    expect(storageErrorStatus({ status: 400, statusCode: '404' })).toBe(404);
    expect(storageErrorStatus({ status: 404 })).toBe(404);
    expect(storageErrorStatus({ originalError: { status: 503 } })).toBe(503);
    expect(storageErrorStatus({ statusCode: 'not_found', status: 400 })).toBe(400);
    expect(storageErrorStatus(null)).toBeNull();
  });
});

describe('signMany: createSignedUrls calls of at most 1000 paths', () => {
  /** A storage server's batch-sign route as the real one answers it: a list over 1000 paths
   * (or empty) is refused with 400; else one URL per path. Records each call's paths; call
   * number `failCall` (1-based) answers 503. */
  function signingStore(failCall = 0) {
    const calls: string[][] = [];
    const inner = (async (input: RequestInfo | URL, init?: RequestInit) => {
      expect(new URL(String(input)).pathname).toBe('/storage/v1/object/sign/generations');
      const { paths, expiresIn } = JSON.parse(String(init?.body));
      calls.push(paths);
      if (calls.length === failCall) {
        return Response.json({ statusCode: '503', error: 'ServiceUnavailable', message: 'down' }, { status: 503 });
      }
      if (paths.length > 1000 || paths.length < 1) {
        return Response.json({ statusCode: '400', error: 'Error', code: 'InvalidRequest', message: 'body/paths must NOT have more than 1000 items' }, { status: 400 });
      }
      return Response.json(paths.map((p: string) => ({ error: null, path: p, signedURL: `/object/sign/generations/${p}?token=t${expiresIn}` })));
    }) as typeof fetch;
    const client = new StorageClient(`${BASE}/storage/v1`, { apikey: 'k', Authorization: 'Bearer k' }, objectRoutesOnly(BASE, 'generations', inner));
    return { calls, store: createObjectStore('generations', client) };
  }
  const paths = (n: number) => Array.from({ length: n }, (_, i) => `u1/previews/${i}_preview.webp`);

  it('the cap is the server\'s 1000', () => {
    expect(SIGN_URLS_PER_REQUEST).toBe(1000);
  });

  it('2500 paths go out as 1000 + 1000 + 500, in order, and every path gets its URL', async () => {
    const { calls, store } = signingStore();
    const all = paths(2500);
    const signed = await store.signMany(all, 60);
    expect(calls.map((c) => c.length)).toEqual([1000, 1000, 500]);
    expect(calls.flat()).toEqual(all);
    expect(signed.size).toBe(2500);
    expect(signed.get('u1/previews/2499_preview.webp')).toBe(`${BASE}/storage/v1/object/sign/generations/u1/previews/2499_preview.webp?token=t60`);
  });

  it('1000 paths are one call; none (or only unsafe ones) are no call', async () => {
    const { calls, store } = signingStore();
    expect((await store.signMany(paths(1000), 60)).size).toBe(1000);
    expect(calls.map((c) => c.length)).toEqual([1000]);
    expect((await store.signMany([], 60)).size).toBe(0);
    expect((await store.signMany(['u1/../u2/x.webp'], 60)).size).toBe(0);
    expect(calls.length).toBe(1);
  });

  it('a chunk the server refuses fails the whole call, after the chunks before it', async () => {
    const { calls, store } = signingStore(2);
    await expect(store.signMany(paths(2500), 60)).rejects.toThrow(/Signing URLs failed/);
    expect(calls.map((c) => c.length)).toEqual([1000, 1000]);
  });
});
