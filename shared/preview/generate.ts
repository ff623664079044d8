/**
 * One preview job: claim → fetch → render → upload → complete | fail. The claim is the only
 * way in (one conditional UPDATE; one caller wins), its attempt number fences the result (a
 * late worker from an older attempt changes nothing), and every failure lands on the row as a
 * closed error code with a readable message. A crash anywhere leaves a `processing` claim
 * whose lease expires; the sweep then dispatches it again.
 */
import type { Config } from '../config.ts';
import { type Claim, isTransientDbError, type PreviewStore } from '../db.ts';
import { PreviewError, toPreviewError } from '../errors.ts';
import { log } from '../log.ts';
import { isSafeObjectKey, type ObjectStore } from '../storage.ts';
import type { FetchedSource } from './fetch.ts';
import { originalCopyPath, storageObjectFromUrl } from './paths.ts';
import type { Rendered, RenderOptions } from './photo.ts';
import type { PosterOptions } from './video.ts';
import { isolateBudget, measureRender, noteIo } from './isolate.ts';
import { sniff } from './sniff.ts';
import { previewVersion } from './version.ts';

export type PreviewDeps = {
  store: PreviewStore;
  /** Registers the claim this job holds (released if the isolate's end is announced). */
  hold?: (held: { release(): Promise<unknown> } | null) => void;
  objects: ObjectStore;
  fetchSource: (url: string) => Promise<FetchedSource>;
  renderPhoto: (bytes: Uint8Array, options: RenderOptions) => Promise<Rendered>;
  renderPoster: (bytes: Uint8Array, options: PosterOptions) => Promise<Rendered>;
  config: Pick<Config, 'supabaseUrl'> & { preview: Config['preview'] };
};

export type PreviewOutcome = {
  generationId: string;
  /** declined: not claimed, this isolate was busy past its budget or ending (the row is queued again). */
  result: 'ready' | 'failed' | 'retry' | 'skipped' | 'fenced' | 'declined';
  type?: string;
  path?: string;
  code?: string;
  error?: string;
  attempt?: number;
};

/** What a claim (the poster's or the animated preview's) says about its source. */
export type SourceRef = Pick<Claim, 'id' | 'user_id' | 'original_path' | 'source_url'>;

/** The claim's source: its original in our storage (original_path) when it has one, else its URL. */
export async function readSource(
  claim: SourceRef,
  deps: Pick<PreviewDeps, 'objects' | 'fetchSource' | 'config'>,
): Promise<{ bytes: Uint8Array; storedAt: string | null }> {
  if (claim.original_path) {
    // The service key reads any object: only one under the row's owner's folder is this row's.
    if (
      !claim.original_path.startsWith(`${claim.user_id}/`) || !isSafeObjectKey(claim.original_path)
    ) {
      throw new PreviewError(
        'SOURCE_FORBIDDEN',
        "original_path is not an object of this generation's owner",
      );
    }
    try {
      return {
        bytes: await deps.objects.download(claim.original_path),
        storedAt: claim.original_path,
      };
    } catch (err) {
      // a copy that is gone (deleted by hand, never finished): the URL may still serve
      if (!(err instanceof PreviewError && err.code === 'SOURCE_NOT_FOUND' && claim.source_url)) {
        throw err;
      }
      log.info('[Preview]', 'Original missing in storage: using the URL', {
        generationId: claim.id,
        originalPath: claim.original_path,
      });
    }
  }
  if (!claim.source_url) {
    throw new PreviewError('SOURCE_NOT_FOUND', 'The generation has no asset URL');
  }
  // An asset already in our storage is read with the service key, so it must name exactly one
  // object of the row's owner in our bucket: never another user's file, another bucket or
  // another route named by a forged URL (any URL of ours that is not that is refused).
  const own = storageObjectFromUrl(claim.source_url, deps.config.supabaseUrl);
  if (own.ours) {
    const object = own.object;
    if (
      !object || object.bucket !== deps.config.preview.bucket ||
      !object.path.startsWith(`${claim.user_id}/`)
    ) {
      throw new PreviewError(
        'SOURCE_FORBIDDEN',
        "Download refused: the URL points into this project's storage but not at an object of this generation's owner",
      );
    }
    return { bytes: await deps.objects.download(object.path), storedAt: object.path };
  }
  const { bytes } = await deps.fetchSource(claim.source_url);
  return { bytes, storedAt: null };
}

type Render = {
  rendered: Rendered;
  source: Uint8Array;
  format: string;
  mime: string;
  storedAt: string | null;
};

async function render(claim: Claim, deps: PreviewDeps): Promise<Render> {
  const { bytes, storedAt } = await readSource(claim, deps);
  const kind = sniff(bytes);
  if (kind.kind !== claim.kind) {
    throw new PreviewError(
      'UNSUPPORTED_FORMAT',
      `Expected ${claim.kind === 'video' ? 'a video' : 'an image'} but the asset is ${kind.mime}`,
    );
  }
  const options = {
    maxSide: deps.config.preview.maxSide,
    quality: deps.config.preview.quality,
    maxPixels: deps.config.preview.maxPixels,
    maxBytes: deps.config.preview.maxSourceBytes,
  };
  const coverUrl = claim.cover_url;
  // KIE's cover image, fetched (with the same download guard) only if the poster needs it
  const loadCover = coverUrl
    ? async () => {
      log.info('[Preview]', 'Cover fallback', {
        generationId: claim.id,
        reason: 'poster_needs_cover',
      });
      const started = performance.now();
      try {
        return (await deps.fetchSource(coverUrl)).bytes;
      } finally {
        noteIo(performance.now() - started);
      }
    }
    : undefined;
  const rendered = await measureRender(() =>
    claim.kind === 'video'
      ? deps.renderPoster(bytes, { ...options, loadCover })
      : deps.renderPhoto(bytes, options)
  );
  return { rendered, source: bytes, format: kind.format, mime: kind.mime, storedAt };
}

/**
 * complete_preview after the objects are written. A transient database error (a restart, a
 * crash) is retried, fenced by the attempt, while the lease holds (less a margin): the objects
 * are there, and giving up would make the next attempt render and write them again.
 */
async function completeWhileLeased(
  claim: Claim,
  claimedAt: number,
  deps: PreviewDeps,
  r: Parameters<PreviewStore['complete']>[1],
): Promise<boolean> {
  const until = claimedAt + claim.lease_ms - COMPLETE_MARGIN_MS;
  for (let delay = 250;; delay = Math.min(delay * 2, 4000)) {
    try {
      return await deps.store.complete(claim, r);
    } catch (err) {
      if (!isTransientDbError(err) || performance.now() + delay > until) throw err;
      log.info('[Preview]', 'Completion retry', {
        generationId: claim.id,
        attempt: claim.attempt,
        code: (err as { code?: string }).code,
        inMs: delay,
      });
      await new Promise((done) => setTimeout(done, delay));
    }
  }
}

/** The animated preview is a step of its own: asking for it never fails the poster. */
async function requestAnimated(claim: Claim, deps: PreviewDeps): Promise<void> {
  try {
    if (await deps.store.requestAnimated(claim.id)) {
      log.info('[Preview]', 'Queued', {
        generationId: claim.id,
        reason: 'animated',
        type: claim.type,
      });
    }
  } catch (err) {
    log.error(
      '[Preview]',
      `Could not queue the animated preview of ${claim.id}: ${
        err instanceof Error ? err.message : err
      }`,
      { next: 'sweep' },
    );
  }
}

/** The isolate is ending (beforeunload): the claim goes back to the queue at once. */
async function releaseClaim(claim: Claim, deps: PreviewDeps): Promise<void> {
  if (await deps.store.releaseClaim(claim)) {
    log.info('[Preview]', 'Released', {
      generationId: claim.id,
      attempt: claim.attempt,
      reason: 'isolate_ending',
    });
  }
}

/** How long before the lease ends a worker stops retrying its completion. */
const COMPLETE_MARGIN_MS = 2_000;

export async function generatePreview(
  generationId: string,
  deps: PreviewDeps,
): Promise<PreviewOutcome> {
  const claim = await deps.store.claim(generationId);
  const claimedAt = performance.now();
  if (!claim) {
    log.info('[Preview]', 'Skipped', { generationId, reason: 'not_claimable' });
    return { generationId, result: 'skipped' };
  }
  log.info('[Preview]', 'Processing', { generationId, type: claim.type, attempt: claim.attempt });
  deps.hold?.({ release: () => releaseClaim(claim, deps) });
  const path = claim.target_path;
  try {
    const { rendered, source, format, mime, storedAt } = await render(claim, deps);
    // A worker whose lease ran out while it rendered must not overwrite a newer attempt's objects.
    if (!(await deps.store.isCurrent(claim))) {
      log.info('[Preview]', 'Fenced', {
        generationId,
        attempt: claim.attempt,
        reason: 'claim_lost_before_upload',
      });
      return { generationId, result: 'fenced', type: claim.type, attempt: claim.attempt };
    }
    // KIE deletes its files after about 14 days: keep our own copy of the original.
    const original = storedAt ?? originalCopyPath(claim.original_stem, format);
    if (!storedAt) await deps.objects.upload(original, source, mime);
    await deps.objects.upload(path, rendered.webp, 'image/webp');
    const stored = await deps.objects.size(path);
    if (stored !== rendered.webp.length) {
      throw new PreviewError(
        'UPLOAD_FAILED',
        `Upload check failed: stored ${stored} bytes, expected ${rendered.webp.length}`,
      );
    }
    const ok = await completeWhileLeased(claim, claimedAt, deps, {
      path,
      width: rendered.width,
      height: rendered.height,
      thumbhash: rendered.thumbhash,
      originalPath: original,
      version: previewVersion(deps.config.preview),
    });
    if (!ok) {
      log.info('[Preview]', 'Fenced', {
        generationId,
        attempt: claim.attempt,
        reason: 'newer_attempt',
      });
      return { generationId, result: 'fenced', type: claim.type, attempt: claim.attempt };
    }
    log.info('[Preview]', 'Ready', {
      generationId,
      type: claim.type,
      path,
      width: rendered.width,
      height: rendered.height,
      bytes: rendered.webp.length,
      isolateCpuMs: isolateBudget().spentMs,
    });
    if (claim.kind === 'video' && deps.config.preview.animated) await requestAnimated(claim, deps);
    return { generationId, result: 'ready', type: claim.type, path, attempt: claim.attempt };
  } catch (err) {
    return await failedOutcome(
      generationId,
      claim,
      claim.type,
      'Failed',
      err,
      (pe) =>
        deps.store.fail(claim, { code: pe.code, message: pe.message, retryable: pe.retryable }),
    );
  }
}

/**
 * A claimed step that threw: the failure recorded through `fail` (which answers retry, failed,
 * or null when a newer attempt holds the row), one log line, and the outcome.
 */
export async function failedOutcome(
  generationId: string,
  claim: { attempt: number },
  type: string,
  label: string,
  err: unknown,
  fail: (pe: PreviewError) => Promise<'retry' | 'failed' | null>,
): Promise<PreviewOutcome> {
  const pe = toPreviewError(err);
  const state = await fail(pe);
  log.error('[Preview]', `❌ ${label} for ${generationId}: ${pe.message}`, {
    code: pe.code,
    attempt: claim.attempt,
    next: state ?? 'fenced',
  });
  return {
    generationId,
    result: state === null ? 'fenced' : state,
    type,
    code: pe.code,
    error: pe.message,
    attempt: claim.attempt,
  };
}
