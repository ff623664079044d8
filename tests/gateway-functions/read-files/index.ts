// Tries to read files as a deployed function might: a module of its own graph, a .wasm of a
// package it imports, and the stack's config. A deployed function can read none of them (its
// bundle is loaded as modules, not as files), so an isolate here can read none either; only
// its temp folder is writable and readable.
Deno.serve(async () => {
  const attempt = async (path: string) => {
    try {
      await Deno.readFile(path);
      return 'read';
    } catch (err) {
      return err instanceof Error ? err.name : String(err);
    }
  };
  return Response.json({
    module: await attempt('shared/config.ts'),
    packageWasm: await attempt('node_modules/@jsquash/webp/codec/dec/webp_dec.wasm'),
    outside: await attempt('supabase/config.toml'),
  });
});
