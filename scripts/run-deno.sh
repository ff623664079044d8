#!/usr/bin/env bash
# Runs a Deno script of this project with the Deno binary that npm installed (package `deno`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/deno-path.sh"
[ -x "$DENO" ] || { echo "Deno is not installed: run npm run setup" >&2; exit 1; }
exec "$DENO" run -A --quiet --config "$ROOT/deno.json" "$@"
