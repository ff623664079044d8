# Sourced by scripts/test.sh and scripts/load.sh: a throwaway local stack for one run, in its
# own folder .local/<kind>-run-<pid> on free ports (two runs at once never collide, and a dev
# stack on 54321/54322 is never touched). Leftovers of killed runs are removed first; at exit
# the stack is stopped and removed, its logs kept in .local/last-<kind>-logs.
#   use_run_stack test|load      (sets STACK_DIR, API_PORT, DB_PORT, KIE_PORT and the trap)

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

remove_run_stack() { # dir [logs-copy: a folder to replace with the run's logs; empty: drop them]
  STACK_DIR=$1 bash "$ROOT/local/stack.sh" stop >/dev/null 2>&1 || true
  # never a path outside .local: this used to be called with /dev/null, and as root
  # `rm -rf /dev/null && cp -r logs /dev/null` replaced the device with a folder
  if [ -n "${2:-}" ] && [ -d "$1/logs" ]; then
    case "$2" in "$ROOT"/.local/*) rm -rf "$2" && cp -r "$1/logs" "$2" ;; esac
  fi
  [ -f "$1/pg/LOCATION" ] && rm -rf "$(cat "$1/pg/LOCATION")"
  rm -rf "$1"
}

use_run_stack() { # kind
  local kind=$1 old
  for old in "$ROOT"/.local/"$kind"-run-*; do
    [ -d "$old" ] || continue
    kill -0 "${old##*-}" 2>/dev/null || remove_run_stack "$old" ""
  done
  export STACK_DIR="$ROOT/.local/$kind-run-$$"
  export API_PORT DB_PORT KIE_PORT
  API_PORT=$(free_port) DB_PORT=$(free_port) KIE_PORT=$(free_port)
  # shellcheck disable=SC2064 # expand now: the trap must remove this run's folder
  trap "remove_run_stack '$STACK_DIR' '$ROOT/.local/last-$kind-logs'" EXIT
}
