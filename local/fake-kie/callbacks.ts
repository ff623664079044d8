/** Sending a task's callback(s) to its callBackUrl, signed when an HMAC key is set, at KIE's timing. */
import type { FakeKieCallbackAttempt } from '../fake-kie-client.ts';
import { signKieWebhook } from '../../shared/kie/signature.ts';
import { log } from './http.ts';
import { callbackBody } from './shapes.ts';
import type { FakeKieState, Task } from './task.ts';

export async function sendCallback(
  s: FakeKieState,
  t: Task,
): Promise<FakeKieCallbackAttempt | null> {
  if (!t.callBackUrl) return null;
  const body = callbackBody(s, t);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (s.hmacKey) {
    // each delivery its own timestamp (kie-callback accepts one body per signature)
    t.lastSignedAt = Math.max(Math.floor(Date.now() / 1000), (t.lastSignedAt ?? 0) + 1);
    const ts = String(t.lastSignedAt);
    headers['x-webhook-timestamp'] = ts;
    headers['x-webhook-signature'] = await signKieWebhook(s.hmacKey, t.taskId, ts);
  }
  const attempt: FakeKieCallbackAttempt = {
    n: t.callbacks.length + 1,
    at: new Date().toISOString(),
    url: t.callBackUrl,
    status: 0,
    ok: false,
    done: false,
    error: null,
    durationMs: 0,
    signed: s.hmacKey !== null,
    headers,
    body,
    response: null,
  };
  t.callbacks.push(attempt);
  const started = Date.now();
  try {
    const res = await fetch(t.callBackUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000), // KIE gives the receiver 15 s
    });
    const text = await res.text();
    try {
      attempt.response = JSON.parse(text);
    } catch {
      attempt.response = text.slice(0, 500);
    }
    attempt.status = res.status;
    attempt.ok = res.status === 200;
  } catch (err) {
    attempt.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }
  attempt.durationMs = Date.now() - started;
  attempt.done = true;
  log(
    `callback task=${t.taskId} family=${t.family} n=${attempt.n} status=${attempt.status}${
      attempt.error ? ` error=${JSON.stringify(attempt.error)}` : ''
    }`,
  );
  return attempt;
}

function later(t: Task, ms: number, fn: () => void | Promise<void>): void {
  const id = setTimeout(() => {
    t.timers.delete(id);
    void fn();
  }, ms);
  t.timers.add(id);
}

/**
 * Completes the task after its delay (unless stayPending) and sends its callback(s). A suno task
 * first goes through its progress stages (fake.stages), each with its callback, one after the
 * other: the next stage waits for the receiver's answer, so record-info asked while a callback is
 * being answered tells that callback's stage.
 */
export function schedule(s: FakeKieState, t: Task): void {
  if (t.fake.stayPending || t.callbackScheduled) return;
  t.callbackScheduled = true;
  later(t, t.fake.callbackDelayMs, async () => {
    if (t.family === 'suno') {
      for (const stage of t.fake.stages) {
        t.stage = stage;
        if (t.fake.callback !== 'never') await sendCallback(s, t);
      }
    }
    t.completedAt = Date.now();
    switch (t.fake.callback) {
      case 'never':
        log(`callback task=${t.taskId} status=skipped (callback=never)`);
        return;
      case 'once':
        await sendCallback(s, t);
        return;
      case 'twice':
        await sendCallback(s, t);
        await sendCallback(s, t);
        return;
      case 'concurrent':
        await Promise.all([sendCallback(s, t), sendCallback(s, t)]);
        return;
    }
  });
}
