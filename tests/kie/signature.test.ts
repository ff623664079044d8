import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signKieWebhook, verifyKieSignature } from '../../shared/kie/signature.ts';
import { timingSafeEqualString } from '../../shared/timing-safe.ts';

const key = 'test-hmac-key';
const taskId = 'ee603959-debb-48d1-98c4-a6d1c717eba6';
const now = 1_760_000_000;

describe('signKieWebhook', () => {
  it('is base64(HMAC-SHA256(key, taskId + "." + timestamp)), as KIE documents', async () => {
    const ts = String(now);
    const expected = createHmac('sha256', key).update(`${taskId}.${ts}`).digest('base64');
    expect(await signKieWebhook(key, taskId, ts)).toBe(expected);
  });
});

describe('verifyKieSignature', () => {
  it('accepts a correct signature inside the window', async () => {
    const ts = String(now - 10);
    const signature = await signKieWebhook(key, taskId, ts);
    expect(
      await verifyKieSignature({ hmacKey: key, taskId, timestamp: ts, signature, nowSeconds: now }),
    ).toBe(true);
    // a future timestamp inside the window (clock skew) is fine too
    const ts2 = String(now + 60);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: ts2,
        signature: await signKieWebhook(key, taskId, ts2),
        nowSeconds: now,
      }),
    ).toBe(true);
  });

  it('refuses a wrong key, another task id, a tampered timestamp', async () => {
    const ts = String(now);
    const signature = await signKieWebhook(key, taskId, ts);
    expect(
      await verifyKieSignature({
        hmacKey: 'other',
        taskId,
        timestamp: ts,
        signature,
        nowSeconds: now,
      }),
    ).toBe(false);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId: 'other',
        timestamp: ts,
        signature,
        nowSeconds: now,
      }),
    ).toBe(
      false,
    );
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: String(now + 1),
        signature,
        nowSeconds: now,
      }),
    ).toBe(false);
  });

  it('refuses a stale timestamp (outside the default 300 s window) and honours windowSeconds', async () => {
    const ts = String(now - 301);
    const signature = await signKieWebhook(key, taskId, ts);
    expect(
      await verifyKieSignature({ hmacKey: key, taskId, timestamp: ts, signature, nowSeconds: now }),
    ).toBe(false);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: ts,
        signature,
        nowSeconds: now,
        windowSeconds: 600,
      }),
    ).toBe(true);
    const future = String(now + 301);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: future,
        signature: await signKieWebhook(key, taskId, future),
        nowSeconds: now,
      }),
    ).toBe(false);
  });

  it('refuses missing headers, an empty key, and a non-numeric or millisecond timestamp', async () => {
    const ts = String(now);
    const signature = await signKieWebhook(key, taskId, ts);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: null,
        signature,
        nowSeconds: now,
      }),
    ).toBe(false);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: ts,
        signature: null,
        nowSeconds: now,
      }),
    ).toBe(false);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: '',
        signature: '',
        nowSeconds: now,
      }),
    ).toBe(false);
    expect(
      await verifyKieSignature({ hmacKey: '', taskId, timestamp: ts, signature, nowSeconds: now }),
    ).toBe(false);
    const ms = String(now * 1000);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: ms,
        signature: await signKieWebhook(key, taskId, ms),
        nowSeconds: now,
      }),
    ).toBe(false);
    expect(
      await verifyKieSignature({
        hmacKey: key,
        taskId,
        timestamp: '12abc',
        signature,
        nowSeconds: now,
      }),
    ).toBe(false);
  });

  it('uses the real clock when nowSeconds is not given', async () => {
    const ts = String(Math.floor(Date.now() / 1000));
    const signature = await signKieWebhook(key, taskId, ts);
    expect(await verifyKieSignature({ hmacKey: key, taskId, timestamp: ts, signature })).toBe(true);
  });
});

describe('timingSafeEqualString', () => {
  it('compares exactly', () => {
    expect(timingSafeEqualString('secret', 'secret')).toBe(true);
    expect(timingSafeEqualString('', '')).toBe(true);
    expect(timingSafeEqualString('secret', 'secreT')).toBe(false);
    expect(timingSafeEqualString('secret', 'secret ')).toBe(false);
    expect(timingSafeEqualString('secret', '')).toBe(false);
    expect(timingSafeEqualString('', 'x')).toBe(false);
    expect(timingSafeEqualString('é', 'e')).toBe(false);
    expect(timingSafeEqualString('ключ', 'ключ')).toBe(true);
    // a prefix is not equal, whatever the padding
    expect(timingSafeEqualString('abc\u0000', 'abc')).toBe(false);
  });
});
