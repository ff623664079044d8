/**
 * Starts the real fake KIE server (Deno subprocess) and a local callback receiver, and checks
 * that what it sends and answers is what shared/kie.ts understands, for every family.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createFakeKieClient, type FakeKieClient } from '../../local/fake-kie-client.ts';
import { createKieClient, type KieClient } from '../../shared/kie/client.ts';
import { extractTaskId, KIE_FAMILIES, type KieFamily, parseKieCallback } from '../../shared/kie/parse.ts';
import { verifyKieSignature } from '../../shared/kie/signature.ts';
import { denoBin } from '../../local/paths.ts';
import { waitFor } from '../helpers/wait.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const deno = denoBin();
const HMAC_KEY = 'fake-kie-test-hmac-key';

// A real 1x1 PNG and a few bytes standing in for an MP4 (the fake does not look inside).
const PNG = Uint8Array.from(
  Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
    'base64',
  ),
);
const MP4 = Uint8Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 0xff);
const VIDEO_FAMILIES = new Set<KieFamily>(['veo', 'runway']);
// suno (music) has its own tests below: progress callbacks before the final one
const VISUAL_FAMILIES = KIE_FAMILIES.filter((f) => f !== 'suno');
// A real MP3 and JPEG cover (tests/fixtures/kie-payloads/README.md says how they were made).
const MEDIA = join(repoRoot, 'tests/fixtures/kie-payloads/media');
const MP3 = new Uint8Array(readFileSync(join(MEDIA, 'suno-track.mp3')));
const JPEG = new Uint8Array(readFileSync(join(MEDIA, 'suno-cover.jpeg')));

vi.setConfig({ testTimeout: 15_000 });

type Received = { path: string; headers: IncomingHttpHeaders; body: unknown; at: number };

let child: ChildProcess;
let fakeUrl = '';
const fakeLog: string[] = [];
let kie: FakeKieClient;
let client: KieClient;
let receiver: Server;
let receiverUrl = '';
const received: Received[] = [];
let receiverStatus = 200;
/** Runs before the receiver answers a callback (the fake waits for the answer). */
let onCallback: ((r: Received) => Promise<void>) | null = null;
const hookErrors: unknown[] = [];


/** The fake's view of a task once all its callback attempts have their answer recorded. */
async function settledTask(kie: FakeKieClient, taskId: string, attempts: number) {
  return await waitFor(`the callback answers of ${taskId}`, async () => {
    const t = await kie.getTask(taskId);
    return t.callbacks.length === attempts && t.callbacks.every((c) => c.done) && t;
  }, 5000, 20);
}

const callbacksFor = (taskId: string) => received.filter((r) => extractTaskId(r.body) === taskId);

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = Buffer.concat(chunks).toString('utf8');
      }
      const r: Received = { path: req.url ?? '', headers: req.headers, body, at: Date.now() };
      received.push(r);
      const answer = () => {
        res.writeHead(receiverStatus, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      };
      if (!onCallback) return answer();
      void onCallback(r).catch((err) => hookErrors.push(err)).finally(answer);
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

  child = spawn(deno, ['run', '--allow-net', '--allow-env', 'local/fake-kie.ts'], {
    cwd: repoRoot,
    env: { ...process.env, FAKE_KIE_PORT: '0', FAKE_KIE_HMAC_KEY: HMAC_KEY, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    fakeLog.push(...lines);
  });
  const listening = await waitFor('the fake KIE server to listen', async () => {
      if (child.exitCode !== null) {
        throw new Error(`fake KIE exited (${child.exitCode}): ${stderr}`);
      }
      return fakeLog.find((l) => l.includes('[FakeKIE] listening on'));
    }, 30_000, 20);
  fakeUrl = /listening on (http:\/\/\S+)/.exec(listening)![1];
  kie = createFakeKieClient(fakeUrl);
  client = createKieClient({ baseUrl: fakeUrl, apiKey: 'test-key', timeoutMs: 3000 });
}, 40_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await new Promise((r) => receiver?.close(r));
});

beforeEach(async () => {
  receiverStatus = 200;
  onCallback = null;
  hookErrors.length = 0;
  await kie.reset();
  await kie.putFile('photo.png', PNG, 'image/png');
  await kie.putFile('clip.mp4', MP4, 'video/mp4');
  await kie.putFile('cover.png', PNG, 'image/png');
  await kie.putFile('take-1.mp3', MP3, 'audio/mpeg');
  await kie.putFile('take-2.mp3', MP3, 'audio/mpeg');
  await kie.putFile('cover.jpeg', JPEG, 'image/jpeg');
});

function fixtureFor(family: KieFamily) {
  if (family === 'suno') return { fixture: 'take-1.mp3', coverFixture: 'cover.jpeg' };
  return VIDEO_FAMILIES.has(family)
    ? { fixture: 'clip.mp4', coverFixture: 'cover.png' }
    : { fixture: 'photo.png' };
}

describe('fake KIE server: API surface', () => {
  it('answers /health and refuses the API without a Bearer token (401, KIE envelope)', async () => {
    expect(await kie.health()).toBe(true);
    const res = await fetch(`${fakeUrl}/api/v1/jobs/createTask`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'google/nano-banana', input: { fixture: 'photo.png' } }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: 401 });
    const ri = await fetch(`${fakeUrl}/api/v1/veo/record-info?taskId=x`, {
      headers: { authorization: 'Bearer ' },
    });
    expect(ri.status).toBe(401);
  });

  it("answers create with KIE's envelope and refuses unknown fixtures", async () => {
    const res = await fetch(`${fakeUrl}/api/v1/gpt4o-image/generate`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', fixture: 'photo.png' }),
    });
    const body = await res.json();
    expect(res.status).toBe(200);
    expect(body).toMatchObject({ code: 200, msg: 'success' });
    expect(typeof body.data.taskId).toBe('string');
    await expect(kie.createTask('market', { fixture: 'missing.png' })).rejects.toThrow(
      /code 422.*missing\.png/,
    );
  });
});

describe.each(VISUAL_FAMILIES.map((f) => [f]))('fake KIE server: %s', (family) => {
  it('success: signed callback in the family shape, record-info agrees, file served', async () => {
    const fx = fixtureFor(family);
    const taskId = await kie.createTask(family, {
      callBackUrl: `${receiverUrl}/cb/${family}?secret=s3`,
      ...fx,
    });
    const [cb] = await waitFor('the callback', async () => callbacksFor(taskId).length === 1 && callbacksFor(taskId), 5000, 20);
    expect(cb.path).toBe(`/cb/${family}?secret=s3`);
    expect(cb.headers['content-type']).toContain('application/json');

    const parsed = parseKieCallback(cb.body);
    const task = await settledTask(kie, taskId, 1);
    expect(parsed).toEqual({
      taskId,
      family,
      state: 'success',
      resultUrls: task.resultUrls,
      coverUrls: VIDEO_FAMILIES.has(family) ? task.coverUrls : [],
      error: null,
      complete: true,
    });
    expect(task.resultUrls).toEqual([
      `${fakeUrl}/files/${encodeURIComponent(taskId)}/${fx.fixture}`,
    ]);
    if (family === 'runway') {
      expect((cb.body as { data: Record<string, unknown> }).data.task_id).toBe(taskId);
    }

    const ts = cb.headers['x-webhook-timestamp'] as string;
    const sig = cb.headers['x-webhook-signature'] as string;
    expect(ts).toMatch(/^\d{10}$/);
    expect(await verifyKieSignature({ hmacKey: HMAC_KEY, taskId, timestamp: ts, signature: sig }))
      .toBe(true);
    expect(await verifyKieSignature({ hmacKey: 'wrong', taskId, timestamp: ts, signature: sig }))
      .toBe(false);

    expect(await client.recordInfo(taskId, family)).toEqual(parsed);

    const file = await fetch(parsed.resultUrls[0]);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe(
      VIDEO_FAMILIES.has(family) ? 'video/mp4' : 'image/png',
    );
    const bytes = new Uint8Array(await file.arrayBuffer());
    expect(file.headers.get('content-length')).toBe(String(bytes.length));
    expect(bytes).toEqual(VIDEO_FAMILIES.has(family) ? MP4 : PNG);

    expect(task.callbacks).toHaveLength(1);
    expect(task.callbacks[0]).toMatchObject({ status: 200, ok: true, signed: true });
    // stdout reaches us asynchronously: wait for the line rather than race it
    await waitFor('the callback log line', async () =>
        fakeLog.some((l) =>
          l.includes(`[FakeKIE] callback task=${taskId}`) && l.includes('status=200')
        ), 5000, 20);
    expect(fakeLog.some((l) => l.includes(`[FakeKIE] created task=${taskId} family=${family}`)))
      .toBe(true);
  });

  it('fail: failure callback with the message; record-info says the same', async () => {
    const taskId = await kie.createTask(family, {
      callBackUrl: `${receiverUrl}/cb`,
      fake: { state: 'fail', failMsg: `boom in ${family}` },
    });
    const [cb] = await waitFor('the callback', async () => callbacksFor(taskId).length === 1 && callbacksFor(taskId), 5000, 20);
    const parsed = parseKieCallback(cb.body);
    expect(parsed).toMatchObject({
      taskId,
      family,
      state: 'failed',
      resultUrls: [],
      complete: true,
    });
    expect(parsed.error).toMatch(
      new RegExp(`^Generation failed: boom in ${family} \\(code \\d{3}\\)$`),
    );
    expect(await client.recordInfo(taskId, family)).toEqual(parsed);
  });
});

describe('fake KIE server: task behaviour', () => {
  it('stayPending: record-info says pending and no callback comes until released', async () => {
    const taskId = await kie.createTask('veo', {
      callBackUrl: `${receiverUrl}/cb`,
      fixture: 'clip.mp4',
      fake: { stayPending: true, callbackDelayMs: 10 },
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(callbacksFor(taskId)).toHaveLength(0);
    expect(await client.recordInfo(taskId, 'veo')).toMatchObject({
      state: 'pending',
      complete: true,
    });
    for (const fam of ['market', '4o', 'flux-kontext', 'runway', 'mj'] as const) {
      const id = await kie.createTask(fam, { ...fixtureFor(fam), fake: { stayPending: true } });
      expect(await client.recordInfo(id, fam)).toMatchObject({ state: 'pending', resultUrls: [] });
    }
    await kie.setTask(taskId, { stayPending: false });
    await waitFor('the callback after release', async () => callbacksFor(taskId).length === 1, 5000, 20);
    expect(await client.recordInfo(taskId, 'veo')).toMatchObject({
      state: 'success',
      complete: true,
    });
  });

  it('callback twice / concurrent / never', async () => {
    const twice = await kie.createTask('market', {
      callBackUrl: `${receiverUrl}/cb`,
      fixture: 'photo.png',
      fake: { callback: 'twice', callbackDelayMs: 10 },
    });
    const conc = await kie.createTask('4o', {
      callBackUrl: `${receiverUrl}/cb`,
      fixture: 'photo.png',
      fake: { callback: 'concurrent', callbackDelayMs: 10 },
    });
    const never = await kie.createTask('mj', {
      callBackUrl: `${receiverUrl}/cb`,
      fixture: ['photo.png', 'cover.png'],
      fake: { callback: 'never', callbackDelayMs: 10 },
    });
    await waitFor('duplicate callbacks', async () => callbacksFor(twice).length === 2 && callbacksFor(conc).length === 2, 5000, 20);
    await new Promise((r) => setTimeout(r, 200));
    expect(callbacksFor(twice)).toHaveLength(2);
    expect(parseKieCallback(callbacksFor(twice)[1].body)).toEqual(
      parseKieCallback(callbacksFor(twice)[0].body),
    );
    expect(callbacksFor(never)).toHaveLength(0);
    const twiceTask = await settledTask(kie, twice, 2);
    expect(twiceTask.callbacks.map((c) => c.status)).toEqual([200, 200]);
    const mj = await client.recordInfo(never, 'mj');
    expect(mj).toMatchObject({ state: 'success', complete: true });
    expect(mj.resultUrls).toHaveLength(2);
    expect((await kie.getTask(never)).callbacks).toHaveLength(0);
    // a late callback on request
    const attempt = await kie.sendCallback(never);
    expect(attempt.status).toBe(200);
    expect(callbacksFor(never)).toHaveLength(1);
  });

  it('records the HTTP status the receiver answered', async () => {
    receiverStatus = 500;
    const taskId = await kie.createTask('flux-kontext', {
      callBackUrl: `${receiverUrl}/cb`,
      fixture: 'photo.png',
      fake: { callbackDelayMs: 10 },
    });
    await waitFor('the callback', async () => callbacksFor(taskId).length === 1, 5000, 20);
    const task = await settledTask(kie, taskId, 1);
    expect(task.callbacks).toHaveLength(1);
    expect(task.callbacks[0]).toMatchObject({ status: 500, ok: false });
  });
});

describe('fake KIE server: asset modes', () => {
  async function taskWith(
    asset: 'ok' | '404' | '500' | '500-then-ok' | 'slow' | 'truncated' | 'hang',
    slowMs?: number,
  ) {
    const taskId = await kie.createTask('market', {
      fixture: 'photo.png',
      fake: { asset, ...(slowMs ? { slowMs } : {}), callbackDelayMs: 0 },
    });
    return { taskId, url: (await kie.getTask(taskId)).resultUrls[0] };
  }

  it('404 and 500', async () => {
    const a = await taskWith('404');
    expect((await fetch(a.url)).status).toBe(404);
    const b = await taskWith('500');
    expect((await fetch(b.url)).status).toBe(500);
    expect((await fetch(b.url)).status).toBe(500);
  });

  it('500-then-ok fails once, then serves the bytes', async () => {
    const { url, taskId } = await taskWith('500-then-ok');
    expect((await fetch(url)).status).toBe(500);
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(new Uint8Array(await ok.arrayBuffer())).toEqual(PNG);
    const reqs = await kie.requests(taskId);
    expect(reqs.map((r) => r.status)).toEqual([500, 200]);
    expect(reqs[1].bytes).toBe(PNG.length);
  });

  it('truncated announces every byte and breaks off', async () => {
    await kie.putFile('big.bin', MP4, 'application/octet-stream');
    const taskId = await kie.createTask('market', {
      fixture: 'big.bin',
      fake: { asset: 'truncated' },
    });
    const url = (await kie.getTask(taskId)).resultUrls[0];
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(MP4.length));
    await expect(res.arrayBuffer()).rejects.toThrow();
    const [r] = await kie.requests(taskId);
    expect(r).toMatchObject({ status: 200, mode: 'truncated' });
    expect(r.bytes).toBeLessThan(MP4.length);
  });

  it('slow delays the headers; hang never finishes the body', async () => {
    const slow = await taskWith('slow', 400);
    const t0 = Date.now();
    const res = await fetch(slow.url);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
    expect(res.status).toBe(200);
    await res.arrayBuffer();

    const hang = await taskWith('hang');
    const t1 = Date.now();
    await expect(
      fetch(hang.url, { signal: AbortSignal.timeout(400) }).then((r) => r.arrayBuffer()),
    ).rejects.toThrow();
    expect(Date.now() - t1).toBeGreaterThanOrEqual(380);
  });

  it('honours Range and counts downloads', async () => {
    const { url, taskId } = await taskWith('ok');
    const part = await fetch(url, { headers: { range: 'bytes=2-5' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 2-5/${PNG.length}`);
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(PNG.slice(2, 6));
    const tail = await fetch(url, { headers: { range: 'bytes=-4' } });
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(PNG.slice(-4));
    expect((await fetch(url, { headers: { range: 'bytes=9999-' } })).status).toBe(416);
    const reqs = await kie.requests(taskId);
    expect(reqs.map((r) => [r.status, r.bytes])).toEqual([[206, 4], [206, 4], [416, 0]]);
    await waitFor('the file log line', async () =>
        fakeLog.some((l) => l.includes(`[FakeKIE] file task=${taskId} name=photo.png status=206`)), 5000, 20);
    // files of another task, or unknown names, are 404
    expect((await fetch(`${fakeUrl}/files/${taskId}/clip.mp4`)).status).toBe(404);
  });
});

describe('createKieClient against the fake', () => {
  it('throws readable errors: unknown task (code 404), wrong family, HTTP 401, timeout', async () => {
    await expect(client.recordInfo('nope', 'market')).rejects.toThrow(/code 404/);
    const id = await kie.createTask('runway', { fixture: 'clip.mp4' });
    await expect(client.recordInfo(id, 'veo')).rejects.toThrow(/code 404/);
    const noAuth = createKieClient({
      baseUrl: fakeUrl,
      apiKey: 'k',
      fetch: (input, init) => fetch(input, { ...init, headers: {} }),
    });
    await expect(noAuth.recordInfo(id, 'runway')).rejects.toThrow(/HTTP 401/);

    const silent = createServer(() => {/* never answers */});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const slow = createKieClient({
        baseUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
        apiKey: 'k',
        timeoutMs: 200,
      });
      await expect(slow.recordInfo('t', 'mj')).rejects.toThrow(/timed out after 200 ms/);
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });

  it('asks the documented record-info path of each family with a Bearer token', async () => {
    const seen: string[] = [];
    const spy = createKieClient({
      baseUrl: `${fakeUrl}/`,
      apiKey: 'secret-key',
      fetch: (input, init) => {
        seen.push(`${String(input)} ${new Headers(init?.headers).get('authorization')}`);
        return fetch(input, init);
      },
    });
    for (const fam of KIE_FAMILIES) {
      const id = await kie.createTask(fam, fixtureFor(fam));
      await spy.recordInfo(id, fam);
    }
    expect(seen.map((s) => new URL(s.split(' ')[0]).pathname)).toEqual([
      '/api/v1/jobs/recordInfo',
      '/api/v1/gpt4o-image/record-info',
      '/api/v1/flux/kontext/record-info',
      '/api/v1/veo/record-info',
      '/api/v1/runway/record-detail',
      '/api/v1/mj/record-info',
      '/api/v1/generate/record-info',
    ]);
    expect(seen.every((s) => s.endsWith(' Bearer secret-key'))).toBe(true);
  });
});

describe('fake KIE server: suno (music)', () => {
  type SunoCallback = {
    code: number;
    msg: string;
    data: { callbackType: string; task_id: string; data: Record<string, unknown>[] | null };
  };
  const typesOf = (taskId: string) =>
    callbacksFor(taskId).map((r) => (r.body as SunoCallback).data.callbackType);
  /** The fake's record-info answer as KIE words it (the client only gives the parsed result). */
  async function rawRecordInfo(taskId: string) {
    const res = await fetch(`${fakeUrl}/api/v1/generate/record-info?taskId=${taskId}`, {
      headers: { authorization: 'Bearer k' },
    });
    return (await res.json()) as {
      code: number;
      data: {
        taskId: string;
        status: string;
        response: { sunoData: Record<string, unknown>[] } | null;
      };
    };
  }

  it('text → first → complete, signed, in order; record-info follows each stage; real files', async () => {
    const seen: { type: string; status: string; parsed: unknown; audio: unknown[] }[] = [];
    // while the receiver answers a callback, record-info tells that callback's stage
    onCallback = async (r) => {
      const taskId = extractTaskId(r.body)!;
      const raw = await rawRecordInfo(taskId);
      seen.push({
        type: (r.body as SunoCallback).data.callbackType,
        status: raw.data.status,
        parsed: await client.recordInfo(taskId, 'suno'),
        audio: (raw.data.response?.sunoData ?? []).map((t) => t.audioUrl),
      });
    };
    const taskId = await kie.createTask('suno', {
      model: 'V4_5',
      callBackUrl: `${receiverUrl}/cb/suno?secret=s3`,
      fixture: ['take-1.mp3', 'take-2.mp3'],
      coverFixture: 'cover.jpeg',
      prompt: 'a calm piano piece',
    });
    const task = await settledTask(kie, taskId, 3);
    expect(hookErrors).toEqual([]);
    expect(typesOf(taskId)).toEqual(['text', 'first', 'complete']);
    expect(task.resultUrls).toEqual([
      `${fakeUrl}/files/${taskId}/take-1.mp3`,
      `${fakeUrl}/files/${taskId}/take-2.mp3`,
    ]);
    expect(task.coverUrls).toEqual([`${fakeUrl}/files/${taskId}/cover.jpeg`]);

    const [text, first, complete] = callbacksFor(taskId);
    const pending = {
      taskId,
      family: 'suno',
      state: 'pending',
      resultUrls: [],
      coverUrls: [],
      error: null,
      complete: true,
    };
    expect(parseKieCallback(text.body)).toEqual(pending);
    expect((text.body as SunoCallback).data.data).toEqual([]);
    expect(parseKieCallback(first.body)).toEqual(pending);
    expect((first.body as SunoCallback).data.data).toMatchObject([
      { audio_url: task.resultUrls[0], image_url: task.coverUrls[0], model_name: 'chirp-v4-5' },
    ]);
    const done = parseKieCallback(complete.body);
    expect(done).toEqual({
      taskId,
      family: 'suno',
      state: 'success',
      resultUrls: task.resultUrls,
      coverUrls: task.coverUrls,
      error: null,
      complete: true,
    });
    expect((complete.body as SunoCallback).data.data).toHaveLength(2);
    expect((complete.body as SunoCallback).data.task_id).toBe(taskId);

    // record-info as each callback was being answered, then after
    expect(seen.map((x) => [x.type, x.status])).toEqual([
      ['text', 'TEXT_SUCCESS'],
      ['first', 'FIRST_SUCCESS'],
      ['complete', 'SUCCESS'],
    ]);
    expect(seen[0].parsed).toEqual(pending);
    expect(seen[1].parsed).toEqual(pending);
    expect(seen[0].audio).toEqual(['', '']);
    expect(seen[1].audio).toEqual([task.resultUrls[0], '']);
    expect(seen[2].parsed).toEqual(done);
    expect(await client.recordInfo(taskId, 'suno')).toEqual(done);

    for (const cb of callbacksFor(taskId)) {
      const ts = cb.headers['x-webhook-timestamp'] as string;
      const sig = cb.headers['x-webhook-signature'] as string;
      expect(cb.path).toBe('/cb/suno?secret=s3');
      expect(await verifyKieSignature({ hmacKey: HMAC_KEY, taskId, timestamp: ts, signature: sig }))
        .toBe(true);
    }

    // the audio and the cover are the real files
    const audio = await fetch(done.resultUrls[1]);
    expect(audio.status).toBe(200);
    expect(audio.headers.get('content-type')).toBe('audio/mpeg');
    expect(new Uint8Array(await audio.arrayBuffer())).toEqual(MP3);
    const part = await fetch(done.resultUrls[0], { headers: { range: 'bytes=0-1' } });
    expect(part.status).toBe(206);
    expect([...new Uint8Array(await part.arrayBuffer())]).toEqual([0xff, MP3[1]]); // MPEG frame sync
    expect(MP3[1] & 0xe0).toBe(0xe0);
    const cover = await fetch(done.coverUrls[0]);
    expect(cover.headers.get('content-type')).toBe('image/jpeg');
    const jpeg = new Uint8Array(await cover.arrayBuffer());
    expect(jpeg).toEqual(JPEG);
    expect([jpeg[0], jpeg[1]]).toEqual([0xff, 0xd8]);
    expect(fakeLog.some((l) => l.includes(`created task=${taskId} family=suno model=V4_5`)))
      .toBe(true);
  });

  it('fail: the error callback after the stages; record-info says the same', async () => {
    const taskId = await kie.createTask('suno', {
      callBackUrl: `${receiverUrl}/cb`,
      fake: { state: 'fail', failMsg: 'boom in suno', stages: ['text'], callbackDelayMs: 10 },
    });
    await settledTask(kie, taskId, 2);
    expect(typesOf(taskId)).toEqual(['text', 'error']);
    const [text, error] = callbacksFor(taskId);
    expect(parseKieCallback(text.body)).toMatchObject({ state: 'pending' });
    expect(error.body).toEqual({
      code: 501,
      msg: 'boom in suno',
      data: { callbackType: 'error', task_id: taskId, data: null },
    });
    const parsed = parseKieCallback(error.body);
    expect(parsed).toEqual({
      taskId,
      family: 'suno',
      state: 'failed',
      resultUrls: [],
      coverUrls: [],
      error: 'Generation failed: boom in suno (code 501)',
      complete: true,
    });
    expect(await client.recordInfo(taskId, 'suno')).toEqual(parsed);
    expect((await rawRecordInfo(taskId)).data).toMatchObject({
      status: 'GENERATE_AUDIO_FAILED',
      errorCode: 501,
      errorMessage: 'boom in suno',
    });
  });

  it('stages [] sends complete only; twice repeats it; never sends none', async () => {
    const only = await kie.createTask('suno', {
      callBackUrl: `${receiverUrl}/cb`,
      ...fixtureFor('suno'),
      fake: { stages: [], callbackDelayMs: 10 },
    });
    const twice = await kie.createTask('suno', {
      callBackUrl: `${receiverUrl}/cb`,
      ...fixtureFor('suno'),
      fake: { callback: 'twice', callbackDelayMs: 10 },
    });
    const never = await kie.createTask('suno', {
      callBackUrl: `${receiverUrl}/cb`,
      ...fixtureFor('suno'),
      fake: { callback: 'never', callbackDelayMs: 10 },
    });
    await settledTask(kie, only, 1);
    await settledTask(kie, twice, 4);
    expect(typesOf(only)).toEqual(['complete']);
    expect(typesOf(twice)).toEqual(['text', 'first', 'complete', 'complete']);
    expect(parseKieCallback(callbacksFor(twice)[3].body)).toEqual(
      parseKieCallback(callbacksFor(twice)[2].body),
    );
    await waitFor('the silent task to complete', async () =>
      (await kie.getTask(never)).state === 'success', 5000, 20);
    expect(callbacksFor(never)).toHaveLength(0);
    expect(await client.recordInfo(never, 'suno')).toMatchObject({
      state: 'success',
      resultUrls: [`${fakeUrl}/files/${never}/take-1.mp3`],
      coverUrls: [`${fakeUrl}/files/${never}/cover.jpeg`],
    });
  });

  it('stayPending: PENDING and no callback; Extend Music makes a suno task too', async () => {
    const held = await kie.createTask('suno', {
      callBackUrl: `${receiverUrl}/cb`,
      ...fixtureFor('suno'),
      fake: { stayPending: true, callbackDelayMs: 10 },
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(callbacksFor(held)).toHaveLength(0);
    expect((await rawRecordInfo(held)).data).toMatchObject({
      status: 'PENDING',
      response: { sunoData: [] },
    });
    expect(await client.recordInfo(held, 'suno')).toMatchObject({
      state: 'pending',
      complete: true,
    });

    const res = await fetch(`${fakeUrl}/api/v1/generate/extend`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify({
        audioId: 'e231-track',
        continueAt: 60,
        model: 'V4_5',
        fixture: 'take-2.mp3',
        fake: { callbackDelayMs: 0 },
      }),
    });
    const body = await res.json();
    expect(body).toMatchObject({ code: 200, msg: 'success' });
    const extended = body.data.taskId as string;
    expect((await kie.getTask(extended)).family).toBe('suno');
    await waitFor('the extension to complete', async () =>
      (await kie.getTask(extended)).state === 'success', 5000, 20);
    expect((await rawRecordInfo(extended)).data).toMatchObject({ parentMusicId: 'e231-track' });
    expect((await client.recordInfo(extended, 'suno')).resultUrls).toEqual([
      `${fakeUrl}/files/${extended}/take-2.mp3`,
    ]);
  });

  it('refuses bad stages', async () => {
    for (const stages of [['complete'], ['text', 'text'], 'text']) {
      await expect(
        kie.createTask('suno', { ...fixtureFor('suno'), fake: { stages } as never }),
      ).rejects.toThrow(/code 422.*fake\.stages/);
    }
  });
});
