/**
 * KIE.ai: parsing of task callbacks and record-info answers for every model family, a small
 * record-info client, and webhook signature checks.
 *
 * Pure TypeScript with web-standard APIs only (fetch, crypto.subtle, TextEncoder): the same
 * file runs in the edge runtime (Deno) and under Node (vitest). Nothing here reads the
 * environment; configuration comes in as arguments.
 *
 * KIE's documentation is not consistent between families or even between pages of one family,
 * so every reader below is defensive: arrays may arrive as JSON strings, ids in camel or snake
 * case, the envelope message as `msg` or `message`, failures inside an HTTP 200. When a payload
 * does not settle the task (success claimed without a usable URL, an unknown state), the result
 * says `complete: false` and the caller should ask record-info for the final word.
 */

export type KieFamily = 'market' | '4o' | 'flux-kontext' | 'veo' | 'runway' | 'mj';
export type KieState = 'pending' | 'success' | 'failed';

export type KieResult = {
  taskId: string;
  family: KieFamily;
  state: KieState;
  /** The generated files (images or videos), absolute http(s) URLs. */
  resultUrls: string[];
  /** Cover/thumbnail images KIE gives for videos (runway image_url, veo imageUrls…); may be empty. */
  coverUrls: string[];
  /** A readable failure message when state is 'failed', else null. */
  error: string | null;
  /** False when the payload does not settle the task: ask record-info for the final word. */
  complete: boolean;
};

export const KIE_FAMILIES: readonly KieFamily[] = [
  'market',
  '4o',
  'flux-kontext',
  'veo',
  'runway',
  'mj',
];

/** A body that cannot be a KIE payload (not an object, no task id). Maps to HTTP 400. */
export class KieParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KieParseError';
  }
}

/** KIE answered a request with an error (HTTP status, envelope code, timeout, network). */
export class KieApiError extends Error {
  readonly status: number | null;
  readonly code: number | null;
  constructor(
    message: string,
    opts: { status?: number | null; code?: number | null; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'KieApiError';
    this.status = opts.status ?? null;
    this.code = opts.code ?? null;
  }
}

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

// ---------------------------------------------------------------------------------------------
// Small defensive readers
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An object, or a JSON string holding one; anything else → null. */
function asObj(v: unknown): Obj | null {
  if (isObj(v)) return v;
  if (typeof v === 'string') {
    const s = v.trim();
    if (s.startsWith('{')) {
      try {
        const parsed = JSON.parse(s);
        return isObj(parsed) ? parsed : null;
      } catch {
        return null;
      }
    }
  }
  return null;
}

function str(v: unknown): string | null {
  if (typeof v === 'string') {
    const s = v.trim();
    return s === '' ? null : s;
  }
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

function num(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v)) return Number(v);
  return null;
}

function firstStr(...vals: unknown[]): string | null {
  for (const v of vals) {
    const s = str(v);
    if (s !== null) return s;
  }
  return null;
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/**
 * URLs from a value that may be a string URL, an array, a JSON string of an array, or objects
 * carrying the URL (`{resultUrl}`, `{url}`, …). Keeps absolute http(s) URLs only, in order,
 * without duplicates.
 */
function urlList(...vals: unknown[]): string[] {
  const out: string[] = [];
  const push = (s: string) => {
    if (isHttpUrl(s) && !out.includes(s)) out.push(s);
  };
  const visit = (v: unknown, depth: number): void => {
    if (depth > 4 || v === null || v === undefined) return;
    if (typeof v === 'string') {
      const s = v.trim();
      if (s === '') return;
      if (s.startsWith('[') || s.startsWith('{')) {
        try {
          visit(JSON.parse(s), depth + 1);
        } catch {
          // not JSON: ignore
        }
        return;
      }
      push(s);
      return;
    }
    if (Array.isArray(v)) {
      for (const item of v) visit(item, depth + 1);
      return;
    }
    if (isObj(v)) {
      for (
        const k of [
          'resultUrl',
          'result_url',
          'url',
          'imageUrl',
          'image_url',
          'videoUrl',
          'video_url',
        ]
      ) {
        if (k in v) visit(v[k], depth + 1);
      }
    }
  };
  for (const v of vals) visit(v, 0);
  return out;
}

function envelopeCode(body: Obj): number | null {
  return num(body.code);
}

function envelopeMsg(body: Obj): string | null {
  return firstStr(body.msg, body.message);
}

/** `Generation failed: <message> (code <code>)`, with a readable default message. */
function failureText(message: string | null, code: string | number | null): string {
  const m = message ?? 'KIE reported a failure without a message';
  return code !== null && code !== ''
    ? `Generation failed: ${m} (code ${code})`
    : `Generation failed: ${m}`;
}

// ---------------------------------------------------------------------------------------------
// Task id and family
// ---------------------------------------------------------------------------------------------

/** The task id of a callback or record-info body: taskId | task_id | data.taskId | data.task_id. */
export function extractTaskId(body: unknown): string | null {
  if (!isObj(body)) return null;
  const data = asObj(body.data);
  return firstStr(body.taskId, body.task_id, data?.taskId, data?.task_id);
}

/** The family whose endpoints serve a model name. Unknown or missing → 'market'. */
export function familyForModel(model: string | null | undefined): KieFamily {
  const m = (model ?? '').trim().toLowerCase();
  if (m === '') return 'market';
  if (m.startsWith('gpt4o') || m.startsWith('4o') || m.startsWith('gpt-4o')) return '4o';
  if (m.startsWith('flux-kontext') || m.startsWith('flux_kontext') || m.startsWith('fluxkontext')) {
    return 'flux-kontext';
  }
  if (m.startsWith('veo')) return 'veo';
  if (m.startsWith('runway')) return 'runway';
  if (m.startsWith('mj') || m.startsWith('midjourney')) return 'mj';
  return 'market';
}

/** Which family a callback body comes from, judged by its shape; null when it cannot tell. */
export function detectCallbackFamily(body: unknown): KieFamily | null {
  if (!isObj(body)) return null;
  const data = asObj(body.data);
  if (!data) return null;
  const info = asObj(data.info);
  const has = (o: Obj | null, ...keys: string[]) => o !== null && keys.some((k) => k in o);

  if (has(data, 'video_url', 'video_id', 'image_url', 'videoUrl', 'videoInfo', 'video_info')) {
    return 'runway';
  }
  if (
    has(data, 'resultJson', 'result_json', 'failCode', 'failMsg', 'param') ||
    typeof data.state === 'string'
  ) {
    return 'market';
  }
  if (has(data, 'promptJson', 'prompt_json', 'resultInfoJson', 'result_info_json')) return 'mj';
  if (has(info, 'resultImageUrl', 'originImageUrl', 'result_image_url', 'origin_image_url')) {
    return 'flux-kontext';
  }
  if (has(info, 'result_urls')) return '4o';
  if (has(info, 'resultUrls', 'originUrls', 'resolution') || 'fallbackFlag' in data) return 'veo';
  if ('resultUrls' in data || 'result_urls' in data) return 'mj';
  if ('info' in data) return '4o';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

const MARKET_PENDING = new Set([
  'waiting',
  'queuing',
  'queueing',
  'generating',
  'wait',
  'pending',
  'running',
]);
const MARKET_SUCCESS = new Set(['success', 'succeeded', 'completed', 'complete']);
const MARKET_FAILED = new Set(['fail', 'failed', 'error', 'create_task_failed', 'generate_failed']);

function stateWord(v: unknown): KieState | null {
  const s = str(v)?.toLowerCase();
  if (!s) return null;
  if (MARKET_SUCCESS.has(s)) return 'success';
  if (MARKET_FAILED.has(s)) return 'failed';
  if (MARKET_PENDING.has(s)) return 'pending';
  return null;
}

function successFlagState(v: unknown): KieState | null {
  const n = num(v);
  if (n === 0) return 'pending';
  if (n === 1) return 'success';
  if (n === 2 || n === 3) return 'failed';
  return null;
}

function fourOStatusState(v: unknown): KieState | null {
  const s = str(v)?.toUpperCase();
  if (!s) return null;
  if (s === 'SUCCESS') return 'success';
  if (s === 'GENERATING' || s === 'PENDING' || s === 'WAITING' || s === 'QUEUING') return 'pending';
  if (s === 'CREATE_TASK_FAILED' || s === 'GENERATE_FAILED' || s === 'FAILED' || s === 'FAIL') {
    return 'failed';
  }
  return null;
}

type Parts = {
  stated: KieState | null; // what the payload's own state field says, if any
  resultUrls: string[];
  coverUrls: string[];
  failMsg: string | null;
  failCode: string | null;
};

/** The family-specific parts of a callback's `data`. */
/**
 * The fields of one family's task payload. Callbacks and record-info answers of a family
 * carry the same fields, but KIE's pages disagree on where (`info` or `response`, camel or
 * snake case), so every known place is read; URLs are de-duplicated.
 */
function familyParts(family: KieFamily, data: Obj): Parts {
  const info = asObj(data.info);
  const response = asObj(data.response);
  const errors = {
    failMsg: firstStr(data.errorMessage, data.error_message),
    failCode: firstStr(data.errorCode, data.error_code),
  };
  switch (family) {
    case 'market': {
      const rj = asObj(data.resultJson) ?? asObj(data.result_json);
      return {
        stated: stateWord(data.state),
        resultUrls: urlList(rj?.resultUrls, rj?.result_urls, data.resultUrls),
        coverUrls: urlList(rj?.coverUrls, rj?.thumbnailUrls),
        failMsg: firstStr(data.failMsg, data.fail_msg, data.errorMessage),
        failCode: firstStr(data.failCode, data.fail_code, data.errorCode),
      };
    }
    case '4o':
      return {
        stated: fourOStatusState(data.status) ?? successFlagState(data.successFlag),
        resultUrls: urlList(info?.result_urls, info?.resultUrls, response?.resultUrls, response?.result_urls, data.resultUrls, data.result_urls),
        coverUrls: [],
        ...errors,
      };
    case 'flux-kontext':
      return {
        stated: successFlagState(data.successFlag),
        resultUrls: urlList(info?.resultImageUrl, info?.result_image_url, response?.resultImageUrl, response?.result_image_url, data.resultImageUrl),
        coverUrls: [],
        ...errors,
      };
    case 'veo':
      return {
        stated: successFlagState(data.successFlag),
        resultUrls: urlList(info?.resultUrls, info?.result_urls, response?.resultUrls, response?.result_urls, data.resultUrls),
        coverUrls: urlList(info?.imageUrls, info?.image_urls, info?.coverUrls, response?.imageUrls, response?.image_urls, response?.coverUrls, data.imageUrls),
        ...errors,
      };
    case 'runway': {
      const vi = asObj(data.videoInfo) ?? asObj(data.video_info);
      return {
        stated: stateWord(data.state),
        resultUrls: urlList(data.video_url, data.videoUrl, vi?.videoUrl, vi?.video_url),
        coverUrls: urlList(data.image_url, data.imageUrl, vi?.imageUrl, vi?.image_url),
        failMsg: firstStr(data.failMsg, data.fail_msg),
        failCode: firstStr(data.failCode, data.fail_code),
      };
    }
    case 'mj': {
      const rij = asObj(data.resultInfoJson) ?? asObj(data.result_info_json);
      return {
        stated: successFlagState(data.successFlag),
        resultUrls: urlList(data.resultUrls, data.result_urls, rij?.resultUrls, rij?.result_urls),
        coverUrls: [],
        ...errors,
      };
    }
  }
}

function settle(
  taskId: string,
  family: KieFamily,
  state: KieState | null,
  parts: Parts,
  envelope: { code: number | null; msg: string | null },
): KieResult {
  if (state === 'failed') {
    const message = parts.failMsg ?? (envelope.code !== 200 ? envelope.msg : null);
    const code = parts.failCode ??
      (envelope.code !== null && envelope.code !== 200 ? String(envelope.code) : null);
    return {
      taskId,
      family,
      state: 'failed',
      resultUrls: [],
      coverUrls: [],
      error: failureText(message, code),
      complete: true,
    };
  }
  if (state === 'success') {
    return {
      taskId,
      family,
      state: 'success',
      resultUrls: parts.resultUrls,
      coverUrls: parts.coverUrls,
      error: null,
      complete: parts.resultUrls.length > 0,
    };
  }
  return {
    taskId,
    family,
    state: 'pending',
    resultUrls: [],
    coverUrls: [],
    error: null,
    complete: state === 'pending',
  };
}

/**
 * Parses a body that KIE POSTed to a task's callBackUrl, of any family (detected from the
 * shape; `opts.family`, e.g. from the row's model, is used when the shape does not tell).
 * Throws KieParseError when the body is not an object or has no task id.
 */
export function parseKieCallback(body: unknown, opts: { family?: KieFamily } = {}): KieResult {
  if (!isObj(body)) throw new KieParseError('Callback body must be a JSON object');
  const taskId = extractTaskId(body);
  if (!taskId) {
    throw new KieParseError('Callback has no task id (taskId, data.taskId or data.task_id)');
  }
  const detected = detectCallbackFamily(body);
  const family: KieFamily = detected ?? opts.family ?? 'market';
  const data = asObj(body.data) ?? {};
  const code = envelopeCode(body);
  const msg = envelopeMsg(body);
  const parts = familyParts(family, data);

  // The payload's own state wins over the envelope code when it is explicit; otherwise the
  // envelope code decides: 200 = success, any other code = failure.
  // A state field we do not understand leaves the task undecided (complete=false).
  const hasStateField = ['state', 'status', 'successFlag'].some((k) => str(data[k]) !== null);
  let state: KieState | null = parts.stated;
  if (state === null && !hasStateField) {
    if (code === 200) state = 'success';
    else if (code !== null) state = 'failed';
  }
  const result = settle(taskId, family, state, parts, { code, msg });
  // Shape not recognised and no hint: the state may be right, but the URLs may sit where we did
  // not look. Let record-info decide.
  if (detected === null && opts.family === undefined) result.complete = false;
  return result;
}

// ---------------------------------------------------------------------------------------------
// record-info
// ---------------------------------------------------------------------------------------------


/**
 * Parses an answer of a family's record-info endpoint (the body, envelope included).
 * Throws KieApiError when the envelope's code is not 200, KieParseError when there is no `data`
 * object or no task id (neither in the body nor as `fallbackTaskId`).
 */
export function parseRecordInfo(
  family: KieFamily,
  body: unknown,
  fallbackTaskId?: string,
): KieResult {
  if (!isObj(body)) throw new KieParseError('record-info answer must be a JSON object');
  const code = envelopeCode(body);
  const msg = envelopeMsg(body);
  if (code !== null && code !== 200) {
    throw new KieApiError(`KIE record-info failed: code ${code}: ${msg ?? 'no message'}`, { code });
  }
  const data = asObj(body.data);
  if (!data) throw new KieParseError(`record-info answer has no data${msg ? ` (${msg})` : ''}`);
  const taskId = firstStr(data.taskId, data.task_id) ?? str(fallbackTaskId);
  if (!taskId) throw new KieParseError('record-info answer has no task id');
  const parts = familyParts(family, data);
  // A failed state in record-info always has its message in the data, not the envelope.
  return settle(taskId, family, parts.stated, parts, { code: null, msg: null });
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

const encoder = new TextEncoder();

/** Constant-time string comparison (time depends on the lengths only, not on the content). */
export function timingSafeEqualString(a: string, b: string): boolean {
  const ab = encoder.encode(a);
  const bb = encoder.encode(b);
  const len = Math.max(ab.length, bb.length);
  let diff = ab.length ^ bb.length;
  for (let i = 0; i < len; i++) {
    diff |= (ab[i] ?? 0) ^ (bb[i] ?? 0);
  }
  return diff === 0;
}

function base64(bytes: Uint8Array): string {
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

/** base64(HMAC-SHA256(key, taskId + "." + timestamp)), KIE's X-Webhook-Signature. */
export async function signKieWebhook(
  hmacKey: string,
  taskId: string,
  timestamp: string,
): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    encoder.encode(hmacKey),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const sig = await crypto.subtle.sign('HMAC', key, encoder.encode(`${taskId}.${timestamp}`));
  return base64(new Uint8Array(sig));
}

/**
 * Checks KIE's X-Webhook-Timestamp / X-Webhook-Signature for a task id. False when either header
 * is missing, the timestamp is not Unix seconds, it lies outside the window (default 300 s either
 * way), or the signature does not match (compared in constant time).
 */
export async function verifyKieSignature(opts: {
  hmacKey: string;
  taskId: string;
  timestamp: string | null;
  signature: string | null;
  nowSeconds?: number;
  windowSeconds?: number;
}): Promise<boolean> {
  const { hmacKey, taskId } = opts;
  const timestamp = opts.timestamp?.trim() ?? '';
  const signature = opts.signature?.trim() ?? '';
  if (!hmacKey || !taskId || timestamp === '' || signature === '') return false;
  if (!/^\d{1,12}$/.test(timestamp)) return false;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  const window = opts.windowSeconds ?? 300;
  if (Math.abs(now - Number(timestamp)) > window) return false;
  const expected = await signKieWebhook(hmacKey, taskId, timestamp);
  return timingSafeEqualString(expected, signature);
}
