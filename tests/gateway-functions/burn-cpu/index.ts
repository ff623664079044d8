// Spins for the given milliseconds of wall clock (default 3000), all of it on the CPU:
// past the 2 s CPU limit → 546 WORKER_LIMIT.
Deno.serve((req) => {
  const ms = Number(new URL(req.url).searchParams.get('ms') ?? 3000);
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  return Response.json({ burned: ms, x: x > 0 });
});
