/**
 * The database, reached directly through SUPABASE_DB_URL with postgres.js (`prepare: false`
 * so it also works through Supabase's transaction pooler). Every state change is a named SQL
 * function from the migrations; this module only calls them and writes no ad-hoc UPDATE of
 * preview state.
 */
import postgres from 'postgres';
import { getConfig } from './config.ts';
import type { Database } from './database.types.ts';
import type { KieWrite } from './sync.ts';

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
async function reconnecting<T>(fn: () => Promise<T>): Promise<T> {
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

/** The preview a generation gets (the database's preview_kind): preview_path or poster_path. */
export type PreviewKind = 'image' | 'video';

type Fns = Database['public']['Functions'];
type Row = Database['public']['Tables']['generations']['Row'];

/**
 * What claim_preview returns (types generated from the database by `supabase gen types`): the
 * source is original_path (an object of ours) when set, else source_url.
 */
export type Claim =
  & Omit<
    Fns['claim_preview']['Returns'][number],
    'kind' | 'model' | 'original_path' | 'source_url' | 'cover_url'
  >
  & {
    /** target_path: where the preview goes; original_stem: the original copy's path without extension. */
    /** KIE's cover image of a video, the poster's fallback (apply_kie_result stores it). */
    cover_url: string | null;
    /** lease_ms: how long the claim is ours (the database's preview_lease()). */
    kind: PreviewKind;
    model: string | null;
    original_path: string | null;
    source_url: string | null;
  };

export type SyncOutcome = Fns['apply_kie_result']['Returns'][number];

/** A task's row as the sync sees it; `model` is the database's generation_model(). */
export type GenerationRef =
  & Pick<Row, 'id' | 'user_id' | 'task_id' | 'type' | 'status' | 'preview_status' | 'asset_url'>
  & {
    model: string | null;
  };

/** The preview state machine as TypeScript sees it: the narrow interface tests can swap. */
export interface PreviewStore {
  /** The lease is the database's preview_lease(), the one definition the sweep uses too. */
  claim(generationId: string): Promise<Claim | null>;
  /** Whether this attempt still holds the claim (checked right before writing objects). */
  isCurrent(c: Claim): Promise<boolean>;
  complete(
    c: Claim,
    r: {
      path: string;
      width: number;
      height: number;
      thumbhash: string;
      originalPath: string | null;
      version: string;
    },
  ): Promise<boolean>;
  fail(
    c: Claim,
    e: { code: string; message: string; retryable: boolean },
  ): Promise<'retry' | 'failed' | null>;
  /** After a video's poster (PREVIEW_ANIMATED on): ask for its animated preview, a step of its own. */
  requestAnimated(id: string): Promise<boolean>;
  /** The isolate is ending: the claim goes back to `none` (release_preview_claim). */
  releaseClaim(c: Claim): Promise<boolean>;
  /** Rows this worker declined before claiming: their dispatch slots are free again. */
  releaseDispatches(ids: string[]): Promise<void>;
  /** Fills the free dispatch slots with the rows waiting for one (dispatch_next_previews). */
  dispatchNext(): Promise<number>;
}

/** What claim_animated_preview returns: the source, where the clip goes, the attempt (fencing token). */
export type AnimatedClaim = Fns['claim_animated_preview']['Returns'][number] & {
  original_path: string | null;
  source_url: string | null;
};

/** The animated preview's step: claim, complete and fail, fenced like the poster's. */
export interface AnimatedStore {
  claim(generationId: string): Promise<AnimatedClaim | null>;
  complete(c: AnimatedClaim, path: string): Promise<boolean>;
  fail(
    c: AnimatedClaim,
    e: { code: string; retryable: boolean },
  ): Promise<'retry' | 'failed' | null>;
}

export function createAnimatedStore(db: Sql = getSql()): AnimatedStore {
  return {
    async claim(generationId) {
      const rows = await reconnecting(() =>
        db<AnimatedClaim[]>`select * from public.claim_animated_preview(${generationId}::uuid)`
      );
      return rows[0] ?? null;
    },
    async complete(c, path) {
      const [row] = await reconnecting(() =>
        db`select public.complete_animated_preview(${c.id}::uuid, ${c.attempt}, ${path}) as ok`
      );
      return row.ok === true;
    },
    async fail(c, e) {
      const [row] = await reconnecting(() =>
        db`select public.fail_animated_preview(${c.id}::uuid, ${c.attempt}, ${e.code}, ${e.retryable}) as state`
      );
      return row.state ?? null;
    },
  };
}

export function createPreviewStore(db: Sql = getSql()): PreviewStore {
  return {
    // Each call is retried on connection errors (reconnecting). A claim whose first try reached
    // the server before the connection died finds the row claimed on the retry (skipped; the
    // lease expires and the sweep sends it again); complete and fail are fenced by the attempt.
    async claim(generationId) {
      const rows = await reconnecting(() =>
        db<Claim[]>`select * from public.claim_preview(${generationId}::uuid)`
      );
      return rows[0] ?? null;
    },
    async isCurrent(c) {
      const [row] = await reconnecting(() =>
        db`select public.preview_claim_is_current(${c.id}::uuid, ${c.attempt}) as current`
      );
      return row.current === true;
    },
    async complete(c, r) {
      const [row] = await reconnecting(() =>
        db`
        select public.complete_preview(${c.id}::uuid, ${c.attempt}, ${r.path}, ${r.width}, ${r.height},
          ${r.thumbhash}, ${r.originalPath}, ${r.version}) as ok`
      );
      return row.ok === true;
    },
    async fail(c, e) {
      const [row] = await reconnecting(() =>
        db`
        select public.fail_preview(${c.id}::uuid, ${c.attempt}, ${e.code}, ${e.message}, ${e.retryable}) as state`
      );
      return row.state ?? null;
    },
    async requestAnimated(id) {
      const [row] = await reconnecting(() =>
        db`select public.request_animated_preview(${id}::uuid) as ok`
      );
      return row.ok === true;
    },
    async releaseClaim(c) {
      const [row] = await reconnecting(() =>
        db`select public.release_preview_claim(${c.id}::uuid, ${c.attempt}) as ok`
      );
      return row.ok === true;
    },
    async releaseDispatches(ids) {
      await reconnecting(() => db`select public.release_preview_dispatches(${ids}::uuid[])`);
    },
    async dispatchNext() {
      const [row] = await reconnecting(() => db`select public.dispatch_next_previews() as n`);
      return Number(row.n);
    },
  };
}

/** The queue of objects to delete through the Storage API (preview_object_deletions). */
export interface DeletionStore {
  /** Due deletions, claimed for a minute (paths a row references again are dropped first). */
  claim(limit: number): Promise<{ path: string; attempt: number }[]>;
  complete(paths: string[]): Promise<void>;
  /** Due again after the one backoff. */
  fail(paths: string[], error: string): Promise<void>;
}

export function createDeletionStore(db: Sql = getSql()): DeletionStore {
  return {
    claim: (limit) =>
      reconnecting(() =>
        db<
          { path: string; attempt: number }[]
        >`select * from public.claim_preview_object_deletions(${limit})`
      ),
    async complete(paths) {
      await reconnecting(() => db`select public.complete_preview_object_deletions(${paths})`);
    },
    async fail(paths, error) {
      await reconnecting(() => db`select public.fail_preview_object_deletions(${paths}, ${error})`);
    },
  };
}

/** The one write of a KIE sync (terminal states final; no write when nothing changes). */
export async function applyKieResult(r: KieWrite, db: Sql = getSql()): Promise<SyncOutcome | null> {
  const rows = await db<SyncOutcome[]>`
    select * from public.apply_kie_result(${r.taskId}, ${r.state}, ${
    db.json(r.resultUrls)
  }, ${r.assetUrl}, ${r.error}, ${r.coverUrl})`;
  return rows[0] ?? null;
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
