/**
 * Storage through @supabase/supabase-js with the service key: upsert to deterministic paths
 * (with an explicit content type: supabase-js would send text/plain), verify what was
 * written, download our own objects, and sign URLs in batches.
 */
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { getConfig } from './config.ts';
import { PreviewError } from './errors.ts';

export interface ObjectStore {
  upload(path: string, bytes: Uint8Array, contentType: string): Promise<void>;
  /** Size in bytes of a stored object, or null when it does not exist. */
  size(path: string): Promise<number | null>;
  download(path: string): Promise<Uint8Array>;
  signMany(paths: string[], expiresIn: number): Promise<Map<string, string>>;
}

let admin: SupabaseClient | undefined;

export function getAdminClient(): SupabaseClient {
  const config = getConfig();
  admin ??= createClient(config.supabaseUrl, config.serviceKey, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
  return admin;
}

export function createObjectStore(bucket = getConfig().preview.bucket, client = getAdminClient()): ObjectStore {
  const files = () => client.storage.from(bucket);
  return {
    async upload(path, bytes, contentType) {
      const { error } = await files().upload(path, bytes, { contentType, upsert: true, cacheControl: '31536000' });
      if (error) throw new PreviewError('UPLOAD_FAILED', `Upload failed: ${error.message}`);
    },
    async size(path) {
      const { data, error } = await files().info(path);
      if (error) {
        if ((error as { status?: number }).status === 404 || /not.?found/i.test(error.message)) return null;
        throw new PreviewError('UPLOAD_FAILED', `Upload check failed: ${error.message}`);
      }
      return Number((data as { size?: number }).size ?? NaN);
    },
    async download(path) {
      const { data, error } = await files().download(path);
      if (error || !data) {
        const status = (error as { status?: number } | null)?.status;
        throw new PreviewError(status === 404 ? 'SOURCE_NOT_FOUND' : 'SOURCE_UNREACHABLE', `Download failed: ${status ?? error?.message}`);
      }
      return new Uint8Array(await data.arrayBuffer());
    },
    async signMany(paths, expiresIn) {
      const out = new Map<string, string>();
      if (paths.length === 0) return out;
      const { data, error } = await files().createSignedUrls(paths, expiresIn);
      if (error) throw new Error(`Signing URLs failed: ${error.message}`);
      for (const item of data ?? []) if (item.path && item.signedUrl) out.set(item.path, item.signedUrl);
      return out;
    },
  };
}
