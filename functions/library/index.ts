// The library edge function: HTTP only; the logic is shared/library.ts handleLibrary.
import { handleLibrary } from '../../shared/library.ts';
import { serveHandler } from '../../shared/http.ts';

Deno.serve(serveHandler('library', handleLibrary));
