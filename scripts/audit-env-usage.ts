/**
 * Proves that no module reads the environment at import time: imports every given module
 * in a Deno process that has NO env permission (see audit-env-usage.sh). Reading
 * `Deno.env` or `process.env` at the top level of any module then throws, and the module is
 * reported. Reads inside functions (the lazy config loader) are untouched by importing.
 * Deno.serve is stubbed so function entry files can be imported without serving.
 */
(Deno as any).serve = () => ({ finished: Promise.resolve(), shutdown: async () => {} });

const failures: string[] = [];
for (const file of Deno.args) {
  try {
    await import(new URL(file, `file://${Deno.cwd()}/`).href);
  } catch (err) {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    failures.push(`${file}: ${message}`);
  }
}
if (failures.length) {
  console.error(
    `audit-env-usage: ${failures.length} module(s) read the environment (or failed) at import time:`,
  );
  for (const f of failures) console.error(`  ${f}`);
  Deno.exit(1);
}
console.log(`audit-env-usage: ${Deno.args.length} modules import without reading the environment`);
