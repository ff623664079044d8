/**
 * The job queue as TypeScript sees it (preview_jobs, migrations/…_jobs.sql): the narrow interface
 * the runner and the tests swap. Every state change is a named SQL function; the database decides
 * what is due, what is current and what a failure becomes. Each call is retried on connection
 * errors under the one policy of shared/db.ts (reconnecting): about 5 s, or, for the calls of a
 * held job, the RetryPolicy the runner passes (until that job's lease would end). A claim whose
 * first try reached the server before the connection died finds the job claimed on the retry (its
 * heartbeat lease runs out and it is retried); isCurrent, extend, complete, fail and release are
 * fenced by (job, attempt).
 */
import { getSql, reconnecting, type RetryPolicy, type Sql } from '../db.ts';

/** The handlers' names: the database's preview_jobs.kind. */
export type JobKind = 'preview' | 'animated' | 'delete_object' | 'relay';

/**
 * A claimed job: its attempt is the fencing token, lease_ms how long the claim is ours without a
 * heartbeat (preview_heartbeat_lease()), max_lease_ms how long at most (preview_lease(), the hard
 * cap from the claim).
 */
export type ClaimedJob = {
  /** int8, as text (postgres.js returns bigint as a string). */
  job_id: string;
  kind: JobKind;
  generation_id: string | null;
  attempt: number;
  lease_ms: number;
  max_lease_ms?: number;
  /** What the job works with (preview_job_input), by kind. */
  input: Record<string, unknown>;
};

export type JobFailure = { code: string; message: string; retryable: boolean };

/** An object an attempt is about to write: where, and what (SHA-256 as hex, bytes). */
export type ObjectWrite = { path: string; sha256: string; size: number };

/**
 * The calls of a held job (isCurrent, extend, complete, fail, release) take the runner's
 * RetryPolicy: retried on a connection error until that job's lease would end. Without one, and
 * for every other call, the default (about 5 s).
 */
export interface JobStore {
  /** Up to `limit` due jobs (of `kinds`, of one row), oldest first; `wake`: the wake being answered. */
  claim(
    o: { kinds?: JobKind[]; limit?: number; generationId?: string; wake?: string },
  ): Promise<ClaimedJob[]>;
  /** Whether this attempt still holds the job (checked right before writing or deleting objects). */
  isCurrent(j: ClaimedJob, retry?: RetryPolicy): Promise<boolean>;
  /**
   * The heartbeat (extend_preview_job_lease): the lease extended by lease_ms, never past the hard
   * cap. False when this attempt no longer holds the job.
   */
  extend(j: ClaimedJob, retry?: RetryPolicy): Promise<boolean>;
  /**
   * Before an upload (note_preview_job_object): this attempt notes the path, SHA-256 and size it is
   * about to write. False when fenced.
   */
  noteObject(j: ClaimedJob, o: ObjectWrite, retry?: RetryPolicy): Promise<boolean>;
  /** Whether an earlier attempt of the job already wrote exactly this content at the path. */
  objectWritten(j: ClaimedJob, o: ObjectWrite, retry?: RetryPolicy): Promise<boolean>;
  /** Done: the job goes, its result is written on the row. False when fenced. */
  complete(j: ClaimedJob, result: Record<string, unknown>, retry?: RetryPolicy): Promise<boolean>;
  /** The one failure path: 'retry' (queued again after the backoff), 'failed' (terminal), null (fenced). */
  fail(j: ClaimedJob, e: JobFailure, retry?: RetryPolicy): Promise<'retry' | 'failed' | null>;
  /** The isolate is ending: the job is due again at once. */
  release(j: ClaimedJob, retry?: RetryPolicy): Promise<boolean>;
  /** A named row's preview job (adopt_preview): queued when it wants one. */
  adopt(generationId: string): Promise<boolean>;
  /** After a video's poster (PREVIEW_ANIMATED on): its animated preview asked for, a job of its own. */
  queueAnimated(generationId: string): Promise<boolean>;
  /** A woken worker stops: successors are woken while jobs are due. Returns how many. */
  endWake(wake: string): Promise<number>;
  /**
   * Fills the free worker places with wakes for due jobs, waiting for another transaction's wake
   * decision first (decide_preview_wakes: a direct run ends, a worker looks again, {"decide"}).
   */
  decide(): Promise<number>;
}

export function createJobStore(db: Sql = getSql()): JobStore {
  const one = async <T>(q: () => Promise<T[]>, retry?: RetryPolicy) =>
    (await reconnecting(q, retry))[0];
  return {
    claim: (o) =>
      reconnecting(() =>
        db<ClaimedJob[]>`
        select job_id::text, kind, generation_id, attempt, lease_ms,
               (extract(epoch from public.preview_lease()) * 1000)::int as max_lease_ms, input
          from public.claim_preview_jobs(${o.kinds ?? null}::text[], ${o.limit ?? 1},
                                         ${o.generationId ?? null}::uuid, ${
          o.wake ?? null
        }::bigint)`
      ),
    isCurrent: async (j, retry) =>
      (await one(
        () =>
          db<
            { ok: boolean }[]
          >`select public.preview_job_is_current(${j.job_id}::bigint, ${j.attempt}) as ok`,
        retry,
      )).ok === true,
    extend: async (j, retry) =>
      (await one(
        () =>
          db<
            { ok: boolean }[]
          >`select public.extend_preview_job_lease(${j.job_id}::bigint, ${j.attempt}) as ok`,
        retry,
      )).ok === true,
    noteObject: async (j, o, retry) =>
      (await one(
        () =>
          db<{ ok: boolean }[]>`
            select public.note_preview_job_object(${j.job_id}::bigint, ${j.attempt}, ${o.path}, ${o.sha256}, ${o.size}) as ok`,
        retry,
      )).ok === true,
    objectWritten: async (j, o, retry) =>
      (await one(
        () =>
          db<{ ok: boolean }[]>`
            select public.preview_job_object_written(${j.job_id}::bigint, ${o.path}, ${o.sha256}, ${o.size}) as ok`,
        retry,
      )).ok === true,
    complete: async (j, result, retry) =>
      (await one(
        () =>
          db<{ ok: boolean }[]>`
        select public.complete_preview_job(${j.job_id}::bigint, ${j.attempt}, ${
            db.json(result as never)
          }) as ok`,
        retry,
      )).ok === true,
    fail: async (j, e, retry) =>
      (await one(
        () =>
          db<{ state: 'retry' | 'failed' | null }[]>`
        select public.fail_preview_job(${j.job_id}::bigint, ${j.attempt}, ${e.code}, ${e.message}, ${e.retryable}) as state`,
        retry,
      )).state ?? null,
    release: async (j, retry) =>
      (await one(
        () =>
          db<
            { ok: boolean }[]
          >`select public.release_preview_job(${j.job_id}::bigint, ${j.attempt}) as ok`,
        retry,
      )).ok === true,
    adopt: async (id) =>
      (await one(() => db<{ id: string | null }[]>`select public.adopt_preview(${id}::uuid) as id`))
        .id !== null,
    queueAnimated: async (id) =>
      (await one(() =>
        db<{ id: string | null }[]>`select public.queue_animated_preview(${id}::uuid) as id`
      )).id !== null,
    endWake: async (wake) =>
      Number(
        (await one(() => db<{ n: number }[]>`select public.end_preview_wake(${wake}::bigint) as n`))
          .n,
      ),
    decide: async () =>
      Number((await one(() => db<{ n: number }[]>`select public.decide_preview_wakes() as n`)).n),
  };
}
