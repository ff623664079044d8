/**
 * Fails when deno.json's import map and package.json disagree on a dependency's version:
 * the same shared file runs under Deno (import map) and Node (node_modules), so both must
 * resolve the same release.
 */
const root = new URL('..', import.meta.url);
const deno = JSON.parse(await Deno.readTextFile(new URL('deno.json', root)));
const pkg = JSON.parse(await Deno.readTextFile(new URL('package.json', root)));
const installed = { ...pkg.dependencies, ...pkg.devDependencies } as Record<string, string>;
const problems: string[] = [];
for (const [specifier, target] of Object.entries(deno.imports as Record<string, string>)) {
  const m = target.match(/^npm:\/?(@?[^@/]+(?:\/[^@/]+)?)@([^/]+)/);
  if (!m) continue;
  const [, name, version] = m;
  if (installed[name] === undefined) problems.push(`${specifier}: ${name} is not in package.json`);
  else if (installed[name] !== version) {
    problems.push(`${specifier}: deno.json has ${version}, package.json has ${installed[name]}`);
  }
}
if (problems.length) {
  console.error(`check-versions: deno.json and package.json drifted:\n  ${problems.join('\n  ')}`);
  Deno.exit(1);
}
console.log('check-versions: deno.json and package.json agree');
