// The KIE client takes a slot of KIE's shared rate before every record-info call
// (shared/kie/client.ts; the functions pass the database's kie_rate_acquire, tests/sql/21_kie_rate.sql):
// it waits what the slot says, makes no call when there is no slot within the time it may wait,
// and takes a new slot when it reached its own too late.
import { describe, expect, it } from 'vitest';
import { createKieClient, KIE_RATE_MAX_WAIT_MS, KieRateLimitedError } from '../../shared/kie/client.ts';

const answer = { code: 200, msg: 'success', data: { taskId: 't1', state: 'waiting', resultJson: null } };

function client(rate: (maxWaitMs: number) => Promise<number | null>) {
  const calls: number[] = [];
  const c = createKieClient({
    baseUrl: 'http://kie.test',
    apiKey: 'k',
    rate,
    fetch: () => {
      calls.push(performance.now());
      return Promise.resolve(new Response(JSON.stringify(answer), { headers: { 'content-type': 'application/json' } }));
    },
  });
  return { c, calls };
}

describe('record-info takes a slot of KIE\'s rate first', () => {
  it('waits what the slot says, then calls; asks for a slot within 5 s unless told otherwise', async () => {
    const asked: number[] = [];
    const { c, calls } = client(async (max) => {
      asked.push(max);
      return 80;
    });
    const started = performance.now();
    await c.recordInfo('t1', 'market');
    expect(calls).toHaveLength(1);
    expect(calls[0] - started).toBeGreaterThanOrEqual(75);
    expect(asked[0]).toBeGreaterThan(KIE_RATE_MAX_WAIT_MS - 50);
    expect(asked[0]).toBeLessThanOrEqual(KIE_RATE_MAX_WAIT_MS);
    await c.recordInfo('t1', 'market', { maxWaitMs: 1234 });
    expect(asked[1]).toBeLessThanOrEqual(1234);
  });

  it('no slot within the time it may wait: KieRateLimitedError, and KIE is not called', async () => {
    const { c, calls } = client(async () => null);
    await expect(c.recordInfo('t1', 'market', { maxWaitMs: 100 })).rejects.toBeInstanceOf(KieRateLimitedError);
    expect(calls).toHaveLength(0);
  });

  it('a slot reached more than 50 ms late (a stalled isolate) is given up for a new one', async () => {
    let slots = 0;
    const { c, calls } = client(async () => {
      slots++;
      if (slots === 1) {
        // the event loop stalls for 150 ms while the client waits for its 20 ms slot
        setTimeout(() => {
          const until = performance.now() + 150;
          while (performance.now() < until) { /* busy */ }
        }, 1);
        return 20;
      }
      return 0;
    });
    await c.recordInfo('t1', 'market');
    expect(slots).toBe(2);
    expect(calls).toHaveLength(1);
  });

  it('a slot source that fails fails the call (fails closed: KIE is not called)', async () => {
    const { c, calls } = client(async () => {
      throw new Error('database down');
    });
    await expect(c.recordInfo('t1', 'market')).rejects.toThrow(/database down/);
    expect(calls).toHaveLength(0);
  });
});
