/**
 * A tiny typed client for the fake KIE server (local/fake-kie.ts), for tests and the
 * demo. Runs under Node (>= 20, global fetch) and Deno.
 *
 *   const kie = createFakeKieClient('http://127.0.0.1:54340');
 *   await kie.putFile('cat.jpg', bytes, 'image/jpeg');
 *   const taskId = await kie.createTask('market', { callBackUrl, fixture: 'cat.jpg' });
 */

import { KIE_CREATE_PATHS } from '../shared/kie/client.ts';
import { type KieFamily } from '../shared/kie/parse.ts';

export type FakeKieBehaviour = {
  state?: 'success' | 'fail';
  failMsg?: string;
  /** 'concurrent' sends two callbacks at the same moment. */
  callback?: 'once' | 'twice' | 'concurrent' | 'never';
  callbackDelayMs?: number;
  asset?: 'ok' | '404' | '500' | '500-then-ok' | 'slow' | 'truncated' | 'hang';
  slowMs?: number;
  stayPending?: boolean;
  /** 'hang': this task's record-info never answers (the caller times out). */
  recordInfo?: 'ok' | 'hang';
  /**
   * suno only: the progress callbacks sent before the final one, in order (default
   * ['text', 'first']; [] = the final callback only). Each waits for the receiver's answer.
   */
  stages?: ('text' | 'first')[];
};

export type FakeKieCallbackAttempt = {
  n: number;
  at: string;
  url: string;
  /** HTTP status the receiver answered; 0 while in flight or when the request failed. */
  status: number;
  ok: boolean;
  /** False while the request is in flight. */
  done: boolean;
  error: string | null;
  durationMs: number;
  signed: boolean;
  headers: Record<string, string>;
  body: unknown;
  /** The receiver's answer, parsed when JSON (KIE ignores it; tests read what the receiver decided). */
  response: unknown;
};

export type FakeKieFileRequest = {
  at: string;
  method: string;
  path: string;
  taskId: string | null;
  name: string | null;
  status: number;
  bytes: number;
  range: string | null;
  mode: string;
};

export type FakeKieTask = {
  taskId: string;
  family: KieFamily;
  model: string;
  callBackUrl: string | null;
  state: 'pending' | 'success' | 'fail';
  fake: Required<Omit<FakeKieBehaviour, 'failMsg'>> & { failMsg?: string };
  fixtures: string[];
  coverFixture: string | null;
  resultUrls: string[];
  coverUrls: string[];
  createdAt: string;
  completedAt: string | null;
  /** suno: the last progress stage reached while the task runs. */
  stage: 'text' | 'first' | null;
  callbacks: FakeKieCallbackAttempt[];
  recordInfoCalls: number;
  fileRequests: FakeKieFileRequest[];
};

export type CreateFakeTaskOptions = {
  model?: string;
  callBackUrl?: string | null;
  /** An uploaded file name, or several for several results (suno: one track each). */
  fixture?: string | string[];
  /**
   * An uploaded image used as the cover (runway image_url, veo imageUrls, every suno track's
   * image_url).
   */
  coverFixture?: string;
  fake?: FakeKieBehaviour;
  prompt?: string;
  /** Extra fields: into `input` for market, top level otherwise. */
  extra?: Record<string, unknown>;
};

export interface FakeKieClient {
  readonly baseUrl: string;
  putFile(name: string, bytes: Uint8Array | ArrayBuffer, contentType: string): Promise<void>;
  createTask(family: KieFamily, opts: CreateFakeTaskOptions): Promise<string>;
  setTask(taskId: string, fake: FakeKieBehaviour): Promise<FakeKieTask>;
  getTask(taskId: string): Promise<FakeKieTask>;
  /** Sends one more callback for the task now (e.g. a late duplicate). */
  sendCallback(taskId: string): Promise<FakeKieCallbackAttempt>;
  requests(taskId?: string): Promise<FakeKieFileRequest[]>;
  /** KIE's record-info fails for `ms` (0 ends it): it hangs past the caller's timeout, or answers 500. */
  outage(ms: number, kind?: 'hang' | 'error'): Promise<void>;
  reset(): Promise<void>;
  health(): Promise<boolean>;
}

export function createFakeKieClient(
  baseUrl: string,
  opts: { apiKey?: string; fetch?: typeof fetch } = {},
): FakeKieClient {
  const base = baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const apiKey = opts.apiKey ?? 'fake-kie-key';

  async function call<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const isBytes = body instanceof Uint8Array || body instanceof ArrayBuffer;
    const res = await doFetch(`${base}${path}`, {
      method,
      headers: body === undefined || isBytes
        ? headers
        : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : isBytes ? (body as BodyInit) : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    if (!res.ok) {
      throw new Error(`fake KIE ${method} ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
    }
    return parsed as T;
  }

  return {
    baseUrl: base,
    async putFile(name, bytes, contentType) {
      await call('PUT', `/__control/files/${encodeURIComponent(name)}`, bytes, {
        'content-type': contentType,
      });
    },
    async createTask(family, o) {
      const common: Record<string, unknown> = {
        prompt: o.prompt ?? 'fake KIE task',
        callBackUrl: o.callBackUrl ?? undefined,
      };
      let body: Record<string, unknown>;
      if (family === 'market') {
        body = {
          model: o.model ?? 'google/nano-banana',
          callBackUrl: o.callBackUrl ?? undefined,
          input: {
            prompt: common.prompt,
            fixture: o.fixture,
            coverFixture: o.coverFixture,
            ...o.extra,
          },
          fake: o.fake,
        };
      } else {
        body = {
          ...common,
          // suno: what KIE's generate-music requires besides prompt, model and callBackUrl
          ...(family === 'suno' ? { customMode: false, instrumental: false } : {}),
          ...(o.model ? { model: o.model } : {}),
          fixture: o.fixture,
          coverFixture: o.coverFixture,
          fake: o.fake,
          ...o.extra,
        };
      }
      const answer = await call<{ code: number; msg?: string; data?: { taskId?: string } }>(
        'POST',
        KIE_CREATE_PATHS[family],
        JSON.parse(JSON.stringify(body)),
        { authorization: `Bearer ${apiKey}` },
      );
      if (answer?.code !== 200 || !answer.data?.taskId) {
        throw new Error(
          `fake KIE createTask(${family}) failed: code ${answer?.code}: ${answer?.msg}`,
        );
      }
      return answer.data.taskId;
    },
    setTask(taskId, fake) {
      return call('POST', `/__control/tasks/${encodeURIComponent(taskId)}`, fake);
    },
    getTask(taskId) {
      return call('GET', `/__control/tasks/${encodeURIComponent(taskId)}`);
    },
    sendCallback(taskId) {
      return call('POST', `/__control/tasks/${encodeURIComponent(taskId)}/callback`);
    },
    requests(taskId) {
      return call(
        'GET',
        `/__control/requests${taskId ? `?taskId=${encodeURIComponent(taskId)}` : ''}`,
      );
    },
    async outage(ms, kind = 'hang') {
      await call('POST', '/__control/outage', { ms, kind });
    },
    async reset() {
      await call('POST', '/__control/reset');
    },
    async health() {
      try {
        const h = await call<{ status?: string }>('GET', '/health');
        return h?.status === 'ok';
      } catch {
        return false;
      }
    },
  };
}
