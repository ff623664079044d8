/**
 * Backfill previews and posters for old generations:
 *
 *   npm run backfill:previews -- --limit=10 --concurrency=2
 *
 * Options:
 *   --limit=N            at most N items this run (default: all)
 *   --concurrency=N      generate-preview calls in flight at once (default 2)
 *   --type=photo|product|video|audio   only one type
 *   --retry-failed       also take rows whose preview failed (reset to none, then claimed)
 *   --animated           instead: the animated previews of ready videos that have none yet
 *   --stale              instead: re-render ready previews another renderer or other settings made
 *                        (preview_version other than the deployment's, from health?version=1)
 *   --since=DATE         only rows created at or after DATE (ISO 8601)
 *   --until=DATE         only rows created before DATE
 *   --dry-run            list what would be queued; change nothing
 *   --stack-env=FILE     target the local stack described by FILE (default .local/dev/stack.env)
 *
 * Target: with SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY (or a `sb_secret_…` key) and
 * SUPABASE_DB_URL in the environment (and no --stack-env), a real project; otherwise the
 * local stack. Exits 1 when any item failed, 2 on bad usage.
 */
import postgres from 'postgres';
import {
  type BackfillOptions,
  type BackfillSummary,
  coverage,
  type CoverageRow,
  deployedPreviewVersion,
  httpTarget,
  type Progress,
  queueLine,
  runBackfill,
} from './backfill.ts';
import { parseEnvFile } from '../local/env-file.ts';

type Target = { url: string; serviceKey: string; dbUrl: string; label: string };

const USAGE =
  'usage: backfill-previews [--limit=N] [--concurrency=N] [--type=photo|product|video|audio] [--retry-failed] [--stale] [--animated] ' +
  '[--since=DATE] [--until=DATE] [--dry-run] [--stack-env=FILE]';

class UsageError extends Error {}

export function parseArgs(args: string[]): BackfillOptions & { stackEnv?: string; help?: boolean } {
  const o: BackfillOptions & { stackEnv?: string; help?: boolean } = { concurrency: 2 };
  const int = (name: string, v: string | undefined, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${v}"`);
    }
    return n;
  };
  const date = (name: string, v: string | undefined) => {
    const d = new Date(v ?? '');
    if (!v || Number.isNaN(d.getTime())) {
      throw new UsageError(`--${name} must be a date (ISO 8601), got "${v}"`);
    }
    return d;
  };
  for (let i = 0; i < args.length; i++) {
    const m = args[i].match(/^--([\w-]+)(?:=(.*))?$/);
    if (!m) throw new UsageError(`unexpected argument "${args[i]}"`);
    const [, name, inline] = m;
    const flag = ['retry-failed', 'stale', 'animated', 'dry-run', 'help'].includes(name);
    const value = flag ? inline : inline ?? args[++i];
    switch (name) {
      case 'limit':
        o.limit = int(name, value, 1, 10_000_000);
        break;
      case 'concurrency':
        o.concurrency = int(name, value, 1, 64);
        break;
      case 'type':
        if (value !== 'photo' && value !== 'product' && value !== 'video' && value !== 'audio') {
          throw new UsageError(`--type must be photo, product, video or audio, got "${value}"`);
        }
        o.type = value;
        break;
      case 'since':
        o.since = date(name, value);
        break;
      case 'until':
        o.until = date(name, value);
        break;
      case 'retry-failed':
        o.retryFailed = value !== 'false';
        break;
      case 'stale':
        o.stale = value === 'false' ? undefined : 'deployed';
        break;
      case 'animated':
        o.animated = value !== 'false';
        break;
      case 'dry-run':
        o.dryRun = value !== 'false';
        break;
      case 'stack-env':
        if (!value) throw new UsageError('--stack-env needs a file');
        o.stackEnv = value;
        break;
      case 'help':
        o.help = true;
        break;
      default:
        throw new UsageError(`unknown option --${name}`);
    }
  }
  return o;
}

function resolveTarget(stackEnv: string | undefined): Target {
  const get = (n: string) => Deno.env.get(n) || undefined;
  const serviceKey = get('SUPABASE_SERVICE_ROLE_KEY') ?? get('SUPABASE_SECRET_KEY');
  if (!stackEnv && get('SUPABASE_URL') && serviceKey && get('SUPABASE_DB_URL')) {
    return {
      url: get('SUPABASE_URL')!,
      serviceKey,
      dbUrl: get('SUPABASE_DB_URL')!,
      label: get('SUPABASE_URL')!,
    };
  }
  if (!stackEnv && get('SUPABASE_URL')) {
    const missing = ['SUPABASE_SERVICE_ROLE_KEY', 'SUPABASE_DB_URL'].filter((n) =>
      !get(n) && !(n === 'SUPABASE_SERVICE_ROLE_KEY' && serviceKey)
    );
    throw new UsageError(
      `SUPABASE_URL is set but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not`,
    );
  }
  const file = stackEnv ?? new URL('../.local/dev/stack.env', import.meta.url).pathname;
  let env: Record<string, string>;
  try {
    env = parseEnvFile(Deno.readTextFileSync(file));
  } catch {
    throw new UsageError(
      `no local stack (${file} not found): run npm run stack:start, or set SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY and SUPABASE_DB_URL`,
    );
  }
  for (const k of ['API_URL', 'SERVICE_ROLE_KEY', 'DB_URL']) {
    if (!env[k]) throw new UsageError(`${file} has no ${k}`);
  }
  return {
    url: env.API_URL,
    serviceKey: env.SERVICE_ROLE_KEY,
    dbUrl: env.DB_URL,
    label: `local stack ${env.API_URL}`,
  };
}

// ---------------------------------------------------------------- output

const enc = new TextEncoder();
const write = (s: string) => Deno.stdout.writeSync(enc.encode(s));

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const m = Math.floor(seconds / 60);
  return m < 60
    ? `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function bar(p: Progress): string {
  const finished = p.done + p.failed + p.skipped;
  const elapsed = (performance.now() - p.startedAt) / 1000;
  const rate = elapsed > 0 ? finished / elapsed : 0;
  const total = p.total ?? 0;
  const width = 24;
  const fill = total > 0 ? Math.min(width, Math.round((finished / total) * width)) : 0;
  const eta = total > 0 && rate > 0 ? duration((total - finished) / rate) : '?';
  return `[${'█'.repeat(fill)}${'░'.repeat(width - fill)}] ${finished}/${p.total ?? '?'}  ` +
    `done ${p.done}  failed ${p.failed}  skipped ${p.skipped}  ${rate.toFixed(2)}/s  ETA ${eta}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    '│ ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' │ ') +
    ' │';
  const rule = (l: string, m: string, r: string) =>
    l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r;
  return [
    rule('┌', '┬', '┐'),
    line(rows[0]),
    rule('├', '┼', '┤'),
    ...rows.slice(1).map(line),
    rule('└', '┴', '┘'),
  ].join('\n');
}

function printSummary(s: BackfillSummary, dryRun: boolean) {
  const rows = [['type', dryRun ? 'would queue' : 'ready', 'failed', 'skipped']];
  for (const t of ['photo', 'product', 'video', 'audio'] as const) {
    const b = s.byType[t];
    rows.push([t, String(dryRun ? b.listed : b.ready), String(b.failed), String(b.skipped)]);
  }
  rows.push([
    'total',
    String(dryRun ? s.listed : s.ready),
    String(s.failed + s.retry + s.errors),
    String(s.skipped),
  ]);
  write(`\n${table(rows)}\n`);
  write(
    `${s.candidates} candidate(s) in ${s.seconds.toFixed(1)}s` +
      (dryRun ? ' (dry run: nothing changed)\n' : `, ${s.perSecond.toFixed(2)} items/s\n`),
  );
  const failures = s.outcomes.filter((o) => ['failed', 'retry', 'error'].includes(o.result));
  for (const f of failures) {
    write(
      `  ✗ ${f.type} ${f.id}: ${f.result}${f.code ? ` ${f.code}` : ''}${
        f.error ? ` ${f.error}` : ''
      }\n`,
    );
  }
  if (s.candidates === 0) write('nothing to do\n');
}

/** Rows without a ready preview after the run, counted by reason: none is silently skipped. */
function printCoverage(rows: CoverageRow[]) {
  const open = rows.filter((r) => r.state !== 'ready');
  if (open.length === 0) return;
  write('\nrows without a ready preview (public.preview_coverage):\n');
  write(
    `${
      table([
        ['state', 'type', 'reason', 'rows'],
        ...open.map((r) => [r.state, r.type, r.reason ?? '-', String(r.total)]),
      ])
    }\n`,
  );
}

async function main(): Promise<number> {
  let opts: ReturnType<typeof parseArgs>;
  let target: Target;
  try {
    opts = parseArgs(Deno.args);
    if (opts.help) {
      write(`${USAGE}\n`);
      return 0;
    }
    target = resolveTarget(opts.stackEnv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    Deno.stderr.writeSync(enc.encode(`backfill: ${err.message}\n${USAGE}\n`));
    return 2;
  }
  const tty = Deno.stdout.isTerminal();
  const sql = postgres(target.dbUrl, {
    max: 2,
    prepare: false,
    onnotice: () => {},
    connect_timeout: 10,
  });
  write(
    `backfill: ${target.label}${opts.dryRun ? ' (dry run)' : ''}, concurrency ${opts.concurrency}` +
      `${opts.limit ? `, limit ${opts.limit}` : ''}${opts.type ? `, type ${opts.type}` : ''}` +
      `${opts.retryFailed ? ', retrying failed' : ''}${
        opts.since ? `, since ${opts.since.toISOString()}` : ''
      }` +
      `${opts.until ? `, until ${opts.until.toISOString()}` : ''}\n`,
  );
  let last = '';
  const redraw = (p: Progress) => {
    if (!tty) return;
    last = bar(p);
    write(`\r\x1b[2K${last}`);
  };
  const say = (line: string, p?: Progress) => {
    if (tty) write('\r\x1b[2K');
    write(`${line}\n`);
    if (p) redraw(p);
    else if (tty && last) write(last);
  };
  try {
    if (opts.stale) {
      opts.stale = await deployedPreviewVersion(target.url);
      say(`backfill: --stale: re-rendering ready previews not made by ${opts.stale}`);
    }
    const summary = await runBackfill(
      httpTarget({ sql, supabaseUrl: target.url, serviceKey: target.serviceKey }),
      opts,
      {
        onWorkerLimit: (c, message) =>
          say(`! ${c.type} ${c.id}: ${message}; retrying once its lease lapses`),
        onQueued: (c) =>
          say(
            opts.dryRun
              ? `would queue ${c.type} ${c.id} (created ${c.created_at.toISOString()}, preview ${c.preview_status})`
              : queueLine(c, opts.animated),
          ),
        onResult: (o, p) => {
          if (o.result === 'listed') return redraw(p);
          const mark = o.result === 'ready'
            ? '✓'
            : o.result === 'skipped' || o.result === 'fenced'
            ? '·'
            : '✗';
          const detail = o.result === 'ready'
            ? o.path
            : o.result === 'skipped' || o.result === 'fenced'
            ? 'claimed elsewhere'
            : `${o.code ?? ''} ${o.error ?? ''}`.trim();
          if (tty) redraw(p);
          else say(`${mark} ${o.type} ${o.id} ${o.result} ${o.ms}ms ${detail ?? ''}`.trimEnd());
        },
      },
    );
    if (tty) write('\r\x1b[2K' + (last ? `${last}\n` : ''));
    printSummary(summary, !!opts.dryRun);
    printCoverage(await coverage(sql));
    return summary.failed + summary.retry + summary.errors > 0 ? 1 : 0;
  } catch (err) {
    if (tty) write('\n');
    Deno.stderr.writeSync(enc.encode(`backfill: ${err instanceof Error ? err.message : err}\n`));
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

if (import.meta.main) Deno.exit(await main());
