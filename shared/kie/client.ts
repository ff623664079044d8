/**
 * KIE.ai's documented endpoints, and the record-info client (polling a task's result). Nothing
 * here reads the environment: the base URL, key and timeout come in as arguments.
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
};

/** Task creation endpoint of each family, as KIE documents them. */
export const KIE_CREATE_PATHS: Record<KieFamily, string> = {
  market: '/api/v1/jobs/createTask',
  '4o': '/api/v1/gpt4o-image/generate',
  'flux-kontext': '/api/v1/flux/kontext/generate',
  veo: '/api/v1/veo/generate',
  runway: '/api/v1/runway/generate',
  mj: '/api/v1/mj/generate',
};

export interface KieClient {
  recordInfo(taskId: string, family: KieFamily): Promise<KieResult>;
}

export function createKieClient(opts: {
  baseUrl: string;
  apiKey: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
}): KieClient {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = opts.timeoutMs ?? 15_000;
  if (!opts.apiKey) throw new Error('KIE API key is empty');

  return {
    async recordInfo(taskId: string, family: KieFamily): Promise<KieResult> {
      const path = KIE_RECORD_INFO_PATHS[family];
      if (!path) throw new Error(`Unknown KIE family: ${family}`);
      const url = `${base}${path}?taskId=${encodeURIComponent(taskId)}`;
      const what = `KIE record-info (${family}) for task ${taskId}`;
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
