/**
 * The job runner: the one claim, completion and failure path of every kind. A worker drains due
 * jobs one at a time while its isolate has budget (isolate.ts runJob: one job busy at a time, more
 * beside it only while it waits on a slow source; declined before the claim when spent or
 * ending), hands each to the handler registered for its kind, then completes it or sends its
 * error through the database's one failure path. While it holds a job it proves it is alive: a heartbeat extends
 * the job's short lease every third of it (extend_preview_job_lease), so a worker that dies leaves
 * its job due again within the heartbeat lease, and every database call of the job rides out a
 * connection outage until that lease would end (the one retry policy of shared/db.ts, bounded by
 * the lease). Handlers do the work and nothing else: no claim, no state, no retry of their own.
 */
import type { RetryPolicy } from '../db.ts';
import { toPreviewError } from '../errors.ts';
import { log, type LogFields, type LogPrefix } from '../log.ts';
import { sha256Hex } from '../preview/core-digest.ts';
import { isolateBudget, JOBS_AT_ONCE, type JobSlot, runJob } from '../preview/isolate.ts';
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
  /**
   * The isolate, shared with jobs running beside this one (isolate.ts): `take` before rendering
   * (a handler with `downloadsFirst` reads its source beside another job's render first, asking
   * `beside` before it holds more), `handBack` to give the job to a fresh isolate.
   */
  isolate: Pick<JobSlot, 'take' | 'beside' | 'handBack'>;
  /** Whether this attempt still holds the job: asked right before objects are written or deleted. */
  isCurrent(): Promise<boolean>;
  /**
   * Writes an object once across attempts: 'kept' when an earlier attempt of this job already wrote
   * these bytes there (a worker killed between its upload and its completion), 'fenced' when this
   * attempt no longer holds the job; else notes the content on the job, then runs `write`.
   */
  writeOnce(
    path: string,
    bytes: Uint8Array,
    write: () => Promise<void>,
  ): Promise<'written' | 'kept' | 'fenced'>;
};

/**
 * A kind's handler. `batch` > 1: one claim takes that many due jobs of the kind (deletions).
 * `downloadsFirst`: the job starts by waiting on the network and takes the isolate itself
 * (ctx.isolate.take) before it renders; any other job holds the isolate from its claim on.
 */
export type JobHandler =
  & { prefix: LogPrefix; success: string; downloadsFirst?: boolean }
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

/** A job whose source has not answered this long after its claim gets the next job claimed beside it. */
const BESIDE_AFTER_MS = 500;
/** How long before its lease ends a worker stops retrying a held job's database calls. */
const LEASE_MARGIN_MS = 2_000;
/** Heartbeats per heartbeat lease: the lease is extended every third of it. */
const BEATS_PER_LEASE = 3;

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
 * A job this worker holds, and its lease as the worker knows it: `until` (performance.now() ms) is
 * when the claim, then the last heartbeat, was sent plus lease_ms, never past the claim's hard cap
 * (max_lease_ms): the database's lease_until is at or after it. While the job is held a heartbeat
 * extends the lease every third of lease_ms; one the database refuses (the attempt no longer holds
 * the job: taken over, cancelled, done, past the cap) marks the lease lost, and isCurrent then
 * answers false without asking. `retry(call)` is the policy of the job's database calls: retried
 * on a connection error until the lease would end, less a margin, each retry logged
 * (`Database retry … call=complete`).
 */
type Lease = {
  job: ClaimedJob;
  until: number;
  lost: boolean;
  retry(call: string): RetryPolicy;
  /** Stops the heartbeat (the job was completed, failed, fenced or handed back). */
  stop(): void;
};

/** Holds a claimed job (claim sent at `sentAt`): its lease, kept alive by a heartbeat until stop(). */
function holdLease(
  store: JobStore,
  handler: Pick<JobHandler, 'prefix'>,
  job: ClaimedJob,
  sentAt: number,
): Lease {
  const capAt = sentAt + Math.max(job.max_lease_ms ?? job.lease_ms, job.lease_ms);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const lease: Lease = {
    job,
    until: Math.min(sentAt + job.lease_ms, capAt),
    lost: false,
    retry: (call) => ({
      until: () => lease.until - LEASE_MARGIN_MS,
      onRetry: (err, inMs) =>
        log.info(
          handler.prefix,
          'Database retry',
          fieldsOf(job, { call, code: (err as { code?: string }).code, inMs }),
        ),
    }),
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
  const beat = async () => {
    const sent = performance.now();
    try {
      if (await store.extend(job, lease.retry('heartbeat'))) {
        lease.until = Math.min(sent + job.lease_ms, capAt);
      } else if (!stopped) {
        lease.lost = true;
        log.info(handler.prefix, 'Lease lost', fieldsOf(job, { reason: 'heartbeat_refused' }));
      }
    } catch (err) {
      if (stopped) return;
      log.error(
        handler.prefix,
        `Heartbeat failed: ${err instanceof Error ? err.message : err}`,
        fieldsOf(job, { code: (err as { code?: string } | null)?.code }),
      );
      // the database could not be asked until the lease ended: it is not ours any more
      if (performance.now() >= lease.until) lease.lost = true;
    }
    if (!stopped && !lease.lost) timer = setTimeout(beat, job.lease_ms / BEATS_PER_LEASE);
  };
  timer = setTimeout(beat, job.lease_ms / BEATS_PER_LEASE);
  return lease;
}

/** The one failure path: the error as a closed code, recorded by the database, one log line. */
async function failed(
  store: JobStore,
  handler: JobHandler,
  lease: Lease,
  err: unknown,
): Promise<JobOutcome> {
  const job = lease.job;
  const pe = toPreviewError(err);
  const state = await store.fail(job, {
    code: pe.code,
    message: pe.message,
    retryable: pe.retryable,
  }, lease.retry('fail'));
  lease.stop(); // ended (or no longer this attempt's): nothing to keep alive
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

/**
 * A handler's answer for one claimed job, completed or fenced, logged. The completion is retried on
 * a connection error while the lease holds (the objects are there: giving up would make the next
 * attempt do it all again).
 */
async function finish(
  store: JobStore,
  handler: JobHandler,
  lease: Lease,
  r: JobDone | JobFenced,
): Promise<JobOutcome> {
  const job = lease.job;
  const base = {
    generationId: job.generation_id,
    jobId: job.job_id,
    kind: job.kind,
    attempt: job.attempt,
  };
  const completed = !('fenced' in r) &&
    await store.complete(job, r.result, lease.retry('complete'));
  lease.stop(); // done (or no longer this attempt's): nothing to keep alive
  if (!completed) {
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
  leases: Lease[],
  isolate: JobContext['isolate'],
): Promise<JobOutcome[]> {
  const jobs = leases.map((l) => l.job);
  for (const job of jobs) {
    log.info(
      handler.prefix,
      'Processing',
      fieldsOf(job, { type: typeof job.input.type === 'string' ? job.input.type : undefined }),
    );
  }
  const ctxOf = (lease: Lease): JobContext => ({
    store,
    isolate,
    isCurrent: async () => {
      if (lease.lost) return false;
      if (await store.isCurrent(lease.job, lease.retry('isCurrent'))) return true;
      lease.lost = true;
      return false;
    },
    writeOnce: async (path, bytes, write) => {
      const o = { path, size: bytes.length, sha256: await sha256Hex(bytes) };
      if (lease.lost) return 'fenced';
      if (await store.objectWritten(lease.job, o, lease.retry('objectWritten'))) {
        log.info(
          handler.prefix,
          'Kept',
          fieldsOf(lease.job, { path, reason: 'written_by_an_earlier_attempt' }),
        );
        return 'kept';
      }
      if (!await store.noteObject(lease.job, o, lease.retry('noteObject'))) {
        lease.lost = true;
        return 'fenced';
      }
      await write();
      return 'written';
    },
  });
  if ('runBatch' in handler) {
    let results: (JobDone | JobFenced)[];
    try {
      results = await handler.runBatch(jobs, leases.map(ctxOf));
    } catch (err) {
      return await Promise.all(leases.map((lease) => failed(store, handler, lease, err)));
    }
    return await Promise.all(leases.map((lease, i) => finish(store, handler, lease, results[i])));
  }
  const out: JobOutcome[] = [];
  for (const lease of leases) {
    try {
      out.push(await finish(store, handler, lease, await handler.run(lease.job, ctxOf(lease))));
    } catch (err) {
      out.push(await failed(store, handler, lease, err));
    }
  }
  return out;
}

/** The isolate is ending (beforeunload): the held jobs go back to the queue at once. */
async function release(store: JobStore, handler: JobHandler, leases: Lease[]): Promise<void> {
  for (const lease of leases) {
    if (await store.release(lease.job, lease.retry('release'))) {
      lease.lost = true;
      lease.stop();
      log.info(handler.prefix, 'Released', fieldsOf(lease.job, { reason: 'isolate_ending' }));
    }
  }
}

/**
 * Drains due jobs (of one row when `generationId` is given), one claim at a time, until none is
 * due or the isolate declines (spent or ending: `declined` says why). A job whose source has not
 * answered BESIDE_AFTER_MS after its claim (a slow file host) does not hold up the jobs behind it:
 * another claim starts beside it (up to JOBS_AT_ONCE at once; one job holds the isolate, the
 * others wait on the network, isolate.ts). `wake`: the wake this worker answers (each claim is
 * its sign of life). The drain ends when every claimed job has; `onDeclined` hears of a decline
 * at once, while jobs parked on slow sources may still hold the drain for seconds.
 */
export async function drain(
  o: {
    store: JobStore;
    handlers: Handlers;
    wake?: string;
    generationId?: string;
    /** Called once when the isolate declines, while jobs parked beside may still run. */
    onDeclined?: () => void;
  },
): Promise<{ outcomes: JobOutcome[]; declined: string | null }> {
  const kinds = Object.keys(o.handlers) as JobKind[];
  const outcomes: JobOutcome[] = [];
  let declined: string | null = null;
  const running = new Set<Promise<void>>();
  const claims = async (first: boolean) => {
    for (;; first = false) {
      if (declined) return;
      const r = await runJob(async (slot) => {
        const sentAt = performance.now();
        const [first] = await o.store.claim({
          kinds,
          generationId: o.generationId,
          wake: o.wake,
        });
        if (!first) return null;
        const handler = o.handlers[first.kind] as JobHandler;
        const leases = [holdLease(o.store, handler, first, sentAt)];
        // its source has not answered after a moment (a slow host): the next job is claimed beside
        // it. Not for a job waiting for the isolate (its render is next) or one whose bytes arrive
        const slow = handler.downloadsFirst
          ? setTimeout(() => {
            if (slot.started()) return;
            slot.park();
            start(false);
          }, BESIDE_AFTER_MS)
          : undefined;
        try {
          if ('batch' in handler && handler.batch > 1) {
            const moreSentAt = performance.now();
            const more = await o.store.claim({
              kinds: [first.kind],
              limit: handler.batch - 1,
              generationId: o.generationId,
              wake: o.wake,
            });
            leases.push(...more.map((job) => holdLease(o.store, handler, job, moreSentAt)));
          }
          slot.hold({ release: () => release(o.store, handler, leases) });
          if (!handler.downloadsFirst) await slot.take();
          return await runClaimed(o.store, handler, leases, slot);
        } finally {
          clearTimeout(slow);
          for (const lease of leases) lease.stop();
        }
      }, first);
      if ('declined' in r) {
        if (!declined) {
          declined = r.declined;
          log.info('[Preview]', 'Declined', {
            generationId: o.generationId,
            wake: o.wake,
            reason: r.declined,
            ...isolateBudget(),
          });
          o.onDeclined?.();
        }
        return;
      }
      if (r.done === null) return;
      outcomes.push(...r.done);
    }
  };
  const start = (first: boolean) => {
    if (declined || running.size >= JOBS_AT_ONCE) return;
    // a claim beside the first that fails (the database away: its claims are retried about 5 s)
    // ends only itself; the first one's failure is the worker's
    const run = first ? claims(true) : claims(false).catch((err) =>
      log.error(
        '[Preview]',
        `Claim beside failed: ${err instanceof Error ? err.message : err}`,
        { wake: o.wake, code: (err as { code?: string } | null)?.code },
      )
    );
    const p: Promise<void> = run.finally(() => running.delete(p));
    running.add(p);
  };
  start(true);
  // every claim loop ends before the drain does, a failed one too (its error is the worker's)
  let failure: { err: unknown } | null = null;
  while (running.size) {
    for (const r of await Promise.allSettled(running)) {
      if (r.status === 'rejected') failure ??= { err: r.reason };
    }
  }
  if (failure) throw failure.err;
  return { outcomes, declined };
}
