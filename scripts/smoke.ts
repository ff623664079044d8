/**
 * The seed checklist as a smoke test of a deployed project, non-destructive:
 *
 *   npm run smoke -- --url https://<ref>.supabase.co --service-key <sb_secret_… or service_role JWT> \
 *     --anon-key <sb_publishable_… or anon JWT> --db-url <postgres URL> \
 *     --callback-secret <KIE_CALLBACK_SECRET> [--hmac-key <KIE_WEBHOOK_HMAC_KEY>] [--timeout 120] \
 *     [--row-defaults '{"prompt":"smoke","model_id":"smoke","model_name":"smoke"}']
 *
 * Either kind of key works: a project with only the new keys (sb_secret_…, sb_publishable_…)
 * and one with the legacy JWT keys are smoked the same way.
 *
 * It makes a dedicated user, uploads one photo and one video (scripts/smoke/) into that user's
 * folder, inserts two pending generations with task ids KIE never saw, and sends kie-callback
 * the success KIE would send (with the secret, and KIE's signature when --hmac-key is given). In
 * previews_only mode (the app's own webhook owns its KIE tasks) kie-callback must refuse that
 * callback (409) and leave the rows as they are; the smoke test then marks them successful itself,
 * as the app's webhook would. Then: both previews ready within --timeout seconds, the objects are WebP, the library lists
 * them with signed URLs that load, a manual re-sync changes nothing (previews_only: is refused),
 * the database's own request (the pending sync, with the dispatch secret alone) is accepted by
 * kie-sync (kie_owner only), a forged callback is refused and changes nothing. Whatever it made is removed at the end, pass or fail (objects
 * through the Storage API, then the user, whose rows go with it). --row-defaults adds values
 * for a generations table with more NOT NULL columns than ours.
 * Prints one line per step; exits 0 when all passed, 1 otherwise, 2 on bad usage.
 */
import { parseArgs } from 'node:util';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import postgres from 'postgres';
import { PREVIEW_BUCKET } from '../shared/config.ts';
import { signKieWebhook } from '../shared/kie/signature.ts';

type Options = {
  url: string;
  serviceKey: string;
  anonKey: string;
  dbUrl: string;
  callbackSecret: string;
  hmacKey?: string;
  bucket: string;
  timeoutS: number;
  rowDefaults: Record<string, unknown>;
};

function options(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      'service-key': { type: 'string' },
      'anon-key': { type: 'string' },
      'db-url': { type: 'string' },
      'callback-secret': { type: 'string' },
      'hmac-key': { type: 'string' },
      timeout: { type: 'string', default: '120' },
      'row-defaults': { type: 'string', default: '{}' },
    },
  });
  for (const k of ['url', 'service-key', 'anon-key', 'db-url', 'callback-secret'] as const) {
    if (!values[k]) throw new Error(`--${k} is required`);
  }
  const timeoutS = Number(values.timeout);
  if (!(timeoutS > 0)) throw new Error('--timeout must be a number of seconds');
  return {
    url: values.url!.replace(/\/+$/, ''),
    serviceKey: values['service-key']!,
    anonKey: values['anon-key']!,
    dbUrl: values['db-url']!,
    callbackSecret: values['callback-secret']!,
    hmacKey: values['hmac-key'],
    bucket: PREVIEW_BUCKET,
    timeoutS,
    rowDefaults: JSON.parse(values['row-defaults']!),
  };
}

class StepFailed extends Error {}
const check = (ok: unknown, why: string) => {
  if (!ok) throw new StepFailed(why);
};

async function main(o: Options): Promise<boolean> {
  const noSession = { auth: { persistSession: false, autoRefreshToken: false } };
  const admin = createClient(o.url, o.serviceKey, noSession);
  const sql = postgres(o.dbUrl, { max: 2, prepare: false, onnotice: () => {} });
  const run = crypto.randomUUID().slice(0, 8);
  const made: { userId?: string; objects: string[] } = { objects: [] };
  const items: { type: 'photo' | 'video'; id?: string; taskId: string; path: string }[] = [
    { type: 'photo', taskId: `smoke-${run}-photo`, path: '' },
    { type: 'video', taskId: `smoke-${run}-video`, path: '' },
  ];
  let user: SupabaseClient | null = null;
  let ok = true;

  const step = async (name: string, fn: () => Promise<string | void>) => {
    if (!ok) return;
    const started = performance.now();
    try {
      const detail = await fn();
      console.log(
        `smoke: ✓ ${name} (${Math.round(performance.now() - started)} ms)${
          detail ? `: ${detail}` : ''
        }`,
      );
    } catch (err) {
      ok = false;
      console.log(`smoke: ✗ ${name}: ${err instanceof Error ? err.message : err}`);
    }
  };
  const fn = (name: string, init: RequestInit & { query?: string } = {}) =>
    fetch(`${o.url}/functions/v1/${name}${init.query ?? ''}`, init);
  const callback = async (body: unknown, taskId: string, secret = o.callbackSecret) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (o.hmacKey) {
      const ts = String(Math.floor(Date.now() / 1000));
      headers['x-webhook-timestamp'] = ts;
      headers['x-webhook-signature'] = await signKieWebhook(o.hmacKey, taskId, ts);
    }
    return await fetch(`${o.url}/functions/v1/kie-callback?secret=${encodeURIComponent(secret)}`, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
    });
  };
  type Row = {
    id: string;
    status: string;
    preview_status: string;
    preview_path: string | null;
    poster_path: string | null;
    original_path: string | null;
    preview_error: string | null;
    updated_at: Date;
  };
  const rows = async (): Promise<Row[]> =>
    await sql<Row[]>`
    select id, status, preview_status, preview_path, poster_path, original_path, preview_error, updated_at
      from public.generations where id = any(${
      items.map((i) => i.id ?? '00000000-0000-0000-0000-000000000000')
    }::uuid[]) order by type`;

  let mode = '';
  try {
    await step('the mode', async () => {
      mode = (await sql<{ m: string }[]>`select public.preview_mode() as m`)[0].m;
      return mode;
    });
    await step('health', async () => {
      const res = await fn('health');
      check(
        res.status === 200 && (await res.json()).status === 'ok',
        `GET health answered ${res.status}`,
      );
    });
    await step('deep health (service role)', async () => {
      const res = await fn('health', {
        query: '?deep=1',
        headers: { authorization: `Bearer ${o.serviceKey}`, apikey: o.serviceKey },
      });
      const body = await res.json().catch(() => null);
      check(
        res.status === 200 && body?.status === 'ok',
        `health?deep=1 answered ${res.status} ${JSON.stringify(body)}`,
      );
    });
    await step('a smoke user', async () => {
      const email = `smoke-${run}@example.invalid`;
      const password = `smoke-${crypto.randomUUID()}`;
      const created = await admin.auth.admin.createUser({ email, password, email_confirm: true });
      check(!created.error && created.data.user, `createUser: ${created.error?.message}`);
      made.userId = created.data.user!.id;
      const anon = createClient(o.url, o.anonKey, noSession);
      const signed = await anon.auth.signInWithPassword({ email, password });
      check(!signed.error && signed.data.session, `sign-in: ${signed.error?.message}`);
      user = createClient(o.url, o.anonKey, {
        ...noSession,
        global: { headers: { Authorization: `Bearer ${signed.data.session!.access_token}` } },
      });
      return `${email} (${made.userId})`;
    });
    await step("upload a photo and a video into the user's folder", async () => {
      for (const item of items) {
        const [file, type] = item.type === 'photo'
          ? ['photo.jpg', 'image/jpeg']
          : ['video.mp4', 'video/mp4'];
        item.path = `${made.userId}/smoke/${run}-${file}`;
        const { error } = await admin.storage.from(o.bucket).upload(
          item.path,
          await Deno.readFile(new URL(`./smoke/${file}`, import.meta.url)),
          { contentType: type },
        );
        check(!error, `upload ${item.path}: ${error?.message}`);
        made.objects.push(item.path);
      }
    });
    await step('two pending generations', async () => {
      for (const item of items) {
        const row = {
          ...o.rowDefaults,
          user_id: made.userId,
          type: item.type,
          status: 'pending',
          task_id: item.taskId,
        };
        const [r] = await sql<{ id: string }[]>`insert into public.generations ${
          sql(row)
        } returning id`;
        item.id = r.id;
      }
      return items.map((i) => i.id).join(', ');
    });
    const successBody = (item: typeof items[number]) => ({
      code: 200,
      msg: 'success',
      data: {
        taskId: item.taskId,
        state: 'success',
        resultJson: JSON.stringify({
          resultUrls: [`${o.url}/storage/v1/object/authenticated/${o.bucket}/${item.path}`],
        }),
      },
    });
    if (mode === 'previews_only') {
      await step(
        'previews_only: kie-callback refuses KIE callbacks (409) and changes nothing',
        async () => {
          const before = await rows();
          const res = await callback(successBody(items[0]), items[0].taskId);
          check(
            res.status === 409 && (await res.json()).error === 'PREVIEWS_ONLY',
            `kie-callback answered ${res.status}`,
          );
          check(JSON.stringify(await rows()) === JSON.stringify(before), 'the rows changed');
        },
      );
      await step(
        "the app's webhook marks them successful (the smoke test in its place)",
        async () => {
          for (const item of items) {
            const url = `${o.url}/storage/v1/object/authenticated/${o.bucket}/${item.path}`;
            await sql`update public.generations set status = 'success', asset_url = ${url},
                      result_urls = ${sql.json([url])} where id = ${item.id!}`;
          }
        },
      );
    }
    if (mode === 'kie_owner') {
      await step('KIE success callbacks (secret and signature) → 200', async () => {
        for (const item of items) {
          const res = await callback(successBody(item), item.taskId);
          check(
            res.status === 200,
            `kie-callback for ${item.type} answered ${res.status}: ${await res.text()}`,
          );
        }
      });
    }
    let ready: Row[] = [];
    await step(`previews ready within ${o.timeoutS} s`, async () => {
      const deadline = Date.now() + o.timeoutS * 1000;
      for (;;) {
        ready = await rows();
        const failed = ready.find((r) => r.preview_status === 'failed');
        check(!failed, `${failed?.id} failed: ${failed?.preview_error}`);
        if (ready.length === 2 && ready.every((r) => r.preview_status === 'ready')) break;
        check(
          Date.now() < deadline,
          `not ready after ${o.timeoutS} s: ${
            ready.map((r) => `${r.status}/${r.preview_status}`).join(', ')
          }`,
        );
        await new Promise((r) => setTimeout(r, 1000));
      }
      for (const r of ready) {
        made.objects.push(...[r.preview_path, r.poster_path].filter((p): p is string => !!p));
      }
      return ready.map((r) => r.preview_path ?? r.poster_path).join(', ');
    });
    await step('the preview and the poster are WebP in storage', async () => {
      for (const r of ready) {
        const path = (r.preview_path ?? r.poster_path)!;
        const { data, error } = await admin.storage.from(o.bucket).download(path);
        check(!error && data, `download ${path}: ${error?.message}`);
        const head = new TextDecoder().decode(
          new Uint8Array(await data!.arrayBuffer()).subarray(0, 12),
        );
        check(head.startsWith('RIFF') && head.endsWith('WEBP'), `${path} is not a WebP`);
      }
    });
    await step('the library lists both with signed URLs that load', async () => {
      const res = await user!.functions.invoke('library', { method: 'GET' });
      check(!res.error, `library: ${res.error?.message}`);
      const listed = (res.data.items as { id: string; previewUrl: string | null }[]).filter((i) =>
        items.some((x) => x.id === i.id)
      );
      check(listed.length === 2, `the library lists ${listed.length} of the 2 smoke items`);
      for (const item of listed) {
        const img = await fetch(item.previewUrl!);
        check(
          img.status === 200 && img.headers.get('content-type') === 'image/webp',
          `${item.previewUrl} answered ${img.status} ${img.headers.get('content-type')}`,
        );
        await img.body?.cancel();
      }
    });
    await step(
      `a manual re-sync ${mode === 'kie_owner' ? 'changes nothing' : 'is refused (409)'}`,
      async () => {
        const before = await rows();
        const res = await user!.functions.invoke('kie-sync', { body: { taskId: items[0].taskId } });
        if (mode === 'kie_owner') {
          check(!res.error, `kie-sync: ${res.error?.message}`);
          check(
            res.data.results?.[0]?.changed === false,
            `kie-sync answered ${JSON.stringify(res.data)}`,
          );
        } else {
          const status = (res.error as { context?: Response } | null)?.context?.status;
          check(status === 409, `kie-sync answered ${status ?? 'ok'} in previews_only mode`);
        }
        const after = await rows();
        check(JSON.stringify(after) === JSON.stringify(before), 'the rows changed');
      },
    );
    if (mode === 'kie_owner') {
      await step('the database reaches kie-sync with the dispatch secret alone', async () => {
        // what pg_cron's kie-sync-pending job sends every minute, queued now and awaited
        const [{ id }] = await sql<{ id: string | null }[]>`
        select public.invoke_edge_function('kie-sync', '{"mode": "pending"}'::jsonb, 30000) as id`;
        check(
          id !== null,
          'nothing was queued: vault project_url or preview_dispatch_secret missing',
        );
        const deadline = Date.now() + 45_000;
        for (;;) {
          const [res] = await sql<
            { status_code: number | null; content: string | null; error_msg: string | null }[]
          >`select status_code, content, error_msg from net._http_response where id = ${id}`;
          if (res) {
            check(
              res.status_code === 200,
              `kie-sync answered ${res.status_code ?? res.error_msg}: ${
                (res.content ?? '').slice(0, 200)
              }`,
            );
            return `request ${id}: 200`;
          }
          check(Date.now() < deadline, `pg_net sent no answer for request ${id} within 45 s`);
          await new Promise((r) => setTimeout(r, 500));
        }
      });
    }
    await step('a forged callback is refused (401) and changes nothing', async () => {
      const before = await rows();
      const res = await callback(
        {
          code: 501,
          msg: 'failed',
          data: { taskId: items[0].taskId, state: 'fail', failMsg: 'smoke forgery' },
        },
        items[0].taskId,
        `${o.callbackSecret}-forged`,
      );
      check(res.status === 401, `a wrong secret answered ${res.status}`);
      check(JSON.stringify(await rows()) === JSON.stringify(before), 'the rows changed');
    });
  } finally {
    // everything this run made goes, whatever happened above
    const cleanup: string[] = [];
    for (const r of await rows().catch(() => [])) {
      if (r.original_path) made.objects.push(r.original_path);
    }
    const unique = [...new Set(made.objects)];
    if (unique.length) {
      const { error } = await admin.storage.from(o.bucket).remove(unique);
      cleanup.push(error ? `objects not removed: ${error.message}` : `${unique.length} objects`);
      if (error) ok = false;
    }
    if (made.userId) {
      const { error } = await admin.auth.admin.deleteUser(made.userId);
      cleanup.push(error ? `user not deleted: ${error.message}` : 'the user and its rows');
      if (error) ok = false;
    }
    await sql.end({ timeout: 2 });
    console.log(`smoke: cleanup: ${cleanup.join(', ') || 'nothing to remove'}`);
  }
  console.log(ok ? 'smoke: all steps passed' : 'smoke: FAILED');
  return ok;
}

if (import.meta.main) {
  let o: Options;
  try {
    o = options(Deno.args);
  } catch (err) {
    console.error(`smoke: ${err instanceof Error ? err.message : err}`);
    Deno.exit(2);
  }
  Deno.exit((await main(o)) ? 0 : 1);
}
