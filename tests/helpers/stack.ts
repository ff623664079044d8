/**
 * Access to the running test stack (started by scripts/test.sh, described by the env file it
 * writes): URLs and keys, a database connection, supabase-js clients, test users, the
 * captured logs, the fake KIE server, and a few waiting helpers. Every test creates its own
 * users and rows, so test files can run side by side on one stack.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import postgres from 'postgres';
import { createFakeKieClient } from '../../local/fake-kie-client.ts';
import { signKieWebhook } from '../../shared/kie/signature.ts';
import { waitFor } from './wait.ts';
import { parseEnvFile } from '../../local/env-file.ts';

function loadStackEnv(): Record<string, string> {
  const file = process.env.STACK_ENV_FILE ?? `${process.cwd()}/.local/dev/stack.env`;
  if (!existsSync(file)) {
    throw new Error(`No running test stack (${file} missing): run these tests with npm test`);
  }
  return parseEnvFile(readFileSync(file, 'utf8'));
}

export const stack = loadStackEnv();
export const API_URL = stack.API_URL;
export const FUNCTIONS_URL = `${API_URL}/functions/v1`;
export const SERVICE_KEY = stack.SERVICE_ROLE_KEY;
export const ANON_KEY = stack.ANON_KEY;

export const sql = postgres(stack.DB_URL, { max: 4, prepare: false, onnotice: () => {} });
export const kie = createFakeKieClient(stack.KIE_URL);

export function adminClient(): SupabaseClient {
  return createClient(API_URL, SERVICE_KEY, { auth: { persistSession: false, autoRefreshToken: false } });
}

export function userClient(accessToken: string): SupabaseClient {
  return createClient(API_URL, ANON_KEY, {
    auth: { persistSession: false, autoRefreshToken: false },
    global: { headers: { Authorization: `Bearer ${accessToken}` } },
  });
}

export type TestUser = { id: string; email: string; password: string; accessToken: string };

/** A new user created through the Auth API and signed in with supabase-js. */
export async function createUser(label = 'user'): Promise<TestUser> {
  const email = `${label}-${randomUUID().slice(0, 8)}@example.test`;
  const password = `pw-${randomUUID()}`;
  const { data, error } = await adminClient().auth.admin.createUser({ email, password, email_confirm: true });
  if (error || !data.user) throw new Error(`createUser failed: ${error?.message}`);
  const anon = createClient(API_URL, ANON_KEY, { auth: { persistSession: false, autoRefreshToken: false } });
  const signed = await anon.auth.signInWithPassword({ email, password });
  if (signed.error || !signed.data.session) throw new Error(`sign-in failed: ${signed.error?.message}`);
  return { id: data.user.id, email, password, accessToken: signed.data.session.access_token };
}

export type GenerationRow = Record<string, any> & {
  id: string; status: string; preview_status: string; updated_at: Date;
};

export async function generation(id: string): Promise<GenerationRow> {
  const [row] = await sql<GenerationRow[]>`select * from public.generations where id = ${id}`;
  return row;
}

/** Inserts a generation row the way the platform does before calling KIE. */
export async function insertGeneration(g: {
  userId: string; type: 'photo' | 'video' | string; taskId?: string | null; model?: string;
  status?: string; assetUrl?: string | null; createdAt?: Date;
}): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.generations (user_id, type, status, task_id, model, asset_url, created_at)
    values (${g.userId}, ${g.type}, ${g.status ?? 'pending'}, ${g.taskId ?? null}, ${g.model ?? null},
            ${g.assetUrl ?? null}, ${g.createdAt ?? new Date()})
    returning id`;
  return row.id;
}

// ---------------------------------------------------------------- logs

const LOG_FILE = stack.LOG_FILE;

export function logMark(): number {
  return existsSync(LOG_FILE) ? statSync(LOG_FILE).size : 0;
}

/** The log lines written since `mark`, optionally only those mentioning every needle. */
export function logSince(mark: number, ...needles: string[]): string[] {
  const text = readFileSync(LOG_FILE).subarray(mark).toString('utf8');
  return text.split('\n').filter((l) => l && needles.every((n) => l.includes(n)));
}

// ---------------------------------------------------------------- waiting

export { waitFor };

/**
 * Waits until pg_net has delivered everything queued before this call: a request queued now
 * (health) is sent after every earlier one (the worker takes the queue in id order), so once its
 * response is recorded, an earlier request that would have been sent has been. The way to show
 * that something was NOT sent, without a fixed sleep.
 */
export async function netFence(): Promise<void> {
  const [{ id }] = await sql<{ id: number }[]>`select net.http_get(${`${API_URL}/functions/v1/health`}) as id`;
  await waitFor('pg_net to deliver the fence request', async () => (await sql`select 1 from net._http_response where id = ${id}`).length > 0, 20_000);
}

/**
 * Waits until the generation's preview settles: ready, or failed (terminal: a retryable failure
 * leaves the row `none` with its job queued, so `failed` is final).
 */
export function waitForPreview(id: string, timeoutMs = 60_000): Promise<GenerationRow> {
  return waitFor(`preview of ${id}`, async () => {
    const row = await generation(id);
    return row && (row.preview_status === 'ready' || row.preview_status === 'failed') ? row : null;
  }, timeoutMs, 250);
}

// ---------------------------------------------------------------- KIE and functions

export function callbackUrl(secret = stack.KIE_CALLBACK_SECRET): string {
  return `${FUNCTIONS_URL}/kie-callback?secret=${encodeURIComponent(secret)}`;
}

const lastSigned = new Map<string, number>();

/**
 * Headers KIE sends when webhook signing is on (the test stack sets a HMAC key). Each call
 * gets a timestamp not used for the task yet (by this process or by the fake KIE server, as
 * the receipts say), as each of KIE's deliveries does: a signature is good for one body only.
 */
export async function signedHeaders(taskId: string, at?: number): Promise<Record<string, string>> {
  if (!stack.KIE_WEBHOOK_HMAC_KEY) return {};
  let timestamp = at ?? Math.floor(Date.now() / 1000);
  if (at === undefined) {
    const [used] = await sql<{ last: string | null }[]>`select max(signed_at) as last from public.kie_callback_receipts where task_id = ${taskId}`;
    timestamp = Math.max(timestamp, (lastSigned.get(taskId) ?? 0) + 1, Number(used?.last ?? 0) + 1);
    lastSigned.set(taskId, timestamp);
  }
  return {
    'x-webhook-timestamp': String(timestamp),
    'x-webhook-signature': await signKieWebhook(stack.KIE_WEBHOOK_HMAC_KEY, taskId, String(timestamp)),
  };
}

export async function postCallback(body: unknown, taskId: string, opts: { secret?: string; headers?: Record<string, string> } = {}) {
  const res = await fetch(callbackUrl(opts.secret), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await signedHeaders(taskId)), ...opts.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

export async function invoke(name: string, init: { body?: unknown; key?: string; query?: string; method?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
  if (init.key !== '') headers.authorization = `Bearer ${init.key ?? SERVICE_KEY}`;
  const res = await fetch(`${FUNCTIONS_URL}/${name}${init.query ?? ''}`, {
    method: init.method ?? 'POST',
    headers,
    body: init.method === 'GET' ? undefined : JSON.stringify(init.body ?? {}),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

/** Objects written to a storage path, counted from the gateway's storage log. */
export function writesOf(mark: number, path: string): number {
  return logSince(mark, '[Storage] write', `name=${path} `).length;
}
