#!/usr/bin/env bash
# Prints each function's deploy size as Supabase says to check it (`deno info`), on the edge
# runtime's Deno with the functions' import map (functions/deno.json: npm packages from the
# registry, no node_modules, as the platform's bundler resolves them), and fails over the limit:
# 5 MB, the platform's limit for server-side bundling. The figure counts every file of every npm
# package folder the graph reaches, as the deployed bundle stores them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. scripts/edge-deno.sh
LIMIT_MB=5
over=0
for fn in functions/*/index.ts; do
  name=$(basename "$(dirname "$fn")")
  info=$(NO_COLOR=1 "$EDGE_DENO" info --quiet --config functions/deno.json "$fn" 2>&1) \
    || { echo "build: deno info $name failed:" >&2; echo "$info" >&2; exit 1; }
  size=$(echo "$info" | sed -n 's/^size: *//p')
  mb=$(echo "$size" | awk '/KB$/ { printf "%.2f", $1 / 1024; next } /MB$/ { printf "%.2f", $1 + 0; next } /B$/ { printf "%.2f", $1 / 1048576 }')
  [ -n "$mb" ] || { echo "build: no size in deno info's output for $name:" >&2; echo "$info" >&2; exit 1; }
  printf 'build: %-17s %6s MB (deno info, Deno %s)\n' "$name" "$mb" "$("$EDGE_DENO" --version | awk 'NR==1 {print $2}')"
  awk -v m="$mb" -v l="$LIMIT_MB" 'BEGIN { exit !(m > l) }' && { echo "build: $name is over the ${LIMIT_MB} MB limit" >&2; over=1; }
done
exit $over
