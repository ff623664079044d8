/**
 * The job queue as TypeScript sees it (preview_jobs, migrations/…_jobs.sql): the narrow interface
 * the runner and the tests swap. Every state change is a named SQL function; the database decides
 * what is due, what is current and what a failure becomes. Each call is retried on connection
 * errors (reconnecting): a claim whose first try reached the server before the connection died
 * finds the job claimed on the retry (its lease expires and it is retried), and complete, fail and
 * release are fenced by (job, attempt).
 */
import { getSql, reconnecting, type Sql } from '../db.ts';

/** The handlers' names: the database's preview_jobs.kind. */
export type JobKind = 'preview' | 'animated' | 'delete_object' | 'relay';

/** A claimed job: its attempt is the fencing token, lease_ms how long the claim is ours. */
export type ClaimedJob = {
  /** int8, as text (postgres.js returns bigint as a string). */
  job_id: string;
  kind: JobKind;
  generation_id: string | null;
  attempt: number;
  lease_ms: number;
  /** What the job works with (preview_job_input), by kind. */
  input: Record<string, unknown>;
};

export type JobFailure = { code: string; message: string; retryable: boolean };

export interface JobStore {
  /** Up to `limit` due jobs (of `kinds`, of one row), oldest first; `wake`: the wake being answered. */
  claim(
    o: { kinds?: JobKind[]; limit?: number; generationId?: string; wake?: string },
  ): Promise<ClaimedJob[]>;
  /** Whether this attempt still holds the job (checked right before writing or deleting objects). */
  isCurrent(j: ClaimedJob): Promise<boolean>;
  /** Done: the job goes, its result is written on the row. False when fenced. */
  complete(j: ClaimedJob, result: Record<string, unknown>): Promise<boolean>;
  /** The one failure path: 'retry' (queued again after the backoff), 'failed' (terminal), null (fenced). */
  fail(j: ClaimedJob, e: JobFailure): Promise<'retry' | 'failed' | null>;
  /** The isolate is ending: the job is due again at once. */
  release(j: ClaimedJob): Promise<boolean>;
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
  const one = async <T>(q: () => Promise<T[]>) => (await reconnecting(q))[0];
  return {
    claim: (o) =>
      reconnecting(() =>
        db<ClaimedJob[]>`
        select job_id::text, kind, generation_id, attempt, lease_ms, input
          from public.claim_preview_jobs(${o.kinds ?? null}::text[], ${o.limit ?? 1},
                                         ${o.generationId ?? null}::uuid, ${
          o.wake ?? null
        }::bigint)`
      ),
    isCurrent: async (j) =>
      (await one(() =>
        db<
          { ok: boolean }[]
        >`select public.preview_job_is_current(${j.job_id}::bigint, ${j.attempt}) as ok`
      )).ok === true,
    complete: async (j, result) =>
      (await one(() =>
        db<{ ok: boolean }[]>`
        select public.complete_preview_job(${j.job_id}::bigint, ${j.attempt}, ${
          db.json(result as never)
        }) as ok`
      )).ok === true,
    fail: async (j, e) =>
      (await one(() =>
        db<{ state: 'retry' | 'failed' | null }[]>`
        select public.fail_preview_job(${j.job_id}::bigint, ${j.attempt}, ${e.code}, ${e.message}, ${e.retryable}) as state`
      )).state ?? null,
    release: async (j) =>
      (await one(() =>
        db<
          { ok: boolean }[]
        >`select public.release_preview_job(${j.job_id}::bigint, ${j.attempt}) as ok`
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
