/**
 * Who is calling a function. The platform's gateway has already verified the JWT of
 * functions with verify_jwt = true; service-only functions (verify_jwt = false) check the
 * key themselves here: the legacy service-role JWT in `Authorization: Bearer …` or a new
 * `sb_secret_…` key in `apikey`, compared in constant time with the keys the platform gives.
 * Requests queued through pg_net (the trigger, the sweep, the pending sync) carry only the
 * vault's dispatch secret in `x-preview-dispatch`: it lets them do that dispatch and nothing
 * else, because pg_net's queue is readable by PUBLIC on a real project.
 */
import { decodeJwt } from 'jose';
import type { Config } from './config.ts';
import { dispatchSecretOk } from './db.ts';
import { timingSafeEqualString } from './timing-safe.ts';

export type Caller =
  | { role: 'service_role' }
  | { role: 'authenticated'; userId: string }
  | { role: 'anon' };

function presentedKeys(req: Request): string[] {
  const keys: string[] = [];
  const bearer = req.headers.get('authorization')?.match(/^Bearer\s+(.+)$/i)?.[1];
  if (bearer) keys.push(bearer.trim());
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

/** The caller of a verify_jwt = true function (the JWT was verified by the platform). */
export function callerOf(req: Request, config: Pick<Config, 'serviceKeys'>): Caller {
  if (isServiceRequest(req, config)) return { role: 'service_role' };
  const bearer = req.headers.get('authorization')?.match(/^Bearer\s+(.+)$/i)?.[1];
  if (!bearer) return { role: 'anon' };
  try {
    const claims = decodeJwt(bearer);
    if (claims.role === 'service_role') return { role: 'service_role' };
    if (claims.role === 'authenticated' && typeof claims.sub === 'string') {
      return { role: 'authenticated', userId: claims.sub };
    }
  } catch { /* not a JWT */ }
  return { role: 'anon' };
}

/** A pg_net dispatch: the vault's dispatch secret in `x-preview-dispatch` (checked in the database). */
export async function isDispatchRequest(req: Request): Promise<boolean> {
  const presented = req.headers.get('x-preview-dispatch')?.trim();
  return !!presented && await dispatchSecretOk(presented);
}
