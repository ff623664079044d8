// The Auth stand-in as the functions meet it on a project with JWT signing keys: sign-in gives an
// ES256 token whose kid is in /auth/v1/.well-known/jwks.json (the public key only), /user answers
// as GoTrue does (401 without a token, 403 bad_jwt / user_not_found), the legacy HS256 keys still
// work, and with the legacy keys disabled (LEGACY_API_KEYS=off) the API refuses them.
import { createLocalJWKSet, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { signJwt, signUserJwt } from '../../local/keys.ts';
import { adminClient, ANON_KEY, API_URL, createUser, SERVICE_KEY, stack } from '../helpers/stack.ts';

const user = (token?: string) => fetch(`${API_URL}/auth/v1/user`, { headers: { apikey: ANON_KEY, ...(token ? { authorization: `Bearer ${token}` } : {}) } });

describe('Auth stand-in', () => {
  it('serves the public signing key and signs access tokens with it (ES256, kid, GoTrue\'s claims)', async () => {
    const res = await fetch(`${API_URL}/auth/v1/.well-known/jwks.json`);
    expect(res.status).toBe(200);
    const jwks = await res.json();
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const alice = await createUser('auth-alice');
    const { payload, protectedHeader } = await jwtVerify(alice.accessToken, createLocalJWKSet(jwks));
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: jwks.keys[0].kid });
    expect(payload).toMatchObject({ sub: alice.id, role: 'authenticated', aud: 'authenticated', iss: `${API_URL}/auth/v1`, aal: 'aal1', is_anonymous: false });
    expect(payload.exp! - payload.iat!).toBe(3600);
  });

  it('/user: the user for a valid ES256 or legacy HS256 token; 401 without one; 403 for one that does not verify or names nobody', async () => {
    const alice = await createUser('auth-user');
    for (const token of [alice.accessToken, await signJwt({ sub: alice.id, role: 'authenticated' }, 60)]) {
      const res = await user(token);
      expect(res.status).toBe(200);
      expect((await res.json()).id).toBe(alice.id);
    }
    expect([(await user()).status, (await (await user()).json()).error_code]).toEqual([401, 'no_authorization']);
    const [h, p, sig] = alice.accessToken.split('.');
    const cases: [string, number, string][] = [
      [`${h}.${p}.${sig.slice(0, -4)}AAAA`, 403, 'bad_jwt'],
      [await signUserJwt({ sub: alice.id, role: 'authenticated' }, -1), 403, 'bad_jwt'],
      ['not-a-jwt', 403, 'bad_jwt'],
      [ANON_KEY, 403, 'bad_jwt'], // verifies, but has no sub
      [await signUserJwt({ sub: 'not-a-uuid', role: 'authenticated' }, 60), 400, 'bad_jwt'],
      [await signUserJwt({ sub: '00000000-0000-4000-8000-00000000dead', role: 'authenticated' }, 60), 403, 'user_not_found'],
    ];
    for (const [token, status, code] of cases) {
      const res = await user(token);
      expect([res.status, (await res.json()).error_code], token.slice(0, 30)).toEqual([status, code]);
    }
  });

  it('the legacy HS256 keys keep working for the API (this stack has them)', async () => {
    expect(stack.LEGACY_API_KEYS).toBe('on');
    const legacy = await fetch(`${API_URL}/storage/v1/bucket/generations`, { headers: { authorization: `Bearer ${SERVICE_KEY}`, apikey: SERVICE_KEY } });
    expect(legacy.status).toBe(200);
    expect((await adminClient().storage.getBucket('generations')).error).toBeNull();
  });
});
