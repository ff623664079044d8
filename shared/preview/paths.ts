/**
 * Object paths. Where a preview and the original copy go is the database's (a claimed job's
 * input carries target_path and original_stem: one scheme, which the object lifecycle also
 * deletes by); the original copy's extension is the bytes' format, known only here. The first folder
 * is the owner's id, which is what the storage read policy checks.
 */
import { isSafeObjectKey } from '../storage.ts';

const EXTENSIONS: Record<string, string> = {
  jpeg: 'jpg',
  png: 'png',
  webp: 'webp',
  gif: 'gif',
  mp4: 'mp4',
  mov: 'mov',
  webm: 'webm',
  mp3: 'mp3',
  aac: 'aac',
  m4a: 'm4a',
  wav: 'wav',
  ogg: 'ogg',
  flac: 'flac',
};

/** `{original_stem}.{ext}`: the original copy's path for bytes of this format. */
export function originalCopyPath(stem: string, format: string): string {
  return `${stem}.${EXTENSIONS[format] ?? 'bin'}`;
}

/**
 * `{size_stem}_{side}.webp`: a larger size's path (`size_stem` is the job input's, the preview's
 * path without `.webp`: `{user}/previews/{id}_preview_1024.webp`, `{user}/posters/{id}_poster_1024.webp`).
 * The database accepts no other (preview_job_apply_result).
 */
export function sizePath(stem: string, side: number): string {
  return `${stem}_${side}.webp`;
}

/** What an asset URL says about our own storage (see storageObjectFromUrl). */
export type OwnStorageRef =
  | { ours: false }
  | { ours: true; object: { bucket: string; path: string } | null };

const OBJECT_ROUTE = '/storage/v1/object/';
const READ_MODES = new Set(['public', 'authenticated', 'sign']);

/**
 * Whether `assetUrl` points at this project (same origin as `supabaseUrl`) and, if so, which
 * storage object it names. A URL of ours that does not name exactly one object with a safe
 * key (see isSafeObjectKey) gives `object: null`: the caller refuses it and never reads it
 * another way. The path is decoded once, as a whole: an encoded separator (`%2F`, `%5C`), a
 * NUL, a backslash anywhere in the URL, or a dot segment (raw, or resolved by the URL parser)
 * makes the URL unusable, so a decoded `..` can never climb out of the owner's folder.
 */
export function storageObjectFromUrl(assetUrl: string, supabaseUrl: string): OwnStorageRef {
  let url: URL;
  try {
    url = new URL(assetUrl);
    if (url.origin !== new URL(supabaseUrl).origin) return { ours: false };
  } catch {
    return { ours: false };
  }
  const refused: OwnStorageRef = { ours: true, object: null };
  // The path exactly as written (the URL parser resolves dot segments and turns `\` into `/`).
  const afterScheme = assetUrl.indexOf('//') + 2;
  const slash = assetUrl.indexOf('/', afterScheme);
  const raw = slash < 0 ? '' : assetUrl.slice(slash).replace(/[?#].*$/s, '');
  if (assetUrl.includes('\\') || raw !== url.pathname || !raw.startsWith(OBJECT_ROUTE)) {
    return refused;
  }
  const rest = raw.slice(OBJECT_ROUTE.length);
  if (/%(2f|5c|00)/i.test(rest)) return refused;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    return refused;
  }
  const parts = decoded.split('/');
  if (READ_MODES.has(parts[0])) parts.shift();
  const [bucket, ...key] = parts;
  const path = key.join('/');
  if (!bucket || !isSafeObjectKey(bucket) || !isSafeObjectKey(path)) return refused;
  return { ours: true, object: { bucket, path } };
}
