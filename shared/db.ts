/**
 * The database, reached directly through SUPABASE_DB_URL with postgres.js (`prepare: false`
 * so it also works through Supabase's transaction pooler). Every state change is a named SQL
 * function from the migrations; this module only calls them and writes no ad-hoc UPDATE of
 * preview state. Every call goes through one retry policy (reconnecting): a connection error is
 * tried again for about 5 s, or, for a call made while holding a job, until that job's lease would
 * end. A write retried after its first try committed finds its own work done, as when KIE, pg_net
 * or the sweep sends the request again after a 500.
 */
import postgres from 'postgres';
import { getConfig } from './config.ts';
import type { Database } from './database.types.ts';
import type { KieCallback, KieWrite } from './sync.ts';

export type Sql = postgres.Sql;

let sql: Sql | undefined;

/**
 * Errors of the connection, not of the statement: a server that restarted or crashed, a socket
 * that died while idle, a server not accepting connections yet. The pool opens a new connection
 * on the next query, so one more try is what recovers.
 */
export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return [
    'CONNECTION_CLOSED',
    'CONNECTION_ENDED',
    'CONNECTION_DESTROYED',
    'CONNECT_TIMEOUT',
    'ECONNREFUSED',
    'ECONNRESET',
    'EPIPE',
    'ETIMEDOUT',
  ]
    .includes(code) || code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code);
}

/** The waits between tries of a call that failed on the connection: 0.2, 0.4, 0.8, 1.6 s, then 2 s each. */
const RECONNECT_DELAYS_MS = [200, 400, 800, 1600, 2000];

/**
 * How long a call that holds no job keeps trying: its last try starts within 5.5 s of its first,
 * that is the five waits above (0.2 + 0.4 + 0.8 + 1.6 + 2 s), about 5 s.
 */
export const RECONNECT_BUDGET_MS = 5_500;

/** How a call is retried on the connection (reconnecting). */
export type RetryPolicy = {
  /**
   * No try starts after this (performance.now() ms), read again after each failure: for a call
   * made while holding a job, when that job's lease would end less a margin (its heartbeats move
   * it on: shared/jobs/runner.ts). Default: RECONNECT_BUDGET_MS after the first try.
   */
  until?: number | (() => number);
  /** Told before each wait (the runner logs a held job's retries). */
  onRetry?: (err: unknown, inMs: number) => void;
};

/**
 * The one retry policy of every database call: fn, tried again while it fails on the connection
 * (a server that restarted, crashed or is still in crash recovery; a pooled connection that died
 * while idle, the first call of a request included), waiting 0.2 s doubling to 2 s between tries,
 * until `until` (a held job's lease; about 5 s otherwise). Other errors are thrown at once, and so
 * is the last connection error.
 */
export async function reconnecting<T>(fn: () => Promise<T>, policy: RetryPolicy = {}): Promise<T> {
  const first = performance.now();
  const until = () =>
    typeof policy.until === 'function'
      ? policy.until()
      : policy.until ?? first + RECONNECT_BUDGET_MS;
  for (let i = 0;; i++) {
    try {
      return await fn();
    } catch (err) {
      const wait = RECONNECT_DELAYS_MS[Math.min(i, RECONNECT_DELAYS_MS.length - 1)];
      if (!isTransientDbError(err) || performance.now() + wait > until()) throw err;
      policy.onRetry?.(err, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/**
 * postgres.js waits before reconnecting, longer after each failed attempt (up to 20 s by
 * default): after a restart a worker whose connections failed while the server was down would
 * fail its next claims for seconds. Ours: 0.1 s per failed attempt, at most 1 s.
 */
export const RECONNECT_BACKOFF = (attempt: number) => Math.min(0.1 * attempt, 1);

/** One small pool per isolate, created on first use. */
export function getSql(): Sql {
  sql ??= postgres(getConfig().dbUrl, {
    max: 3,
    prepare: false,
    idle_timeout: 20,
    connect_timeout: 10,
    backoff: RECONNECT_BACKOFF,
    onnotice: () => {},
  });
  return sql;
}

type Fns = Database['public']['Functions'];
type Row = Database['public']['Tables']['generations']['Row'];

export type SyncOutcome = Fns['apply_kie_result']['Returns'][number];

/** A task's row as the sync sees it; `model` is the database's generation_model(). */
export type GenerationRef =
  & Pick<Row, 'id' | 'user_id' | 'task_id' | 'type' | 'status' | 'preview_status' | 'asset_url'>
  & {
    model: string | null;
  };

/** The one write of a KIE sync (terminal states final; no write when nothing changes). */
export async function applyKieResult(r: KieWrite, db: Sql = getSql()): Promise<SyncOutcome | null> {
  const rows = await reconnecting(() =>
    db<SyncOutcome[]>`
    select * from public.apply_kie_result(${r.taskId}, ${r.state}, ${
      db.json(r.resultUrls)
    }, ${r.assetUrl}, ${r.error}, ${r.coverUrl})`
  );
  return rows[0] ?? null;
}

/** previews_only (the app's webhook owns its KIE tasks) or kie_owner (kie-callback and kie-sync do). */
export type PreviewMode = 'previews_only' | 'kie_owner';

export async function previewMode(db: Sql = getSql()): Promise<PreviewMode> {
  const [row] = await reconnecting(() =>
    db<{ mode: PreviewMode }[]>`select public.preview_mode() as mode`
  );
  return row.mode;
}

/**
 * kie_owner with a relay URL: a finished task is relayed to the app's previous webhook by a
 * `relay` job, once per task, ever: the callback as it came, or, for a result no callback carried
 * (the pending sync, a manual sync), the one KIE's jobs API would have sent (kie_relay_body).
 * 'off' when relaying is not configured.
 */
export async function queueKieRelay(
  w: KieWrite,
  callback?: KieCallback,
  db: Sql = getSql(),
): Promise<'queued' | 'relayed_before' | 'off' | 'unknown_task'> {
  const body = callback ? db.json(callback.body as postgres.JSONValue) : null;
  const headers = callback?.headers ?? { 'x-preview-relay-source': 'sync' };
  const urls = db.json(w.resultUrls);
  const [row] = await reconnecting(() =>
    db<{ r: 'queued' | 'relayed_before' | 'off' | 'unknown_task' }[]>`
    select public.queue_kie_relay(${w.taskId},
      coalesce(${body}::jsonb, public.kie_relay_body(${w.taskId}, ${w.state}, ${urls}, ${w.error}, ${w.coverUrl})),
      ${db.json(headers)}) as r`
  );
  return row.r;
}

/**
 * Remembers a signed KIE callback by (task, X-Webhook-Timestamp): 'first', 'repeat' (the same
 * body again: a redelivery) or 'replay' (another body under a used signature: refuse).
 */
export async function recordKieCallback(
  taskId: string,
  signedAt: number,
  bodySha256: string,
  db: Sql = getSql(),
): Promise<'first' | 'repeat' | 'replay'> {
  const [row] = await reconnecting(() =>
    db<{ use: 'first' | 'repeat' | 'replay' }[]>`
    select public.record_kie_callback(${taskId}, ${signedAt}, ${bodySha256}) as use`
  );
  return row.use;
}

/**
 * The poster jobs that refused the ffmpeg core (CORE_INTEGRITY), in the last `within` (an
 * interval; null: all that are kept), the last one's time and text, and whether a video got its
 * poster after it: a worker compiled a verified core since (the row's updated_at stands in for
 * when). health and doctor read the same answer.
 */
export async function coreRejections(
  within: string | null,
  db: Sql | postgres.TransactionSql = getSql(),
): Promise<{
  failures: number;
  last_at: Date | null;
  last_error: string | null;
  poster_since: boolean;
}> {
  const [f] = await reconnecting(() =>
    db<
      { failures: number; last_at: Date | null; last_error: string | null; poster_since: boolean }[]
    >`
      with f as (
        select count(*)::int as failures, max(updated_at) as last_at,
               (array_agg(last_error order by updated_at desc))[1] as last_error
          from public.preview_jobs
         where state = 'failed' and last_error_code = 'CORE_INTEGRITY'
           and (${within}::interval is null or updated_at > now() - ${within}::interval)
      )
      select f.*, f.failures > 0 and exists (
               select 1 from public.generations g
                where g.preview_status = 'ready' and g.poster_path is not null
                  and g.updated_at > f.last_at
             ) as poster_since
        from f`
  );
  return f;
}

/**
 * A slot of KIE's rate from the database (kie_rate_acquire): one pace for every caller in every
 * isolate, the pending syncs, manual syncs and callbacks together. The ms to wait, or null when
 * no slot comes within maxWaitMs.
 */
export async function kieRateAcquire(
  maxWaitMs: number,
  db: Sql = getSql(),
): Promise<number | null> {
  const [row] = await reconnecting(() =>
    db<{ wait_ms: number | null }[]>`
      select public.kie_rate_acquire(${Math.max(0, Math.floor(maxWaitMs))}::int) as wait_ms`
  );
  return row?.wait_ms ?? null;
}

/**
 * Whether `presented` is the vault's dispatch secret (what pg_net's requests carry). Often the
 * first database call of a request: on a pooled connection that died while idle (a Postgres
 * restart) it is retried like every other call, not answered 500.
 */
export async function dispatchSecretOk(presented: string, db: Sql = getSql()): Promise<boolean> {
  const [row] = await reconnecting(() =>
    db<{ ok: boolean }[]>`select public.preview_dispatch_secret_ok(${presented}) as ok`
  );
  return row.ok === true;
}

export async function findGenerationByTask(
  taskId: string,
  db: Sql = getSql(),
): Promise<GenerationRef | null> {
  // the newest row of the task, the one apply_kie_result writes
  const rows = await reconnecting(() =>
    db<GenerationRef[]>`
    select g.id, g.user_id, g.task_id, g.type, g.status, g.preview_status, public.generation_model(g) as model, g.asset_url
      from public.generations g where g.task_id = ${taskId} order by g.created_at desc limit 1`
  );
  return rows[0] ?? null;
}

/** The pending sync asked KIE about these tasks: the next batch takes others first. */
export async function recordKieChecks(taskIds: string[], db: Sql = getSql()): Promise<void> {
  if (taskIds.length) await reconnecting(() => db`select public.record_kie_checks(${taskIds})`);
}

export async function pendingKieTasks(limit: number, db: Sql = getSql()) {
  return await reconnecting(() =>
    db<{ id: string; task_id: string; model: string | null; type: string }[]>`
    select id, task_id, model, type from public.pending_kie_tasks(${limit})`
  );
}
