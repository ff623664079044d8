#!/usr/bin/env bash
# npm test: installs what is missing, starts its own local stack on free ports (so it never
# collides with a dev stack on 54321/54322), runs every suite, stops what it started:
#   1. npm run build (deno check, lint, version drift, env audit)
#   2. migrations applied twice on the fresh database (db-apply.sh --twice)
#   3. pgTAP suites (tests/sql) with pg_prove
#   4. vitest suites (tests/**/*.test.ts) against the running stack
# Ends with one line "tests: N passed, N failed".
# Pass vitest filters after --, e.g. npm test -- tests/e2e
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh || exit 1

export STACK_DIR="$ROOT/.local/test"
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }

# A fresh stack every run: stop and remove whatever an earlier run left behind.
bash scripts/stack.sh stop >/dev/null 2>&1 || true
[ -f "$STACK_DIR/pg/LOCATION" ] && rm -rf "$(cat "$STACK_DIR/pg/LOCATION")"
rm -rf "$STACK_DIR"

export API_PORT=$(free_port) DB_PORT=$(free_port) KIE_PORT=$(free_port)
export KIE_WEBHOOK_HMAC_KEY=test-webhook-hmac-key
export EXTRA_FUNCTIONS_CONFIG="$ROOT/tests/gateway-functions/config.toml"
trap 'bash scripts/stack.sh stop >/dev/null 2>&1' EXIT

passed=0 failed=0
step() { # name command…
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "!! $name failed"; fi
}

step build bash scripts/build.sh
bash scripts/stack.sh start || { echo "tests: 0 passed, 1 failed (stack did not start)"; exit 1; }
export STACK_ENV_FILE="$STACK_DIR/stack.env"
set -a; . "$STACK_ENV_FILE"; set +a
step "migrations twice" bash scripts/local/db-apply.sh --twice

echo "== pgTAP"
pgtap_out=$(bash scripts/local/pgtap.sh 2>&1); pgtap_rc=$?
echo "$pgtap_out" | tail -15
pgtap_tests=$(echo "$pgtap_out" | sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\).*/\1/p')
pgtap_failed=$(echo "$pgtap_out" | grep -oE 'Failed [0-9]+/[0-9]+' | awk -F'[ /]' '{s+=$2} END {print s+0}')
if [ "$pgtap_rc" = 0 ]; then passed=$((passed + ${pgtap_tests:-0})); else failed=$((failed + ${pgtap_failed:-1})); passed=$((passed + ${pgtap_tests:-0} - ${pgtap_failed:-0})); fi

echo "== vitest"
NODE_OPTIONS="--experimental-websocket ${NODE_OPTIONS:-}" node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile="$STACK_DIR/vitest.json" "$@"
vitest_rc=$?
if [ -f "$STACK_DIR/vitest.json" ]; then
  v=$(node -e "const r=require('$STACK_DIR/vitest.json');console.log(r.numPassedTests, r.numFailedTests + (r.numTotalTests===0?1:0))")
  passed=$((passed + ${v% *})); failed=$((failed + ${v#* }))
elif [ "$vitest_rc" != 0 ]; then
  failed=$((failed + 1))
fi
[ "$vitest_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1

echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
