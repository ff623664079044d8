/**
 * The library function: the signed-in user's generations, newest first, keyset-paginated,
 * each with batch-signed URLs for its preview or poster and its original. The query runs
 * under the `authenticated` role with the caller's claims, so the table's RLS decides what
 * is visible (as PostgREST would), and only our own storage paths are ever signed.
 */
import { callerOf } from './auth.ts';
import { getConfig } from './config.ts';
import { getSql, reconnecting } from './db.ts';
import { errorResponse, json, readJson } from './http.ts';
import { createObjectStore } from './storage.ts';

export type LibraryItem = {
  id: string;
  type: string;
  status: string;
  previewStatus: string;
  width: number | null;
  height: number | null;
  thumbhash: string | null;
  previewUrl: string | null;
  /**
   * Every size of the preview, signed, smallest first (the first is previewUrl): for screens of a
   * higher density. `srcset` is the same as an <img srcset> (`{url} {width}w, …`).
   */
  sizes: { url: string; width: number; height: number }[];
  srcset: string | null;
  /** A video's animated preview (PREVIEW_ANIMATED), signed, when it is ready. */
  animatedUrl: string | null;
  /** An audio row's waveform tile (its previewUrl too when KIE sent no cover), signed. */
  waveformUrl: string | null;
  /** An audio row's length in ms. */
  durationMs: number | null;
  /** The original copy: the full-size photo, the video, the audio track. */
  originalUrl: string | null;
  error: string | null;
  createdAt: string;
};

type Row = {
  id: string;
  type: string;
  status: string;
  preview_status: string;
  image_path: string | null;
  original_path: string | null;
  animated_path: string | null;
  animated_status: string | null;
  preview_waveform_path: string | null;
  preview_duration_ms: number | null;
  preview_width: number | null;
  preview_height: number | null;
  preview_sizes: { path: string; width: number; height: number }[] | null;
  preview_thumbhash: string | null;
  error: string | null;
  created_at: Date;
};

function encodeCursor(row: Row): string {
  return btoa(JSON.stringify([row.created_at.toISOString(), row.id]));
}

function decodeCursor(cursor: string | null): [string, string] | null {
  if (!cursor) return null;
  try {
    const [at, id] = JSON.parse(atob(cursor));
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
    if (
      typeof at === 'string' && !Number.isNaN(Date.parse(at)) && typeof id === 'string' &&
      uuid.test(id)
    ) return [at, id];
  } catch { /* invalid cursor: start over */ }
  return null;
}

export async function listLibrary(userId: string, opts: { cursor: string | null; limit: number }) {
  const config = getConfig();
  const after = decodeCursor(opts.cursor);
  const claims = JSON.stringify({ sub: userId, role: 'authenticated' });
  // read-only: the whole transaction is tried again on a connection error (the one retry policy)
  const rows = await reconnecting(() =>
    getSql().begin(async (tx) => {
      await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${claims}, true)`;
      return await tx<Row[]>`
      select id, type, status, coalesce(preview_status, 'none') as preview_status,
             public.preview_image_path(g) as image_path, original_path, animated_path, animated_status,
             preview_waveform_path, preview_duration_ms,
             preview_width, preview_height, preview_sizes, preview_thumbhash, created_at,
             -- a failed preview's reason is ours (preview_error; an earlier system's in error),
             -- anything else the generation's own
             case when preview_status = 'failed' then coalesce(preview_error, error) else error end as error
      from public.generations g
      -- the caller's own rows, whatever select policies the table has (a legacy "public rows"
      -- policy lets every user read others' public generations; the library lists only yours)
      where user_id = ${userId}
        and public.preview_kind(type) is not null
        and (${after === null} or (created_at, id) < (${after?.[0] ?? null}::timestamptz, ${
        after?.[1] ?? null
      }::uuid))
      order by created_at desc, id desc
      limit ${opts.limit + 1}`;
    })
  ) as Row[];
  const page = rows.slice(0, opts.limit);
  const animated = (r: Row) => (r.animated_status === 'ready' ? r.animated_path : null);
  const ready = (r: Row, path: string | null) => (r.preview_status === 'ready' ? path : null);
  const larger = (r: Row) => (r.preview_status === 'ready' ? r.preview_sizes ?? [] : []);
  const paths = page.flatMap((
    r,
  ) => [
    r.image_path,
    r.original_path,
    animated(r),
    ready(r, r.preview_waveform_path),
    ...larger(r).map((x) => x.path),
  ])
    .filter((p): p is string => !!p && p.startsWith(`${userId}/`));
  const signed = await createObjectStore().signMany(
    [...new Set(paths)],
    config.library.signedUrlTtlSeconds,
  );
  const items: LibraryItem[] = page.map((r) => {
    const preview = r.image_path;
    const previewUrl = r.preview_status === 'ready' && preview ? signed.get(preview) ?? null : null;
    const sizes = previewUrl && r.preview_width && r.preview_height
      ? [
        { url: previewUrl, width: r.preview_width, height: r.preview_height },
        ...larger(r).flatMap((x) => {
          const url = signed.get(x.path);
          return url ? [{ url, width: x.width, height: x.height }] : [];
        }),
      ]
      : [];
    return {
      id: r.id,
      type: r.type,
      status: r.status,
      previewStatus: r.preview_status,
      width: r.preview_width,
      height: r.preview_height,
      thumbhash: r.preview_thumbhash,
      previewUrl,
      sizes,
      srcset: sizes.length ? sizes.map((x) => `${x.url} ${x.width}w`).join(', ') : null,
      animatedUrl: animated(r) ? signed.get(animated(r)!) ?? null : null,
      waveformUrl: ready(r, r.preview_waveform_path)
        ? signed.get(r.preview_waveform_path!) ?? null
        : null,
      durationMs: r.preview_duration_ms,
      originalUrl: r.original_path ? signed.get(r.original_path) ?? null : null,
      error: r.error,
      createdAt: r.created_at.toISOString(),
    };
  });
  return {
    items,
    nextCursor: rows.length > opts.limit ? encodeCursor(page[page.length - 1]) : null,
  };
}

export async function handleLibrary(req: Request): Promise<Response> {
  const config = getConfig();
  const caller = callerOf(req, config);
  if (caller.role !== 'authenticated') {
    return errorResponse(401, 'UNAUTHORIZED', 'Sign in to see your library');
  }
  const url = new URL(req.url);
  const body = req.method === 'POST' ? await readJson(req) ?? {} : {};
  const cursor = url.searchParams.get('cursor') ??
    (typeof body.cursor === 'string' ? body.cursor : null);
  const limit = Number(url.searchParams.get('limit') ?? body.limit ?? config.library.pageSize);
  const page = await listLibrary(caller.userId, {
    cursor,
    limit: Math.min(Math.max(1, limit || 1), config.library.pageSize),
  });
  return json(page);
}
