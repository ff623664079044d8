// Tries to read a file of its bundle (shared/) and one outside it (the stack's config):
// an isolate may read only its own code and dependencies, like a deployed bundle.
Deno.serve(async () => {
  const attempt = async (path: string) => {
    try {
      await Deno.readTextFile(path);
      return 'read';
    } catch (err) {
      return err instanceof Error ? err.name : String(err);
    }
  };
  return Response.json({ bundle: await attempt('shared/config.ts'), outside: await attempt('supabase/config.toml') });
});
