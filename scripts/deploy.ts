/**
 * Deploys the system to a Supabase project: the README's manual steps, in order, each printed,
 * stopping with a clear message at the first failure. Re-runnable: every step is idempotent.
 *
 *   KIE_API_KEY=… KIE_CALLBACK_SECRET=… [KIE_WEBHOOK_HMAC_KEY=…] \
 *   npm run deploy -- --project-ref <ref> --db-url <postgres URL> [--dry-run] [--only steps]
 *
 *   1 link       supabase link --project-ref <ref>
 *   2 migrations supabase db push --db-url <db-url>
 *   3 mode       configure_preview_adoption: previews-only (the app keeps its KIE webhook and its
 *                task columns) or kie-owner (KIE calls kie-callback; with --result-columns the
 *                app's result columns are filled, with --relay-url each callback is relayed to
 *                the app's old webhook, with --expire-kie-tasks tasks past 14 days are failed)
 *   4 secrets    supabase secrets set KIE_API_KEY=… KIE_CALLBACK_SECRET=… [KIE_WEBHOOK_HMAC_KEY=…]
 *   5 functions  scripts/gen-codecs.ts (the codecs' wasm as modules), then
 *                supabase functions deploy kie-callback kie-sync generate-preview library health
 *   6 keys       the project's service key for step 6 (supabase projects api-keys): a secret key
 *                (sb_secret_…) when the project has one, else the legacy service_role JWT, so a
 *                project with only the new keys deploys, and one with only the legacy keys too
 *   7 core       ffmpeg's core wasm into the bucket (over the 20 MB bundle limit; generate-preview
 *                loads it from storage and compiles only the pinned SHA-256), uploaded unless the same bytes are already there
 *   8 vault      project_url in the vault (created or updated), and no key: the database calls
 *                the functions with the dispatch secret alone (the migrations make it); an older
 *                deploy's anon_key or service_role_key is deleted. From here on the database
 *                dispatches work, so the core is in place first
 *
 * Before any step, with --db-url: deploy refuses while a policy lets everybody write the table or
 * the bucket (doctor's blocking "policies" finding): from the migrations on, the pipeline is live,
 * and such a policy lets anyone swap what it renders and stores. Run `npm run adopt` first, or pass
 * --allow-open-policies to deploy anyway.
 *
 * --dry-run prints the commands (secrets masked) and runs nothing. --only core,vault runs
 * those steps; with --url and --service-key (sb_secret_… or the service_role JWT) given instead
 * of step 5 they can target any stack (the tests run them against the local one). --anon-key is
 * no longer needed and is ignored. Then: npm run smoke.
 * Exits 0 when every step passed, 1 at the first failure, 2 on bad usage.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { PREVIEW_BUCKET } from '../shared/config.ts';
import { openWritePolicies } from './doctor.ts';

// core before vault: once the vault names the project, the trigger and the cron jobs dispatch
// generate-preview, and a poster needs the core in storage by then (else it fails INTERNAL
// and waits for its retry)
const STEPS = [
  'link',
  'migrations',
  'mode',
  'secrets',
  'functions',
  'keys',
  'core',
  'vault',
] as const;
type Step = typeof STEPS[number];
const FUNCTIONS = ['kie-callback', 'kie-sync', 'generate-preview', 'library', 'health'];
const CORE = {
  path: '_runtime/ffmpeg-core-0.12.10.wasm',
  file: 'node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm',
};
const root = new URL('..', import.meta.url).pathname;
const psql = '/usr/lib/postgresql/15/bin/psql';
const supabase = `${root}node_modules/.bin/supabase`;

type Options = {
  ref?: string;
  dbUrl?: string;
  dryRun: boolean;
  only: Set<Step>;
  bucket: string;
  url?: string;
  serviceKey?: string;
  mode?: 'previews_only' | 'kie_owner';
  resultColumns: Record<string, string>;
  relayUrl?: string;
  expireKieTasks: boolean;
  allowOpenPolicies: boolean;
};

/** `--result-columns urls=results,first_url=result_url`: which app column gets which value. */
function resultColumns(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw ? raw.split(',') : []) {
    const m = pair.trim().match(/^(urls|first_url|completed_at|thumbnail_url)=([a-z_][a-z0-9_]*)$/);
    if (!m) {
      throw new DeployError(
        `--result-columns: "${pair}" is not key=column (keys: urls, first_url, completed_at, thumbnail_url)`,
      );
    }
    out[m[1]] = m[2];
  }
  return out;
}

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
      mode: { type: 'string' },
      'result-columns': { type: 'string' },
      'relay-url': { type: 'string' },
      'expire-kie-tasks': { type: 'boolean', default: false },
      'allow-open-policies': { type: 'boolean', default: false },
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
  needs('mode', '--db-url', values['db-url']);
  const mode = ({ 'previews-only': 'previews_only', 'kie-owner': 'kie_owner' } as const)[
    values.mode as 'previews-only' | 'kie-owner'
  ];
  if (only.has('mode') && !mode) {
    throw new DeployError(
      'step mode needs --mode previews-only (your app keeps its KIE webhook; this system only makes previews) or --mode kie-owner (KIE calls kie-callback)',
    );
  }
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
    mode,
    resultColumns: resultColumns(values['result-columns']),
    relayUrl: values['relay-url'],
    expireKieTasks: values['expire-kie-tasks']!,
    allowOpenPolicies: values['allow-open-policies']!,
  };
}

const mask = (s: string) =>
  s.replace(/(KEY|SECRET)=([^ ]{4})[^ ]*/g, '$1=$2…').replace(/(relay=[^ ?]*)\?[^ ]*/, '$1?…')
    .replace(/:\/\/([^:@/]+):[^@]+@/, '://$1:…@');

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

/** The mode and what it needs, through the database's own check (configure_preview_adoption). */
const MODE_SQL = `
select mode, result_columns, relay_url is not null as relay, expire_kie_tasks
  from public.configure_preview_adoption(:'mode', :'columns'::jsonb, nullif(:'relay', ''), :'expire'::boolean);`;

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

/** doctor's policies check: a policy that lets everybody write the table or the bucket stops the deploy. */
async function refuseOpenPolicies(dbUrl: string): Promise<void> {
  const sql = postgres(dbUrl, { max: 1, prepare: false, connect_timeout: 10, onnotice: () => {} });
  try {
    const open = await openWritePolicies(sql);
    if (open.length) {
      throw new DeployError(
        `refused: ${
          open.map((f) => f.message).join('; ')
        }. From the migrations on the pipeline is live, ` +
          'and such a policy lets anyone change what it fetches and stores. Run npm run adopt -- --db-url … first ' +
          '(it scopes them to service_role), or pass --allow-open-policies to deploy anyway',
      );
    }
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** A SQL script through psql on --db-url, with psql variables; its unaligned, tuples-only output. */
function psqlScript(o: Options, script: string, vars: Record<string, string>): Promise<string> {
  const args = Object.entries(vars).flatMap(([k, v]) => ['-v', `${k}=${v}`]);
  return exec(
    [psql, o.dbUrl!, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', ...args, '-f', '-'],
    o,
    script,
  );
}

async function run(o: Options): Promise<void> {
  const steps: Record<Step, () => Promise<string | void>> = {
    link: async () => void await exec([supabase, 'link', '--project-ref', o.ref!], o),
    migrations: async () =>
      void await exec([supabase, 'db', 'push', '--include-all', '--db-url', o.dbUrl!], o),
    mode: async () =>
      (await psqlScript(o, MODE_SQL, {
        mode: o.mode!,
        columns: JSON.stringify(o.resultColumns),
        relay: o.relayUrl ?? '',
        expire: String(o.expireKieTasks),
      })).replaceAll('|', ' '),
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
      await psqlScript(o, VAULT_SQL, { url: o.url! });
      return "project_url (no key: the dispatch secret is the migrations' own)";
    },
    core: async () => {
      const target = `${o.url}/storage/v1/object/${o.bucket}/${CORE.path}`;
      console.log(`deploy:   POST ${target} (x-upsert, application/wasm, ${CORE.file})`);
      // generate-preview compiles only the core with the pinned digest (CORE_INTEGRITY
      // otherwise), so only that file is uploaded, and what is stored is compared by digest:
      // a same-size object may be a tampered core (anon could overwrite it while the old
      // public write policies were open)
      const { FFMPEG_CORE_SHA256, sha256Hex } = await import('../shared/preview/core-digest.ts');
      const bytes = await Deno.readFile(`${root}${CORE.file}`);
      const digest = await sha256Hex(bytes);
      if (digest !== FFMPEG_CORE_SHA256) {
        throw new DeployError(
          `${CORE.file} has sha256 ${digest}, not the pinned ${FFMPEG_CORE_SHA256} ` +
            '(shared/preview/core-digest.ts): install the pinned @ffmpeg/core with npm ci',
        );
      }
      console.log(`deploy:   ${CORE.file}: sha256 ${digest}, the pinned one`);
      if (o.dryRun) return;
      const auth = { authorization: `Bearer ${o.serviceKey}`, apikey: o.serviceKey! };
      const info = await fetch(`${o.url}/storage/v1/object/info/${o.bucket}/${CORE.path}`, {
        headers: auth,
      });
      let replaced = '';
      const size = info.ok ? Number((await info.json()).size) : await info.body?.cancel();
      if (size === bytes.length) {
        // the same size says nothing: download it and compare digests (32 MB, once per deploy)
        const stored = await fetch(
          `${o.url}/storage/v1/object/authenticated/${o.bucket}/${CORE.path}`,
          { headers: auth },
        );
        if (stored.ok) {
          const found = await sha256Hex(new Uint8Array(await stored.arrayBuffer()));
          if (found === digest) return `already there (${bytes.length} bytes), same sha256`;
          console.log(`deploy:   the stored core has sha256 ${found}: replacing it`);
          replaced = ` (replaced a core with sha256 ${found})`;
        } else {
          await stored.body?.cancel();
        }
      }
      const res = await fetch(target, {
        method: 'POST',
        headers: { ...auth, 'x-upsert': 'true', 'content-type': 'application/wasm' },
        body: bytes,
      });
      if (!res.ok) {
        throw new DeployError(`upload answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
      }
      return `${bytes.length} bytes${replaced}`;
    },
  };
  if (o.dbUrl && !o.dryRun && !o.allowOpenPolicies) await refuseOpenPolicies(o.dbUrl);
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
