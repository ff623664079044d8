// An empty function: the local gateway measures an isolate's base memory with it.
Deno.serve(() => new Response('ok'));
