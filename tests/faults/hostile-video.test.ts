// The hostile corpus of issue "Hostile input round three" (scripts/hostile-corpus.ts: made with
// native ffmpeg into .local/hostile-corpus, not committed) through the whole path, on a stack of
// its own under the platform's worker model (per_worker isolates, 2 s of CPU and 256 MB of V8 heap
// + external each, PREVIEW_ANIMATED on, the production byte cap): every file is under every cap and
// each used to kill generate-preview's isolate (546 WORKER_LIMIT, then the row failed WORKER_LIMIT
// after two deaths). Now each ends once with what its file deserves: a poster, or a precise
// terminal code on the row (and on its clip), after one attempt; no isolate ends for CPU or memory,
// no request is answered 546, and nothing is left queued or running.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient } from '../../local/fake-kie-client.ts';
import { CORPUS, corpusFile, type Expect } from '../../scripts/hostile-corpus.ts';
import { createOwnUser, type OwnStack, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

let own: OwnStack;
let sql: postgres.Sql;
const ids = new Map<string, string>();

const logLines = (...needles: string[]) =>
  readFileSync(own.env.LOG_FILE, 'utf8').split('\n').filter((l) => needles.every((n) => l.includes(n)));

const row = async (id: string) =>
  (await sql<Record<string, any>[]>`select * from public.generations where id = ${id}`)[0];
const jobsOf = (id: string) =>
  sql<{ kind: string; state: string; attempts: number; expired_leases: number; code: string | null; error: string | null }[]>`
    select kind, state, attempts, expired_leases, last_error_code as code, last_error as error
      from public.preview_jobs where generation_id = ${id} order by id`;

beforeAll(async () => {
  // the files first (a few minutes the first time; cached in .local/hostile-corpus)
  const files = new Map<string, string>();
  for (const e of CORPUS) files.set(e.name, await corpusFile(e));
  own = await startOwnStack('hostile-video', {
    PREVIEW_ANIMATED: 'on',
    PREVIEW_MAX_SOURCE_BYTES: String(100 * 1024 * 1024),
    PREVIEW_WORKER_LIMIT: '2',
    KIE_WEBHOOK_HMAC_KEY: '',
  });
  sql = postgres(own.env.DB_URL, { max: 3, prepare: false, onnotice: () => {} });
  const user = await createOwnUser(own.env, 'hostile');
  const kie = createFakeKieClient(own.env.KIE_URL);
  for (const e of CORPUS) {
    const name = `${randomUUID()}.${e.ext}`;
    await kie.putFile(name, new Uint8Array(readFileSync(files.get(e.name)!)), e.mime);
    const taskId = await kie.createTask('veo', { model: 'veo3_fast', callBackUrl: null, fixture: name, fake: { callback: 'never', stayPending: true } });
    const url = (await kie.getTask(taskId)).resultUrls[0];
    // what a KIE success leaves: the trigger queues the preview and wakes the workers
    const [r] = await sql<{ id: string }[]>`
      insert into public.generations (user_id, type, status, task_id, model, asset_url)
      values (${user.id}, ${e.type}, 'success', ${`hostile-${randomUUID()}`}, 'veo3_fast', ${url}) returning id`;
    ids.set(e.name, r.id);
  }
}, 900_000);

afterAll(async () => {
  await sql?.end({ timeout: 2 });
  await own?.stop();
}, 60_000);

/** The row's poster (or photo preview) and clip columns once both have settled. */
function settled(id: string, e: (typeof CORPUS)[number]) {
  return waitFor(`${e.name} to settle`, async () => {
    const r = await row(id);
    const poster = r.preview_status === 'ready' || r.preview_status === 'failed';
    const clip = !e.animated || r.preview_status === 'failed' || r.animated_status === 'ready' || r.animated_status === 'failed';
    return poster && clip ? r : null;
  }, 240_000, 500);
}

/** The row's outcome against the corpus's: ready, or failed with the code (and the text, where the row keeps one). */
function expectOutcome(got: { status: string; code: string | null; error?: string | null }, want: Expect, what: string) {
  if ('ready' in want) {
    expect([got.status, got.code], what).toEqual(['ready', null]);
    if (got.error !== undefined) expect(got.error, what).toBeNull();
  } else {
    expect([got.status, got.code], what).toEqual(['failed', want.code]);
    if (got.error !== undefined) expect(got.error, what).toMatch(want.error);
  }
}

describe('the hostile corpus ends with its precise outcome, once, and no isolate dies', () => {
  for (const e of CORPUS) {
    it(`${e.name}: ${e.what}`, async () => {
      const id = ids.get(e.name)!;
      const r = await settled(id, e);
      expectOutcome({ status: r.preview_status, code: r.preview_error_code, error: r.preview_error }, e.poster, 'poster');
      if (e.animated && r.preview_status === 'ready') {
        // the clip's text is its job's (below)
        expectOutcome({ status: r.animated_status, code: r.animated_error_code }, e.animated, 'clip');
      }
      const jobs = await jobsOf(id);
      // nothing left in progress, and no attempt lost to a dead worker
      expect(jobs.filter((j) => j.state === 'queued' || j.state === 'running'), 'live jobs').toEqual([]);
      for (const j of jobs) {
        expect([j.kind, j.state, j.attempts, j.expired_leases], `${j.kind} job`).toEqual([j.kind, 'failed', 1, 0]);
        const want = j.kind === 'animated' ? e.animated : e.poster;
        if (want && 'code' in want) {
          expect(j.code).toBe(want.code);
          expect(j.error).toMatch(want.error);
        }
      }
      // one failure line per failed job, never a WORKER_LIMIT
      expect(logLines('[Preview] ❌ Failed for', id)).toHaveLength(jobs.length);
      expect(logLines(id, 'WORKER_LIMIT')).toEqual([]);
    }, 300_000);
  }

  it('no isolate of generate-preview ended for CPU or memory, no request was answered 546', () => {
    expect(logLines('[Gateway] isolate fn=generate-preview', 'reason=cpu')).toEqual([]);
    expect(logLines('[Gateway] isolate fn=generate-preview', 'reason=memory')).toEqual([]);
    expect(logLines('[Gateway] fn=generate-preview status=546')).toEqual([]);
    // what the isolates held at most, by the platform's measure (heap + external), and spent
    const ended = logLines('[Gateway] isolate fn=generate-preview').map((l) => ({
      cpuMs: Number(/cpuMs=(\d+)/.exec(l)?.[1]),
      peakMb: Number(/peakMb=(\d+)/.exec(l)?.[1]),
    }));
    const live = logLines('[Gateway] fn=generate-preview status=').map((l) => Number(/peakMb=(\d+)/.exec(l)?.[1]));
    const peakMb = Math.max(0, ...ended.map((x) => x.peakMb), ...live);
    const cpuMs = Math.max(0, ...ended.map((x) => x.cpuMs));
    console.log(`hostile corpus: ${CORPUS.length} files, ${ended.length} isolates ended, at most ${peakMb} MB (heap + external) and ${cpuMs} ms of CPU in one isolate`);
    expect(peakMb).toBeLessThan(230); // beforeunload (90 % of 256 MB) never reached
  });
});
