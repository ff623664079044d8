/**
 * The well-known keys of a local Supabase stack (the same ones `supabase start` prints), so
 * supabase-js code written for `supabase start` works unchanged against this stack.
 * Never use them anywhere but on loopback.
 */
import * as jose from 'jose';

export const LOCAL_JWT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long';
export const LOCAL_ANON_KEY =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0';
export const LOCAL_SERVICE_ROLE_KEY =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU';
export const LOCAL_PUBLISHABLE_KEY = 'sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH';
export const LOCAL_SECRET_KEY = 'sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz';

const secret = new TextEncoder().encode(LOCAL_JWT_SECRET);

export type Claims = jose.JWTPayload & { role?: string; email?: string };

/** Verifies an HS256 JWT signed with the local secret; null when invalid or expired. */
export async function verifyJwt(token: string): Promise<Claims | null> {
  try {
    const { payload } = await jose.jwtVerify(token, secret, { algorithms: ['HS256'] });
    return payload as Claims;
  } catch {
    return null;
  }
}

export async function signJwt(claims: Claims, expiresInSeconds: number): Promise<string> {
  return await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
    .sign(secret);
}

/**
 * The caller's identity as the platform's API gateway sees it: an `sb_secret_…` key in
 * `apikey` is the service role, `sb_publishable_…` is anon, otherwise the Bearer JWT decides.
 * Returns null for a missing or invalid credential.
 */
export async function identify(headers: Headers): Promise<Claims | null> {
  const apikey = headers.get('apikey');
  const bearer = headers.get('authorization')?.replace(/^Bearer\s+/i, '');
  if (bearer && !bearer.startsWith('sb_')) return await verifyJwt(bearer);
  const key = bearer ?? apikey;
  if (key === LOCAL_SECRET_KEY) return { role: 'service_role' };
  if (key === LOCAL_PUBLISHABLE_KEY) return { role: 'anon' };
  if (key) return await verifyJwt(key);
  return null;
}

// `deno run local/keys.ts` prints the keys as shell assignments (local/stack.sh
// reads them from here, so they are written down once).
if (import.meta.main) {
  console.log(`ANON_KEY=${LOCAL_ANON_KEY}`);
  console.log(`SERVICE_KEY=${LOCAL_SERVICE_ROLE_KEY}`);
  console.log(`PUBLISHABLE_KEY=${LOCAL_PUBLISHABLE_KEY}`);
  console.log(`SECRET_KEY=${LOCAL_SECRET_KEY}`);
}
