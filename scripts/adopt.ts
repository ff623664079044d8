/**
 * The adoption steps for an existing project (after the migrations, before the backfill):
 *
 *   npm run adopt -- --db-url <postgres URL> [--private-bucket] [--dry-run]
 *
 *   1 supabase/adoption/01_scope_legacy_policies.sql  always: write policies that apply to
 *     everybody on generations / the generations bucket are scoped to service_role
 *   2 supabase/adoption/02_private_bucket.sql          with --private-bucket: the bucket becomes
 *     private and a read-everything policy is dropped (breaks stored public URLs: see the file)
 *
 * Each step runs in one transaction and prints what it changed; --dry-run rolls back. Both
 * steps are re-runnable (a second run changes nothing). Exits 0, 1 on a failed step, 2 on bad
 * usage. Check with `npm run doctor -- --db-url …` before and after.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';

const STEPS = [
  { name: 'policies', file: '01_scope_legacy_policies.sql', always: true },
  { name: 'private-bucket', file: '02_private_bucket.sql', always: false },
];

class UsageError extends Error {}
class Rollback extends Error {}

const say = (line: string) => console.log(`adopt: ${line}`);

async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        'db-url': { type: 'string' },
        'private-bucket': { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
      },
    }));
    if (!values['db-url']) throw new UsageError('--db-url is required');
  } catch (err) {
    console.error(`adopt: ${err instanceof Error ? err.message : err}`);
    console.error('usage: npm run adopt -- --db-url <postgres URL> [--private-bucket] [--dry-run]');
    return 2;
  }
  const notices: string[] = [];
  const sql = postgres(values['db-url'], {
    max: 1,
    prepare: false,
    connect_timeout: 10,
    onnotice: (n) => notices.push(String(n.message).replace(/^adopt: /, '')),
  });
  try {
    for (const step of STEPS.filter((s) => s.always || values['private-bucket'])) {
      const text = await Deno.readTextFile(
        new URL(`../supabase/adoption/${step.file}`, import.meta.url),
      );
      notices.length = 0;
      say(`${step.name} (supabase/adoption/${step.file})${values['dry-run'] ? ' (dry run)' : ''}`);
      try {
        await sql.begin(async (tx) => {
          await tx.unsafe(text);
          if (values['dry-run']) throw new Rollback();
        });
      } catch (err) {
        if (!(err instanceof Rollback)) {
          say(`step ${step.name} failed: ${err instanceof Error ? err.message : err}`);
          return 1;
        }
      }
      for (const n of notices) say(`  ${n}`);
      if (notices.length === 0) say('  nothing to change');
    }
    if (!values['private-bucket']) {
      say(
        'the bucket was left as it is (--private-bucket makes it private; read supabase/adoption/02_private_bucket.sql first)',
      );
    }
    if (values['dry-run']) say('dry run: nothing was changed');
    return 0;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
