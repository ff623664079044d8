/**
 * The one parser of KEY=value files: the stack's stack.env and functions.env, a functions
 * .env. Blank lines, comments and anything else are skipped; one pair of double quotes around
 * a value is dropped. Callers read the file (Deno or Node).
 */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/);
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return env;
}
