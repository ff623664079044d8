/** The fake KIE's tasks: their behaviour options, state, ids and the URLs of their results. */
import type { FakeKieCallbackAttempt, FakeKieFileRequest } from '../fake-kie-client.ts';
import type { KieFamily } from '../../shared/kie/parse.ts';

export type FakeBehaviour = {
  state: 'success' | 'fail';
  failMsg?: string;
  callback: 'once' | 'twice' | 'concurrent' | 'never';
  callbackDelayMs: number;
  asset: 'ok' | '404' | '500' | '500-then-ok' | 'slow' | 'truncated' | 'hang';
  slowMs: number;
  stayPending: boolean;
  /** 'hang': this task's record-info never answers (the caller times out); 'ok': it answers. */
  recordInfo: 'ok' | 'hang';
  /**
   * suno only: the progress callbacks KIE sends before the final one (`complete` or `error`), in
   * order; [] = the final callback only (KIE says some tasks skip the stages).
   */
  stages: SunoStage[];
};

/** A suno task's progress callbacks: lyrics written (`text`), first track done (`first`). */
export type SunoStage = 'text' | 'first';

export const DEFAULT_BEHAVIOUR: FakeBehaviour = {
  state: 'success',
  callback: 'once',
  callbackDelayMs: 100,
  asset: 'ok',
  slowMs: 2000,
  stayPending: false,
  recordInfo: 'ok',
  stages: ['text', 'first'],
};

export type StoredFile = { bytes: Uint8Array<ArrayBuffer>; contentType: string };

export type Task = {
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
  /** suno: the last progress callback reached (record-info says TEXT_SUCCESS / FIRST_SUCCESS). */
  stage: SunoStage | null;
};

export const DEFAULT_MODEL: Record<KieFamily, string> = {
  market: 'google/nano-banana',
  '4o': 'gpt4o-image',
  'flux-kontext': 'flux-kontext-pro',
  veo: 'veo3_fast',
  runway: 'runway',
  mj: 'midjourney',
  suno: 'V4_5',
};

/** What every part of the fake shares. */
export type FakeKieState = {
  tasks: Map<string, Task>;
  files: Map<string, StoredFile>;
  requests: FakeKieFileRequest[];
  hmacKey: string | null;
  publicUrl: () => string;
  /**
   * KIE's API failing until `until` (ms since the epoch): record-info hangs past any client's
   * timeout ('hang') or answers HTTP 500 {code:500,msg:"Server error"} ('error'). Files are
   * still served (they come from KIE's file host).
   */
  outage: { until: number; kind: 'hang' | 'error' } | null;
};

export function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function newTaskId(family: KieFamily): string {
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

const BEHAVIOUR_VALUES = {
  state: ['success', 'fail'],
  callback: ['once', 'twice', 'concurrent', 'never'],
  asset: ['ok', '404', '500', '500-then-ok', 'slow', 'truncated', 'hang'],
  recordInfo: ['ok', 'hang'],
} as const;

/** Validates and merges a behaviour patch; returns an error message for a bad one. */
export function mergeBehaviour(base: FakeBehaviour, patch: unknown): FakeBehaviour | string {
  if (patch === undefined || patch === null) return base;
  if (!isObj(patch)) return 'fake must be an object';
  const out: FakeBehaviour = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    switch (k) {
      case 'state':
      case 'callback':
      case 'asset':
      case 'recordInfo': {
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
      case 'stages':
        if (
          !Array.isArray(v) || v.some((x) => x !== 'text' && x !== 'first') ||
          new Set(v).size !== v.length
        ) {
          return "fake.stages must be a list of 'text' and 'first' (each at most once)";
        }
        out.stages = [...v] as SunoStage[];
        break;
      default:
        return `unknown fake option: ${k}`;
    }
  }
  return out;
}

export function fixtureNames(v: unknown): string[] | string {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const n of list) {
    if (typeof n !== 'string' || n === '' || n.includes('/')) {
      return 'fixture must be a file name or a list of them';
    }
  }
  return list as string[];
}

/** Where a task's file is served (the fake's public URL). */
export const fileUrl = (s: FakeKieState, task: Task, name: string) =>
  `${s.publicUrl()}/files/${encodeURIComponent(task.taskId)}/${encodeURIComponent(name)}`;

export const resultUrls = (s: FakeKieState, t: Task) => t.fixtures.map((n) => fileUrl(s, t, n));
export const coverUrls = (
  s: FakeKieState,
  t: Task,
) => (t.coverFixture ? [fileUrl(s, t, t.coverFixture)] : []);

/** pending until completion (creation + callbackDelayMs, or forever while stayPending). */
export const currentState = (t: Task): 'pending' | 'success' | 'fail' => {
  if (t.fake.stayPending || t.completedAt === null) return 'pending';
  return t.fake.state;
};

export function taskView(s: FakeKieState, t: Task) {
  return {
    taskId: t.taskId,
    family: t.family,
    model: t.model,
    callBackUrl: t.callBackUrl,
    state: currentState(t),
    fake: t.fake,
    fixtures: t.fixtures,
    coverFixture: t.coverFixture,
    resultUrls: resultUrls(s, t),
    coverUrls: coverUrls(s, t),
    createdAt: new Date(t.createdAt).toISOString(),
    completedAt: t.completedAt === null ? null : new Date(t.completedAt).toISOString(),
    stage: t.stage,
    callbacks: t.callbacks,
    recordInfoCalls: t.recordInfoCalls,
    fileRequests: s.requests.filter((r) => r.taskId === t.taskId),
  };
}
