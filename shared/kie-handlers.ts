/**
 * The two ways KIE results come in: KIE's webhook (kie-callback) and a manual or scheduled
 * sync from record-info (kie-sync). Both end in syncKieTask.
 */
import { isDispatchRequest, refusedResponse, verifyCaller } from './auth.ts';
import { ConfigError, getConfig } from './config.ts';
import {
  applyKieResult,
  findGenerationByTask,
  kieRateAcquire,
  previewMode,
  queueKieRelay,
  recordKieCallback,
} from './db.ts';
import { errorResponse, json, readJson } from './http.ts';
import { createKieClient, type KieClient } from './kie/client.ts';
import { extractTaskId, KieParseError, parseKieCallback } from './kie/parse.ts';
import { RELAYED_HEADERS } from './kie/relay.ts';
import { verifyKieSignature } from './kie/signature.ts';
import { timingSafeEqualString } from './timing-safe.ts';
import { log } from './log.ts';
import { syncPendingTasks } from './pending-sync.ts';
import { syncKieTask, type SyncStore } from './sync.ts';

const MAX_CALLBACK_BYTES = 256 * 1024;

function syncStore(): SyncStore {
  return {
    findByTask: (t) => findGenerationByTask(t),
    apply: (r) => applyKieResult(r),
    relay: (w, callback) => queueKieRelay(w, callback),
  };
}

/**
 * In previews_only mode the app's own webhook owns its KIE tasks: neither KIE's callbacks nor a
 * sync may write them (apply_kie_result refuses too). The answer says what to do instead.
 */
async function refusedInPreviewsOnly(): Promise<Response | null> {
  if (await previewMode() === 'kie_owner') return null;
  return errorResponse(
    409,
    'PREVIEWS_ONLY',
    "This project runs in previews_only mode: the app's own KIE webhook writes its tasks. " +
      'Point KIE at that webhook, or deploy with --mode kie-owner to hand KIE callbacks to this system.',
  );
}

function kieClient(): KieClient | null {
  const { kie } = getConfig();
  return kie.apiKey
    ? createKieClient({
      baseUrl: kie.baseUrl,
      apiKey: kie.apiKey,
      timeoutMs: kie.timeoutMs,
      rate: kieRateAcquire,
    })
    : null;
}

export async function handleKieCallback(req: Request): Promise<Response> {
  const config = getConfig();
  const expected = config.kie.callbackSecret;
  if (!expected) throw new ConfigError('Missing environment variable KIE_CALLBACK_SECRET');
  const presented = new URL(req.url).searchParams.get('secret') ?? '';
  if (!timingSafeEqualString(presented, expected)) {
    log.error('[Webhook]', 'Rejected callback: missing or wrong secret');
    return errorResponse(401, 'UNAUTHORIZED', 'Missing or wrong callback secret');
  }
  if (req.method !== 'POST') {
    return errorResponse(405, 'METHOD_NOT_ALLOWED', 'KIE callbacks are POST');
  }
  const declared = Number(req.headers.get('content-length') ?? 0);
  if (declared > MAX_CALLBACK_BYTES) {
    return errorResponse(
      413,
      'PAYLOAD_TOO_LARGE',
      `Callback body over ${MAX_CALLBACK_BYTES} bytes`,
    );
  }
  const body = await readJson(req, MAX_CALLBACK_BYTES);
  if (body === null) {
    return errorResponse(
      400,
      'BAD_REQUEST',
      `Body is not a JSON object (or is over ${MAX_CALLBACK_BYTES} bytes)`,
    );
  }
  const taskId = extractTaskId(body);
  if (!taskId) {
    return errorResponse(400, 'BAD_REQUEST', 'No task id at taskId, data.taskId or data.task_id');
  }
  if (config.kie.webhookHmacKey) {
    const valid = await verifyKieSignature({
      hmacKey: config.kie.webhookHmacKey,
      taskId,
      timestamp: req.headers.get('x-webhook-timestamp'),
      signature: req.headers.get('x-webhook-signature'),
    });
    if (!valid) {
      log.error('[Webhook]', 'Rejected callback: bad or stale signature', { taskId });
      return errorResponse(401, 'UNAUTHORIZED', 'Missing, wrong or stale X-Webhook-Signature');
    }
    // KIE signs taskId.timestamp, not the body: a signature is good for one body only.
    const digest = await crypto.subtle.digest(
      'SHA-256',
      new TextEncoder().encode(JSON.stringify(body)),
    );
    const hash = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join(
      '',
    );
    if (
      await recordKieCallback(taskId, Number(req.headers.get('x-webhook-timestamp')), hash) ===
        'replay'
    ) {
      log.error('[Webhook]', 'Rejected callback: signature already used for another body', {
        taskId,
      });
      return errorResponse(
        401,
        'UNAUTHORIZED',
        'This X-Webhook-Signature was already used for another body',
      );
    }
  }
  const refused = await refusedInPreviewsOnly();
  if (refused) {
    log.error('[Webhook]', 'Refused callback: previews_only mode', { taskId });
    return refused;
  }
  log.info('[Webhook]', `Received callback for task: ${taskId}`);
  let result;
  try {
    result = parseKieCallback(body);
  } catch (err) {
    if (err instanceof KieParseError) return errorResponse(400, 'BAD_REQUEST', err.message);
    throw err;
  }
  const headers = Object.fromEntries(
    RELAYED_HEADERS.flatMap((h) => req.headers.has(h) ? [[h, req.headers.get(h)!]] : []),
  );
  const report = await syncKieTask(
    { taskId, result, source: 'callback', callback: { body, headers } },
    { store: syncStore(), kie: kieClient() },
  );
  return json({ ok: true, ...report });
}

export async function handleKieSync(req: Request): Promise<Response> {
  const config = getConfig();
  // verify_jwt is off (sb_ keys are not JWTs): the caller is verified here, a user's token included
  const caller = await verifyCaller(req, config);
  if (caller.role === 'invalid') return refusedResponse();
  // pg_cron's pending sync comes through pg_net with the dispatch secret alone
  const dispatch = caller.role === 'anon' && await isDispatchRequest(req);
  if (caller.role === 'anon' && !dispatch) {
    return errorResponse(401, 'UNAUTHORIZED', 'A user JWT or the service role is required');
  }
  const refused = await refusedInPreviewsOnly();
  if (refused) return refused;
  const body = await readJson(req);
  if (body === null) return errorResponse(400, 'BAD_REQUEST', 'Body is not a JSON object');
  const url = new URL(req.url);
  const taskId = url.searchParams.get('taskId') ??
    (typeof body.taskId === 'string' ? body.taskId : null);
  const mode = url.searchParams.get('mode') ?? body.mode;
  const deps = { store: syncStore(), kie: kieClient() };

  if (taskId) {
    if (dispatch) {
      return errorResponse(403, 'FORBIDDEN', 'A dispatch may only run the pending sync');
    }
    const gen = await findGenerationByTask(taskId);
    // A user may sync only their own task; another user's task looks unknown.
    if (!gen || (caller.role === 'authenticated' && gen.user_id !== caller.userId)) {
      return errorResponse(404, 'NOT_FOUND', `No generation for task ${taskId}`);
    }
    return json({
      results: [await syncKieTask({ taskId, source: 'manual', generation: gen }, deps)],
    });
  }
  if (mode === 'pending') {
    if (caller.role !== 'service_role' && !dispatch) {
      return errorResponse(403, 'FORBIDDEN', 'mode=pending is for the service role and pg_cron');
    }
    if (!dispatch) return json(await syncPendingTasks(config.kie.pendingBatch, deps));
    // pg_cron's run (or whoever read the dispatch secret in pg_net's queue): pg_net keeps the
    // answer in net._http_response, which anon can read, so it carries counts and nothing else
    // (no task id: without the HMAC key a task id is what a forged callback needs)
    try {
      const { results: _details, ...counts } = await syncPendingTasks(
        config.kie.pendingBatch,
        deps,
      );
      return json(counts);
    } catch (err) {
      log.error('[Sync]', `Pending sweep failed: ${err instanceof Error ? err.message : err}`);
      return errorResponse(500, 'INTERNAL_ERROR', 'The pending sync failed (see the function log)');
    }
  }
  return errorResponse(400, 'BAD_REQUEST', 'Give ?taskId=…, {"taskId":"…"} or {"mode":"pending"}');
}
