/**
 * The preview backfill: walks the rows the database says still need a preview
 * (backfill_preview_candidates: backfill_candidates' none or NULL rows without a job and an earlier
 * system's leftovers, plus ready rows whose preview the library cannot show, such as a legacy
 * video whose only preview is an mp4, each with its reason), oldest first, by keyset pagination
 * (never OFFSET, never a self-enqueuing chain), and sends each through `generate-preview?wait=1`,
 * which queues the row's preview job and runs it, so the same jobs, claims and fencing apply as for
 * new generations. At most `concurrency` requests run at once.
 *
 * Safe to interrupt and rerun: nothing is remembered between runs, the database is the state. Two
 * runs at once race only at the job's claim, where one caller wins and the other gets `skipped`,
 * so every object is written once.
 *
 * This module reads no environment: the CLI (scripts/backfill-previews.ts) builds the target
 * and passes it in.
 */
import type postgres from 'postgres';

export type BackfillType = 'photo' | 'product' | 'video' | 'audio';

export type BackfillOptions = {
  /** At most this many items in this run (undefined: all). */
  limit?: number;
  /** Requests in flight at once. */
  concurrency: number;
  type?: BackfillType;
  /** Also take `failed` rows (back to `none` with a fresh job first). */
  retryFailed?: boolean;
  /** Re-render ready previews of any preview_version but this one (the deployment's), oldest first. */
  stale?: string;
  /** Instead: the animated previews of ready videos never asked for, or whose clip failed, oldest first. */
  animated?: boolean;
  /** Only rows created at or after this instant. */
  since?: Date;
  /** Only rows created before this instant (the walk stops there). */
  until?: Date;
  /** List what would be queued; change nothing. */
  dryRun?: boolean;
  /** Rows per keyset page. */
  pageSize?: number;
};

export type Candidate = {
  id: string;
  user_id: string;
  type: BackfillType;
  created_at: Date;
  preview_status: string;
  /**
   * Why a `ready` row's preview is unusable (preview_unusable_reason: legacy_video_preview,
   * missing_object, …): the row is re-rendered. Null otherwise.
   */
  reason?: string | null;
};

/** How often an item a busy or spent isolate declined is asked for again. */
const DECLINE_RETRIES = 20;

export type ItemResult = 'ready' | 'failed' | 'retry' | 'skipped' | 'fenced' | 'error' | 'listed';

export type ItemOutcome = {
  id: string;
  type: BackfillType;
  result: ItemResult;
  path?: string;
  code?: string;
  error?: string;
  ms: number;
};

export type Progress = {
  queued: number;
  done: number;
  failed: number;
  skipped: number;
  inFlight: number;
  /** Candidates known in advance (for the ETA); null when unknown. */
  total: number | null;
  startedAt: number;
};

export type BackfillEvents = {
  onQueued?(c: Candidate): void;
  onWorkerLimit?(c: Candidate, message: string): void;
  onResult?(o: ItemOutcome, p: Progress): void;
};

export type BackfillTarget = {
  sql: postgres.Sql;
  /** Runs one row's jobs through generate-preview?wait=1; returns its preview's (with `animated`, its clip's) outcome. */
  generatePreview(
    id: string,
    animated?: boolean,
  ): Promise<{ result: string; path?: string; code?: string; error?: string }>;
  /** Asks for a ready video's animated preview (queue_animated_preview: its job; the caller runs it). */
  requestAnimated(id: string): Promise<boolean>;
  /** A failed row back to `none` with a fresh job (retry-failed); false when it was no longer failed. */
  resetForRetry(id: string): Promise<boolean>;
  /** A ready row of another preview version back to `none` with a fresh job (stale); false when it no longer was one. */
  resetForRerender(id: string, version: string): Promise<boolean>;
  /**
   * A ready row whose preview is unusable back to `none` with a fresh job
   * (requeue_unusable_preview); false when it no longer was one.
   */
  resetUnusable(id: string): Promise<boolean>;
  /**
   * After a WORKER_LIMIT: waits until the row is no longer held by the killed worker, then
   * returns `retry()`'s outcome (or `ready` when the sweep finished it meanwhile).
   */
  afterLease?(
    id: string,
    retry: () => ReturnType<BackfillTarget['generatePreview']>,
  ): ReturnType<BackfillTarget['generatePreview']>;
  /**
   * The row's job was taken by another worker (a woken one took it between the queueing and this
   * request's claim): waits while that job is running or due, then returns the row's outcome
   * (ready, failed with its code, retry while a later attempt is scheduled), or null when the row
   * has no job of that kind at all.
   */
  settle?(
    id: string,
    animated?: boolean,
  ): Promise<Awaited<ReturnType<BackfillTarget['generatePreview']>> | null>;
};

/** generate-preview answered 546: the runtime stopped the worker (CPU, memory or wall clock). */
export class WorkerLimitError extends Error {}

export type BackfillSummary = {
  candidates: number;
  ready: number;
  failed: number;
  retry: number;
  skipped: number;
  errors: number;
  listed: number;
  byType: Record<BackfillType, { ready: number; failed: number; skipped: number; listed: number }>;
  seconds: number;
  perSecond: number;
  outcomes: ItemOutcome[];
};

const NO_LIMIT = 2_147_483_647;

/** One keyset page of candidates after the (created_at, id) cursor. */
export async function candidatePage(
  sql: postgres.Sql,
  after: { createdAt: Date; id: string } | null,
  pageSize: number,
  o: Pick<BackfillOptions, 'type' | 'retryFailed' | 'since' | 'stale' | 'animated'>,
): Promise<Candidate[]> {
  if (o.animated) {
    return await sql<Candidate[]>`
      select id, user_id, type, created_at, preview_status
        from public.animated_candidates(${after?.createdAt ?? null}::timestamptz, ${
      after?.id ?? null
    }::uuid, ${pageSize}::int,
          ${o.since ?? null}::timestamptz)`;
  }
  return await sql<Candidate[]>`
    select id, user_id, type, created_at, preview_status, reason
      from public.backfill_preview_candidates(
        ${after?.createdAt ?? null}::timestamptz, ${after?.id ?? null}::uuid, ${pageSize}::int,
        ${o.type ?? null}::text, ${o.retryFailed ?? false}::boolean, ${
    o.since ?? null
  }::timestamptz, ${o.stale ?? null}::text)`;
}

/** Every candidate, oldest first, fetched a page at a time; stops at `limit` and `until`. */
export async function* walkCandidates(
  sql: postgres.Sql,
  o: BackfillOptions,
): AsyncGenerator<Candidate> {
  const pageSize = Math.max(1, o.pageSize ?? 100);
  let remaining = o.limit ?? Infinity;
  let after: { createdAt: Date; id: string } | null = null;
  while (remaining > 0) {
    const want = Math.min(pageSize, remaining);
    const page = await candidatePage(sql, after, want, o);
    for (const c of page) {
      if (o.until && c.created_at >= o.until) return;
      yield c;
      if (--remaining <= 0) return;
    }
    if (page.length < want) return;
    const last = page[page.length - 1];
    after = { createdAt: last.created_at, id: last.id };
  }
}

/** How many candidates a run would see (for the progress bar's ETA). */
export async function countCandidates(sql: postgres.Sql, o: BackfillOptions): Promise<number> {
  if (o.animated) {
    const [a] = await sql<{ n: number }[]>`
      select count(*)::int as n from public.animated_candidates(null, null, ${
      o.limit ?? NO_LIMIT
    }::int, ${o.since ?? null}::timestamptz) c
       where ${o.until ?? null}::timestamptz is null or c.created_at < ${
      o.until ?? null
    }::timestamptz`;
    return a.n;
  }
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n
      from public.backfill_preview_candidates(null, null, ${o.limit ?? NO_LIMIT}::int, ${
    o.type ?? null
  }::text,
        ${o.retryFailed ?? false}::boolean, ${o.since ?? null}::timestamptz, ${
    o.stale ?? null
  }::text) c
     where ${o.until ?? null}::timestamptz is null or c.created_at < ${
    o.until ?? null
  }::timestamptz`;
  return row.n;
}

/**
 * Runs `worker` over `items` with at most `concurrency` calls in flight; pulls from the
 * iterator only when a slot is free (so a huge walk never loads more than a page ahead).
 */
export async function runPool<T>(
  items: AsyncIterable<T>,
  concurrency: number,
  worker: (item: T) => Promise<void>,
): Promise<void> {
  const it = items[Symbol.asyncIterator]();
  let pulling: Promise<IteratorResult<T>> | null = null;
  // One pull at a time: async generators are not safe to call next() on concurrently.
  const next = async (): Promise<IteratorResult<T>> => {
    while (pulling) await pulling.catch(() => {});
    pulling = it.next();
    try {
      return await pulling;
    } finally {
      pulling = null;
    }
  };
  const lane = async () => {
    for (;;) {
      const r = await next();
      if (r.done) return;
      await worker(r.value);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
}

export function queueLine(c: Pick<Candidate, 'id' | 'type' | 'reason'>, animated = false): string {
  if (animated) return `🎞️ Queuing animated preview for ${c.id}`;
  // a ready row re-rendered because the library cannot show its preview says why
  const why = c.reason ? ` (ready without a usable preview: ${c.reason})` : '';
  return c.type === 'video'
    ? `🎬 Queuing video poster for ${c.id}${why}`
    : c.type === 'audio'
    ? `🎵 Queuing audio tile for ${c.id}${why}`
    : `📸 Queuing ${c.type} preview for ${c.id}${why}`;
}

function emptySummary(): BackfillSummary {
  const t = () => ({ ready: 0, failed: 0, skipped: 0, listed: 0 });
  return {
    candidates: 0,
    ready: 0,
    failed: 0,
    retry: 0,
    skipped: 0,
    errors: 0,
    listed: 0,
    byType: { photo: t(), product: t(), video: t(), audio: t() },
    seconds: 0,
    perSecond: 0,
    outcomes: [],
  };
}

export async function runBackfill(
  target: BackfillTarget,
  o: BackfillOptions,
  events: BackfillEvents = {},
): Promise<BackfillSummary> {
  const summary = emptySummary();
  const progress: Progress = {
    queued: 0,
    done: 0,
    failed: 0,
    skipped: 0,
    inFlight: 0,
    total: null,
    startedAt: performance.now(),
  };
  progress.total = await countCandidates(target.sql, o).catch(() => null);

  const record = (out: ItemOutcome) => {
    summary.outcomes.push(out);
    const t = summary.byType[out.type] ??
      (summary.byType[out.type] = { ready: 0, failed: 0, skipped: 0, listed: 0 });
    switch (out.result) {
      case 'ready':
        summary.ready++;
        t.ready++;
        progress.done++;
        break;
      case 'skipped':
      case 'fenced':
        summary.skipped++;
        t.skipped++;
        progress.skipped++;
        break;
      case 'listed':
        summary.listed++;
        t.listed++;
        progress.done++;
        break;
      case 'retry':
        summary.retry++;
        t.failed++;
        progress.failed++;
        break;
      case 'error':
        summary.errors++;
        t.failed++;
        progress.failed++;
        break;
      default:
        summary.failed++;
        t.failed++;
        progress.failed++;
    }
    events.onResult?.(out, progress);
  };

  await runPool(walkCandidates(target.sql, o), o.concurrency, async (c) => {
    summary.candidates++;
    progress.queued++;
    events.onQueued?.(c);
    const started = performance.now();
    if (o.dryRun) {
      record({ id: c.id, type: c.type, result: 'listed', ms: 0 });
      return;
    }
    progress.inFlight++;
    try {
      if (c.preview_status === 'failed' && o.retryFailed) await target.resetForRetry(c.id);
      // an unusable preview (the app's mp4, a missing object) is re-rendered whatever its version
      if (c.preview_status === 'ready' && c.reason) await target.resetUnusable(c.id);
      else if (c.preview_status === 'ready' && o.stale) {
        await target.resetForRerender(c.id, o.stale);
      }
      if (o.animated) await target.requestAnimated(c.id);
      let r: Awaited<ReturnType<BackfillTarget['generatePreview']>>;
      try {
        r = await target.generatePreview(c.id, o.animated);
      } catch (err) {
        // A worker stopped by the runtime leaves its claim until the lease lapses: wait for
        // that (or for the sweep to finish the row) and try once more, within this run.
        if (!(err instanceof WorkerLimitError) || !target.afterLease) throw err;
        events.onWorkerLimit?.(c, err.message);
        r = await target.afterLease(c.id, () => target.generatePreview(c.id, o.animated));
      }
      // The isolate that got the request had spent its CPU or was ending, and claimed nothing:
      // ask again (the platform has retired that isolate, so another one takes it).
      for (let i = 1; r.result === 'declined' && i <= DECLINE_RETRIES; i++) {
        await new Promise((res) => setTimeout(res, 100 * i));
        r = await target.generatePreview(c.id, o.animated);
      }
      // Another worker holds (or is about to take) the row's job: its outcome is this item's.
      if (
        (r.result === 'skipped' || r.result === 'declined' || r.result === 'fenced') &&
        target.settle
      ) {
        r = (await target.settle(c.id, o.animated)) ?? r;
      }
      const result = (['ready', 'failed', 'retry', 'skipped', 'fenced'].includes(r.result)
        ? r.result
        : 'error') as ItemResult;
      record({
        id: c.id,
        type: c.type,
        result,
        path: r.path,
        code: r.code,
        error: r.error,
        ms: Math.round(performance.now() - started),
      });
    } catch (err) {
      record({
        id: c.id,
        type: c.type,
        result: 'error',
        error: err instanceof Error ? err.message : String(err),
        ms: Math.round(performance.now() - started),
      });
    } finally {
      progress.inFlight--;
    }
  });

  summary.seconds = (performance.now() - progress.startedAt) / 1000;
  const processed = summary.ready + summary.failed + summary.retry + summary.errors;
  summary.perSecond = summary.seconds > 0 ? processed / summary.seconds : 0;
  return summary;
}

/** One line of the database's preview_coverage: every row counted once, by state and reason. */
export type CoverageRow = { type: string; state: string; reason: string | null; total: number };

/** Where every row stands (what the backfill did not take, and why), from preview_coverage. */
export async function coverage(sql: postgres.Sql): Promise<CoverageRow[]> {
  return await sql<CoverageRow[]>`
    select type, state, reason, total::int as total from public.preview_coverage
     order by state, type, reason nulls first`;
}

/** The preview version the target's functions stamp (health?version=1): what --stale compares with. */
export async function deployedPreviewVersion(
  supabaseUrl: string,
  doFetch: typeof fetch = fetch,
): Promise<string> {
  const res = await doFetch(`${supabaseUrl.replace(/\/+$/, '')}/functions/v1/health?version=1`);
  const body = await res.json().catch(() => null) as { previewVersion?: unknown } | null;
  if (!res.ok || typeof body?.previewVersion !== 'string') {
    throw new Error(`health?version=1 answered ${res.status}: no preview version`);
  }
  return body.previewVersion;
}

/** A target that reaches generate-preview over HTTP with a service key. */
export function httpTarget(
  o: {
    sql: postgres.Sql;
    supabaseUrl: string;
    serviceKey: string;
    fetch?: typeof fetch;
    leaseWaitMs?: number;
  },
): BackfillTarget {
  const doFetch = o.fetch ?? fetch;
  const base = o.supabaseUrl.replace(/\/+$/, '');
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    apikey: o.serviceKey,
  };
  // New opaque keys go in `apikey` only; legacy JWT keys also as the bearer token.
  if (!o.serviceKey.startsWith('sb_')) headers.authorization = `Bearer ${o.serviceKey}`;
  return {
    sql: o.sql,
    async generatePreview(id, animated) {
      const res = await doFetch(`${base}/functions/v1/generate-preview?wait=1`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ generationId: id }),
      });
      const text = await res.text();
      if (res.status === 546) {
        // The worker was stopped mid-render: its job stays claimed until its lease expires,
        // then the next claim or the pg_cron sweep retries it.
        throw new WorkerLimitError(
          `generate-preview hit the edge runtime's WORKER_LIMIT: ${text.slice(0, 160)}`,
        );
      }
      if (!res.ok) {
        throw new Error(`generate-preview answered ${res.status}: ${text.slice(0, 200)}`);
      }
      const body = JSON.parse(text) as {
        results?: {
          generationId: string;
          kind?: string;
          result: string;
          path?: string;
          code?: string;
          error?: string;
        }[];
      };
      // the row's jobs ran: the preview's (or, with `animated`, the clip's) outcome is this item's
      const want = animated ? 'animated' : 'preview';
      const mine = body.results?.filter((x) => x.generationId === id) ?? [];
      const r = mine.find((x) => x.kind === want) ?? mine.find((x) => !x.kind);
      if (!r) throw new Error(`generate-preview gave no result for ${id}`);
      return r;
    },
    async afterLease(id, retry) {
      const deadline = Date.now() + (o.leaseWaitMs ?? 180_000);
      for (;;) {
        const [row] = await o.sql<
          {
            preview_status: string;
            image_path: string | null;
            leased: boolean;
          }[]
        >`
          select preview_status, public.preview_image_path(g) as image_path,
                 exists (select 1 from public.preview_jobs j
                          where j.generation_id = g.id and j.kind = 'preview' and j.state = 'running'
                            and j.lease_until > now()) as leased
            from public.generations g where id = ${id}::uuid`;
        if (!row) return { result: 'skipped' };
        if (row.preview_status === 'ready') {
          return { result: 'ready', path: row.image_path ?? undefined };
        }
        if (!row.leased) {
          const r = await retry();
          if (r.result !== 'skipped' || Date.now() > deadline) return r;
        } else if (Date.now() > deadline) {
          throw new Error(
            'still held by a stopped worker after the lease wait; the preview sweep will retry it',
          );
        }
        await new Promise((res) => setTimeout(res, 2000));
      }
    },
    async settle(id, animated) {
      const kind = animated ? 'animated' : 'preview';
      const deadline = Date.now() + (o.leaseWaitMs ?? 180_000);
      for (;;) {
        const [row] = await o.sql<
          {
            status: string | null;
            path: string | null;
            code: string | null;
            live: 'queued' | 'running' | null;
            due: boolean;
            error: string | null;
          }[]
        >`
          select case when ${kind} = 'animated' then g.animated_status else g.preview_status end as status,
                 case when ${kind} = 'animated' then g.animated_path else public.preview_image_path(g) end as path,
                 case when ${kind} = 'animated' then g.animated_error_code else g.preview_error_code end as code,
                 j.state as live, coalesce(j.run_at <= now(), false) as due,
                 (select f.last_error from public.preview_jobs f
                   where f.generation_id = g.id and f.kind = ${kind} order by f.updated_at desc limit 1) as error
            from public.generations g
            left join public.preview_jobs j
              on j.generation_id = g.id and j.kind = ${kind} and j.state in ('queued', 'running')
           where g.id = ${id}::uuid`;
        if (!row) return null;
        if (
          (row.live === 'running' || (row.live === 'queued' && row.due)) && Date.now() < deadline
        ) {
          await new Promise((res) => setTimeout(res, 1000));
          continue;
        }
        if (row.status === 'ready') return { result: 'ready', path: row.path ?? undefined };
        if (row.status === 'failed') {
          return { result: 'failed', code: row.code ?? undefined, error: row.error ?? undefined };
        }
        if (row.live) {
          return { result: 'retry', code: row.code ?? undefined, error: row.error ?? undefined };
        }
        return null;
      }
    },
    async resetForRetry(id) {
      const [row] = await o.sql<
        { ok: boolean }[]
      >`select public.requeue_preview(${id}::uuid, 'failed') is not null as ok`;
      return row.ok === true;
    },
    async requestAnimated(id) {
      const [row] = await o.sql<
        { ok: boolean }[]
      >`select public.queue_animated_preview(${id}::uuid) is not null as ok`;
      return row.ok === true;
    },
    async resetForRerender(id, version) {
      const [row] = await o.sql<
        { ok: boolean }[]
      >`select public.requeue_preview(${id}::uuid, 'ready', ${version}) is not null as ok`;
      return row.ok === true;
    },
    async resetUnusable(id) {
      // back to none with a fresh job; the app's old file (an mp4 in preview_path) is left alone
      const [row] = await o.sql<
        { ok: boolean }[]
      >`select public.requeue_unusable_preview(${id}::uuid) is not null as ok`;
      return row.ok === true;
    },
  };
}
