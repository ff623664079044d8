/**
 * The job runner: the one claim, completion and failure path of every kind. A worker drains due
 * jobs one at a time while its isolate has budget (isolate.ts runJob: one job per isolate at a
 * time, declined before the claim when spent or ending), hands each to the handler registered for
 * its kind, then completes it (retrying a completion that fails on a transient database error
 * while the lease holds) or sends its error through the database's one failure path. Handlers do
 * the work and nothing else: no claim, no state, no retry of their own.
 */
import { isTransientDbError } from '../db.ts';
import { toPreviewError } from '../errors.ts';
import { log, type LogFields, type LogPrefix } from '../log.ts';
import { isolateBudget, runJob } from '../preview/isolate.ts';
import type { ClaimedJob, JobKind, JobStore } from './store.ts';

/** What a handler hands back for a job: its result for the row, or why it stopped (fenced). */
export type JobDone = {
  /** Written on the row by complete_preview_job. */
  result: Record<string, unknown>;
  /** Fields of the success log line. */
  fields?: LogFields;
  /** Fields of the outcome (?wait=1 answers). */
  outcome?: Partial<JobOutcome>;
  /** Runs after the completion (the poster asks for its clip). */
  after?: () => Promise<void>;
};
export type JobFenced = { fenced: string };

export type JobContext = {
  store: JobStore;
  /** Whether this attempt still holds the job: asked right before objects are written or deleted. */
  isCurrent(): Promise<boolean>;
};

/** A kind's handler. `batch` > 1: one claim takes that many due jobs of the kind (deletions). */
export type JobHandler =
  & { prefix: LogPrefix; success: string }
  & (
    | { run(job: ClaimedJob, ctx: JobContext): Promise<JobDone | JobFenced> }
    | {
      batch: number;
      runBatch(jobs: ClaimedJob[], ctx: JobContext[]): Promise<(JobDone | JobFenced)[]>;
    }
  );

export type Handlers = Partial<Record<JobKind, JobHandler>>;

export type JobOutcome = {
  generationId: string | null;
  jobId?: string;
  kind?: JobKind;
  /** declined: not claimed, this isolate was spent or ending (the job stays queued). */
  result: 'ready' | 'failed' | 'retry' | 'skipped' | 'fenced' | 'declined';
  type?: string;
  path?: string;
  code?: string;
  error?: string;
  attempt?: number;
};

/** How long before the lease ends a worker stops retrying its completion. */
const COMPLETE_MARGIN_MS = 2_000;

/** What a job is about, first on its log lines (the checklist's `generationId=…`, or the object). */
const subjectOf = (j: ClaimedJob): LogFields =>
  j.kind === 'delete_object' ? { path: String(j.input.path) } : { generationId: j.generation_id };

/** A job's log fields: its subject, then `extra`, then the job's own. */
const fieldsOf = (j: ClaimedJob, extra: LogFields = {}): LogFields => ({
  ...subjectOf(j),
  ...extra,
  jobId: j.job_id,
  kind: j.kind,
  attempt: j.attempt,
});

/**
 * complete_preview_job after the work is done. A transient database error (a restart, a crash) is
 * retried, fenced by the attempt, while the lease holds (less a margin): the objects are there, and
 * giving up would make the next attempt do it all again.
 */
async function completeWhileLeased(
  store: JobStore,
  handler: JobHandler,
  job: ClaimedJob,
  claimedAt: number,
  result: Record<string, unknown>,
): Promise<boolean> {
  const until = claimedAt + job.lease_ms - COMPLETE_MARGIN_MS;
  for (let delay = 250;; delay = Math.min(delay * 2, 4000)) {
    try {
      return await store.complete(job, result);
    } catch (err) {
      if (!isTransientDbError(err) || performance.now() + delay > until) throw err;
      log.info(handler.prefix, 'Completion retry', {
        ...fieldsOf(job, { code: (err as { code?: string }).code, inMs: delay }),
      });
      await new Promise((done) => setTimeout(done, delay));
    }
  }
}

/** The one failure path: the error as a closed code, recorded by the database, one log line. */
async function failed(
  store: JobStore,
  handler: JobHandler,
  job: ClaimedJob,
  err: unknown,
): Promise<JobOutcome> {
  const pe = toPreviewError(err);
  const state = await store.fail(job, {
    code: pe.code,
    message: pe.message,
    retryable: pe.retryable,
  });
  const subject = Object.values(subjectOf(job))[0];
  log.error(
    handler.prefix,
    `❌ Failed for ${subject}: ${pe.message}`,
    fieldsOf(job, { code: pe.code, next: state ?? 'fenced' }),
  );
  return {
    generationId: job.generation_id,
    jobId: job.job_id,
    kind: job.kind,
    result: state === null ? 'fenced' : state,
    code: pe.code,
    error: pe.message,
    attempt: job.attempt,
  };
}

/** A handler's answer for one claimed job, completed or fenced, logged. */
async function finish(
  store: JobStore,
  handler: JobHandler,
  job: ClaimedJob,
  claimedAt: number,
  r: JobDone | JobFenced,
): Promise<JobOutcome> {
  const base = {
    generationId: job.generation_id,
    jobId: job.job_id,
    kind: job.kind,
    attempt: job.attempt,
  };
  if ('fenced' in r || !(await completeWhileLeased(store, handler, job, claimedAt, r.result))) {
    const reason = 'fenced' in r ? r.fenced : 'newer_attempt';
    log.info(handler.prefix, 'Fenced', fieldsOf(job, { reason }));
    return { ...base, result: 'fenced' };
  }
  log.info(handler.prefix, handler.success, fieldsOf(job, r.fields));
  try {
    await r.after?.();
  } catch (err) {
    log.error(
      handler.prefix,
      `After ${job.kind} ${job.job_id}: ${(err as Error).message}`,
      fieldsOf(job),
    );
  }
  return { ...base, ...r.outcome, result: 'ready' };
}

/** Runs claimed jobs of one kind through its handler; any throw is that job's failure. */
async function runClaimed(
  store: JobStore,
  handler: JobHandler,
  jobs: ClaimedJob[],
): Promise<JobOutcome[]> {
  const claimedAt = performance.now();
  for (const job of jobs) {
    log.info(
      handler.prefix,
      'Processing',
      fieldsOf(job, { type: typeof job.input.type === 'string' ? job.input.type : undefined }),
    );
  }
  const ctxOf = (job: ClaimedJob): JobContext => ({ store, isCurrent: () => store.isCurrent(job) });
  if ('runBatch' in handler) {
    let results: (JobDone | JobFenced)[];
    try {
      results = await handler.runBatch(jobs, jobs.map(ctxOf));
    } catch (err) {
      return await Promise.all(jobs.map((job) => failed(store, handler, job, err)));
    }
    return await Promise.all(
      jobs.map((job, i) => finish(store, handler, job, claimedAt, results[i])),
    );
  }
  const out: JobOutcome[] = [];
  for (const job of jobs) {
    try {
      out.push(await finish(store, handler, job, claimedAt, await handler.run(job, ctxOf(job))));
    } catch (err) {
      out.push(await failed(store, handler, job, err));
    }
  }
  return out;
}

/** The isolate is ending (beforeunload): the held jobs go back to the queue at once. */
async function release(store: JobStore, handler: JobHandler, jobs: ClaimedJob[]): Promise<void> {
  for (const job of jobs) {
    if (await store.release(job)) {
      log.info(handler.prefix, 'Released', fieldsOf(job, { reason: 'isolate_ending' }));
    }
  }
}

/**
 * Drains due jobs (of one row when `generationId` is given), one claim at a time, until none is
 * due or the isolate declines (spent or ending: `declined` says why). `wake`: the wake this worker
 * answers (each claim is its sign of life).
 */
export async function drain(
  o: { store: JobStore; handlers: Handlers; wake?: string; generationId?: string },
): Promise<{ outcomes: JobOutcome[]; declined: string | null }> {
  const kinds = Object.keys(o.handlers) as JobKind[];
  const outcomes: JobOutcome[] = [];
  for (let first = true;; first = false) {
    const r = await runJob(async (hold) => {
      const [first] = await o.store.claim({
        kinds,
        generationId: o.generationId,
        wake: o.wake,
      });
      if (!first) return null;
      const handler = o.handlers[first.kind] as JobHandler;
      const jobs = 'batch' in handler && handler.batch > 1
        ? [
          first,
          ...await o.store.claim({
            kinds: [first.kind],
            limit: handler.batch - 1,
            generationId: o.generationId,
            wake: o.wake,
          }),
        ]
        : [first];
      hold({ release: () => release(o.store, handler, jobs) });
      return await runClaimed(o.store, handler, jobs);
    }, first);
    if ('declined' in r) {
      log.info('[Preview]', 'Declined', {
        generationId: o.generationId,
        wake: o.wake,
        reason: r.declined,
        ...isolateBudget(),
      });
      return { outcomes, declined: r.declined };
    }
    if (r.done === null) return { outcomes, declined: null };
    outcomes.push(...r.done);
  }
}
