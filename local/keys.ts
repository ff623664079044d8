/**
 * The well-known keys of a local Supabase stack (the same API keys `supabase start` prints), so
 * supabase-js code written for `supabase start` works unchanged against this stack.
 * Never use them anywhere but on loopback.
 *
 * Two kinds of JWT, as on a project made since Supabase's JWT signing keys:
 * - the legacy API keys (anon, service_role) are HS256 JWTs of the shared JWT secret, without a
 *   `kid`; so are the storage stand-in's signed-URL tokens;
 * - users' access tokens are signed with the project's asymmetric signing key (ES256, with a
 *   `kid`), whose public half Auth serves at /auth/v1/.well-known/jwks.json.
 * verifyJwt() accepts both the way GoTrue's parseJWTClaims does (supabase/auth
 * internal/api/auth.go): a `kid` selects a public key of the JWKS, a token without one is
 * HS256 with the shared secret.
 */
import * as jose from 'jose';

export const LOCAL_JWT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long';
export const LOCAL_ANON_KEY =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0';
export const LOCAL_SERVICE_ROLE_KEY =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU';
export const LOCAL_PUBLISHABLE_KEY = 'sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH';
export const LOCAL_SECRET_KEY = 'sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz';

/** The local signing key (P-256), fixed so that tokens survive a restart of the stack. */
const LOCAL_SIGNING_KID = '0c72d7c6-80bf-42e1-b6d8-24e8d189fe1c';
const LOCAL_SIGNING_JWK: jose.JWK = {
  kty: 'EC',
  crv: 'P-256',
  d: 'LZUB8Xdk7dPONg95V39BstMdzTB2ylTDef-QiU-SFLI',
  x: '6ZPy8Ret3e2XGkN-zGC0xSGA4oLTcIHMxpsGuAbW2Is',
  y: 'UnwkRj9gVnaXFAneDvk8qlGtLKNOpHWbR4pstknxjFI',
};

/** What Auth serves at /auth/v1/.well-known/jwks.json: the public half only, as GoTrue does. */
export const LOCAL_JWKS: { keys: jose.JWK[] } = {
  keys: [{
    alg: 'ES256',
    crv: LOCAL_SIGNING_JWK.crv,
    ext: true,
    key_ops: ['verify'],
    kid: LOCAL_SIGNING_KID,
    kty: LOCAL_SIGNING_JWK.kty,
    use: 'sig',
    x: LOCAL_SIGNING_JWK.x,
    y: LOCAL_SIGNING_JWK.y,
  }],
};

const secret = new TextEncoder().encode(LOCAL_JWT_SECRET);
const publicKeys = jose.createLocalJWKSet(LOCAL_JWKS);
let signingKey: Promise<CryptoKey | Uint8Array> | undefined;

export type Claims = jose.JWTPayload & { role?: string; email?: string };

/**
 * Verifies a JWT of this stack: with a `kid`, against the JWKS (ES256); without one, HS256
 * with the shared secret. Null when invalid, expired or signed by anything else.
 */
export async function verifyJwt(token: string): Promise<Claims | null> {
  return (await checkJwt(token)).claims;
}

/** verifyJwt() with the reason a token was refused (GoTrue puts it in its error message). */
export async function checkJwt(
  token: string,
): Promise<{ claims: Claims; reason?: undefined } | { claims: null; reason: string }> {
  try {
    const header = jose.decodeProtectedHeader(token);
    const { payload } = header.kid !== undefined
      ? await jose.jwtVerify(token, publicKeys, { algorithms: ['ES256'] })
      : await jose.jwtVerify(token, secret, { algorithms: ['HS256'] });
    return { claims: payload as Claims };
  } catch (err) {
    return { claims: null, reason: err instanceof Error ? err.message : String(err) };
  }
}

/** An HS256 JWT of the shared secret (the storage stand-in's signed-URL tokens). */
export async function signJwt(claims: Claims, expiresInSeconds: number): Promise<string> {
  return await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
    .sign(secret);
}

/** A user's access token, as Auth signs it on a project with JWT signing keys: ES256 + kid. */
export async function signUserJwt(claims: Claims, expiresInSeconds: number): Promise<string> {
  signingKey ??= jose.importJWK(LOCAL_SIGNING_JWK, 'ES256');
  return await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: LOCAL_SIGNING_KID })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
    .sign(await signingKey);
}

/** Whether a presented key is one of the legacy API keys (anon, service_role). */
export function isLegacyApiKey(key: string | null | undefined): boolean {
  return key === LOCAL_ANON_KEY || key === LOCAL_SERVICE_ROLE_KEY;
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
