// The storage stand-in answers as the real storage server does (measured against the server
// built from its public repository, through supabase-js 2.109): every case here is a
// behaviour the real one has and the stand-in once lacked, so code that is green here is
// green on a project.
import { createHash, randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { StorageClient } from '@supabase/storage-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createObjectStore } from '../../shared/storage.ts';
import { adminClient, API_URL, createUser, SERVICE_KEY, sql, type TestUser, userClient } from '../helpers/stack.ts';

const bucket = `conf-${randomUUID().slice(0, 8)}`;
const strict = `${bucket}-strict`;
let user: TestUser;

beforeAll(async () => {
  user = await createUser('conformance');
  const admin = adminClient().storage;
  expect((await admin.createBucket(bucket, { public: false })).error).toBeNull();
  // a string size limit, as the dashboard and supabase-js accept it
  expect((await admin.createBucket(strict, { public: false, fileSizeLimit: '1KB', allowedMimeTypes: ['image/png', 'image/webp'] })).error).toBeNull();
  // users upload into their own folder; no policy on storage.buckets at all
  await sql.unsafe(`create policy "conf: users upload own folder ${bucket}" on storage.objects for insert to authenticated
    with check (bucket_id = '${bucket}' and (storage.foldername(name))[1] = (select auth.uid())::text)`);
});

afterAll(async () => {
  await sql.unsafe(`drop policy if exists "conf: users upload own folder ${bucket}" on storage.objects`);
});

const files = (b = bucket) => adminClient().storage.from(b);
const upload = (path: string, body: Uint8Array | Blob = new Uint8Array([1, 2, 3]), contentType = 'image/png', b = bucket) =>
  files(b).upload(path, body, { contentType });

describe('errors: HTTP 400 with the real code in the body', () => {
  it('404, 409, 403, 413, 415 all arrive as status 400 with statusCode in the body', async () => {
    const path = `${randomUUID()}/a.png`;
    const cases: [string, Promise<{ error: unknown }>, string][] = [
      ['missing object', files().download(`${randomUUID()}/missing.png`), '404'],
      ['duplicate', upload(path).then(() => upload(path)), '409'],
      ['RLS refuses', userClient(user.accessToken).storage.from(bucket).upload(`${randomUUID()}/not-mine.png`, new Uint8Array([1]), { contentType: 'image/png' }), '403'],
      ['over the bucket\'s 1KB', upload(`${randomUUID()}/big.png`, new Uint8Array(2048), 'image/png', strict), '413'],
      ['mime type not allowed', upload(`${randomUUID()}/a.gif`, new Uint8Array([1]), 'image/gif', strict), '415'],
    ];
    for (const [what, p, code] of cases) {
      const { error } = await p as { error: { status?: number; statusCode?: string } | null };
      expect(error, what).not.toBeNull();
      expect([error?.status, error?.statusCode], what).toEqual([400, code]);
    }
  });

  it('createSignedUrl with expiresIn 0 and remove([]) are refused with 400', async () => {
    const path = `${randomUUID()}/a.png`;
    await upload(path);
    expect((await files().createSignedUrl(path, 0)).error).toMatchObject({ status: 400 });
    expect((await files().remove([])).error).toMatchObject({ status: 400 });
  });
});

describe('uploads', () => {
  it('a user uploads into their own folder with no policy on the bucket row (the server reads it with full rights)', async () => {
    const { error } = await userClient(user.accessToken).storage.from(bucket).upload(`${user.id}/mine.png`, new Uint8Array([7]), { contentType: 'image/png' });
    expect(error).toBeNull();
  });

  it('a Blob or File (what a browser file input gives) uploads as multipart', async () => {
    const blobPath = `${randomUUID()}/blob.png`;
    expect((await files().upload(blobPath, new Blob([new Uint8Array([1, 2, 3, 4])], { type: 'image/png' }))).error).toBeNull();
    const filePath = `${randomUUID()}/file.png`;
    expect((await files().upload(filePath, new File([new Uint8Array([5, 6])], 'file.png', { type: 'image/png' }))).error).toBeNull();
    expect(new Uint8Array(await (await files().download(blobPath)).data!.arrayBuffer())).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(new Uint8Array(await (await files().download(filePath)).data!.arrayBuffer())).toEqual(new Uint8Array([5, 6]));
  });

  it('a non-ASCII key is refused with 400 Invalid key', async () => {
    const { error } = await upload(`${randomUUID()}/café.png`);
    expect(error).toMatchObject({ status: 400, statusCode: '400' });
    expect((error as { message: string }).message).toMatch(/Invalid key/);
  });
});

describe('reading', () => {
  it('signed URLs work for names with spaces and &', async () => {
    for (const name of ['with space.png', 'a&b.png', 'both & more.png']) {
      const path = `${randomUUID()}/${name}`;
      expect((await upload(path, new Uint8Array([9, 9]))).error, name).toBeNull();
      const signed = await files().createSignedUrl(path, 60);
      expect(signed.error, name).toBeNull();
      const res = await fetch(signed.data!.signedUrl);
      expect(res.status, name).toBe(200);
      expect(new Uint8Array(await res.arrayBuffer()), name).toEqual(new Uint8Array([9, 9]));
      const batch = await files().createSignedUrls([path], 60);
      expect((await fetch(batch.data![0].signedUrl!)).status, name).toBe(200);
    }
  });

  it('createSignedUrls takes at most 1000 paths (the server\'s body schema): 1001 are refused with 400 and nothing signed; the object store chunks', async () => {
    const folder = randomUUID();
    const path = `${folder}/last.png`;
    await upload(path, new Uint8Array([4, 2]));
    const many = [...Array.from({ length: 1000 }, (_, i) => `${folder}/missing-${i}.png`), path];
    const refused = await files().createSignedUrls(many, 60);
    expect(refused.data).toBeNull();
    expect(refused.error).toMatchObject({ status: 400, statusCode: '400', message: 'body/paths must NOT have more than 1000 items' });
    const raw = await fetch(`${API_URL}/storage/v1/object/sign/${bucket}`, {
      method: 'POST', headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ paths: many, expiresIn: 60 }),
    });
    expect([raw.status, await raw.json()]).toEqual([400, { statusCode: '400', error: 'Error', code: 'InvalidRequest', message: 'body/paths must NOT have more than 1000 items' }]);
    // exactly 1000 are taken (a missing object is an error in its item, not in the call)
    const atCap = await files().createSignedUrls(many.slice(1), 60);
    expect(atCap.error).toBeNull();
    expect(atCap.data!.length).toBe(1000);
    expect(atCap.data!.filter((d) => d.signedUrl).map((d) => d.path)).toEqual([path]);
    // the library's signer splits the 1001 into 1000 + 1, so the 1001st path is signed
    const client = new StorageClient(`${API_URL}/storage/v1`, { apikey: SERVICE_KEY, Authorization: `Bearer ${SERVICE_KEY}` });
    const signed = await createObjectStore(bucket, client).signMany(many, 60);
    expect([...signed.keys()]).toEqual([path]);
    expect(new Uint8Array(await (await fetch(signed.get(path)!)).arrayBuffer())).toEqual(new Uint8Array([4, 2]));
  });

  it('a signed URL with the download option sets Content-Disposition', async () => {
    const path = `${randomUUID()}/pic.png`;
    await upload(path);
    const signed = await files().createSignedUrl(path, 60, { download: 'holiday.png' });
    const res = await fetch(signed.data!.signedUrl);
    expect(res.headers.get('content-disposition')).toMatch(/^attachment;.*filename="?holiday\.png"?/);
  });

  it('the ETag is the content\'s MD5; an unsatisfiable range is 416 with a JSON body', async () => {
    const path = `${randomUUID()}/e.png`;
    const bytes = new Uint8Array([1, 2, 3, 4, 5]);
    await upload(path, bytes);
    const url = `${API_URL}/storage/v1/object/${bucket}/${path}`;
    const res = await fetch(url, { headers: { authorization: `Bearer ${SERVICE_KEY}` } });
    expect(res.headers.get('etag')).toBe(`"${createHash('md5').update(bytes).digest('hex')}"`);
    const out = await fetch(url, { headers: { authorization: `Bearer ${SERVICE_KEY}`, range: 'bytes=100-200' } });
    expect(out.status).toBe(416);
    expect(await out.json()).toMatchObject({ statusCode: '416' });
  });
});

describe('listing and removing', () => {
  it('list honours sortBy and matches search as a case-insensitive prefix; entries carry the real keys', async () => {
    const folder = randomUUID();
    for (const name of ['b-two.png', 'a-one.png', 'c-three.png', 'xa-other.png']) {
      await upload(`${folder}/${name}`);
      await new Promise((r) => setTimeout(r, 15));
    }
    const byNameDesc = await files().list(folder, { sortBy: { column: 'name', order: 'desc' } });
    expect(byNameDesc.data!.map((e) => e.name)).toEqual(['xa-other.png', 'c-three.png', 'b-two.png', 'a-one.png']);
    const byCreated = await files().list(folder, { sortBy: { column: 'created_at', order: 'asc' } });
    expect(byCreated.data!.map((e) => e.name)).toEqual(['b-two.png', 'a-one.png', 'c-three.png', 'xa-other.png']);
    const search = await files().list(folder, { search: 'A-' });
    expect(search.data!.map((e) => e.name)).toEqual(['a-one.png']);
    expect(Object.keys(byNameDesc.data![0]).sort()).toEqual(['created_at', 'id', 'last_accessed_at', 'metadata', 'name', 'updated_at']);
  });

  it('remove answers the removed rows with the real keys', async () => {
    const path = `${randomUUID()}/r.png`;
    await upload(path);
    const { data, error } = await files().remove([path]);
    expect(error).toBeNull();
    expect(Object.keys(data![0]).sort()).toEqual(
      ['bucket_id', 'created_at', 'id', 'last_accessed_at', 'metadata', 'name', 'owner', 'owner_id', 'updated_at', 'user_metadata', 'version'],
    );
  });

  it('a direct SQL delete of storage.objects is refused: only the Storage API deletes', async () => {
    const path = `${randomUUID()}/keep.png`;
    await upload(path);
    const err = await sql`delete from storage.objects where bucket_id = ${bucket} and name = ${path}`.then(() => null, (e) => e);
    expect(err?.message).toMatch(/Direct deletion from storage tables is not allowed/);
    expect((await sql`select 1 from storage.objects where bucket_id = ${bucket} and name = ${path}`).length).toBe(1);
  });
});

/** One request exactly as written on the wire: node:http sends the path as given, where fetch
 * (WHATWG URL) resolves `.`/`..` segments, even percent-encoded ones, before sending. */
function rawRequest(
  method: string,
  path: string,
  body?: Uint8Array,
): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(API_URL);
  return new Promise((resolve, reject) => {
    const req = request({
      host: hostname, port, method, path,
      headers: { authorization: `Bearer ${SERVICE_KEY}`, 'content-type': 'image/png', ...(body ? { 'content-length': String(body.length) } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (d) => text += d);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('keys with a . or .. segment', () => {
  it('are refused with 400 InvalidKey on every route, raw on the wire: another object is never read, written or signed', async () => {
    const owner = randomUUID();
    const secret = new Uint8Array([0x53, 0x45, 0x43, 0x52, 0x45, 0x54]); // "SECRET"
    expect((await upload(`${owner}/secret.png`, secret)).error).toBeNull();
    const o = `/storage/v1/object`;
    const keys = [`${owner}/x/../secret.png`, `${owner}/./secret.png`, `${owner}/x/%2E%2E/secret.png`, `${owner}/x/%2e/../secret.png`];
    for (const key of keys) {
      for (const [method, path] of [
        ['GET', `${o}/${bucket}/${key}`],
        ['HEAD', `${o}/${bucket}/${key}`],
        ['GET', `${o}/authenticated/${bucket}/${key}`],
        ['GET', `${o}/info/${bucket}/${key}`],
        ['POST', `${o}/sign/${bucket}/${key}`],
      ] as const) {
        const res = await rawRequest(method, path, method === 'POST' ? new TextEncoder().encode('{"expiresIn":60}') : undefined);
        expect(res.status, `${method} ${path}`).toBe(400);
        if (method === 'HEAD') continue;
        expect(res.body, `${method} ${path}`).not.toContain('SECRET');
        expect(JSON.parse(res.body), `${method} ${path}`).toEqual({
          statusCode: '400',
          code: 'InvalidKey',
          error: 'InvalidKey',
          message: expect.stringMatching(/^Invalid key: .* contains dot path segment$/),
        });
      }
      // an upload to such a key writes nothing, neither there nor where the segments lead
      const put = await rawRequest('POST', `${o}/${bucket}/${key.replace('secret', 'other')}`, new Uint8Array([1]));
      expect([put.status, JSON.parse(put.body).error], key).toEqual([400, 'InvalidKey']);
    }
    const names = (await sql`select name from storage.objects where bucket_id = ${bucket} and name like ${`${owner}%`}`).map((r) => r.name);
    expect(names).toEqual([`${owner}/secret.png`]);
    // the same raw request without dot segments reads the object: the refusal above is the key's
    const plain = await rawRequest('GET', `${o}/${bucket}/${owner}/secret.png`);
    expect([plain.status, plain.body]).toEqual([200, 'SECRET']);
  });
});
