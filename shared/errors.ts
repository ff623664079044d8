/**
 * The closed set of job error codes. Each one is either retryable (the job is queued again after
 * the backoff) or terminal (the job fails, and the row stays `failed` with its reason). The
 * backoff and the attempt cap live in SQL (`fail_preview_job`), once, for every job kind.
 */
export const ERROR_CODES = {
  SOURCE_NOT_FOUND: { retryable: false },
  SOURCE_UNREACHABLE: { retryable: true },
  SOURCE_FORBIDDEN: { retryable: false },
  SOURCE_TOO_LARGE: { retryable: false },
  UNSUPPORTED_FORMAT: { retryable: false },
  DECODE_FAILED: { retryable: false },
  TOO_MANY_PIXELS: { retryable: false },
  /** Decoding would need more memory than an edge isolate has (estimated from the header). */
  OVER_MEMORY_BUDGET: { retryable: false },
  /** The animated preview of a video this large would need more CPU than an edge request has (measured). */
  OVER_CPU_BUDGET: { retryable: false },
  /** Workers died on this item (the platform's memory/CPU limit): the job's second expired lease. */
  WORKER_LIMIT: { retryable: false },
  NO_VIDEO_FRAME: { retryable: false },
  /** The ffmpeg core's bytes are not the ones this version pins (core-digest.ts): never compiled. */
  CORE_INTEGRITY: { retryable: false },
  UPLOAD_FAILED: { retryable: true },
  TIMEOUT: { retryable: true },
  /** The app's webhook did not take a relayed KIE callback (network, 5xx, 408, 429): sent again. */
  RELAY_FAILED: { retryable: true },
  /** The app's webhook refused a relayed KIE callback (another 4xx): not sent again. */
  RELAY_REFUSED: { retryable: false },
  INTERNAL: { retryable: true },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error that carries one of the closed codes and a message fit for the row's `error`. */
export class PreviewError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PreviewError';
    this.code = code;
  }
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }
}

/** Any thrown value as a PreviewError; unknown errors become INTERNAL (retryable). */
export function toPreviewError(err: unknown): PreviewError {
  if (err instanceof PreviewError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PreviewError('INTERNAL', `Internal error: ${message}`, { cause: err });
}
