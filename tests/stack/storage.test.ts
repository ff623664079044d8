// The Storage stand-in, through the real supabase-js client over HTTP: what a function or
// the library page does with storage must work unchanged, and the RLS policies decide access.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PREVIEW_BUCKET } from '../../shared/config.ts';
import { adminClient, API_URL, createUser, SERVICE_KEY, sql, userClient } from '../helpers/stack.ts';

const bucket = 'generations';

describe('the bucket', () => {
  it('is named once on each side, and the sides agree: the functions\' constant and the policies\' preview_bucket()', async () => {
    const [{ bucket }] = await sql<{ bucket: string }[]>`select public.preview_bucket() as bucket`;
    expect(bucket).toBe(PREVIEW_BUCKET);
    const [{ exists }] = await sql<{ exists: boolean }[]>`select exists (select 1 from storage.buckets where id = ${PREVIEW_BUCKET}) as exists`;
    expect(exists).toBe(true);
  });
});

describe('storage through supabase-js', () => {
  it('uploads, upserts, signs, serves bytes and ranges, batch-signs and removes', async () => {
    const admin = adminClient();
    const owner = randomUUID();
    const path = `${owner}/previews/${randomUUID()}_preview.webp`;
    const first = new TextEncoder().encode('first version of the object');
    const second = new Uint8Array(1000).map((_, i) => i % 251);

    const up = await admin.storage.from(bucket).upload(path, first, { contentType: 'image/webp' });
    expect(up.error).toBeNull();
    const dup = await admin.storage.from(bucket).upload(path, first, { contentType: 'image/webp' });
    expect(dup.error?.message).toMatch(/already exists/);
    const upsert = await admin.storage.from(bucket).upload(path, second, { contentType: 'image/webp', upsert: true });
    expect(upsert.error).toBeNull();

    const [row] = await sql`select metadata from storage.objects where bucket_id = ${bucket} and name = ${path}`;
    expect(row.metadata.size).toBe(1000);
    expect(row.metadata.mimetype).toBe('image/webp');

    const signed = await admin.storage.from(bucket).createSignedUrl(path, 60);
    expect(signed.error).toBeNull();
    const res = await fetch(signed.data!.signedUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/webp');
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(second);

    const ranged = await fetch(signed.data!.signedUrl, { headers: { range: 'bytes=10-19' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe('bytes 10-19/1000');
    expect(new Uint8Array(await ranged.arrayBuffer())).toEqual(second.slice(10, 20));

    const missing = `${owner}/previews/does-not-exist.webp`;
    const batch = await admin.storage.from(bucket).createSignedUrls([path, missing], 60);
    expect(batch.error).toBeNull();
    expect(batch.data!.find((d) => d.path === path)!.signedUrl).toMatch(/token=/);
    expect(batch.data!.find((d) => d.path === missing)!.signedUrl).toBeNull();

    const info = await admin.storage.from(bucket).info(path);
    expect(info.data?.size).toBe(1000);
    const dl = await admin.storage.from(bucket).download(path);
    expect(new Uint8Array(await dl.data!.arrayBuffer())).toEqual(second);

    const removed = await admin.storage.from(bucket).remove([path]);
    expect(removed.error).toBeNull();
    expect(removed.data).toHaveLength(1);
    expect((await sql`select 1 from storage.objects where name = ${path}`).length).toBe(0);
    const gone = await fetch(signed.data!.signedUrl);
    expect([gone.status, (await gone.json()).statusCode]).toEqual([400, '404']); // as the real server answers
  });

  it('lets a user read only objects under their own folder, and write none', async () => {
    const alice = await createUser('alice');
    const bob = await createUser('bob');
    const admin = adminClient();
    const alicePath = `${alice.id}/previews/${randomUUID()}_preview.webp`;
    const bobPath = `${bob.id}/previews/${randomUUID()}_preview.webp`;
    for (const p of [alicePath, bobPath]) {
      expect((await admin.storage.from(bucket).upload(p, new Uint8Array([1, 2, 3]), { contentType: 'image/webp' })).error).toBeNull();
    }
    const asAlice = userClient(alice.accessToken).storage.from(bucket);
    const own = await asAlice.download(alicePath);
    expect(own.error).toBeNull();
    expect(new Uint8Array(await own.data!.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));
    const other = await asAlice.download(bobPath);
    expect(other.error).not.toBeNull();
    const otherSigned = await asAlice.createSignedUrl(bobPath, 60);
    expect(otherSigned.data).toBeNull();
    const write = await asAlice.upload(`${alice.id}/previews/forged.webp`, new Uint8Array([9]), { contentType: 'image/webp' });
    expect(write.error).not.toBeNull();
    expect((await sql`select 1 from storage.objects where name = ${`${alice.id}/previews/forged.webp`}`).length).toBe(0);
  });

  it('refuses a forged or expired token', async () => {
    const admin = adminClient();
    const path = `${randomUUID()}/previews/x.webp`;
    await admin.storage.from(bucket).upload(path, new Uint8Array([7]), { contentType: 'image/webp' });
    const forged = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl';
    const res = await fetch(`${API_URL}/storage/v1/object/${bucket}/${path}`, { headers: { authorization: `Bearer ${forged}` } });
    expect(res.status).toBeGreaterThanOrEqual(400);
    const signed = await admin.storage.from(bucket).createSignedUrl(path, 1);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await fetch(signed.data!.signedUrl)).status).toBe(400);
  });

  it('refuses keys the storage server refuses (NUL, non-ASCII, backslash, %, dot segments) with 400 InvalidKey, never a 500', async () => {
    const owner = randomUUID();
    // raw, as sent on the wire (fetch itself resolves a literal `..`, so those come encoded)
    for (const key of [`${owner}/x%00.webp`, `${owner}/%E2%82%AC.webp`, `${owner}%5C..%5Cx.webp`, `${owner}/a%25b.webp`, `${owner}%2F..%2Fx.webp`, `${owner}/x%2F.%2Fy.webp`]) {
      for (const [method, body] of [['POST', new Uint8Array([1])], ['GET', undefined]] as const) {
        const res = await fetch(`${API_URL}/storage/v1/object/${bucket}/${key}`, {
          method, body, headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'image/webp' },
        });
        expect(res.status, `${method} ${key}`).toBe(400);
        expect((await res.json()).error, `${method} ${key}`).toBe('InvalidKey');
      }
    }
    expect((await sql`select 1 from storage.objects where name like ${`${owner}%`}`).length).toBe(0);
  });
});
