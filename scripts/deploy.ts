/**
 * Deploys the system to a Supabase project: the README's manual steps, in order, each printed,
 * stopping with a clear message at the first failure. Re-runnable: every step is idempotent.
 *
 *   KIE_API_KEY=… KIE_CALLBACK_SECRET=… [KIE_WEBHOOK_HMAC_KEY=…] \
 *   npm run deploy -- --project-ref <ref> --db-url <postgres URL> [--dry-run] [--only steps]
 *
 *   1 link       supabase link --project-ref <ref>
 *   2 migrations supabase db push --db-url <db-url>
 *   3 secrets    supabase secrets set KIE_API_KEY=… KIE_CALLBACK_SECRET=… [KIE_WEBHOOK_HMAC_KEY=…]
 *   4 functions  scripts/gen-codecs.ts (the codecs' wasm as modules), then
 *                supabase functions deploy kie-callback kie-sync generate-preview library health
 *   5 keys       the project's service key for step 6 (supabase projects api-keys): a secret key
 *                (sb_secret_…) when the project has one, else the legacy service_role JWT, so a
 *                project with only the new keys deploys, and one with only the legacy keys too
 *   6 core       ffmpeg's core wasm into the bucket (over the 20 MB bundle limit; generate-preview
 *                loads it from storage), uploaded unless the same size is already there
 *   7 vault      project_url in the vault (created or updated), and no key: the database calls
 *                the functions with the dispatch secret alone (the migrations make it); an older
 *                deploy's anon_key or service_role_key is deleted. From here on the database
 *                dispatches work, so the core is in place first
 *
 * --dry-run prints the commands (secrets masked) and runs nothing. --only core,vault runs
 * those steps; with --url and --service-key (sb_secret_… or the service_role JWT) given instead
 * of step 5 they can target any stack (the tests run them against the local one). --anon-key is
 * no longer needed and is ignored. Then: npm run smoke.
 * Exits 0 when every step passed, 1 at the first failure, 2 on bad usage.
 */
import { parseArgs } from 'node:util';
import { PREVIEW_BUCKET } from '../shared/config.ts';

// core before vault: once the vault names the project, the trigger and the cron jobs dispatch
// generate-preview, and a poster needs the core in storage by then (else it fails INTERNAL
// and waits for its retry)
const STEPS = ['link', 'migrations', 'secrets', 'functions', 'keys', 'core', 'vault'] as const;
type Step = typeof STEPS[number];
const FUNCTIONS = ['kie-callback', 'kie-sync', 'generate-preview', 'library', 'health'];
const CORE = {
  path: '_runtime/ffmpeg-core-0.12.10.wasm',
  file: 'node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm',
};
const root = new URL('..', import.meta.url).pathname;
const supabase = `${root}node_modules/.bin/supabase`;

type Options = {
  ref?: string;
  dbUrl?: string;
  dryRun: boolean;
  only: Set<Step>;
  bucket: string;
  url?: string;
  serviceKey?: string;
};

class DeployError extends Error {}

function options(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      'project-ref': { type: 'string' },
      'db-url': { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      only: { type: 'string' },
      bucket: { type: 'string', default: PREVIEW_BUCKET }, // another bucket: tests only
      url: { type: 'string' },
      'anon-key': { type: 'string' }, // accepted from older invocations; nothing needs it now
      'service-key': { type: 'string' },
    },
  });
  const only = new Set((values.only ? values.only.split(',') : STEPS) as Step[]);
  for (const s of only) {
    if (!STEPS.includes(s)) {
      throw new DeployError(`--only: unknown step "${s}" (steps: ${STEPS.join(', ')})`);
    }
  }
  const ref = values['project-ref'];
  if (ref !== undefined && !/^[a-z0-9]{20}$/.test(ref)) {
    throw new DeployError(
      `--project-ref must be a project ref (20 lowercase letters and digits), got "${ref}"`,
    );
  }
  const needs = (step: Step, what: string, v: unknown) => {
    if (only.has(step) && !v) throw new DeployError(`step ${step} needs ${what}`);
  };
  for (const s of ['link', 'secrets', 'functions', 'keys'] as const) needs(s, '--project-ref', ref);
  needs('migrations', '--db-url', values['db-url']);
  needs('vault', '--db-url', values['db-url']);
  if (!only.has('keys')) {
    for (const s of ['vault', 'core'] as const) {
      needs(s, '--url (or --project-ref)', values.url ?? ref);
    }
    needs('core', '--service-key (or the keys step)', values['service-key']);
  }
  if (values['anon-key'] !== undefined) {
    console.log('deploy: --anon-key is ignored: the vault holds no key any more');
  }
  if (only.has('secrets') && !values['dry-run']) {
    for (const k of ['KIE_API_KEY', 'KIE_CALLBACK_SECRET']) {
      if (!Deno.env.get(k)) throw new DeployError(`step secrets needs ${k} in the environment`);
    }
  }
  return {
    ref,
    dbUrl: values['db-url'],
    dryRun: values['dry-run']!,
    only,
    bucket: values.bucket!,
    url: (values.url ?? (ref ? `https://${ref}.supabase.co` : undefined))?.replace(/\/+$/, ''),
    serviceKey: values['service-key'],
  };
}

const mask = (s: string) =>
  s.replace(/(KEY|SECRET)=([^ ]{4})[^ ]*/g, '$1=$2…').replace(/:\/\/([^:@/]+):[^@]+@/, '://$1:…@');

async function exec(cmd: string[], o: Options, input?: string): Promise<string> {
  console.log(`deploy:   $ ${mask(cmd.join(' '))}`);
  if (o.dryRun) return '';
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: root,
    stdin: input ? 'piped' : 'null',
    stdout: 'piped',
    stderr: 'piped',
  }).spawn();
  if (input) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(input));
    await w.close();
  }
  const out = await child.output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  if (!out.success) {
    throw new DeployError(
      `${cmd[0].split('/').pop()} exited ${out.code}: ${
        mask(text(out.stderr) || text(out.stdout)).slice(-600)
      }`,
    );
  }
  return text(out.stdout);
}

/**
 * project_url in the vault, created or updated; keys an older deploy put there are removed: the
 * service key never belonged there (pg_net's queue is readable by PUBLIC), and the anon key is
 * not needed since invoke_edge_function sends the dispatch secret alone
 * (migrations/20261203100400_dispatch.sql).
 */
const VAULT_SQL = `
select set_config('deploy.url', :'url', false);
do $$
declare
  existing uuid;
begin
  select id into existing from vault.secrets where name = 'project_url';
  if existing is null then
    perform vault.create_secret(current_setting('deploy.url'), 'project_url', 'read by the preview trigger and pg_cron');
  else
    perform vault.update_secret(existing, current_setting('deploy.url'), 'project_url', 'read by the preview trigger and pg_cron');
  end if;
  delete from vault.secrets where name in ('service_role_key', 'anon_key');
end $$;`;

/** One entry of `supabase projects api-keys -o json` (the Management API's ApiKeyResponse). */
export type ApiKey = {
  name: string;
  api_key?: string | null;
  type?: string | null; // 'legacy' | 'publishable' | 'secret'
  secret_jwt_template?: { role?: string } | null;
};

/**
 * The key deploy uses as the service role: a secret key (sb_secret_…, revealed) when the project
 * has one, else the legacy service_role JWT. New keys first: a project whose legacy keys are
 * disabled still lists them (dyad-sh/dyad#4173 met exactly that), and the CLI itself prefers
 * a secret key whose JWT template is service_role (its status/env output does the same).
 */
export function serviceKeyOf(keys: ApiKey[]): { key: string; kind: 'secret' | 'legacy' } | null {
  const secrets = keys.filter((k) =>
    k.type === 'secret' && typeof k.api_key === 'string' &&
    /^sb_secret_[A-Za-z0-9_-]+$/.test(k.api_key)
  );
  const secret = secrets.find((k) => k.secret_jwt_template?.role === 'service_role') ?? secrets[0];
  if (secret) return { key: secret.api_key!, kind: 'secret' };
  const legacy = keys.find((k) =>
    k.name === 'service_role' && typeof k.api_key === 'string' && k.api_key.startsWith('eyJ')
  );
  return legacy ? { key: legacy.api_key!, kind: 'legacy' } : null;
}

async function run(o: Options): Promise<void> {
  const steps: Record<Step, () => Promise<string | void>> = {
    link: async () => void await exec([supabase, 'link', '--project-ref', o.ref!], o),
    migrations: async () =>
      void await exec([supabase, 'db', 'push', '--include-all', '--db-url', o.dbUrl!], o),
    secrets: async () => {
      const pairs = ['KIE_API_KEY', 'KIE_CALLBACK_SECRET', 'KIE_WEBHOOK_HMAC_KEY']
        .filter((k) => Deno.env.get(k) || (o.dryRun && k !== 'KIE_WEBHOOK_HMAC_KEY'))
        .map((k) => `${k}=${Deno.env.get(k) ?? `<${k}>`}`);
      await exec([supabase, 'secrets', 'set', '--project-ref', o.ref!, ...pairs], o);
    },
    functions: async () => {
      // the codecs' wasm as modules of the graph the bundler ships (generated, not committed)
      await exec([
        Deno.execPath(),
        'run',
        '--quiet',
        '--allow-read',
        '--allow-write',
        'scripts/gen-codecs.ts',
      ], o);
      await exec([supabase, 'functions', 'deploy', ...FUNCTIONS, '--project-ref', o.ref!], o);
    },
    keys: async () => {
      const out = await exec([
        supabase,
        'projects',
        'api-keys',
        '--project-ref',
        o.ref!,
        '--reveal',
        '-o',
        'json',
      ], o);
      if (o.dryRun) return;
      const chosen = serviceKeyOf(JSON.parse(out) as ApiKey[]);
      if (!chosen) {
        throw new DeployError(
          'the project has no secret key (sb_secret_…) and no legacy service_role key: create a secret key (Settings → API Keys)',
        );
      }
      o.serviceKey = chosen.key;
      return chosen.kind === 'secret'
        ? `secret key ${chosen.key.slice(0, 14)}…`
        : 'the legacy service_role key (the project has no secret key)';
    },
    vault: async () => {
      const psql = '/usr/lib/postgresql/15/bin/psql';
      await exec(
        [
          psql,
          o.dbUrl!,
          '-X',
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-v',
          `url=${o.url}`,
          '-f',
          '-',
        ],
        o,
        VAULT_SQL,
      );
      return "project_url (no key: the dispatch secret is the migrations' own)";
    },
    core: async () => {
      const target = `${o.url}/storage/v1/object/${o.bucket}/${CORE.path}`;
      console.log(`deploy:   POST ${target} (x-upsert, application/wasm, ${CORE.file})`);
      if (o.dryRun) return;
      const auth = { authorization: `Bearer ${o.serviceKey}`, apikey: o.serviceKey! };
      const bytes = await Deno.readFile(`${root}${CORE.file}`);
      const info = await fetch(`${o.url}/storage/v1/object/info/${o.bucket}/${CORE.path}`, {
        headers: auth,
      });
      if (info.ok && Number((await info.json()).size) === bytes.length) {
        return `already there (${bytes.length} bytes)`;
      }
      const res = await fetch(target, {
        method: 'POST',
        headers: { ...auth, 'x-upsert': 'true', 'content-type': 'application/wasm' },
        body: bytes,
      });
      if (!res.ok) {
        throw new DeployError(`upload answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
      }
      return `${bytes.length} bytes`;
    },
  };
  const chosen = STEPS.filter((s) => o.only.has(s));
  for (const [i, name] of chosen.entries()) {
    console.log(`deploy: [${i + 1}/${chosen.length}] ${name}${o.dryRun ? ' (dry run)' : ''}`);
    try {
      const detail = await steps[name]();
      if (detail && !o.dryRun) console.log(`deploy:   ok: ${detail}`);
    } catch (err) {
      throw new DeployError(`step ${name} failed: ${err instanceof Error ? err.message : err}`);
    }
  }
  console.log(
    o.dryRun
      ? 'deploy: dry run: nothing was changed'
      : `deploy: done; now prove it: npm run smoke -- --url ${o.url} …`,
  );
}

if (import.meta.main) {
  let o: Options;
  try {
    o = options(Deno.args);
  } catch (err) {
    console.error(`deploy: ${err instanceof Error ? err.message : err}`);
    Deno.exit(2);
  }
  try {
    await run(o);
  } catch (err) {
    console.error(`deploy: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
