/**
 * Checks a target database before and after deploying this system, read-only (one READ ONLY
 * transaction), and prints each finding with its fix:
 *
 *   npm run doctor -- --db-url <postgres URL> [--json]
 *
 * blocking  something will break or a hole is open: exit 1
 * warning   works, but the operator should decide (a public bucket)
 * info      what the backfill will do, what is not previewable and why
 *
 * Before the migrations it reports what it can see in the platform's own tables; after them
 * it asks the migrations' views and functions (preview_coverage, backfill_candidates, preview_jobs): the rules
 * live in SQL, not here.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { coreRejections } from '../shared/db.ts';

export type Level = 'blocking' | 'warning' | 'info';
export type Finding = { level: Level; check: string; message: string; fix?: string };

const OUR_MIGRATIONS = new URL('../migrations/', import.meta.url);
const REQUIRED_COLUMNS = ['id', 'user_id', 'type', 'status', 'created_at', 'updated_at'];
// what invoke_edge_function reads (no key: the dispatch secret is a dispatch's only credential)
const VAULT = ['project_url', 'preview_dispatch_secret'];
// kie-sync-pending only in kie_owner mode (preview_apply_mode)
const CRON_JOBS = ['preview-sweep', 'net-response-trim'];
/** The old preview worker polled every 10 s: a `processing` row written this recently without our lease is its. */
const OLD_WORKER_WINDOW = '10 minutes';

async function ourVersions(): Promise<Set<string>> {
  const versions = new Set<string>();
  for await (const f of Deno.readDir(OUR_MIGRATIONS)) {
    const m = f.name.match(/^(\d+)_.*\.sql$/);
    if (m) versions.add(m[1]);
  }
  return versions;
}

/** A write policy that lets someone write rows or objects that are not theirs, and the statement that closes it. */
export type PolicyHole = {
  schemaname: string;
  tablename: string;
  policyname: string;
  cmd: string;
  /** everybody: no check of the caller at all (scoped to service_role); any_user: no owner check (one added). */
  kind: 'everybody' | 'any_user';
  fix: string;
};

const OWNER_CHECK = {
  generations: '(select auth.uid()) = user_id',
  objects: '(storage.foldername(name))[1] = (select auth.uid())::text',
};

/**
 * Write policies on `generations` or the `generations` bucket that let one caller write another
 * user's rows or objects: a policy for PUBLIC that checks nothing about the caller (production's
 * "Service can …" pair, meant for the service role, which bypasses RLS: scoped to service_role),
 * and any policy for PUBLIC, anon or authenticated whose expressions never compare the caller's
 * `auth.uid()` (any signed-in user writes everyone's: the owner check is added, keeping the
 * policy's own condition). An expression is owner-checked when it names auth.uid(); an UPDATE or
 * ALL policy needs it in USING and, when it has one, in WITH CHECK, an INSERT in WITH CHECK.
 * doctor reports them (blocking), deploy refuses while one exists, adopt runs each `fix`.
 */
export async function policyHoles(
  sql: postgres.Sql | postgres.TransactionSql,
): Promise<PolicyHole[]> {
  const rows = await sql<
    {
      schemaname: string;
      tablename: string;
      policyname: string;
      cmd: string;
      roles: string[];
      qual: string | null;
      with_check: string | null;
    }[]
  >`
    select schemaname, tablename, policyname, cmd, roles::text[] as roles, qual, with_check from pg_policies
     where roles && array['public', 'anon', 'authenticated']::name[] and cmd in ('UPDATE', 'INSERT', 'DELETE', 'ALL')
       and ((schemaname = 'public' and tablename = 'generations')
            or (schemaname = 'storage' and tablename = 'objects' and coalesce(qual, '') || coalesce(with_check, '') ~ '''generations'''))
     order by 1, 2, 3`;
  const uid = /auth\.uid\(\)/;
  const anyAuth = /auth\.(uid|jwt|role)\(\)/;
  const holes: PolicyHole[] = [];
  for (const p of rows) {
    const using = p.cmd === 'INSERT' ? null : p.qual;
    const check = p.cmd === 'DELETE' ? null : p.with_check;
    const owned = (p.cmd === 'INSERT' ? !!check && uid.test(check) : !!using && uid.test(using)) &&
      (check === null || uid.test(check));
    if (owned) continue;
    const target = `${quoteIdent(p.policyname)} on ${p.schemaname}.${p.tablename}`;
    const everybody = p.roles.length === 1 && p.roles[0] === 'public' &&
      !anyAuth.test(`${p.qual ?? ''} ${p.with_check ?? ''}`);
    if (everybody) {
      holes.push({ ...p, kind: 'everybody', fix: `alter policy ${target} to service_role` });
      continue;
    }
    const owner = p.tablename === 'generations' ? OWNER_CHECK.generations : OWNER_CHECK.objects;
    const and = (expr: string | null) => expr ? `(${expr}) and ${owner}` : owner;
    const clauses = [
      p.cmd === 'INSERT' ? null : `using (${and(using)})`,
      p.cmd === 'DELETE' ? null : `with check (${and(check ?? using)})`,
    ].filter(Boolean);
    holes.push({ ...p, kind: 'any_user', fix: `alter policy ${target} ${clauses.join(' ')}` });
  }
  return holes;
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * doctor's findings for policyHoles: blocking; deploy refuses to run while one exists (from the
 * migrations on the pipeline is live, and such a policy lets callers change what it fetches,
 * stores and shows for other users).
 */
export async function openWritePolicies(
  sql: postgres.Sql | postgres.TransactionSql,
  dbUrlForFixes = '<db-url>',
): Promise<Finding[]> {
  return (await policyHoles(sql)).map((p) => ({
    level: 'blocking' as const,
    check: 'policies',
    message: p.kind === 'everybody'
      ? `policy "${p.policyname}" on ${p.schemaname}.${p.tablename} lets every role, anon included, ${
        p.cmd === 'ALL' ? 'read and write' : p.cmd
      }`
      : `policy "${p.policyname}" on ${p.schemaname}.${p.tablename} lets a caller ${p.cmd} ${
        p.tablename === 'generations' ? "other users' rows" : "other users' objects"
      } (no owner check)`,
    fix: `npm run adopt -- --db-url ${dbUrlForFixes} (${
      p.kind === 'everybody'
        ? 'scopes it to service_role; the app writes with the service key'
        : 'adds the owner check to it, keeping its own condition'
    })`,
  }));
}

/**
 * This system's own columns (preview_own_columns() in the migrations, which doctor may run before:
 * tests/stack/doctor.test.ts holds the two equal); the first three are the checklist's.
 */
export const OWN_COLUMNS = [
  'preview_path',
  'poster_path',
  'preview_status',
  'preview_error_code',
  'preview_error',
  'preview_width',
  'preview_height',
  'preview_thumbhash',
  'preview_version',
  'preview_cover_url',
  'animated_path',
  'animated_status',
  'animated_error_code',
  'preview_waveform_path',
  'preview_duration_ms',
  'preview_sizes',
];
const CHECKLIST_COLUMNS = ['preview_path', 'poster_path', 'preview_status'];

type Mode = 'previews_only' | 'kie_owner';

async function mode(tx: postgres.TransactionSql): Promise<Mode> {
  return (await tx<{ m: Mode }[]>`select public.preview_mode() as m`)[0].m;
}

/**
 * The app's policies that let API roles write generations, and what this system changes for those
 * writes: its own columns are refused; sources written by a client are previewed as untrusted input.
 */
async function clientWrites(tx: postgres.TransactionSql, m: Mode | null): Promise<Finding[]> {
  const policies = await tx<{ policyname: string; cmd: string; roles: string[] }[]>`
    select policyname, cmd, roles::text[] as roles from pg_policies
     where schemaname = 'public' and tablename = 'generations' and cmd in ('INSERT', 'UPDATE', 'ALL')
       and roles && array['public', 'anon', 'authenticated']::name[]
     order by policyname`;
  return policies.map((p) => ({
    level: 'info' as const,
    check: 'client-writes',
    message: `policy "${p.policyname}" lets ${p.roles.join(', ')} ${
      p.cmd === 'ALL' ? 'write' : p.cmd
    } rows: from the migrations on, their writes of this system's columns (${
      CHECKLIST_COLUMNS.join(', ')
    }, preview_error…, animated_…) fail with 42501${
      m === 'kie_owner' ? ', and so do writes of task_id (kie_owner mode)' : ''
    }; everything else behaves as before. A success status with an asset_url or result_urls a client wrote gets a preview of that source, for the row's owner only (private addresses and other users' objects are refused)`,
  }));
}

export async function diagnose(sql: postgres.Sql, dbUrlForFixes = '<db-url>'): Promise<Finding[]> {
  const out: Finding[] = [];
  const add = (level: Level, check: string, message: string, fix?: string) =>
    out.push({ level, check, message, ...(fix ? { fix } : {}) });
  const mine = await ourVersions();

  await sql.begin('read only', async (tx) => {
    // ---- extensions
    const [ext] = await tx<
      { cron: boolean; cron_available: boolean; net: boolean; net_available: boolean }[]
    >`
      select exists (select 1 from pg_extension where extname = 'pg_cron') as cron,
             exists (select 1 from pg_available_extensions where name = 'pg_cron') as cron_available,
             (exists (select 1 from pg_extension where extname = 'pg_net') or to_regproc('net.http_post') is not null) as net,
             exists (select 1 from pg_available_extensions where name = 'pg_net') or to_regproc('net.http_post') is not null as net_available`;
    for (
      const [name, on, available] of [['pg_cron', ext.cron, ext.cron_available], [
        'pg_net',
        ext.net,
        ext.net_available,
      ]] as const
    ) {
      if (!available) {
        add(
          'blocking',
          'extensions',
          `${name} is not available on this database`,
          `enable ${name} in the dashboard (Database → Extensions); the migrations need it`,
        );
      } else if (!on) {
        add(
          'info',
          'extensions',
          `${name} is available, not yet enabled`,
          'the migrations enable it',
        );
      }
    }

    // ---- the table
    const columns = new Set((await tx<{ c: string }[]>`
      select column_name as c from information_schema.columns where table_schema = 'public' and table_name = 'generations'`)
      .map((r) => r.c));
    if (columns.size === 0) {
      add('info', 'table', 'public.generations does not exist yet', 'the migrations create it');
    } else {
      const missing = REQUIRED_COLUMNS.filter((c) => !columns.has(c));
      if (missing.length) {
        add(
          'blocking',
          'table',
          `public.generations lacks ${missing.join(', ')}`,
          'these columns are the contract this system reads; add them before the migrations',
        );
      }
    }
    const applied =
      (await tx<{ f: boolean }[]>`select to_regclass('public.preview_jobs') is not null as f`)[
        0
      ].f;

    // ---- what the app's own policies let clients write, and what changes for them
    out.push(...await clientWrites(tx, applied ? await mode(tx) : null));
    // ---- the app's columns that carry one of this system's names
    if (!applied && columns.size) {
      const own = OWN_COLUMNS.filter((c) => columns.has(c));
      const shared = own.filter((c) => CHECKLIST_COLUMNS.includes(c));
      const taken = own.filter((c) => !CHECKLIST_COLUMNS.includes(c));
      if (shared.length) {
        add(
          'info',
          'columns',
          `the app's ${shared.join(', ')} become this system's: it writes them, clients may not`,
          'stop the old preview worker that wrote them',
        );
      }
      if (taken.length) {
        add(
          'warning',
          'columns',
          `the app has column(s) named ${
            taken.join(', ')
          }, which this system adds for itself: it would write them and refuse them to clients`,
          "rename the app's column(s) before the migrations, or accept that this system owns them",
        );
      }
    }

    // ---- CLI migration history
    const history = (await tx<
        { t: boolean }[]
      >`select to_regclass('supabase_migrations.schema_migrations') is not null as t`)[0].t
      ? (await tx<
        { version: string }[]
      >`select version from supabase_migrations.schema_migrations order by version`).map((r) =>
        r.version
      )
      : [];
    const foreign = history.filter((v) => !mine.has(v));
    if (foreign.length) {
      add(
        'blocking',
        'migration-history',
        `the supabase CLI's migration history holds ${foreign.length} version(s) this repository does not have (${
          foreign.slice(0, 5).join(', ')
        }${foreign.length > 5 ? ', …' : ''}): \`supabase db push\` refuses to run`,
        `either copy migrations/*.sql into your project's supabase/migrations and push from there, or mark them as not ours: supabase migration repair --status reverted ${
          foreign.join(' ')
        } --db-url ${dbUrlForFixes}`,
      );
    }

    // ---- policies that let a caller write other users' rows or objects
    out.push(...await openWritePolicies(tx, dbUrlForFixes));

    // ---- the bucket
    const [bucket] = await tx<
      { public: boolean }[]
    >`select public from storage.buckets where id = 'generations'`;
    if (bucket?.public) {
      add(
        'warning',
        'bucket',
        'bucket generations is public: anyone with a path reads every original and preview',
        `npm run adopt -- --db-url ${dbUrlForFixes} --private-bucket, once the app reads signed URLs (stored public URLs stop working: see supabase/adoption/02_private_bucket.sql)`,
      );
    }
    const readAll = await tx<{ policyname: string }[]>`
      select policyname from pg_policies where schemaname = 'storage' and tablename = 'objects'
         and roles && array['public', 'anon']::name[] and cmd = 'SELECT'
         and coalesce(qual, '') !~ 'auth\\.(uid|jwt|role)\\(\\)' and coalesce(qual, '') ~ '''generations'''`;
    for (const p of readAll) {
      add(
        'warning',
        'bucket',
        `policy "${p.policyname}" lets anyone read every file of the bucket, even a private one, with the anon key`,
        `npm run adopt -- --db-url ${dbUrlForFixes} --private-bucket drops it`,
      );
    }

    if (columns.size === 0) return;

    // ---- an older preview worker still writing
    // processing rows of ours hold a running preview job; before the migrations none are ours
    const [worker] = applied
      ? await tx<{ n: number }[]>`
      select count(*)::int as n from public.generations g
       where g.preview_status = 'processing' and g.updated_at > now() - ${OLD_WORKER_WINDOW}::interval
         and not exists (select 1 from public.preview_jobs j
                          where j.generation_id = g.id and j.kind = 'preview' and j.state = 'running')`
      : await tx<{ n: number }[]>`
      select count(*)::int as n from public.generations g
       where g.preview_status = 'processing' and g.updated_at > now() - ${OLD_WORKER_WINDOW}::interval`;
    if (worker.n > 0) {
      add(
        'blocking',
        'old-worker',
        `${worker.n} row(s) were set to processing in the last ${OLD_WORKER_WINDOW} without this system's lease: an older preview worker is still running`,
        "stop the old worker (and its cron/poller) before the backfill: two renderers would overwrite each other's previews",
      );
    }

    // ---- invalid indexes (an interrupted CREATE INDEX CONCURRENTLY)
    const invalid = await tx<{ name: string; def: string }[]>`
      select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
        from pg_index i where i.indrelid = 'public.generations'::regclass and not i.indisvalid`;
    for (const ix of invalid) {
      add(
        'blocking',
        'indexes',
        `index ${ix.name} is INVALID (an interrupted concurrent build): queries ignore it and writes still maintain it`,
        `drop index concurrently ${ix.name}; ${
          ix.def.replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX CONCURRENTLY ')
        };`,
      );
    }

    if (!applied) {
      const [rows] = await tx<{ null_status: number; stuck: number; total: number }[]>`
        select count(*) filter (where preview_status is null)::int as null_status,
               count(*) filter (where preview_status = 'processing' and updated_at < now() - interval '1 hour')::int as stuck,
               count(*)::int as total
          from public.generations`;
      if (rows.null_status) {
        add(
          'info',
          'rows',
          `${rows.null_status} row(s) have no preview_status (NULL): treated as none once migrated`,
          'the backfill takes them',
        );
      }
      if (rows.stuck) {
        add(
          'info',
          'rows',
          `${rows.stuck} row(s) have been processing for over an hour without a lease`,
          'recovered after the lease once migrated (sweep, backfill)',
        );
      }
      add(
        'info',
        'migrations',
        `this system's migrations are not applied yet (${rows.total} generations)`,
        'supabase db push (npm run deploy), then run doctor again for the coverage report',
      );
      return;
    }

    // ---- after the migrations: mode, vault, cron, coverage
    // ---- the mode, and what it needs
    const m = await mode(tx);
    const [settings] = await tx<
      {
        result_columns: Record<string, string>;
        relay_url: string | null;
        expire_kie_tasks: boolean;
      }[]
    >`select result_columns, relay_url, expire_kie_tasks from public.preview_settings`;
    const [past] = await tx<{ n: number }[]>`select public.kie_tasks_past_retention() as n`;
    if (m === 'previews_only') {
      add(
        'info',
        'mode',
        "previews_only: the app's own KIE webhook writes its tasks; this system previews the rows it marks successful, never writes their status, results or error, and runs no pending sync (kie-callback and kie-sync answer 409)",
        "npm run deploy -- --only mode --mode kie-owner … hands KIE's callbacks to this system (docs/deploy.md)",
      );
    } else {
      const mapped = Object.entries(settings.result_columns).map(([k, c]) => `${k} → ${c}`);
      add(
        'info',
        'mode',
        `kie_owner: KIE's callbacks come to kie-callback; the app's result columns: ${
          mapped.join(', ') || 'none mapped'
        }; relay to the app's webhook: ${
          settings.relay_url ? new URL(settings.relay_url).host : 'off'
        }; expiry of tasks past 14 days: ${settings.expire_kie_tasks ? 'on' : 'off'}`,
      );
      const unmapped = ['results', 'completed_at', 'thumbnail_url'].filter((c) =>
        columns.has(c) && !Object.values(settings.result_columns).includes(c)
      );
      if (unmapped.length) {
        add(
          'warning',
          'mode',
          `the table has ${
            unmapped.join(', ')
          }, not mapped: results this system writes stay invisible to an app that reads them`,
          'npm run deploy -- --only mode --mode kie-owner --result-columns urls=results,first_url=result_url,completed_at=completed_at,thumbnail_url=thumbnail_url …',
        );
      }
    }
    for (
      const { problem } of await tx<{ problem: string }[]>`
      select p as problem from public.preview_settings_problems() p`
    ) {
      add('blocking', 'mode', problem, 'npm run deploy -- --only mode … with a mapping that fits');
    }
    if (past.n) {
      add(
        m === 'kie_owner' && settings.expire_kie_tasks ? 'warning' : 'info',
        'expiry',
        m === 'kie_owner' && settings.expire_kie_tasks
          ? `expiry is on: the next pending sync fails ${past.n} task(s) still running past KIE's 14 days`
          : `${past.n} task(s) are still running past KIE's 14 days: left as they are (expiry is off)`,
        m === 'kie_owner' && settings.expire_kie_tasks
          ? undefined
          : 'in kie_owner mode, --expire-kie-tasks fails them with a reason',
      );
    }

    const vault = new Set(
      (await tx<{ name: string }[]>`select name from vault.secrets where name = any(${VAULT})`).map(
        (r) => r.name,
      ),
    );
    const noVault = VAULT.filter((n) => !vault.has(n));
    if (noVault.length) {
      add(
        'blocking',
        'vault',
        `vault secret(s) ${
          noVault.join(', ')
        } missing: the trigger and pg_cron cannot call the functions`,
        'npm run deploy -- --only vault … (see docs/deploy.md)',
      );
    }
    const jobs = new Set(
      (await tx<{ jobname: string }[]>`select jobname from cron.job`).map((r) => r.jobname),
    );
    const noJobs = [...CRON_JOBS, ...(m === 'kie_owner' ? ['kie-sync-pending'] : [])]
      .filter((j) => !jobs.has(j));
    if (noJobs.length) {
      add(
        'blocking',
        'cron',
        `pg_cron job(s) ${noJobs.join(', ')} missing`,
        'apply the migrations again (20261203100800_cron.sql schedules them; the mode step the pending sync)',
      );
    }
    // the sweep's cadence follows pg_cron's version (20261203101900_recovery_pace.sql)
    const [sweep] = await tx<{ schedule: string | null; version: string | null }[]>`
      select (select schedule from cron.job where jobname = 'preview-sweep') as schedule,
             (select extversion from pg_extension where extname = 'pg_cron') as version`;
    if (sweep?.schedule === '* * * * *') {
      add(
        'info',
        'cron',
        `pg_cron ${sweep.version} runs the preview sweep every minute: a lost wake or a dead worker's job can wait up to a minute for it (every 10 s from pg_cron 1.5)`,
        'alter extension pg_cron update; then apply the migrations again (20261203101900_recovery_pace.sql reschedules the sweep)',
      );
    }

    const [todo] = await tx<{ n: number; null_status: number }[]>`
      select count(*)::int as n, count(*) filter (where c.preview_status is null)::int as null_status
        from public.backfill_candidates(null, null, null) b
        join public.generations c on c.id = b.id`;
    if (todo.n) {
      add(
        'info',
        'backfill',
        `${todo.n} row(s) need a preview and have no job${
          todo.null_status ? ` (${todo.null_status} with a NULL preview_status)` : ''
        }`,
        'npm run backfill:previews (with SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, SUPABASE_DB_URL)',
      );
    }
    const [orphans] = await tx<
      { n: number }[]
    >`select count(*)::int as n from public.preview_orphan_objects(100000)`;
    if (orphans.n) {
      add(
        'info',
        'orphans',
        `${orphans.n} object(s) at this system's paths have no row (deleted before the object lifecycle, or while a worker wrote)`,
        `npm run orphans -- --db-url ${dbUrlForFixes} --apply`,
      );
    }
    // ---- the ffmpeg core: a poster job refused a core whose bytes are not the pinned ones
    const core = await coreRejections(null, tx);
    if (core.failures) {
      add(
        core.poster_since ? 'warning' : 'blocking',
        'core',
        `${core.failures} poster job(s) failed CORE_INTEGRITY (last at ${core.last_at?.toISOString()}): the ffmpeg core in storage is not the one this version pins${
          core.poster_since ? ' (a poster was made since: probably fixed)' : ''
        }`,
        'npm run deploy -- --only core …, then npm run backfill:previews -- --retry-failed',
      );
    }

    // Jobs of every kind: terminal failures (kept 30 days) and dead workers' jobs waiting for a claim.
    const jobKinds = await tx<
      { kind: string; failed: number; expired: number; error: string | null }[]
    >`
      select j.kind, count(*) filter (where j.state = 'failed')::int as failed,
             count(*) filter (where j.state = 'running' and j.lease_until < now())::int as expired,
             (array_agg(j.last_error order by j.updated_at desc) filter (where j.state = 'failed'))[1] as error
        from public.preview_jobs j group by j.kind order by j.kind`;
    for (const j of jobKinds) {
      if (j.failed) {
        add(
          j.kind === 'delete_object' ? 'warning' : 'info',
          'jobs',
          `${j.failed} ${j.kind} job(s) failed for good (last: ${j.error})`,
          j.kind === 'delete_object'
            ? 'check the Storage API and the service key of generate-preview, then npm run orphans -- --apply'
            : 'npm run backfill:previews -- --retry-failed',
        );
      }
      if (j.expired) {
        add(
          'warning',
          'jobs',
          `${j.expired} ${j.kind} job(s) hold an expired lease (their worker died; the next claim or the minute sweep retries them)`,
          'check that the pg_cron job preview-sweep runs (select * from cron.job_run_details order by start_time desc limit 5)',
        );
      }
    }
    const coverage = await tx<
      { type: string; state: string; reason: string | null; total: number }[]
    >`
      select type, state, reason, total::int as total from public.preview_coverage
       where state in ('not_previewable', 'failed', 'unusable') or reason = 'stale_lease'
       order by state, type, reason`;
    // ready rows the library shows blank (an older server's mp4-only video, a missing object):
    // one finding, by reason; the backfill re-renders them (20261203101300_legacy_previews.sql)
    const unusable = coverage.filter((c) => c.state === 'unusable');
    if (unusable.length) {
      add(
        'info',
        'coverage',
        `${unusable.reduce((n, c) => n + c.total, 0)} ready row(s) have no usable preview image (${
          unusable.map((c) => `${c.reason}: ${c.total} ${c.type}`).join(', ')
        })`,
        'npm run backfill:previews re-renders them',
      );
    }
    for (const c of coverage.filter((c) => c.state !== 'unusable')) {
      add(
        'info',
        'coverage',
        c.state === 'not_previewable'
          ? `${c.total} ${c.type} row(s) get no preview: ${c.reason}`
          : c.state === 'failed'
          ? `${c.total} ${c.type} preview(s) failed: ${c.reason}`
          : `${c.total} ${c.type} row(s) processing past the lease`,
      );
    }
  });
  return out;
}

function mask(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:…@');
}

async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { 'db-url': { type: 'string' }, json: { type: 'boolean', default: false } },
    }));
    if (!values['db-url']) throw new Error('--db-url is required');
  } catch (err) {
    console.error(
      `doctor: ${
        err instanceof Error ? err.message : err
      }\nusage: npm run doctor -- --db-url <postgres URL> [--json]`,
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
    const findings = await diagnose(sql, mask(values['db-url']));
    const blocking = findings.filter((f) => f.level === 'blocking').length;
    if (values.json) {
      console.log(JSON.stringify({ findings, blocking }, null, 2));
    } else {
      console.log(`doctor: ${mask(values['db-url'])}`);
      for (const f of findings) {
        console.log(`${f.level.toUpperCase().padEnd(8)}  ${f.check.padEnd(17)} ${f.message}`);
        if (f.fix) console.log(`${' '.repeat(28)}fix: ${f.fix}`);
      }
      const warnings = findings.filter((f) => f.level === 'warning').length;
      console.log(
        `doctor: ${blocking} blocking, ${warnings} warning(s), ${
          findings.length - blocking - warnings
        } info`,
      );
    }
    return blocking > 0 ? 1 : 0;
  } catch (err) {
    console.error(`doctor: ${err instanceof Error ? err.message : err}`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
