/**
 * The one configuration loader. Nothing reads the environment at import time
 * (scripts/audit-env-usage.sh enforces it): call `getConfig()` inside a handler. Values are
 * validated once per isolate and a missing or malformed value fails with a message that
 * names the variable.
 */
import { PREVIEW_SIZES_DEFAULT, RENDER_DEFAULTS } from './preview/defaults.ts';

/** The storage bucket, fixed: the migrations' policies name it too (public.preview_bucket()). */
export const PREVIEW_BUCKET = 'generations';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type EnvReader = (name: string) => string | undefined;

/** Reads a variable from Deno or Node, whichever runs this module. */
export const readEnv: EnvReader = (name) => {
  const g = globalThis as unknown as {
    Deno?: { env: { get(n: string): string | undefined } };
    process?: { env: Record<string, string | undefined> };
  };
  const value = g.Deno ? g.Deno.env.get(name) : g.process?.env[name];
  return value === '' ? undefined : value;
};

export type Config = {
  supabaseUrl: string;
  dbUrl: string;
  /** Keys that count as the service role: the legacy JWT and every new `sb_secret_…` key. */
  serviceKeys: string[];
  /** The key this code itself uses to call storage and functions (the first service key). */
  serviceKey: string;
  /** The public key this code sends as apikey to Auth: a publishable key first, else the legacy anon JWT. */
  anonKey: string | undefined;
  /** Keys that are nobody when presented as a bearer: every sb_publishable_… key and the legacy anon JWT. */
  anonKeys: string[];
  kie: {
    apiKey: string | undefined;
    baseUrl: string;
    callbackSecret: string | undefined;
    webhookHmacKey: string | undefined;
    timeoutMs: number;
    pendingBatch: number;
  };
  preview: {
    bucket: string;
    /** PREVIEW_SIZES: long sides, ascending; the first is the preview, the others larger sizes. */
    sizes: number[];
    quality: number;
    maxSourceBytes: number;
    maxPixels: number;
    downloadTimeoutMs: number;
    /** host:port pairs a download may reach even though they are private (local stack only). */
    allowedPrivateHosts: string[];
    ffmpegCoreWasmUrl: string | undefined;
    ffmpegCoreWasmPath: string;
    /** PREVIEW_ANIMATED=on: after a video's poster, its animated preview as a step of its own. */
    animated: boolean;
  };
  library: { signedUrlTtlSeconds: number; pageSize: number };
};

/**
 * PREVIEW_SIZES: 1 to 4 long sides (32..4096 px), ascending, e.g. `512,1024`. PREVIEW_MAX_SIDE
 * (one size) was replaced by it: set, it is refused with the fix rather than silently ignored.
 */
function sizes(env: EnvReader): number[] {
  if (env('PREVIEW_MAX_SIDE') !== undefined) {
    throw new ConfigError(
      'PREVIEW_MAX_SIDE was replaced by PREVIEW_SIZES (long sides, ascending; the first is the preview): ' +
        `set PREVIEW_SIZES=${env('PREVIEW_MAX_SIDE')},${
          PREVIEW_SIZES_DEFAULT.slice(1).join(',')
        } or ` +
        `PREVIEW_SIZES=${env('PREVIEW_MAX_SIDE')} and unset PREVIEW_MAX_SIDE`,
    );
  }
  const raw = env('PREVIEW_SIZES');
  if (raw === undefined) return [...PREVIEW_SIZES_DEFAULT];
  const list = raw.split(',').map((v) => Number(v.trim()));
  if (
    list.length < 1 || list.length > 4 ||
    list.some((v, i) => !Number.isInteger(v) || v < 32 || v > 4096 || (i > 0 && v <= list[i - 1]))
  ) {
    throw new ConfigError(
      `PREVIEW_SIZES must be 1 to 4 integers between 32 and 4096, ascending (e.g. 512,1024), got "${raw}"`,
    );
  }
  return list;
}

function required(env: EnvReader, name: string): string {
  const value = env(name);
  if (value === undefined) throw new ConfigError(`Missing environment variable ${name}`);
  return value;
}

function integer(env: EnvReader, name: string, fallback: number, min: number, max: number): number {
  const raw = env(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

function onOff(env: EnvReader, name: string, fallback: boolean): boolean {
  const raw = env(name);
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'on' || raw === 'off') return raw === 'on';
  throw new ConfigError(`${name} must be on or off, got "${raw}"`);
}

function url(env: EnvReader, name: string, fallback?: string): string {
  const raw = env(name) ?? fallback;
  if (raw === undefined) throw new ConfigError(`Missing environment variable ${name}`);
  try {
    const parsed = new URL(raw);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`);
  }
  return raw.replace(/\/+$/, '');
}

/** `SUPABASE_SECRET_KEYS` is a JSON object of named keys (`{"default":"sb_secret_…"}`). */
function keyDictionary(env: EnvReader, name: string): string[] {
  const raw = env(name);
  if (raw === undefined) return [];
  try {
    const parsed = JSON.parse(raw);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return Object.values(parsed).filter((v): v is string => typeof v === 'string' && v !== '');
    }
  } catch { /* fall through */ }
  throw new ConfigError(`${name} must be a JSON object of keys, e.g. {"default":"sb_secret_…"}`);
}

export function loadConfig(env: EnvReader = readEnv): Config {
  const legacyService = env('SUPABASE_SERVICE_ROLE_KEY');
  const secretKeys = keyDictionary(env, 'SUPABASE_SECRET_KEYS');
  const serviceKeys = [...secretKeys, ...(legacyService ? [legacyService] : [])];
  if (serviceKeys.length === 0) {
    throw new ConfigError(
      'Missing environment variable SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_SECRET_KEYS)',
    );
  }
  const publishableKeys = keyDictionary(env, 'SUPABASE_PUBLISHABLE_KEYS');
  const legacyAnon = env('SUPABASE_ANON_KEY');
  return {
    supabaseUrl: url(env, 'SUPABASE_URL'),
    dbUrl: required(env, 'SUPABASE_DB_URL'),
    serviceKeys,
    serviceKey: legacyService ?? secretKeys[0],
    // new keys first: a project that disabled its legacy keys may still be given the anon JWT
    anonKey: publishableKeys[0] ?? legacyAnon,
    anonKeys: [...publishableKeys, ...(legacyAnon ? [legacyAnon] : [])],
    kie: {
      apiKey: env('KIE_API_KEY'),
      baseUrl: url(env, 'KIE_API_BASE_URL', 'https://api.kie.ai'),
      callbackSecret: env('KIE_CALLBACK_SECRET'),
      webhookHmacKey: env('KIE_WEBHOOK_HMAC_KEY'),
      timeoutMs: integer(env, 'KIE_TIMEOUT_MS', 10_000, 100, 120_000),
      pendingBatch: integer(env, 'KIE_SYNC_BATCH', 150, 1, 200),
    },
    preview: {
      bucket: PREVIEW_BUCKET,
      sizes: sizes(env),
      quality: integer(env, 'PREVIEW_QUALITY', RENDER_DEFAULTS.quality, 1, 100),
      maxSourceBytes: integer(
        env,
        'PREVIEW_MAX_SOURCE_BYTES',
        RENDER_DEFAULTS.maxBytes,
        1024,
        2 ** 31,
      ),
      maxPixels: integer(env, 'PREVIEW_MAX_PIXELS', RENDER_DEFAULTS.maxPixels, 1, 1_000_000_000),
      downloadTimeoutMs: integer(env, 'PREVIEW_DOWNLOAD_TIMEOUT_MS', 20_000, 100, 140_000),
      allowedPrivateHosts: (env('PREVIEW_ALLOWED_PRIVATE_HOSTS') ?? '')
        .split(',').map((s) => s.trim()).filter(Boolean),
      ffmpegCoreWasmUrl: env('FFMPEG_CORE_WASM_URL'),
      ffmpegCoreWasmPath: env('FFMPEG_CORE_WASM_PATH') ?? '_runtime/ffmpeg-core-0.12.10.wasm',
      animated: onOff(env, 'PREVIEW_ANIMATED', false),
    },
    library: {
      signedUrlTtlSeconds: integer(env, 'LIBRARY_SIGNED_URL_TTL', 3600, 60, 7 * 24 * 3600),
      pageSize: integer(env, 'LIBRARY_PAGE_SIZE', 50, 1, 500),
    },
  };
}

let cached: Config | undefined;

/** The validated config, loaded on first use and kept for the isolate's life. */
export function getConfig(): Config {
  cached ??= loadConfig();
  return cached;
}

/** Tests only: forget the cached config. */
export function resetConfigForTests(): void {
  cached = undefined;
}
