#!/usr/bin/env bash
# npm run bench: our render path in Deno (edge capabilities) vs sharp (Node) and native ffmpeg.
# Inputs are generated under .local/bench; the table is printed and saved to bench/RESULTS.md.
#   bench/bench.sh [--quick]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"   # ffmpeg (inputs, the native anchor), node_modules, the codec modules
. "$ROOT/scripts/deno-path.sh"
exec "$DENO" run --quiet --config "$ROOT/deno.json" -A "$ROOT/bench/run.ts" "$@"
