// Recovery under crashes, on a stack of its own with the stack's default settings (durable
// Postgres, 2-minute lease with a 30 s heartbeat lease, 2 workers awake, no test shortcuts): a
// Postgres crash loses no acknowledged callback; the first claim after a Postgres restart
// succeeds; a transient database error at completion leaves one write per object; liveness: a worker killed while it holds a job has it retried
// within the heartbeat lease and a claim, not the 2-minute lease; a worker holding a job rides out
// an 8 s Postgres stop (ready at attempt 1, no INTERNAL); the first dispatch after a Postgres
// restart succeeds though its connection dies under its first query (the dispatch secret's check
// is retried); and with 50 callbacks lost and 100 rows left without a preview job, every row is
// ready within 90 s of the first cron run. Restarting Postgres would disturb the other suites,
// hence the own stack. Faults landing on a batch under way: chaos.test.ts.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient, type FakeKieClient } from '../../local/fake-kie-client.ts';
import { encodePhoto, photoPng, read } from '../fixtures/media.ts';
import { alive, createOwnUser, type OwnStack, STACK_DEFAULTS, stackTools, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MEDIA = join(process.cwd(), '.local', 'e2e-media');

let own: OwnStack;
let sql: postgres.Sql;
let kie: FakeKieClient;
let userId: string;
let photo: Uint8Array;

let pg: ReturnType<typeof stackTools>['pg'];
let logMark: ReturnType<typeof stackTools>['logMark'];
let logSince: ReturnType<typeof stackTools>['logSince'];
let isolates: ReturnType<typeof stackTools>['isolates'];

/** A KIE task that succeeded with a small photo; its callback is ours to send (or lose). `fake`: how KIE serves it. */
async function kieTask(fake: Record<string, unknown> = {}): Promise<{ taskId: string; url: string }> {
  const name = `${randomUUID()}.jpg`;
  await kie.putFile(name, photo, 'image/jpeg');
  const taskId = await kie.createTask('market', { model: 'google/nano-banana', callBackUrl: null, fixture: name, fake: { callback: 'never', ...fake } });
  await waitFor('the fake task to finish', async () => (await kie.getTask(taskId)).state === 'success', 10_000, 50);
  return { taskId, url: (await kie.getTask(taskId)).resultUrls[0] };
}

function callback(taskId: string, url: string) {
  return fetch(`${own.env.API_URL}/functions/v1/kie-callback?secret=${own.env.KIE_CALLBACK_SECRET}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: 200, msg: 'success', data: { taskId, state: 'success', resultJson: JSON.stringify({ resultUrls: [url] }) } }),
  });
}

type Job = { id: string; state: string; attempts: number; locked_by: string | null; locked_at: Date | null; lease_until: Date | null };
/** The row's preview job, or null (done: deleted). */
const previewJob = async (id: string) =>
  (await sql<Job[]>`select id::text as id, state, attempts, locked_by, locked_at, lease_until from public.preview_jobs
                     where generation_id = ${id} and kind = 'preview' order by id desc limit 1`)[0] ?? null;
const claimOf = (id: string, attempt = 1) =>
  waitFor(`claim ${attempt} of ${id}`, async () => {
    const j = await previewJob(id);
    return j?.state === 'running' && j.attempts === attempt ? j : null;
  }, 30_000, 50);
/** The generate-preview isolate whose request is the wake that claimed `job`. */
const workerOf = (job: Job) =>
  waitFor(`the worker of ${job.locked_by}`, async () =>
    (await isolates()).find((i) => i.fn === 'generate-preview' && i.busy &&
      i.requests.some((r) => job.locked_by === `wake:${(JSON.parse(r.body || '{}') as { wake?: unknown }).wake}`)), 15_000, 50);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The test's own pool, anew after a restart (its connections died with the server). */
async function reconnect() {
  await sql.end({ timeout: 1 });
  sql = postgres(own.env.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
}

/** The attempt of each `[Preview] Ready` line of the row's preview job since `mark` (done jobs are deleted: the log keeps it). */
const readyAttempts = (mark: number, id: string) =>
  logSince(mark, `[Preview] Ready generationId=${id} `, ' kind=preview ').map((l) => Number(l.match(/ attempt=(\d+)/)?.[1]));

/** A success photo row whose preview job is queued by the trigger (and a worker woken), as after a callback. */
async function successRow(url: string): Promise<string> {
  const [r] = await sql<{ id: string }[]>`
    insert into public.generations (user_id, type, status, task_id, model, asset_url, result_urls)
    values (${userId}, 'photo', 'success', ${`rec-${randomUUID()}`}, 'google/nano-banana', ${url}, ${sql.json([url])}) returning id`;
  return r.id;
}

const row = async (id: string) => (await sql<Record<string, any>[]>`select * from public.generations where id = ${id}`)[0];

beforeAll(async () => {
  // the stack's defaults, not the test run's shortcuts
  own = await startOwnStack('recovery', STACK_DEFAULTS);
  ({ pg, logMark, logSince, isolates } = stackTools(own));
  sql = postgres(own.env.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
  kie = createFakeKieClient(own.env.KIE_URL);
  photo = read(await encodePhoto(photoPng(MEDIA, 480, 320, { seed: 5 }), 'jpeg', join(MEDIA, 'recovery.jpg')));
  userId = (await createOwnUser(own.env, 'rec')).id;
}, 240_000);

afterAll(async () => {
  await sql?.end({ timeout: 2 });
  await own?.stop();
}, 60_000);

describe('recovery on the stack\'s default settings', () => {
  it('runs Postgres as durably as the platform', async () => {
    const [s] = await sql`select current_setting('fsync') as fsync, current_setting('synchronous_commit') as sc, current_setting('full_page_writes') as fpw,
                                 (select relpersistence from pg_class where oid = 'net.http_request_queue'::regclass) as queue`;
    expect(s).toEqual({ fsync: 'on', sc: 'on', fpw: 'on', queue: 'u' });
  });

  it('a Postgres crash right after the callbacks were answered loses none of them', async () => {
    const tasks = await Promise.all(Array.from({ length: 10 }, () => kieTask()));
    const ids = await Promise.all(tasks.map(async (t) => (await sql<{ id: string }[]>`
      insert into public.generations (user_id, type, status, task_id, model) values (${userId}, 'photo', 'pending', ${t.taskId}, 'google/nano-banana') returning id`)[0].id));
    // the postmaster's pid, to crash it the moment the last answer arrives (SIGQUIT: an immediate
    // shutdown, what pg_ctl -m immediate sends), before the WAL writer's next flush
    const pgRoot = existsSync(join(own.dir, 'pg', 'LOCATION')) ? readFileSync(join(own.dir, 'pg', 'LOCATION'), 'utf8').trim() : join(own.dir, 'pg');
    const postmaster = Number(readFileSync(join(pgRoot, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const answers = await Promise.all(tasks.map((t) => callback(t.taskId, t.url)));
    process.kill(postmaster, 'SIGQUIT');
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    await waitFor('the crash', async () => !alive(postmaster), 10_000, 50);
    await pg('start');
    await sql.end({ timeout: 1 });
    sql = postgres(own.env.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
    const rows = await sql<{ status: string; preview: string }[]>`
      select g.status, case when g.preview_status = 'ready' then 'ready'
                            when exists (select 1 from public.preview_jobs j where j.generation_id = g.id and j.kind = 'preview'
                                            and j.state in ('queued', 'running')) then 'job'
                            else coalesce(g.preview_status, 'none') || ' without a job' end as preview
        from public.generations g where g.id = any(${ids}::uuid[])`;
    expect(rows.map((r) => r.status)).toEqual(Array(10).fill('success'));
    // and each one's preview job, written in the callback's transaction, survived with it
    expect(rows.filter((r) => r.preview !== 'ready' && r.preview !== 'job')).toEqual([]);
  }, 120_000);

  it('the first claim after a Postgres restart succeeds (idle connections recover, nothing fails)', async () => {
    const warm = await successRow((await kieTask()).url);
    await waitFor('a warm worker', async () => (await row(warm)).preview_status === 'ready', 60_000);
    await pg('stop');
    await pg('start');
    const mark = logMark();
    const started = Date.now();
    const id = await successRow((await kieTask()).url);
    // Usually ready within 2 s. Once in three full npm test runs (2026-12-03) it took past 50 s:
    // most likely a wake lost in flight by the restart (no answer, no error) counted as a worker on
    // its way for 30 s, so the new row's job woke nobody until the minute sweep. Such a wake now
    // stops counting after pg_net's timeout (preview_wake_pending, 10 s). The bound still allows
    // the sweep, the backstop, and the time is printed; the own stack's logs are kept in
    // .local/last-own-recovery-logs.
    await waitFor('the preview', async () => ((await row(id)).preview_status === 'ready' ? row(id) : null), 110_000);
    console.log(`recovery: first preview after a Postgres restart ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(readyAttempts(mark, id)).toEqual([1]);
    expect(logSince(mark, id, '❌')).toEqual([]);
  }, 200_000);

  it('a transient database error at completion is retried within the lease: one write per object, attempt 1', async () => {
    const { url } = await kieTask();
    // eight completions in a row fail as if the server had gone away (57P01), about 11 s of waits:
    // longer than a call holding no job is retried (about 5 s), within the lease a held job's calls
    // are retried for (the one policy of shared/db.ts, bounded by the job's heartbeat lease)
    await sql`create sequence if not exists public.test_complete_faults`;
    await sql.unsafe(`
      create or replace function public.test_fail_completion() returns trigger language plpgsql as $$
      begin
        if new.preview_status = 'ready' and old.preview_status = 'processing' and new.prompt = 'fail-completion'
           and nextval('public.test_complete_faults') <= 8 then
          raise exception 'injected: terminating connection due to administrator command' using errcode = '57P01';
        end if;
        return new;
      end $$`);
    await sql`create trigger zz_test_fail_completion before update on public.generations for each row execute function public.test_fail_completion()`;
    try {
      const mark = logMark();
      const [{ id }] = await sql<{ id: string }[]>`
        insert into public.generations (user_id, type, status, task_id, model, asset_url, prompt)
        values (${userId}, 'photo', 'success', ${`rec-${randomUUID()}`}, 'google/nano-banana', ${url}, 'fail-completion') returning id`;
      const done = await waitFor('the preview', async () => ((await row(id)).preview_status === 'ready' ? row(id) : null), 60_000);
      expect(readyAttempts(mark, id)).toEqual([1]);
      // the job is done (deleted) only with the completion that went through
      expect(await sql`select id from public.preview_jobs where generation_id = ${id}`).toHaveLength(0);
      expect(logSince(mark, '[Preview] Database retry', id, 'call=complete').length).toBeGreaterThanOrEqual(6);
      const writes = (path: string) => logSince(mark, '[Storage] write', `name=${path} `).length;
      expect(writes(done.preview_path)).toBe(1);
      expect(writes(done.original_path)).toBe(1);
    } finally {
      await sql`drop trigger if exists zz_test_fail_completion on public.generations`;
      await sql`drop function if exists public.test_fail_completion()`;
    }
  }, 120_000);

  it('a worker killed while it holds a job: its heartbeats stop and the job is retried within the heartbeat lease and a claim, not the 2-minute lease', async () => {
    // a slow asset keeps the worker downloading long enough to see it heartbeat, then to kill it
    const { taskId, url } = await kieTask({ asset: 'slow', slowMs: 15_000 });
    const mark = logMark();
    const id = await successRow(url);
    const claimed = await claimOf(id);
    expect(claimed.lease_until!.getTime() - claimed.locked_at!.getTime()).toBe(30_000); // the heartbeat lease, not 2 minutes
    // alive, it extends its lease every third of it (10 s)
    const beat = await waitFor('a heartbeat', async () => {
      const j = await previewJob(id);
      return j && j.attempts === 1 && j.lease_until!.getTime() > claimed.lease_until!.getTime() ? j : null;
    }, 20_000, 200);
    const worker = await workerOf(claimed);
    await kie.setTask(taskId, { asset: 'ok' });
    process.kill(worker.pid, 'SIGKILL');
    const killed = Date.now();
    await sleep(500);
    const last = (await previewJob(id))!.lease_until!.getTime();
    expect(last).toBeGreaterThanOrEqual(beat.lease_until!.getTime());
    // dead, it stops: its job is due when the heartbeat lease runs out
    const due = await waitFor('the dead worker\'s lease to run out', async () => {
      const [r] = await sql<{ due: boolean }[]>`select lease_until < now() as due from public.preview_jobs where id = ${claimed.id}`;
      return r?.due ? Date.now() : null;
    }, 40_000, 100);
    expect((await previewJob(id))?.lease_until?.getTime(), 'no heartbeat after the kill').toBe(last);
    // the next claim takes it over: what any claim, enqueue or the minute's sweep does
    await sql`select public.preview_sweep()`;
    await waitFor('the preview', async () => (await row(id)).preview_status === 'ready', 60_000);
    const ready = Date.now();
    expect(readyAttempts(mark, id)).toEqual([2]);
    console.log(`recovery: a worker killed holding a job: due again ${((due - killed) / 1000).toFixed(1)} s after its death ` +
      `(heartbeat lease 30 s), ready at attempt 2 ${((ready - killed) / 1000).toFixed(1)} s after it`);
    expect(due - killed).toBeLessThanOrEqual(31_000);
    expect(ready - killed).toBeLessThan(60_000); // the 2-minute lease alone was 120 s
  }, 150_000);

  it('a worker killed between its uploads and its completion: the next attempt writes no object again (exactly once per object)', async () => {
    // the completion of this row waits (pg_sleep in a trigger) until the test has killed the worker
    // that sent it, then fails: attempt 1 wrote both objects and never completed
    await sql`create sequence if not exists public.test_kill_at_completion`;
    await sql.unsafe(`
      create or replace function public.test_kill_at_completion() returns trigger language plpgsql as $$
      begin
        if new.preview_status = 'ready' and old.preview_status = 'processing' and new.prompt = 'kill-at-completion'
           and nextval('public.test_kill_at_completion') = 1 then
          perform pg_sleep(4);
          raise exception 'injected: the worker died before its completion';
        end if;
        return new;
      end $$`);
    await sql`create trigger zz_test_kill_at_completion before update on public.generations for each row execute function public.test_kill_at_completion()`;
    try {
      const { url } = await kieTask();
      const mark = logMark();
      const [{ id }] = await sql<{ id: string }[]>`
        insert into public.generations (user_id, type, status, task_id, model, asset_url, prompt)
        values (${userId}, 'photo', 'success', ${`rec-${randomUUID()}`}, 'google/nano-banana', ${url}, 'kill-at-completion') returning id`;
      const claimed = await claimOf(id);
      const worker = await workerOf(claimed);
      await waitFor('the completion to wait in the trigger', async () =>
        (await sql`select 1 from pg_stat_activity where wait_event = 'PgSleep' and query like '%complete_preview_job%'`).length > 0, 60_000, 50);
      process.kill(worker.pid, 'SIGKILL');
      await waitFor('the dead worker\'s lease to run out', async () =>
        (await sql`select 1 from public.preview_jobs where id = ${claimed.id} and lease_until < now()`).length > 0, 45_000, 250);
      await sql`select public.preview_sweep()`;
      const done = await waitFor('the preview', async () => ((await row(id)).preview_status === 'ready' ? row(id) : null), 60_000);
      expect(readyAttempts(mark, id)).toEqual([2]);
      const writes = (path: string) => logSince(mark, '[Storage] write', `name=${path} `).length;
      expect(writes(done.preview_path)).toBe(1);
      expect(writes(done.original_path)).toBe(1);
      expect(logSince(mark, '[Preview] Kept', id, ' attempt=2').map((l) => l.match(/ path=(\S+)/)?.[1]).sort())
        .toEqual([done.original_path, done.preview_path].sort());
    } finally {
      await sql`drop trigger if exists zz_test_kill_at_completion on public.generations`;
      await sql`drop function if exists public.test_kill_at_completion()`;
    }
  }, 150_000);

  it('a worker holding a job rides out an 8 s Postgres stop: ready at attempt 1, no INTERNAL', async () => {
    // a slow asset: the worker still holds the job (downloading) when Postgres stops, and asks the
    // database (its heartbeat, the check before its uploads) while Postgres is down
    const { url } = await kieTask({ asset: 'slow', slowMs: 3_000 });
    const mark = logMark();
    const id = await successRow(url);
    await claimOf(id);
    await pg('stop');
    const stopped = Date.now();
    await sleep(8_000);
    await pg('start');
    const outage = (Date.now() - stopped) / 1000;
    await reconnect();
    await waitFor('the preview', async () => ((await row(id)).preview_status === 'ready' ? row(id) : null), 60_000);
    expect(readyAttempts(mark, id)).toEqual([1]);
    expect(logSince(mark, id, '❌')).toEqual([]);
    expect(logSince(mark, 'code=INTERNAL')).toEqual([]);
    expect(logSince(mark, 'Worker stopped')).toEqual([]);
    const retries = logSince(mark, '[Preview] Database retry', `generationId=${id} `);
    expect(retries.length, 'the worker waited for the database').toBeGreaterThanOrEqual(1);
    console.log(`recovery: a worker holding a job rode out a ${outage.toFixed(1)} s Postgres stop (${retries.length} retries: ` +
      `${[...new Set(retries.map((l) => l.match(/call=(\w+)/)?.[1]))].join(', ')}); ready at attempt 1`);
  }, 120_000);

  it('the first dispatch after a Postgres restart succeeds though its pooled connection dies under its first query (the dispatch secret\'s check is retried)', async () => {
    const [{ secret }] = await sql<{ secret: string }[]>`select decrypted_secret as secret from vault.decrypted_secrets where name = 'preview_dispatch_secret'`;
    const dispatch = () => fetch(`${own.env.API_URL}/functions/v1/generate-preview?wait=1`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-preview-dispatch': secret }, body: '{"decide": true}',
    });
    // a warm worker with pooled connections
    expect((await dispatch()).status).toBe(200);
    await pg('stop');
    await pg('start');
    await reconnect();
    // On the platform a pooled connection that outlived the restart (through the pooler) answers
    // its next query with FATAL 57P01 "terminating connection due to administrator command"; the
    // local Postgres closes idle connections outright, which postgres.js notices. So the first
    // secret check after the restart gets what the stale one got: its backend terminated under it.
    const [{ def }] = await sql<{ def: string }[]>`select pg_get_functiondef('public.preview_dispatch_secret_ok(text)'::regprocedure) as def`;
    await sql`create sequence if not exists public.test_dispatch_faults`;
    await sql`select setval('public.test_dispatch_faults', 1, false)`;
    await sql.unsafe(`
      create or replace function public.preview_dispatch_secret_ok(p_presented text) returns boolean
      language plpgsql volatile security definer set search_path = '' as $$
      begin
        if nextval('public.test_dispatch_faults') = 1 then
          perform pg_terminate_backend(pg_backend_pid());
          perform pg_sleep(5);
        end if;
        return coalesce((select sha256(convert_to(s.decrypted_secret, 'UTF8')) = sha256(convert_to(coalesce(p_presented, ''), 'UTF8'))
                           from vault.decrypted_secrets s where s.name = 'preview_dispatch_secret' and s.decrypted_secret <> '' limit 1), false);
      end $$`);
    try {
      const res = await dispatch();
      expect(res.status, await res.clone().text()).toBe(200);
      expect(await res.json()).toEqual({ decided: true });
      const [{ calls }] = await sql<{ calls: number }[]>`select last_value::int as calls from public.test_dispatch_faults`;
      expect(calls, 'the check ran again after its connection died').toBeGreaterThanOrEqual(2);
    } finally {
      await sql.unsafe(def);
      await sql`drop sequence if exists public.test_dispatch_faults`;
    }
  }, 120_000);

  it('with 50 callbacks lost and 100 rows left without a preview job, every row is ready within 90 s of the first cron run', async () => {
    // 50 tasks KIE finished whose callbacks never came; 100 success rows written two minutes ago
    // with the enqueue muted (no job, no wake: what a failed trigger leaves), which preview-sweep
    // queues
    const lostCallbacks = await Promise.all(Array.from({ length: 50 }, () => kieTask()));
    const urls = await Promise.all(Array.from({ length: 20 }, () => kieTask().then((t) => t.url)));
    const ids = await sql.begin(async (tx) => {
      await tx`set local app.skip_preview_dispatch = 'on'`;
      const a = await tx<{ id: string }[]>`
        insert into public.generations ${tx(lostCallbacks.map((t) => ({ user_id: userId, type: 'photo', status: 'generating', task_id: t.taskId, model: 'google/nano-banana',
          created_at: new Date(Date.now() - 120_000), updated_at: new Date(Date.now() - 120_000) })))} returning id`;
      const b = await tx<{ id: string }[]>`
        insert into public.generations ${tx(Array.from({ length: 100 }, (_, i) => ({ user_id: userId, type: 'photo', status: 'success', task_id: `lost-${randomUUID()}`,
          model: 'google/nano-banana', asset_url: urls[i % urls.length], created_at: new Date(Date.now() - 120_000), updated_at: new Date(Date.now() - 120_000) })))} returning id`;
      return [...a, ...b].map((r) => r.id);
    });
    const since = new Date();
    const first = await waitFor('the first cron run', async () => {
      const [r] = await sql<{ start: Date }[]>`
        select min(d.start_time) as start from cron.job_run_details d join cron.job j on j.jobid = d.jobid
         where j.jobname in ('kie-sync-pending', 'preview-sweep') and d.start_time >= ${since}`;
      return r.start;
    }, 70_000, 500);
    const ready = await waitFor('every row ready', async () => {
      const [r] = await sql<{ n: number; last: Date | null }[]>`
        select count(*) filter (where preview_status = 'ready')::int as n, max(updated_at) as last from public.generations where id = any(${ids}::uuid[])`;
      return r.n === ids.length ? r : null;
    }, 150_000, 1000);
    const seconds = (ready.last!.getTime() - first.getTime()) / 1000;
    const [net] = await sql<{ total: number; timed_out: number }[]>`
      select count(*)::int as total, count(*) filter (where timed_out)::int as timed_out from net._http_response where created >= ${since}`;
    console.log(`recovery: 50 lost callbacks + 100 rows without a job ready ${seconds.toFixed(1)} s after the first cron run; ` +
      `pg_net answers ${net.total}, timed out ${net.timed_out}`);
    expect(seconds).toBeLessThanOrEqual(90);
  }, 300_000);
});
