/**
 * Backfill fixtures and the CLI as a subprocess: old `success` rows inserted with the
 * enqueue trigger muted (so no job is queued and nothing renders them until the backfill does),
 * each test in its own far-past time window (`--since`/`--until`) so runs never see other tests'
 * rows.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { KieFamily } from '../../shared/kie/parse.ts';
import type { FakeKieBehaviour } from '../../local/fake-kie-client.ts';
import { MODELS } from './flow.ts';
import { kie, sql } from './stack.ts';

export const STACK_ENV_FILE = process.env.STACK_ENV_FILE ?? join(process.cwd(), '.local', 'dev', 'stack.env');

/** A KIE task (no callback, kept pending) whose result URL serves `fixture`. */
export async function kieAssetUrl(fixture: string, family: KieFamily = 'market', fake: FakeKieBehaviour = {}): Promise<string> {
  const taskId = await kie.createTask(family, { model: MODELS[family], callBackUrl: null, fixture, fake: { callback: 'never', stayPending: true, ...fake } });
  return (await kie.getTask(taskId)).resultUrls[0];
}

/** A random one-hour window in 1990–2015: nothing else creates rows there. */
export function pastWindow(): { since: Date; until: Date; at: (i: number) => Date; args: string[] } {
  const start = Date.UTC(1990, 0, 1) + Math.floor(Math.random() * 25 * 365 * 24) * 3600_000;
  const since = new Date(start);
  const until = new Date(start + 3600_000);
  return { since, until, at: (i) => new Date(start + i * 1000), args: [`--since=${since.toISOString()}`, `--until=${until.toISOString()}`] };
}

export type OldRow = {
  userId: string;
  type: 'photo' | 'video';
  assetUrl: string;
  createdAt: Date;
  /**
   * Preview state to start from (default: a never-processed row, `none`). `attempts` with `failed`:
   * the terminal failure our worker leaves, its job kept `failed` after that many attempts.
   */
  preview?: { status: 'none' | 'failed' | 'ready'; attempts?: number; error?: string; code?: string; stalePath?: boolean };
};

/** Inserts an old success row (and, for a failure of ours, its failed job) without the enqueue trigger; returns its id. */
export async function insertOldSuccess(r: OldRow): Promise<string> {
  const id = randomUUID();
  const p = r.preview ?? { status: 'none' };
  const stale = p.stalePath ? `${r.userId}/${r.type === 'video' ? 'posters' : 'previews'}/${id}_${r.type === 'video' ? 'poster' : 'preview'}.webp` : null;
  await sql.begin(async (tx) => {
    await tx`set local app.skip_preview_dispatch = 'on'`;
    await tx`
      insert into public.generations (id, user_id, type, status, task_id, model, asset_url, created_at,
        preview_status, preview_error, preview_error_code, preview_path, poster_path)
      values (${id}, ${r.userId}, ${r.type}, 'success', ${`old-${id}`}, ${r.type === 'video' ? 'veo3_fast' : 'google/nano-banana'},
        ${r.assetUrl}, ${r.createdAt}, ${p.status}, ${p.error ?? null}, ${p.code ?? null},
        ${r.type === 'photo' ? stale : null}, ${r.type === 'video' ? stale : null})`;
    if (p.status === 'failed' && p.attempts) {
      await tx`
        insert into public.preview_jobs (kind, generation_id, state, attempts, max_attempts, run_at, dedupe_key, last_error_code, last_error)
        values ('preview', ${id}, 'failed', ${p.attempts}, greatest(${p.attempts}::int, public.preview_max_attempts()), ${r.createdAt},
                public.preview_job_dedupe_key('preview', ${id}::uuid, '{}'), ${p.code ?? null}, ${p.error ?? null})`;
    }
  });
  return id;
}

export type CliRun = { code: number; stdout: string; stderr: string; ms: number };

/** Runs `npm run backfill:previews -- …args` (the Deno script itself) against the test stack. */
export function runBackfillCli(args: string[]): Promise<CliRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['scripts/run-deno.sh', 'scripts/backfill-previews.ts', `--stack-env=${STACK_ENV_FILE}`, ...args], {
      cwd: process.cwd(),
      env: { ...process.env, SUPABASE_URL: '', SUPABASE_SERVICE_ROLE_KEY: '', SUPABASE_DB_URL: '', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started }));
  });
}
