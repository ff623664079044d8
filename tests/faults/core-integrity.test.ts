// The ffmpeg core is verified (the issue: between deploy and adopt anon could overwrite
// `_runtime/ffmpeg-core-0.12.10.wasm`, which every poster worker loads). On a stack of its own,
// since a tampered core would fail the posters of every suite sharing the run's stack: the core
// in storage is overwritten with other bytes of the same size through the storage API; the
// gateway's generate-preview fetches it from storage as a deployed function does
// (shared/preview/core-source.ts; only vitest and the bench use the installed copy,
// local/local-core.ts); video rows fail CORE_INTEGRITY after one attempt, the log names both
// digests, health reports it; deploy's core step notices the same-size object by its digest and
// replaces it, and a new video row gets its poster while health says ok again.
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient, type FakeKieClient } from '../../local/fake-kie-client.ts';
import { LOCAL_CORE_WASM } from '../../local/local-core.ts';
import { FFMPEG_CORE_SHA256 } from '../../shared/preview/core-digest.ts';
import { read, videoMp4 } from '../fixtures/media.ts';
import { createOwnUser, type OwnStack, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const run = promisify(execFile);
const MEDIA = join(process.cwd(), '.local', 'e2e-media');
const CORE_PATH = '_runtime/ffmpeg-core-0.12.10.wasm';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let own: OwnStack;
let sql: postgres.Sql;
let kie: FakeKieClient;
let userId: string;
let video: Uint8Array;

const logMark = () => (existsSync(own.env.LOG_FILE) ? statSync(own.env.LOG_FILE).size : 0);
const logSince = (mark: number, ...needles: string[]) =>
  readFileSync(own.env.LOG_FILE).subarray(mark).toString('utf8').split('\n').filter((l) => l && needles.every((n) => l.includes(n)));
const service = () => ({ authorization: `Bearer ${own.env.SERVICE_ROLE_KEY}`, apikey: own.env.SERVICE_ROLE_KEY });
const health = async (query = '', headers: Record<string, string> = {}) => {
  const res = await fetch(`${own.env.API_URL}/functions/v1/health${query}`, { headers });
  return { status: res.status, json: await res.json() };
};

/** A video row KIE finished, inserted as the platform's callback leaves it: the trigger queues its poster. */
async function videoRow(): Promise<string> {
  const name = `${randomUUID()}.mp4`;
  await kie.putFile(name, video, 'video/mp4');
  const taskId = await kie.createTask('market', { model: 'google/nano-banana', callBackUrl: null, fixture: name, fake: { callback: 'never' } });
  await waitFor('the fake task to finish', async () => (await kie.getTask(taskId)).state === 'success', 10_000, 50);
  const url = (await kie.getTask(taskId)).resultUrls[0];
  const [r] = await sql<{ id: string }[]>`
    insert into public.generations (user_id, type, status, task_id, model, asset_url, result_urls)
    values (${userId}, 'video', 'success', ${taskId}, 'veo3_fast', ${url}, ${sql.json([url])}) returning id`;
  return r.id;
}

const settled = (id: string) =>
  waitFor(`the poster of ${id} to settle`, async () => {
    const [r] = await sql<Record<string, any>[]>`select * from public.generations where id = ${id}`;
    return r && ['ready', 'failed'].includes(r.preview_status) ? r : null;
  }, 90_000, 250);

async function deployCore(): Promise<string[]> {
  const r = await run('bash', ['scripts/run-deno.sh', 'scripts/deploy.ts', '--only', 'core', '--url', own.env.API_URL, '--service-key', own.env.SECRET_KEY], {
    timeout: 120_000,
  });
  return `${r.stdout}${r.stderr}`.trim().split('\n');
}

beforeAll(async () => {
  own = await startOwnStack('core-integrity');
  sql = postgres(own.env.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
  kie = createFakeKieClient(own.env.KIE_URL);
  video = read(videoMp4(MEDIA, 320, 240, 1, { fade: 0 }));
  userId = (await createOwnUser(own.env, 'core')).id;
}, 240_000);

afterAll(async () => {
  await sql?.end({ timeout: 2 });
  await own?.stop();
}, 60_000);

describe('a tampered ffmpeg core in storage', () => {
  const real = new Uint8Array(readFileSync(LOCAL_CORE_WASM));
  const tampered = real.slice();
  for (let i = 1 << 20; i < (1 << 20) + 4096; i++) tampered[i] ^= 0x5a;

  it('is never compiled: posters fail CORE_INTEGRITY (terminal, one attempt), the log names both digests, health reports it', async () => {
    // the stack's deploy step put the real core there; no worker has loaded it yet
    const before = await fetch(`${own.env.API_URL}/storage/v1/object/info/generations/${CORE_PATH}`, { headers: service() });
    expect((await before.json()).size).toBe(real.length);
    expect(logSince(0, '[Preview] ffmpeg core loaded')).toEqual([]);
    const up = await fetch(`${own.env.API_URL}/storage/v1/object/generations/${CORE_PATH}`, {
      method: 'POST',
      headers: { ...service(), 'x-upsert': 'true', 'content-type': 'application/wasm' },
      body: tampered,
    });
    expect(up.status, await up.text()).toBe(200);
    const info = await (await fetch(`${own.env.API_URL}/storage/v1/object/info/generations/${CORE_PATH}`, { headers: service() })).json();
    expect(info.size).toBe(real.length); // the same size: deploy's old size check would have kept it

    const mark = logMark();
    const first = await videoRow();
    const a = await settled(first);
    const second = await videoRow();
    const b = await settled(second);
    for (const r of [a, b]) {
      expect(r).toMatchObject({ preview_status: 'failed', preview_error_code: 'CORE_INTEGRITY', poster_path: null });
    }
    const jobs = await sql`select state, attempts, last_error_code, last_error from public.preview_jobs where generation_id = any(${[first, second]}::uuid[])`;
    expect(jobs.map(({ last_error: _, ...j }) => j)).toEqual([
      { state: 'failed', attempts: 1, last_error_code: 'CORE_INTEGRITY' },
      { state: 'failed', attempts: 1, last_error_code: 'CORE_INTEGRITY' },
    ]);
    // the reason names where the core came from and both digests
    for (const j of jobs) {
      expect(j.last_error).toContain(`The ffmpeg core from storage (generations/${CORE_PATH})`);
      expect(j.last_error).toContain(`sha256 ${sha(tampered)} (${real.length} bytes), expected ${FFMPEG_CORE_SHA256}`);
    }
    const rejected = logSince(mark, 'fn:generate-preview', '[Preview] ffmpeg core rejected');
    expect(rejected.length).toBeGreaterThanOrEqual(2);
    for (const l of rejected) {
      expect(l).toContain(`expected=${FFMPEG_CORE_SHA256}`);
      expect(l).toContain(`found=${sha(tampered)}`);
    }
    expect(logSince(mark, 'fn:generate-preview', '[Preview] ffmpeg core loaded')).toEqual([]);
    // 32 MB is fetched once per isolate while the core stays bad: later jobs ask a HEAD (same ETag)
    const isolates = new Set(rejected.map((l) => l.match(/fn:generate-preview#(\d+)/)?.[1]));
    expect(rejected.filter((l) => l.includes('fetched=true')).length).toBeLessThanOrEqual(isolates.size);
    if (isolates.size === 1) {
      expect(rejected.filter((l) => l.includes('fetched=false')).length).toBeGreaterThanOrEqual(1);
      expect(logSince(mark, '[Gateway] request method=HEAD', CORE_PATH).length).toBeGreaterThanOrEqual(1);
    }

    // health: liveness is no longer {"status":"ok"}; deep health says why
    expect(await health()).toEqual({ status: 503, json: { status: 'degraded', core: 'rejected' } });
    expect((await fetch(`${own.env.API_URL}/functions/v1/health?deep=1`)).status).toBe(401);
    const deep = await health('?deep=1', service());
    expect(deep.status).toBe(503);
    expect(deep.json.status).toBe('degraded');
    expect(deep.json.checks.core).toMatchObject({ state: 'rejected', failures: 2 });
    expect(deep.json.checks.core.lastError).toContain(`sha256 ${sha(tampered)}`);
    // health's own isolate fetched the core for its mp4 sample and refused it too
    expect(deep.json.checks.codecs.mp4).toMatchObject({ ok: false, code: 'CORE_INTEGRITY' });
    expect(deep.json.checks.codecs.jpeg).toMatchObject({ ok: true });
  }, 240_000);

  it('deploy\'s core step replaces the same-size core by its digest; a new video gets its poster and health is ok again', async () => {
    const out = await deployCore();
    expect(out).toContain(`deploy:   node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm: sha256 ${FFMPEG_CORE_SHA256}, the pinned one`);
    expect(out).toContain(`deploy:   the stored core has sha256 ${sha(tampered)}: replacing it`);
    expect(out).toContain(`deploy:   ok: ${real.length} bytes (replaced a core with sha256 ${sha(tampered)})`);
    const stored = new Uint8Array(await (await fetch(`${own.env.API_URL}/storage/v1/object/authenticated/generations/${CORE_PATH}`, { headers: service() })).arrayBuffer());
    expect(sha(stored)).toBe(FFMPEG_CORE_SHA256);
    // run again: the digest matches, nothing is uploaded
    expect(await deployCore()).toContain(`deploy:   ok: already there (${real.length} bytes), same sha256`);

    // the isolates that rejected the core load the fixed one: no restart, no waiting
    const mark = logMark();
    const id = await videoRow();
    const row = await settled(id);
    expect(row).toMatchObject({ preview_status: 'ready', preview_error_code: null });
    expect(row.poster_path).toBe(`${userId}/posters/${id}_poster.webp`);
    expect(logSince(mark, 'fn:generate-preview', '[Preview] ffmpeg core loaded', 'sha256=verified')).toHaveLength(1);
    expect(logSince(mark, '[Preview] ffmpeg core rejected')).toEqual([]);
    // liveness (cached up to 5 s) and deep health: ok, and health's own isolate renders the mp4 sample
    await waitFor('liveness to say ok', async () => (await health()).status === 200, 15_000, 500);
    expect(await health()).toEqual({ status: 200, json: { status: 'ok' } });
    const deep = await health('?deep=1', service());
    expect(deep.json.checks.core).toEqual({ state: 'ok' });
    expect(deep.json.checks.codecs.mp4).toMatchObject({ ok: true, width: 64, height: 48 });
    expect(deep).toMatchObject({ status: 200, json: { status: 'ok' } });
  }, 240_000);

  it('deploy\'s core step replaces a core of another size without downloading it', async () => {
    const up = await fetch(`${own.env.API_URL}/storage/v1/object/generations/${CORE_PATH}`, {
      method: 'POST',
      headers: { ...service(), 'x-upsert': 'true', 'content-type': 'application/wasm' },
      body: real.slice(0, 1000),
    });
    expect(up.status).toBe(200);
    const mark = logMark();
    expect(await deployCore()).toContain(`deploy:   ok: ${real.length} bytes`);
    expect(logSince(mark, '[Gateway] request method=GET', `authenticated/generations/${CORE_PATH}`)).toEqual([]);
    const stored = new Uint8Array(await (await fetch(`${own.env.API_URL}/storage/v1/object/authenticated/generations/${CORE_PATH}`, { headers: service() })).arrayBuffer());
    expect(sha(stored)).toBe(FFMPEG_CORE_SHA256);
  }, 120_000);
});
