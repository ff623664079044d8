// Adoption onto the first user's production shape (tests/fixtures/lensroom: schema.sql, and the
// app's own KIE webhook in app-webhook.ts) on a stack of its own that starts without this system:
// the walk-through of the README's deploy section — doctor → migration history repair →
// migrations (twice) → deploy, refused while the open write policies exist → adoption step →
// deploy (previews-only) → backfill and the app's own paths → doctor — then the two modes end to
// end. previews_only: the app's webhook completes its tasks and this system previews them; no app
// column or task status changes but by the app's own writes (every one of which this file
// tracks); kie-callback and kie-sync answer 409; a signed-in user writes the app's columns of
// their own row, never this system's. kie_owner: KIE calls kie-callback, the app's result
// columns are filled exactly as its own webhook would fill them, the lost Veo task is synced and
// the month-old one expired (opt-in), and every finished task (a callback, a sync, the expiry) is relayed to the app's webhook
// once, also when the app answered 500 first. Real media in storage and at the fake KIE, real
// renders.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import postgres from 'postgres';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient, type FakeKieBehaviour, type FakeKieClient } from '../../local/fake-kie-client.ts';
import { KIE_RECORD_INFO_PATHS } from '../../shared/kie/client.ts';
import { type KieResult, parseKieCallback, parseRecordInfo } from '../../shared/kie/parse.ts';
import { signKieWebhook } from '../../shared/kie/signature.ts';
import { type AppRowBefore, type AppWebhook, appWriteFor, appWriteForCallback, startAppWebhook } from '../fixtures/lensroom/app-webhook.ts';
import { encodePhoto, musicMp3, photoPng, read, videoMp4 } from '../fixtures/media.ts';
import { createOwnUser, type OwnStack, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MEDIA = join(process.cwd(), '.local', 'e2e-media');
const HMAC_KEY = 'lensroom-webhook-hmac-key';
const run = promisify(execFile);

let own: OwnStack;
let sql: postgres.Sql;
let admin: SupabaseClient;
let kie: FakeKieClient;
let app: AppWebhook;
const users: Record<'a' | 'b', { id: string; accessToken: string }> = {} as never;
const media: { jpeg: Uint8Array; png: Uint8Array; mp4: Uint8Array } = {} as never;

/** Every fixture row, by name, with the end state it must reach in previews_only mode. */
type Expect =
  | { end: 'ready'; column: 'preview_path' | 'poster_path'; original?: 'kept' | 'copied' }
  | { end: 'untouched' }
  | { end: 'failed'; codes: string[] }
  | { end: 'not_previewable'; reason: string; status?: string; error?: RegExp };
type Fixture = { name: string; user: 'a' | 'b'; row: Record<string, unknown>; expect: Expect };
type Row = Record<string, unknown>;
const rows: Fixture[] = [];
const ids: Record<string, string> = {};
const nameOf = (id: string) => Object.entries(ids).find(([, v]) => v === id)?.[0] ?? id;

// ------------------------------------------------------------------ the app's columns, tracked
// The app's columns: every column the table had before this system (schema.sql) but the three the
// checklist makes this system's (preview_status, preview_path, poster_path) and updated_at (its
// trigger's). appState holds, per row, what the app last wrote there: the seed, and every write
// this file makes as the app (its service role, its webhook, its signed-in users), taken from the
// statement's RETURNING. Anything else that changes one of these columns is this system's doing.
let appColumns: string[] = [];
const appState = new Map<string, Row>();
const pickApp = (r: Row) => Object.fromEntries(appColumns.map((c) => [c, r[c] ?? null]));
function track(written: readonly Row[]) {
  for (const r of written) appState.set(r.id as string, pickApp(r));
}

/** The app's columns of these rows are what the app last wrote; original_path may be this system's copy where it was null. */
async function expectAppColumnsAsWritten(which: string[]) {
  const current = await sql<Row[]>`select * from public.generations where id = any(${which}::uuid[]) order by id`;
  expect(current.map((r) => nameOf(r.id as string)).sort()).toEqual(which.map(nameOf).sort());
  for (const r of current) {
    const want = appState.get(r.id as string)!;
    const got = pickApp(r);
    const label = nameOf(r.id as string);
    if (want.original_path === null && got.original_path !== null) {
      expect(got.original_path, `${label}: original_path`).toMatch(new RegExp(`^${r.user_id}/originals/${r.id}\\.(jpg|png|mp4|mp3)$`));
      got.original_path = null;
    }
    expect(got, label).toEqual(want);
  }
}

// ------------------------------------------------------------------ scripts, roles
async function deno(script: string, args: string[], env: Record<string, string> = {}) {
  const r = await run('bash', ['scripts/run-deno.sh', script, ...args], { timeout: 180_000, maxBuffer: 1 << 24, env: { ...process.env, NO_COLOR: '1', ...env } })
    .then((o) => ({ ...o, code: 0 }), (e) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? String(e), code: e.code as number }));
  return { code: r.code, out: `${r.stdout}${r.stderr}` };
}

type Finding = { level: string; check: string; message: string; fix?: string };
async function doctor() {
  const r = await deno('scripts/doctor.ts', ['--db-url', own.env.DB_URL, '--json']);
  const parsed = JSON.parse(r.out.slice(r.out.indexOf('{'))) as { findings: Finding[] };
  return { code: r.code, findings: parsed.findings };
}

const RESULT_COLUMNS = 'urls=results,first_url=result_url,completed_at=completed_at,thumbnail_url=thumbnail_url';
async function deployMode(mode: 'kie-owner', extra: string[] = []) {
  return await deno('scripts/deploy.ts', ['--only', 'mode', '--mode', mode, '--result-columns', RESULT_COLUMNS, ...extra, '--db-url', own.env.DB_URL]);
}

type Statement = (tx: postgres.TransactionSql) => Promise<postgres.RowList<postgres.Row[]>>;
/** A statement the way PostgREST sends it: a role and its claims in one transaction. */
async function inRole(role: 'anon' | 'service_role' | 'authenticated', statement: Statement, sub?: string) {
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', ${role}, true), set_config('request.jwt.claims', ${JSON.stringify(sub ? { sub, role } : { role })}, true)`;
    return await statement(tx);
  });
}
/** The row count of a statement as anon or the service role. */
const asRole = async (role: 'anon' | 'service_role', statement: Statement) => (await inRole(role, statement)).count;
/** The app's own write with its service role (RETURNING *): tracked as the app's. */
async function asApp(statement: Statement) {
  const written = await inRole('service_role', statement);
  track(written);
  return written;
}
/** A signed-in user of the app (PostgREST with their JWT: role authenticated, sub): tracked as the app's. */
async function asUser(user: 'a' | 'b', statement: Statement) {
  const written = await inRole('authenticated', statement, users[user].id);
  track(written);
  return written;
}
const ROLLBACK = new Error('rolled back');
/** The row count of a statement as `role`, rolled back: what the database lets through, changing nothing. */
async function rolledBack(role: 'anon' | 'authenticated', statement: Statement, sub?: string) {
  let count = -1;
  await inRole(role, async (tx) => {
    count = (await statement(tx)).count;
    throw ROLLBACK;
  }, sub).catch((err) => {
    if (err !== ROLLBACK) throw err;
  });
  return count;
}

// ------------------------------------------------------------------ storage, KIE
async function upload(path: string, bytes: Uint8Array, contentType: string) {
  const { error } = await admin.storage.from('generations').upload(path, bytes, { contentType, upsert: true });
  if (error) throw new Error(`upload ${path}: ${error.message}`);
  return `${own.env.API_URL}/storage/v1/object/public/generations/${path}`;
}

async function kieUrl(bytes: Uint8Array, ext: string, contentType: string) {
  const name = `${randomUUID()}.${ext}`;
  await kie.putFile(name, bytes, contentType);
  const taskId = await kie.createTask('market', { model: 'google/nano-banana', callBackUrl: null, fixture: name, fake: { callback: 'never', stayPending: true } });
  return (await kie.getTask(taskId)).resultUrls[0];
}

const ourCallbackUrl = () => `${own.env.API_URL}/functions/v1/kie-callback?secret=${encodeURIComponent(own.env.KIE_CALLBACK_SECRET)}`;

let lastSignedAt = 0;
/** KIE's signature headers for a task, each call with a timestamp of its own (one body per signature). */
async function kieSignature(taskId: string) {
  lastSignedAt = Math.max(Math.floor(Date.now() / 1000), lastSignedAt + 1);
  const ts = String(lastSignedAt);
  return { 'x-webhook-timestamp': ts, 'x-webhook-signature': await signKieWebhook(HMAC_KEY, taskId, ts) };
}

/** What KIE's record-info says of a task (the pending sync's source), read as we read it. */
async function recordInfo(family: 'veo' | 'market', taskId: string): Promise<KieResult> {
  const res = await fetch(`${own.env.KIE_URL}${KIE_RECORD_INFO_PATHS[family]}?taskId=${encodeURIComponent(taskId)}`, {
    headers: { authorization: 'Bearer fake-kie-key' },
  });
  return parseRecordInfo(family, await res.json(), taskId);
}

type AppTask = { name: string; taskId: string; id: string; before: Row };
/**
 * A generation the app starts: KIE holds the task (stayPending) while the app inserts its row
 * with the task id (service role), then it is released and KIE calls `callBackUrl` (after 100 ms).
 */
async function appTask(name: string, o: {
  kind: 'photo' | 'video'; callBackUrl: string; cover?: boolean; fake?: FakeKieBehaviour; completedAt?: Date;
}): Promise<AppTask> {
  const veo = o.kind === 'video';
  const taskId = await kie.createTask(veo ? 'veo' : 'market', {
    model: veo ? 'veo3_fast' : 'google/nano-banana', callBackUrl: o.callBackUrl, fixture: veo ? 'lensroom.mp4' : 'lensroom.jpg',
    coverFixture: o.cover ? 'lensroom-cover.jpg' : undefined, fake: { ...o.fake, stayPending: true },
  });
  const id = ids[name] = randomUUID();
  const [before] = await asApp((tx) => tx`insert into public.generations ${tx({
    id, user_id: users.a.id, type: o.kind, status: 'generating', model_id: veo ? 'veo-3.1-fast' : 'nano-banana',
    model_name: veo ? 'Veo 3.1 Fast' : 'Nano Banana', prompt: name, task_id: taskId, credits_used: veo ? 30 : 4,
    completed_at: o.completedAt ?? null,
  })} returning *`);
  return { name, taskId, id, before };
}
const release = (t: AppTask) => kie.setTask(t.taskId, { stayPending: false });

/** The task's KIE callbacks once `n` of them were answered. */
async function kieCallbacks(t: AppTask, n: number) {
  return await waitFor(`${n} KIE callback(s) of ${t.name} answered`, async () => {
    const { callbacks } = await kie.getTask(t.taskId);
    return callbacks.length >= n && callbacks.every((c) => c.done) ? callbacks : null;
  }, 60_000, 250);
}

/** The row once its task is settled and, on success, its preview too. */
async function settled(name: string, timeoutMs = 120_000) {
  return await waitFor(`${name} to settle`, async () => {
    const r = await rowOf(name);
    if (r.status === 'success') return ['ready', 'failed'].includes(r.preview_status as string) ? r : null;
    return ['failed', 'cancelled'].includes(r.status as string) ? r : null;
  }, timeoutMs, 500);
}

/**
 * The app's columns of a row whose task this system finished (kie_owner) are exactly what the
 * app's own webhook writes for that result: appWriteFor with the row as it was, at the completion
 * time this system stamped (fresh when the row had none).
 */
function expectAsAppWrites(r: Row, before: Row, result: KieResult, since: Date) {
  const label = nameOf(r.id as string);
  const want = appWriteFor(result, before as AppRowBefore, r.completed_at as Date)!;
  expect(want, label).not.toBeNull();
  const keys = ['status', 'result_urls', 'results', 'result_url', 'thumbnail_url', 'completed_at', 'error'] as const;
  const expected = Object.fromEntries(keys.map((k) => [k, k in want.columns ? want.columns[k] ?? null : before[k] ?? null]));
  expect(Object.fromEntries(keys.map((k) => [k, r[k] ?? null])), label).toEqual(expected);
  if (before.completed_at === null) expect((r.completed_at as Date).getTime(), `${label}: completed_at`).toBeGreaterThanOrEqual(since.getTime() - 2000);
  // the rest of the app's columns are as the app left them but what apply_kie_result writes of the task
  const rest = (x: Row) => Object.fromEntries(Object.entries(pickApp(x)).filter(([k]) => !(keys as readonly string[]).includes(k) && !['asset_url', 'original_path'].includes(k)));
  expect(rest(r), label).toEqual(rest(before));
}

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);

async function seed() {
  const jpeg = read(await encodePhoto(photoPng(MEDIA, 800, 600), 'jpeg', join(MEDIA, 'lensroom.jpg')));
  const png = read(await encodePhoto(photoPng(MEDIA, 640, 640, { seed: 3 }), 'png', join(MEDIA, 'lensroom.png')));
  const mp4 = read(videoMp4(MEDIA, 640, 360, 2, { fade: 0.3 }));
  const webp = new Uint8Array(await sharp(jpeg).resize(256).webp().toBuffer());
  Object.assign(media, { jpeg, png, mp4 });
  await kie.putFile('lensroom.jpg', jpeg, 'image/jpeg');
  await kie.putFile('lensroom-cover.jpg', new Uint8Array(await sharp(jpeg).resize(320).jpeg().toBuffer()), 'image/jpeg');
  const { a, b } = users;
  const ms = Date.now();
  const id = (name: string) => (ids[name] ??= randomUUID());
  const add = (name: string, user: 'a' | 'b', row: Record<string, unknown>, expect: Expect) =>
    rows.push({ name, user, row: { id: id(name), user_id: users[user].id, model_id: 'nano-banana', model_name: 'Nano Banana', prompt: name, created_at: minutesAgo(60 * 24 * 3), updated_at: minutesAgo(60 * 24 * 3), ...row }, expect });

  // The full sync path: copied to storage (folder `image`), public asset_url, from before the preview columns.
  const fullPath = `${a.id}/image/${id('full_sync_null_status')}_${ms}.jpg`;
  add('full_sync_null_status', 'a', { type: 'photo', status: 'success', asset_url: await upload(fullPath, jpeg, 'image/jpeg'), original_path: fullPath, result_urls: [await kieUrl(jpeg, 'jpg', 'image/jpeg')], preview_status: null },
    { end: 'ready', column: 'preview_path', original: 'kept' });
  // The fast path: status and result_urls only, never copied.
  add('fast_path', 'a', { type: 'photo', status: 'success', result_urls: [await kieUrl(jpeg, 'jpg', 'image/jpeg')], preview_status: 'none' },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  add('fast_path_json_string', 'a', { type: 'photo', status: 'success', result_urls: JSON.stringify([await kieUrl(png, 'png', 'image/png')]), preview_status: null },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  // The Veo webhook: status, result_urls, completed_at.
  add('veo_webhook', 'a', { type: 'video', status: 'success', model_id: 'veo-3.1-fast', model_name: 'Veo 3.1 Fast', result_urls: [await kieUrl(mp4, 'mp4', 'video/mp4')], completed_at: minutesAgo(60), preview_status: 'none' },
    { end: 'ready', column: 'poster_path', original: 'copied' });
  const productPath = `${a.id}/image/${id('product_shot')}_${ms}.png`;
  add('product_shot', 'a', { type: 'product', status: 'success', asset_url: await upload(productPath, png, 'image/png'), original_path: productPath, preview_status: 'none' },
    { end: 'ready', column: 'preview_path', original: 'kept' });
  // The old worker crashed days ago: processing, no lease column.
  add('stuck_processing', 'a', { type: 'photo', status: 'success', result_urls: [await kieUrl(jpeg, 'jpg', 'image/jpeg')], preview_status: 'processing' },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  add('completed_result_url', 'a', { type: 'video', status: 'completed', model_id: 'kling-2.6/text-to-video', result_url: await kieUrl(mp4, 'mp4', 'video/mp4'), result_urls: [], preview_status: null },
    { end: 'ready', column: 'poster_path', original: 'copied' });
  add('succeeded_kie_asset', 'a', { type: 'photo', status: 'succeeded', asset_url: await kieUrl(png, 'png', 'image/png'), preview_status: 'none' },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  // Failed by the old worker (retried forever there): tried once here.
  const failedPath = `${a.id}/image/${id('old_worker_failed')}_${ms}.jpg`;
  add('old_worker_failed', 'a', { type: 'photo', status: 'success', original_path: failedPath, asset_url: await upload(failedPath, jpeg, 'image/jpeg'), preview_status: 'failed', error: 'Preview generation failed: spawn ffmpeg ENOENT' },
    { end: 'ready', column: 'preview_path', original: 'kept' });
  // Ready from the old system: left as they are (videos with a 4 s animated preview in preview_path).
  const readyPath = `${a.id}/image/${id('old_ready_photo')}_${ms}.jpg`;
  add('old_ready_photo', 'a', { type: 'photo', status: 'success', original_path: readyPath, asset_url: await upload(readyPath, jpeg, 'image/jpeg'), preview_status: 'ready', preview_path: await upload(`${a.id}/previews/${id('old_ready_photo')}_preview.webp`, webp, 'image/webp').then(() => `${a.id}/previews/${id('old_ready_photo')}_preview.webp`) },
    { end: 'untouched' });
  const oldVideo = `${a.id}/video/${id('old_ready_video')}_${ms}.mp4`;
  await upload(`${a.id}/previews/${id('old_ready_video')}_preview.mp4`, mp4, 'video/mp4');
  await upload(`${a.id}/posters/${id('old_ready_video')}_poster.webp`, webp, 'image/webp');
  add('old_ready_video', 'a', { type: 'video', status: 'success', model_id: 'veo-3.1-fast', original_path: oldVideo, asset_url: await upload(oldVideo, mp4, 'video/mp4'), preview_status: 'ready', preview_path: `${a.id}/previews/${id('old_ready_video')}_preview.mp4`, poster_path: `${a.id}/posters/${id('old_ready_video')}_poster.webp` },
    { end: 'untouched' });
  add('broken_asset', 'a', { type: 'photo', status: 'success', result_urls: [await kieUrl(new TextEncoder().encode('<html>KIE error page</html>'), 'jpg', 'image/jpeg')], preview_status: 'none' },
    { end: 'failed', codes: ['UNSUPPORTED_FORMAT', 'DECODE_FAILED'] });
  add('no_source', 'a', { type: 'photo', status: 'success', result_urls: [], preview_status: 'none' }, { end: 'not_previewable', reason: 'no_source' });
  // music (result_url only, as the app keeps it): since 20261203102000 it gets a tile, its waveform
  add('audio', 'a', { type: 'audio', status: 'success', model_id: 'suno-v4', result_url: await kieUrl(read(musicMp3(MEDIA, 20)), 'mp3', 'audio/mpeg'), preview_status: 'none' },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  add('cancelled', 'a', { type: 'photo', status: 'cancelled', task_id: 'dup-task', preview_status: 'none' }, { end: 'not_previewable', reason: 'cancelled' });
  add('cancelled_same_task', 'a', { type: 'photo', status: 'cancelled', task_id: 'dup-task', preview_status: 'none', created_at: minutesAgo(60 * 24 * 2) }, { end: 'not_previewable', reason: 'cancelled' });
  add('generation_failed', 'a', { type: 'video', status: 'failed', error: 'Generation failed: content policy', preview_status: 'none' }, { end: 'not_previewable', reason: 'generation_failed' });
  // Still generating at KIE's side a month later: the app's (previews_only: left as it is); in
  // kie_owner mode with --expire-kie-tasks, failed with the reason (checked in that phase).
  await kie.putFile('lensroom.mp4', mp4, 'video/mp4');
  const monthOld = await kie.createTask('veo', { model: 'veo3_fast', callBackUrl: null, fixture: 'lensroom.mp4', fake: { callback: 'never', stayPending: true } });
  add('month_old_task', 'a', { type: 'video', status: 'generating', model_id: 'veo-3.1-fast', task_id: monthOld, preview_status: null, created_at: minutesAgo(60 * 24 * 30), updated_at: minutesAgo(60 * 24 * 30) },
    { end: 'not_previewable', reason: 'generating', status: 'generating' });
  // A Veo task whose callback was lost: the app's in previews_only (no pending sync); in kie_owner
  // mode the pending sync finds its family from model_id (there is no `model`) and fills it.
  const veo = await kie.createTask('veo', { model: 'veo3_fast', callBackUrl: null, fixture: 'lensroom.mp4', fake: { callback: 'never' } });
  add('veo_callback_lost', 'a', { type: 'video', status: 'generating', model_id: 'veo-3.1-fast', model_name: 'Veo 3.1 Fast', task_id: veo, preview_status: 'none', created_at: minutesAgo(10), updated_at: minutesAgo(10) },
    { end: 'not_previewable', reason: 'generating', status: 'generating' });
  // A task the app itself completes through its fast path (an UPDATE of status and result_urls).
  add('app_fast_path_later', 'a', { type: 'photo', status: 'queued', task_id: `app-${randomUUID()}`, preview_status: 'none', created_at: minutesAgo(5), updated_at: minutesAgo(5) },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  // The old worker is still running: it has just taken this row.
  add('old_worker_running', 'a', { type: 'photo', status: 'success', result_urls: [await kieUrl(jpeg, 'jpg', 'image/jpeg')], preview_status: 'processing', updated_at: new Date() },
    { end: 'ready', column: 'preview_path', original: 'copied' });
  // Another user's public generation: the target of the anonymous asset swap.
  const bPath = `${b.id}/image/${id('public_other_user')}_${ms}.jpg`;
  add('public_other_user', 'b', { type: 'photo', status: 'success', is_public: true, original_path: bPath, asset_url: await upload(bPath, jpeg, 'image/jpeg'), preview_status: 'none' },
    { end: 'ready', column: 'preview_path', original: 'kept' });

  for (const f of rows) {
    const row = { ...f.row };
    if (typeof row.result_urls !== 'string' && row.result_urls !== undefined) row.result_urls = sql.json(row.result_urls as string[]);
    else if (typeof row.result_urls === 'string') row.result_urls = sql.json(row.result_urls);
    await sql`insert into public.generations ${sql(row)}`;
  }
}

async function rowOf(name: string) {
  const [r] = await sql<Row[]>`
    select g.*, public.preview_skip_reason(g) as skip from public.generations g where g.id = ${ids[name]}`;
  return r;
}

beforeAll(async () => {
  // KIE signs its callbacks here (the app's webhook checks the signature, also on a relayed one)
  own = await startOwnStack('lensroom', { STACK_MIGRATIONS: 'none', PREVIEW_LEASE_SECONDS: '15', KIE_WEBHOOK_HMAC_KEY: HMAC_KEY });
  sql = postgres(own.env.DB_URL, { max: 3, prepare: false, onnotice: () => {} });
  admin = createClient(own.env.API_URL, own.env.SERVICE_ROLE_KEY, { auth: { persistSession: false, autoRefreshToken: false } });
  kie = createFakeKieClient(own.env.KIE_URL);
  await sql.unsafe(readFileSync('tests/fixtures/lensroom/schema.sql', 'utf8'));
  appColumns = (await sql<{ c: string }[]>`
    select column_name::text as c from information_schema.columns
     where table_schema = 'public' and table_name = 'generations'
       and column_name not in ('preview_status', 'preview_path', 'poster_path', 'updated_at') order by ordinal_position`).map((r) => r.c);
  users.a = await createOwnUser(own.env, 'owner');
  users.b = await createOwnUser(own.env, 'other');
  app = await startAppWebhook({ dbUrl: own.env.DB_URL, hmacKey: HMAC_KEY });
  await seed();
  track(await sql<Row[]>`select * from public.generations`);
}, 300_000);

afterAll(async () => {
  await app?.close();
  await sql?.end({ timeout: 2 });
  await own?.stop();
}, 60_000);

describe('adopting the first user\'s production database', () => {
  it('before: the legacy holes are real (anon swaps a public row\'s asset, anon overwrites any file) and doctor blocks', async () => {
    const evil = 'https://evil.example/swap.jpg';
    expect(await asRole('anon', (tx) => tx`update public.generations set asset_url = ${evil} where id = ${ids.public_other_user}`)).toBe(1);
    await sql`update public.generations set asset_url = ${rows.find((r) => r.name === 'public_other_user')!.row.asset_url as string} where id = ${ids.public_other_user}`;
    const anonStorage = createClient(own.env.API_URL, own.env.ANON_KEY, { auth: { persistSession: false } }).storage.from('generations');
    expect((await anonStorage.upload(`${users.a.id}/image/planted.jpg`, new Uint8Array([1, 2, 3]), { contentType: 'image/jpeg', upsert: true })).error).toBeNull();
    await admin.storage.from('generations').remove([`${users.a.id}/image/planted.jpg`]);

    const { code, findings } = await doctor();
    expect(code).toBe(1);
    const by = (check: string) => findings.filter((f) => f.check === check);
    expect(by('policies').map((f) => f.message).join('\n')).toMatch(/"Service can update all generations"[\s\S]*"Service can manage all generation files"/);
    expect(by('policies').every((f) => f.level === 'blocking' && f.fix?.includes('npm run adopt'))).toBe(true);
    expect(by('migration-history')[0]).toMatchObject({ level: 'blocking' });
    expect(by('migration-history')[0].fix).toContain('supabase migration repair --status reverted 20240115093000 20250610120000');
    expect(by('old-worker')[0]).toMatchObject({ level: 'blocking' });
    expect(by('bucket').map((f) => f.level)).toEqual(['warning', 'warning']); // public, and a read-everything policy
    expect(by('rows').map((f) => f.message).join('\n')).toMatch(/row\(s\) have no preview_status \(NULL\)[\s\S]*processing for over an hour/);
    expect(by('migrations')[0].message).toMatch(/not applied yet/);
  });

  it('migrations: after the history repair doctor names, they apply (twice) on the drifted table; app UPDATEs keep their row counts', async () => {
    const repair = await run('node_modules/.bin/supabase', ['migration', 'repair', '--status', 'reverted', '20240115093000', '20250610120000',
      '--db-url', `${own.env.DB_URL}?sslmode=disable`], { timeout: 120_000 }).then(() => 0, (e) => e);
    expect(repair).toBe(0);
    const apply = await run('bash', ['local/db-apply.sh', '--twice'], { env: { ...process.env, DB_URL: own.env.DB_URL }, timeout: 240_000, maxBuffer: 1 << 24 })
      .then((o) => o.stdout, (e) => { throw new Error(`${e.stdout}\n${e.stderr}`); });
    expect(apply).toContain('db-apply: --twice: OK');

    // existing indexes reused: no second index leading with task_id or user_id
    const leading = await sql<{ col: string; n: number }[]>`
      select a.attname::text as col, count(*)::int as n from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
       where i.indrelid = 'public.generations'::regclass and a.attname in ('task_id', 'user_id') group by 1 order by 1`;
    expect(leading).toEqual([{ col: 'task_id', n: 1 }, { col: 'user_id', n: 3 }]);
    expect((await sql`select 1 from pg_publication_tables where pubname = 'supabase_realtime' and tablename = 'generations'`).length).toBe(1);
    expect((await sql`select 1 from information_schema.columns where table_name = 'generations' and column_name = 'model'`).length).toBe(0);
    // a project with an app: previews_only until the deploy says otherwise, and no pending sync
    expect((await sql`select mode from public.preview_settings`)[0].mode).toBe('previews_only');
    expect(await sql`select 1 from cron.job where jobname = 'kie-sync-pending'`).toHaveLength(0);

    // the app's statements as it sends them (service role): an identical UPDATE still counts its row
    const fav = ids.old_ready_photo;
    expect(await asRole('service_role', (tx) => tx`update public.generations set is_favorite = true where id = ${fav}`)).toBe(1);
    expect(await asRole('service_role', (tx) => tx`update public.generations set is_favorite = true where id = ${fav}`)).toBe(1);
    expect((await asApp((tx) => tx`update public.generations set is_favorite = true where id = ${fav} returning *`)).count).toBe(1);
    expect((await asApp((tx) => tx`update public.generations set is_public = false where user_id = ${users.a.id} and type = 'audio' returning *`)).count).toBe(1);
  }, 300_000);

  it('deploy refuses while write policies open to everybody exist and changes nothing; after the adoption step it deploys (previews-only)', async () => {
    const settings = async () => (await sql`select mode, result_columns, relay_url, expire_kie_tasks, updated_at from public.preview_settings`)[0];
    const defaults = await settings();
    expect(defaults).toMatchObject({ mode: 'previews_only', result_columns: {}, relay_url: null, expire_kie_tasks: false });
    const args = ['--only', 'mode,core,vault', '--mode', 'previews-only', '--url', own.env.API_URL, '--db-url', own.env.DB_URL,
      '--service-key', own.env.SERVICE_ROLE_KEY];
    const refused = await deno('scripts/deploy.ts', args);
    expect(refused.code, refused.out).toBe(1);
    expect(refused.out).toMatch(/refused: policy "Service can update all generations" on public\.generations lets every role/);
    expect(refused.out).toContain('policy "Service can manage all generation files" on storage.objects');
    expect(refused.out).toContain('npm run adopt');
    expect(refused.out).not.toMatch(/deploy: \[1\/3\]/); // no step ran
    expect(await sql`select 1 from vault.secrets where name = 'project_url'`).toHaveLength(0);
    expect(await settings()).toEqual(defaults);
    expect((await admin.storage.from('generations').list('_runtime')).data ?? []).toEqual([]);

    const dry = await deno('scripts/adopt.ts', ['--db-url', own.env.DB_URL, '--private-bucket', '--dry-run']);
    expect(dry.out).toContain('dry run: nothing was changed');
    expect((await sql`select 1 from pg_policies where policyname = 'Service can update all generations' and roles = '{public}'`).length).toBe(1);
    const adopt = await deno('scripts/adopt.ts', ['--db-url', own.env.DB_URL, '--private-bucket']);
    expect(adopt.code, adopt.out).toBe(0);
    expect(adopt.out).toMatch(/policy "Service can update all generations" on public.generations \(FOR UPDATE\) now applies to service_role only/);
    expect(adopt.out).toMatch(/policy "Service can manage all generation files" on storage.objects \(FOR ALL\) now applies to service_role only/);
    expect(adopt.out).toContain('bucket generations is private now');
    expect(adopt.out).toContain('dropped policy "Public read access"');
    const again = await deno('scripts/adopt.ts', ['--db-url', own.env.DB_URL, '--private-bucket']);
    expect(again.out.match(/nothing to change/g)).toHaveLength(2);

    const deploy = await deno('scripts/deploy.ts', args);
    expect(deploy.code, deploy.out).toBe(0);
    expect(await sql`select 1 from vault.secrets where name = 'project_url'`).toHaveLength(1);
    const now = await settings();
    expect(now).toMatchObject({ mode: 'previews_only', result_columns: {}, relay_url: null, expire_kie_tasks: false });
    expect((now.updated_at as Date).getTime()).toBeGreaterThan((defaults.updated_at as Date).getTime());
    expect(await sql`select 1 from cron.job where jobname = 'kie-sync-pending'`).toHaveLength(0);

    // the policy no longer lets anon in
    await expect(asRole('anon', (tx) => tx`update public.generations set asset_url = 'https://evil.example/swap.jpg' where id = ${ids.public_other_user}`))
      .resolves.toBe(0);
    // with a policy that lets everybody update (as before the adoption step), the database still refuses
    // this system's own columns; the app's columns are the app's policies' business (the reason deploy
    // refuses while such a policy exists). Every write rolled back.
    await sql`create policy "test: anyone updates" on public.generations for update using (true) with check (true)`;
    try {
      for (const [column, change] of [['preview_status', sql`preview_status = 'ready'`], ['preview_path', sql`preview_path = 'x.webp'`],
        ['poster_path', sql`poster_path = 'x.webp'`], ['preview_error', sql`preview_error = 'x'`], ['preview_error_code', sql`preview_error_code = 'X'`],
        ['preview_width', sql`preview_width = 1`], ['preview_thumbhash', sql`preview_thumbhash = 'x'`], ['animated_path', sql`animated_path = 'x'`],
        ['animated_status', sql`animated_status = 'ready'`]] as const) {
        await expect(rolledBack('anon', (tx) => tx`update public.generations set ${change} where id = ${ids.public_other_user}`), column)
          .rejects.toThrow(`generations.${column} is written by the service only`);
      }
      for (const change of [sql`is_favorite = true`, sql`status = 'failed'`, sql`asset_url = 'https://evil.example/x.jpg'`, sql`task_id = 'stolen'`, sql`preview_url = 'x'`]) {
        expect(await rolledBack('anon', (tx) => tx`update public.generations set ${change} where id = ${ids.public_other_user}`)).toBe(1);
      }
    } finally {
      await sql`drop policy "test: anyone updates" on public.generations`;
    }

    const anonStorage = createClient(own.env.API_URL, own.env.ANON_KEY, { auth: { persistSession: false } }).storage.from('generations');
    expect((await anonStorage.upload(`${users.a.id}/image/planted.jpg`, new Uint8Array([1, 2, 3]), { contentType: 'image/jpeg', upsert: true })).error).not.toBeNull();
    const publicUrl = rows.find((r) => r.name === 'full_sync_null_status')!.row.asset_url as string;
    expect((await fetch(publicUrl)).status).not.toBe(200);
    expect((await anonStorage.download(rows.find((r) => r.name === 'full_sync_null_status')!.row.original_path as string)).error).not.toBeNull();
  }, 300_000);

  it('previews_only: the backfill, the app\'s own fast path and the sweep bring every row to its stated end state; the app\'s tasks stay the app\'s', async () => {
    const backfill = await deno('scripts/backfill-previews.ts', ['--concurrency=2'], {
      SUPABASE_URL: own.env.API_URL, SUPABASE_SERVICE_ROLE_KEY: own.env.SERVICE_ROLE_KEY, SUPABASE_DB_URL: own.env.DB_URL,
    });
    expect(backfill.code, backfill.out).toBe(1); // the broken asset failed, with its reason
    expect(backfill.out).toMatch(/✗ photo \S+ failed (UNSUPPORTED_FORMAT|DECODE_FAILED)/);

    // the app completes a task through its fast path: one row updated, and the trigger queues the preview
    const url = await kieUrl(media.jpeg, 'jpg', 'image/jpeg');
    expect((await asApp((tx) => tx`
      update public.generations set status = 'success', result_urls = ${sql.json([url])} where id = ${ids.app_fast_path_later} returning *`)).count).toBe(1);
    // what pg_cron would run each minute for KIE: nothing in previews_only (the job is not even scheduled)
    expect((await sql`select public.cron_kie_sync_pending() as r`)[0].r).toBeNull();
    // the old worker's fresh claim is left to it for a lease (counted from the row's last write); after
    // that the backfill adopts the row (back to none with a job of ours): the sweep queues only rows
    // waiting for a preview, never an earlier system's processing ones
    const lapsed = await waitFor('the old worker\'s lease to lapse', async () =>
      (await sql<{ status: string }[]>`
        select g.preview_status as status from public.generations g
         where id = ${ids.old_worker_running}
           and (g.preview_status = 'ready' or (g.preview_status = 'processing' and g.updated_at + public.preview_lease() < now()))`)[0], 60_000, 1000);
    if (lapsed.status === 'processing') {
      const again = await deno('scripts/backfill-previews.ts', ['--concurrency=2'], {
        SUPABASE_URL: own.env.API_URL, SUPABASE_SERVICE_ROLE_KEY: own.env.SERVICE_ROLE_KEY, SUPABASE_DB_URL: own.env.DB_URL,
      });
      expect(again.code, again.out).toBe(0);
      expect(again.out).toContain(`📸 Queuing photo preview for ${ids.old_worker_running}`);
      expect(again.out).not.toContain(ids.old_ready_photo);
    } else {
      expect(backfill.out).toContain(`📸 Queuing photo preview for ${ids.old_worker_running}`); // it had lapsed already
    }
    // what pg_cron runs each minute: dead workers' jobs, rows waiting without a job, wakes
    await sql`select public.preview_sweep()`;

    await waitFor('every previewable row to settle', async () => {
      const [r] = await sql<{ n: number }[]>`
        select count(*)::int as n from public.generations g
         where public.has_previewable_asset(g) and coalesce(g.preview_status, 'none') not in ('ready', 'failed')`;
      return r.n === 0;
    }, 120_000, 1000);

    for (const f of rows) {
      const r = await rowOf(f.name);
      const e = f.expect;
      const label = `${f.name}: ${JSON.stringify({ status: r.status, preview_status: r.preview_status, code: r.preview_error_code, error: r.error, skip: r.skip })}`;
      if (e.end === 'ready') {
        expect(r.preview_status, label).toBe('ready');
        const path = r[e.column] as string;
        expect(path, label).toBe(`${f.row.user_id}/${e.column === 'poster_path' ? 'posters' : 'previews'}/${f.row.id}_${e.column === 'poster_path' ? 'poster' : 'preview'}.webp`);
        const { data } = await admin.storage.from('generations').download(path);
        const meta = await sharp(new Uint8Array(await data!.arrayBuffer())).metadata();
        expect(meta.format, label).toBe('webp');
        expect(Math.max(meta.width!, meta.height!), label).toBeLessThanOrEqual(512);
        if (e.original === 'kept') expect(r.original_path, label).toBe(f.row.original_path);
        if (e.original === 'copied') {
          expect(r.original_path, label).toMatch(new RegExp(`^${f.row.user_id}/originals/${f.row.id}\\.(jpg|png|mp4|mp3)$`));
          expect((await admin.storage.from('generations').download(r.original_path as string)).error, label).toBeNull();
        }
        // asset_url is the app's: left as it was
        expect(r.asset_url ?? null, label).toBe((f.row.asset_url as string | undefined) ?? null);
      } else if (e.end === 'untouched') {
        for (const k of ['preview_status', 'preview_path', 'poster_path', 'original_path']) expect(r[k] ?? null, `${label} ${k}`).toBe(f.row[k] ?? null);
      } else if (e.end === 'failed') {
        expect(r.preview_status, label).toBe('failed');
        expect(e.codes, label).toContain(r.preview_error_code);
        // the reason is this system's (preview_error); the app's `error` is left as it was
        expect(String(r.preview_error ?? ''), label).not.toBe('');
        expect(r.error ?? null, label).toBe((f.row.error as string | undefined) ?? null);
        // terminal: its job is kept failed with the same code and text, never retried
        const jobs = await sql<{ state: string; code: string; error: string }[]>`
          select state, last_error_code as code, last_error as error from public.preview_jobs where generation_id = ${ids[f.name]} and kind = 'preview'`;
        expect(jobs, label).toEqual([{ state: 'failed', code: r.preview_error_code, error: r.preview_error }]);
      } else {
        expect(r.skip, label).toBe(e.reason);
        if (e.status) expect(r.status, label).toBe(e.status);
        if (e.error) expect(String(r.error), label).toMatch(e.error);
      }
    }

    // nothing is invisible: the coverage view counts every row once
    const [{ total }] = await sql<{ total: number }[]>`select sum(total)::int as total from public.preview_coverage`;
    expect(total).toBe(rows.length);
    const notPreviewable = await sql<{ reason: string; total: number }[]>`
      select reason, sum(total)::int as total from public.preview_coverage where state = 'not_previewable' group by 1 order by 1`;
    expect(notPreviewable).toEqual([
      { reason: 'cancelled', total: 2 }, { reason: 'generating', total: 2 },
      { reason: 'generation_failed', total: 1 }, { reason: 'no_source', total: 1 },
    ]);
  }, 300_000);

  const viaApp: AppTask[] = [];
  it('previews_only: tasks the app\'s own webhook completes are previewed; the app\'s writes are the only ones in its columns', async () => {
    viaApp.push(
      await appTask('app_webhook_photo', { kind: 'photo', callBackUrl: app.url }),
      await appTask('app_webhook_video', { kind: 'video', callBackUrl: app.url, cover: true }),
      await appTask('app_webhook_failed', { kind: 'photo', callBackUrl: app.url, fake: { state: 'fail', failMsg: 'content policy' } }),
    );
    for (const t of viaApp) await release(t);
    for (const t of viaApp) {
      const [callback] = await kieCallbacks(t, 1);
      expect(callback.status, t.name).toBe(200);
      expect(callback.signed, t.name).toBe(true);
      const [delivery] = app.processed(t.taskId);
      expect(delivery?.signatureValid, t.name).toBe(true);
      track([delivery.row!]);
      // the app wrote what its webhook writes for that body
      const want = appWriteForCallback(callback.body, t.before as AppRowBefore, delivery.row!.completed_at as Date)!;
      for (const [k, v] of Object.entries(want.columns)) expect(delivery.row![k] ?? null, `${t.name} ${k}`).toEqual(v ?? null);
    }
    const [photo, video, failed] = await Promise.all(viaApp.map((t) => settled(t.name)));
    expect(photo).toMatchObject({ status: 'success', preview_status: 'ready', preview_path: `${users.a.id}/previews/${ids.app_webhook_photo}_preview.webp` });
    expect(video).toMatchObject({ status: 'success', preview_status: 'ready', poster_path: `${users.a.id}/posters/${ids.app_webhook_video}_poster.webp` });
    expect(video.thumbnail_url).toMatch(/lensroom-cover\.jpg$/);
    expect(failed).toMatchObject({ status: 'failed', skip: 'generation_failed', preview_status: 'none' });
    expect(failed.error).toMatch(/content policy/);
    await expectAppColumnsAsWritten(viaApp.map((t) => t.id));
    const credits = await sql`select task_id, kind, stars from public.app_credit_events where task_id = any(${viaApp.map((t) => t.taskId)}::text[]) order by id`;
    expect(credits.map((c) => [c.task_id, c.kind, c.stars]).sort()).toEqual([
      [viaApp[0].taskId, 'charge', 4], [viaApp[1].taskId, 'charge', 30], [viaApp[2].taskId, 'refund', 4],
    ].sort());
  }, 180_000);

  it('previews_only: kie-callback and kie-sync answer 409 PREVIEWS_ONLY and change no row', async () => {
    const veoTask = rows.find((r) => r.name === 'veo_callback_lost')!.row.task_id as string;
    const url = (await kie.getTask(veoTask)).resultUrls[0];
    const before = await rowOf('veo_callback_lost');
    const body = { code: 200, msg: 'Veo3.1 video generated successfully.', data: { taskId: veoTask, info: { resultUrls: [url], originUrls: [url], resolution: '1080p' }, fallbackFlag: false } };
    const res = await fetch(ourCallbackUrl(), {
      method: 'POST', headers: { 'content-type': 'application/json', ...await kieSignature(veoTask) }, body: JSON.stringify(body),
    });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ error: 'PREVIEWS_ONLY' });
    const service = { apikey: own.env.SERVICE_ROLE_KEY, authorization: `Bearer ${own.env.SERVICE_ROLE_KEY}`, 'content-type': 'application/json' };
    for (const payload of [{ taskId: veoTask }, { mode: 'pending' }]) {
      const sync = await fetch(`${own.env.API_URL}/functions/v1/kie-sync`, { method: 'POST', headers: service, body: JSON.stringify(payload) });
      expect(sync.status, JSON.stringify(payload)).toBe(409);
      expect(await sync.json()).toMatchObject({ error: 'PREVIEWS_ONLY' });
    }
    expect(await rowOf('veo_callback_lost')).toEqual(before);
    expect(await sql`select 1 from public.preview_jobs where generation_id = ${ids.veo_callback_lost}`).toHaveLength(0);
    // and the database itself refuses the write, whoever asks
    await expect(sql`select * from public.apply_kie_result(${veoTask}, 'success', ${sql.json([url])}, null, null)`).rejects.toMatchObject({ code: '55000' });
  });

  it('previews_only: a signed-in user writes the app\'s columns of their own row (and inserts tasks), never this system\'s', async () => {
    const id = ids.client_row = randomUUID();
    await asApp((tx) => tx`insert into public.generations ${tx({
      id, user_id: users.a.id, type: 'photo', status: 'generating', model_id: 'nano-banana', model_name: 'Nano Banana', prompt: 'client row', task_id: `client-${randomUUID()}`,
    })} returning *`);
    const url = await kieUrl(media.png, 'png', 'image/png');
    for (const change of [sql`status = 'success'`, sql`asset_url = ${url}`, sql`model_id = 'nano-banana-pro'`, sql`result_urls = ${sql.json([url])}`,
      sql`preview_url = 'https://lensroom.example/p/legacy.jpg'`]) {
      expect((await asUser('a', (tx) => tx`update public.generations set ${change} where id = ${id} returning *`)).count).toBe(1);
    }
    for (const [column, change] of [['preview_status', sql`preview_status = 'ready'`], ['poster_path', sql`poster_path = 'x.webp'`]] as const) {
      await expect(asUser('a', (tx) => tx`update public.generations set ${change} where id = ${id} returning *`), column)
        .rejects.toMatchObject({ code: '42501', message: `generations.${column} is written by the service only` });
    }
    // another user's row is not theirs (the app's owner policy)
    expect((await asUser('b', (tx) => tx`update public.generations set status = 'failed' where id = ${id} returning *`)).count).toBe(0);
    // the app's clients insert their tasks: task id and a success status included
    const inserted = ids.client_insert = randomUUID();
    expect((await asUser('a', (tx) => tx`insert into public.generations ${tx({
      id: inserted, user_id: users.a.id, type: 'photo', status: 'success', model_id: 'nano-banana', model_name: 'Nano Banana', prompt: 'client insert', task_id: `client-${randomUUID()}`,
    })} returning *`)).count).toBe(1);
    // what the user pointed their own row at is previewed for them (an untrusted source, fetched as one)
    expect(await settled('client_row')).toMatchObject({ status: 'success', preview_status: 'ready', preview_path: `${users.a.id}/previews/${id}_preview.webp` });
    expect((await rowOf('client_insert')).skip).toBe('no_source');
    await expectAppColumnsAsWritten([id, inserted]);
  }, 120_000);

  it('previews_only: no app column or task status changed but by the app; doctor shows the mode, the client writes and the expiry it leaves off', async () => {
    await expectAppColumnsAsWritten([...appState.keys()]);
    expect(appState.size).toBe(rows.length + viaApp.length + 2);
    // the app's webhook processed one callback per task, with its side effect each
    expect(app.deliveries.map((d) => d.taskId).sort()).toEqual(viaApp.map((t) => t.taskId).sort());
    expect((await sql`select count(*)::int as n from public.app_credit_events`)[0].n).toBe(viaApp.length);

    const { code, findings } = await doctor();
    expect(findings.filter((f) => f.level === 'blocking'), JSON.stringify(findings, null, 1)).toEqual([]);
    expect(code).toBe(0);
    const by = (check: string) => findings.filter((f) => f.check === check);
    expect(by('mode')).toHaveLength(1);
    expect(by('mode')[0]).toMatchObject({ level: 'info' });
    expect(by('mode')[0].message).toMatch(/^previews_only: /);
    expect(by('client-writes').find((f) => f.message.includes('"Users can update own generations"'))).toMatchObject({ level: 'info' });
    expect(by('expiry')).toEqual([expect.objectContaining({ level: 'info', message: expect.stringMatching(/^1 task\(s\) are still running past KIE's 14 days: left as they are \(expiry is off\)/) })]);
    expect((await sql`select public.kie_tasks_past_retention() as n`)[0].n).toBe(1);
    expect((await rowOf('month_old_task')).status).toBe('generating');
    expect(await sql`select 1 from cron.job where jobname = 'kie-sync-pending'`).toHaveLength(0);
    expect(by('cron').filter((f) => f.message.includes('missing')), 'no cron job counts as missing').toEqual([]);
  }, 120_000);

  const owned: Record<string, AppTask> = {};
  it('kie_owner: KIE\'s callbacks come to kie-callback and fill the app\'s columns exactly as its own webhook would', async () => {
    const deploy = await deployMode('kie-owner');
    expect(deploy.code, deploy.out).toBe(0);
    expect((await sql`select mode, result_columns, relay_url, expire_kie_tasks from public.preview_settings`)[0]).toEqual({
      mode: 'kie_owner', result_columns: { urls: 'results', first_url: 'result_url', completed_at: 'completed_at', thumbnail_url: 'thumbnail_url' },
      relay_url: null, expire_kie_tasks: false,
    });
    expect(await sql`select 1 from cron.job where jobname = 'kie-sync-pending'`).toHaveLength(1);

    const since = new Date();
    owned.photo = await appTask('owner_photo', { kind: 'photo', callBackUrl: ourCallbackUrl() });
    owned.video = await appTask('owner_video', { kind: 'video', callBackUrl: ourCallbackUrl(), cover: true });
    for (const t of [owned.photo, owned.video]) await release(t);
    for (const t of [owned.photo, owned.video]) {
      const [callback] = await kieCallbacks(t, 1);
      expect(callback.status, `${t.name}: ${JSON.stringify(callback.response)}`).toBe(200);
      const r = await settled(t.name);
      expect(r, t.name).toMatchObject({ status: 'success', preview_status: 'ready' });
      expectAsAppWrites(r, t.before, parseKieCallback(callback.body), since);
      // and through the pure function the app's webhook runs on a body
      const want = appWriteForCallback(callback.body, t.before as AppRowBefore, r.completed_at as Date)!;
      expect(pickApp(r)).toMatchObject(Object.fromEntries(Object.entries(want.columns).map(([k, v]) => [k, v ?? null])));
      // relaying is off: the app's webhook heard nothing
      expect(app.requests(t.taskId), t.name).toEqual([]);
      expect(await sql`select 1 from public.kie_callback_relays where task_id = ${t.taskId}`).toHaveLength(0);
    }
    const photo = await rowOf('owner_photo');
    expect(photo.thumbnail_url).toBe((photo.results as string[])[0]); // an image without a cover: its first URL
    expect(photo.preview_path).toBe(`${users.a.id}/previews/${ids.owner_photo}_preview.webp`);
    const video = await rowOf('owner_video');
    expect(video.thumbnail_url).toMatch(/lensroom-cover\.jpg$/); // KIE's cover
    expect(video.thumbnail_url).not.toBe(video.result_url);
    expect(video.poster_path).toBe(`${users.a.id}/posters/${ids.owner_video}_poster.webp`);
  }, 180_000);

  it('kie_owner with the relay and expiry: the pending sync fills the lost Veo task and fails the month-old one, each relayed to the app once', async () => {
    const deploy = await deployMode('kie-owner', ['--relay-url', app.url, '--expire-kie-tasks']);
    expect(deploy.code, deploy.out).toBe(0);
    expect((await sql`select relay_url, expire_kie_tasks from public.preview_settings`)[0]).toEqual({ relay_url: app.url, expire_kie_tasks: true });

    const since = new Date();
    const veoBefore = appState.get(ids.veo_callback_lost)!;
    const monthBefore = appState.get(ids.month_old_task)!;
    expect(veoBefore).toMatchObject({ status: 'generating', completed_at: null, results: null, result_url: null, thumbnail_url: null });
    // what pg_cron runs each minute (it may have run already)
    await sql`select public.cron_kie_sync_pending()`;
    const month = await waitFor('the month-old task to expire', async () => {
      const r = await rowOf('month_old_task');
      return r.status === 'failed' ? r : null;
    }, 90_000, 1000);
    expect(month.skip).toBe('generation_failed');
    expect(month.error).toMatch(/^KIE task expired: no result within 14 days/);
    expect(month.completed_at).toBeInstanceOf(Date);
    expect((month.completed_at as Date).getTime()).toBeGreaterThanOrEqual(since.getTime() - 2000);
    const monthRest = (x: Row) => ({ ...pickApp(x), status: null, error: null, completed_at: null });
    expect(monthRest(month)).toEqual(monthRest(monthBefore)); // results, result_url, thumbnail_url untouched

    const veo = await settled('veo_callback_lost', 120_000);
    expect(veo).toMatchObject({ status: 'success', preview_status: 'ready', poster_path: `${users.a.id}/posters/${ids.veo_callback_lost}_poster.webp` });
    expect(veo.original_path).toMatch(new RegExp(`^${users.a.id}/originals/${ids.veo_callback_lost}\\.mp4$`));
    const veoTask = veoBefore.task_id as string;
    expectAsAppWrites(veo, veoBefore, await recordInfo('veo', veoTask), new Date(0));
    // no callback carried these results, yet the app's webhook hears of both, once, as KIE's jobs
    // API would have called back: it charges the synced task and refunds the expired one
    for (const [name, taskId, source, credit] of [
      ['veo_callback_lost', veoTask, 'sync', 'charge'],
      ['month_old_task', monthBefore.task_id as string, 'expiry', 'refund'],
    ] as const) {
      await waitFor(`the relay of ${name}`, async () =>
        (await sql`select 1 from public.kie_callback_relays where task_id = ${taskId} and delivered_at is not null`).length === 1, 60_000, 250);
      const deliveries = app.requests(taskId);
      expect(deliveries.map((d) => [d.status, d.processed]), name).toEqual([[200, true]]);
      expect(deliveries[0].headers['x-preview-relay-source'], name).toBe(source);
      expect(deliveries[0].signatureValid, name).toBe(true);
      expect((await sql`select kind from public.app_credit_events where task_id = ${taskId}`).map((c) => c.kind), name).toEqual([credit]);
      track([deliveries[0].row!]);
    }
    // the app's own write of the relayed result agrees with ours
    expectAsAppWrites(await rowOf('veo_callback_lost'), veoBefore, await recordInfo('veo', veoTask), new Date(0));
    expect(await sql`select public.kie_tasks_past_retention() as n`).toEqual([{ n: 0 }]);
  }, 240_000);

  it('kie_owner: each accepted callback, delivered by KIE several times, reaches the app\'s webhook exactly once', async () => {
    const since = new Date();
    const ok = await appTask('relayed_photo', { kind: 'photo', callBackUrl: ourCallbackUrl(), fake: { callback: 'concurrent' } });
    // a row whose completion time the app had set already: kept (on a failure too)
    const failed = await appTask('relayed_failure', {
      kind: 'video', callBackUrl: ourCallbackUrl(), fake: { state: 'fail', callback: 'twice', failMsg: 'Your prompt was flagged' }, completedAt: minutesAgo(1),
    });
    await release(ok);
    await release(failed);
    await kieCallbacks(ok, 2);
    await kie.sendCallback(ok.taskId); // KIE's redelivery, later
    await kie.sendCallback(failed.taskId);
    for (const [t, n] of [[ok, 3], [failed, 3]] as const) {
      const callbacks = await kieCallbacks(t, n);
      expect(callbacks.map((c) => c.status), t.name).toEqual(Array(n).fill(200));
      expect(new Set(callbacks.map((c) => JSON.stringify(c.body))).size, t.name).toBe(1); // one body, redelivered
      const relay = await waitFor(`the relay of ${t.name}`, async () =>
        (await sql<Row[]>`select * from public.kie_callback_relays where task_id = ${t.taskId} and delivered_at is not null`)[0], 60_000, 250);
      expect(relay).toMatchObject({ generation_id: t.id, response_status: 200, body: callbacks[0].body });
      // no relay job is left for it: nothing more can be sent
      expect(await sql`select state from public.preview_jobs where kind = 'relay' and payload ->> 'task_id' = ${t.taskId}`).toEqual([]);
      const deliveries = app.requests(t.taskId);
      expect(deliveries.map((d) => [d.status, d.processed]), t.name).toEqual([[200, true]]);
      const [d] = deliveries;
      expect(d.headers['x-preview-relay'], t.name).toBe('1');
      expect(d.body, t.name).toEqual(callbacks[0].body);
      // signed at send time with the project's webhook key, so the app's own check holds
      expect(d.signatureValid, t.name).toBe(true);
      track([d.row!]);
    }
    await sql`select public.preview_sweep()`; // a wake for anything left: there is nothing
    const credits = await sql`select task_id, kind from public.app_credit_events where task_id = any(${[ok.taskId, failed.taskId]}::text[]) order by id`;
    expect(credits.map((c) => [c.task_id, c.kind]).sort()).toEqual([[ok.taskId, 'charge'], [failed.taskId, 'refund']].sort());

    // our write, and the app's own write of the relayed body after it, agree with the app's webhook
    const okRow = await settled(ok.name);
    expect(okRow).toMatchObject({ status: 'success', preview_status: 'ready' });
    expectAsAppWrites(okRow, ok.before, parseKieCallback((await kie.getTask(ok.taskId)).callbacks[0].body), since);
    const failedRow = await rowOf(failed.name);
    expect(failedRow).toMatchObject({ status: 'failed', skip: 'generation_failed' });
    expect(failedRow.error).toMatch(/Your prompt was flagged/);
    expect(failedRow.completed_at).toEqual(failed.before.completed_at);
    expectAsAppWrites(failedRow, failed.before, parseKieCallback((await kie.getTask(failed.taskId)).callbacks[0].body), since);
    expect(app.requests(ok.taskId)).toHaveLength(1);
    expect(app.requests(failed.taskId)).toHaveLength(1);
  }, 180_000);

  it('kie_owner: a relay the app answers 500 is retried and delivered once', async () => {
    const t = await appTask('relayed_after_500', { kind: 'photo', callBackUrl: ourCallbackUrl() });
    app.failNext(1);
    await release(t);
    const [callback] = await kieCallbacks(t, 1);
    expect(callback.status).toBe(200);
    // the first attempt is answered 500: the job waits for its retry, with the reason
    const job = await waitFor('the relay to fail once', async () =>
      (await sql<Row[]>`select state, attempts, last_error_code from public.preview_jobs where kind = 'relay' and payload ->> 'task_id' = ${t.taskId}`)
        .find((j) => j.attempts === 1 && j.state === 'queued'), 60_000, 250);
    expect(job).toMatchObject({ last_error_code: 'RELAY_FAILED' });
    expect(app.requests(t.taskId).map((d) => [d.status, d.processed])).toEqual([[500, false]]);
    // the retry comes after the backoff, with the minute sweep's wake (run here while waiting)
    const relay = await waitFor('the relay to be delivered', async () => {
      await sql`select public.preview_sweep()`;
      return (await sql<Row[]>`select * from public.kie_callback_relays where task_id = ${t.taskId} and delivered_at is not null`)[0];
    }, 150_000, 3000);
    expect(relay).toMatchObject({ response_status: 200, body: callback.body });
    expect(await sql`select 1 from public.preview_jobs where kind = 'relay' and payload ->> 'task_id' = ${t.taskId}`).toHaveLength(0);
    const deliveries = app.requests(t.taskId);
    expect(deliveries.map((d) => [d.status, d.processed])).toEqual([[500, false], [200, true]]);
    expect(deliveries.every((d) => d.headers['x-preview-relay'] === '1' && d.signatureValid !== false)).toBe(true);
    track([deliveries[1].row!]);
    expect((await sql`select kind from public.app_credit_events where task_id = ${t.taskId}`).map((c) => c.kind)).toEqual(['charge']);
  }, 240_000);

  it('kie_owner: a client may no longer set task_id; the rest of its writes are as before', async () => {
    await expect(asUser('a', (tx) => tx`update public.generations set task_id = 'stolen' where id = ${ids.client_row} returning *`))
      .rejects.toMatchObject({ code: '42501', message: 'generations.task_id is written by the service only (kie_owner mode)' });
    await expect(asUser('a', (tx) => tx`insert into public.generations ${tx({
      user_id: users.a.id, type: 'photo', status: 'generating', model_id: 'nano-banana', model_name: 'Nano Banana', prompt: 'x', task_id: `client-${randomUUID()}`,
    })} returning *`)).rejects.toMatchObject({ code: '42501' });
    expect((await asUser('a', (tx) => tx`update public.generations set is_favorite = true, preview_url = null where id = ${ids.client_row} returning *`)).count).toBe(1);
    // and the app's columns of every row are still what the app (or, for its tasks, this system
    // in its place) wrote: the kie_owner tasks were tracked from their rows as checked above
    for (const name of ['owner_photo', 'owner_video', 'veo_callback_lost', 'month_old_task', 'relayed_photo', 'relayed_failure', 'relayed_after_500']) {
      track([await rowOf(name)]);
    }
    await expectAppColumnsAsWritten([...appState.keys()]);
  });

  it('the library returns only the caller\'s rows, with signed URLs that serve from the private bucket', async () => {
    const res = await fetch(`${own.env.API_URL}/functions/v1/library?limit=50`, {
      headers: { apikey: own.env.ANON_KEY, authorization: `Bearer ${users.b.accessToken}` },
    });
    expect(res.status).toBe(200);
    const page = await res.json() as { items: { id: string; previewUrl: string | null; originalUrl: string | null }[] };
    expect(page.items.map((i) => i.id)).toEqual([ids.public_other_user]);
    expect((await fetch(page.items[0].previewUrl!)).status).toBe(200);
    expect((await fetch(page.items[0].originalUrl!)).status).toBe(200);

    const mine = await fetch(`${own.env.API_URL}/functions/v1/library?limit=50`, {
      headers: { apikey: own.env.ANON_KEY, authorization: `Bearer ${users.a.accessToken}` },
    }).then((r) => r.json()) as { items: { id: string; type: string; previewUrl: string | null }[] };
    expect(mine.items.some((i) => i.id === ids.public_other_user)).toBe(false);
    expect(mine.items.find((i) => i.id === ids.product_shot)?.previewUrl).toMatch(/\/storage\/v1\/object\/sign\//);
    expect(mine.items.find((i) => i.id === ids.audio)?.previewUrl).toMatch(/\/storage\/v1\/object\/sign\//);
  });

  it('doctor after the adoption steps: nothing blocking, the mode as configured', async () => {
    const { code, findings } = await doctor();
    expect(findings.filter((f) => f.level !== 'info'), JSON.stringify(findings, null, 1)).toEqual([]);
    expect(code).toBe(0);
    expect(findings.find((f) => f.check === 'backfill')).toBeUndefined();
    expect(findings.filter((f) => f.check === 'coverage').map((f) => f.message).filter((m) => m.includes('audio'))).toEqual([]);
    const [mode] = findings.filter((f) => f.check === 'mode');
    expect(mode.message).toBe(`kie_owner: KIE's callbacks come to kie-callback; the app's result columns: urls → results, first_url → result_url, completed_at → completed_at, thumbnail_url → thumbnail_url; relay to the app's webhook: ${new URL(app.url).host}; expiry of tasks past 14 days: on`);
    expect(findings.filter((f) => f.check === 'expiry')).toEqual([]); // the month-old task is failed now
  });

  it('doctor reports an index left INVALID by an interrupted concurrent build, with the statements that rebuild it', async () => {
    await sql`create unique index concurrently generations_doctor_probe_idx on public.generations (type)`.catch(() => {});
    try {
      const { code, findings } = await doctor();
      expect(code).toBe(1);
      const f = findings.find((x) => x.check === 'indexes');
      expect(f?.message).toContain('generations_doctor_probe_idx is INVALID');
      expect(f?.fix).toBe('drop index concurrently generations_doctor_probe_idx; CREATE UNIQUE INDEX CONCURRENTLY generations_doctor_probe_idx ON public.generations USING btree (type);');
    } finally {
      await sql`drop index if exists public.generations_doctor_probe_idx`;
    }
  });
});
