// Throws from its handler: the platform answers 500 and other functions keep serving.
Deno.serve(() => {
  throw new Error('boom from test-throws');
});
