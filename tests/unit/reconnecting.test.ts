// The one retry policy of every database call (shared/db.ts reconnecting), on a fake clock: a
// connection error is tried again with waits of 0.2 s doubling to 2 s, for about 5 s when no job is
// held, or until the `until` a held job's lease sets; any other error at once. And the calls a
// request makes first go through it: the dispatch secret's check (a pooled connection that died
// with a Postgres restart answered a dispatch 500 before).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dispatchSecretOk, reconnecting, RECONNECT_BUDGET_MS, type Sql } from '../../shared/db.ts';

const adminShutdown = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

/**
 * fn's tries (fake-clock ms since the start) while `fail` says whether a try fails, and how it
 * ended. `until`: ms since the start.
 */
async function tries(fail: (t: number) => Error | null, until?: number | (() => number)) {
  const t0 = performance.now();
  const at: number[] = [];
  const result = reconnecting(async () => {
    const t = performance.now() - t0;
    at.push(t);
    const err = fail(t);
    if (err) throw err;
    return 'ok';
  }, { until: until === undefined ? undefined : () => t0 + (typeof until === 'function' ? until() : until) }).catch((err: Error) => err);
  await vi.advanceTimersByTimeAsync(60_000);
  return { at, result: await result };
}

describe('reconnecting: the one retry policy', () => {
  it('retries a connection error with waits of 0.2, 0.4, 0.8, 1.6, 2 s: about 5 s when no job is held', async () => {
    const { at, result } = await tries(() => refused());
    expect(at).toEqual([0, 200, 600, 1400, 3000, 5000]);
    expect(at.at(-1)).toBeLessThanOrEqual(RECONNECT_BUDGET_MS);
    expect(result).toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('a server back within the budget: the call succeeds', async () => {
    const { at, result } = await tries((t) => (t < 3_000 ? adminShutdown() : null));
    expect(result).toBe('ok');
    expect(at).toEqual([0, 200, 600, 1400, 3000]);
  });

  it('with `until` (a held job\'s lease less its margin) it keeps trying every 2 s up to it, read again after each failure', async () => {
    let lease = 10_000;
    const { at, result } = await tries((t) => {
      if (t >= 7_000) lease = 14_000; // a heartbeat moved the lease on (the database came back for it)
      return refused();
    }, () => lease);
    expect(at).toEqual([0, 200, 600, 1400, 3000, 5000, 7000, 9000, 11000, 13000]);
    expect(result).toMatchObject({ code: 'ECONNREFUSED' });
    const back = await tries((t) => (t < 8_000 ? refused() : null), 28_000);
    expect(back.result).toBe('ok');
  });

  it('throws any other error at once', async () => {
    const { at, result } = await tries(() => Object.assign(new Error('permission denied'), { code: '42501' }));
    expect(at).toEqual([0]);
    expect(result).toMatchObject({ code: '42501' });
  });
});

describe('the first call of a request', () => {
  it('the dispatch secret\'s check on a pooled connection that died with a restart is retried, not answered 500', async () => {
    let n = 0;
    const query = () => (n++ === 0 ? Promise.reject(adminShutdown()) : Promise.resolve([{ ok: true }]));
    const ok = dispatchSecretOk('s3cret', Object.assign(query, { json: (v: unknown) => v }) as unknown as Sql);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await ok).toBe(true);
    expect(n).toBe(2);
  });
});
