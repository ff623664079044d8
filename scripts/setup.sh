#!/usr/bin/env bash
# Installs what the project needs, only when missing, from Debian's apt and the npm registry:
#   apt: PostgreSQL 15 with pg_cron and pgTAP (+ pg_prove), ffmpeg (test fixtures and the
#        benchmark's anchor only, never the render path), Chromium (the browser test)
#   npm: `npm ci --ignore-scripts` (nothing here depends on a postinstall step; Deno and the
#        supabase CLI come as npm packages with their binaries in platform packages)
# All apt installs happen before any cluster starts (an upgrade under a running cluster
# breaks new connections).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(postgresql-15 postgresql-15-cron postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl ffmpeg chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "setup: need root (or sudo) to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  $SUDO apt-get update -qq || { echo "setup: apt-get update failed: is Debian's package mirror reachable?" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "setup: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

. scripts/deno-path.sh
if [ ! -x "$DENO" ] || [ ! -d node_modules/vitest ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci --ignore-scripts"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
    || { echo "setup: npm ci failed: is the npm registry reachable?" >&2; exit 1; }
fi

# The codecs' wasm as modules of the functions' graph (shared/preview/codecs/, not committed):
# a deployed function reads nothing but its bundle.
"$DENO" run --quiet --allow-read --allow-write scripts/gen-codecs.ts >/dev/null
