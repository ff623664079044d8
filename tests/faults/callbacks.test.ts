// Fault matrix, part 3: what arrives at kie-callback (issue 7) — duplicates, out-of-order
// states, unknown tasks, forgeries, hostile bodies and task ids, and asset URLs that point
// into the project's own network. Every case checks the row, the stored objects and what
// the endpoint answered.
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODELS, startGeneration } from '../helpers/flow.ts';
import { claimsOf, expectNothingStuck, expectSettled, readyAttempts, successCallback, successRowWithAsset } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { callbackUrl, createUser, generation, insertGeneration, kie, logMark, logSince, postCallback, signedHeaders, sql, stack, type TestUser, waitFor, waitForPreview, writesOf } from '../helpers/stack.ts';

let user: TestUser;
let photo: string;
let trap: Server;
let trapHits = 0;

beforeAll(async () => {
  user = await createUser('faults-callbacks');
  photo = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
  // A local service on a loopback port that is not the fake KIE's: it must never be reached.
  trap = createServer((_req, res) => {
    trapHits++;
    res.end('internal secret');
  });
  await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  await new Promise((r) => trap.close(r));
  await expectNothingStuck([user.id]);
});

describe('fault matrix: duplicate and out-of-order callbacks', () => {
  it('the same callback twice in sequence → one claim, one preview write, both answered 200', async () => {
    const mark = logMark();
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { callback: 'twice' } });
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    const calls = await waitFor('two answered callbacks', async () => {
      const c = (await kie.getTask(taskId)).callbacks;
      return c.length === 2 && c.every((x) => x.done) ? c : null;
    });
    expect(calls.map((c) => c.status)).toEqual([200, 200]);
    // what each callback decided (kie-callback's answer): only the first queued a preview, so no
    // second render can come later
    expect(calls.map((c) => (c.response as { needsPreview?: boolean }).needsPreview)).toEqual([true, false]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
    expect(logSince(mark, `[Preview] Queued generationId=${id} `)).toHaveLength(1);
    // one job, claimed once, ready at its first attempt
    expect(claimsOf(mark, id)).toEqual([1]);
    expect(readyAttempts(mark, id)).toEqual([1]);
  });

  it('the same callback twice at the same moment → one claim, one preview write', async () => {
    const mark = logMark();
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { callback: 'concurrent' } });
    const row = await waitForPreview(id);
    await expectSettled(row, { ready: true });
    const calls = await waitFor('both answered', async () => {
      const c = (await kie.getTask(taskId)).callbacks;
      return c.filter((x) => x.done && x.status === 200).length === 2 ? c : null;
    });
    // one of the two queued the preview, the other saw it queued already
    expect(calls.map((c) => (c.response as { needsPreview?: boolean }).needsPreview).sort()).toEqual([false, true]);
    expect(writesOf(mark, row.preview_path)).toBe(1);
    expect(claimsOf(mark, id)).toEqual([1]);
    expect(readyAttempts(mark, id)).toEqual([1]);
  });

  it('a "generating" callback after success changes nothing (terminal states are final)', async () => {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo });
    const ready = await waitForPreview(id);
    const res = await postCallback({ code: 200, msg: 'ok', data: { taskId, state: 'generating' } }, taskId);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ok: true, changed: false });
    const after = await generation(id);
    expect([after.status, after.preview_status, after.preview_path, after.asset_url]).toEqual(['success', 'ready', ready.preview_path, ready.asset_url]);
    expect(after.updated_at).toEqual(ready.updated_at);
  });

  it('a callback for an unknown task → 200 with a note, nothing written', async () => {
    const res = await postCallback(successCallback('never-created-task', `${stack.KIE_URL}/x.jpg`), 'never-created-task');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ found: false, note: 'unknown task' });
    expect(await sql`select 1 from public.generations where task_id = 'never-created-task'`).toHaveLength(0);
  });
});

describe('fault matrix: forged and hostile callbacks', () => {
  async function pendingRow() {
    const { id, taskId } = await startGeneration({ userId: user.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    return { id, taskId, before: await generation(id) };
  }
  async function expectUnchanged(id: string, before: Awaited<ReturnType<typeof generation>>) {
    const after = await generation(id);
    expect([after.status, after.asset_url, after.preview_status]).toEqual(['pending', null, 'none']);
    expect(after.updated_at).toEqual(before.updated_at);
  }

  it('no secret, a wrong secret, a secret of another length → 401, nothing changes', async () => {
    const { id, taskId, before } = await pendingRow();
    const body = successCallback(taskId, `${stack.KIE_URL}/evil.jpg`);
    for (const secret of ['', 'wrong', `${stack.KIE_CALLBACK_SECRET}x`, stack.KIE_CALLBACK_SECRET.slice(0, -1)]) {
      expect((await postCallback(body, taskId, { secret })).status).toBe(401);
    }
    // The secret in a header instead of the query does not count either.
    const res = await fetch(callbackUrl('').replace('?secret=', ''), { method: 'POST', headers: { 'content-type': 'application/json', 'x-secret': stack.KIE_CALLBACK_SECRET }, body: JSON.stringify(body) });
    expect(res.status).toBe(401);
    await expectUnchanged(id, before);
  });

  it.skipIf(!stack.KIE_WEBHOOK_HMAC_KEY)('the right secret with no signature, a bad signature, a signature for another task, a stale or future timestamp → 401', async () => {
    const { id, taskId, before } = await pendingRow();
    const body = successCallback(taskId, `${stack.KIE_URL}/evil.jpg`);
    const now = Math.floor(Date.now() / 1000);
    const noSig = { 'x-webhook-timestamp': '', 'x-webhook-signature': '' };
    const variants: Record<string, string>[] = [
      noSig,
      { 'x-webhook-signature': 'AAAA' },
      await signedHeaders('another-task'),
      await signedHeaders(taskId, now - 3600),
      await signedHeaders(taskId, now + 3600),
    ];
    for (const headers of variants) expect((await postCallback(body, taskId, { headers })).status).toBe(401);
    await expectUnchanged(id, before);
    expect(logSince(0, '[Webhook] Rejected callback: bad or stale signature', taskId).length).toBeGreaterThanOrEqual(variants.length);
  });

  it('a body that is not JSON → 400; JSON that is not an object → 400; no task id → 400', async () => {
    expect((await postCallback('{not json', 'x')).status).toBe(400);
    expect((await postCallback('[1,2,3]', 'x')).status).toBe(400);
    expect((await postCallback('"just a string"', 'x')).status).toBe(400);
    expect((await postCallback({ code: 200, data: { state: 'success' } }, 'x')).status).toBe(400);
  });

  it('a body of a megabyte → 413 from Content-Length, 400 when streamed without it; nothing changes', async () => {
    const { id, taskId, before } = await pendingRow();
    const big = JSON.stringify({ ...successCallback(taskId, `${stack.KIE_URL}/x.jpg`), pad: 'x'.repeat(1024 * 1024) });
    const declared = await postCallback(big, taskId);
    expect(declared.status).toBe(413);
    const bytes = new TextEncoder().encode(big);
    const streamed = await fetch(callbackUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await signedHeaders(taskId)) },
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < bytes.length; i += 64 * 1024) c.enqueue(bytes.subarray(i, i + 64 * 1024));
          c.close();
        },
      }),
      // @ts-expect-error Node's fetch needs duplex for a streamed body
      duplex: 'half',
    });
    expect(streamed.status).toBe(400);
    await expectUnchanged(id, before);
  });

  it('task ids with quotes and SQL are data, never code: unknown ones answer 200, a real one with quotes ends ready', async () => {
    const hostile = [`x'; drop table public.generations; --`, `" or 1=1 --`, `\\'); select pg_sleep(5); --`, `$$ || (select 1) || $$`];
    for (const taskId of hostile) {
      const res = await postCallback(successCallback(taskId, `${stack.KIE_URL}/x.jpg`), taskId);
      expect(res.status).toBe(200);
      expect(res.body.note).toBe('unknown task');
    }
    expect((await sql`select to_regclass('public.generations') is not null as ok`)[0].ok).toBe(true);
    // A row whose task id itself is hostile still syncs and gets its preview.
    const taskId = `o'brien"; delete from public.generations; -- ${Date.now()}`;
    const id = await insertGeneration({ userId: user.id, type: 'photo', taskId, model: MODELS.market });
    const fileUrl = (await kie.getTask(await kie.createTask('market', { fixture: photo, fake: { callback: 'never' } }))).resultUrls[0];
    const res = await postCallback(successCallback(taskId, fileUrl), taskId);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ found: true, changed: true, needsPreview: true });
    await expectSettled(await waitForPreview(id), { ready: true });
    expect((await sql`select count(*)::int as n from public.generations`)[0].n).toBeGreaterThan(0);
  });
});

describe('fault matrix: asset URLs into the project\'s network (SSRF)', () => {
  it('127.0.0.1 on a port that is not the fake KIE\'s → failed SOURCE_FORBIDDEN, the service there gets zero requests', async () => {
    const port = (trap.address() as AddressInfo).port;
    const { id } = await successRowWithAsset(user.id, `http://127.0.0.1:${port}/latest/secret.jpg`);
    const row = await waitForPreview(id);
    await expectSettled(row, { code: 'SOURCE_FORBIDDEN', error: 'Download refused: 127.0.0.1 resolves to a private address (127.0.0.1)', retryDue: false });
    expect(trapHits).toBe(0);
    // localhost by name resolves to loopback and is refused the same way.
    const named = await successRowWithAsset(user.id, `http://localhost:${port}/x.jpg`);
    await expectSettled(await waitForPreview(named.id), { code: 'SOURCE_FORBIDDEN', error: /^Download refused: localhost resolves to a private address/ });
    expect(trapHits).toBe(0);
  });

  for (const [url, message] of [
    ['http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'Download refused: 169.254.169.254 resolves to a private address (169.254.169.254)'],
    ['http://10.0.0.1/internal.jpg', 'Download refused: 10.0.0.1 resolves to a private address (10.0.0.1)'],
    ['http://[::1]:8080/x.jpg', 'Download refused: ::1 resolves to a private address (::1)'],
    ['http://[::ffff:169.254.169.254]/x.jpg', 'Download refused: ::ffff:a9fe:a9fe resolves to a private address (::ffff:a9fe:a9fe)'],
  ] as const) {
    it(`${url} from a callback → failed SOURCE_FORBIDDEN, refused before any connection`, async () => {
      const { id } = await successRowWithAsset(user.id, url);
      const row = await waitForPreview(id);
      expect(row.asset_url).toBe(url);
      await expectSettled(row, { code: 'SOURCE_FORBIDDEN', error: message, retryDue: false });
      expect(row.original_path).toBeNull();
    });
  }

  it('file:///etc/passwd: a callback cannot put it on the row; a row that has it anyway → failed SOURCE_FORBIDDEN', async () => {
    // The callback parser keeps only http(s) result URLs: the task stays pending (record-info decides).
    const taskId = `task-file-${Date.now()}`;
    const pending = await insertGeneration({ userId: user.id, type: 'photo', taskId, model: MODELS.market });
    const res = await postCallback(successCallback(taskId, 'file:///etc/passwd'), taskId);
    expect(res.status).toBe(200);
    expect(res.body.changed).toBe(false);
    expect((await generation(pending)).asset_url).toBeNull();
    // Written by some other path (the platform, a migration): generate-preview still refuses it.
    const id = await insertGeneration({ userId: user.id, type: 'photo', status: 'success', assetUrl: 'file:///etc/passwd' });
    const row = await waitForPreview(id);
    await expectSettled(row, { code: 'SOURCE_FORBIDDEN', error: 'Download refused: file:// URLs are not allowed', retryDue: false });
  });
});
