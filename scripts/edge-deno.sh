# The Deno the platform's edge runtime embeds, the one place shell scripts name it (TypeScript:
# edgeDenoBin() in local/paths.ts). Sourced: sets $EDGE_DENO and what it needs here.
# supabase/edge-runtime v1.74.0 (the release supabase CLI 2.117.0 runs) embeds Deno 2.1.4
# (its deno/Cargo.toml); package.json installs that binary as `deno-edge-runtime`
# (npm:@deno/linux-x64-glibc@2.1.4). Functions run, and are sized, on it; tooling runs on the
# newer Deno of scripts/deno-path.sh.
EDGE_DENO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/node_modules/deno-edge-runtime/deno"
# This machine reaches the npm registry only through the system's CA store.
export DENO_TLS_CA_STORE=system
