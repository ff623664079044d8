/** KIE's webhook signature: X-Webhook-Timestamp and X-Webhook-Signature (HMAC-SHA256). */
import { timingSafeEqualString } from '../timing-safe.ts';

const encoder = new TextEncoder();

function base64(bytes: Uint8Array): string {
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin);
}

/** base64(HMAC-SHA256(key, taskId + "." + timestamp)), KIE's X-Webhook-Signature. */
export async function signKieWebhook(
  hmacKey: string,
  taskId: string,
  timestamp: string,
): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    encoder.encode(hmacKey),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const sig = await crypto.subtle.sign('HMAC', key, encoder.encode(`${taskId}.${timestamp}`));
  return base64(new Uint8Array(sig));
}

/**
 * Checks KIE's X-Webhook-Timestamp / X-Webhook-Signature for a task id. False when either header
 * is missing, the timestamp is not Unix seconds, it lies outside the window (default 300 s either
 * way), or the signature does not match (compared in constant time).
 */
export async function verifyKieSignature(opts: {
  hmacKey: string;
  taskId: string;
  timestamp: string | null;
  signature: string | null;
  nowSeconds?: number;
  windowSeconds?: number;
}): Promise<boolean> {
  const { hmacKey, taskId } = opts;
  const timestamp = opts.timestamp?.trim() ?? '';
  const signature = opts.signature?.trim() ?? '';
  if (!hmacKey || !taskId || timestamp === '' || signature === '') return false;
  if (!/^\d{1,12}$/.test(timestamp)) return false;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  const window = opts.windowSeconds ?? 300;
  if (Math.abs(now - Number(timestamp)) > window) return false;
  const expected = await signKieWebhook(hmacKey, taskId, timestamp);
  return timingSafeEqualString(expected, signature);
}
