// Adoption onto the first user's production shape (tests/fixtures/lensroom/schema.sql) on a
// stack of its own that starts without this system: the walk-through of the README's deploy
// section — doctor → migration history repair → migrations (twice) → core and vault → adoption
// step → backfill and the syncs → doctor — and, at the end, every fixture row in its stated
// end state. Real media in storage and at the fake KIE, real renders.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import postgres from 'postgres';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient, type FakeKieClient } from '../../local/fake-kie-client.ts';
import { encodePhoto, photoPng, read, videoMp4 } from '../fixtures/media.ts';
import { createOwnUser, type OwnStack, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MEDIA = join(process.cwd(), '.local', 'e2e-media');
const run = promisify(execFile);

let own: OwnStack;
let sql: postgres.Sql;
let admin: SupabaseClient;
let kie: FakeKieClient;
const users: Record<'a' | 'b', { id: string; accessToken: string }> = {} as never;

/** Every fixture row, by name, with the end state it must reach. */
type Expect =
  | { end: 'ready'; column: 'preview_path' | 'poster_path'; original?: 'kept' | 'copied'; syncedByUs?: true }
  | { end: 'untouched' }
  | { end: 'failed'; codes: string[] }
  | { end: 'not_previewable'; reason: string; status?: string; error?: RegExp };
type Fixture = { name: string; user: 'a' | 'b'; row: Record<string, unknown>; expect: Expect };
const rows: Fixture[] = [];
const ids: Record<string, string> = {};

async function deno(script: string, args: string[], env: Record<string, string> = {}) {
  const r = await run('bash', ['scripts/run-deno.sh', script, ...args], { timeout: 180_000, maxBuffer: 1 << 24, env: { ...process.env, NO_COLOR: '1', ...env } })
    .then((o) => ({ ...o, code: 0 }), (e) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? String(e), code: e.code as number }));
  return { code: r.code, out: `${r.stdout}${r.stderr}` };
}

async function doctor() {
  const r = await deno('scripts/doctor.ts', ['--db-url', own.env.DB_URL, '--json']);
  const parsed = JSON.parse(r.out.slice(r.out.indexOf('{'))) as { findings: { level: string; check: string; message: string; fix?: string }[] };
  return { code: r.code, findings: parsed.findings };
}

/** An UPDATE the way the app sends it (PostgREST: a role and its claims in one transaction); returns the row count. */
async function asRole(role: 'anon' | 'service_role', statement: (tx: postgres.TransactionSql) => Promise<postgres.RowList<postgres.Row[]>>) {
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', ${role}, true), set_config('request.jwt.claims', ${JSON.stringify({ role })}, true)`;
    return (await statement(tx)).count;
  });
}

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

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);

async function seed() {
  const jpeg = read(await encodePhoto(photoPng(MEDIA, 800, 600), 'jpeg', join(MEDIA, 'lensroom.jpg')));
  const png = read(await encodePhoto(photoPng(MEDIA, 640, 640, { seed: 3 }), 'png', join(MEDIA, 'lensroom.png')));
  const mp4 = read(videoMp4(MEDIA, 640, 360, 2, { fade: 0.3 }));
  const webp = new Uint8Array(await sharp(jpeg).resize(256).webp().toBuffer());
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
  add('audio', 'a', { type: 'audio', status: 'success', model_id: 'suno-v4', result_url: 'https://tempfile.aiquickdraw.com/s/track.mp3', preview_status: 'none' }, { end: 'not_previewable', reason: 'audio' });
  add('cancelled', 'a', { type: 'photo', status: 'cancelled', task_id: 'dup-task', preview_status: 'none' }, { end: 'not_previewable', reason: 'cancelled' });
  add('cancelled_same_task', 'a', { type: 'photo', status: 'cancelled', task_id: 'dup-task', preview_status: 'none', created_at: minutesAgo(60 * 24 * 2) }, { end: 'not_previewable', reason: 'cancelled' });
  add('generation_failed', 'a', { type: 'video', status: 'failed', error: 'Generation failed: content policy', preview_status: 'none' }, { end: 'not_previewable', reason: 'generation_failed' });
  // Still generating at KIE's side a month later: finished as failed, never polled for ever.
  await kie.putFile('lensroom.mp4', mp4, 'video/mp4');
  const monthOld = await kie.createTask('veo', { model: 'veo3_fast', callBackUrl: null, fixture: 'lensroom.mp4', fake: { callback: 'never', stayPending: true } });
  add('month_old_task', 'a', { type: 'video', status: 'generating', model_id: 'veo-3.1-fast', task_id: monthOld, preview_status: null, created_at: minutesAgo(60 * 24 * 30), updated_at: minutesAgo(60 * 24 * 30) },
    { end: 'not_previewable', reason: 'generation_failed', status: 'failed', error: /KIE task expired/ });
  // A Veo task whose callback was lost: the family comes from model_id (there is no `model`).
  const veo = await kie.createTask('veo', { model: 'veo3_fast', callBackUrl: null, fixture: 'lensroom.mp4', fake: { callback: 'never' } });
  add('veo_callback_lost', 'a', { type: 'video', status: 'generating', model_id: 'veo-3.1-fast', model_name: 'Veo 3.1 Fast', task_id: veo, preview_status: 'none', created_at: minutesAgo(10), updated_at: minutesAgo(10) },
    { end: 'ready', column: 'poster_path', original: 'copied', syncedByUs: true });
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
  const [r] = await sql<Record<string, unknown>[]>`
    select g.*, public.preview_skip_reason(g) as skip from public.generations g where g.id = ${ids[name]}`;
  return r;
}

beforeAll(async () => {
  own = await startOwnStack('lensroom', { STACK_MIGRATIONS: 'none', PREVIEW_LEASE_SECONDS: '15', KIE_WEBHOOK_HMAC_KEY: '' });
  sql = postgres(own.env.DB_URL, { max: 3, prepare: false, onnotice: () => {} });
  admin = createClient(own.env.API_URL, own.env.SERVICE_ROLE_KEY, { auth: { persistSession: false, autoRefreshToken: false } });
  kie = createFakeKieClient(own.env.KIE_URL);
  await sql.unsafe(readFileSync('tests/fixtures/lensroom/schema.sql', 'utf8'));
  users.a = await createOwnUser(own.env, 'owner');
  users.b = await createOwnUser(own.env, 'other');
  await seed();
}, 300_000);

afterAll(async () => {
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

    // the app's statements as it sends them (service role): an identical UPDATE still counts its row
    const fav = ids.old_ready_photo;
    expect(await asRole('service_role', (tx) => tx`update public.generations set is_favorite = true where id = ${fav}`)).toBe(1);
    expect(await asRole('service_role', (tx) => tx`update public.generations set is_favorite = true where id = ${fav}`)).toBe(1);
    expect(await asRole('service_role', (tx) => tx`update public.generations set is_favorite = true where id = ${fav} returning *`)).toBe(1);
    expect(await asRole('service_role', (tx) => tx`update public.generations set is_public = false where user_id = ${users.a.id} and type = 'audio'`)).toBe(1);
  }, 300_000);

  it('deploy\'s core and vault steps, then the adoption step: the anonymous swap and file writes are refused, the bucket is private', async () => {
    const deploy = await deno('scripts/deploy.ts', ['--only', 'core,vault', '--url', own.env.API_URL, '--db-url', own.env.DB_URL,
      '--anon-key', own.env.ANON_KEY, '--service-key', own.env.SERVICE_ROLE_KEY]);
    expect(deploy.code, deploy.out).toBe(0);
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

    // the guard refuses it whatever the policies say; and the policy no longer lets anon in
    await expect(asRole('anon', (tx) => tx`update public.generations set asset_url = 'https://evil.example/swap.jpg' where id = ${ids.public_other_user}`))
      .resolves.toBe(0);
    // even with a policy that lets everybody update (as before the adoption step), the database refuses
    await sql`create policy "test: anyone updates" on public.generations for update using (true) with check (true)`;
    try {
      await expect(asRole('anon', (tx) => tx`update public.generations set asset_url = 'https://evil.example/swap.jpg' where id = ${ids.public_other_user}`))
        .rejects.toThrow(/generations.asset_url is written by the service only/);
      for (const [column, change] of [['result_urls', sql`result_urls = '["https://evil.example/x.jpg"]'::jsonb`], ['result_url', sql`result_url = 'https://evil.example/x.jpg'`],
        ['original_path', sql`original_path = ${`${users.a.id}/image/x.jpg`}`], ['status', sql`status = 'failed'`], ['task_id', sql`task_id = 'stolen'`],
        ['model_id', sql`model_id = 'veo3'`], ['model_name', sql`model_name = 'veo3'`], ['poster_path', sql`poster_path = 'x'`], ['preview_status', sql`preview_status = 'ready'`]] as const) {
        await expect(asRole('anon', (tx) => tx`update public.generations set ${change} where id = ${ids.public_other_user}`), column)
          .rejects.toThrow(`generations.${column} is written by the service only`);
      }
      expect(await asRole('anon', (tx) => tx`update public.generations set is_favorite = true where id = ${ids.public_other_user}`)).toBe(1);
    } finally {
      await sql`drop policy "test: anyone updates" on public.generations`;
    }

    const anonStorage = createClient(own.env.API_URL, own.env.ANON_KEY, { auth: { persistSession: false } }).storage.from('generations');
    expect((await anonStorage.upload(`${users.a.id}/image/planted.jpg`, new Uint8Array([1, 2, 3]), { contentType: 'image/jpeg', upsert: true })).error).not.toBeNull();
    const publicUrl = rows.find((r) => r.name === 'full_sync_null_status')!.row.asset_url as string;
    expect((await fetch(publicUrl)).status).not.toBe(200);
    expect((await anonStorage.download(rows.find((r) => r.name === 'full_sync_null_status')!.row.original_path as string)).error).not.toBeNull();
  }, 180_000);

  it('the backfill, the app\'s own fast path, the pending KIE sync and the sweep bring every row to its stated end state', async () => {
    const backfill = await deno('scripts/backfill-previews.ts', ['--concurrency=2'], {
      SUPABASE_URL: own.env.API_URL, SUPABASE_SERVICE_ROLE_KEY: own.env.SERVICE_ROLE_KEY, SUPABASE_DB_URL: own.env.DB_URL,
    });
    expect(backfill.code, backfill.out).toBe(1); // the broken asset failed, with its reason
    expect(backfill.out).toMatch(/✗ photo \S+ failed (UNSUPPORTED_FORMAT|DECODE_FAILED)/);
    expect(backfill.out).toMatch(/not_previewable\s*│\s*audio\s*│\s*audio\s*│\s*1/);

    // the app completes a task through its fast path: one row updated, and the trigger queues the preview
    const url = await kieUrl(read(join(MEDIA, 'lensroom.jpg')), 'jpg', 'image/jpeg');
    expect(await asRole('service_role', (tx) => tx`
      update public.generations set status = 'success', result_urls = ${sql.json([url])} where id = ${ids.app_fast_path_later} returning id`)).toBe(1);
    // the scheduled KIE sync (what pg_cron runs each minute): fails the month-old task, syncs the Veo one by model_id
    await sql`select public.cron_kie_sync_pending()`;
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
         where public.has_previewable_asset(g) and coalesce(g.preview_status, 'none') not in ('ready', 'failed')
            or public.kie_task_running(g.status)`;
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
          expect(r.original_path, label).toMatch(new RegExp(`^${f.row.user_id}/originals/${f.row.id}\\.(jpg|png|mp4)$`));
          expect((await admin.storage.from('generations').download(r.original_path as string)).error, label).toBeNull();
        }
        // asset_url is the app's: left as it was (our KIE sync writes KIE's URL there, as the app's own sync does)
        if (e.syncedByUs) expect(r.asset_url, label).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/files\//);
        else expect(r.asset_url ?? null, label).toBe((f.row.asset_url as string | undefined) ?? null);
      } else if (e.end === 'untouched') {
        for (const k of ['preview_status', 'preview_path', 'poster_path', 'original_path']) expect(r[k] ?? null, `${label} ${k}`).toBe(f.row[k] ?? null);
      } else if (e.end === 'failed') {
        expect(r.preview_status, label).toBe('failed');
        expect(e.codes, label).toContain(r.preview_error_code);
        expect(String(r.error), label).not.toBe('');
        // terminal: its job is kept failed with the same code and text, never retried
        const jobs = await sql<{ state: string; code: string; error: string }[]>`
          select state, last_error_code as code, last_error as error from public.preview_jobs where generation_id = ${ids[f.name]} and kind = 'preview'`;
        expect(jobs, label).toEqual([{ state: 'failed', code: r.preview_error_code, error: r.error }]);
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
      { reason: 'audio', total: 1 }, { reason: 'cancelled', total: 2 }, { reason: 'generation_failed', total: 2 }, { reason: 'no_source', total: 1 },
    ]);
  }, 300_000);

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
    expect(mine.items.find((i) => i.id === ids.audio)).toBeUndefined();
  });

  it('doctor is clean after the adoption steps', async () => {
    const { code, findings } = await doctor();
    expect(findings.filter((f) => f.level !== 'info'), JSON.stringify(findings, null, 1)).toEqual([]);
    expect(code).toBe(0);
    expect(findings.find((f) => f.check === 'backfill')).toBeUndefined();
    expect(findings.filter((f) => f.check === 'coverage').map((f) => f.message)).toContain('1 audio row(s) get no preview: audio');
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
