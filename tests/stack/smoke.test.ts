// `npm run smoke` against this stack, as an operator runs it against a deployed project:
// every step passes, and everything it made is gone afterwards.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { sql, stack } from '../helpers/stack.ts';

async function smoke(extra: { callbackSecret?: string } = {}) {
  const args = ['scripts/run-deno.sh', 'scripts/smoke.ts', '--url', stack.API_URL, '--service-key', stack.SERVICE_ROLE_KEY,
    '--anon-key', stack.ANON_KEY, '--db-url', stack.DB_URL, '--callback-secret', extra.callbackSecret ?? stack.KIE_CALLBACK_SECRET, '--timeout', '60'];
  if (stack.KIE_WEBHOOK_HMAC_KEY) args.push('--hmac-key', stack.KIE_WEBHOOK_HMAC_KEY);
  const r = await promisify(execFile)('bash', args, { timeout: 120_000 }).then((o) => ({ ...o, code: 0 }), (e) => e);
  const lines = String(r.stdout).trim().split('\n');
  const userId = lines.find((l) => l.startsWith('smoke: ✓ a smoke user'))?.match(/\(([0-9a-f-]{36})\)$/)?.[1];
  return { code: r.code as number, lines, userId };
}

async function leftBehind(userId: string) {
  const [left] = await sql<{ users: number; rows: number; objects: number }[]>`
    select (select count(*)::int from auth.users where id = ${userId}) as users,
           (select count(*)::int from public.generations where user_id = ${userId}) as rows,
           (select count(*)::int from storage.objects where name like ${`${userId}/%`}) as objects`;
  return left;
}

describe('npm run smoke', () => {
  it('passes every step against the local stack and leaves nothing behind', async () => {
    const { code, lines, userId } = await smoke();
    expect(lines.filter((l) => l.startsWith('smoke: ✗'))).toEqual([]);
    for (const step of ['health', 'deep health', 'a smoke user', 'upload a photo and a video', 'two pending generations', 'KIE success callbacks',
      'previews ready', 'the preview and the poster are WebP', 'the library lists both', 'a manual re-sync changes nothing', 'a forged callback is refused']) {
      expect(lines.some((l) => l.startsWith(`smoke: ✓ ${step}`)), step).toBe(true);
    }
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
});
