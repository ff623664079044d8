// The security review's claims (README, Security) that no other suite proves:
// who may call each entry point, what the API roles can read of secrets, and what a leaked
// callback secret allows.
import { randomUUID } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { startGeneration } from '../helpers/flow.ts';
import { previewJob, successCallback } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg, transparentPng } from '../helpers/media.ts';
import { signJwt, signUserJwt } from '../../local/keys.ts';
import { adminClient, ANON_KEY, createUser, FUNCTIONS_URL, generation, invoke, kie, logMark, logSince, postCallback, signedHeaders, sql, stack, type TestUser, waitFor, waitForPreview } from '../helpers/stack.ts';

let alice: TestUser;
let bob: TestUser;
let photo: string;

/**
 * What generate-preview answers for a row id with no due job, once the caller got through: the id
 * is skipped, or, when the isolate has spent its CPU budget (the job model's single-flight isolate,
 * shared/preview/isolate.ts), declined before it looks (WORKER_BUSY). Either way nothing ran.
 */
const NOTHING_RAN = ['skipped', 'declined'];

beforeAll(async () => {
  [alice, bob] = await Promise.all([createUser('sec-alice'), createUser('sec-bob')]);
  photo = await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg');
});

describe('generate-preview: service keys only', () => {
  it('refuses no key, the anon key, a user JWT and the publishable key (401); takes the service JWT and an sb_secret_ apikey', async () => {
    const body = { generationId: randomUUID() };
    const { id } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    for (const key of ['', ANON_KEY, alice.accessToken, stack.PUBLISHABLE_KEY]) {
      const r = await invoke('generate-preview', { key, body: { generationId: id } });
      expect(r.status, `key ${key.slice(0, 12)}`).toBe(401);
    }
    const apikeyOnly = await fetch(`${FUNCTIONS_URL}/generate-preview?wait=1`, {
      method: 'POST', headers: { 'content-type': 'application/json', apikey: stack.PUBLISHABLE_KEY }, body: JSON.stringify(body),
    });
    expect(apikeyOnly.status).toBe(401);
    // The service role in either form gets through (an unknown id is simply skipped, or declined by a spent isolate).
    expect(NOTHING_RAN).toContain((await invoke('generate-preview', { query: '?wait=1', body })).json.results[0].result);
    const secret = await fetch(`${FUNCTIONS_URL}/generate-preview?wait=1`, {
      method: 'POST', headers: { 'content-type': 'application/json', apikey: stack.SECRET_KEY }, body: JSON.stringify(body),
    });
    expect(secret.status).toBe(200);
    expect(NOTHING_RAN).toContain((await secret.json()).results[0].result);
    // the refused calls named a pending row: nothing queued or claimed for it
    expect((await generation(id)).preview_status).toBe('none');
    expect(await previewJob(id)).toBeNull();
  });
});

describe('kie-sync and library: user JWT, scoped to the caller', () => {
  it('kie-sync: no JWT 401, anon key 401, a user asking mode=pending 403, another user\'s task 404', async () => {
    const { taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    expect((await invoke('kie-sync', { key: '', body: { taskId } })).status).toBe(401);
    expect((await invoke('kie-sync', { key: ANON_KEY, body: { taskId } })).status).toBe(401);
    expect((await invoke('kie-sync', { key: stack.PUBLISHABLE_KEY, body: { taskId } })).status).toBe(401);
    expect((await invoke('kie-sync', { key: alice.accessToken, body: { mode: 'pending' } })).status).toBe(403);
    expect((await invoke('kie-sync', { key: bob.accessToken, body: { taskId } })).status).toBe(404);
    expect((await invoke('kie-sync', { key: alice.accessToken, body: { taskId } })).status).toBe(200);
  });

  it('library: no JWT 401, the anon key 401; a user gets only their own rows', async () => {
    expect((await invoke('library', { key: '', method: 'GET' })).status).toBe(401);
    expect((await invoke('library', { key: ANON_KEY, method: 'GET' })).status).toBe(401);
    const { id } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo });
    await waitForPreview(id);
    const mine = await invoke('library', { key: alice.accessToken, method: 'GET' });
    const theirs = await invoke('library', { key: bob.accessToken, method: 'GET' });
    expect(mine.json.items.map((i: { id: string }) => i.id)).toContain(id);
    expect(theirs.json.items.map((i: { id: string }) => i.id)).not.toContain(id);
  });
});

describe('kie-sync and library verify their callers in code (verify_jwt = false)', () => {
  const claims = (user: TestUser, extra: Record<string, unknown> = {}) => ({ sub: user.id, role: 'authenticated', aud: 'authenticated', ...extra });

  it('users\' tokens are ES256 with the kid of the JWKS Auth serves', async () => {
    const header = JSON.parse(Buffer.from(alice.accessToken.split('.')[0], 'base64url').toString());
    const jwks = await (await fetch(`${stack.API_URL}/auth/v1/.well-known/jwks.json`)).json();
    expect(header.alg).toBe('ES256');
    expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(header.kid);
  });

  it('refuses a token that is expired, forged, of another role or of a deleted user (401), the sb_ keys work', async () => {
    const { taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    const [h, p] = alice.accessToken.split('.');
    const forgedClaims = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: bob.id })).toString('base64url');
    const ghost = await createUser('sec-ghost');
    expect((await adminClient().auth.admin.deleteUser(ghost.id)).error).toBeNull();
    const refused = {
      'an expired ES256 token': await signUserJwt(claims(alice), -10),
      'alice\'s token claiming to be bob': `${h}.${forgedClaims}.${alice.accessToken.split('.')[2]}`,
      'an ES256 token of role service_role': await signUserJwt(claims(alice, { role: 'service_role' }), 600),
      'a legacy HS256 token of a deleted user': await signJwt(claims(ghost), 600),
      'an HS256 token signed with another secret': await new SignJWT(claims(alice)).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m')
        .sign(new TextEncoder().encode('not-the-secret-not-the-secret-not-the-secret')),
    };
    for (const [what, key] of Object.entries(refused)) {
      expect((await invoke('kie-sync', { key, body: { taskId } })).status, what).toBe(401);
      expect((await invoke('library', { key, method: 'GET' })).status, what).toBe(401);
    }
    // a legacy HS256 user token is settled by Auth (/auth/v1/user), as getClaims falls back to
    const legacy = await signJwt(claims(alice), 600);
    expect((await invoke('kie-sync', { key: legacy, body: { taskId } })).status).toBe(200);
    expect((await invoke('library', { key: legacy, method: 'GET' })).status).toBe(200);
    // the new keys: a user's token beside the publishable apikey; the secret key in apikey alone
    const withPublishable = await fetch(`${FUNCTIONS_URL}/library`, { headers: { authorization: `Bearer ${alice.accessToken}`, apikey: stack.PUBLISHABLE_KEY } });
    expect(withPublishable.status).toBe(200);
    const secret = await fetch(`${FUNCTIONS_URL}/kie-sync`, { method: 'POST', headers: { apikey: stack.SECRET_KEY, 'content-type': 'application/json' }, body: JSON.stringify({ taskId }) });
    expect(secret.status).toBe(200);
    expect((await invoke('kie-sync', { key: stack.SECRET_KEY, body: {} })).status).toBe(400);
  });
});

describe('library: the caller\'s own rows, whatever the table\'s policies', () => {
  it('under a legacy "anyone can view public generations" policy, bob still gets none of alice\'s rows', async () => {
    const { id } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo });
    await waitForPreview(id);
    const policy = `security test: public rows ${randomUUID()}`;
    await sql.unsafe(`create policy "${policy}" on public.generations for select to authenticated using (true)`);
    try {
      const theirs = await invoke('library', { key: bob.accessToken, method: 'GET' });
      expect(theirs.status).toBe(200);
      expect(theirs.json.items.map((i: { id: string }) => i.id)).not.toContain(id);
      const mine = await invoke('library', { key: alice.accessToken, method: 'GET' });
      expect(mine.json.items.map((i: { id: string }) => i.id)).toContain(id);
    } finally {
      await sql.unsafe(`drop policy "${policy}" on public.generations`);
    }
  });
});

describe('what pg_net carries: its queue is readable by anon on a real project', () => {
  for (const role of ['anon', 'authenticated']) {
    it(`${role} cannot read the vault`, async () => {
      for (const q of ['select * from vault.decrypted_secrets', 'select * from vault.secrets']) {
        const err = await sql.begin(async (tx) => {
          await tx.unsafe(`set local role ${role}`);
          return tx.unsafe(q).then(() => null, (e: { code?: string }) => e.code);
        }).catch((e: { code?: string }) => e.code);
        expect(err, q).toBe('42501');
      }
    });
  }

  it('a queued dispatch, read as anon, carries no key that grants more than the dispatch itself', async () => {
    const defs = await sql<{ src: string }[]>`
      select pg_get_functiondef(p.oid) as src from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'`;
    for (const d of defs) expect(d.src).not.toContain(stack.SERVICE_ROLE_KEY);
    // A real dispatch (the wake the enqueue trigger sends for a new row), read by anon inside its
    // (rolled back) transaction. Room for a wake whatever other files' workers are awake.
    type Queued = { url: string; headers: Record<string, string>; body: string; wake: string };
    const queued = await sql.begin(async (tx) => {
      await tx`set local app.preview_worker_limit = '1000'`;
      await tx`insert into public.generations (user_id, type, status, asset_url)
        values (${alice.id}, 'photo', 'success', 'https://example.com/a.jpg') returning id`;
      // the wakes this transaction queued (by the trigger's subtransaction: still in progress)
      const wakes = await tx<{ id: string; request_id: string }[]>`
        select w.id::text as id, w.request_id::text as request_id from public.preview_worker_wakes w
         where pg_xact_status(((pg_current_xact_id()::text::bigint >> 32 << 32) + w.xmin::text::bigint)::text::xid8) = 'in progress'`;
      expect(wakes.length).toBeGreaterThanOrEqual(1);
      await tx.unsafe('set local role anon');
      const [q] = await tx<Queued[]>`select url, headers, convert_from(body, 'UTF8') as body from net.http_request_queue
        where id = ${wakes[0].request_id}::bigint`;
      throw Object.assign(new Error('rollback'), { queued: { ...q, wake: wakes[0].id } });
    }).catch((e: { queued?: Queued }) => e.queued);
    expect(queued?.url).toBe(`${stack.API_URL}/functions/v1/generate-preview`);
    // it names the wake only: no row, no user, no path
    expect(JSON.parse(queued!.body)).toEqual({ wake: Number(queued!.wake) });
    const headers = queued!.headers;
    // the dispatch secret is its only credential: no service key, and no API key at all
    expect(Object.keys(headers).sort()).toEqual(['Content-Type', 'x-preview-dispatch']);
    for (const secret of [stack.SERVICE_ROLE_KEY, stack.SECRET_KEY, ANON_KEY]) expect(JSON.stringify(headers)).not.toContain(secret);

    // What someone who read it can do with it: wake workers and run the pending sync, nothing else.
    const asDispatch = async (name: string, init: { body?: unknown; query?: string; method?: string; dispatch?: string }) => {
      const res = await fetch(`${FUNCTIONS_URL}/${name}${init.query ?? ''}`, {
        method: init.method ?? 'POST',
        headers: { ...headers, 'x-preview-dispatch': init.dispatch ?? headers['x-preview-dispatch'] },
        body: init.method === 'GET' ? undefined : JSON.stringify(init.body ?? {}),
      });
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    // it only wakes: naming a row needs the service role (tests/faults/dispatch-scope.test.ts)
    const named = await asDispatch('generate-preview', { query: '?wait=1', body: { generationId: randomUUID() } });
    expect(named.status).toBe(403);
    expect((await asDispatch('generate-preview', { query: '?wait=1', body: { decide: true } })).json).toEqual({ decided: true });
    expect((await asDispatch('generate-preview', { query: '?wait=1', body: { generationId: randomUUID() }, dispatch: 'wrong' })).status).toBe(401);
    expect((await asDispatch('kie-sync', { body: { mode: 'pending' } })).status).toBe(200);
    const { taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    expect((await asDispatch('kie-sync', { body: { taskId } })).status).toBe(403);
    expect((await asDispatch('library', { method: 'GET' })).status).toBe(401);
    expect((await asDispatch('health', { method: 'GET', query: '?deep=1' })).status).toBe(401);
    const object = `${alice.id}/previews/${randomUUID()}_preview.webp`;
    expect((await adminClient().storage.from('generations').upload(object, new Uint8Array([1, 2, 3]), { contentType: 'image/webp' })).error).toBeNull();
    const files = createClient(stack.API_URL, ANON_KEY, { global: { headers: { 'x-preview-dispatch': headers['x-preview-dispatch'] } } })
      .storage.from('generations');
    expect((await files.download(object)).data).toBeNull();
    const listed = await files.list(`${alice.id}/previews`);
    expect(listed.error).toBeNull();
    expect(listed.data).toEqual([]);
  });
});

describe('what a leaked callback secret allows', () => {
  it.skipIf(!stack.KIE_WEBHOOK_HMAC_KEY)('with the HMAC key set, the secret alone forges nothing (401)', async () => {
    const { id, taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    const res = await postCallback(successCallback(taskId, `${stack.KIE_URL}/attacker.jpg`), taskId, { headers: { 'x-webhook-signature': '', 'x-webhook-timestamp': '' } });
    expect(res.status).toBe(401);
    expect((await generation(id)).status).toBe('pending');
  });

  it('with secret (and signature, or no HMAC configured): a forged success that swaps a finished row\'s asset is checked against record-info and changes nothing', async () => {
    // A complete callback is trusted for a pending task, but one that would replace the
    // asset of a finished generation is settled by KIE's record-info, which still names the
    // real result. The SSRF guard keeps any URL to public hosts (see callbacks.test.ts).
    const { id, taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo });
    const ready = await waitForPreview(id);
    const other = await kieFile(await transparentPng(), 'png', 'image/png');
    const attackerUrl = (await kie.getTask(await kie.createTask('market', { fixture: other, fake: { callback: 'never' } }))).resultUrls[0];
    const mark = logMark();
    const res = await postCallback(successCallback(taskId, attackerUrl), taskId);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ changed: false });
    expect(logSince(mark, '[Sync] Callback changes the asset of a finished generation', taskId)).toHaveLength(1);
    const row = await generation(id);
    expect(row.asset_url).toBe(ready.asset_url);
    expect([row.preview_status, row.preview_path]).toEqual(['ready', ready.preview_path]);
    expect(row.updated_at).toEqual(ready.updated_at);
  });

  it.skipIf(!stack.KIE_WEBHOOK_HMAC_KEY)('a captured signed callback replayed with another body → 401, nothing changes; the same body again is a redelivery (200)', async () => {
    // KIE signs taskId.timestamp only: the first use of a signature fixes its body.
    const { id, taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo, fake: { callback: 'never', stayPending: true } });
    const headers = await signedHeaders(taskId);
    const first = await postCallback({ code: 200, data: { taskId, state: 'generating' } }, taskId, { headers });
    expect(first.status).toBe(200);
    const before = await generation(id);
    const other = await kieFile(await transparentPng(), 'png', 'image/png');
    const attackerUrl = (await kie.getTask(await kie.createTask('market', { fixture: other, fake: { callback: 'never' } }))).resultUrls[0];
    const mark = logMark();
    const replay = await postCallback(successCallback(taskId, attackerUrl), taskId, { headers });
    expect(replay.status).toBe(401);
    expect(logSince(mark, '[Webhook] Rejected callback: signature already used for another body', taskId)).toHaveLength(1);
    const after = await generation(id);
    expect([after.status, after.asset_url, after.updated_at]).toEqual([before.status, before.asset_url, before.updated_at]);
    expect((await postCallback({ code: 200, data: { taskId, state: 'generating' } }, taskId, { headers })).status).toBe(200);
  });

  it('a forged failure for a finished task changes nothing (terminal states are final)', async () => {
    const { id, taskId } = await startGeneration({ userId: alice.id, type: 'photo', fixture: photo });
    const ready = await waitForPreview(id);
    const res = await postCallback({ code: 501, msg: 'failed', data: { taskId, state: 'fail', failMsg: 'forged' } }, taskId);
    expect(res.status).toBe(200);
    const after = await generation(id);
    expect([after.status, after.preview_status, after.error]).toEqual(['success', 'ready', null]);
    expect(after.updated_at).toEqual(ready.updated_at);
  });
});
