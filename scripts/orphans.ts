/**
 * Objects at this system's paths ({user}/previews|posters|originals/{id}…) whose generation row
 * no longer exists: rows deleted before the object lifecycle was deployed, or while a worker
 * was still writing.
 *
 *   npm run orphans -- --db-url <postgres URL> [--user <user id>] [--apply] [--limit N]
 *
 * Lists them (read-only). --apply queues them for deletion (delete_object jobs, reason
 * orphan) and wakes the workers: generate-preview deletes them through the Storage API.
 * Files at other paths are never touched. Exits 0, 1 on an error, 2 on
 * bad usage.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';

async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        'db-url': { type: 'string' },
        user: { type: 'string' },
        apply: { type: 'boolean', default: false },
        limit: { type: 'string', default: '1000' },
      },
    }));
    if (!values['db-url']) throw new Error('--db-url is required');
    if (!/^\d+$/.test(values.limit!)) throw new Error('--limit must be a number');
    if (values.user && !/^[0-9a-f-]{36}$/i.test(values.user)) {
      throw new Error('--user must be a user id (uuid)');
    }
  } catch (err) {
    console.error(
      `orphans: ${
        err instanceof Error ? err.message : err
      }\nusage: npm run orphans -- --db-url <postgres URL> [--user <user id>] [--apply] [--limit N]`,
    );
    return 2;
  }
  const sql = postgres(values['db-url'], {
    max: 1,
    prepare: false,
    connect_timeout: 10,
    onnotice: () => {},
  });
  try {
    const rows = await sql<{ path: string; size: number | null; created_at: Date }[]>`
      select path, size, created_at from public.preview_orphan_objects(${Number(values.limit)}, ${
      values.user ?? null
    }::uuid)`;
    for (const r of rows) {
      console.log(`orphan  ${r.path}  ${r.size ?? '?'} bytes  ${r.created_at.toISOString()}`);
    }
    console.log(`orphans: ${rows.length} object(s) without a row`);
    if (values.apply && rows.length) {
      const [{ queued }] = await sql<{ queued: number }[]>`
        select coalesce(sum(public.queue_object_deletions(array[o.path],
                 substring(o.path from '/([0-9a-f-]{36})[_.]')::uuid, 'orphan')), 0)::int as queued
          from unnest(${rows.map((r) => r.path)}::text[]) as o(path)`;
      await sql`select public.wake_preview_workers()`;
      console.log(
        `orphans: ${queued} queued for deletion through the Storage API (delete_object jobs)`,
      );
    }
    return 0;
  } catch (err) {
    console.error(`orphans: ${err instanceof Error ? err.message : err}`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
