// The functions gateway on the test stack: verify_jwt as configured, and the edge runtime's
// rules (no native addons, no subprocesses, 2 s CPU and 256 MB per isolate → 546 WORKER_LIMIT),
// with a crash or a limit in one function leaving the others serving. The worker model itself
// (shared isolates, accumulated CPU, beforeunload, wall clock) is tests/runner/runner.test.ts.
import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { signUserJwt } from '../../local/keys.ts';
import { ANON_KEY, createUser, FUNCTIONS_URL, invoke, logMark, logSince, SERVICE_KEY, stack, waitFor } from '../helpers/stack.ts';

describe('gateway', () => {
  it('verify_jwt = true refuses a missing or forged JWT and accepts the legacy keys and a user\'s ES256 token', async () => {
    const probe = (key: string) => invoke('test-verify-jwt', { key, method: 'GET' });
    expect((await probe('')).status).toBe(401);
    // The opaque sb_ keys are not JWTs: the platform's verify_jwt refuses them.
    expect((await probe(stack.SECRET_KEY)).status).toBe(401);
    const forged = await probe(`${ANON_KEY.slice(0, -4)}AAAA`);
    expect(forged.status).toBe(401);
    expect(forged.json.message).toBe('Invalid JWT');
    // HS256 with the shared secret, ES256 against the JWKS (the CLI's verifyHybridJWT)
    for (const key of [ANON_KEY, SERVICE_KEY, (await createUser('gw')).accessToken]) expect((await probe(key)).status).toBe(200);
    expect((await probe(await signUserJwt({ sub: randomUUID(), role: 'authenticated' }, -5))).status).toBe(401);
  });

  it('verify_jwt = false functions are reachable without a JWT', async () => {
    const res = await fetch(`${FUNCTIONS_URL}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('a function that throws answers 500 and the others keep serving', async () => {
    const res = await fetch(`${FUNCTIONS_URL}/test-throws`);
    expect(res.status).toBe(500);
    expect((await fetch(`${FUNCTIONS_URL}/health`)).status).toBe(200);
    expect((await fetch(`${FUNCTIONS_URL}/test-throws`)).status).toBe(500);
  });

  it('a function that loads a native addon fails to boot, as on the platform', async () => {
    const mark = logMark();
    const res = await fetch(`${FUNCTIONS_URL}/test-native-addon`);
    expect(res.status).toBe(503);
    expect((await res.json()).code).toBe('BOOT_ERROR');
    const boot = await waitFor('boot error log', async () => logSince(mark, 'BOOT_ERROR', 'test-native-addon')[0]);
    expect(boot).toMatch(/NotCapable|ffi|Requires/i);
  });

  it('bundle-only: a function reads no file, neither its own modules, nor a package\'s .wasm, nor the stack (imports still load)', async () => {
    const res = await fetch(`${FUNCTIONS_URL}/test-read-files`);
    expect(await res.json()).toEqual({ module: 'NotCapable', packageWasm: 'NotCapable', outside: 'NotCapable' });
  });

  it('a function cannot start a subprocess', async () => {
    const res = await fetch(`${FUNCTIONS_URL}/test-spawn`);
    expect(res.status).toBe(500);
    expect((await res.json()).spawned).toBe(false);
  });

  it('a busy loop past 2 s of CPU gets 546 WORKER_LIMIT; 300 ms does not', async () => {
    const ok = await fetch(`${FUNCTIONS_URL}/test-burn-cpu?ms=300`);
    expect(ok.status).toBe(200);
    const mark = logMark();
    // 8 s of wall-clock spinning: at least 2 s of CPU even on a loaded machine.
    const res = await fetch(`${FUNCTIONS_URL}/test-burn-cpu?ms=8000`);
    expect(res.status).toBe(546);
    expect((await res.json()).code).toBe('WORKER_LIMIT');
    const line = await waitFor('limit log', async () => logSince(mark, 'fn=test-burn-cpu', 'limit=cpu')[0]);
    expect(Number(line.match(/cpuMs=(\d+)/)![1])).toBeGreaterThanOrEqual(2000);
    expect((await fetch(`${FUNCTIONS_URL}/health`)).status).toBe(200);
  });

  it('400 MB of memory gets 546 WORKER_LIMIT; 64 MB does not', async () => {
    const ok = await fetch(`${FUNCTIONS_URL}/test-big-alloc?mb=64`);
    expect(ok.status).toBe(200);
    const mark = logMark();
    const res = await fetch(`${FUNCTIONS_URL}/test-big-alloc?mb=400`);
    expect(res.status).toBe(546);
    expect((await res.json()).code).toBe('WORKER_LIMIT');
    await waitFor('limit log', async () => logSince(mark, 'fn=test-big-alloc', 'limit=memory')[0]);
  });

  it('logs CPU time and peak memory for every request', async () => {
    const mark = logMark();
    await fetch(`${FUNCTIONS_URL}/health`);
    const line = await waitFor('stats line', async () => logSince(mark, '[Gateway] fn=health status=200')[0]);
    expect(line).toMatch(/wallMs=\d+ cpuMs=\d+ peakMb=\d+/);
    expect(stack.LOG_FILE).toBeTruthy();
  });
});
