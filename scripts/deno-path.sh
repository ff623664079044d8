# The Deno binary that npm installed (package `deno`), the one place its path is written for
# shell scripts (TypeScript: denoBin() in local/paths.ts). Sourced: sets $DENO.
DENO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/node_modules/@deno/linux-x64-glibc/deno"
