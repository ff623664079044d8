// `npm run deploy`: what it would run against a project (--dry-run: every step, secrets masked,
// nothing changed), its usage errors, and the steps that need no Supabase account (vault,
// core) run for real against this stack, twice (idempotent).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type ApiKey, serviceKeyOf } from '../../scripts/deploy.ts';
import { adminClient, sql, stack } from '../helpers/stack.ts';

async function deploy(args: string[], env: Record<string, string> = {}) {
  const r = await promisify(execFile)('bash', ['scripts/run-deno.sh', 'scripts/deploy.ts', ...args], { timeout: 120_000, env: { ...process.env, ...env } })
    .then((o) => ({ ...o, code: 0 }), (e) => e);
  return { code: r.code as number, out: `${r.stdout}${r.stderr}`.trim().split('\n') };
}

const REF = 'abcdefghijklmnopqrst';
const DB = `postgresql://postgres:db-password@db.${REF}.supabase.co:5432/postgres`;

describe('npm run deploy', () => {
  it('--dry-run prints the eight steps in order with their commands, secrets masked, and changes nothing', async () => {
    const { code, out } = await deploy(['--project-ref', REF, '--db-url', DB, '--dry-run', '--mode', 'kie-owner', '--result-columns', 'urls=results,completed_at=completed_at',
      '--relay-url', 'https://app.example.com/api/kie?token=relay-token-value'], { KIE_API_KEY: 'kie-api-key-value', KIE_CALLBACK_SECRET: 'callback-secret-value' });
    expect(code).toBe(0);
    expect(out.filter((l) => /^deploy: \[\d\/8\]/.test(l))).toEqual(
      ['link', 'migrations', 'mode', 'secrets', 'functions', 'keys', 'core', 'vault'].map((s, i) => `deploy: [${i + 1}/8] ${s} (dry run)`),
    );
    const text = out.join('\n');
    expect(text).toContain(`supabase link --project-ref ${REF}`);
    expect(text).toContain('supabase db push --include-all --db-url postgresql://postgres:…@');
    expect(text).toContain('supabase functions deploy kie-callback kie-sync generate-preview library health');
    expect(text).toContain('KIE_API_KEY=kie-…');
    expect(text).toContain('-v mode=kie_owner -v columns={"urls":"results","completed_at":"completed_at"} -v relay=https://app.example.com/api/kie?…');
    for (const secret of ['kie-api-key-value', 'callback-secret-value', 'db-password', 'relay-token-value']) expect(text).not.toContain(secret);
    expect(out.at(-1)).toBe('deploy: dry run: nothing was changed');
  });

  it('refuses bad usage with a clear message (exit 2) before running anything', async () => {
    expect(await deploy(['--project-ref', REF])).toMatchObject({ code: 2, out: ['deploy: step migrations needs --db-url'] });
    expect(await deploy(['--project-ref', 'not-a-ref', '--db-url', DB])).toMatchObject({ code: 2 });
    expect((await deploy(['--only', 'nope'])).out[0]).toMatch(/unknown step "nope"/);
    expect((await deploy(['--project-ref', REF, '--db-url', DB])).out[0]).toMatch(/^deploy: step mode needs --mode previews-only \(.*\) or --mode kie-owner/);
    expect((await deploy(['--project-ref', REF, '--db-url', DB, '--mode', 'owner'])).out[0]).toMatch(/^deploy: step mode needs --mode/);
    expect((await deploy(['--only', 'mode', '--db-url', DB, '--mode', 'kie-owner', '--result-columns', 'urls=results,thumb=x'])).out[0])
      .toBe('deploy: --result-columns: "thumb=x" is not key=column (keys: urls, first_url, completed_at, thumbnail_url)');
    expect((await deploy(['--project-ref', REF, '--db-url', DB, '--mode', 'previews-only'])).out[0]).toBe('deploy: step secrets needs KIE_API_KEY in the environment');
    expect(await deploy(['--only', 'core', '--url', stack.API_URL])).toMatchObject({ code: 2, out: ['deploy: step core needs --service-key (or the keys step)'] });
  });

  it('keys: a secret key when the project has one (also when the disabled legacy keys are still listed), else the legacy service_role', () => {
    const legacy: ApiKey[] = [{ name: 'anon', type: 'legacy', api_key: 'eyJanon' }, { name: 'service_role', type: 'legacy', api_key: 'eyJservice' }];
    const fresh: ApiKey[] = [
      { name: 'default', type: 'publishable', api_key: 'sb_publishable_abc' },
      { name: 'default', type: 'secret', api_key: 'sb_secret_abc_123', secret_jwt_template: { role: 'service_role' } },
    ];
    expect(serviceKeyOf(fresh)).toEqual({ key: 'sb_secret_abc_123', kind: 'secret' });
    expect(serviceKeyOf([...legacy, ...fresh])).toEqual({ key: 'sb_secret_abc_123', kind: 'secret' });
    expect(serviceKeyOf(legacy)).toEqual({ key: 'eyJservice', kind: 'legacy' });
    // a secret the listing did not reveal is no key; the one whose template is service_role wins
    expect(serviceKeyOf([...legacy, { name: 'default', type: 'secret', api_key: 'sb_secret_abc••••••' }])).toEqual({ key: 'eyJservice', kind: 'legacy' });
    expect(serviceKeyOf([{ name: 'ci', type: 'secret', api_key: 'sb_secret_ci' }, fresh[1]])).toEqual({ key: 'sb_secret_abc_123', kind: 'secret' });
    expect(serviceKeyOf([fresh[0], legacy[0]])).toBeNull();
  });

  it('core and vault against this stack with the secret key only: the vault holds project_url and no key; the core is uploaded once', async () => {
    const bucket = `deploy-${randomUUID().slice(0, 8)}`;
    expect((await adminClient().storage.createBucket(bucket, { public: false })).error).toBeNull();
    // what an older deploy left: both go
    for (const name of ['anon_key', 'service_role_key']) {
      await sql`delete from vault.secrets where name = ${name}`;
      await sql`select vault.create_secret(${`old-${name}`}, ${name})`;
    }
    const args = ['--only', 'core,vault', '--url', stack.API_URL, '--db-url', stack.DB_URL, '--service-key', stack.SECRET_KEY, '--bucket', bucket];
    const first = await deploy(args);
    expect(first.code, first.out.join('\n')).toBe(0);
    expect(first.out).toContain('deploy: [1/2] core');
    expect(first.out).toContain('deploy: [2/2] vault');
    expect(first.out.find((l) => l.startsWith('deploy:   ok: ') && l.endsWith(' bytes'))).toMatch(/ok: \d{8} bytes$/);
    const secrets = await sql<{ name: string; value: string }[]>`select name, decrypted_secret as value from vault.decrypted_secrets where name in ('project_url', 'anon_key', 'service_role_key') order by name`;
    expect(secrets).toEqual([{ name: 'project_url', value: stack.API_URL }]);
    // an older invocation (legacy keys, --anon-key) still works; --anon-key is ignored
    const second = await deploy(['--only', 'core,vault', '--url', stack.API_URL, '--db-url', stack.DB_URL, '--anon-key', stack.ANON_KEY,
      '--service-key', stack.SERVICE_ROLE_KEY, '--bucket', bucket]);
    expect(second.code, second.out.join('\n')).toBe(0);
    expect(second.out).toContain('deploy: --anon-key is ignored: the vault holds no key any more');
    expect(second.out.some((l) => /ok: already there \(\d+ bytes\)/.test(l))).toBe(true);
    expect((await sql`select name from vault.secrets where name = 'anon_key'`)).toHaveLength(0);
    const { data } = await adminClient().storage.from(bucket).list('_runtime');
    expect(data?.map((f) => f.name)).toEqual(['ffmpeg-core-0.12.10.wasm']);
  }, 120_000);
});
