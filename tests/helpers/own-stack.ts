/**
 * A second local stack for one test file, beside the run's stack: its own folder (next to the
 * run's, so the runner's leftover cleanup finds it) and free ports. STACK_MIGRATIONS=none gives
 * a project as it is before this system: platform bootstrapped, none of our migrations, no
 * vault secrets, no ffmpeg core. Stopped and removed by stop().
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { createClient } from '@supabase/supabase-js';
import { parseEnvFile } from '../../local/env-file.ts';

const run = promisify(execFile);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

/** The stack's own defaults, not the test run's shortcuts (lease, download timeout, byte cap, HMAC, extra functions, worker limit). */
export const STACK_DEFAULTS: Record<string, string> = {
  PREVIEW_LEASE_SECONDS: '', PREVIEW_DOWNLOAD_TIMEOUT_MS: '', PREVIEW_MAX_SOURCE_BYTES: '', KIE_WEBHOOK_HMAC_KEY: '', EXTRA_FUNCTIONS_CONFIG: '',
  PREVIEW_WORKER_LIMIT: '',
};

export type OwnStack = {
  env: Record<string, string>;
  dir: string;
  stop(): Promise<void>;
  /** stack.sh start again, with the settings it was started with: starts what is not running. */
  start(): Promise<void>;
};

export async function startOwnStack(name: string, extraEnv: Record<string, string> = {}): Promise<OwnStack> {
  const runEnv = process.env.STACK_ENV_FILE;
  const dir = runEnv ? `${dirname(runEnv)}-${name}` : join(process.cwd(), '.local', `own-${name}`);
  const env = {
    ...process.env, STACK_DIR: dir,
    API_PORT: String(await freePort()), DB_PORT: String(await freePort()), KIE_PORT: String(await freePort()),
    ...extraEnv,
  };
  const stop = async () => {
    if (process.env.KEEP_OWN_STACK === '1') return; // debugging: leave it running
    await run('bash', ['local/stack.sh', 'stop'], { env }).catch(() => {});
    // its logs outlive it, for the failure that stopped it (as run-stack.sh keeps the test stack's)
    const logs = join(dir, 'logs');
    const kept = join(process.cwd(), '.local', `last-own-${name}-logs`);
    if (existsSync(logs)) {
      rmSync(kept, { recursive: true, force: true });
      cpSync(logs, kept, { recursive: true });
    }
    const location = join(dir, 'pg', 'LOCATION');
    if (existsSync(location)) rmSync(readFileSync(location, 'utf8').trim(), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  await stop(); // a leftover of a killed run
  try {
    await run('bash', ['local/stack.sh', 'start'], { env, timeout: 240_000, maxBuffer: 1 << 24 });
  } catch (err) {
    const logs = join(dir, 'logs');
    const tail = existsSync(join(logs, 'db-apply.log')) ? readFileSync(join(logs, 'db-apply.log'), 'utf8').slice(-2000) : '';
    await stop();
    throw new Error(`own stack ${name} did not start: ${(err as Error).message}\n${tail}`);
  }
  const stackEnv = parseEnvFile(readFileSync(join(dir, 'stack.env'), 'utf8'));
  stackEnv.ADMIN_DB_URL = stackEnv.DB_URL.replace('postgres:postgres@', 'supabase_admin:postgres@');
  const start = async () => void await run('bash', ['local/stack.sh', 'start'], { env, timeout: 120_000, maxBuffer: 1 << 24 });
  return { env: stackEnv, dir, stop, start };
}

/** Whether the process runs. A zombie does not: where the orphaned process's new parent (PID 1 of a
 *  container or CI runner) never reaps it, `kill(pid, 0)` keeps succeeding after it exited. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export type OwnIsolate = { fn: string; pid: number; busy: boolean; requests: { body: string }[] };

/** What a fault test does to its own stack: read its log, stop or crash its Postgres, list its isolates. */
export function stackTools(own: OwnStack) {
  const logMark = () => (existsSync(own.env.LOG_FILE) ? statSync(own.env.LOG_FILE).size : 0);
  return {
    logMark,
    /** The log's lines since `mark` that contain every needle. */
    logSince: (mark: number, ...needles: string[]) =>
      readFileSync(own.env.LOG_FILE).subarray(mark).toString('utf8').split('\n').filter((l) => l && needles.every((n) => l.includes(n))),
    /** local/postgres.sh: start, stop (a fast shutdown) or crash (an immediate one). */
    pg: (cmd: 'start' | 'stop' | 'crash') =>
      run('bash', ['local/postgres.sh', cmd], { env: { ...process.env, STACK_DIR: own.dir, DB_PORT: new URL(own.env.DB_URL).port } }),
    /** The gateway's live function isolates. */
    isolates: async (): Promise<OwnIsolate[]> => {
      const res = await fetch(`${own.env.API_URL}/_local/isolates`, { headers: { authorization: `Bearer ${own.env.SERVICE_ROLE_KEY}` } });
      return (await res.json()).isolates;
    },
    gatewayPid: () => Number(readFileSync(join(own.dir, 'run', 'gateway.pid'), 'utf8')),
  };
}

/** A user of that stack, created through its Auth API and signed in with supabase-js. */
export async function createOwnUser(env: Record<string, string>, label: string): Promise<{ id: string; email: string; password: string; accessToken: string }> {
  const email = `${label}-${randomUUID().slice(0, 8)}@example.test`;
  const password = `pw-${randomUUID()}`;
  const admin = createClient(env.API_URL, env.SERVICE_ROLE_KEY, { auth: { persistSession: false, autoRefreshToken: false } });
  const { data, error } = await admin.auth.admin.createUser({ email, password, email_confirm: true });
  if (error || !data.user) throw new Error(`createUser: ${error?.message}`);
  const signed = await createClient(env.API_URL, env.ANON_KEY, { auth: { persistSession: false, autoRefreshToken: false } }).auth
    .signInWithPassword({ email, password });
  if (!signed.data.session) throw new Error(`sign-in: ${signed.error?.message}`);
  return { id: data.user.id, email, password, accessToken: signed.data.session.access_token };
}
