// The health edge function: HTTP only; the logic is shared/health.ts.
import { handleHealth } from '../../shared/health.ts';
import { serveHandler } from '../../shared/http.ts';

Deno.serve(serveHandler('health', handleHealth));
