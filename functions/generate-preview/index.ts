// The generate-preview edge function: HTTP only; the logic is shared/preview/handler.ts handleGeneratePreview.
import { handleGeneratePreview } from '../../shared/preview/handler.ts';
import { serveHandler } from '../../shared/http.ts';

Deno.serve(serveHandler('generate-preview', handleGeneratePreview));
