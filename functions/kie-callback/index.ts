// The kie-callback edge function: HTTP only; the logic is shared/kie-handlers.ts handleKieCallback.
import { handleKieCallback } from '../../shared/kie-handlers.ts';
import { serveHandler } from '../../shared/http.ts';

Deno.serve(serveHandler('kie-callback', handleKieCallback));
