#!/usr/bin/env bash
# npm run build: type-checks every function, script and shared module with Deno, checks their
# formatting (deno fmt) and lints them, checks that deno.json and package.json pin the same
# versions, audits that nothing reads the environment at import time, and bundles each
# function to print its size (limit 20 MB).
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
# Each function's bundle (its module graph in one file, as the deploy bundler ships it, codecs
# included): the platform's limit is 20 MB per function.
out=$(mktemp -d)
for fn in functions/*/index.ts; do
  name=$(basename "$(dirname "$fn")")
  "$DENO" bundle --quiet --config deno.json --platform deno "$fn" -o "$out/$name.js" >/dev/null 2>&1 \
    || { echo "build: bundling $name failed" >&2; "$DENO" bundle --config deno.json --platform deno "$fn" -o "$out/$name.js" >&2; exit 1; }
  bytes=$(stat -c %s "$out/$name.js")
  awk -v n="$name" -v b="$bytes" 'BEGIN { printf "build: bundle %-17s %6.2f MB\n", n, b / 1048576 }'
  [ "$bytes" -le $((20 * 1024 * 1024)) ] || { echo "build: $name is over the 20 MB bundle limit" >&2; exit 1; }
done
rm -rf "$out"
echo "build: ok"
