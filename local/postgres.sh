#!/usr/bin/env bash
# A private Postgres 15 cluster for the local stack (no Docker), from Debian's binaries.
#
#   local/postgres.sh start|stop|crash|status|psql [psql args…]|recreate-db|url
#
# Env:
#   STACK_DIR      local state folder (default .local/dev, relative to the repo root)
#   DB_PORT        TCP port on 127.0.0.1 (default 54322, like `supabase start`)
#   PG_DURABILITY  on (default: fsync, synchronous_commit, full_page_writes, as the platform) | off
#
# The cluster lives in $STACK_DIR/pg (data/, run/ for the socket, postgres.log). When the
# postgres OS user cannot reach that folder (a repo cloned under a root-only path), the
# cluster goes to /var/tmp/kie-previews-pg/<hash of $STACK_DIR's absolute path> instead
# and $STACK_DIR/pg/LOCATION says where. Superuser postgres / password postgres:
#   postgresql://postgres:postgres@127.0.0.1:$DB_PORT/postgres
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STACK_DIR:-.local/dev}
case "$STACK_DIR" in /*) ;; *) STACK_DIR="$REPO_ROOT/$STACK_DIR" ;; esac
DB_PORT=${DB_PORT:-54322}
DB_URL="postgresql://postgres:postgres@127.0.0.1:${DB_PORT}/postgres"

die() { echo "postgres.sh: $*" >&2; exit 1; }

# Durable like the platform unless asked: PG_DURABILITY=off trades crash safety for speed (a
# crash may then lose commits already answered; nothing in npm test uses it).
case "${PG_DURABILITY:-on}" in
  on) DURABILITY="-c fsync=on -c synchronous_commit=on -c full_page_writes=on" ;;
  off) DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off" ;;
  *) die "PG_DURABILITY must be on or off" ;;
esac

[ -x "$PG_BIN/initdb" ] || die "Postgres 15 binaries not found in $PG_BIN (apt-get install postgresql-15; run scripts/setup.sh)"
[ -f /usr/lib/postgresql/15/lib/pg_cron.so ] || die "pg_cron missing (apt-get install postgresql-15-cron; run scripts/setup.sh)"

# Run a command as the postgres OS user (initdb and the server refuse to run as root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

mkdir -p "$STACK_DIR"
STACK_DIR=$(cd "$STACK_DIR" && pwd)

resolve_pg_root() {
  local candidate="$STACK_DIR/pg"
  mkdir -p "$candidate"
  if [ "$(id -u)" != 0 ]; then PG_ROOT=$candidate; return; fi
  if [ -f "$candidate/LOCATION" ]; then PG_ROOT=$(cat "$candidate/LOCATION"); mkdir -p "$PG_ROOT"; chown postgres:postgres "$PG_ROOT"; return; fi
  chown postgres:postgres "$candidate"
  if as_pg test -x "$candidate" -a -w "$candidate" 2>/dev/null; then
    PG_ROOT=$candidate
  else
    local hash
    hash=$(printf '%s' "$STACK_DIR" | sha1sum | cut -c1-12)
    PG_ROOT=/var/tmp/kie-previews-pg/$hash
    mkdir -p "$PG_ROOT"
    chmod 755 /var/tmp/kie-previews-pg
    chown postgres:postgres "$PG_ROOT"
    echo "$PG_ROOT" >"$candidate/LOCATION"
    echo "postgres.sh: $candidate is not reachable by the postgres user; cluster lives in $PG_ROOT" >&2
  fi
}
resolve_pg_root
PGDATA="$PG_ROOT/data"
LOG="$PG_ROOT/postgres.log"
SOCK_DIR="$PG_ROOT/run"
# Unix socket paths are limited to 107 bytes.
if [ ${#SOCK_DIR} -gt 90 ]; then
  SOCK_DIR=/var/tmp/kie-previews-pg/sock-$(printf '%s' "$PG_ROOT" | sha1sum | cut -c1-12)
fi

is_running() {
  [ -f "$PGDATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

init_cluster() {
  [ -f "$PGDATA/PG_VERSION" ] && return 0
  echo "postgres.sh: creating cluster in $PGDATA"
  mkdir -p "$PGDATA" "$SOCK_DIR"
  chown postgres:postgres "$PG_ROOT" "$PGDATA" "$SOCK_DIR" 2>/dev/null || true
  chmod 700 "$PGDATA"
  local pwfile
  pwfile=$(mktemp "$PG_ROOT/pw.XXXXXX")
  echo postgres >"$pwfile"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pwfile"
  # The bootstrap superuser is the platform's (supabase_admin), as on Supabase; `postgres` is
  # created by platform.sql as the non-superuser a project's owner gets.
  if ! as_pg "$PG_BIN/initdb" -D "$PGDATA" -U supabase_admin --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >"$PG_ROOT/initdb.log" 2>&1; then
    rm -f "$pwfile"; cat "$PG_ROOT/initdb.log" >&2; die "initdb failed"
  fi
  rm -f "$pwfile"
  cat >"$PGDATA/pg_hba.conf" <<'EOF'
# local stack: socket connections trusted (the socket dir is private), TCP needs a password
local   all  all                 trust
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
EOF
  cat >>"$PGDATA/postgresql.conf" <<'EOF'

# ---- local stack (local/postgres.sh) ----
listen_addresses = '127.0.0.1'
password_encryption = 'scram-sha-256'
timezone = 'UTC'
log_timezone = 'UTC'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
cron.max_running_jobs = 8
# pg_cron 1.4.2 (Debian 12) has no cron.timezone: it always evaluates schedules in GMT/UTC.
max_worker_processes = 32
max_connections = 200
# durability: as the platform's (fsync, synchronous_commit, full_page_writes on: a commit that
# was answered survives a crash); start() passes them, so an older cluster gets them too
logging_collector = off
log_min_messages = warning
EOF
  chown postgres:postgres "$PGDATA/pg_hba.conf" "$PGDATA/postgresql.conf"
}

start() {
  init_cluster
  if is_running; then
    echo "postgres.sh: already running ($DB_URL)"
    return 0
  fi
  mkdir -p "$SOCK_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$SOCK_DIR" && touch "$LOG" && chown postgres:postgres "$LOG"
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 \
    -o "-p $DB_PORT -k $SOCK_DIR $DURABILITY" start >/dev/null || { tail -n 30 "$LOG" >&2; die "start failed (log: $LOG)"; }
  for _ in $(seq 1 50); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$DB_PORT" && break
    sleep 0.2
  done
  echo "postgres.sh: started ($DB_URL)"
}

stop() {
  if is_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres.sh: stopped"
  else
    echo "postgres.sh: not running"
  fi
}

# An immediate shutdown: no checkpoint, every backend quits at once, and the next start runs
# crash recovery (unlogged tables, such as pg_net's queue, come back empty). What a crash does.
crash() {
  if is_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null
    echo "postgres.sh: crashed (immediate shutdown)"
  else
    echo "postgres.sh: not running"
  fi
}

status() {
  if is_running; then
    echo "postgres: running  url=$DB_URL  data=$PGDATA  log=$LOG"
  else
    echo "postgres: stopped  data=$PGDATA"
    return 3
  fi
}

run_psql() {
  PGPASSWORD=postgres exec "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DB_PORT" -U postgres -d postgres "$@"
}

# Drop and recreate the `postgres` database (what `supabase db reset` would give, without
# dropping the cluster). The server is restarted so pg_cron's launcher reconnects to the
# new database.
recreate_db() {
  is_running || start
  PGPASSWORD=postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DB_PORT" -U postgres -d template1 \
    -c 'drop database if exists postgres with (force)' -c 'create database postgres'
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -m fast -w -t 60 -o "-p $DB_PORT -k $SOCK_DIR $DURABILITY" restart >/dev/null
  for _ in $(seq 1 50); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$DB_PORT" && break
    sleep 0.2
  done
  echo "postgres.sh: database postgres recreated ($DB_URL)"
}

cmd=${1:-status}
shift || true
case "$cmd" in
  start) start ;;
  stop) stop ;;
  crash) crash ;;
  status) status ;;
  psql) run_psql "$@" ;;
  recreate-db) recreate_db ;;
  url) echo "$DB_URL" ;;
  *) die "usage: $0 start|stop|crash|status|psql [args]|recreate-db|url" ;;
esac
