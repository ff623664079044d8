// `npm run smoke` against this stack, as an operator runs it against a deployed project:
// every step passes, and everything it made is gone afterwards; and on a project that has only
// the new sb_ keys (its own stack with the legacy keys disabled), deploy's steps and smoke pass
// with them; that project is deployed in previews_only mode (the app's own KIE webhook), where the
// smoke test checks that kie-callback and kie-sync refuse and marks the rows successful itself.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { startOwnStack } from '../helpers/own-stack.ts';
import { sql, stack } from '../helpers/stack.ts';

const STEPS = ['the mode', 'health', 'deep health', 'a smoke user', 'upload a photo and a video', 'two pending generations', 'KIE success callbacks',
  'previews ready', 'the preview and the poster are WebP', 'the library lists both', 'a manual re-sync changes nothing',
  'the database reaches kie-sync with the dispatch secret alone', 'a forged callback is refused'];
const PREVIEWS_ONLY_STEPS = ['the mode', 'health', 'deep health', 'a smoke user', 'upload a photo and a video', 'two pending generations',
  'previews_only: kie-callback refuses KIE callbacks (409) and changes nothing', "the app's webhook marks them successful",
  'previews ready', 'the preview and the poster are WebP', 'the library lists both', 'a manual re-sync is refused (409)', 'a forged callback is refused'];

async function smoke(extra: { callbackSecret?: string; env?: Record<string, string>; serviceKey?: string; anonKey?: string } = {}) {
  const env = extra.env ?? stack;
  const args = ['scripts/run-deno.sh', 'scripts/smoke.ts', '--url', env.API_URL, '--service-key', extra.serviceKey ?? env.SERVICE_ROLE_KEY,
    '--anon-key', extra.anonKey ?? env.ANON_KEY, '--db-url', env.DB_URL, '--callback-secret', extra.callbackSecret ?? env.KIE_CALLBACK_SECRET, '--timeout', '60'];
  if (env.KIE_WEBHOOK_HMAC_KEY) args.push('--hmac-key', env.KIE_WEBHOOK_HMAC_KEY);
  const r = await promisify(execFile)('bash', args, { timeout: 150_000 }).then((o) => ({ ...o, code: 0 }), (e) => e);
  const lines = String(r.stdout).trim().split('\n');
  const userId = lines.find((l) => l.startsWith('smoke: ✓ a smoke user'))?.match(/\(([0-9a-f-]{36})\)$/)?.[1];
  return { code: r.code as number, lines, userId };
}

async function leftBehind(userId: string, db = sql) {
  const [left] = await db<{ users: number; rows: number; objects: number }[]>`
    select (select count(*)::int from auth.users where id = ${userId}) as users,
           (select count(*)::int from public.generations where user_id = ${userId}) as rows,
           (select count(*)::int from storage.objects where name like ${`${userId}/%`}) as objects`;
  return left;
}

describe('npm run smoke', () => {
  it('passes every step against the local stack and leaves nothing behind', async () => {
    const { code, lines, userId } = await smoke();
    expect(lines.filter((l) => l.startsWith('smoke: ✗'))).toEqual([]);
    for (const step of STEPS) expect(lines.some((l) => l.startsWith(`smoke: ✓ ${step}`)), step).toBe(true);
    expect(lines).toContainEqual(expect.stringMatching(/^smoke: ✓ the mode \(\d+ ms\): kie_owner$/));
    expect([code, lines.at(-1)]).toEqual([0, 'smoke: all steps passed']);
    expect(lines.find((l) => l.startsWith('smoke: cleanup:'))).toMatch(/\d+ objects, the user and its rows/);
    expect(await leftBehind(userId!)).toEqual({ users: 0, rows: 0, objects: 0 });
  }, 150_000);

  it('fails (exit 1) at the step that fails, and still removes what it made', async () => {
    const { code, lines, userId } = await smoke({ callbackSecret: 'not-the-secret' });
    expect(code).toBe(1);
    expect(lines.find((l) => l.startsWith('smoke: ✗'))).toMatch(/^smoke: ✗ KIE success callbacks.*answered 401/);
    expect(lines.some((l) => l.startsWith('smoke: ✓ previews ready'))).toBe(false);
    expect(lines.at(-1)).toBe('smoke: FAILED');
    expect(await leftBehind(userId!)).toEqual({ users: 0, rows: 0, objects: 0 });
  }, 150_000);

  it('a project with only sb_ keys (legacy keys disabled), in previews_only mode: the stack deployed with the secret key, smoke passes with sb_secret_/sb_publishable_', async () => {
    const own = await startOwnStack('sb-keys', { LEGACY_API_KEYS: 'off', STACK_MODE: 'previews-only' });
    const db = postgres(own.env.DB_URL, { max: 2, prepare: false, onnotice: () => {} });
    try {
      // the legacy keys are really off there: refused as API keys, unknown to the functions
      const bucket = (key: string) => fetch(`${own.env.API_URL}/storage/v1/bucket/generations`, { headers: { authorization: `Bearer ${key}`, apikey: key } });
      const refused = await bucket(own.env.SERVICE_ROLE_KEY);
      expect([refused.status, (await refused.json()).message]).toEqual([401, 'Legacy API keys are disabled']);
      expect((await bucket(own.env.SECRET_KEY)).status).toBe(200);
      const deep = (key: string) => fetch(`${own.env.API_URL}/functions/v1/health?deep=1`, { headers: { authorization: `Bearer ${key}` } });
      expect((await deep(own.env.SERVICE_ROLE_KEY)).status).toBe(401);
      // stack start ran deploy's core and vault steps with the secret key: no key in the vault
      expect((await db`select name from vault.secrets where name in ('project_url', 'anon_key', 'service_role_key')`).map((r) => r.name)).toEqual(['project_url']);

      const { code, lines, userId } = await smoke({ env: own.env, serviceKey: own.env.SECRET_KEY, anonKey: own.env.PUBLISHABLE_KEY });
      expect(lines.filter((l) => l.startsWith('smoke: ✗'))).toEqual([]);
      for (const step of PREVIEWS_ONLY_STEPS) expect(lines.some((l) => l.startsWith(`smoke: ✓ ${step}`)), step).toBe(true);
      expect(lines).toContainEqual(expect.stringMatching(/^smoke: ✓ the mode \(\d+ ms\): previews_only$/));
      expect(lines.some((l) => l.includes('KIE success callbacks') || l.includes('dispatch secret alone'))).toBe(false);
      expect([code, lines.at(-1)]).toEqual([0, 'smoke: all steps passed']);
      expect(await leftBehind(userId!, db)).toEqual({ users: 0, rows: 0, objects: 0 });
      // and with the legacy keys smoke stops at its first admin step on such a project
      const legacy = await smoke({ env: own.env });
      expect(legacy.code).toBe(1);
      expect(legacy.lines.find((l) => l.startsWith('smoke: ✗'))).toMatch(/^smoke: ✗ deep health/);
    } finally {
      await db.end({ timeout: 2 });
      await own.stop();
    }
  }, 400_000);
});
