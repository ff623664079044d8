// What the dispatch secret opens (issue "Hostile input round three", item 3). The secret can be
// read by anon while a request waits in pg_net's queue, so it only wakes workers: generate-preview
// takes {"wake": n} (a wake the database sent) and {"decide": true} from it and refuses ids (403)
// before any work; the service role may name at most 100 ids. Every answer to a dispatched request
// carries counts only, since pg_net keeps it in net._http_response, which anon reads too. And KIE's
// rate holds across every caller: three pending syncs at once stay at 10 record-info calls a second.
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS } from '../helpers/flow.ts';
import { previewJob } from '../helpers/faults.ts';
import { createUser, FUNCTIONS_URL, generation, insertGeneration, kie, sql, stack, type TestUser, waitFor } from '../helpers/stack.ts';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
/** KIE's task ids: 32 hex digits (market, 4o, flux), veo_task_…/mj_task_… (and a UUID for runway). */
const TASK_ID = /[0-9a-f]{16,}|(veo|mj)_task_/i;

let user: TestUser;
let secret: string;

/** A request with the dispatch secret alone, as pg_net sends it. */
async function asDispatch(name: string, body: unknown, query = '') {
  const res = await fetch(`${FUNCTIONS_URL}/${name}${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'x-preview-dispatch': secret },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as Record<string, unknown> };
}

/** The same with the service role's secret key. */
async function asService(name: string, body: unknown, query = '') {
  const res = await fetch(`${FUNCTIONS_URL}/${name}${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', apikey: stack.SECRET_KEY },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as Record<string, unknown> };
}

/** Nothing but counts: a flat object of numbers (and booleans), no uuid, no task id. */
function expectCountsOnly(text: string, what: string): void {
  expect(text, what).not.toMatch(UUID);
  expect(text, what).not.toMatch(TASK_ID);
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(typeof body === 'object' && body !== null && !Array.isArray(body), what).toBe(true);
  for (const [k, v] of Object.entries(body)) {
    expect(['number', 'boolean'], `${what}: ${k} is ${JSON.stringify(v)}`).toContain(typeof v);
  }
}

/** A wake record as wake_preview_workers writes one (the database vouches for it). */
async function newWake(): Promise<number> {
  const [w] = await sql<{ id: string }[]>`insert into public.preview_worker_wakes default values returning id::text as id`;
  return Number(w.id);
}

/** A row that wants a preview and has no job yet (its enqueue muted): adopt_preview would queue one. */
async function victimRow(): Promise<string> {
  return await sql.begin(async (tx) => {
    await tx`set local app.skip_preview_dispatch = 'on'`;
    const [r] = await tx<{ id: string }[]>`
      insert into public.generations (user_id, type, status, asset_url)
      values (${user.id}, 'photo', 'success', ${`${stack.KIE_URL}/files/none/victim.jpg`}) returning id`;
    return r.id;
  });
}

/** A pg_net request queued as the database queues its own, with the vault's dispatch secret. */
async function viaPgNet(fn: string, body: unknown, timeoutMs = 30_000): Promise<string> {
  const [{ id }] = await sql<{ id: string | null }[]>`
    select public.invoke_edge_function(${fn}, ${sql.json(body as never)}, ${timeoutMs})::text as id`;
  expect(id, 'invoke_edge_function queued nothing (vault not configured?)').not.toBeNull();
  return id!;
}

/** pg_net's answer to a request, read as anon (net._http_response is PUBLIC on a project). */
async function responseAsAnon(requestId: string, timeoutMs = 60_000): Promise<{ status_code: number; content: string }> {
  return await waitFor(`pg_net's answer to request ${requestId}`, async () => {
    const rows = await sql.begin(async (tx) => {
      await tx.unsafe('set local role anon');
      return await tx<{ status_code: number; content: string }[]>`
        select status_code, content from net._http_response where id = ${requestId}::bigint`;
    });
    return rows[0];
  }, timeoutMs, 250);
}

beforeAll(async () => {
  user = await createUser('dispatch-scope');
  const [row] = await sql<{ s: string }[]>`select decrypted_secret as s from vault.decrypted_secrets where name = 'preview_dispatch_secret'`;
  secret = row.s;
});

afterAll(async () => {
  // the victims want a preview of a file that does not exist: gone before the sweep queues them
  if (user) await sql`delete from public.generations where user_id = ${user.id}`;
});

describe('the dispatch secret only wakes workers', () => {
  it('ids with the dispatch secret alone → 403 before any work: 7,100 random ids and a victim\'s claim nothing; the service role may name at most 100 (400 beyond)', async () => {
    const victim = await victimRow();
    const flood = { generationIds: [...Array.from({ length: 7100 }, () => randomUUID()), victim] };
    for (const query of ['', '?wait=1']) {
      const r = await asDispatch('generate-preview', flood, query);
      expect(r.status, `flood${query}: ${r.text.slice(0, 200)}`).toBe(403);
      expect(r.json.error).toBe('FORBIDDEN');
      expect(r.text).not.toMatch(UUID);
    }
    // every way of naming a row: one id, a database webhook's record, even one that is no uuid
    for (const body of [{ generationId: victim }, { generationIds: [victim] }, { type: 'UPDATE', table: 'generations', record: { id: victim } }, { generationId: 'x' }, { wake: await newWake(), generationId: victim }]) {
      const r = await asDispatch('generate-preview', body, '?wait=1');
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(403);
      expect(r.text).not.toMatch(UUID);
    }
    // the service role names rows, at most 100 a request
    const tooMany = await asService('generate-preview', flood, '?wait=1');
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.message).toMatch(/At most 100/);
    expect((await asService('generate-preview', { generationIds: Array.from({ length: 101 }, () => randomUUID()) })).status).toBe(400);
    // nothing was claimed, nor queued, for the victim
    await new Promise((r) => setTimeout(r, 1000));
    expect(await previewJob(victim)).toBeNull();
    expect((await generation(victim)).preview_status).toBe('none');
  });

  it('a wake the database did not send (or that ended) → 403; a body naming nothing → 400; the database\'s own wake and decide still work', async () => {
    const [{ next }] = await sql<{ next: string }[]>`select coalesce(max(id), 0) + 1000000 as next from public.preview_worker_wakes`;
    const forged = await asDispatch('generate-preview', { wake: Number(next) }, '?wait=1');
    expect(forged.status).toBe(403);
    expect((await asDispatch('generate-preview', { wake: '9999999999999999999' })).status).toBe(403); // past bigint
    expect((await asDispatch('generate-preview', { wake: 'x' })).status).toBe(400);
    expect((await asDispatch('generate-preview', {})).status).toBe(400);
    const woken = await asDispatch('generate-preview', { wake: await newWake() });
    expect(woken.status).toBe(202);
    expectCountsOnly(woken.text, 'a wake, 202');
    const decided = await asDispatch('generate-preview', { decide: true }, '?wait=1');
    expect(decided.status).toBe(200);
    expect(decided.json).toEqual({ decided: true });
    // a worker that ended its wake deleted it: the same wake again is refused
    const ended = await newWake();
    await sql`delete from public.preview_worker_wakes where id = ${ended}`;
    expect((await asDispatch('generate-preview', { wake: ended })).status).toBe(403);
  });
});

describe('answers to dispatched requests carry counts only', () => {
  it('direct: generate-preview (a wake, ?wait=1 or not; decide) and kie-sync pending answer counts, no uuid, no task id; the service role still gets the details', async () => {
    // a pending task of ours the pending sync will ask about (older than its 30 s minimum age)
    const taskId = await kie.createTask('market', { model: MODELS.market, fake: { state: 'fail', callback: 'never', stayPending: true } });
    await insertGeneration({ userId: user.id, type: 'photo', taskId, model: MODELS.market, createdAt: new Date(Date.now() - 45_000) });

    const waited = await asDispatch('generate-preview', { wake: await newWake() }, '?wait=1');
    expect(waited.status).toBe(200);
    expectCountsOnly(waited.text, 'a wake, ?wait=1');
    expect(waited.json).toMatchObject({ jobs: expect.any(Number), ready: expect.any(Number), failed: expect.any(Number) });
    const accepted = await asDispatch('generate-preview', { decide: true });
    expect(accepted.status).toBe(202);
    expectCountsOnly(accepted.text, 'decide, 202');

    const pending = await asDispatch('kie-sync', { mode: 'pending' });
    expect(pending.status, pending.text.slice(0, 200)).toBe(200);
    expectCountsOnly(pending.text, 'kie-sync pending');
    expect(pending.text).not.toContain(taskId);
    expect(pending.json).toMatchObject({ tasks: expect.any(Number), asked: expect.any(Number), changed: expect.any(Number), failed: expect.any(Number), left: expect.any(Number) });
    expect(pending.json.asked as number + (pending.json.left as number)).toBe(pending.json.tasks);

    // the service role may still see which tasks were asked
    const detailed = await asService('kie-sync', { mode: 'pending' });
    expect(detailed.status).toBe(200);
    expect(Array.isArray(detailed.json.results)).toBe(true);
    expect(detailed.json).toMatchObject({ tasks: expect.any(Number), asked: expect.any(Number) });
  }, 120_000);

  it('through pg_net: the answers in net._http_response, read as anon, carry no uuid and no task id', async () => {
    const taskId = await kie.createTask('market', { model: MODELS.market, fake: { state: 'fail', callback: 'never', stayPending: true } });
    await insertGeneration({ userId: user.id, type: 'photo', taskId, model: MODELS.market, createdAt: new Date(Date.now() - 45_000) });
    const victim = await victimRow();
    // what pg_cron's kie-sync-pending job queues every minute
    const sync = await viaPgNet('kie-sync', { mode: 'pending' }, 30_000);
    // a worker's wake, answered once its work is done (?wait=1: the answer with the most in it)
    const wake = await newWake();
    const woken = await viaPgNet('generate-preview?wait=1', { wake }, 60_000);
    await sql`update public.preview_worker_wakes set request_id = ${woken}::bigint where id = ${wake}`;
    // a request naming a row (what someone holding the secret might try): refused, and says nothing
    const named = await viaPgNet('generate-preview', { generationIds: [victim] }, 10_000);

    const s = await responseAsAnon(sync, 60_000);
    expect(s.status_code, s.content?.slice(0, 200)).toBe(200);
    expectCountsOnly(s.content, 'kie-sync pending through pg_net');
    expect(s.content).not.toContain(taskId);
    const w = await responseAsAnon(woken, 90_000);
    expect(w.status_code, w.content?.slice(0, 200)).toBe(200);
    expectCountsOnly(w.content, 'a wake through pg_net');
    const n = await responseAsAnon(named, 30_000);
    expect(n.status_code).toBe(403);
    expect(n.content).not.toMatch(UUID);
    expect(n.content).not.toContain(user.id);
    expect(await previewJob(victim)).toBeNull();
  }, 150_000);
});

describe('KIE\'s rate holds across every caller', () => {
  it('three pending syncs at once make at most 10 record-info calls in any second', async () => {
    // The fake KIE logs each record-info call it answers with the time it took it (at=, ms): the
    // calls are timed by the server, not by when this test happens to read its log.
    const logFile = join(stack.STACK_DIR, 'logs', 'fake-kie.log');
    expect(existsSync(logFile), logFile).toBe(true);
    const tasks = new Set<string>();
    for (let i = 0; i < 30; i++) {
      tasks.add(await kie.createTask('market', { model: MODELS.market, fake: { state: 'fail', callback: 'never', stayPending: true } }));
    }
    // due for the pending sync (older than 30 s), and the newest of those never asked: first in its batch
    const createdAt = new Date(Date.now() - 31_000);
    for (const taskId of tasks) await insertGeneration({ userId: user.id, type: 'photo', taskId, model: MODELS.market, createdAt });

    const calls: number[] = [];
    let offset = statSync(logFile).size;
    let partial = '';
    const fd = openSync(logFile, 'r');
    const poll = () => {
      const size = statSync(logFile).size;
      if (size <= offset) return;
      const buf = Buffer.alloc(size - offset);
      readSync(fd, buf, 0, buf.length, offset);
      offset = size;
      const lines = (partial + buf.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        const m = l.match(/record-info task=(\S+) .* at=(\d+)/);
        if (m && tasks.has(m[1])) calls.push(Number(m[2]));
      }
    };
    const timer = setInterval(poll, 5);
    let answers;
    try {
      answers = await Promise.all([0, 1, 2].map(() => asService('kie-sync', { mode: 'pending' })));
      await new Promise((r) => setTimeout(r, 200));
      poll();
    } finally {
      clearInterval(timer);
      closeSync(fd);
    }
    for (const a of answers) expect(a.status, a.text.slice(0, 200)).toBe(200);
    // the three syncs really ran side by side: our tasks were asked by more than one of them
    expect(calls.length, 'record-info calls for this test\'s tasks').toBeGreaterThan(tasks.size);
    calls.sort((a, b) => a - b);
    let most = 0;
    for (let i = 0; i < calls.length; i++) {
      let j = i;
      while (j < calls.length && calls[j] - calls[i] < 1000) j++;
      most = Math.max(most, j - i);
    }
    expect(most, `record-info calls in the busiest second (${calls.length} calls in ${((calls.at(-1)! - calls[0]) / 1000).toFixed(1)} s)`).toBeLessThanOrEqual(10);
    // and each sync stayed within its budget (about 20 s, then in-flight calls end)
    for (const a of answers) expect((a.json.asked as number) + (a.json.left as number)).toBe(a.json.tasks);
  }, 120_000);
});
