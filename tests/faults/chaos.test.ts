// Chaos: a batch of generations on its way through the system when a fault lands, on a stack of
// its own with the stack's default settings (durable Postgres, 2-minute lease, 30 s heartbeat
// lease, 2 workers awake, the minute's cron). Each case asserts what a user would: 0 lost (every
// row ends ready), 0 stuck (no job left queued or running, no row processing), 0 objects written
// twice (the storage log), and the last row ready at most 90 s after the first cron run after the
// fault, the recovery bound (issue 25). Faults: the gateway killed with its process group,
// Postgres stopped (fast shutdown) and crashed (immediate shutdown), every busy worker killed
// mid-render, and KIE's record-info hanging for a minute with every callback lost.
//
// A fault lands late in its minute (second 40–50): pg_cron runs on the minute, so a job a dead
// worker held falls due (30 s after its last heartbeat) after the next run, and only the run after
// that takes it, the slowest case for the bound, and the test waits least for the cron run.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient, type FakeKieBehaviour, type FakeKieClient } from '../../local/fake-kie-client.ts';
import { encodePhoto, photoPng, read } from '../fixtures/media.ts';
import { alive, createOwnUser, type OwnStack, STACK_DEFAULTS, stackTools, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MEDIA = join(process.cwd(), '.local', 'e2e-media');
/** The recovery bound: last row ready at most this long after the first cron run after the fault. */
const BOUND_S = 90;
/** Rows in a batch; every fourth asset is served slowly (4 s), so workers are busy when the fault lands. */
const BATCH = 24;

let own: OwnStack;
let tools: ReturnType<typeof stackTools>;
let sql: postgres.Sql;
let kie: FakeKieClient;
let userId: string;
const photos: Uint8Array[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the wall clock is at second `s` of a minute (pg_cron runs on the minute, UTC). */
async function atSecond(s: number) {
  const now = new Date();
  const ms = ((s - now.getUTCSeconds() + 60) % 60) * 1000 - now.getUTCMilliseconds();
  await sleep(ms < 0 ? ms + 60_000 : ms);
}

async function reconnect() {
  await sql.end({ timeout: 1 });
  sql = postgres(own.env.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
}

type Task = { taskId: string; url: string; id: string };

/**
 * `n` generations the app started (rows `generating` with their KIE task) whose KIE tasks
 * finished; their callbacks are the test's to send or lose. `serve`: how KIE serves the i-th asset
 * (by default every fourth in 4 s).
 */
async function generations(n: number, label: string, serve: (i: number) => FakeKieBehaviour = (i) => (i % 4 === 0 ? { asset: 'slow', slowMs: 4_000 } : {})): Promise<Task[]> {
  const tasks = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const name = `${label}-${randomUUID()}.jpg`;
    await kie.putFile(name, photos[i % photos.length], 'image/jpeg');
    const fake: FakeKieBehaviour = { callback: 'never', ...serve(i) };
    const taskId = await kie.createTask('market', { model: 'google/nano-banana', callBackUrl: null, fixture: name, fake });
    await waitFor('the fake task to finish', async () => (await kie.getTask(taskId)).state === 'success', 10_000, 50);
    return { taskId, url: (await kie.getTask(taskId)).resultUrls[0] };
  }));
  const rows = await sql<{ id: string; task_id: string }[]>`
    insert into public.generations ${sql(tasks.map((t) => ({ user_id: userId, type: 'photo', status: 'generating', task_id: t.taskId, model: 'google/nano-banana', prompt: label })))}
    returning id, task_id`;
  const byTask = new Map(rows.map((r) => [r.task_id, r.id]));
  return tasks.map((t) => ({ ...t, id: byTask.get(t.taskId)! }));
}

/** KIE's success callback for each task; the answers' statuses. */
function callbacks(tasks: Task[]): Promise<number[]> {
  return Promise.all(tasks.map(async (t) => {
    const res = await fetch(`${own.env.API_URL}/functions/v1/kie-callback?secret=${own.env.KIE_CALLBACK_SECRET}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 200, msg: 'success', data: { taskId: t.taskId, state: 'success', resultJson: JSON.stringify({ resultUrls: [t.url] }) } }),
    }).catch(() => null);
    await res?.body?.cancel();
    return res?.status ?? 0;
  }));
}

/** Rows of the batch that are ready, processing, and how many jobs of theirs are still queued or running. */
async function progress(ids: string[]) {
  const [r] = await sql<{ ready: number; processing: number; jobs: number; last: Date | null }[]>`
    select count(*) filter (where g.preview_status = 'ready')::int as ready,
           count(*) filter (where g.preview_status = 'processing')::int as processing,
           (select count(*)::int from public.preview_jobs j where j.generation_id = any(${ids}::uuid[]) and j.state in ('queued', 'running')) as jobs,
           max(g.updated_at) filter (where g.preview_status = 'ready') as last
      from public.generations g where g.id = any(${ids}::uuid[])`;
  return r;
}

/** The first run of either cron job (the sweep, the pending sync) that started at or after `since`. */
const firstCronRun = (since: Date) =>
  waitFor('the first cron run after the fault', async () => {
    const [r] = await sql<{ start: Date | null }[]>`
      select min(d.start_time) as start from cron.job_run_details d join cron.job j on j.jobid = d.jobid
       where j.jobname in ('kie-sync-pending', 'preview-sweep') and d.start_time >= ${since}`;
    return r.start;
  }, 75_000, 500);

/**
 * Waits for every row ready and checks the invariants: nothing stuck, every object of the batch
 * written once, the last row ready within the bound after the first cron run after `faultEnd`.
 * Returns the seconds from that run to the last ready row (negative: the batch was done first).
 */
async function recovered(name: string, tasks: Task[], mark: number, faultEnd: Date): Promise<number> {
  const ids = tasks.map((t) => t.id);
  const first = await firstCronRun(faultEnd);
  const done = await waitFor(`every row of "${name}" ready`, async () => {
    const p = await progress(ids);
    return p.ready === ids.length ? p : null;
  }, (BOUND_S + 60) * 1000, 500).catch(async (err) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(await progress(ids))}`);
  });
  expect(done.processing).toBe(0);
  expect(done.jobs, 'jobs left queued or running').toBe(0);
  const objects = await sql<{ preview_path: string; original_path: string }[]>`
    select preview_path, original_path from public.generations where id = any(${ids}::uuid[])`;
  const writes = new Map<string, number>();
  for (const l of tools.logSince(mark, '[Storage] write')) {
    const name = l.match(/ name=(\S+)/)?.[1];
    if (name) writes.set(name, (writes.get(name) ?? 0) + 1);
  }
  const paths = objects.flatMap((o) => [o.preview_path, o.original_path]).filter(Boolean);
  expect(paths.length).toBe(ids.length * 2);
  expect(paths.filter((p) => writes.get(p) !== 1).map((p) => `${p}: ${writes.get(p) ?? 0} writes`)).toEqual([]);
  const seconds = (done.last!.getTime() - first.getTime()) / 1000;
  const retried = tools.logSince(mark, '[Preview] Ready', ' kind=preview ').filter((l) => !l.includes(' attempt=1') && ids.some((id) => l.includes(id))).length;
  console.log(`chaos: ${name}: ${ids.length} rows, last ready ${seconds.toFixed(1)} s after the first cron run after the fault ` +
    `(${first.toISOString().slice(11, 19)}); ${retried} at a later attempt; every object written once`);
  expect(seconds).toBeLessThanOrEqual(BOUND_S);
  return seconds;
}

/** Starts a batch at second 38 and returns when it is under way (some rows claimed), about second 45. */
async function batchUnderWay(label: string): Promise<{ tasks: Task[]; mark: number }> {
  await atSecond(36);
  const tasks = await generations(BATCH, label);
  const mark = tools.logMark();
  expect(await callbacks(tasks)).toEqual(Array(tasks.length).fill(200));
  await waitFor('the batch under way', async () => {
    const p = await progress(tasks.map((t) => t.id));
    return p.ready >= 2 && p.ready < tasks.length - 4 ? p : null;
  }, 30_000, 100);
  return { tasks, mark };
}

beforeAll(async () => {
  // the stack's defaults, not the test run's shortcuts
  own = await startOwnStack('chaos', STACK_DEFAULTS);
  tools = stackTools(own);
  sql = postgres(own.env.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
  kie = createFakeKieClient(own.env.KIE_URL);
  for (let i = 0; i < 4; i++) {
    photos.push(read(await encodePhoto(photoPng(MEDIA, 640, 480, { seed: 40 + i }), 'jpeg', join(MEDIA, `chaos-${i}.jpg`))));
  }
  userId = (await createOwnUser(own.env, 'chaos')).id;
}, 240_000);

afterAll(async () => {
  await sql?.end({ timeout: 2 });
  await own?.stop();
}, 60_000);

describe('chaos: a batch under way when the fault lands, recovered within 90 s of the first cron run', () => {
  it('the gateway killed with its process group (every worker with it), then started again', async () => {
    const { tasks, mark } = await batchUnderWay('gateway');
    const workers = (await tools.isolates()).map((i) => i.pid);
    const gateway = tools.gatewayPid();
    process.kill(-gateway, 'SIGKILL');
    await waitFor('the gateway and every worker gone', async () => [gateway, ...workers].every((p) => !alive(p)), 10_000, 100);
    await own.start();
    const back = new Date();
    expect((await fetch(`${own.env.API_URL}/functions/v1/health`)).status).toBe(200);
    await recovered('gateway group kill', tasks, mark, back);
  }, 300_000);

  it('Postgres stopped (a fast shutdown) for 5 s, callbacks arriving meanwhile lost', async () => {
    const { tasks, mark } = await batchUnderWay('pg-stop');
    const late = await generations(4, 'pg-stop-late');
    await tools.pg('stop');
    const lost = await callbacks(late);
    expect(lost.every((s) => s !== 200), `callbacks answered while Postgres was down: ${lost}`).toBe(true);
    await sleep(5_000 - 500);
    await tools.pg('start');
    const back = new Date();
    await reconnect();
    await recovered('Postgres fast stop', [...tasks, ...late], mark, back);
  }, 300_000);

  it('Postgres crashed (an immediate shutdown: pg_net\'s queue and the wake records are gone)', async () => {
    const { tasks, mark } = await batchUnderWay('pg-crash');
    await tools.pg('crash');
    await tools.pg('start');
    const back = new Date();
    await reconnect();
    await recovered('Postgres crash', tasks, mark, back);
  }, 300_000);

  it('every busy worker killed mid-render (SIGKILL), the gateway alive', async () => {
    const { tasks, mark } = await batchUnderWay('worker-kill');
    const busy = (await tools.isolates()).filter((i) => i.fn === 'generate-preview' && i.busy);
    expect(busy.length).toBeGreaterThan(0);
    for (const w of busy) process.kill(w.pid, 'SIGKILL');
    const killed = new Date();
    await recovered('busy workers killed', tasks, mark, killed);
  }, 300_000);

  it('slow sources do not block fast ones: with 4 of 16 assets taking 15 s, the fast rows are ready before the first slow one', async () => {
    // 15 s (10 s until the 1024 size: twelve fast rows with both sizes took up to 12.2 s alone;
    // under the download timeout, 20 s)
    const tasks = await generations(16, 'slow-lane', (i) => (i < 4 ? { asset: 'slow', slowMs: 15_000 } : {}));
    const slow = new Set(tasks.slice(0, 4).map((t) => t.id));
    const sent = Date.now();
    expect(await callbacks(tasks)).toEqual(Array(16).fill(200));
    const ids = tasks.map((t) => t.id);
    await waitFor('every row ready', async () => (await progress(ids)).ready === ids.length, 90_000, 250);
    const rows = await sql<{ id: string; at: Date }[]>`
      select id, updated_at as at from public.generations where id = any(${ids}::uuid[])`;
    const fast = rows.filter((r) => !slow.has(r.id)).map((r) => r.at.getTime() - sent).sort((a, b) => a - b);
    const slowAt = rows.filter((r) => slow.has(r.id)).map((r) => r.at.getTime() - sent).sort((a, b) => a - b);
    console.log(`chaos: 12 fast and 4 slow (15 s) sources at once: fast rows ready p50 ${(fast[5] / 1000).toFixed(1)} s, ` +
      `last ${(fast[11] / 1000).toFixed(1)} s; slow rows ready ${(slowAt[0] / 1000).toFixed(1)}–${(slowAt[3] / 1000).toFixed(1)} s after the callbacks`);
    // one job at a time per isolate (before): 0 of the 12 fast rows were ready before the first slow
    // one (p50 41.6 s). A worker whose isolate declined kept its place until the jobs it parked on
    // the slow sources ended: with both places held so, a CI run had 1 of 12 before them (p50 18.2
    // s); it ends its wake at the decline now, and a request into an isolate running only parked
    // jobs takes its first job (isolate.ts)
    const beforeSlow = fast.filter((t) => t < slowAt[0]).length;
    expect(beforeSlow, 'fast rows ready before the first slow one').toBeGreaterThanOrEqual(10);
    expect(fast[5], 'the median fast row, against the first slow one').toBeLessThan(slowAt[0] / 2);
  }, 150_000);

  it('a pending sync whose tasks hang at KIE for almost a third still asks every task of its run', async () => {
    // 40 lost callbacks, 12 of whose record-info never answers: each holds its place in the run for
    // KIE_TIMEOUT_MS (10 s). Four places (the earlier setting) were all held by hanging calls within
    // the first seconds, and the run's 20 s budget ran out before it got through the batch.
    const [{ jobid }] = await sql<{ jobid: number }[]>`select jobid from cron.job where jobname = 'kie-sync-pending'`;
    await sql`select cron.alter_job(${jobid}, active := false)`; // this run alone asks about them
    const hanging: Task[] = [];
    try {
      const tasks = await generations(40, 'kie-partial');
      hanging.push(...tasks.slice(0, 12));
      for (const t of hanging) await kie.setTask(t.taskId, { recordInfo: 'hang' });
      await sleep(10_500); // the pending sync's minimum age
      const started = Date.now();
      const res = await fetch(`${own.env.API_URL}/functions/v1/kie-sync`, {
        method: 'POST',
        headers: { authorization: `Bearer ${own.env.SERVICE_ROLE_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ mode: 'pending' }),
      });
      const run = await res.json() as { tasks: number; asked: number; changed: number; failed: number; left: number };
      const seconds = (Date.now() - started) / 1000;
      console.log(`chaos: a pending run with 12 of 40 tasks hanging at KIE: ${JSON.stringify({ ...run, results: undefined })} in ${seconds.toFixed(1)} s`);
      expect(res.status).toBe(200);
      expect({ tasks: run.tasks, asked: run.asked, changed: run.changed, failed: run.failed, left: run.left })
        .toEqual({ tasks: 40, asked: 40, changed: 28, failed: 12, left: 0 });
      const rows = await sql<{ status: string; n: number }[]>`
        select status::text, count(*)::int as n from public.generations where id = any(${tasks.map((t) => t.id)}::uuid[]) group by 1 order by 1`;
      expect(rows).toEqual([{ status: 'generating', n: 12 }, { status: 'success', n: 28 }]);
    } finally {
      await sql`select cron.alter_job(${jobid}, active := true)`;
      for (const t of hanging) await kie.setTask(t.taskId, { recordInfo: 'ok' });
    }
  }, 120_000);

  it('KIE\'s record-info hanging for a minute while every callback is lost', async () => {
    await atSecond(40);
    const tasks = await generations(BATCH, 'kie-down');
    const mark = tools.logMark();
    await kie.outage(60_000, 'hang');
    const start = Date.now();
    await sleep(60_000 - (Date.now() - start));
    const back = new Date();
    const asked = tools.logSince(mark, 'Pending sweep done');
    await recovered('KIE record-info down for a minute', tasks, mark, back);
    console.log(`chaos: pending sync runs during the outage: ${asked.map((l) => l.match(/asked=\d+.*?failed=\d+/)?.[0] ?? l).join(' | ')}`);
  }, 300_000);
});
