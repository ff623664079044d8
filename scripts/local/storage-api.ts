/**
 * The Storage REST routes that @supabase/supabase-js uses, for the local stack: bytes on disk
 * under `<dir>/<bucket>/<name>`, one row per object in `storage.objects`. Who may read or
 * write is decided by the storage RLS policies in Postgres: every query runs under the
 * caller's role (`anon`, `authenticated` with their claims, or `service_role`), the way
 * Supabase's storage server does it, never by rules written here.
 */
import type postgres from 'postgres';
import { type Claims, signJwt, verifyJwt } from './keys.ts';

type Sql = postgres.Sql;
type Tx = postgres.TransactionSql;

export type StorageFaults = { failUploads: { pattern: string; remaining: number }[] };

export type StorageOptions = {
  sql: Sql;
  dir: string;
  log: (line: string) => void;
  faults: StorageFaults;
};

class StorageHttpError extends Error {
  constructor(readonly status: number, readonly error: string, message: string) {
    super(message);
  }
}

function fail(status: number, error: string, message: string): never {
  throw new StorageHttpError(status, error, message);
}

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

/** Runs `fn` in a transaction under the caller's database role and JWT claims. */
async function asCaller<T>(sql: Sql, claims: Claims | null, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const role = claims?.role === 'service_role' ? 'service_role' : claims?.role === 'authenticated' ? 'authenticated' : 'anon';
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', ${role}, true), set_config('request.jwt.claims', ${JSON.stringify(claims ?? { role: 'anon' })}, true)`;
    return await fn(tx);
  }) as T;
}

/**
 * The storage server's key rules: its isValidKey alphabet (S3-safe ASCII: no NUL, no
 * backslash, no `%`, nothing non-ASCII) and no `.`/`..` segment. Checked before any query, so
 * a bad key is a 400, never a database error.
 */
function checkKey(name: string): void {
  if (!/^(\w|\/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)+$/.test(name)) fail(400, 'InvalidKey', `Invalid key: ${name.replace(/[^\x20-\x7e]/g, '?')}`);
  if (name.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) {
    fail(400, 'InvalidKey', `Invalid key: ${name} contains dot path segment`);
  }
}

function objectPath(dir: string, bucket: string, name: string): string {
  if (!/^[\w-][\w.-]*$/.test(bucket) || bucket === '..') fail(400, 'InvalidBucketName', `Invalid bucket name: ${bucket}`);
  checkKey(name);
  return `${dir}/${encodeURIComponent(bucket)}/${name}`;
}

async function readBody(req: Request): Promise<{ bytes: Uint8Array<ArrayBuffer>; contentType: string; cacheControl: string }> {
  const type = req.headers.get('content-type') ?? 'application/octet-stream';
  if (type.startsWith('multipart/form-data')) {
    const form = await req.formData();
    let file: File | null = null;
    for (const [, value] of form.entries()) if (value instanceof File) file = value;
    if (!file) fail(400, 'InvalidRequest', 'No file in the form');
    return {
      bytes: new Uint8Array(await file.arrayBuffer()),
      contentType: file.type || 'application/octet-stream',
      cacheControl: `max-age=${form.get('cacheControl') ?? '3600'}`,
    };
  }
  return {
    bytes: new Uint8Array(await req.arrayBuffer()),
    contentType: type,
    cacheControl: req.headers.get('cache-control') ?? 'max-age=3600',
  };
}

async function etagOf(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return `"${Array.from(digest.slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('')}"`;
}

async function serveFile(file: string, meta: Record<string, unknown>, req: Request): Promise<Response> {
  let data: Uint8Array<ArrayBuffer>;
  try {
    data = await Deno.readFile(file);
  } catch {
    fail(404, 'not_found', 'Object not found');
  }
  const headers = new Headers({
    'content-type': String(meta.mimetype ?? 'application/octet-stream'),
    'cache-control': String(meta.cacheControl ?? 'max-age=3600'),
    'accept-ranges': 'bytes',
    etag: String(meta.eTag ?? ''),
  });
  const range = req.headers.get('range')?.match(/^bytes=(\d*)-(\d*)$/);
  if (range && (range[1] || range[2])) {
    const size = data.length;
    let start = range[1] ? Number(range[1]) : size - Number(range[2]);
    let end = range[1] && range[2] ? Number(range[2]) : size - 1;
    start = Math.max(0, start);
    end = Math.min(end, size - 1);
    if (start > end || start >= size) {
      headers.set('content-range', `bytes */${size}`);
      return new Response(null, { status: 416, headers });
    }
    headers.set('content-range', `bytes ${start}-${end}/${size}`);
    headers.set('content-length', String(end - start + 1));
    return new Response(req.method === 'HEAD' ? null : data.slice(start, end + 1), { status: 206, headers });
  }
  headers.set('content-length', String(data.length));
  return new Response(req.method === 'HEAD' ? null : data, { status: 200, headers });
}

async function signUrl(bucket: string, name: string, expiresIn: number): Promise<string> {
  const token = await signJwt({ url: `${bucket}/${name}` }, expiresIn);
  return `/object/sign/${bucket}/${name.split('/').map(encodeURIComponent).join('/')}?token=${token}`;
}

export function createStorageHandler(opts: StorageOptions) {
  const { sql, dir } = opts;

  async function findObject(tx: Tx, bucket: string, name: string) {
    const rows = await tx`select id, name, metadata, version, created_at, updated_at from storage.objects where bucket_id = ${bucket} and name = ${name}`;
    return rows[0];
  }

  async function upload(req: Request, claims: Claims | null, bucket: string, name: string, upsert: boolean): Promise<Response> {
    const fault = opts.faults.failUploads.find((f) => f.remaining > 0 && name.includes(f.pattern));
    if (fault) {
      fault.remaining--;
      opts.log(`[Storage] injected upload failure bucket=${bucket} name=${name}`);
      fail(503, 'ServiceUnavailable', 'Injected upload failure (local fault)');
    }
    const { bytes, contentType, cacheControl } = await readBody(req);
    const file = objectPath(dir, bucket, name);
    const eTag = await etagOf(bytes);
    const version = crypto.randomUUID();
    const metadata = {
      eTag, size: bytes.length, mimetype: contentType, cacheControl,
      lastModified: new Date().toISOString(), contentLength: bytes.length, httpStatusCode: 200,
    };
    const row = await asCaller(sql, claims, async (tx) => {
      const [bucketRow] = await tx`select id, file_size_limit, allowed_mime_types from storage.buckets where id = ${bucket}`;
      if (!bucketRow) fail(404, 'Bucket not found', 'Bucket not found');
      if (bucketRow.file_size_limit && bytes.length > Number(bucketRow.file_size_limit)) {
        fail(413, 'Payload too large', 'The object exceeded the maximum allowed size');
      }
      const owner = claims?.role === 'authenticated' ? String(claims.sub) : null;
      const rows = upsert
        ? await tx`insert into storage.objects (bucket_id, name, owner, owner_id, metadata, version)
            values (${bucket}, ${name}, ${owner}, ${owner}, ${tx.json(metadata)}, ${version})
            on conflict (bucket_id, name) do update set metadata = excluded.metadata, version = excluded.version,
              owner = excluded.owner, owner_id = excluded.owner_id, updated_at = now()
            returning id`
        : await tx`insert into storage.objects (bucket_id, name, owner, owner_id, metadata, version)
            values (${bucket}, ${name}, ${owner}, ${owner}, ${tx.json(metadata)}, ${version})
            on conflict (bucket_id, name) do nothing returning id`;
      if (!rows[0]) fail(409, 'Duplicate', 'The resource already exists');
      await Deno.mkdir(file.slice(0, file.lastIndexOf('/')), { recursive: true });
      const tmp = `${file}.${version}.tmp`;
      await Deno.writeFile(tmp, bytes);
      await Deno.rename(tmp, file);
      return rows[0];
    });
    opts.log(`[Storage] write bucket=${bucket} name=${name} bytes=${bytes.length} version=${version} upsert=${upsert}`);
    return json({ Id: row.id, Key: `${bucket}/${name}` });
  }

  async function read(req: Request, claims: Claims | null, bucket: string, name: string): Promise<Response> {
    const obj = await asCaller(sql, claims, (tx) => findObject(tx, bucket, name));
    if (!obj) fail(404, 'not_found', 'Object not found');
    return await serveFile(objectPath(dir, bucket, name), obj.metadata ?? {}, req);
  }

  async function info(claims: Claims | null, bucket: string, name: string): Promise<Response> {
    const obj = await asCaller(sql, claims, (tx) => findObject(tx, bucket, name));
    if (!obj) fail(404, 'not_found', 'Object not found');
    const m = obj.metadata ?? {};
    return json({
      id: obj.id, name: obj.name, bucket_id: bucket, version: obj.version, size: m.size,
      content_type: m.mimetype, cache_control: m.cacheControl, etag: m.eTag, metadata: {},
      created_at: obj.created_at, last_modified: m.lastModified, updated_at: obj.updated_at,
    });
  }

  async function signOne(req: Request, claims: Claims | null, bucket: string, name: string): Promise<Response> {
    const { expiresIn } = await req.json();
    const obj = await asCaller(sql, claims, (tx) => findObject(tx, bucket, name));
    if (!obj) fail(404, 'not_found', 'Object not found');
    return json({ signedURL: await signUrl(bucket, name, Number(expiresIn) || 60) });
  }

  async function signMany(req: Request, claims: Claims | null, bucket: string): Promise<Response> {
    const { expiresIn, paths } = await req.json();
    if (!Array.isArray(paths)) fail(400, 'InvalidRequest', 'paths must be an array');
    const found = await asCaller(sql, claims, async (tx) => {
      const rows = await tx`select name from storage.objects where bucket_id = ${bucket} and name = any(${paths})`;
      return new Set(rows.map((r) => r.name as string));
    });
    return json(await Promise.all(paths.map(async (path: string) => found.has(path)
      ? { error: null, path, signedURL: await signUrl(bucket, path, Number(expiresIn) || 60) }
      : { error: 'Either the object does not exist or you do not have access to it', path, signedURL: null })));
  }

  async function readSigned(req: Request, bucket: string, name: string): Promise<Response> {
    const token = new URL(req.url).searchParams.get('token');
    const claims = token ? await verifyJwt(token) : null;
    if (!claims || claims.url !== `${bucket}/${name}`) fail(400, 'InvalidJWT', 'Invalid or expired signature');
    const [obj] = await sql`select metadata from storage.objects where bucket_id = ${bucket} and name = ${name}`;
    if (!obj) fail(404, 'not_found', 'Object not found');
    return await serveFile(objectPath(dir, bucket, name), obj.metadata ?? {}, req);
  }

  async function remove(req: Request, claims: Claims | null, bucket: string): Promise<Response> {
    const { prefixes } = await req.json();
    if (!Array.isArray(prefixes)) fail(400, 'InvalidRequest', 'prefixes must be an array');
    const deleted = await asCaller(sql, claims, (tx) =>
      tx`delete from storage.objects where bucket_id = ${bucket} and name = any(${prefixes}) returning id, name, bucket_id, metadata, created_at, updated_at`
    );
    for (const obj of deleted) {
      await Deno.remove(objectPath(dir, bucket, obj.name)).catch(() => {});
      opts.log(`[Storage] delete bucket=${bucket} name=${obj.name}`);
    }
    return json(deleted);
  }

  async function list(req: Request, claims: Claims | null, bucket: string): Promise<Response> {
    const body = await req.json().catch(() => ({}));
    const prefix = String(body.prefix ?? '').replace(/^\/+|\/+$/g, '');
    const limit = Number(body.limit ?? 100);
    const offset = Number(body.offset ?? 0);
    const search = String(body.search ?? '');
    const like = prefix ? `${prefix}/%` : '%';
    const rows = await asCaller(sql, claims, (tx) =>
      tx`select id, name, metadata, created_at, updated_at from storage.objects
         where bucket_id = ${bucket} and name like ${like} order by name`
    );
    const entries = new Map<string, Record<string, unknown>>();
    for (const r of rows) {
      const rest = prefix ? r.name.slice(prefix.length + 1) : r.name;
      const head = rest.split('/')[0];
      if (search && !head.includes(search)) continue;
      if (rest.includes('/')) entries.set(head, { name: head, id: null, updated_at: null, created_at: null, metadata: null });
      else entries.set(head, { name: head, id: r.id, updated_at: r.updated_at, created_at: r.created_at, metadata: r.metadata });
    }
    return json([...entries.values()].slice(offset, offset + limit));
  }

  async function buckets(req: Request, claims: Claims | null, id: string | undefined): Promise<Response> {
    if (req.method === 'POST' && !id) {
      const body = await req.json();
      await asCaller(sql, claims, (tx) =>
        tx`insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
           values (${body.id ?? body.name}, ${body.name ?? body.id}, ${Boolean(body.public)}, ${body.file_size_limit ?? null}, ${body.allowed_mime_types ?? null})`
      ).catch((err) => {
        if (String(err.code) === '23505') fail(409, 'Duplicate', 'The resource already exists');
        if (String(err.code) === '42501') fail(403, 'Unauthorized', 'new row violates row-level security policy');
        throw err;
      });
      return json({ name: body.name ?? body.id });
    }
    const rows = await asCaller(sql, claims, (tx) =>
      id ? tx`select * from storage.buckets where id = ${id}` : tx`select * from storage.buckets order by id`
    );
    if (id && !rows[0]) fail(404, 'Bucket not found', 'Bucket not found');
    return json(id ? rows[0] : rows);
  }

  /** `path` is what follows `/storage/v1`. */
  return async function handle(req: Request, path: string, claims: Claims | null): Promise<Response> {
    try {
      let parts: string[];
      try {
        parts = path.split('/').filter(Boolean).map(decodeURIComponent);
      } catch {
        fail(400, 'InvalidKey', `Invalid escape in ${path}`);
      }
      const [area, ...rest] = parts;
      if (area === 'bucket') return await buckets(req, claims, rest[0]);
      if (area !== 'object') fail(404, 'not_found', `No route ${req.method} ${path}`);
      const [first, ...tail] = rest;
      const splitBucket = (xs: string[]) => {
        const name = xs.slice(1).join('/');
        if (name) checkKey(name);
        return { bucket: xs[0], name };
      };
      if (first === 'sign') {
        const { bucket, name } = splitBucket(tail);
        if (req.method === 'GET' || req.method === 'HEAD') return await readSigned(req, bucket, name);
        return name ? await signOne(req, claims, bucket, name) : await signMany(req, claims, bucket);
      }
      if (!claims) fail(400, 'Unauthorized', 'headers must have required property \'authorization\'');
      if (first === 'list') return await list(req, claims, tail[0]);
      if (first === 'info') {
        const t = tail[0] === 'authenticated' || tail[0] === 'public' ? tail.slice(1) : tail;
        const { bucket, name } = splitBucket(t);
        return await info(claims, bucket, name);
      }
      if (first === 'authenticated' || first === 'public') {
        const { bucket, name } = splitBucket(tail);
        if (first === 'public') {
          const [b] = await sql`select public from storage.buckets where id = ${bucket}`;
          if (!b?.public) fail(400, 'not_found', 'Bucket is not public');
          return await read(req, { role: 'service_role' }, bucket, name);
        }
        return await read(req, claims, bucket, name);
      }
      const { bucket, name } = splitBucket(rest);
      if (req.method === 'DELETE' && !name) return await remove(req, claims, bucket);
      if (req.method === 'POST') return await upload(req, claims, bucket, name, req.headers.get('x-upsert') === 'true');
      if (req.method === 'PUT') return await upload(req, claims, bucket, name, true);
      if (req.method === 'GET' || req.method === 'HEAD') return await read(req, claims, bucket, name);
      fail(405, 'MethodNotAllowed', `${req.method} not supported`);
    } catch (err) {
      if (err instanceof StorageHttpError) {
        return json({ statusCode: String(err.status), error: err.error, message: err.message }, err.status);
      }
      const code = (err as { code?: string }).code;
      if (code === '42501') {
        return json({ statusCode: '403', error: 'Unauthorized', message: 'new row violates row-level security policy' }, 403);
      }
      opts.log(`[Storage] error ${req.method} ${path}: ${err instanceof Error ? err.message : err}`);
      return json({ statusCode: '500', error: 'internal', message: 'Internal storage error' }, 500);
    }
  };
}
