// The `relay` job's handler (kie-owner mode with a relay URL) behind a swapped fetch: it posts
// KIE's body unchanged with KIE's signature headers and x-preview-relay, answers the result the
// database records on 2xx, maps the app's answers onto the closed codes (retryable: network,
// 5xx, 408, 429; terminal: another 4xx), and never sends once its claim is lost.
import { describe, expect, it } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';
import type { JobContext } from '../../shared/jobs/runner.ts';
import type { ClaimedJob, JobStore } from '../../shared/jobs/store.ts';
import { relayHandler } from '../../shared/kie/relay.ts';
import { signKieWebhook, verifyKieSignature } from '../../shared/kie/signature.ts';

const BODY = { code: 200, msg: 'success', data: { taskId: 't-1', state: 'success', resultJson: '{"resultUrls":["https://k.test/a.png"]}' } };
const job: ClaimedJob = {
  job_id: '7', kind: 'relay', generation_id: '11111111-1111-4111-8111-111111111111', attempt: 1, lease_ms: 120_000,
  input: { task_id: 't-1', url: 'https://app.example/api/kie', body: BODY, headers: { 'x-webhook-signature': 'sig', 'x-webhook-timestamp': '1700000000' } },
};
const ctx = (current = true): JobContext => ({
  store: {} as JobStore,
  isolate: { take: async () => {}, handBack: async () => {} },
  isCurrent: async () => current,
  writeOnce: () => Promise.reject(new Error('a relay writes no object')),
});

function recorder(answer: () => Response | Promise<Response>) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return await answer();
  }) as typeof globalThis.fetch;
  return { calls, fetch };
}

const run = (fetch: typeof globalThis.fetch, current = true, more: Parameters<typeof relayHandler>[0] = {}) => {
  const h = relayHandler({ fetch, ...more });
  if (!('run' in h)) throw new Error('relay is not a single-job handler');
  return h.run(job, ctx(current));
};

describe('relay handler', () => {
  it('posts the body unchanged with KIE\'s signature headers and x-preview-relay; a 2xx is the result', async () => {
    const r = recorder(() => new Response(null, { status: 204 }));
    expect(await run(r.fetch)).toEqual({ result: { taskId: 't-1', status: 204 }, fields: { taskId: 't-1', status: 204 } });
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0].url).toBe('https://app.example/api/kie');
    expect(r.calls[0].init.method).toBe('POST');
    expect(JSON.parse(String(r.calls[0].init.body))).toEqual(BODY);
    expect(r.calls[0].init.headers).toEqual({
      'x-webhook-signature': 'sig', 'x-webhook-timestamp': '1700000000', 'content-type': 'application/json', 'x-preview-relay': '1',
    });
    expect(r.calls[0].init.redirect).toBe('manual');
  });

  it.each([[500, 'RELAY_FAILED'], [503, 'RELAY_FAILED'], [408, 'RELAY_FAILED'], [429, 'RELAY_FAILED'], [404, 'RELAY_REFUSED'], [401, 'RELAY_REFUSED'], [302, 'RELAY_REFUSED']])(
    'the app answering %i → %s', async (status, code) => {
      const err = await run(recorder(() => new Response('', { status })).fetch).catch((e) => e);
      expect(err).toBeInstanceOf(PreviewError);
      expect([err.code, err.retryable]).toEqual([code, code === 'RELAY_FAILED']);
      expect(err.message).toBe(`The app's webhook answered ${status} to the relayed callback of task t-1`);
    },
  );

  it('a network error is retryable (RELAY_FAILED) and says why', async () => {
    const err = await run(recorder(() => { throw new TypeError('connection refused'); }).fetch).catch((e) => e);
    expect([err.code, err.retryable, err.message]).toEqual(['RELAY_FAILED', true, "Relay to the app's webhook failed: connection refused"]);
  });

  it('with the project\'s webhook key, signs at send time: a retry minutes later still passes the app\'s ±300 s check', async () => {
    const r = recorder(() => new Response('ok'));
    const at = 1_800_000_000_000; // long after KIE's own timestamp in the stored headers
    await run(r.fetch, true, { hmacKey: () => 'the-webhook-key', now: () => at });
    const headers = r.calls[0].init.headers as Record<string, string>;
    expect(headers['x-webhook-timestamp']).toBe('1800000000');
    expect(headers['x-webhook-signature']).toBe(await signKieWebhook('the-webhook-key', 't-1', '1800000000'));
    expect(await verifyKieSignature({
      hmacKey: 'the-webhook-key', taskId: 't-1', timestamp: headers['x-webhook-timestamp'], signature: headers['x-webhook-signature'], nowSeconds: 1_800_000_100,
    })).toBe(true);
  });

  it('sends nothing once the claim is lost (a stale worker must not deliver twice)', async () => {
    const r = recorder(() => new Response('ok'));
    expect(await run(r.fetch, false)).toEqual({ fenced: 'claim_lost_before_relay' });
    expect(r.calls).toEqual([]);
  });
});
