// The load run of issue 7 (npm run test:load, scripts/load.sh; not part of npm test):
// 1,000 signed KIE callbacks — small photos, a share of videos, duplicates mixed in — sent as
// fast as this machine takes them, then a backfill of 1,000 rows at concurrency 2 and 4.
// Measures, checks the invariants (0 lost, 0 duplicate objects, 0 stuck) and writes
// tests/load/RESULTS.md. Loopback only: the fake KIE serves every asset.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { expect, it } from 'vitest';
import { read, videoMp4 } from '../fixtures/media.ts';
import { MODELS } from '../helpers/flow.ts';
import { successCallback } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { callbackUrl, createUser, kie, logMark, logSince, signedHeaders, sql, stack } from '../helpers/stack.ts';
import { denoBin } from '../../local/paths.ts';

const CALLBACKS = Number(process.env.LOAD_CALLBACKS ?? 1000);
const BACKFILL = Number(process.env.LOAD_BACKFILL ?? 1000);
const VIDEO_SHARE = 0.05;
const DUPLICATE_SHARE = 0.1;
const SEND_CONCURRENCY = 32;
const DEADLINE_MS = 25 * 60_000;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>) {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}

function peakMb(mark: number, fn: string): { max: number; p95: number; n: number } {
  const mbs = logSince(mark, `[Gateway] fn=${fn} `).map((l) => Number(l.match(/peakMb=(\d+)/)?.[1] ?? NaN)).filter(Number.isFinite);
  return { max: Math.max(...mbs), p95: pct(mbs, 95), n: mbs.length };
}

/**
 * Claims per row since the mark: one `[Preview] Processing generationId=… kind=preview` line per
 * claim of its preview job (a done job is deleted, so its attempts are read from the log).
 */
function claimCounts(mark: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of logSince(mark, '[Preview] Processing generationId=', ' kind=preview ')) {
    const id = l.match(/ generationId=(\S+) /)?.[1];
    if (id) m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}

/** Storage writes per object name since the mark. */
function writeCounts(mark: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of logSince(mark, '[Storage] write')) {
    const name = l.match(/ name=(\S+) /)?.[1];
    if (name) m.set(name, (m.get(name) ?? 0) + 1);
  }
  return m;
}

async function invariants(userId: string, mark: number) {
  const rows = await sql<{ id: string; preview_status: string; preview_path: string | null; poster_path: string | null; original_path: string | null }[]>`
    select id, preview_status, preview_path, poster_path, original_path from public.generations where user_id = ${userId}`;
  const writes = writeCounts(mark);
  const claims = claimCounts(mark);
  const lost = rows.filter((r) => r.preview_status !== 'ready' && r.preview_status !== 'failed').length;
  const stuck = rows.filter((r) => r.preview_status === 'processing').length;
  const failed = rows.filter((r) => r.preview_status === 'failed').length;
  // An object written more often than its row's job was claimed is a duplicate.
  const duplicates = rows.filter((r) => {
    const path = r.preview_path ?? r.poster_path;
    return path && (writes.get(path) ?? 0) > (claims.get(r.id) ?? 0);
  }).length;
  const multiAttempt = rows.filter((r) => (claims.get(r.id) ?? 0) > 1).length;
  // a row nobody will ever work on: waiting without a live job, or processing without a live lease
  const [{ orphaned }] = await sql<{ orphaned: number }[]>`
    select count(*)::int as orphaned from public.generations g
     where g.user_id = ${userId}
       and ((public.preview_wanted(g) and not exists (select 1 from public.preview_jobs j
              where j.generation_id = g.id and j.kind = 'preview' and j.state in ('queued', 'running')))
         or (g.preview_status = 'processing' and not exists (select 1 from public.preview_jobs j
              where j.generation_id = g.id and j.kind = 'preview' and j.state = 'running' and j.lease_until >= now())))`;
  return { rows: rows.length, lost, stuck, failed, duplicates, multiAttempt, orphaned };
}

const results: string[] = [];

it('1,000 KIE callbacks (photos, videos, duplicates) → every row ready, once', async () => {
  const user = await createUser('load');
  const jpeg = await landscapeJpeg();
  const photos = await Promise.all([640, 768, 896].map(async (w, i) =>
    kieFile(new Uint8Array(await sharp(jpeg).resize(w).jpeg({ quality: 80 + i }).toBuffer()), 'jpg', 'image/jpeg')));
  const video = await kieFile(read(videoMp4(join(process.cwd(), '.local', 'e2e-media'), 640, 360, 2, { fade: 0 })), 'mp4', 'video/mp4');

  const unique = Math.round(CALLBACKS / (1 + DUPLICATE_SHARE));
  const videoEvery = Math.round(1 / VIDEO_SHARE);
  type Item = { id?: string; taskId: string; url: string; type: 'photo' | 'video'; sentAt?: number };
  const items: Item[] = [];
  await pool(Array.from({ length: unique }, (_, i) => i), 16, async (i) => {
    const type = i % videoEvery === videoEvery - 1 ? 'video' : 'photo';
    const taskId = await kie.createTask('market', { fixture: type === 'video' ? video : photos[i % photos.length], fake: { callback: 'never' } });
    const url = (await kie.getTask(taskId)).resultUrls[0];
    items.push({ taskId, url, type });
  });
  const inserted = await sql<{ id: string; task_id: string }[]>`
    insert into public.generations ${sql(items.map((it) => ({ user_id: user.id, type: it.type, status: 'pending', task_id: it.taskId, model: MODELS.market })))}
    returning id, task_id`;
  const byTask = new Map(items.map((it) => [it.taskId, it]));
  for (const r of inserted) byTask.get(r.task_id)!.id = r.id;

  // The send list: every task once, plus duplicates of random tasks, shuffled.
  const sends: Item[] = [...items];
  for (let i = 0; sends.length < CALLBACKS; i++) sends.push(items[(i * 7919) % items.length]);
  for (let i = sends.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [sends[i], sends[j]] = [sends[j], sends[i]];
  }
  const mark = logMark();
  const started = Date.now();
  const statuses = new Map<number, number>();
  await pool(sends, SEND_CONCURRENCY, async (it) => {
    it.sentAt ??= Date.now();
    const res = await fetch(callbackUrl(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await signedHeaders(it.taskId)) },
      body: JSON.stringify(successCallback(it.taskId, it.url)),
    });
    await res.arrayBuffer();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  });
  const sendMs = Date.now() - started;
  const accepted = statuses.get(200) ?? 0;

  // Until every row has settled (or the deadline).
  for (;;) {
    const [{ open }] = await sql<{ open: number }[]>`
      select count(*)::int as open from public.generations where user_id = ${user.id} and preview_status not in ('ready', 'failed')`;
    if (open === 0 || Date.now() - started > DEADLINE_MS) break;
    await sleep(1000);
  }
  const done = await sql<{ id: string; at: Date }[]>`
    select id, updated_at as at from public.generations where user_id = ${user.id} and preview_status = 'ready'`;
  const byId = new Map(items.map((it) => [it.id!, it]));
  const latencies = done.map((r) => r.at.getTime() - byId.get(r.id)!.sentAt!);
  const lastReady = Math.max(...done.map((r) => r.at.getTime()));
  const inv = await invariants(user.id, mark);
  const fnPreview = peakMb(mark, 'generate-preview');
  const fnCallback = peakMb(mark, 'kie-callback');

  results.push(
    '## 1,000 KIE callbacks',
    '',
    `${CALLBACKS} signed callbacks (${items.length} tasks: ${items.filter((i) => i.type === 'video').length} videos 640×360 2 s, the rest JPEG photos 640–896 px wide; ${CALLBACKS - items.length} duplicates mixed in, shuffled), ${SEND_CONCURRENCY} in flight.`,
    '',
    '| Figure | Value |',
    '|---|---|',
    `| callbacks answered 200 | ${accepted} of ${CALLBACKS} (${[...statuses].map(([s, n]) => `${s}: ${n}`).join(', ')}) |`,
    `| callbacks accepted per second | ${(accepted / (sendMs / 1000)).toFixed(0)} (all sent in ${(sendMs / 1000).toFixed(1)} s) |`,
    `| first callback → last preview ready | ${((lastReady - started) / 1000).toFixed(1)} s |`,
    `| callback → ready, p50 / p95 | ${(pct(latencies, 50) / 1000).toFixed(1)} s / ${(pct(latencies, 95) / 1000).toFixed(1)} s |`,
    `| previews per second (overall) | ${(done.length / ((lastReady - started) / 1000)).toFixed(1)} |`,
    `| peak memory above baseline, generate-preview | max ${fnPreview.max} MB, p95 ${fnPreview.p95} MB (${fnPreview.n} requests) |`,
    `| peak memory above baseline, kie-callback | max ${fnCallback.max} MB, p95 ${fnCallback.p95} MB (${fnCallback.n} requests) |`,
    `| WORKER_LIMIT (546) answers | ${logSince(mark, 'WORKER_LIMIT').length} |`,
    `| wakes that timed out in pg_net (10 s) while queued for an isolate | ${logSince(mark, '[Net]', '/generate-preview failed timed_out=true').length} |`,
    `| generate-preview wakes sent by pg_net (trigger, claims, workers ending, sweep) | ${logSince(mark, '[Net]', '/functions/v1/generate-preview').length} |`,
    `| workers that declined (isolate spent or ending) | ${logSince(mark, '[Preview] Declined').length} |`,
    `| invariant: lost / duplicate objects / stuck | ${inv.lost} / ${inv.duplicates} / ${inv.stuck} (rows ${inv.rows}, ready ${done.length}, failed ${inv.failed}, rows that needed a 2nd claim ${inv.multiAttempt}) |`,
    '',
  );
  expect(accepted).toBe(CALLBACKS);
  expect(inv).toMatchObject({ rows: items.length, lost: 0, stuck: 0, duplicates: 0, failed: 0, orphaned: 0 });
});

async function backfillRun(concurrency: number) {
  const user = await createUser(`backfill-c${concurrency}`);
  const jpeg = await landscapeJpeg();
  const name = await kieFile(new Uint8Array(await sharp(jpeg).resize(640).jpeg().toBuffer()), 'jpg', 'image/jpeg');
  const url = (await kie.getTask(await kie.createTask('market', { fixture: name, fake: { callback: 'never' } }))).resultUrls[0];
  // Old rows: success without a preview, written with the enqueue trigger muted (as if they
  // predate it). Created in the past so the two runs' rows never mix (--until).
  const createdAt = new Date(Date.now() - (concurrency === 2 ? 3 : 2) * 86_400_000);
  await sql.begin(async (tx) => {
    await tx`set local app.skip_preview_dispatch = on`;
    await tx`insert into public.generations (user_id, type, status, asset_url, created_at)
             select ${user.id}, 'photo', 'success', ${url}, ${createdAt}::timestamptz + make_interval(secs => g) from generate_series(1, ${BACKFILL}) g`;
  });
  const since = createdAt.toISOString();
  const until = new Date(createdAt.getTime() + 86_400_000 - 1).toISOString();
  const mark = logMark();
  const started = Date.now();
  const run = spawnSync('bash', ['scripts/run-deno.sh', 'scripts/backfill-previews.ts', `--limit=${BACKFILL}`, `--concurrency=${concurrency}`,
    `--since=${since}`, `--until=${until}`, `--stack-env=${process.env.STACK_ENV_FILE ?? `${stack.STACK_DIR}/stack.env`}`], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const ms = Date.now() - started;
  const inv = await invariants(user.id, mark);
  const mem = peakMb(mark, 'generate-preview');
  results.push(`| ${concurrency} | ${BACKFILL} | ${(ms / 1000).toFixed(1)} s | ${(BACKFILL / (ms / 1000)).toFixed(1)} | max ${mem.max} MB, p95 ${mem.p95} MB | ${inv.lost} / ${inv.duplicates} / ${inv.stuck} (failed ${inv.failed}) | ${run.status} |`);
  expect(run.status, run.stdout.slice(-2000) + run.stderr.slice(-2000)).toBe(0);
  expect(inv).toMatchObject({ rows: BACKFILL, lost: 0, stuck: 0, duplicates: 0, failed: 0, orphaned: 0 });
}

it('backfill of 1,000 rows at concurrency 2 and 4', async () => {
  results.push(
    '## Backfill',
    '',
    `\`npm run backfill:previews -- --limit=${BACKFILL} --concurrency=N\` over ${BACKFILL} old success rows (JPEG 640 px wide) that never got a job.`,
    '',
    '| Concurrency | Items | Wall time | Items per second | Peak memory, generate-preview | lost / duplicate objects / stuck | Exit |',
    '|---|---|---|---|---|---|---|',
  );
  await backfillRun(2);
  await backfillRun(4);
  results.push('');
});

it('writes tests/load/RESULTS.md', () => {
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.+)/)?.[1] ?? cpus()[0]?.model;
  const deno = spawnSync(denoBin(), ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const header = [
    '# Load run (issue 7)',
    '',
    `Run ${new Date().toISOString()} by \`npm run test:load\` on ${cpus().length} vCPU (\`nproc\` ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()}), ${cpu}, ${Math.round(readFileSync('/proc/meminfo', 'utf8').match(/MemTotal:\s+(\d+)/)![1] as unknown as number / 1024 / 1024)} GB RAM; ${deno}, Node ${process.version}.`,
    'Everything on one machine: Postgres, the gateway running the functions as the platform\'s worker pool (shared isolates, CPU accumulated per isolate: 1 s retire, 2 s → 546; 256 MB of heap + external), the pg_net stand-in, the fake KIE, and the load generator itself.',
    'Peak memory is the isolate\'s peak V8 heap + external (the platform\'s measure), from the gateway\'s `[Gateway] … peakMb=` lines.',
    '',
  ];
  writeFileSync('tests/load/RESULTS.md', [...header, ...results].join('\n') + '\n');
});
