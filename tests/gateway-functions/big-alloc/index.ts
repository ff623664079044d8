// Allocates and touches the given megabytes (default 400): over 256 MB → 546 WORKER_LIMIT.
Deno.serve(async (req) => {
  const mb = Number(new URL(req.url).searchParams.get('mb') ?? 400);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < mb; i++) {
    chunks.push(new Uint8Array(1024 * 1024).fill(i % 255 + 1));
    if (i % 16 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  return Response.json({ allocatedMb: chunks.length });
});
