// DNS rebinding (issue 10): the guard resolves a name and checks the address, then fetch would
// resolve it again. Run under Deno, the functions' runtime (tests/helpers/rebind-probe.ts): a
// plain-http download goes to the address the guard checked, never to a second answer; the
// probe's unpinned control shows what would happen otherwise.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function probe(mode: 'pinned' | 'unpinned' | 'no-pinner'): { outcome: string; hits: number } {
  const out = execFileSync('bash', ['scripts/run-deno.sh', 'tests/helpers/rebind-probe.ts', mode], { encoding: 'utf8', timeout: 30_000 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('DNS rebinding on plain http', () => {
  it('control: fetched unpinned, the second resolution reaches the internal trap', () => {
    expect(probe('unpinned')).toEqual({ outcome: 'fetched 15 bytes', hits: 1 });
  });

  it('pinned to the checked public address: the trap gets no request (the download fails instead)', () => {
    const r = probe('pinned');
    expect(r.hits).toBe(0);
    expect(['SOURCE_UNREACHABLE', 'TIMEOUT']).toContain(r.outcome);
  });

  it('a runtime that cannot pin refuses plain http by name instead of fetching it unpinned', () => {
    expect(probe('no-pinner')).toEqual({ outcome: 'SOURCE_FORBIDDEN', hits: 0 });
  });
});
