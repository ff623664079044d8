// npm run doctor on this run's stack (a fresh project with every migration and deploy step):
// no blocking finding and no warning; and its usage errors. The legacy fixture's findings are
// asserted in tests/adoption/lensroom.test.ts.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { OWN_COLUMNS } from '../../scripts/doctor.ts';
import { sql, stack } from '../helpers/stack.ts';

async function doctor(args: string[]) {
  const r = await promisify(execFile)('bash', ['scripts/run-deno.sh', 'scripts/doctor.ts', ...args], { timeout: 60_000 })
    .then((o) => ({ ...o, code: 0 }), (e) => e);
  return { code: r.code as number, out: `${r.stdout}${r.stderr}` };
}

describe('npm run doctor', () => {
  it('finds nothing to fix on a freshly deployed stack (exit 0)', async () => {
    const { code, out } = await doctor(['--db-url', stack.DB_URL, '--json']);
    expect(code, out).toBe(0);
    const { findings } = JSON.parse(out) as { findings: { level: string; check: string }[] };
    expect(findings.filter((f) => f.level !== 'info'), out).toEqual([]);
    // other suites leave rows to report (failed previews and their jobs, not-previewable rows, planted orphans): only as info
    expect(findings.every((f) => ['mode', 'coverage', 'backfill', 'extensions', 'orphans', 'jobs', 'cron'].includes(f.check)), out).toBe(true);
    expect(findings.find((f) => f.check === 'mode')).toMatchObject({ level: 'info', message: expect.stringMatching(/^kie_owner: /) });
    // this stack's pg_cron (Debian 12's 1.4.2) knows minutes only: the sweep's cadence is said, as info
    expect(findings.filter((f) => f.check === 'cron')).toEqual([
      expect.objectContaining({ level: 'info', message: expect.stringMatching(/^pg_cron 1\.4\S* runs the preview sweep every minute/) }),
    ]);
  });

  it('knows the same own columns as the migrations (it may run before them)', async () => {
    const [{ cols }] = await sql<{ cols: string[] }[]>`select public.preview_own_columns() as cols`;
    expect(OWN_COLUMNS).toEqual(cols);
  });

  it('prints findings as text with the masked URL', async () => {
    const { code, out } = await doctor(['--db-url', stack.DB_URL]);
    expect(code).toBe(0);
    expect(out).toMatch(/^doctor: postgresql:\/\/postgres:…@127\.0\.0\.1:\d+\/postgres$/m);
    expect(out).toMatch(/^doctor: 0 blocking, 0 warning\(s\), \d+ info$/m);
    expect(out).not.toContain(':postgres@');
  });

  it('refuses bad usage (exit 2) and an unreachable database (exit 1)', async () => {
    expect((await doctor([])).code).toBe(2);
    const down = await doctor(['--db-url', 'postgresql://postgres:x@127.0.0.1:1/postgres']);
    expect(down.code).toBe(1);
    expect(down.out).toMatch(/^doctor: /m);
  });
});
