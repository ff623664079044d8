#!/usr/bin/env bash
# The local Supabase stack without Docker:
#   npm run stack:start | stack:status | stack:stop
#
# Starts, idempotently: a private Postgres 15 cluster with pg_cron and pgTAP
# (local/postgres.sh), the platform bootstrap SQL and the migrations (real supabase
# CLI, local/db-apply.sh), the fake KIE server, and the Deno gateway (functions,
# storage, auth, pg_net stand-in). Then runs `npm run deploy`'s core and vault steps (the
# ffmpeg core's wasm into storage, then the vault secrets the trigger and pg_cron read), and
# prints URLs and keys like `supabase status`. State, logs and stored objects live in $STACK_DIR (.local/dev).
#
# Env: STACK_DIR (.local/dev), API_PORT (54321), DB_PORT (54322), KIE_PORT (54340),
#      plus EDGE_* limits passed to the gateway, PREVIEW_LEASE_SECONDS (sets the database's
#      app.preview_lease), PREVIEW_WORKER_LIMIT (sets app.preview_worker_limit), PREVIEW_DOWNLOAD_TIMEOUT_MS /
#      PREVIEW_MAX_SOURCE_BYTES, PREVIEW_ANIMATED written to functions.env when set (npm test sets some),
#      STACK_MIGRATIONS=none: a platform without this system yet (no migrations, no vault or
#      core step), as an existing project is before adoption (tests/adoption uses it),
#      LEGACY_API_KEYS=off: a project whose legacy anon / service_role keys are disabled (only
#      the sb_ keys work; the gateway refuses the legacy ones and does not give them to functions).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export STACK_DIR=${STACK_DIR:-$ROOT/.local/dev}
case "$STACK_DIR" in /*) ;; *) STACK_DIR="$ROOT/$STACK_DIR" ;; esac
export API_PORT=${API_PORT:-54321} DB_PORT=${DB_PORT:-54322} KIE_PORT=${KIE_PORT:-54340}
export DB_URL="postgresql://postgres:postgres@127.0.0.1:${DB_PORT}/postgres"
# the platform's superuser (the local cluster's bootstrap user): platform.sql and platform-only settings
export ADMIN_DB_URL="postgresql://supabase_admin:postgres@127.0.0.1:${DB_PORT}/postgres"
API_URL="http://127.0.0.1:${API_PORT}"
KIE_URL="http://127.0.0.1:${KIE_PORT}"
RUN="$STACK_DIR/run"
LOGS="$STACK_DIR/logs"
PSQL=/usr/lib/postgresql/15/bin/psql
CALLBACK_SECRET=${KIE_CALLBACK_SECRET:-local-callback-secret}

# The well-known local keys, written down once in local/keys.ts.
load_keys() { eval "$(bash scripts/run-deno.sh local/keys.ts)"; }

# Whether a pid runs. A zombie does not: where PID 1 never reaps orphans (a container's or a CI
# runner's), `kill -0` keeps succeeding for a process that exited.
running() { [ -r "/proc/$1/stat" ] && ! grep -qE '^[0-9]+ \(.*\) Z ' "/proc/$1/stat" 2>/dev/null; }
alive() { [ -f "$RUN/$1.pid" ] && running "$(cat "$RUN/$1.pid")"; }

wait_http() { # url seconds what
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "stack: $3 did not come up at $1 (see $LOGS)" >&2
  return 1
}

start_bg() { # name logfile command…
  local name=$1 logfile=$2; shift 2
  if alive "$name"; then return 0; fi
  reap "$name"
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

write_env_files() {
  cat >"$STACK_DIR/functions.env" <<ENV
KIE_API_KEY=local-kie-api-key
KIE_API_BASE_URL=$KIE_URL
KIE_CALLBACK_SECRET=$CALLBACK_SECRET
PREVIEW_ALLOWED_PRIVATE_HOSTS=127.0.0.1:$KIE_PORT
${KIE_WEBHOOK_HMAC_KEY:+KIE_WEBHOOK_HMAC_KEY=$KIE_WEBHOOK_HMAC_KEY}
${PREVIEW_DOWNLOAD_TIMEOUT_MS:+PREVIEW_DOWNLOAD_TIMEOUT_MS=$PREVIEW_DOWNLOAD_TIMEOUT_MS}
${PREVIEW_MAX_SOURCE_BYTES:+PREVIEW_MAX_SOURCE_BYTES=$PREVIEW_MAX_SOURCE_BYTES}
${PREVIEW_ANIMATED:+PREVIEW_ANIMATED=$PREVIEW_ANIMATED}
ENV
  cat >"$STACK_DIR/stack.env" <<ENV
API_URL=$API_URL
DB_URL=$DB_URL
KIE_URL=$KIE_URL
ANON_KEY=$ANON_KEY
SERVICE_ROLE_KEY=$SERVICE_KEY
PUBLISHABLE_KEY=$PUBLISHABLE_KEY
SECRET_KEY=$SECRET_KEY
KIE_CALLBACK_SECRET=$CALLBACK_SECRET
KIE_WEBHOOK_HMAC_KEY=${KIE_WEBHOOK_HMAC_KEY:-}
LEGACY_API_KEYS=${LEGACY_API_KEYS:-on}
LOG_FILE=$LOGS/stack.log
STACK_DIR=$STACK_DIR
ENV
}

# The claim lease is the database's preview_lease(); a stack may shorten it (npm test does).
# Setting a custom parameter on the database takes the platform's rights (postgres is refused,
# as on a project), so the stack does it as supabase_admin.
set_preview_lease() {
  local lease=""
  [ -n "${PREVIEW_LEASE_SECONDS:-}" ] && lease="${PREVIEW_LEASE_SECONDS} seconds"
  if [ -n "$lease" ]; then
    "$PSQL" "$ADMIN_DB_URL" -X -q -v ON_ERROR_STOP=1 -c "alter database postgres set app.preview_lease = '$lease'" >/dev/null
  else
    "$PSQL" "$ADMIN_DB_URL" -X -q -v ON_ERROR_STOP=1 -c "alter database postgres reset app.preview_lease" >/dev/null
  fi
  # The workers awake at once (preview_worker_limit()): npm test's parallel suites share one stack.
  if [ -n "${PREVIEW_WORKER_LIMIT:-}" ]; then
    "$PSQL" "$ADMIN_DB_URL" -X -q -v ON_ERROR_STOP=1 -c "alter database postgres set app.preview_worker_limit = '$PREVIEW_WORKER_LIMIT'" >/dev/null
  else
    "$PSQL" "$ADMIN_DB_URL" -X -q -v ON_ERROR_STOP=1 -c "alter database postgres reset app.preview_worker_limit" >/dev/null
  fi
}

# What `npm run deploy` does after the migrations, with its own code: the mode (kie-owner: a
# fresh project has no app of its own, so this system takes KIE's callbacks and runs the pending
# sync; STACK_MODE=previews-only for the other), ffmpeg's core wasm into
# storage with the secret key (over the 20 MB bundle limit: generate-preview loads it from there
# at cold start, as on the platform), then the vault (project_url only: no key, pg_net's queue
# is readable by PUBLIC and the dispatch secret is the migrations' own; an older stack's
# anon_key or service_role_key is removed).
deploy_steps() {
  bash scripts/run-deno.sh scripts/deploy.ts --only mode,core,vault --mode "${STACK_MODE:-kie-owner}" \
    --url "$API_URL" --db-url "$DB_URL" \
    --service-key "$SECRET_KEY" >"$LOGS/deploy-steps.log" 2>&1 \
    || { cat "$LOGS/deploy-steps.log" >&2; exit 1; }
}

start() {
  bash scripts/setup.sh
  load_keys
  mkdir -p "$RUN" "$LOGS"
  bash local/postgres.sh start >/dev/null
  local apply=()
  [ "${STACK_MIGRATIONS:-}" = none ] && apply=(--platform-only)
  bash local/db-apply.sh "${apply[@]}" >"$LOGS/db-apply.log" 2>&1 || { cat "$LOGS/db-apply.log" >&2; exit 1; }
  write_env_files
  set_preview_lease
  FAKE_KIE_PORT=$KIE_PORT FAKE_KIE_HMAC_KEY=${KIE_WEBHOOK_HMAC_KEY:-} \
    start_bg fake-kie "$LOGS/fake-kie.log" bash scripts/run-deno.sh local/fake-kie.ts
  GATEWAY_PORT=$API_PORT FUNCTIONS_ENV_FILE="$STACK_DIR/functions.env" GATEWAY_QUIET=1 \
    start_bg gateway "$LOGS/gateway.out" bash scripts/run-deno.sh local/gateway.ts
  wait_http "$KIE_URL/health" 30 "fake KIE"
  wait_http "$API_URL/_local/status" 90 "gateway"
  [ "${STACK_MIGRATIONS:-}" = none ] || deploy_steps
  status
}

status() {
  load_keys
  local ok=true
  for s in gateway fake-kie; do alive "$s" || ok=false; done
  bash local/postgres.sh status >/dev/null 2>&1 || ok=false
  if [ "$ok" != true ]; then echo "stack: not running (npm run stack:start)"; return 1; fi
  if [ "$(sed -n 's/^LEGACY_API_KEYS=//p' "$STACK_DIR/stack.env" 2>/dev/null)" = off ]; then
    ANON_KEY="(disabled) $ANON_KEY" SERVICE_KEY="(disabled) $SERVICE_KEY"
  fi
  cat <<STATUS
local stack is running ($STACK_DIR)

         API URL: $API_URL
   Functions URL: $API_URL/functions/v1
     Storage URL: $API_URL/storage/v1
    Library page: $API_URL/library
          DB URL: $DB_URL
  KIE (fake) URL: $KIE_URL
        anon key: $ANON_KEY
service_role key: $SERVICE_KEY
 publishable key: $PUBLISHABLE_KEY
      secret key: $SECRET_KEY
 callback secret: $CALLBACK_SECRET
            logs: $LOGS/stack.log
STATUS
}

# What a crashed service left: members of its process group (start_bg makes each service a group
# leader, and the gateway's function workers are in its group) that are this stack's (their
# command line names $STACK_DIR: the workers run $STACK_DIR/tmp/isolate-*.ts). A worker also
# exits by itself when the gateway's end of its stdin closes; this catches any that did not.
reap() { # service
  local pid p
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 0
  for p in $(pgrep -g "$pid" 2>/dev/null); do
    [ "$p" = "$pid" ] && continue
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$STACK_DIR"; then
      kill -KILL "$p" 2>/dev/null && echo "stack: killed $1's leftover process $p" >&2
    fi
  done
  return 0
}

stop() {
  for s in gateway fake-kie; do
    if alive "$s"; then
      local pid; pid=$(cat "$RUN/$s.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$pid" || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    reap "$s"
    rm -f "$RUN/$s.pid"
  done
  bash local/postgres.sh stop >/dev/null 2>&1 || true
  echo "stack stopped ($STACK_DIR)"
}

case "${1:-}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
