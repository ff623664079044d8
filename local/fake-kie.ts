/**
 * Fake KIE.ai server for local development and tests.
 *
 *   node_modules/@deno/linux-x64-glibc/deno run --allow-net --allow-env local/fake-kie.ts
 *
 * Environment (read in main, never at import):
 *   FAKE_KIE_PORT        port to listen on (default 54340; 0 = any free port, printed at start)
 *   FAKE_KIE_HOST        interface (default 127.0.0.1)
 *   FAKE_KIE_PUBLIC_URL  base of the result-file URLs (default http://127.0.0.1:<port>)
 *   FAKE_KIE_HMAC_KEY    when set, callbacks carry X-Webhook-Timestamp / X-Webhook-Signature
 *
 * Speaks KIE's documented shapes (see tests/fixtures/kie-payloads/): create routes answer
 * `{code:200,msg:"success",data:{taskId}}`, callbacks and record-info answers mirror each family.
 * Result files are uploaded first through the control API and served with Range support. Each
 * task can be told how to behave (fail, callback never/twice, broken asset…), see FakeBehaviour.
 */

import type { FakeKieCallbackAttempt, FakeKieFileRequest } from './fake-kie-client.ts';
import { KIE_CREATE_PATHS, KIE_RECORD_INFO_PATHS } from '../shared/kie/client.ts';
import { type KieFamily } from '../shared/kie/parse.ts';
import { signKieWebhook } from '../shared/kie/signature.ts';

export type FakeBehaviour = {
  state: 'success' | 'fail';
  failMsg?: string;
  callback: 'once' | 'twice' | 'concurrent' | 'never';
  callbackDelayMs: number;
  asset: 'ok' | '404' | '500' | '500-then-ok' | 'slow' | 'truncated' | 'hang';
  slowMs: number;
  stayPending: boolean;
};

const DEFAULT_BEHAVIOUR: FakeBehaviour = {
  state: 'success',
  callback: 'once',
  callbackDelayMs: 100,
  asset: 'ok',
  slowMs: 2000,
  stayPending: false,
};

type StoredFile = { bytes: Uint8Array<ArrayBuffer>; contentType: string };

type Task = {
  taskId: string;
  /** X-Webhook-Timestamp of the last signed callback. */
  lastSignedAt?: number;
  family: KieFamily;
  model: string;
  callBackUrl: string | null;
  request: Record<string, unknown>;
  fixtures: string[];
  coverFixture: string | null;
  fake: FakeBehaviour;
  createdAt: number;
  completedAt: number | null;
  callbacks: FakeKieCallbackAttempt[];
  callbackScheduled: boolean;
  timers: Set<ReturnType<typeof setTimeout>>;
  fileHits: Map<string, number>;
  recordInfoCalls: number;
};

const DEFAULT_MODEL: Record<KieFamily, string> = {
  market: 'google/nano-banana',
  '4o': 'gpt4o-image',
  'flux-kontext': 'flux-kontext-pro',
  veo: 'veo3_fast',
  runway: 'runway',
  mj: 'midjourney',
};

const DEFAULT_FAIL: Record<KieFamily, { code: number; msg: string }> = {
  market: { code: 501, msg: 'Internal server error' },
  '4o': { code: 400, msg: 'Your content was flagged by OpenAI as violating content policies' },
  'flux-kontext': { code: 501, msg: 'Image generation task failed' },
  veo: { code: 400, msg: 'Your prompt was flagged by Website as violating content policies.' },
  runway: { code: 400, msg: 'Inappropriate content detected. Please replace the image or video.' },
  mj: { code: 500, msg: 'Image generation failed' },
};

const SUCCESS_MSG: Record<KieFamily, string> = {
  market: 'Playground task completed successfully.',
  '4o': 'success',
  'flux-kontext': 'BFL image generated successfully.',
  veo: 'Veo3.1 video generated successfully.',
  runway: 'All generated successfully.',
  mj: 'success',
};

function log(line: string): void {
  console.log(`[FakeKIE] ${line}`);
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

function kieError(code: number, msg: string, httpStatus = 200): Response {
  return json({ code, msg, data: null }, httpStatus);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function newTaskId(family: KieFamily): string {
  switch (family) {
    case 'runway':
      return crypto.randomUUID();
    case 'veo':
      return `veo_task_${randomHex(8)}`;
    case 'mj':
      return `mj_task_${randomHex(8)}`;
    default:
      return randomHex(16);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const BEHAVIOUR_VALUES = {
  state: ['success', 'fail'],
  callback: ['once', 'twice', 'concurrent', 'never'],
  asset: ['ok', '404', '500', '500-then-ok', 'slow', 'truncated', 'hang'],
} as const;

/** Validates and merges a behaviour patch; returns an error message for a bad one. */
function mergeBehaviour(base: FakeBehaviour, patch: unknown): FakeBehaviour | string {
  if (patch === undefined || patch === null) return base;
  if (!isObj(patch)) return 'fake must be an object';
  const out: FakeBehaviour = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    switch (k) {
      case 'state':
      case 'callback':
      case 'asset': {
        const allowed = BEHAVIOUR_VALUES[k] as readonly string[];
        if (typeof v !== 'string' || !allowed.includes(v)) {
          return `fake.${k} must be one of ${allowed.join(', ')}`;
        }
        (out as Record<string, unknown>)[k] = v;
        break;
      }
      case 'failMsg':
        if (v !== null && typeof v !== 'string') return 'fake.failMsg must be a string';
        out.failMsg = v ?? undefined;
        break;
      case 'callbackDelayMs':
      case 'slowMs':
        if (typeof v !== 'number' || !(v >= 0)) return `fake.${k} must be a number >= 0`;
        out[k] = v;
        break;
      case 'stayPending':
        if (typeof v !== 'boolean') return 'fake.stayPending must be a boolean';
        out.stayPending = v;
        break;
      default:
        return `unknown fake option: ${k}`;
    }
  }
  return out;
}

function fixtureNames(v: unknown): string[] | string {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const n of list) {
    if (typeof n !== 'string' || n === '' || n.includes('/')) {
      return 'fixture must be a file name or a list of them';
    }
  }
  return list as string[];
}

export function createFakeKie(opts: { publicUrl: () => string; hmacKey?: string | null }) {
  const files = new Map<string, StoredFile>();
  const tasks = new Map<string, Task>();
  let requests: FakeKieFileRequest[] = [];
  const hmacKey = opts.hmacKey || null;

  const fileUrl = (task: Task, name: string) =>
    `${opts.publicUrl()}/files/${encodeURIComponent(task.taskId)}/${encodeURIComponent(name)}`;

  const resultUrls = (t: Task) => t.fixtures.map((n) => fileUrl(t, n));
  const coverUrls = (t: Task) => (t.coverFixture ? [fileUrl(t, t.coverFixture)] : []);

  /** pending until completion (creation + callbackDelayMs, or forever while stayPending). */
  const currentState = (t: Task): 'pending' | 'success' | 'fail' => {
    if (t.fake.stayPending || t.completedAt === null) return 'pending';
    return t.fake.state;
  };

  const failOf = (t: Task) => ({
    code: DEFAULT_FAIL[t.family].code,
    msg: t.fake.failMsg ?? DEFAULT_FAIL[t.family].msg,
  });

  const paramJson = (t: Task) => JSON.stringify(t.request);

  // ------------------------------------------------------------------ callback shapes
  function callbackBody(t: Task): Record<string, unknown> {
    const ok = t.fake.state === 'success';
    const urls = resultUrls(t);
    const covers = coverUrls(t);
    const { code, msg } = failOf(t);
    switch (t.family) {
      case 'market': {
        const base = {
          completeTime: t.completedAt ?? Date.now(),
          consumeCredits: ok ? 100 : 0,
          costTime: Math.round(((t.completedAt ?? Date.now()) - t.createdAt) / 1000),
          createTime: t.createdAt,
          model: t.model,
          param: paramJson(t),
          remainedCredits: 2510330,
          taskId: t.taskId,
          updateTime: t.completedAt ?? Date.now(),
        };
        return ok
          ? {
            code: 200,
            msg: SUCCESS_MSG.market,
            data: { ...base, resultJson: JSON.stringify({ resultUrls: urls }), state: 'success' },
          }
          : {
            code: 501,
            msg: 'Playground task failed.',
            data: { ...base, failCode: '500', failMsg: msg, state: 'fail' },
          };
      }
      case '4o':
        return ok
          ? {
            code: 200,
            msg: SUCCESS_MSG['4o'],
            data: { taskId: t.taskId, info: { result_urls: urls } },
          }
          : { code, msg, data: { taskId: t.taskId, info: null } };
      case 'flux-kontext':
        return ok
          ? {
            code: 200,
            msg: SUCCESS_MSG['flux-kontext'],
            data: {
              taskId: t.taskId,
              info: { originImageUrl: urls[0] ?? '', resultImageUrl: urls[0] ?? '' },
            },
          }
          : {
            code,
            msg,
            data: { taskId: t.taskId, info: { originImageUrl: '', resultImageUrl: '' } },
          };
      case 'veo': {
        if (!ok) return { code, msg, data: { taskId: t.taskId, fallbackFlag: false } };
        const info: Record<string, unknown> = {
          resultUrls: urls,
          originUrls: urls,
          resolution: '1080p',
        };
        if (covers.length) info.imageUrls = covers;
        return {
          code: 200,
          msg: SUCCESS_MSG.veo,
          data: { taskId: t.taskId, info, fallbackFlag: false },
        };
      }
      case 'runway':
        return ok
          ? {
            code: 200,
            msg: SUCCESS_MSG.runway,
            data: {
              task_id: t.taskId,
              video_id: `video-${t.taskId}`,
              video_url: urls[0] ?? '',
              image_url: covers[0] ?? '',
            },
          }
          : { code, msg, data: { task_id: t.taskId, video_id: '', video_url: '', image_url: '' } };
      case 'mj':
        return ok
          ? {
            code: 200,
            msg: SUCCESS_MSG.mj,
            data: { taskId: t.taskId, promptJson: paramJson(t), resultUrls: urls },
          }
          : { code, msg, data: { taskId: t.taskId, promptJson: paramJson(t), resultUrls: [] } };
    }
  }

  // ------------------------------------------------------------------ record-info shapes
  function recordInfoBody(t: Task): Record<string, unknown> {
    const st = currentState(t);
    const urls = resultUrls(t);
    const covers = coverUrls(t);
    const { code, msg } = failOf(t);
    const done = st !== 'pending';
    const completeTime = done ? (t.completedAt ?? Date.now()) : null;
    const flag = st === 'pending' ? 0 : st === 'success' ? 1 : 3;
    const envelope = (data: Record<string, unknown>) => ({ code: 200, msg: 'success', data });
    switch (t.family) {
      case 'market':
        return {
          code: 200,
          message: 'success',
          data: {
            taskId: t.taskId,
            model: t.model,
            state: st === 'pending' ? 'generating' : st,
            param: paramJson(t),
            resultJson: st === 'success' ? JSON.stringify({ resultUrls: urls }) : '',
            failCode: st === 'fail' ? '500' : '',
            failMsg: st === 'fail' ? msg : '',
            ...(done ? { completeTime } : {}),
            createTime: t.createdAt,
            updateTime: t.completedAt ?? t.createdAt,
          },
        };
      case '4o':
        return envelope({
          taskId: t.taskId,
          paramJson: paramJson(t),
          completeTime,
          response: st === 'success' ? { resultUrls: urls } : null,
          successFlag: st === 'pending' ? 0 : st === 'success' ? 1 : 2,
          status: st === 'pending'
            ? 'GENERATING'
            : st === 'success'
            ? 'SUCCESS'
            : 'GENERATE_FAILED',
          errorCode: st === 'fail' ? code : null,
          errorMessage: st === 'fail' ? msg : '',
          createTime: t.createdAt,
          progress: st === 'pending' ? '0.50' : '1.00',
        });
      case 'flux-kontext':
        return envelope({
          taskId: t.taskId,
          paramJson: paramJson(t),
          completeTime: completeTime === null ? null : new Date(completeTime).toISOString(),
          response: st === 'success'
            ? { originImageUrl: urls[0] ?? '', resultImageUrl: urls[0] ?? '' }
            : null,
          successFlag: flag,
          errorCode: st === 'fail' ? code : null,
          errorMessage: st === 'fail' ? msg : '',
          createTime: new Date(t.createdAt).toISOString(),
        });
      case 'veo': {
        const response: Record<string, unknown> | null = st === 'success'
          ? { taskId: t.taskId, resultUrls: urls, originUrls: urls, resolution: '1080p' }
          : null;
        if (response && covers.length) response.imageUrls = covers;
        return envelope({
          taskId: t.taskId,
          paramJson: paramJson(t),
          completeTime,
          response,
          successFlag: flag,
          errorCode: st === 'fail' ? code : null,
          errorMessage: st === 'fail' ? msg : '',
          createTime: t.createdAt,
          fallbackFlag: false,
        });
      }
      case 'runway':
        return envelope({
          taskId: t.taskId,
          parentTaskId: '',
          generateParam: {
            prompt: t.request.prompt ?? '',
            imageUrl: t.request.imageUrl ?? '',
            expandPrompt: true,
          },
          state: st === 'pending' ? 'generating' : st,
          generateTime: new Date(t.completedAt ?? t.createdAt).toISOString().replace('T', ' ')
            .slice(0, 19),
          videoInfo: st === 'success'
            ? {
              videoId: `video-${t.taskId}`,
              taskId: t.taskId,
              videoUrl: urls[0] ?? '',
              imageUrl: covers[0] ?? '',
            }
            : null,
          failCode: st === 'fail' ? String(code) : '',
          failMsg: st === 'fail' ? msg : '',
          expireFlag: 0,
        });
      case 'mj':
        return envelope({
          taskId: t.taskId,
          taskType: 'mj_txt2img',
          paramJson: paramJson(t),
          completeTime,
          resultInfoJson: st === 'success'
            ? { resultUrls: urls.map((resultUrl) => ({ resultUrl })) }
            : null,
          successFlag: flag,
          createTime: t.createdAt,
          errorCode: st === 'fail' ? code : null,
          errorMessage: st === 'fail' ? msg : null,
        });
    }
  }

  // ------------------------------------------------------------------ callbacks
  async function sendCallback(t: Task): Promise<FakeKieCallbackAttempt | null> {
    if (!t.callBackUrl) return null;
    const body = callbackBody(t);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (hmacKey) {
      // each delivery its own timestamp (kie-callback accepts one body per signature)
      t.lastSignedAt = Math.max(Math.floor(Date.now() / 1000), (t.lastSignedAt ?? 0) + 1);
      const ts = String(t.lastSignedAt);
      headers['x-webhook-timestamp'] = ts;
      headers['x-webhook-signature'] = await signKieWebhook(hmacKey, t.taskId, ts);
    }
    const attempt: FakeKieCallbackAttempt = {
      n: t.callbacks.length + 1,
      at: new Date().toISOString(),
      url: t.callBackUrl,
      status: 0,
      ok: false,
      done: false,
      error: null,
      durationMs: 0,
      signed: hmacKey !== null,
      headers,
      body,
      response: null,
    };
    t.callbacks.push(attempt);
    const started = Date.now();
    try {
      const res = await fetch(t.callBackUrl, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000), // KIE gives the receiver 15 s
      });
      const text = await res.text();
      try {
        attempt.response = JSON.parse(text);
      } catch {
        attempt.response = text.slice(0, 500);
      }
      attempt.status = res.status;
      attempt.ok = res.status === 200;
    } catch (err) {
      attempt.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
    attempt.durationMs = Date.now() - started;
    attempt.done = true;
    log(
      `callback task=${t.taskId} family=${t.family} n=${attempt.n} status=${attempt.status}${
        attempt.error ? ` error=${JSON.stringify(attempt.error)}` : ''
      }`,
    );
    return attempt;
  }

  function later(t: Task, ms: number, fn: () => void | Promise<void>): void {
    const id = setTimeout(() => {
      t.timers.delete(id);
      void fn();
    }, ms);
    t.timers.add(id);
  }

  /** Completes the task after its delay (unless stayPending) and sends its callback(s). */
  function schedule(t: Task): void {
    if (t.fake.stayPending || t.callbackScheduled) return;
    t.callbackScheduled = true;
    later(t, t.fake.callbackDelayMs, async () => {
      t.completedAt = Date.now();
      switch (t.fake.callback) {
        case 'never':
          log(`callback task=${t.taskId} status=skipped (callback=never)`);
          return;
        case 'once':
          await sendCallback(t);
          return;
        case 'twice':
          await sendCallback(t);
          await sendCallback(t);
          return;
        case 'concurrent':
          await Promise.all([sendCallback(t), sendCallback(t)]);
          return;
      }
    });
  }

  // ------------------------------------------------------------------ views
  function taskView(t: Task) {
    return {
      taskId: t.taskId,
      family: t.family,
      model: t.model,
      callBackUrl: t.callBackUrl,
      state: currentState(t),
      fake: t.fake,
      fixtures: t.fixtures,
      coverFixture: t.coverFixture,
      resultUrls: resultUrls(t),
      coverUrls: coverUrls(t),
      createdAt: new Date(t.createdAt).toISOString(),
      completedAt: t.completedAt === null ? null : new Date(t.completedAt).toISOString(),
      callbacks: t.callbacks,
      recordInfoCalls: t.recordInfoCalls,
      fileRequests: requests.filter((r) => r.taskId === t.taskId),
    };
  }

  // ------------------------------------------------------------------ routes: KIE API
  const createRoutes = new Map(
    Object.entries(KIE_CREATE_PATHS).map(([f, p]) => [p, f as KieFamily]),
  );
  const recordRoutes = new Map(
    Object.entries(KIE_RECORD_INFO_PATHS).map(([f, p]) => [p, f as KieFamily]),
  );

  async function createTask(family: KieFamily, req: Request): Promise<Response> {
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return kieError(400, 'Request body must be JSON');
    }
    if (!isObj(body)) return kieError(400, 'Request body must be a JSON object');
    const input = isObj(body.input) ? body.input : {};
    if (family === 'market' && typeof body.model !== 'string') {
      return kieError(422, 'model is required');
    }
    const fake = mergeBehaviour(DEFAULT_BEHAVIOUR, body.fake ?? input.fake);
    if (typeof fake === 'string') return kieError(422, `fake: ${fake}`);
    const fixtures = fixtureNames(input.fixture ?? body.fixture);
    if (typeof fixtures === 'string') return kieError(422, `fake: ${fixtures}`);
    const coverRaw = input.coverFixture ?? body.coverFixture ?? null;
    const cover = coverRaw === null ? [] : fixtureNames(coverRaw);
    if (typeof cover === 'string' || cover.length > 1) {
      return kieError(422, 'fake: coverFixture must be one file name');
    }
    for (const n of [...fixtures, ...cover]) {
      if (!files.has(n)) {
        return kieError(422, `fake: file not uploaded: ${n} (PUT /__control/files/${n} first)`);
      }
    }
    if (fake.state === 'success' && fixtures.length === 0) {
      return kieError(
        422,
        'fake: a successful task needs input.fixture or fixture (an uploaded file name)',
      );
    }
    const callBackUrl = typeof body.callBackUrl === 'string' && body.callBackUrl !== ''
      ? body.callBackUrl
      : null;
    const taskId = newTaskId(family);
    const t: Task = {
      taskId,
      family,
      model: typeof body.model === 'string' && body.model !== ''
        ? body.model
        : DEFAULT_MODEL[family],
      callBackUrl,
      request: body,
      fixtures,
      coverFixture: cover[0] ?? null,
      fake,
      createdAt: Date.now(),
      completedAt: null,
      callbacks: [],
      callbackScheduled: false,
      timers: new Set(),
      fileHits: new Map(),
      recordInfoCalls: 0,
    };
    tasks.set(taskId, t);
    log(
      `created task=${taskId} family=${family} model=${t.model} fixtures=${
        fixtures.join(',') || '-'
      } state=${fake.state} callback=${fake.callback} asset=${fake.asset}${
        fake.stayPending ? ' stayPending' : ''
      }`,
    );
    schedule(t);
    return json({ code: 200, msg: 'success', data: { taskId } });
  }

  function recordInfo(family: KieFamily, url: URL): Response {
    const taskId = url.searchParams.get('taskId') ?? url.searchParams.get('task_id');
    if (!taskId) return kieError(422, 'taskId is required');
    const t = tasks.get(taskId);
    if (!t) return kieError(404, 'recordInfo is null: task not found');
    if (t.family !== family) {
      return kieError(404, `recordInfo is null: task is not a ${family} task`);
    }
    t.recordInfoCalls++;
    const body = recordInfoBody(t);
    log(`record-info task=${taskId} family=${family} state=${currentState(t)}`);
    return json(body);
  }

  // ------------------------------------------------------------------ routes: files
  function parseRange(
    header: string | null,
    size: number,
  ): { start: number; end: number } | 'bad' | null {
    if (!header) return null;
    const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
    if (!m || (m[1] === '' && m[2] === '')) return 'bad';
    let start: number;
    let end: number;
    if (m[1] === '') {
      const suffix = Number(m[2]);
      if (suffix === 0) return 'bad';
      start = Math.max(0, size - suffix);
      end = size - 1;
    } else {
      start = Number(m[1]);
      end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    }
    if (start >= size || end < start) return 'bad';
    return { start, end };
  }

  async function serveFile(req: Request, taskId: string, name: string): Promise<Response> {
    const range = req.headers.get('range');
    const record = (status: number, bytes: number, mode: string) => {
      requests.push({
        at: new Date().toISOString(),
        method: req.method,
        path: new URL(req.url).pathname,
        taskId,
        name,
        status,
        bytes,
        range,
        mode,
      });
      log(
        `file task=${taskId} name=${name} status=${status} bytes=${bytes} mode=${mode}${
          range ? ` range=${range}` : ''
        }`,
      );
    };
    const t = tasks.get(taskId);
    const file = files.get(name);
    if (!t || !file || !(t.fixtures.includes(name) || t.coverFixture === name)) {
      record(404, 0, 'unknown');
      return new Response('Not Found', { status: 404 });
    }
    const hits = (t.fileHits.get(name) ?? 0) + 1;
    t.fileHits.set(name, hits);
    const mode = t.fake.asset;
    if (mode === '404') {
      record(404, 0, mode);
      return new Response('Not Found', { status: 404 });
    }
    if (mode === '500' || (mode === '500-then-ok' && hits === 1)) {
      record(500, 0, mode);
      return new Response('Internal Server Error', { status: 500 });
    }
    if (mode === 'slow') await sleep(t.fake.slowMs);

    const size = file.bytes.length;
    const head = req.method === 'HEAD';
    const baseHeaders: Record<string, string> = {
      'content-type': file.contentType,
      'accept-ranges': 'bytes',
      'cache-control': 'no-store',
    };

    if (mode === 'truncated') {
      // Announce every byte, send half, then break the connection.
      const half = file.bytes.slice(0, Math.max(1, Math.floor(size / 2)));
      record(200, half.length, mode);
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller) {
          controller.enqueue(half);
          await sleep(20);
          controller.error(new Error('fake truncation'));
        },
      });
      return new Response(head ? null : stream, {
        status: 200,
        headers: { ...baseHeaders, 'content-length': String(size) },
      });
    }
    if (mode === 'hang') {
      // Headers and a first chunk, then nothing ever again (until the client gives up).
      const first = file.bytes.slice(0, Math.min(size, 16));
      record(200, first.length, mode);
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (!sent) {
            sent = true;
            controller.enqueue(first);
            return;
          }
          return new Promise<void>(() => {}); // never resolves
        },
      });
      return new Response(head ? null : stream, {
        status: 200,
        headers: { ...baseHeaders, 'content-length': String(size) },
      });
    }

    const r = parseRange(range, size);
    if (r === 'bad') {
      record(416, 0, mode);
      return new Response(null, {
        status: 416,
        headers: { ...baseHeaders, 'content-range': `bytes */${size}` },
      });
    }
    if (r) {
      const part = file.bytes.slice(r.start, r.end + 1);
      record(206, head ? 0 : part.length, mode);
      return new Response(head ? null : part, {
        status: 206,
        headers: {
          ...baseHeaders,
          'content-length': String(part.length),
          'content-range': `bytes ${r.start}-${r.end}/${size}`,
        },
      });
    }
    record(200, head ? 0 : size, mode);
    return new Response(head ? null : file.bytes, {
      status: 200,
      headers: { ...baseHeaders, 'content-length': String(size) },
    });
  }

  // ------------------------------------------------------------------ routes: control
  function reset(): void {
    for (const t of tasks.values()) for (const id of t.timers) clearTimeout(id);
    tasks.clear();
    files.clear();
    requests = [];
  }

  async function control(req: Request, url: URL): Promise<Response> {
    const parts = url.pathname.split('/').filter(Boolean).slice(1).map(decodeURIComponent); // after __control
    const [what, id, action] = parts;
    if (what === 'reset' && req.method === 'POST') {
      reset();
      log('reset');
      return json({ ok: true });
    }
    if (what === 'requests' && req.method === 'GET') {
      const taskId = url.searchParams.get('taskId');
      return json(taskId ? requests.filter((r) => r.taskId === taskId) : requests);
    }
    if (what === 'files') {
      if (!id && req.method === 'GET') {
        return json(
          [...files].map(([name, f]) => ({
            name,
            size: f.bytes.length,
            contentType: f.contentType,
          })),
        );
      }
      if (id && (req.method === 'PUT' || req.method === 'POST')) {
        if (id.includes('/') || id === '') return json({ ok: false, error: 'bad file name' }, 400);
        const bytes = new Uint8Array(await req.arrayBuffer());
        const contentType = req.headers.get('content-type') || 'application/octet-stream';
        files.set(id, { bytes, contentType });
        log(`stored file name=${id} size=${bytes.length} type=${contentType}`);
        return json({ ok: true, name: id, size: bytes.length, contentType });
      }
    }
    if (what === 'tasks') {
      if (!id && req.method === 'GET') return json([...tasks.values()].map(taskView));
      const t = id ? tasks.get(id) : undefined;
      if (!t) return json({ ok: false, error: `no such task: ${id}` }, 404);
      if (!action && req.method === 'GET') return json(taskView(t));
      if (!action && req.method === 'POST') {
        let patch: unknown;
        try {
          patch = await req.json();
        } catch {
          return json({ ok: false, error: 'body must be JSON' }, 400);
        }
        const merged = mergeBehaviour(t.fake, patch);
        if (typeof merged === 'string') return json({ ok: false, error: merged }, 400);
        if (merged.state === 'success' && t.fixtures.length === 0) {
          return json({ ok: false, error: 'task has no fixture: it cannot succeed' }, 400);
        }
        t.fake = merged;
        log(`updated task=${t.taskId} fake=${JSON.stringify(patch)}`);
        schedule(t); // a task released from stayPending completes now (after callbackDelayMs)
        return json(taskView(t));
      }
      if (action === 'callback' && req.method === 'POST') {
        if (t.completedAt === null) t.completedAt = Date.now();
        const attempt = await sendCallback(t);
        if (!attempt) return json({ ok: false, error: 'task has no callBackUrl' }, 400);
        return json(attempt);
      }
    }
    return json({ ok: false, error: `no control route ${req.method} ${url.pathname}` }, 404);
  }

  // ------------------------------------------------------------------ dispatcher
  async function handler(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, '') || '/';
    try {
      if (path === '/health') return json({ status: 'ok', tasks: tasks.size, files: files.size });
      if (path.startsWith('/__control/')) return await control(req, url);
      if (path.startsWith('/files/') && (req.method === 'GET' || req.method === 'HEAD')) {
        const [, , taskId, name] = path.split('/');
        if (!taskId || !name) return new Response('Not Found', { status: 404 });
        return await serveFile(req, decodeURIComponent(taskId), decodeURIComponent(name));
      }
      if (path.startsWith('/api/')) {
        const auth = req.headers.get('authorization') ?? '';
        const m = /^Bearer\s+(\S.*)$/i.exec(auth);
        if (!m) {
          return json(
            {
              code: 401,
              msg:
                'You do not have access permissions: missing or invalid Authorization Bearer token',
            },
            401,
          );
        }
        const createFamily = createRoutes.get(path);
        if (createFamily && req.method === 'POST') return await createTask(createFamily, req);
        const recordFamily = recordRoutes.get(path);
        if (recordFamily && req.method === 'GET') return recordInfo(recordFamily, url);
        return kieError(404, `Not Found: ${req.method} ${path}`, 404);
      }
      return new Response('Not Found', { status: 404 });
    } catch (err) {
      log(`error ${req.method} ${path}: ${err instanceof Error ? err.stack : String(err)}`);
      return kieError(500, 'Server error', 500);
    }
  }

  return { handler, reset };
}

function main(): void {
  const portRaw = Deno.env.get('FAKE_KIE_PORT') ?? '54340';
  const port = Number(portRaw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`[FakeKIE] FAKE_KIE_PORT must be a port number, got ${JSON.stringify(portRaw)}`);
    Deno.exit(2);
  }
  const hostname = Deno.env.get('FAKE_KIE_HOST') || '127.0.0.1';
  const publicUrlEnv = Deno.env.get('FAKE_KIE_PUBLIC_URL')?.replace(/\/+$/, '') || null;
  let actualPort = port;
  const fake = createFakeKie({
    publicUrl: () => publicUrlEnv ?? `http://127.0.0.1:${actualPort}`,
    hmacKey: Deno.env.get('FAKE_KIE_HMAC_KEY') || null,
  });
  const server = Deno.serve({
    port,
    hostname,
    onListen: (addr) => {
      actualPort = addr.port;
      log(
        `listening on http://${addr.hostname}:${addr.port} hmac=${
          Deno.env.get('FAKE_KIE_HMAC_KEY') ? 'on' : 'off'
        }`,
      );
    },
  }, fake.handler);
  const stop = () => {
    fake.reset();
    log('stopping');
    // A 'hang' download would keep a graceful shutdown waiting forever: give it a moment only.
    setTimeout(() => Deno.exit(0), 300);
    void server.shutdown().then(() => Deno.exit(0));
  };
  Deno.addSignalListener('SIGINT', stop);
  Deno.addSignalListener('SIGTERM', stop);
}

if (import.meta.main) main();
