/**
 * A minimal stand-in for Supabase Auth (GoTrue) on the local stack: password sign-in,
 * refresh, the current user, sign-out and admin user creation and deletion, over `auth.users` with
 * pgcrypto password hashes, and the signing keys' JWKS. Enough for supabase-js's
 * `auth.signInWithPassword`, `auth.getUser`, `auth.getClaims`, `auth.admin.createUser` and
 * session refresh; nothing else of GoTrue (sessions are not stored: a signed-out token still
 * passes /user until it expires, where GoTrue answers session_not_found).
 *
 * As on a project with JWT signing keys, access tokens are ES256 with the signing key's `kid`
 * (local/keys.ts), the public key is served at /.well-known/jwks.json, and /user still takes the
 * legacy HS256 tokens of the shared secret.
 */
import type postgres from 'postgres';
import { checkJwt, type Claims, LOCAL_JWKS, signUserJwt } from './keys.ts';

const ACCESS_TTL = 3600;

type UserRow = {
  id: string;
  email: string;
  raw_user_meta_data: Record<string, unknown> | null;
  created_at: Date;
};

function userJson(u: UserRow) {
  return {
    id: u.id,
    aud: 'authenticated',
    role: 'authenticated',
    email: u.email,
    email_confirmed_at: u.created_at,
    app_metadata: { provider: 'email', providers: ['email'] },
    user_metadata: u.raw_user_meta_data ?? {},
    created_at: u.created_at,
    updated_at: u.created_at,
  };
}

function authError(status: number, code: string, message: string): Response {
  return Response.json({
    code: status,
    error_code: code,
    msg: message,
    error: code,
    error_description: message,
  }, { status });
}

export function createAuthHandler(sql: postgres.Sql) {
  const refreshTokens = new Map<string, string>();

  async function session(user: UserRow, issuer: string) {
    // the claims GoTrue puts in an access token (supabase/auth AccessTokenClaims)
    const access = await signUserJwt({
      iss: issuer,
      sub: user.id,
      aud: 'authenticated',
      role: 'authenticated',
      email: user.email,
      phone: '',
      session_id: crypto.randomUUID(),
      aal: 'aal1',
      amr: [{ method: 'password', timestamp: Math.floor(Date.now() / 1000) }],
      is_anonymous: false,
      app_metadata: { provider: 'email', providers: ['email'] },
      user_metadata: user.raw_user_meta_data ?? {},
    }, ACCESS_TTL);
    const refresh = crypto.randomUUID().replaceAll('-', '');
    refreshTokens.set(refresh, user.id);
    return {
      access_token: access,
      token_type: 'bearer',
      expires_in: ACCESS_TTL,
      expires_at: Math.floor(Date.now() / 1000) + ACCESS_TTL,
      refresh_token: refresh,
      user: userJson(user),
    };
  }

  async function userById(id: string): Promise<UserRow | undefined> {
    const [u] = await sql<
      UserRow[]
    >`select id, email, raw_user_meta_data, created_at from auth.users where id = ${id}`;
    return u;
  }

  return async function handle(
    req: Request,
    path: string,
    caller: Claims | null,
  ): Promise<Response> {
    const url = new URL(req.url);
    const issuer = `${url.origin}/auth/v1`;
    if (path === '/.well-known/jwks.json' && req.method === 'GET') {
      // the public halves of the asymmetric signing keys; never the shared HS256 secret
      return Response.json(LOCAL_JWKS);
    }
    if (path === '/token' && req.method === 'POST') {
      const body = await req.json().catch(() => ({}));
      const grant = url.searchParams.get('grant_type');
      if (grant === 'password') {
        const [u] = await sql<UserRow[]>`
          select id, email, raw_user_meta_data, created_at from auth.users
          where email = ${String(body.email ?? '').toLowerCase()}
            and encrypted_password = extensions.crypt(${
          String(body.password ?? '')
        }, encrypted_password)`;
        if (!u) return authError(400, 'invalid_credentials', 'Invalid login credentials');
        return Response.json(await session(u, issuer));
      }
      if (grant === 'refresh_token') {
        const id = refreshTokens.get(String(body.refresh_token));
        const u = id ? await userById(id) : undefined;
        if (!u) {
          return authError(
            400,
            'refresh_token_not_found',
            'Invalid Refresh Token: Refresh Token Not Found',
          );
        }
        refreshTokens.delete(String(body.refresh_token));
        return Response.json(await session(u, issuer));
      }
      return authError(400, 'unsupported_grant_type', `Unsupported grant type ${grant}`);
    }
    if (path === '/user' && req.method === 'GET') {
      // GoTrue's requireAuthentication (supabase/auth internal/api/auth.go): no Bearer → 401;
      // a token that does not verify, or has no sub → 403 bad_jwt; a sub that is not a UUID
      // → 400; a user that does not exist → 403 user_not_found.
      const token = req.headers.get('authorization')?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
      if (!token) {
        return authError(401, 'no_authorization', 'This endpoint requires a Bearer token');
      }
      const checked = await checkJwt(token);
      if (!checked.claims) {
        return authError(
          403,
          'bad_jwt',
          `invalid JWT: unable to parse or verify signature, ${checked.reason}`,
        );
      }
      const sub = checked.claims.sub;
      if (!sub) return authError(403, 'bad_jwt', 'invalid claim: missing sub claim');
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(sub)) {
        return authError(400, 'bad_jwt', 'invalid claim: sub claim must be a UUID');
      }
      const u = await userById(sub);
      if (!u) return authError(403, 'user_not_found', 'User from sub claim in JWT does not exist');
      return Response.json(userJson(u));
    }
    if (path === '/logout') return new Response(null, { status: 204 });
    if (path === '/admin/users' && req.method === 'POST') {
      if (caller?.role !== 'service_role') return authError(403, 'not_admin', 'User not allowed');
      const body = await req.json();
      const [u] = await sql<UserRow[]>`
        insert into auth.users (id, email, encrypted_password, raw_user_meta_data, role, aud)
        values (${body.id ?? crypto.randomUUID()}, ${String(body.email).toLowerCase()},
                extensions.crypt(${
        String(body.password ?? crypto.randomUUID())
      }, extensions.gen_salt('bf', 4)),
                ${sql.json(body.user_metadata ?? {})}, 'authenticated', 'authenticated')
        on conflict (email) do nothing
        returning id, email, raw_user_meta_data, created_at`;
      if (!u) {
        return authError(
          422,
          'email_exists',
          'A user with this email address has already been registered',
        );
      }
      return Response.json(userJson(u));
    }
    const adminUser = path.match(/^\/admin\/users\/([0-9a-f-]{36})$/i);
    if (adminUser && req.method === 'DELETE') {
      if (caller?.role !== 'service_role') return authError(403, 'not_admin', 'User not allowed');
      // rows that reference the user go with it (generations: on delete cascade)
      const [u] = await sql<UserRow[]>`delete from auth.users where id = ${
        adminUser[1]
      } returning id, email, raw_user_meta_data, created_at`;
      if (!u) return authError(404, 'user_not_found', 'User not found');
      return Response.json(userJson(u));
    }
    return authError(404, 'not_found', `No auth route ${req.method} ${path}`);
  };
}
