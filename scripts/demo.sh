#!/usr/bin/env bash
# npm run demo [-- --once]: installs what is missing, starts the local stack (Postgres,
# gateway, fake KIE), sends real photos and videos through KIE task → callback → sync →
# trigger → preview (scripts/demo.ts), prints the table and the library page's login link,
# then keeps the stack serving until Ctrl-C. With --once it exits after the table (non-zero
# if any preview is not ready) and stops the stack if it started it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
once=false
for a in "$@"; do [ "$a" = --once ] && once=true; done
bash scripts/setup.sh
export STACK_DIR=${STACK_DIR:-$ROOT/.local/dev}
started=false
if ! bash local/stack.sh status >/dev/null 2>&1; then
  echo "demo: starting the local stack…"
  bash local/stack.sh start >/dev/null
  started=true
fi
stop_stack() { if [ "$started" = true ]; then bash local/stack.sh stop; fi; }
rc=0
bash scripts/run-deno.sh scripts/demo.ts "--stack-env=$STACK_DIR/stack.env" || rc=$?
if [ "$once" = true ]; then
  stop_stack
  exit "$rc"
fi
trap 'echo; stop_stack; exit 0' INT TERM
echo "demo: serving until Ctrl-C (logs: $STACK_DIR/logs/stack.log)"
while true; do sleep 3600 & wait $!; done
