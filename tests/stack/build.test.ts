// The build's environment audit must fail on a module that reads the environment at import
// time, and pass on one that reads it lazily.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

function audit(file: string): { code: number; output: string } {
  try {
    const out = execFileSync('bash', ['scripts/audit-env-usage.sh', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, output: out };
  } catch (err: any) {
    return { code: err.status, output: `${err.stdout}${err.stderr}` };
  }
}

describe('audit-env-usage', () => {
  const dir = mkdtempSync(join(process.cwd(), '.local/audit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it('fails on a top-level Deno.env read and names the module', () => {
    const bad = join(dir, 'bad.ts');
    writeFileSync(bad, "export const key = Deno.env.get('KIE_API_KEY');\n");
    const r = audit(bad);
    expect(r.code).toBe(1);
    expect(r.output).toContain('bad.ts');
  });
  it('fails on a top-level process.env read', () => {
    const bad = join(dir, 'bad-node.ts');
    writeFileSync(bad, "import process from 'node:process';\nexport const key = process.env.KIE_API_KEY;\n");
    expect(audit(bad).code).toBe(1);
  });
  it('passes a module that reads the environment only when called', () => {
    const good = join(dir, 'good.ts');
    writeFileSync(good, "export function key() { return Deno.env.get('KIE_API_KEY'); }\n");
    const r = audit(good);
    expect(r.code).toBe(0);
    expect(r.output).toContain('1 modules import without reading the environment');
  });
});
