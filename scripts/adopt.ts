/**
 * The adoption steps for an existing project (after the migrations, before the backfill):
 *
 *   npm run adopt -- --db-url <postgres URL> [--private-bucket] [--dry-run]
 *
 *   1 policies  always: every write policy on generations / the generations bucket that lets a
 *     caller write other users' rows or objects (doctor's policyHoles) is closed: one that checks
 *     nothing about the caller and applies to everybody (production's "Service can …" pair, meant
 *     for the service role) is scoped to service_role; one for signed-in users (or anon) without
 *     an owner check gets the owner check added to its own condition (`auth.uid() = user_id`, the
 *     caller's folder for objects), so the app's users keep writing their own
 *   2 supabase/adoption/02_private_bucket.sql  with --private-bucket: the bucket becomes
 *     private and a read-everything policy is dropped (breaks stored public URLs: see the file)
 *
 * Each step runs in one transaction and prints what it changed; --dry-run rolls back. Both
 * steps are re-runnable (a second run changes nothing). Exits 0, 1 on a failed step, 2 on bad
 * usage. Check with `npm run doctor -- --db-url …` before and after.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { policyHoles } from './doctor.ts';

type Step = {
  name: string;
  always: boolean;
  /** What the step runs in its transaction; notices and returned lines are what it changed. */
  run(tx: postgres.TransactionSql): Promise<string[]>;
};

const sqlFile = (file: string) => async (tx: postgres.TransactionSql) => {
  await tx.unsafe(
    await Deno.readTextFile(new URL(`../supabase/adoption/${file}`, import.meta.url)),
  );
  return [];
};

const STEPS: Step[] = [
  {
    name: 'policies',
    always: true,
    async run(tx) {
      const done: string[] = [];
      for (const hole of await policyHoles(tx)) {
        await tx.unsafe(hole.fix);
        done.push(
          `policy "${hole.policyname}" on ${hole.schemaname}.${hole.tablename} (FOR ${hole.cmd}) ${
            hole.kind === 'everybody'
              ? 'now applies to service_role only (it applied to everybody)'
              : "now checks the owner (it let a caller write other users' data)"
          }: ${hole.fix}`,
        );
      }
      return done;
    },
  },
  {
    name: 'private-bucket (supabase/adoption/02_private_bucket.sql)',
    always: false,
    run: sqlFile('02_private_bucket.sql'),
  },
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
      notices.length = 0;
      say(`${step.name}${values['dry-run'] ? ' (dry run)' : ''}`);
      try {
        await sql.begin(async (tx) => {
          notices.push(...await step.run(tx));
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
