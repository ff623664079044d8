/**
 * KIE.ai's task results: parsing of callbacks and record-info answers for every model family.
 *
 * Pure TypeScript with web-standard APIs only: the same file runs in the edge runtime (Deno) and
 * under Node (vitest). Nothing here reads the environment.
 *
 * KIE's documentation is not consistent between families or even between pages of one family,
 * so every reader below is defensive: arrays may arrive as JSON strings, ids in camel or snake
 * case, the envelope message as `msg` or `message`, failures inside an HTTP 200. When a payload
 * does not settle the task (success claimed without a usable URL, an unknown state), the result
 * says `complete: false` and the caller should ask record-info for the final word.
 */

export type KieFamily = 'market' | '4o' | 'flux-kontext' | 'veo' | 'runway' | 'mj' | 'suno';
export type KieState = 'pending' | 'success' | 'failed';

export type KieResult = {
  taskId: string;
  family: KieFamily;
  state: KieState;
  /** The generated files (images, videos, or audio tracks for suno), absolute http(s) URLs. */
  resultUrls: string[];
  /**
   * Cover/thumbnail images KIE gives for videos and audio (runway image_url, veo imageUrls, each
   * suno track's image_url…); may be empty.
   */
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
  'suno',
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

// ---------------------------------------------------------------------------------------------
// Small defensive readers
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
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

export function envelopeCode(body: Obj): number | null {
  return num(body.code);
}

export function envelopeMsg(body: Obj): string | null {
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

/**
 * Suno's model versions as KIE's generate-music endpoint takes them (`V3_5`, `V4`, `V4_5`,
 * `V4_5PLUS`, `V5`…), or as apps write them (`v4.5`).
 */
const SUNO_VERSION = /^v\d+(?:[._]\d+)?(?:plus|all)?$/;

/** The family whose endpoints serve a model name. Unknown or missing → 'market'. */
export function familyForModel(model: string | null | undefined): KieFamily {
  const m = (model ?? '').trim().toLowerCase();
  if (m === '') return 'market';
  // suno-v4, suno_v4_5, suno/v5 (apps' names), chirp-v3-5 (Suno's own, in KIE's answers), V4_5
  if (m.startsWith('suno') || m.startsWith('chirp') || SUNO_VERSION.test(m)) return 'suno';
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

  // Suno: every callback names its stage (text | first | complete | error); record-info shapes
  // carry the tracks in response.sunoData.
  if (
    has(data, 'callbackType', 'callback_type', 'sunoData', 'suno_data') ||
    has(asObj(data.response), 'sunoData', 'suno_data')
  ) {
    return 'suno';
  }
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

/** Suno's callback stage: `complete` settles the task; `text` and `first` are progress only. */
function sunoCallbackState(v: unknown): KieState | null {
  const s = str(v)?.toLowerCase();
  if (!s) return null;
  if (s === 'complete') return 'success';
  if (s === 'text' || s === 'first') return 'pending';
  if (s === 'error') return 'failed';
  return null;
}

/**
 * Suno's record-info `status` values, with KIE's description of each (used as the failure
 * message when the answer has none).
 */
const SUNO_PENDING = new Set(['PENDING', 'TEXT_SUCCESS', 'FIRST_SUCCESS', 'GENERATING', 'QUEUING']);
const SUNO_FAILED: Record<string, string> = {
  CREATE_TASK_FAILED: 'Failed to create task',
  GENERATE_AUDIO_FAILED: 'Failed to generate audio',
  CALLBACK_EXCEPTION: 'Error during callback process',
  SENSITIVE_WORD_ERROR: 'Content filtered due to sensitive words',
  FAILED: 'Generation failed',
};

function sunoStatusState(v: unknown): KieState | null {
  const s = str(v)?.toUpperCase();
  if (!s) return null;
  if (s === 'SUCCESS') return 'success';
  if (SUNO_PENDING.has(s)) return 'pending';
  if (Object.hasOwn(SUNO_FAILED, s)) return 'failed';
  return null;
}

/** The first value that is an absolute http(s) URL. */
function firstHttpUrl(...vals: unknown[]): string | null {
  for (const v of vals) {
    const s = str(v);
    if (s !== null && isHttpUrl(s)) return s;
  }
  return null;
}

/**
 * A suno task's tracks: the callback's `data.data[]` (snake case), record-info's
 * `data.response.sunoData[]` (camel case), or `data.sunoData[]`; arrays may be JSON strings.
 */
function sunoTracks(data: Obj): Obj[] {
  const response = asObj(data.response);
  for (
    const v of [
      data.data,
      response?.sunoData,
      response?.suno_data,
      data.sunoData,
      data.suno_data,
    ]
  ) {
    let list: unknown = v;
    if (typeof list === 'string' && list.trim().startsWith('[')) {
      try {
        list = JSON.parse(list);
      } catch {
        list = null;
      }
    }
    if (Array.isArray(list)) {
      const tracks = list.map(asObj).filter((t): t is Obj => t !== null);
      if (tracks.length > 0) return tracks;
    }
  }
  return [];
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
        resultUrls: urlList(
          info?.result_urls,
          info?.resultUrls,
          response?.resultUrls,
          response?.result_urls,
          data.resultUrls,
          data.result_urls,
        ),
        coverUrls: [],
        ...errors,
      };
    case 'flux-kontext':
      return {
        stated: successFlagState(data.successFlag),
        resultUrls: urlList(
          info?.resultImageUrl,
          info?.result_image_url,
          response?.resultImageUrl,
          response?.result_image_url,
          data.resultImageUrl,
        ),
        coverUrls: [],
        ...errors,
      };
    case 'veo':
      return {
        stated: successFlagState(data.successFlag),
        resultUrls: urlList(
          info?.resultUrls,
          info?.result_urls,
          response?.resultUrls,
          response?.result_urls,
          data.resultUrls,
        ),
        coverUrls: urlList(
          info?.imageUrls,
          info?.image_urls,
          info?.coverUrls,
          response?.imageUrls,
          response?.image_urls,
          response?.coverUrls,
          data.imageUrls,
        ),
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
    case 'suno': {
      // Each track: its audio file (audio_url; source_audio_url when KIE gives only that; never
      // the stream URL, which is for live playback) and its cover image, in KIE's order.
      const tracks = sunoTracks(data);
      const audio = tracks.map((t) =>
        firstHttpUrl(t.audio_url, t.audioUrl, t.source_audio_url, t.sourceAudioUrl)
      );
      const images = tracks.map((t) =>
        firstHttpUrl(t.image_url, t.imageUrl, t.source_image_url, t.sourceImageUrl)
      );
      const status = str(data.status)?.toUpperCase() ?? null;
      const callbackType = data.callbackType ?? data.callback_type;
      let stated = sunoCallbackState(callbackType) ?? sunoStatusState(status);
      // CALLBACK_EXCEPTION is KIE failing to deliver the callback, not necessarily the music:
      // with every track's audio there, the generation succeeded.
      if (
        status === 'CALLBACK_EXCEPTION' && audio.length > 0 && audio.every((u) => u !== null)
      ) {
        stated = 'success';
      }
      return {
        stated,
        resultUrls: urlList(audio.filter((u): u is string => u !== null)),
        coverUrls: urlList(images.filter((u): u is string => u !== null)),
        failMsg: firstStr(
          data.errorMessage,
          data.error_message,
          response?.errorMessage,
          response?.error_message,
          data.error,
        ) ?? (status !== null && Object.hasOwn(SUNO_FAILED, status) ? SUNO_FAILED[status] : null),
        failCode: firstStr(data.errorCode, data.error_code),
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
  // Suno's callbackType is a stage, not a verdict: its envelope code decides failure first (a
  // `text` or `first` callback with code 501 is the task failing).
  const hasStateField = ['state', 'status', 'successFlag', 'callbackType', 'callback_type'].some((
    k,
  ) => str(data[k]) !== null);
  let state: KieState | null = parts.stated;
  if (family === 'suno' && code !== null && code !== 200) state = 'failed';
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
