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

# A stack of this run's own: its own folder and free ports (local/run-stack.sh).
. local/run-stack.sh
use_run_stack test
export KIE_WEBHOOK_HMAC_KEY=test-webhook-hmac-key
# Short lease and download timeout so crash and hang cases recover within a test.
export PREVIEW_LEASE_SECONDS=15 PREVIEW_DOWNLOAD_TIMEOUT_MS=5000
# The vitest files run in parallel on one stack: more workers awake at once than a project's 2, so
# one file's jobs do not wait behind another's (the limit itself: tests/sql and tests/e2e/burst.test.ts).
export PREVIEW_WORKER_LIMIT=6
# tests/faults serves a file one byte over the cap: keep it small (16 MB).
export PREVIEW_MAX_SOURCE_BYTES=16777216
export EXTRA_FUNCTIONS_CONFIG="$ROOT/tests/gateway-functions/config.toml"

passed=0 failed=0
step() { # name command…
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "!! $name failed"; fi
}

step build bash scripts/build.sh
bash local/stack.sh start || { echo "tests: 0 passed, 1 failed (stack did not start)"; exit 1; }
export STACK_ENV_FILE="$STACK_DIR/stack.env"
set -a; . "$STACK_ENV_FILE"; set +a
step "migrations twice" bash local/db-apply.sh --twice
# What a stack restart runs: it must leave the migrations' privileges as they are (pgTAP checks).
step "db-apply again, as a restart does" bash local/db-apply.sh

echo "== pgTAP"
pgtap_out=$(bash local/pgtap.sh 2>&1); pgtap_rc=$?
echo "$pgtap_out" | tail -15
pgtap_tests=$(echo "$pgtap_out" | sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\).*/\1/p')
pgtap_failed=$(echo "$pgtap_out" | grep -oE 'Failed [0-9]+/[0-9]+' | awk -F'[ /]' '{s+=$2} END {print s+0}')
# A failing run without a "Failed N/M" line (bad plan, syntax error, lost connection) still counts.
[ "$pgtap_rc" = 0 ] || [ "${pgtap_failed:-0}" -gt 0 ] || pgtap_failed=1
if [ "$pgtap_rc" = 0 ]; then passed=$((passed + ${pgtap_tests:-0})); else failed=$((failed + ${pgtap_failed:-1})); passed=$((passed + ${pgtap_tests:-0} - ${pgtap_failed:-0})); fi

echo "== vitest"
# vitest runs one file at a time here (2 cores: one worker). The fault files on stacks of their own
# spend minutes waiting for pg_cron's minute and for leases: with no filter given they run in a
# second vitest beside the rest (their own stacks, little CPU), each lane with its own report.
vitest() { # report-name vitest-args…
  local out="$STACK_DIR/$1.json"; shift
  NODE_OPTIONS="--experimental-websocket ${NODE_OPTIONS:-}" node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile="$out" "$@"
}
count() { # report-name rc: adds the report's counts (a missing report after a failure counts as one)
  local out="$STACK_DIR/$1.json"
  if [ -f "$out" ]; then
    local v; v=$(node -e "const r=require('$out');console.log(r.numPassedTests, r.numFailedTests + (r.numTotalTests===0?1:0))")
    passed=$((passed + ${v% *})); failed=$((failed + ${v#* }))
  elif [ "$2" != 0 ]; then
    failed=$((failed + 1))
  fi
}
WAITING=(tests/faults/chaos.test.ts tests/faults/recovery.test.ts)
vitest_rc=0
if [ $# -eq 0 ]; then
  vitest vitest-waiting "${WAITING[@]}" >"$STACK_DIR/vitest-waiting.log" 2>&1 &
  waiting=$!
  vitest vitest "${WAITING[@]/#/--exclude=}"; vitest_rc=$?
  wait "$waiting"; waiting_rc=$?
  echo "== vitest, the waiting fault files (${WAITING[*]}), run beside the rest"
  cat "$STACK_DIR/vitest-waiting.log"
  count vitest "$vitest_rc"; count vitest-waiting "$waiting_rc"
  [ "$waiting_rc" = 0 ] || vitest_rc=$waiting_rc
else
  vitest vitest "$@"; vitest_rc=$?
  count vitest "$vitest_rc"
fi
[ "$vitest_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1

echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
