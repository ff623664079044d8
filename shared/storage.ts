/**
 * Storage with the service key through @supabase/storage-js, the storage client supabase-js
 * wraps (`supabase.storage`), used alone so the functions' bundles do not carry auth, realtime
 * and postgrest (supabase-js's package folders are 8.8 MB; the platform's bundle limit is 5 MB):
 * upsert to deterministic paths (with an explicit content type: the client would send
 * text/plain), verify what was written, download our own objects, and sign URLs in batches
 * of at most 1000 (the server's cap per request).
 */
import { StorageClient } from '@supabase/storage-js';
import { getConfig } from './config.ts';
import { PreviewError } from './errors.ts';

export interface ObjectStore {
  upload(path: string, bytes: Uint8Array, contentType: string): Promise<void>;
  /** Size in bytes of a stored object, or null when it does not exist. */
  size(path: string): Promise<number | null>;
  download(path: string): Promise<Uint8Array>;
  signMany(paths: string[], expiresIn: number): Promise<Map<string, string>>;
  /** Deletes objects through the Storage API; a path that is already gone is not an error. */
  remove(paths: string[]): Promise<void>;
}

/**
 * The most paths one createSignedUrls call may carry: the storage server's body schema for
 * `POST /object/sign/{bucket}` has `paths.maxItems = MAX_OBJECTS_PER_REQUEST` (1000,
 * supabase/storage src/storage/limits.ts) and refuses a longer list with HTTP 400.
 */
export const SIGN_URLS_PER_REQUEST = 1000;

let admin: StorageClient | undefined;
const objectClients = new Map<string, StorageClient>();

/**
 * An object key this system reads or writes: the storage server's own key alphabet (its
 * isValidKey: S3-safe ASCII, so no NUL, no backslash, no `%`, nothing non-ASCII) without `?`
 * (supabase-js puts the key into the URL unencoded), and no empty, `.` or `..` segment
 * (which fetch would resolve into another path).
 */
export function isSafeObjectKey(key: string): boolean {
  return /^[\w/!\-.*'() &$@=;:+,]+$/.test(key) &&
    key.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/**
 * fetch for the service-key storage client: a request leaves only for
 * `{SUPABASE_URL}/storage/v1/object/[mode/]{bucket}/…`, checked on the URL fetch will really
 * send (after dot segments are resolved), so no key can steer the service key to another
 * route, bucket or host.
 */
export function objectRoutesOnly(
  supabaseUrl: string,
  bucket: string,
  inner: typeof fetch = fetch,
): typeof fetch {
  const origin = new URL(supabaseUrl).origin;
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const parts = url.pathname.split('/').slice(4); // '', 'storage', 'v1', 'object'
    while (['public', 'authenticated', 'sign', 'info', 'list'].includes(parts[0])) parts.shift();
    if (
      url.origin !== origin || !url.pathname.startsWith('/storage/v1/object/') ||
      parts[0] !== encodeURIComponent(bucket)
    ) {
      return Promise.reject(
        new Error(`Refused a storage request outside ${bucket}: ${url.pathname.slice(0, 120)}`),
      );
    }
    return inner(input, init);
  };
}

/** The HTTP status a storage error stands for: the body's statusCode (the real server answers
 * most errors with HTTP 400 and the real code there), else the response status. */
export function storageErrorStatus(error: unknown): number | null {
  const e = error as {
    statusCode?: unknown;
    status?: unknown;
    originalError?: { status?: unknown };
  } | null;
  for (const v of [e?.statusCode, e?.status, e?.originalError?.status]) {
    const n = Number(v);
    if (Number.isInteger(n) && n >= 100 && n <= 599) return n;
  }
  return null;
}

function assertKey(path: string): void {
  if (!isSafeObjectKey(path)) {
    throw new PreviewError('SOURCE_FORBIDDEN', 'Refused an unsafe object key');
  }
}

/** A storage client with the service key, as supabase-js builds `supabase.storage`. */
function serviceStorage(fetchFn?: typeof fetch): StorageClient {
  const { supabaseUrl, serviceKey } = getConfig();
  return new StorageClient(
    new URL('storage/v1', supabaseUrl.replace(/\/?$/, '/')).href,
    { apikey: serviceKey, Authorization: `Bearer ${serviceKey}` },
    fetchFn,
  );
}

export function getAdminStorage(): StorageClient {
  return (admin ??= serviceStorage());
}

/** A service-key client that can only reach objects of `bucket` (objectRoutesOnly). */
function objectClient(bucket: string): StorageClient {
  let client = objectClients.get(bucket);
  if (!client) {
    client = serviceStorage(objectRoutesOnly(getConfig().supabaseUrl, bucket));
    objectClients.set(bucket, client);
  }
  return client;
}

/**
 * Storage errors become closed codes with fixed text: the row's `error` never carries the
 * text or bytes of a remote answer.
 */
export function createObjectStore(
  bucket = getConfig().preview.bucket,
  client = objectClient(bucket),
): ObjectStore {
  const files = () => client.from(bucket);
  return {
    async upload(path, bytes, contentType) {
      assertKey(path);
      const { error } = await files().upload(path, bytes, {
        contentType,
        upsert: true,
        cacheControl: '31536000',
      });
      if (error) {
        throw new PreviewError(
          'UPLOAD_FAILED',
          `Upload failed: ${storageErrorStatus(error) ?? 'no answer'}`,
        );
      }
    },
    async size(path) {
      assertKey(path);
      const { data, error } = await files().info(path);
      if (error) {
        if (storageErrorStatus(error) === 404) return null;
        throw new PreviewError(
          'UPLOAD_FAILED',
          `Upload check failed: ${storageErrorStatus(error) ?? 'no answer'}`,
        );
      }
      return Number((data as { size?: number }).size ?? NaN);
    },
    async download(path) {
      assertKey(path);
      const { data, error } = await files().download(path);
      if (error || !data) {
        const status = storageErrorStatus(error);
        throw new PreviewError(
          status === 404 ? 'SOURCE_NOT_FOUND' : 'SOURCE_UNREACHABLE',
          `Download failed: ${status ?? 'no answer'}`,
        );
      }
      return new Uint8Array(await data.arrayBuffer());
    },
    async remove(paths) {
      for (const p of paths) assertKey(p);
      if (paths.length === 0) return;
      const { error } = await files().remove(paths);
      if (error) throw new Error(`Delete failed: ${storageErrorStatus(error) ?? 'no answer'}`);
    },
    async signMany(paths, expiresIn) {
      const out = new Map<string, string>();
      const safe = paths.filter(isSafeObjectKey); // a path no key of ours can have gets no URL
      for (let i = 0; i < safe.length; i += SIGN_URLS_PER_REQUEST) {
        const chunk = safe.slice(i, i + SIGN_URLS_PER_REQUEST);
        const { data, error } = await files().createSignedUrls(chunk, expiresIn);
        if (error) throw new Error(`Signing URLs failed: ${error.message}`);
        for (const item of data ?? []) {
          if (item.path && item.signedUrl) out.set(item.path, item.signedUrl);
        }
      }
      return out;
    },
  };
}
