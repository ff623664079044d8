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
  . local/run-stack.sh
  use_run_stack load
  export KIE_WEBHOOK_HMAC_KEY=load-webhook-hmac-key
  bash local/stack.sh start >/dev/null || { echo "load: stack did not start"; exit 1; }
  export STACK_ENV_FILE="$STACK_DIR/stack.env"
fi
NODE_OPTIONS="--experimental-websocket ${NODE_OPTIONS:-}" node_modules/.bin/vitest run --config tests/load/vitest.config.ts "$@"
