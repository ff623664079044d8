/**
 * The `relay` job's handler (kie_owner mode with a relay URL): sends a KIE callback this system
 * accepted on to the app's previous webhook, so whatever the app's webhook does besides writing
 * the row (credits, refunds, notifications) still happens. The body is KIE's callback, unchanged
 * (or, for a result the pending sync or the expiry found, the callback KIE would have sent). KIE
 * signs only `taskId.timestamp` with the project's webhook key, which this system holds too
 * (KIE_WEBHOOK_HMAC_KEY): the relay signs at send time, so the app's own check (±300 s) holds on a
 * retry minutes later as on the first try; without the key KIE's own headers are passed on. The
 * database queued one job per task, ever (queue_kie_relay); the job model retries a failed
 * delivery with the one backoff up to the one attempt cap.
 */
import { PreviewError } from '../errors.ts';
import type { JobHandler } from '../jobs/runner.ts';
import { signKieWebhook } from './signature.ts';

/** KIE's headers the app may check, passed through as received. */
export const RELAYED_HEADERS = ['x-webhook-signature', 'x-webhook-timestamp'] as const;

const RELAY_TIMEOUT_MS = 10_000;

export function relayHandler(
  deps: { fetch?: typeof fetch; hmacKey?: () => string | undefined; now?: () => number } = {},
): JobHandler {
  const send = deps.fetch ?? fetch;
  const now = deps.now ?? Date.now;
  return {
    prefix: '[Relay]',
    success: 'Delivered',
    async run(job, ctx) {
      const { url, body, headers, task_id: taskId } = job.input as {
        url: string;
        body: unknown;
        headers: Record<string, string>;
        task_id: string;
      };
      // a worker whose lease ran out must not deliver twice
      if (!await ctx.isCurrent()) return { fenced: 'claim_lost_before_relay' };
      const key = deps.hmacKey?.();
      const signed: Record<string, string> = { ...headers };
      if (key) {
        const timestamp = String(Math.floor(now() / 1000));
        signed['x-webhook-timestamp'] = timestamp;
        signed['x-webhook-signature'] = await signKieWebhook(key, taskId, timestamp);
      }
      let res: Response;
      try {
        res = await send(url, {
          method: 'POST',
          headers: { ...signed, 'content-type': 'application/json', 'x-preview-relay': '1' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(RELAY_TIMEOUT_MS),
          redirect: 'manual',
        });
        await res.body?.cancel();
      } catch (err) {
        throw new PreviewError(
          'RELAY_FAILED',
          `Relay to the app's webhook failed: ${err instanceof Error ? err.message : err}`,
        );
      }
      if (res.status >= 200 && res.status < 300) {
        return { result: { taskId, status: res.status }, fields: { taskId, status: res.status } };
      }
      const again = res.status >= 500 || res.status === 408 || res.status === 429;
      throw new PreviewError(
        again ? 'RELAY_FAILED' : 'RELAY_REFUSED',
        `The app's webhook answered ${res.status} to the relayed callback of task ${taskId}`,
      );
    },
  };
}
