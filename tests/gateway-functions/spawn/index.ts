// Tries to start a subprocess, which the edge runtime does not allow.
Deno.serve(async () => {
  try {
    const out = await new Deno.Command('true').output();
    return Response.json({ spawned: true, code: out.code });
  } catch (err) {
    return Response.json({ spawned: false, error: err instanceof Error ? err.name : String(err) }, { status: 500 });
  }
});
