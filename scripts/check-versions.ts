/**
 * Fails when an import map and package.json disagree on a dependency's version: the same
 * shared file runs under Deno (deno.json for tooling, functions/deno.json for the deployed
 * functions) and Node (node_modules), so all three must resolve the same release. The
 * functions' map holds only what the functions import, each entry as in deno.json.
 */
const root = new URL('..', import.meta.url);
const read = async (path: string) => JSON.parse(await Deno.readTextFile(new URL(path, root)));
const tooling = (await read('deno.json')).imports as Record<string, string>;
const functions = (await read('functions/deno.json')).imports as Record<string, string>;
const pkg = await read('package.json');
const installed = { ...pkg.dependencies, ...pkg.devDependencies } as Record<string, string>;
const problems: string[] = [];
for (
  const [file, imports] of [['deno.json', tooling], ['functions/deno.json', functions]] as const
) {
  for (const [specifier, target] of Object.entries(imports)) {
    const m = target.match(/^npm:\/?(@?[^@/]+(?:\/[^@/]+)?)@([^/]+)/);
    if (!m) {
      problems.push(`${file} ${specifier}: not a pinned npm: specifier (${target})`);
      continue;
    }
    const [, name, version] = m;
    if (installed[name] === undefined) {
      problems.push(
        `${file} ${specifier}: ${name} is not in package.json`,
      );
    } else if (installed[name] !== version) {
      problems.push(`${file} ${specifier}: ${version}, package.json has ${installed[name]}`);
    }
  }
}
for (const [specifier, target] of Object.entries(functions)) {
  if (tooling[specifier] !== target) {
    problems.push(
      `functions/deno.json ${specifier}: ${target}, deno.json has ${tooling[specifier]}`,
    );
  }
}
if (problems.length) {
  console.error(
    `check-versions: the import maps and package.json drifted:\n  ${problems.join('\n  ')}`,
  );
  Deno.exit(1);
}
console.log('check-versions: deno.json, functions/deno.json and package.json agree');
