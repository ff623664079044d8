/**
 * Who is calling a function, checked in code by every function (all run with verify_jwt = false:
 * the platform's check takes JWTs only, and a project made since the new API keys has only the
 * opaque sb_publishable_… / sb_secret_… keys, which are not JWTs).
 *
 * - Service callers present a service key: the legacy service-role JWT or any `sb_secret_…` key,
 *   in `Authorization: Bearer …` or `apikey`, compared in constant time with the keys the
 *   platform gives (SUPABASE_SERVICE_ROLE_KEY, SUPABASE_SECRET_KEYS).
 * - Users present their access token, which is VERIFIED here the way supabase-js's
 *   `auth.getClaims()` does it (@supabase/auth-js GoTrueClient.getClaims / fetchJwk): an
 *   asymmetric token (ES256/RS256 with a `kid`) against the project's JWKS at
 *   /auth/v1/.well-known/jwks.json, cached per isolate and fetched again for a `kid` it does not
 *   hold; a symmetric (legacy HS256) token, or one whose `kid` the JWKS does not list, by asking
 *   Auth (`GET /auth/v1/user`), as getClaims falls back to getUser. Expiry is checked first, as
 *   getClaims does; then the role must be `authenticated` with a `sub`.
 * - Requests queued through pg_net (the trigger, the sweep, the pending sync) carry only the
 *   vault's dispatch secret in `x-preview-dispatch`. pg_net's queue is readable by PUBLIC on a
 *   real project, so the secret only wakes: generate-preview takes `{"wake": n}` (a wake the
 *   database sent) and `{"decide": true}` from it, kie-sync its pending mode, nothing else, and
 *   their answers to it carry counts only (net._http_response is readable by PUBLIC too).
 */
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import type { Config } from './config.ts';
import { dispatchSecretOk } from './db.ts';
import { errorResponse, UpstreamUnavailableError } from './http.ts';
import { timingSafeEqualString } from './timing-safe.ts';

export type Caller =
  | { role: 'service_role' }
  | { role: 'authenticated'; userId: string }
  | { role: 'anon' };

/** A credential was presented and did not verify (expired, forged, not a user's token). */
export type Refused = { role: 'invalid'; reason: string };

/** Auth (its JWKS or /user) could not be asked: the operator's problem, not the caller's (503). */
export class AuthUnavailableError extends UpstreamUnavailableError {}

/** How long one request to Auth (the JWKS, /user) may take. */
export const AUTH_TIMEOUT_MS = 5000;

type AuthConfig = Pick<
  Config,
  'supabaseUrl' | 'serviceKeys' | 'serviceKey' | 'anonKey' | 'anonKeys'
>;

function bearerOf(req: Request): string | undefined {
  return req.headers.get('authorization')?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
}

function presentedKeys(req: Request): string[] {
  const keys: string[] = [];
  const bearer = bearerOf(req);
  if (bearer) keys.push(bearer);
  const apikey = req.headers.get('apikey');
  if (apikey) keys.push(apikey.trim());
  return keys;
}

export function isServiceRequest(req: Request, config: Pick<Config, 'serviceKeys'>): boolean {
  const presented = presentedKeys(req);
  // Compare against every key, without an early exit, so timing says nothing about which matched.
  let match = false;
  for (const key of presented) {
    for (const known of config.serviceKeys) match = timingSafeEqualString(key, known) || match;
  }
  return match;
}

// The JWKS resolver, one per isolate (jose caches the set for 10 minutes, the same TTL as
// auth-js's JWKS_TTL, and fetches it again for an unknown kid at most every 30 s).
let jwks: { url: string; resolver: ReturnType<typeof createRemoteJWKSet> } | undefined;

function jwksOf(config: AuthConfig) {
  const url = `${config.supabaseUrl}/auth/v1/.well-known/jwks.json`;
  if (jwks?.url !== url) {
    jwks = {
      url,
      resolver: createRemoteJWKSet(new URL(url), {
        timeoutDuration: AUTH_TIMEOUT_MS,
        // auth-js sends its apikey with the JWKS request; the endpoint itself is public
        headers: { apikey: config.anonKey ?? config.serviceKey },
      }),
    };
  }
  return jwks.resolver;
}

/** Tests only: forget the cached JWKS. */
export function resetJwksForTests(): void {
  jwks = undefined;
}

const code = (err: unknown) => (err as { code?: unknown } | null)?.code;

/**
 * Asks Auth whether the token is good (auth-js getUser: `GET /auth/v1/user` with the token and
 * an apikey). Any 4xx is a refusal (GoTrue answers 401 without a token, 403 bad_jwt /
 * user_not_found / session_not_found otherwise); no answer or a 5xx is Auth unavailable.
 */
async function askAuth(token: string, config: AuthConfig): Promise<boolean> {
  let res: Response;
  try {
    res = await fetch(`${config.supabaseUrl}/auth/v1/user`, {
      headers: {
        authorization: `Bearer ${token}`,
        // the public key: a project may have disabled its legacy keys, so the publishable one first
        apikey: config.anonKey ?? config.serviceKey,
      },
      signal: AbortSignal.timeout(AUTH_TIMEOUT_MS),
    });
  } catch (err) {
    throw new AuthUnavailableError(
      `Auth did not answer /user: ${err instanceof Error ? err.message : err}`,
    );
  }
  await res.body?.cancel();
  if (res.status >= 500) throw new AuthUnavailableError(`Auth answered /user with ${res.status}`);
  return res.ok;
}

/** A user's access token, verified as getClaims() does; the claims, or why it was refused. */
export async function verifyUserToken(
  token: string,
  config: AuthConfig,
): Promise<{ claims: JWTPayload } | Refused> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  let payload: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
    payload = decodeJwt(token);
  } catch {
    return { role: 'invalid', reason: 'not a JWT' };
  }
  // getClaims rejects a token without exp, or past it, before anything else (validateExp)
  if (typeof payload.exp !== 'number') return { role: 'invalid', reason: 'no exp claim' };
  if (payload.exp <= Math.floor(Date.now() / 1000)) return { role: 'invalid', reason: 'expired' };

  const asymmetric = typeof header.alg === 'string' && !header.alg.startsWith('HS') &&
    typeof header.kid === 'string';
  if (asymmetric) {
    try {
      const verified = await jwtVerify(token, jwksOf(config), { algorithms: ['ES256', 'RS256'] });
      return { claims: verified.payload };
    } catch (err) {
      const c = code(err);
      // no key with this kid even after fetching the set again: getClaims asks Auth then
      if (c !== 'ERR_JWKS_NO_MATCHING_KEY') {
        if (c === undefined || c === 'ERR_JWKS_TIMEOUT' || c === 'ERR_JOSE_GENERIC') {
          // the JWKS could not be fetched or read (network, timeout, not 200): not the token's fault
          throw new AuthUnavailableError(
            `the JWKS could not be read: ${err instanceof Error ? err.message : err}`,
          );
        }
        return { role: 'invalid', reason: typeof c === 'string' ? c : 'signature' };
      }
    }
  }
  return await askAuth(token, config)
    ? { claims: payload }
    : { role: 'invalid', reason: 'refused by Auth' };
}

/**
 * The caller of a function, verified: the service role by key, a user by a verified access token,
 * anon when no credential is presented (or only the public anon / publishable key), and
 * `invalid` when a token is presented that does not verify (the caller gets 401, never anon).
 * Remembered for callerOf(). Throws AuthUnavailableError when Auth cannot be asked.
 */
export async function verifyCaller(req: Request, config: AuthConfig): Promise<Caller | Refused> {
  const caller = await establish(req, config);
  if (caller.role !== 'invalid') verified.set(req, caller);
  return caller;
}

async function establish(req: Request, config: AuthConfig): Promise<Caller | Refused> {
  if (isServiceRequest(req, config)) return { role: 'service_role' };
  const bearer = bearerOf(req);
  // supabase-js sends its key as the bearer when there is no session: an sb_ key is not a JWT
  // (@supabase/server verify-credentials.ts treats it the same way), the anon key is nobody
  if (!bearer || bearer.startsWith('sb_') || config.anonKeys.includes(bearer)) {
    return { role: 'anon' };
  }
  const result = await verifyUserToken(bearer, config);
  if ('role' in result) return result;
  const { role, sub } = result.claims;
  if (role !== 'authenticated') return { role: 'invalid', reason: `role ${String(role)}` };
  if (typeof sub !== 'string' || sub === '') return { role: 'invalid', reason: 'no sub claim' };
  return { role: 'authenticated', userId: sub };
}

const verified = new WeakMap<Request, Caller>();

/**
 * The caller verifyCaller() established for this request; anon when it was not verified, so a
 * handler that reads it without verifying first refuses (fails closed).
 */
export function callerOf(req: Request, _config?: unknown): Caller {
  return verified.get(req) ?? { role: 'anon' };
}

/**
 * Wraps a handler that reads callerOf(): verifies the caller first; a presented credential that
 * does not verify gets 401 here.
 */
export function withVerifiedCaller(
  config: () => AuthConfig,
  handler: (req: Request) => Promise<Response>,
): (req: Request) => Promise<Response> {
  return async (req) => {
    const caller = await verifyCaller(req, config());
    if (caller.role === 'invalid') return refusedResponse();
    return await handler(req);
  };
}

/** The answer to a credential that did not verify. */
export function refusedResponse(): Response {
  return errorResponse(401, 'UNAUTHORIZED', 'Invalid or expired credentials');
}

/**
 * A pg_net dispatch: the vault's dispatch secret in `x-preview-dispatch` (checked in the
 * database). It only wakes workers: see the callers for what each one takes from it.
 */
export async function isDispatchRequest(req: Request): Promise<boolean> {
  const presented = req.headers.get('x-preview-dispatch')?.trim();
  return !!presented && await dispatchSecretOk(presented);
}
