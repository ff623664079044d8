/** KIE's API routes: task creation and record-info of every family (KIE's documented paths). */
import { KIE_CREATE_PATHS, KIE_RECORD_INFO_PATHS } from '../../shared/kie/client.ts';
import type { KieFamily } from '../../shared/kie/parse.ts';
import { schedule } from './callbacks.ts';
import { json, kieError, log, sleep } from './http.ts';
import { recordInfoBody } from './shapes.ts';
import {
  currentState,
  DEFAULT_BEHAVIOUR,
  DEFAULT_MODEL,
  type FakeKieState,
  fixtureNames,
  isObj,
  mergeBehaviour,
  newTaskId,
  type Task,
} from './task.ts';

export const createRoutes = new Map(
  Object.entries(KIE_CREATE_PATHS).map(([f, p]) => [p, f as KieFamily]),
);
// Extend Music makes a suno task too: same callbacks, same record-info.
createRoutes.set('/api/v1/generate/extend', 'suno');
export const recordRoutes = new Map(
  Object.entries(KIE_RECORD_INFO_PATHS).map(([f, p]) => [p, f as KieFamily]),
);

export async function createTask(
  s: FakeKieState,
  family: KieFamily,
  req: Request,
): Promise<Response> {
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
    if (!s.files.has(n)) {
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
    model: typeof body.model === 'string' && body.model !== '' ? body.model : DEFAULT_MODEL[family],
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
    stage: null,
  };
  s.tasks.set(taskId, t);
  log(
    `created task=${taskId} family=${family} model=${t.model} fixtures=${
      fixtures.join(',') || '-'
    } state=${fake.state} callback=${fake.callback} asset=${fake.asset}${
      fake.stayPending ? ' stayPending' : ''
    }${family === 'suno' ? ` stages=${fake.stages.join(',') || '-'}` : ''}`,
  );
  schedule(s, t);
  return json({ code: 200, msg: 'success', data: { taskId } });
}

export async function recordInfo(
  s: FakeKieState,
  family: KieFamily,
  url: URL,
): Promise<Response> {
  const taskId = url.searchParams.get('taskId') ?? url.searchParams.get('task_id');
  const outage = s.outage;
  if (outage && Date.now() < outage.until) {
    log(`record-info task=${taskId} outage=${outage.kind} at=${Date.now()}`);
    if (outage.kind === 'error') return kieError(500, 'Server error', 500);
    // a hang: the answer comes only when the outage ends, long after the caller gave up
    await sleep(outage.until - Date.now());
  }
  if (!taskId) return kieError(422, 'taskId is required');
  const t = s.tasks.get(taskId);
  if (!t) return kieError(404, 'recordInfo is null: task not found');
  if (t.family !== family) {
    return kieError(404, `recordInfo is null: task is not a ${family} task`);
  }
  t.recordInfoCalls++;
  if (t.fake.recordInfo === 'hang') {
    log(`record-info task=${taskId} family=${family} hang at=${Date.now()}`);
    await sleep(120_000); // past any caller's timeout
  }
  const body = recordInfoBody(s, t);
  log(`record-info task=${taskId} family=${family} state=${currentState(t)} at=${Date.now()}`);
  return json(body);
}
