/**
 * Deterministic object paths: the same generation always maps to the same keys, so a retry,
 * a second worker or a backfill overwrites (upsert) instead of adding objects. The first
 * folder is the owner's id, which is what the storage read policy checks.
 */
import type { GenerationType } from '../db.ts';

export function previewPath(userId: string, generationId: string, type: GenerationType): string {
  return type === 'video'
    ? `${userId}/posters/${generationId}_poster.webp`
    : `${userId}/previews/${generationId}_preview.webp`;
}

const EXTENSIONS: Record<string, string> = {
  jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', mp4: 'mp4', mov: 'mov', webm: 'webm',
};

export function originalPath(userId: string, generationId: string, format: string): string {
  return `${userId}/originals/${generationId}.${EXTENSIONS[format] ?? 'bin'}`;
}

/**
 * `{supabaseUrl}/storage/v1/object/{public|authenticated|sign}/{bucket}/{path}` → bucket and
 * path; null for any other URL (including one whose path does not parse).
 */
export function storageObjectFromUrl(assetUrl: string, supabaseUrl: string): { bucket: string; path: string } | null {
  const prefix = `${supabaseUrl.replace(/\/+$/, '')}/storage/v1/object/`;
  if (!assetUrl.startsWith(prefix)) return null;
  try {
    const pathname = new URL(assetUrl).pathname;
    const at = pathname.indexOf('/storage/v1/object/');
    if (at < 0) return null;
    const rest = pathname.slice(at + '/storage/v1/object/'.length).split('/').map(decodeURIComponent);
    const parts = ['public', 'authenticated', 'sign'].includes(rest[0]) ? rest.slice(1) : rest;
    if (parts.length < 2 || parts.some((p) => p === '' || p === '.' || p === '..')) return null;
    return { bucket: parts[0], path: parts.slice(1).join('/') };
  } catch {
    return null;
  }
}
