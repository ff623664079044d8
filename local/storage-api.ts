/**
 * The Storage REST routes that @supabase/supabase-js uses, for the local stack: bytes on disk
 * under `<dir>/<bucket>/<name>`, one row per object in `storage.objects`. Who may read or
 * write is decided by the storage RLS policies in Postgres: every query runs under the
 * caller's role (`anon`, `authenticated` with their claims, or `service_role`), the way
 * Supabase's storage server does it, never by rules written here. It answers as the real
 * server does (tests/stack/storage-conformance.test.ts): every error but a 500 is HTTP 400
 * with the real code in the body's `statusCode`; the bucket row is read with full rights;
 * keys outside the server's alphabet or with dot segments are refused; the ETag is the
 * content's MD5; rows are deleted only through the API (the platform's delete guard).
 */
import { createHash } from 'node:crypto';
import type postgres from 'postgres';
import { type Claims, signJwt, verifyJwt } from './keys.ts';

type Sql = postgres.Sql;
type Tx = postgres.TransactionSql;

export type StorageFaults = {
  failUploads: { pattern: string; remaining: number }[];
  /** Uploads whose name contains pattern take ms longer (before they are stored), `remaining` times. */
  delayUploads?: { pattern: string; ms: number; remaining: number }[];
  /** Bulk deletes naming an object that contains pattern fail with 503, `remaining` times. */
  failRemoves?: { pattern: string; remaining: number }[];
};

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

/** A request the server's JSON schema refuses (Fastify's FST_ERR_VALIDATION). */
class ValidationError extends Error {}

/** The storage server's MAX_OBJECTS_PER_REQUEST (src/storage/limits.ts). */
const MAX_OBJECTS_PER_REQUEST = 1000;

function fail(status: number, error: string, message: string): never {
  throw new StorageHttpError(status, error, message);
}

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

/** Runs `fn` in a transaction under the caller's database role and JWT claims. */
async function asCaller<T>(
  sql: Sql,
  claims: Claims | null,
  fn: (tx: Tx) => Promise<T>,
): Promise<T> {
  const role = claims?.role === 'service_role'
    ? 'service_role'
    : claims?.role === 'authenticated'
    ? 'authenticated'
    : 'anon';
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', ${role}, true), set_config('request.jwt.claims', ${
      JSON.stringify(claims ?? { role: 'anon' })
    }, true)`;
    return await fn(tx);
  }) as T;
}

/**
 * The storage server's key rules: its isValidKey alphabet (S3-safe ASCII: no NUL, no
 * backslash, no `%`, nothing non-ASCII; supabase/storage src/storage/limits.ts) and no
 * `.`/`..` segment (its file backend, what `supabase start` runs: src/storage/backend/
 * secure-path.ts, resolveSecureFilesystemPath, HTTP 400 `InvalidKey`, "Invalid key:
 * … contains dot path segment"; S3 would take such a key literally, so on no
 * backend does it reach another object). Checked before any query, so
 * a bad key is a 400, never a database error.
 */
function checkKey(name: string): void {
  if (!/^(\w|\/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)+$/.test(name)) {
    fail(400, 'InvalidKey', `Invalid key: ${name.replace(/[^\x20-\x7e]/g, '?')}`);
  }
  if (name.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) {
    fail(400, 'InvalidKey', `Invalid key: ${name} contains dot path segment`);
  }
}

function objectPath(dir: string, bucket: string, name: string): string {
  if (!/^[\w-][\w.-]*$/.test(bucket) || bucket === '..') {
    fail(400, 'InvalidBucketName', `Invalid bucket name: ${bucket}`);
  }
  checkKey(name);
  return `${dir}/${encodeURIComponent(bucket)}/${name}`;
}

async function readBody(
  req: Request,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; contentType: string; cacheControl: string }> {
  const type = req.headers.get('content-type') ?? 'application/octet-stream';
  if (type.startsWith('multipart/form-data')) {
    const boundary = type.match(/boundary="?([^";]+)"?/i)?.[1];
    if (!boundary) fail(400, 'InvalidRequest', 'No boundary in the multipart content type');
    const parts = multipartParts(new Uint8Array(await req.arrayBuffer()), boundary);
    // supabase-js appends a Blob under an empty field name (which Deno's formData() drops):
    // the file is the part with a filename or a content type
    const file = parts.find((p) => p.filename !== null || p.contentType !== null);
    if (!file) fail(400, 'InvalidRequest', 'No file in the form');
    const cache = parts.find((p) => p.name === 'cacheControl');
    return {
      bytes: file.body.slice(),
      contentType: file.contentType ?? 'application/octet-stream',
      cacheControl: `max-age=${cache ? new TextDecoder().decode(cache.body) : '3600'}`,
    };
  }
  return {
    bytes: new Uint8Array(await req.arrayBuffer()),
    contentType: type,
    cacheControl: req.headers.get('cache-control') ?? 'max-age=3600',
  };
}

type Part = {
  name: string | null;
  filename: string | null;
  contentType: string | null;
  body: Uint8Array;
};

/** The parts of a multipart/form-data body (RFC 7578), each with its disposition and content type. */
function multipartParts(bytes: Uint8Array, boundary: string): Part[] {
  const enc = new TextEncoder();
  const delimiter = enc.encode(`--${boundary}`);
  const indexOf = (needle: Uint8Array, from: number) => {
    outer: for (let i = from; i <= bytes.length - needle.length; i++) {
      for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  };
  const parts: Part[] = [];
  let at = indexOf(delimiter, 0);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (bytes[start] === 0x2d && bytes[start + 1] === 0x2d) break; // closing delimiter
    const next = indexOf(delimiter, start);
    if (next < 0) break;
    const headerEnd = indexOf(enc.encode('\r\n\r\n'), start);
    if (headerEnd < 0 || headerEnd > next) break;
    const head = new TextDecoder().decode(bytes.subarray(start, headerEnd));
    const disposition = head.match(/content-disposition:([^\r\n]*)/i)?.[1] ?? '';
    parts.push({
      name: disposition.match(/\bname="([^"]*)"/i)?.[1] ?? null,
      filename: disposition.match(/\bfilename="([^"]*)"/i)?.[1] ?? null,
      contentType: head.match(/content-type:\s*([^\r\n]*)/i)?.[1]?.trim() ?? null,
      body: bytes.subarray(headerEnd + 4, next - 2), // the CRLF before the next delimiter is not content
    });
    at = next;
  }
  return parts;
}

function etagOf(bytes: Uint8Array<ArrayBuffer>): string {
  return `"${createHash('md5').update(bytes).digest('hex')}"`;
}

/** A bucket's size limit as the API takes it: bytes, or a string such as '1MB' or '500 KB'. */
function sizeLimit(value: unknown): number | null {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') return value;
  const m = String(value).trim().match(/^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i);
  if (!m) fail(400, 'InvalidRequest', `Invalid file size limit: ${value}`);
  const unit = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[(m[2] ?? 'B').toUpperCase() as 'B'];
  return Math.floor(Number(m[1]) * unit);
}

/** Whether a content type is allowed by a bucket's list (entries like 'image/png' or 'image/*'). */
function mimeAllowed(allowed: string[] | null, type: string): boolean {
  if (!allowed || allowed.length === 0) return true;
  const t = type.split(';')[0].trim().toLowerCase();
  return allowed.some((a) =>
    a.toLowerCase() === t || (a.endsWith('/*') && t.startsWith(a.slice(0, -1).toLowerCase()))
  );
}

async function serveFile(
  file: string,
  meta: Record<string, unknown>,
  req: Request,
): Promise<Response> {
  const url = new URL(req.url);
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
  // ?download or ?download=name: served as an attachment (what supabase-js's download option asks)
  const download = url.searchParams.get('download');
  if (download !== null) {
    const name = download && download !== 'true' ? download : file.slice(file.lastIndexOf('/') + 1);
    headers.set('content-disposition', `attachment; filename="${name.replace(/"/g, '')}"`);
  }
  const range = req.headers.get('range')?.match(/^bytes=(\d*)-(\d*)$/);
  if (range && (range[1] || range[2])) {
    const size = data.length;
    let start = range[1] ? Number(range[1]) : size - Number(range[2]);
    let end = range[1] && range[2] ? Number(range[2]) : size - 1;
    start = Math.max(0, start);
    end = Math.min(end, size - 1);
    if (start > end || start >= size) {
      headers.set('content-range', `bytes */${size}`);
      headers.set('content-type', 'application/json');
      return new Response(
        JSON.stringify({
          statusCode: '416',
          error: 'InvalidRange',
          message: 'The requested range is not satisfiable',
        }),
        { status: 416, headers },
      );
    }
    headers.set('content-range', `bytes ${start}-${end}/${size}`);
    headers.set('content-length', String(end - start + 1));
    return new Response(req.method === 'HEAD' ? null : data.slice(start, end + 1), {
      status: 206,
      headers,
    });
  }
  headers.set('content-length', String(data.length));
  return new Response(req.method === 'HEAD' ? null : data, { status: 200, headers });
}

async function signUrl(bucket: string, name: string, expiresIn: number): Promise<string> {
  const token = await signJwt({ url: `${bucket}/${name}` }, expiresIn);
  // the name as it is: supabase-js runs encodeURI over the whole signed URL itself
  return `/object/sign/${bucket}/${name}?token=${token}`;
}

export function createStorageHandler(opts: StorageOptions) {
  const { sql, dir } = opts;

  async function findObject(tx: Tx, bucket: string, name: string) {
    const rows =
      await tx`select id, name, metadata, version, created_at, updated_at from storage.objects where bucket_id = ${bucket} and name = ${name}`;
    return rows[0];
  }

  async function upload(
    req: Request,
    claims: Claims | null,
    bucket: string,
    name: string,
    upsert: boolean,
  ): Promise<Response> {
    const fault = opts.faults.failUploads.find((f) => f.remaining > 0 && name.includes(f.pattern));
    if (fault) {
      fault.remaining--;
      opts.log(`[Storage] injected upload failure bucket=${bucket} name=${name}`);
      fail(503, 'ServiceUnavailable', 'Injected upload failure (local fault)');
    }
    const delay = opts.faults.delayUploads?.find((f) =>
      f.remaining > 0 && name.includes(f.pattern)
    );
    if (delay) {
      delay.remaining--;
      opts.log(`[Storage] injected upload delay ${delay.ms}ms bucket=${bucket} name=${name}`);
      await new Promise((r) => setTimeout(r, delay.ms));
    }
    const { bytes, contentType, cacheControl } = await readBody(req);
    const file = objectPath(dir, bucket, name);
    const eTag = etagOf(bytes);
    // the server reads the bucket row with its own rights: no bucket policy is needed
    const [bucketRow] =
      await sql`select id, file_size_limit, allowed_mime_types from storage.buckets where id = ${bucket}`;
    if (!bucketRow) fail(404, 'Bucket not found', 'Bucket not found');
    if (bucketRow.file_size_limit && bytes.length > Number(bucketRow.file_size_limit)) {
      fail(413, 'Payload too large', 'The object exceeded the maximum allowed size');
    }
    if (!mimeAllowed(bucketRow.allowed_mime_types, contentType)) {
      fail(415, 'invalid_mime_type', `mime type ${contentType} is not supported`);
    }
    const version = crypto.randomUUID();
    const metadata = {
      eTag,
      size: bytes.length,
      mimetype: contentType,
      cacheControl,
      lastModified: new Date().toISOString(),
      contentLength: bytes.length,
      httpStatusCode: 200,
    };
    const row = await asCaller(sql, claims, async (tx) => {
      const owner = claims?.role === 'authenticated' ? String(claims.sub) : null;
      // A plain upload needs only an INSERT policy, as on the server (no RETURNING, which would
      // need a SELECT policy too); an upsert needs SELECT and UPDATE policies as well.
      const id = crypto.randomUUID();
      const written = upsert
        ? (await tx`insert into storage.objects (id, bucket_id, name, owner, owner_id, metadata, version)
            values (${id}, ${bucket}, ${name}, ${owner}, ${owner}, ${tx.json(metadata)}, ${version})
            on conflict (bucket_id, name) do update set metadata = excluded.metadata, version = excluded.version,
              owner = excluded.owner, owner_id = excluded.owner_id, updated_at = now()
            returning id`)[0]?.id
        : await tx.savepoint(async (sp) => {
          // a plain INSERT (ON CONFLICT would need a SELECT policy); a duplicate is a 409
          await sp`insert into storage.objects (id, bucket_id, name, owner, owner_id, metadata, version)
            values (${id}, ${bucket}, ${name}, ${owner}, ${owner}, ${
            tx.json(metadata)
          }, ${version})`;
          return id;
        }).catch((err) => {
          if (String((err as { code?: string }).code) === '23505') return undefined;
          throw err;
        });
      if (!written) fail(409, 'Duplicate', 'The resource already exists');
      await Deno.mkdir(file.slice(0, file.lastIndexOf('/')), { recursive: true });
      const tmp = `${file}.${version}.tmp`;
      await Deno.writeFile(tmp, bytes);
      await Deno.rename(tmp, file);
      return { id: written };
    });
    opts.log(
      `[Storage] write bucket=${bucket} name=${name} bytes=${bytes.length} version=${version} upsert=${upsert}`,
    );
    return json({ Id: row.id, Key: `${bucket}/${name}` });
  }

  async function read(
    req: Request,
    claims: Claims | null,
    bucket: string,
    name: string,
  ): Promise<Response> {
    const obj = await asCaller(sql, claims, (tx) => findObject(tx, bucket, name));
    if (!obj) fail(404, 'not_found', 'Object not found');
    return await serveFile(objectPath(dir, bucket, name), obj.metadata ?? {}, req);
  }

  async function info(claims: Claims | null, bucket: string, name: string): Promise<Response> {
    const obj = await asCaller(sql, claims, (tx) => findObject(tx, bucket, name));
    if (!obj) fail(404, 'not_found', 'Object not found');
    const m = obj.metadata ?? {};
    return json({
      id: obj.id,
      name: obj.name,
      bucket_id: bucket,
      version: obj.version,
      size: m.size,
      content_type: m.mimetype,
      cache_control: m.cacheControl,
      etag: m.eTag,
      metadata: {},
      created_at: obj.created_at,
      last_modified: m.lastModified,
      updated_at: obj.updated_at,
    });
  }

  const expiry = (value: unknown): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) {
      fail(400, 'InvalidRequest', 'expiresIn must be an integer >= 1');
    }
    return n;
  };

  async function signOne(
    req: Request,
    claims: Claims | null,
    bucket: string,
    name: string,
  ): Promise<Response> {
    const expiresIn = expiry((await req.json()).expiresIn);
    const obj = await asCaller(sql, claims, (tx) => findObject(tx, bucket, name));
    if (!obj) fail(404, 'not_found', 'Object not found');
    return json({ signedURL: await signUrl(bucket, name, expiresIn) });
  }

  async function signMany(req: Request, claims: Claims | null, bucket: string): Promise<Response> {
    const body = await req.json();
    const paths = body.paths;
    const expiresIn = expiry(body.expiresIn);
    if (!Array.isArray(paths)) fail(400, 'InvalidRequest', 'paths must be an array');
    // The server's body schema (supabase/storage src/http/routes/object/getSignedURLs.ts:
    // paths minItems 1, maxItems MAX_OBJECTS_PER_REQUEST = 1000) refuses the request before
    // any lookup; Fastify's validation error answers HTTP 400 with code InvalidRequest, error
    // 'Error' (its name) and Ajv's message under Fastify's default formatter.
    if (paths.length > MAX_OBJECTS_PER_REQUEST || paths.length < 1) {
      throw new ValidationError(
        paths.length < 1
          ? 'body/paths must NOT have fewer than 1 items'
          : `body/paths must NOT have more than ${MAX_OBJECTS_PER_REQUEST} items`,
      );
    }
    const found = await asCaller(sql, claims, async (tx) => {
      const rows =
        await tx`select name from storage.objects where bucket_id = ${bucket} and name = any(${paths})`;
      return new Set(rows.map((r) => r.name as string));
    });
    return json(
      await Promise.all(
        paths.map(async (path: string) =>
          found.has(path)
            ? { error: null, path, signedURL: await signUrl(bucket, path, expiresIn) }
            : {
              error: 'Either the object does not exist or you do not have access to it',
              path,
              signedURL: null,
            }
        ),
      ),
    );
  }

  async function readSigned(req: Request, bucket: string, name: string): Promise<Response> {
    const token = new URL(req.url).searchParams.get('token');
    const claims = token ? await verifyJwt(token) : null;
    if (!claims || claims.url !== `${bucket}/${name}`) {
      fail(400, 'InvalidJWT', 'Invalid or expired signature');
    }
    const [obj] =
      await sql`select metadata from storage.objects where bucket_id = ${bucket} and name = ${name}`;
    if (!obj) fail(404, 'not_found', 'Object not found');
    return await serveFile(objectPath(dir, bucket, name), obj.metadata ?? {}, req);
  }

  async function remove(req: Request, claims: Claims | null, bucket: string): Promise<Response> {
    const { prefixes } = await req.json();
    if (!Array.isArray(prefixes) || prefixes.length === 0) {
      fail(400, 'InvalidRequest', 'prefixes must be a non-empty array');
    }
    const fault = opts.faults.failRemoves?.find((f) =>
      f.remaining > 0 && prefixes.some((p: string) => String(p).includes(f.pattern))
    );
    if (fault) {
      fault.remaining--;
      opts.log(`[Storage] injected delete failure bucket=${bucket}`);
      fail(503, 'ServiceUnavailable', 'Injected delete failure (local fault)');
    }
    const deleted = await asCaller(sql, claims, async (tx) => {
      // the platform's delete guard lets only the Storage API delete rows
      await tx`select set_config('storage.allow_delete_query', 'true', true)`;
      return await tx`delete from storage.objects where bucket_id = ${bucket} and name = any(${prefixes})
        returning id, name, bucket_id, owner, owner_id, version, metadata, user_metadata, created_at, updated_at, last_accessed_at`;
    });
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
    const search = String(body.search ?? '').toLowerCase();
    const column =
      ['name', 'created_at', 'updated_at', 'last_accessed_at'].includes(body.sortBy?.column)
        ? body.sortBy.column
        : 'name';
    const desc = String(body.sortBy?.order ?? 'asc').toLowerCase() === 'desc';
    const like = prefix ? `${prefix}/%` : '%';
    const rows = await asCaller(
      sql,
      claims,
      (tx) =>
        tx`select id, name, metadata, created_at, updated_at, last_accessed_at from storage.objects
         where bucket_id = ${bucket} and name like ${like} order by name`,
    );
    const entries = new Map<string, Record<string, unknown>>();
    for (const r of rows) {
      const rest = prefix ? r.name.slice(prefix.length + 1) : r.name;
      const head = rest.split('/')[0];
      if (search && !head.toLowerCase().startsWith(search)) continue; // search is a prefix, as on the server
      if (rest.includes('/')) {
        entries.set(head, {
          name: head,
          id: null,
          updated_at: null,
          created_at: null,
          last_accessed_at: null,
          metadata: null,
        });
      } else {
        entries.set(head, {
          name: head,
          id: r.id,
          updated_at: r.updated_at,
          created_at: r.created_at,
          last_accessed_at: r.last_accessed_at,
          metadata: r.metadata,
        });
      }
    }
    const key = (e: Record<string, unknown>) => {
      const v = e[column];
      return v instanceof Date ? v.getTime() : v === null ? '' : String(v);
    };
    const sorted = [...entries.values()].sort((a, b) =>
      (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (desc ? -1 : 1)
    );
    return json(sorted.slice(offset, offset + limit));
  }

  async function buckets(
    req: Request,
    claims: Claims | null,
    id: string | undefined,
  ): Promise<Response> {
    if (req.method === 'POST' && !id) {
      const body = await req.json();
      await asCaller(
        sql,
        claims,
        (tx) =>
          tx`insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
           values (${body.id ?? body.name}, ${body.name ?? body.id}, ${Boolean(body.public)}, ${
            sizeLimit(body.file_size_limit)
          }, ${body.allowed_mime_types ?? null})`,
      ).catch((err) => {
        if (String(err.code) === '23505') fail(409, 'Duplicate', 'The resource already exists');
        if (String(err.code) === '42501') {
          fail(403, 'Unauthorized', 'new row violates row-level security policy');
        }
        throw err;
      });
      return json({ name: body.name ?? body.id });
    }
    const rows = await asCaller(
      sql,
      claims,
      (tx) =>
        id
          ? tx`select * from storage.buckets where id = ${id}`
          : tx`select * from storage.buckets order by id`,
    );
    if (id && !rows[0]) fail(404, 'Bucket not found', 'Bucket not found');
    return json(id ? rows[0] : rows);
  }

  /**
   * `path` is what follows `/storage/v1` in the URL as parsed, where a `.`/`..` segment (even
   * `%2E%2E`) is already resolved: `B/x/../secret` would name `B/secret`. The server routes the
   * request line as sent (Fastify's wildcard), so the key is read from the raw `req.url`, and
   * checkKey refuses the segment.
   */
  function rawPath(req: Request, path: string): string {
    const raw = req.url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '').split(/[?#]/)[0];
    return raw.startsWith('/storage/v1/') ? raw.slice('/storage/v1'.length) : path;
  }

  return async function handle(
    req: Request,
    path: string,
    claims: Claims | null,
  ): Promise<Response> {
    try {
      let parts: string[];
      try {
        parts = rawPath(req, path).split('/').filter(Boolean).map(decodeURIComponent);
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
        if (req.method === 'GET' || req.method === 'HEAD') {
          return await readSigned(req, bucket, name);
        }
        return name
          ? await signOne(req, claims, bucket, name)
          : await signMany(req, claims, bucket);
      }
      if (!claims) fail(400, 'Unauthorized', "headers must have required property 'authorization'");
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
      if (req.method === 'POST') {
        return await upload(req, claims, bucket, name, req.headers.get('x-upsert') === 'true');
      }
      if (req.method === 'PUT') return await upload(req, claims, bucket, name, true);
      if (req.method === 'GET' || req.method === 'HEAD') {
        return await read(req, claims, bucket, name);
      }
      fail(405, 'MethodNotAllowed', `${req.method} not supported`);
    } catch (err) {
      // the real server answers every error but a 500 with HTTP 400, the real code in the body
      // (its StorageBackendError.render(): statusCode, code, error, message)
      if (err instanceof StorageHttpError) {
        return json(
          {
            statusCode: String(err.status),
            code: err.error,
            error: err.error,
            message: err.message,
          },
          err.status === 500 ? 500 : 400,
        );
      }
      if (err instanceof ValidationError) {
        // the server's error handler for a Fastify error: its status, name and mapped code
        return json(
          { statusCode: '400', error: 'Error', code: 'InvalidRequest', message: err.message },
          400,
        );
      }
      const code = (err as { code?: string }).code;
      if (code === '42501') {
        return json({
          statusCode: '403',
          error: 'Unauthorized',
          message: 'new row violates row-level security policy',
        }, 400);
      }
      opts.log(
        `[Storage] error ${req.method} ${path}: ${err instanceof Error ? err.message : err}`,
      );
      return json({ statusCode: '500', error: 'internal', message: 'Internal storage error' }, 500);
    }
  };
}
