// Imports imagescript's npm entry point, which loads a native codec (.node) at import time:
// the edge runtime cannot load native addons, so this function must fail to boot.
import 'imagescript';

Deno.serve(() => new Response('loaded a native addon'));
