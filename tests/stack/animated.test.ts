// The animated preview end to end, on a stack of its own with PREVIEW_ANIMATED=on (the default is
// off): a video's poster first, then its clip as a job of its own (kind `animated`, asked for after
// the poster completes); a video too large for the edge keeps its poster and records why it has no
// clip (its job failed, terminal); the library answers a signed URL that plays on hover in
// Chromium; backfill --animated makes the clips of older videos.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Browser, chromium } from 'playwright-core';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFakeKieClient } from '../../local/fake-kie-client.ts';
import { read, videoMp4 } from '../fixtures/media.ts';
import { createOwnUser, type OwnStack, startOwnStack } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MEDIA = join(process.cwd(), '.local', 'e2e-media');
let own: OwnStack;
let sql: postgres.Sql;
let browser: Browser | undefined;
let user: Awaited<ReturnType<typeof createOwnUser>>;
const ids = { small: '', large: '' };

const row = async (id: string) => (await sql<Record<string, any>[]>`select * from public.generations where id = ${id}`)[0];
/** The row's jobs of `kind` (done jobs are deleted; a terminal failure stays). */
const jobsOf = (id: string, kind: string) =>
  sql<{ state: string; attempts: number; code: string | null; error: string | null }[]>`
    select state, attempts, last_error_code as code, last_error as error from public.preview_jobs
     where generation_id = ${id} and kind = ${kind} order by id`;
/** The own stack's log lines that mention every needle. */
const logLines = (...needles: string[]) =>
  readFileSync(own.env.LOG_FILE, 'utf8').split('\n').filter((l) => needles.every((n) => l.includes(n)));

async function kieUrl(file: string): Promise<string> {
  const kie = createFakeKieClient(own.env.KIE_URL);
  const name = `${randomUUID()}.mp4`;
  await kie.putFile(name, read(file), 'video/mp4');
  const taskId = await kie.createTask('veo', { model: 'veo3_fast', callBackUrl: null, fixture: name, fake: { callback: 'never', stayPending: true } });
  return (await kie.getTask(taskId)).resultUrls[0];
}

beforeAll(async () => {
  own = await startOwnStack('animated', { PREVIEW_ANIMATED: 'on', KIE_WEBHOOK_HMAC_KEY: '' });
  sql = postgres(own.env.DB_URL, { max: 3, prepare: false, onnotice: () => {} });
  user = await createOwnUser(own.env, 'anim');
  // what a KIE success leaves (the trigger then dispatches the poster)
  // the flow, not the limits (the bench measures those: a cold 720p clip is close to 2 s of CPU)
  for (const [key, file] of [['small', videoMp4(MEDIA, 640, 360, 6, { black: 0.4, fade: 0.5 })], ['large', videoMp4(MEDIA, 1920, 1080, 2, { fade: 0.3 })]] as const) {
    const url = await kieUrl(file);
    const [r] = await sql<{ id: string }[]>`
      insert into public.generations (user_id, type, status, task_id, model, asset_url, created_at)
      values (${user.id}, 'video', 'success', ${`anim-${randomUUID()}`}, 'veo3_fast', ${url}, ${new Date(Date.UTC(1999, 0, key === 'small' ? 1 : 2))}) returning id`;
    ids[key] = r.id;
  }
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await sql?.end({ timeout: 2 });
  await own?.stop();
}, 60_000);

describe('the animated preview (PREVIEW_ANIMATED=on)', () => {
  it('follows the poster as a step of its own: an H.264 clip at the seed path', async () => {
    const done = await waitFor('the clip', async () => {
      const r = await row(ids.small);
      return r.animated_status === 'ready' ? r : null;
    }, 90_000, 300);
    expect(done.preview_status).toBe('ready');
    expect(done.animated_path).toBe(`${user.id}/previews/${ids.small}_preview.mp4`);
    expect(done.animated_error_code).toBeNull();
    // asked for after the poster, run once: the poster's job, then the clip's, both done (deleted)
    expect(logLines(`[Preview] Queued generationId=${ids.small} reason=animated`)).toHaveLength(1);
    expect(logLines(`[Preview] Processing generationId=${ids.small} `, ' kind=animated ').map((l) => l.match(/ attempt=(\d+)/)?.[1])).toEqual(['1']);
    expect(logLines(`[Preview] Ready generationId=${ids.small} type=video path=${done.animated_path} `, ' kind=animated attempt=1')).toHaveLength(1);
    expect(await jobsOf(ids.small, 'animated')).toEqual([]);
    expect(await jobsOf(ids.small, 'preview')).toEqual([]);
    const [obj] = await sql<{ mime: string; size: string }[]>`
      select metadata->>'mimetype' as mime, metadata->>'size' as size from storage.objects where bucket_id = 'generations' and name = ${done.animated_path}`;
    expect(obj.mime).toBe('video/mp4');
    expect(Number(obj.size)).toBeGreaterThan(10_000);
  }, 120_000);

  it('a video too large for the edge keeps its poster and says why it has no clip', async () => {
    const r = await waitFor('the large video to settle', async () => {
      const x = await row(ids.large);
      return x.animated_status === 'failed' ? x : null;
    }, 90_000, 300);
    expect([r.preview_status, r.animated_error_code, r.animated_path, r.error]).toEqual(['ready', 'OVER_CPU_BUDGET', null, null]);
    expect(r.poster_path).toBe(`${user.id}/posters/${ids.large}_poster.webp`);
    // terminal: the job stays failed with its code and readable text, and is not retried
    const [job] = await jobsOf(ids.large, 'animated');
    expect(job).toMatchObject({ state: 'failed', attempts: 1, code: 'OVER_CPU_BUDGET' });
    expect(job.error!.length).toBeGreaterThan(5);
  }, 120_000);

  it('the library answers a signed URL of the clip, which plays on hover in Chromium', async () => {
    const res = await fetch(`${own.env.API_URL}/functions/v1/library`, { headers: { apikey: own.env.ANON_KEY, authorization: `Bearer ${user.accessToken}` } });
    const items = (await res.json()).items as { id: string; animatedUrl: string | null }[];
    const small = items.find((i) => i.id === ids.small)!;
    expect(small.animatedUrl).toMatch(/\/storage\/v1\/object\/sign\/generations\/.*_preview\.mp4\?token=/);
    expect(items.find((i) => i.id === ids.large)!.animatedUrl).toBeNull();
    const clip = await fetch(small.animatedUrl!);
    expect([clip.status, clip.headers.get('content-type')]).toEqual([200, 'video/mp4']);

    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
    });
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(`${own.env.API_URL}/library#email=${encodeURIComponent(user.email)}&password=${encodeURIComponent(user.password)}`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 30_000 });
    const tile = page.locator(`figure.tile[data-id="${ids.small}"]`);
    await expect(tile.getAttribute('data-animated')).resolves.toBe('true');
    await expect(page.locator(`figure.tile[data-id="${ids.large}"]`).getAttribute('data-animated')).resolves.toBeNull();
    await tile.hover();
    const clipEl = tile.locator('video[data-role="animated"]');
    await clipEl.waitFor({ timeout: 10_000 });
    // it really plays: time advances and a frame is decoded
    await page.waitForFunction((id) => {
      const v = document.querySelector(`figure.tile[data-id="${id}"] video[data-role="animated"]`) as HTMLVideoElement | null;
      return !!v && v.currentTime > 0.3 && v.readyState >= 2 && v.videoWidth === 320 && v.videoHeight === 180;
    }, ids.small, { timeout: 15_000 });
    await page.mouse.move(5, 5);
    await clipEl.waitFor({ state: 'detached', timeout: 5_000 });
  }, 120_000);

  it('backfill --animated makes the clips of videos that have none', async () => {
    // as for videos from before PREVIEW_ANIMATED was on
    await sql`update public.generations set animated_status = null, animated_path = null where id = ${ids.small}`;
    const run = await promisify(execFile)('bash', ['scripts/run-deno.sh', 'scripts/backfill-previews.ts', `--stack-env=${own.dir}/stack.env`, '--animated',
      '--since=1999-01-01T00:00:00Z', '--until=1999-01-02T00:00:00Z'], { timeout: 120_000, env: { ...process.env, SUPABASE_URL: '', SUPABASE_SERVICE_ROLE_KEY: '', SUPABASE_DB_URL: '', NO_COLOR: '1' } });
    expect(run.stdout).toContain(`🎞️ Queuing animated preview for ${ids.small}`);
    expect(run.stdout).not.toContain(ids.large); // created on the --until instant: outside the window
    // ready when the backfill answers, or soon after when a busy machine's isolate handed the clip
    // to a fresh one (isolate.ts: the released job is due at once and woken)
    const r = await waitFor('the clip', async () => {
      const x = await row(ids.small);
      return x.animated_status === 'ready' ? x : null;
    }, 60_000, 250);
    expect([r.animated_status, r.animated_path]).toEqual(['ready', `${user.id}/previews/${ids.small}_preview.mp4`]);
    expect(await jobsOf(ids.small, 'animated')).toEqual([]);
    expect(logLines(`[Preview] Ready generationId=${ids.small} `, ' kind=animated ')).toHaveLength(2);
  }, 180_000);
});
