#!/usr/bin/env bash
# npm run build: type-checks every function, script and shared module with Deno, lints them,
# checks that deno.json and package.json pin the same versions, and audits that nothing
# reads the environment at import time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DENO="$ROOT/node_modules/@deno/linux-x64-glibc/deno"
[ -x "$DENO" ] || bash scripts/setup.sh
mapfile -t files < <(ls functions/*/index.ts; find shared scripts -name '*.ts' | sort)
echo "build: deno check (${#files[@]} modules)"
"$DENO" check --quiet --config deno.json "${files[@]}"
echo "build: deno lint"
"$DENO" lint --quiet --config deno.json functions shared scripts
"$DENO" run --quiet --allow-read scripts/check-versions.ts
bash scripts/audit-env-usage.sh
echo "build: ok"
