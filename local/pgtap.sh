#!/usr/bin/env bash
# Run the pgTAP suites (tests/sql/*.sql) with pg_prove against DB_URL.
#
#   DB_URL=postgresql://postgres:postgres@127.0.0.1:54322/postgres local/pgtap.sh [files…]
#
# The database must have platform.sql and the migrations applied (local/db-apply.sh). First the
# suites' `tests` helper schema (tests/sql/helpers/tests_schema.sql: users, roles, time travel) is
# installed, re-runnably, with psql as `postgres`, the role the suites and the migrations run as.
# pgTAP lives in the `extensions` schema, which is on the search_path. Each suite runs in its own
# transaction (rolled back), except 03_concurrent_claim.sql, which commits its fixtures through
# dblink and removes them. Exit code non-zero on any failure.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB_URL=${DB_URL:-postgresql://postgres:postgres@127.0.0.1:${DB_PORT:-54322}/postgres}
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
command -v pg_prove >/dev/null || { echo "pgtap.sh: pg_prove missing (apt-get install libtap-parser-sourcehandler-pgtap-perl; run scripts/setup.sh)" >&2; exit 1; }

if [ $# -gt 0 ]; then files=("$@"); else files=("$REPO_ROOT"/tests/sql/*.sql); fi

export PGOPTIONS="-c search_path=public,extensions -c client_min_messages=warning"
"$PSQL" "$DB_URL" -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$REPO_ROOT/tests/sql/helpers/tests_schema.sql" >/dev/null \
  || { echo "pgtap.sh: installing the tests helper schema failed" >&2; exit 1; }
exec pg_prove --psql-bin "$PSQL" --dbname "$DB_URL" --failures --comments "${files[@]}"
