#!/usr/bin/env bash
# Apply the local platform bootstrap, then the migrations with the real supabase CLI.
#
#   DB_URL=postgresql://postgres:postgres@127.0.0.1:54322/postgres local/db-apply.sh [--twice]
#
# DB_URL defaults to the local cluster on $DB_PORT (default 54322).
# --twice: afterwards re-applies platform.sql and every migration file with psql (each file
# in one transaction) to prove they are re-runnable, and checks the CLI sees nothing
# pending. --platform-only: the bootstrap alone (a project before this system's migrations).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB_URL=${DB_URL:-postgresql://postgres:postgres@127.0.0.1:${DB_PORT:-54322}/postgres}
# The platform bootstrap runs as the platform's superuser; the migrations as `postgres`, which,
# as on Supabase, is not a superuser and owns none of auth, storage, net, vault.
ADMIN_DB_URL=${ADMIN_DB_URL:-${DB_URL/postgres:postgres@/supabase_admin:postgres@}}
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
SUPABASE=${SUPABASE:-"$REPO_ROOT/node_modules/.bin/supabase"}
[ -x "$SUPABASE" ] || SUPABASE="npx --no-install supabase"

twice=false platform_only=false
for arg in "$@"; do
  case "$arg" in
    --twice) twice=true ;;
    --platform-only) platform_only=true ;;
    *) echo "usage: $0 [--twice | --platform-only]" >&2; exit 2 ;;
  esac
done

# The CLI insists on TLS unless told otherwise; the local cluster has none.
CLI_DB_URL=$DB_URL
case "$CLI_DB_URL" in
  *sslmode=*) ;;
  *\?*) CLI_DB_URL="$CLI_DB_URL&sslmode=disable" ;;
  *) CLI_DB_URL="$CLI_DB_URL?sslmode=disable" ;;
esac

cli_up() {
  (cd "$REPO_ROOT" && $SUPABASE migration up --db-url "$CLI_DB_URL" --include-all --workdir "$REPO_ROOT" 2>&1)
}

psql_file() { # file [url]
  # each file in one transaction, as the CLI runs it; a file of CREATE INDEX CONCURRENTLY
  # statements (which the CLI runs on their own) statement by statement
  local one=--single-transaction
  grep -qi 'create index concurrently' "$1" && one=
  PGOPTIONS="-c client_min_messages=warning" "$PSQL" "${2:-$DB_URL}" -X -q -v ON_ERROR_STOP=1 $one -f "$1" >/dev/null
}

if [ "$("$PSQL" "$DB_URL" -X -tAq -c "select rolsuper from pg_roles where rolname = current_user" 2>/dev/null)" = t ]; then
  echo "db-apply: this cluster predates the platform role model (postgres is a superuser here, never on Supabase);" >&2
  echo "db-apply: stop the stack and remove its folder (e.g. npm run stack:stop && rm -rf .local/dev) to recreate it" >&2
  exit 1
fi

# The platform bootstraps a project once, before any migration. Re-applying it on a migrated
# database would re-grant EXECUTE on every public function to anon (its default grants), undoing
# the migrations' revokes: a restarted dev stack was kinder than the platform that way.
if [ "$("$PSQL" "$ADMIN_DB_URL" -X -tAq -c "select to_regclass('vault.secrets') is not null")" = t ]; then
  echo "db-apply: platform already bootstrapped"
else
  echo "db-apply: platform bootstrap (local/platform.sql, as supabase_admin)"
  psql_file "$REPO_ROOT/local/platform.sql" "$ADMIN_DB_URL"
fi

$platform_only && exit 0

# The SQL before the baseline (issue 22) lived in these versions; the baseline's last file moves
# their state into the job model. A database that ran them (a developer's older stack) has them in
# its history, which the CLI refuses while the files are gone: they are marked reverted, so the CLI
# applies the baseline there as on a fresh database.
PRE_BASELINE="20261127000100 20261127000200 20261127000300 20261127000400 20261127000500 20261127000700
  20261130000100 20261130000200 20261130000300 20261130000400 20261203000100 20261203000200"
old_versions=$("$PSQL" "$DB_URL" -X -tAq -c "select string_agg(version, ' ') from supabase_migrations.schema_migrations
  where version = any(string_to_array('$(echo $PRE_BASELINE)', ' '))" 2>/dev/null || true)
if [ -n "$old_versions" ]; then
  echo "db-apply: marking the pre-baseline versions reverted ($old_versions)"
  # shellcheck disable=SC2086
  (cd "$REPO_ROOT" && $SUPABASE migration repair $old_versions --status reverted --db-url "$CLI_DB_URL" --workdir "$REPO_ROOT" 2>&1) | sed 's/^/  /'
fi

echo "db-apply: migrations (supabase migration up --include-all)"
# The CLI percent-decodes the URL; our local password has nothing to encode.
if ! out=$(cli_up); then
  echo "$out" | sed 's/^/  /' >&2
  echo "db-apply: supabase migration up failed" >&2
  exit 1
fi
echo "$out" | grep -v '^$' | sed 's/^/  /' || true

if $twice; then
  echo "db-apply: --twice: re-applying platform.sql and every migration with psql"
  psql_file "$REPO_ROOT/local/platform.sql" "$ADMIN_DB_URL"
  for f in "$REPO_ROOT"/migrations/*.sql; do
    echo "  $(basename "$f")"
    psql_file "$f"
  done
  echo "db-apply: --twice: supabase migration up again (must find nothing to apply)"
  out=$(cli_up) || { echo "$out" | sed 's/^/  /' >&2; exit 1; }
  echo "$out" | grep -v '^$' | sed 's/^/  /' || true
  if echo "$out" | grep -q 'Applying migration'; then
    echo "db-apply: --twice: the CLI applied a migration again" >&2
    exit 1
  fi
  echo "db-apply: --twice: OK"
fi
