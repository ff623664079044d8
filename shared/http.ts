/** Small HTTP helpers shared by the function entry files. */
import { ConfigError } from './config.ts';
import { log } from './log.ts';

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'access-control-allow-origin': '*' },
  });
}

export function errorResponse(status: number, error: string, message: string): Response {
  return json({ error, message }, status);
}

/**
 * Reads a JSON object body, counting bytes as they stream in and stopping at `maxBytes`
 * (a body without Content-Length is never buffered whole). An empty body is `{}`; a body
 * over the cap, unparsable, or not an object is null.
 */
export async function readJson(
  req: Request,
  maxBytes = 1024 * 1024,
): Promise<Record<string, unknown> | null> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel();
        return null;
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  const text = new TextDecoder().decode(bytes);
  if (text.trim() === '') return {};
  try {
    const value = JSON.parse(text);
    return value && typeof value === 'object' && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

export const CORS_PREFLIGHT = new Response(null, {
  status: 204,
  headers: {
    'access-control-allow-origin': '*',
    'access-control-allow-headers': 'authorization, x-client-info, apikey, content-type',
    'access-control-allow-methods': 'GET, POST, OPTIONS',
  },
});

/** A service this function needs (e.g. Auth, to verify a caller) did not answer: 503, not the caller's fault. */
export class UpstreamUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamUnavailableError';
  }
}

/**
 * Wraps a handler: config errors name the missing variable (500), an upstream that did not
 * answer is 503, others are logged.
 */
export function serveHandler(name: string, handler: (req: Request) => Promise<Response>) {
  return async (req: Request): Promise<Response> => {
    if (req.method === 'OPTIONS') return CORS_PREFLIGHT.clone();
    try {
      return await handler(req);
    } catch (err) {
      if (err instanceof ConfigError) {
        log.error('[Config]', err.message, { fn: name });
        return errorResponse(500, 'CONFIG_ERROR', err.message);
      }
      if (err instanceof UpstreamUnavailableError) {
        log.error('[Function]', `${name}: ${err.message}`);
        return errorResponse(503, 'UPSTREAM_UNAVAILABLE', err.message);
      }
      log.error(
        '[Function]',
        `Unhandled error in ${name}: ${err instanceof Error ? err.stack : err}`,
      );
      return errorResponse(500, 'INTERNAL_ERROR', err instanceof Error ? err.message : String(err));
    }
  };
}
