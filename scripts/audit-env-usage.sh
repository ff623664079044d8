#!/usr/bin/env bash
# Fails when any function, shared or script module reads the environment at import time.
#   scripts/audit-env-usage.sh [module…]   (default: functions/*/index.ts and shared/**/*.ts)
# Each module is imported by Deno with env access denied: a top-level Deno.env / process.env
# read throws there and names the module. Config must be read lazily (shared/config.ts).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. "$ROOT/scripts/deno-path.sh"
if [ $# -gt 0 ]; then
  modules=("$@")
else
  mapfile -t modules < <(ls functions/*/index.ts; find shared -name '*.ts' ! -name '*.d.ts' | sort)
fi
exec "$DENO" run --quiet --no-prompt --config deno.json --deny-env --allow-read --deny-net \
  scripts/audit-env-usage.ts "${modules[@]}"
