// The kie-sync edge function: HTTP only; the logic is shared/kie-handlers.ts handleKieSync.
import { handleKieSync } from '../../shared/kie-handlers.ts';
import { serveHandler } from '../../shared/http.ts';

Deno.serve(serveHandler('kie-sync', handleKieSync));
