// The one config loader: validated, with errors that name the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config.ts';

const base: Record<string, string> = {
  SUPABASE_URL: 'https://abc.supabase.co',
  SUPABASE_DB_URL: 'postgresql://u:p@db:5432/postgres',
  SUPABASE_SERVICE_ROLE_KEY: 'legacy-service-jwt',
};
const env = (extra: Record<string, string | undefined> = {}) => (name: string) => ({ ...base, ...extra } as Record<string, string | undefined>)[name];

describe('loadConfig', () => {
  it('applies the documented defaults (the README\'s configuration table)', () => {
    expect(loadConfig(env())).toEqual({
      supabaseUrl: 'https://abc.supabase.co',
      dbUrl: 'postgresql://u:p@db:5432/postgres',
      serviceKeys: ['legacy-service-jwt'],
      serviceKey: 'legacy-service-jwt',
      anonKey: undefined,
      anonKeys: [],
      kie: { apiKey: undefined, baseUrl: 'https://api.kie.ai', callbackSecret: undefined, webhookHmacKey: undefined, timeoutMs: 10_000, pendingBatch: 150 },
      preview: {
        bucket: 'generations', sizes: [512, 1024], quality: 80, maxSourceBytes: 104_857_600, maxPixels: 50_000_000,
        downloadTimeoutMs: 20_000, allowedPrivateHosts: [], ffmpegCoreWasmUrl: undefined,
        ffmpegCoreWasmPath: '_runtime/ffmpeg-core-0.12.10.wasm', animated: false,
      },
      library: { signedUrlTtlSeconds: 3600, pageSize: 50 },
    });
  });

  it('PREVIEW_ANIMATED is on or off, off by default', () => {
    expect(loadConfig(env({ PREVIEW_ANIMATED: 'on' })).preview.animated).toBe(true);
    expect(loadConfig(env({ PREVIEW_ANIMATED: 'off' })).preview.animated).toBe(false);
    expect(() => loadConfig(env({ PREVIEW_ANIMATED: 'yes' }))).toThrow('PREVIEW_ANIMATED must be on or off, got "yes"');
  });

  it('PREVIEW_SIZES: ascending long sides, the first the preview; PREVIEW_MAX_SIDE, which it replaced, is refused with the fix', () => {
    expect(loadConfig(env({ PREVIEW_SIZES: '400' })).preview.sizes).toEqual([400]);
    expect(loadConfig(env({ PREVIEW_SIZES: ' 256, 512 ,1024,2048' })).preview.sizes).toEqual([256, 512, 1024, 2048]);
    for (const bad of ['1024,512', '512,512', '512,abc', '16', '512,8192', '', '128,256,512,1024,2048']) {
      expect(() => loadConfig(env({ PREVIEW_SIZES: bad })), bad).toThrow(`PREVIEW_SIZES must be 1 to 4 integers between 32 and 4096, ascending (e.g. 512,1024), got "${bad}"`);
    }
    expect(() => loadConfig(env({ PREVIEW_MAX_SIDE: '400' }))).toThrow('PREVIEW_MAX_SIDE was replaced by PREVIEW_SIZES (long sides, ascending; the first is the preview): set PREVIEW_SIZES=400,1024 or PREVIEW_SIZES=400 and unset PREVIEW_MAX_SIDE');
  });

  it('names a missing variable', () => {
    expect(() => loadConfig(env({ SUPABASE_DB_URL: undefined }))).toThrow(new ConfigError('Missing environment variable SUPABASE_DB_URL'));
    expect(() => loadConfig(env({ SUPABASE_SERVICE_ROLE_KEY: undefined }))).toThrow(/SUPABASE_SERVICE_ROLE_KEY/);
  });

  it('names a malformed variable and what it must be', () => {
    expect(() => loadConfig(env({ PREVIEW_QUALITY: '200' }))).toThrow('PREVIEW_QUALITY must be an integer between 1 and 100, got "200"');
    expect(() => loadConfig(env({ KIE_API_BASE_URL: 'ftp://x' }))).toThrow(/KIE_API_BASE_URL must be an http\(s\) URL/);
    expect(() => loadConfig(env({ SUPABASE_SECRET_KEYS: 'sb_secret_x' }))).toThrow(/SUPABASE_SECRET_KEYS must be a JSON object/);
  });

  it('counts every new secret key and the legacy key as the service role', () => {
    const c = loadConfig(env({ SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a","ci":"sb_secret_b"}' }));
    expect(c.serviceKeys).toEqual(['sb_secret_a', 'sb_secret_b', 'legacy-service-jwt']);
    const newOnly = loadConfig(env({ SUPABASE_SERVICE_ROLE_KEY: undefined, SUPABASE_SECRET_KEYS: '{"default":"sb_secret_a"}' }));
    expect(newOnly.serviceKey).toBe('sb_secret_a');
  });

  it('the public key sent as apikey is a publishable key first (the legacy anon JWT may be disabled); both count as anon', () => {
    const both = loadConfig(env({ SUPABASE_ANON_KEY: 'legacy-anon-jwt', SUPABASE_PUBLISHABLE_KEYS: '{"default":"sb_publishable_a"}' }));
    expect([both.anonKey, both.anonKeys]).toEqual(['sb_publishable_a', ['sb_publishable_a', 'legacy-anon-jwt']]);
    expect(loadConfig(env({ SUPABASE_ANON_KEY: 'legacy-anon-jwt' })).anonKey).toBe('legacy-anon-jwt');
  });
});
