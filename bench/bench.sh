#!/usr/bin/env bash
# npm run bench: our render path on the edge runtime's Deno 2.1.4 (functions/deno.json, edge
# capabilities; started by run.ts, which itself runs on the tooling Deno) vs sharp (Node) and
# native ffmpeg. Inputs are generated under .local/bench; the table is printed and saved to
# bench/RESULTS.md.
#   bench/bench.sh [--quick] [--only=<text>]   (--quick: one process per case, a few cases;
#   --only: the cases whose name contains the text, e.g. --only=waveform; both leave RESULTS.md
#   untouched)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"   # ffmpeg (inputs, the native anchor), node_modules, the codec modules
. "$ROOT/scripts/deno-path.sh"
exec "$DENO" run --quiet --config "$ROOT/deno.json" -A "$ROOT/bench/run.ts" "$@"
