/**
 * The database, reached directly through SUPABASE_DB_URL with postgres.js (`prepare: false`
 * so it also works through Supabase's transaction pooler). Every state change is a named SQL
 * function from the migrations; this module only calls them and writes no ad-hoc UPDATE of
 * preview state.
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

/** Retries of a call that failed on the connection: 0.2 + 0.4 + 0.8 + 1.6 + 2 s, about 5 s in all. */
const RECONNECT_DELAYS_MS = [200, 400, 800, 1600, 2000];

/**
 * fn, tried again while it fails on the connection (the first use after a server restart, a
 * server still running crash recovery), for about 5 s; other errors are thrown at once.
 */
export async function reconnecting<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0;; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransientDbError(err) || i >= RECONNECT_DELAYS_MS.length) throw err;
      await new Promise((r) => setTimeout(r, RECONNECT_DELAYS_MS[i]));
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
  const rows = await db<SyncOutcome[]>`
    select * from public.apply_kie_result(${r.taskId}, ${r.state}, ${
    db.json(r.resultUrls)
  }, ${r.assetUrl}, ${r.error}, ${r.coverUrl})`;
  return rows[0] ?? null;
}

/** previews_only (the app's webhook owns its KIE tasks) or kie_owner (kie-callback and kie-sync do). */
export type PreviewMode = 'previews_only' | 'kie_owner';

export async function previewMode(db: Sql = getSql()): Promise<PreviewMode> {
  const [row] = await db<{ mode: PreviewMode }[]>`select public.preview_mode() as mode`;
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
  const [row] = await db<{ r: 'queued' | 'relayed_before' | 'off' | 'unknown_task' }[]>`
    select public.queue_kie_relay(${w.taskId},
      coalesce(${body}::jsonb, public.kie_relay_body(${w.taskId}, ${w.state}, ${urls}, ${w.error}, ${w.coverUrl})),
      ${db.json(headers)}) as r`;
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
  const [row] = await db<{ use: 'first' | 'repeat' | 'replay' }[]>`
    select public.record_kie_callback(${taskId}, ${signedAt}, ${bodySha256}) as use`;
  return row.use;
}

/** Whether `presented` is the vault's dispatch secret (what pg_net's requests carry). */
export async function dispatchSecretOk(presented: string, db: Sql = getSql()): Promise<boolean> {
  const [row] = await db<
    { ok: boolean }[]
  >`select public.preview_dispatch_secret_ok(${presented}) as ok`;
  return row.ok === true;
}

export async function findGenerationByTask(
  taskId: string,
  db: Sql = getSql(),
): Promise<GenerationRef | null> {
  // the newest row of the task, the one apply_kie_result writes
  const rows = await db<GenerationRef[]>`
    select g.id, g.user_id, g.task_id, g.type, g.status, g.preview_status, public.generation_model(g) as model, g.asset_url
      from public.generations g where g.task_id = ${taskId} order by g.created_at desc limit 1`;
  return rows[0] ?? null;
}

/** The pending sync asked KIE about these tasks: the next batch takes others first. */
export async function recordKieChecks(taskIds: string[], db: Sql = getSql()): Promise<void> {
  if (taskIds.length) await db`select public.record_kie_checks(${taskIds})`;
}

export async function pendingKieTasks(limit: number, db: Sql = getSql()) {
  return await db<{ id: string; task_id: string; model: string | null; type: string }[]>`
    select id, task_id, model, type from public.pending_kie_tasks(${limit})`;
}
