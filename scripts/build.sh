#!/usr/bin/env bash
# npm run build: type-checks every function, script and shared module with Deno, checks their
# formatting (deno fmt) and lints them, checks that the import maps and package.json pin the
# same versions, audits that nothing reads the environment at import time, and prints each
# function's deploy size (limit 5 MB).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. "$ROOT/scripts/deno-path.sh"
[ -x "$DENO" ] || bash scripts/setup.sh
"$DENO" run --quiet --allow-read --allow-write scripts/gen-codecs.ts
mapfile -t files < <(ls functions/*/index.ts; find shared scripts local bench -name '*.ts' | sort)
echo "build: deno check (${#files[@]} modules)"
"$DENO" check --quiet --config deno.json "${files[@]}"
echo "build: deno fmt --check"
"$DENO" fmt --check --quiet --config deno.json
echo "build: deno lint"
"$DENO" lint --quiet --config deno.json functions shared scripts local bench
"$DENO" run --quiet --allow-read scripts/check-versions.ts
bash scripts/audit-env-usage.sh
# Each function's deploy size as the platform measures it: `deno info` under the runtime's Deno
# (2.1.4), with the functions' import map and no node_modules, so npm packages resolve from the
# registry as the platform's bundler resolves them. The figure counts every file of every npm
# package folder the graph reaches, as the bundle does (the limit is 5 MB with server-side
# bundling, what `supabase functions deploy` does without Docker).
bash scripts/function-sizes.sh
echo "build: ok"
