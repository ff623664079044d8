/** Tiny path helpers (deno std is out of reach here: JSR is not reachable). */
export function fromFileUrl(url: URL | string): string {
  return decodeURIComponent(new URL(url).pathname);
}

export function dirname(path: string): string {
  const i = path.replace(/\/+$/, '').lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** The repository root (the parent of local/). */
export function repoRoot(): string {
  return dirname(dirname(fromFileUrl(import.meta.url)));
}

/** The Deno binary npm installed (package `deno`): the one place TypeScript names its path. */
export function denoBin(): string {
  return `${repoRoot()}/node_modules/@deno/linux-x64-glibc/deno`;
}

/**
 * The Deno the platform's edge runtime embeds (supabase/edge-runtime v1.74.0 → Deno 2.1.4),
 * installed by package.json as `deno-edge-runtime`: functions run on it; tooling on denoBin().
 * Shell scripts: scripts/edge-deno.sh.
 */
export function edgeDenoBin(): string {
  return `${repoRoot()}/node_modules/deno-edge-runtime/deno`;
}
