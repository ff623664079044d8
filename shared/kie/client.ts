/**
 * KIE.ai's documented endpoints, and the record-info client (polling a task's result). Nothing
 * here reads the environment: the base URL, key, timeout and KIE's shared rate come in as
 * arguments.
 *
 * Every record-info call takes a slot of KIE's rate first, here and nowhere else: the functions
 * pass the database's `kie_rate_acquire()` (shared/kie-handlers.ts), one pace for every caller in
 * every isolate (KIE allows about 10 calls a second per key).
 */
import {
  envelopeCode,
  envelopeMsg,
  isObj,
  KieApiError,
  type KieFamily,
  type KieResult,
  parseRecordInfo,
} from './parse.ts';

/** record-info (polling) endpoint of each family, as KIE documents them. */
export const KIE_RECORD_INFO_PATHS: Record<KieFamily, string> = {
  market: '/api/v1/jobs/recordInfo',
  '4o': '/api/v1/gpt4o-image/record-info',
  'flux-kontext': '/api/v1/flux/kontext/record-info',
  veo: '/api/v1/veo/record-info',
  runway: '/api/v1/runway/record-detail',
  mj: '/api/v1/mj/record-info',
  // Suno (music): tasks of generate and of extend (docs.kie.ai/suno-api/get-music-details).
  suno: '/api/v1/generate/record-info',
};

/** Task creation endpoint of each family, as KIE documents them. */
export const KIE_CREATE_PATHS: Record<KieFamily, string> = {
  market: '/api/v1/jobs/createTask',
  '4o': '/api/v1/gpt4o-image/generate',
  'flux-kontext': '/api/v1/flux/kontext/generate',
  veo: '/api/v1/veo/generate',
  runway: '/api/v1/runway/generate',
  mj: '/api/v1/mj/generate',
  suno: '/api/v1/generate',
};

/**
 * Takes a slot of KIE's rate: how many ms to wait before calling, or null when no slot is free
 * within `maxWaitMs` (nothing was taken). The functions' one is the database's kie_rate_acquire().
 */
export type KieRateSlot = (maxWaitMs: number) => Promise<number | null>;

/** No slot of KIE's rate within the time the caller could wait: KIE was not asked. */
export class KieRateLimitedError extends KieApiError {
  constructor(message: string) {
    super(message);
    this.name = 'KieRateLimitedError';
  }
}

/** How long a record-info call waits for a slot unless its caller says otherwise. */
export const KIE_RATE_MAX_WAIT_MS = 5_000;
/**
 * A slot reached later than this (a late timer, a busy isolate) is not used: a new one is taken.
 * Calls made late would bunch up with the calls after them, and KIE counts arrivals.
 */
export const KIE_RATE_LATE_MS = 50;

export interface KieClient {
  /** `maxWaitMs`: how long this call may wait for a slot of KIE's rate (KIE_RATE_MAX_WAIT_MS). */
  recordInfo(taskId: string, family: KieFamily, opts?: { maxWaitMs?: number }): Promise<KieResult>;
}

/**
 * Waits for a slot of KIE's rate, at most `maxWaitMs` in all; throws KieRateLimitedError when
 * there is none in that time.
 */
async function awaitSlot(slot: KieRateSlot, maxWaitMs: number, what: string): Promise<void> {
  const deadline = performance.now() + maxWaitMs;
  for (;;) {
    const left = Math.floor(deadline - performance.now());
    const wait = left >= 0 ? await slot(left) : null;
    if (wait === null) {
      throw new KieRateLimitedError(
        `${what}: no slot of KIE's rate within ${maxWaitMs} ms; not asked`,
      );
    }
    const due = performance.now() + wait;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (performance.now() - due <= KIE_RATE_LATE_MS) return;
  }
}

export function createKieClient(opts: {
  baseUrl: string;
  apiKey: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
  /** KIE's rate, shared by every caller (the functions pass the database's); none: unpaced. */
  rate?: KieRateSlot;
}): KieClient {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = opts.timeoutMs ?? 15_000;
  if (!opts.apiKey) throw new Error('KIE API key is empty');

  return {
    async recordInfo(
      taskId: string,
      family: KieFamily,
      callOpts: { maxWaitMs?: number } = {},
    ): Promise<KieResult> {
      const path = KIE_RECORD_INFO_PATHS[family];
      if (!path) throw new Error(`Unknown KIE family: ${family}`);
      const url = `${base}${path}?taskId=${encodeURIComponent(taskId)}`;
      const what = `KIE record-info (${family}) for task ${taskId}`;
      if (opts.rate) {
        await awaitSlot(opts.rate, callOpts.maxWaitMs ?? KIE_RATE_MAX_WAIT_MS, what);
      }
      let res: Response;
      let text: string;
      try {
        res = await doFetch(url, {
          method: 'GET',
          headers: { Authorization: `Bearer ${opts.apiKey}`, Accept: 'application/json' },
          signal: AbortSignal.timeout(timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        const name = (err as { name?: string } | null)?.name;
        if (name === 'TimeoutError' || name === 'AbortError') {
          throw new KieApiError(`${what} timed out after ${timeoutMs} ms`, { cause: err });
        }
        throw new KieApiError(
          `${what} failed: ${err instanceof Error ? err.message : String(err)}`,
          {
            cause: err,
          },
        );
      }
      let body: unknown = null;
      try {
        body = text === '' ? null : JSON.parse(text);
      } catch {
        body = null;
      }
      const bodyMsg = isObj(body) ? envelopeMsg(body) : null;
      const bodyCode = isObj(body) ? envelopeCode(body) : null;
      if (!res.ok) {
        const detail = bodyMsg ?? (text.slice(0, 200) || res.statusText || 'no message');
        throw new KieApiError(`${what} failed: HTTP ${res.status}: ${detail}`, {
          status: res.status,
          code: bodyCode,
        });
      }
      if (!isObj(body)) {
        throw new KieApiError(`${what} failed: answer is not a JSON object`, {
          status: res.status,
        });
      }
      if (bodyCode !== null && bodyCode !== 200) {
        throw new KieApiError(`${what} failed: code ${bodyCode}: ${bodyMsg ?? 'no message'}`, {
          status: res.status,
          code: bodyCode,
        });
      }
      return parseRecordInfo(family, body, taskId);
    },
  };
}
