// shared/auth.ts against a stand-in Auth on a local port (its JWKS and /user, each request
// counted): user tokens are verified as supabase-js getClaims() does (ES256/RS256 + kid against
// the JWKS, cached and fetched again for a rotated key; HS256 or an unknown kid by asking
// /user), service callers by key, and nothing is taken on a token's word.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuthUnavailableError, callerOf, isServiceRequest, resetJwksForTests, verifyCaller } from '../../shared/auth.ts';

type Key = { kid: string; privateKey: CryptoKey; jwk: JWK };
async function newKey(kid: string, alg: 'ES256' | 'RS256' = 'ES256'): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const USER = '6f1c2d3e-4a5b-4c6d-8e7f-001122334455';
const now = () => Math.floor(Date.now() / 1000);
const userClaims = (extra: JWTPayload = {}): JWTPayload => ({ sub: USER, role: 'authenticated', aud: 'authenticated', exp: now() + 3600, ...extra });

async function sign(key: Key, claims: JWTPayload, alg = 'ES256', kid: string | undefined = key.kid): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) }).sign(key.privateKey);
}
async function signHs256(claims: JWTPayload): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode('legacy-jwt-secret-of-at-least-32-chars'));
}

// ---- the stand-in Auth
const auth = {
  jwks: [] as JWK[],
  jwksStatus: 200,
  userStatus: (_token: string) => 403,
  jwksRequests: 0,
  userRequests: [] as IncomingHttpHeaders[],
};
let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/auth/v1/.well-known/jwks.json') {
      auth.jwksRequests++;
      res.writeHead(auth.jwksStatus, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: auth.jwks }));
    } else if (req.url === '/auth/v1/user') {
      auth.userRequests.push(req.headers);
      const token = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      const status = auth.userStatus(token);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(status === 200 ? { id: USER } : { code: status, error_code: 'bad_jwt' }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

let current: Key;
beforeEach(async () => {
  resetJwksForTests();
  current = await newKey('key-1');
  Object.assign(auth, { jwks: [current.jwk], jwksStatus: 200, userStatus: () => 403, jwksRequests: 0, userRequests: [] });
});
afterEach(() => vi.useRealTimers());

const config = () => ({
  supabaseUrl: base,
  serviceKeys: ['sb_secret_unit', 'legacy-service-role-jwt'],
  serviceKey: 'sb_secret_unit',
  anonKey: 'sb_publishable_unit',
  anonKeys: ['sb_publishable_unit', 'legacy-anon-jwt'],
});
const request = (headers: Record<string, string> = {}) => new Request('http://fn.test/library', { headers });
const asUser = (token: string) => request({ authorization: `Bearer ${token}`, apikey: 'sb_publishable_unit' });

describe('user tokens: asymmetric, against the JWKS', () => {
  it('a valid ES256 token is the user; the JWKS is fetched once and then cached, Auth is not asked', async () => {
    const token = await sign(current, userClaims());
    expect(await verifyCaller(asUser(token), config())).toEqual({ role: 'authenticated', userId: USER });
    expect(await verifyCaller(asUser(await sign(current, userClaims({ exp: now() + 60 }))), config())).toEqual({ role: 'authenticated', userId: USER });
    expect(auth.jwksRequests).toBe(1);
    expect(auth.userRequests).toHaveLength(0);
  });

  it('an RS256 token with a kid verifies the same way', async () => {
    const rsa = await newKey('rsa-1', 'RS256');
    auth.jwks = [current.jwk, rsa.jwk];
    expect(await verifyCaller(asUser(await sign(rsa, userClaims(), 'RS256')), config())).toEqual({ role: 'authenticated', userId: USER });
  });

  it('refuses an expired token, a forged signature under a listed kid, a non-user role, a token without sub', async () => {
    const forger = await newKey('key-1'); // same kid, another private key
    const refused = [
      await sign(current, userClaims({ exp: now() - 1 })),
      await sign(current, { sub: USER, role: 'authenticated' }), // no exp at all
      await sign(forger, userClaims()),
      await sign(current, userClaims({ role: 'service_role' })),
      await sign(current, userClaims({ role: 'anon' })),
      await sign(current, userClaims({ sub: undefined })),
      'not-a-jwt',
      `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(userClaims())).toString('base64url')}.`,
    ];
    for (const token of refused) {
      const req = asUser(token);
      expect((await verifyCaller(req, config())).role, token.slice(0, 40)).toBe('invalid');
      expect(callerOf(req)).toEqual({ role: 'anon' });
    }
  });

  it('a rotated key: an unknown kid fetches the set again (past the 30 s cooldown) and verifies without asking Auth', async () => {
    expect((await verifyCaller(asUser(await sign(current, userClaims())), config())).role).toBe('authenticated');
    const next = await newKey('key-2');
    auth.jwks = [current.jwk, next.jwk];
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 31_000);
    expect(await verifyCaller(asUser(await sign(next, userClaims())), config())).toEqual({ role: 'authenticated', userId: USER });
    expect(auth.jwksRequests).toBe(2);
    expect(auth.userRequests).toHaveLength(0);
  });

  it('a kid the JWKS does not list is settled by Auth, as getClaims falls back to getUser', async () => {
    const stranger = await newKey('key-unknown');
    const token = await sign(stranger, userClaims());
    expect((await verifyCaller(asUser(token), config())).role).toBe('invalid');
    expect(auth.userRequests).toHaveLength(1);
    auth.userStatus = (t) => (t === token ? 200 : 403);
    expect(await verifyCaller(asUser(token), config())).toEqual({ role: 'authenticated', userId: USER });
  });
});

describe('user tokens: symmetric (legacy HS256), by asking Auth', () => {
  it('Auth decides: 200 is the user, 403 is refused; the token and the publishable apikey are sent', async () => {
    const good = await signHs256(userClaims());
    const bad = await signHs256(userClaims({ sub: '00000000-0000-4000-8000-000000000000' }));
    auth.userStatus = (t) => (t === good ? 200 : 403);
    expect(await verifyCaller(asUser(good), config())).toEqual({ role: 'authenticated', userId: USER });
    expect((await verifyCaller(asUser(bad), config())).role).toBe('invalid');
    expect(auth.userRequests.map((h) => [h.authorization, h.apikey])).toEqual([[`Bearer ${good}`, 'sb_publishable_unit'], [`Bearer ${bad}`, 'sb_publishable_unit']]);
    expect(auth.jwksRequests).toBe(0);
  });

  it('an expired HS256 token is refused before Auth is asked', async () => {
    expect((await verifyCaller(asUser(await signHs256(userClaims({ exp: now() - 5 }))), config())).role).toBe('invalid');
    expect(auth.userRequests).toHaveLength(0);
  });
});

describe('Auth unavailable is not the caller\'s fault', () => {
  it('a JWKS that cannot be read, or /user answering 5xx, throws AuthUnavailableError (503), never anon or a user', async () => {
    auth.jwksStatus = 500;
    await expect(verifyCaller(asUser(await sign(current, userClaims())), config())).rejects.toBeInstanceOf(AuthUnavailableError);
    auth.userStatus = () => 502;
    await expect(verifyCaller(asUser(await signHs256(userClaims())), config())).rejects.toBeInstanceOf(AuthUnavailableError);
    await expect(verifyCaller(asUser(await signHs256(userClaims())), { ...config(), supabaseUrl: 'http://127.0.0.1:9' })).rejects.toBeInstanceOf(AuthUnavailableError);
  });
});

describe('keys', () => {
  it('a service key (sb_secret_ or the legacy JWT, bearer or apikey) is the service role without any request', async () => {
    for (const headers of [{ apikey: 'sb_secret_unit' }, { authorization: 'Bearer sb_secret_unit', apikey: 'sb_secret_unit' }, { authorization: 'Bearer legacy-service-role-jwt' }]) {
      expect(await verifyCaller(request(headers), config())).toEqual({ role: 'service_role' });
    }
    expect(isServiceRequest(request({ apikey: 'sb_secret_unitX' }), config())).toBe(false);
    expect(auth.jwksRequests + auth.userRequests.length).toBe(0);
  });

  it('no credential, the publishable key or the anon key as bearer is anon; callerOf is anon until verifyCaller ran', async () => {
    for (const headers of [{}, { apikey: 'sb_publishable_unit' }, { authorization: 'Bearer sb_publishable_unit' }, { authorization: 'Bearer legacy-anon-jwt' }]) {
      expect(await verifyCaller(request(headers), config())).toEqual({ role: 'anon' });
    }
    const req = asUser(await sign(current, userClaims()));
    expect(callerOf(req)).toEqual({ role: 'anon' });
    await verifyCaller(req, config());
    expect(callerOf(req)).toEqual({ role: 'authenticated', userId: USER });
    expect(auth.userRequests).toHaveLength(0);
  });
});
