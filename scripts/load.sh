#!/usr/bin/env bash
# npm run test:load: the load run of issue 7 on its own stack (free ports, loopback only),
# not part of npm test. Writes tests/load/RESULTS.md.
#   LOAD_CALLBACKS (1000), LOAD_BACKFILL (1000), LOAD_STACK_ENV=<file> to reuse a running stack.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh || exit 1
if [ -n "${LOAD_STACK_ENV:-}" ]; then
  export STACK_ENV_FILE=$LOAD_STACK_ENV
else
  export STACK_DIR="$ROOT/.local/load-run-$$"
  free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
  export API_PORT=$(free_port) DB_PORT=$(free_port) KIE_PORT=$(free_port)
  export KIE_WEBHOOK_HMAC_KEY=load-webhook-hmac-key
  cleanup() {
    bash scripts/stack.sh stop >/dev/null 2>&1 || true
    [ -d "$STACK_DIR/logs" ] && rm -rf "$ROOT/.local/last-load-logs" && cp -r "$STACK_DIR/logs" "$ROOT/.local/last-load-logs"
    [ -f "$STACK_DIR/pg/LOCATION" ] && rm -rf "$(cat "$STACK_DIR/pg/LOCATION")"
    rm -rf "$STACK_DIR"
  }
  trap cleanup EXIT
  bash scripts/stack.sh start >/dev/null || { echo "load: stack did not start"; exit 1; }
  export STACK_ENV_FILE="$STACK_DIR/stack.env"
fi
NODE_OPTIONS="--experimental-websocket ${NODE_OPTIONS:-}" node_modules/.bin/vitest run --config tests/load/vitest.config.ts "$@"
