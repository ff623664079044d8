// The library edge function: HTTP only; the logic is shared/library.ts handleLibrary, which reads
// the caller that withVerifiedCaller verified (a user's token against the JWKS or Auth).
import { withVerifiedCaller } from '../../shared/auth.ts';
import { getConfig } from '../../shared/config.ts';
import { handleLibrary } from '../../shared/library.ts';
import { serveHandler } from '../../shared/http.ts';

Deno.serve(serveHandler('library', withVerifiedCaller(getConfig, handleLibrary)));
