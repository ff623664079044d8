/**
 * The `preview` job's handler: read the source → render → (still ours?) → upload the original copy
 * and the preview → the result the runner completes the job with. A photo's preview or a video's
 * poster, chosen by the database (the job's input.kind). The claim, the fencing, the completion and
 * every failure are the runner's (shared/jobs/runner.ts); a thrown error becomes the job's closed
 * error code and readable message there.
 */
import type { Config } from '../config.ts';
import type { JobContext, JobDone, JobFenced, JobHandler } from '../jobs/runner.ts';
import type { ClaimedJob } from '../jobs/store.ts';
import { PreviewError } from '../errors.ts';
import { log } from '../log.ts';
import { isSafeObjectKey, type ObjectStore } from '../storage.ts';
import { adoptSource, type Beside, type FetchedSource, releaseSource } from './fetch.ts';
import { originalCopyPath, sizePath, storageObjectFromUrl } from './paths.ts';
import type { Rendered, RenderOptions } from './photo.ts';
import type { PosterOptions } from './video.ts';
import { FreshIsolateNeeded } from './budget.ts';
import { isolateBudget, measureRender, noteIo } from './isolate.ts';
import { sniff } from './sniff.ts';
import { previewVersion } from './version.ts';

export type PreviewDeps = {
  objects: ObjectStore;
  /** `beside`: the download runs beside another job's render (fetch.ts Beside). */
  fetchSource: (url: string, beside?: Beside) => Promise<FetchedSource>;
  renderPhoto: (bytes: Uint8Array, options: RenderOptions) => Promise<Rendered>;
  renderPoster: (bytes: Uint8Array, options: PosterOptions) => Promise<Rendered>;
  /** An audio row's waveform tile and its length (audio.ts). */
  renderWaveform: (bytes: Uint8Array, options: RenderOptions) => Promise<Waveform>;
  config: Pick<Config, 'supabaseUrl'> & { preview: Config['preview'] };
};

/** The preview a generation gets (the database's preview_kind): preview_path or poster_path. */
export type PreviewKind = 'image' | 'video' | 'audio';

/** An audio row's waveform tile, with the track's length. */
export type Waveform = Rendered & { durationMs: number };

/** A preview job's input (preview_job_input), with the row's id. */
export type Claim = {
  id: string;
  user_id: string;
  type: string;
  /** image → preview_path, video → poster_path (the database's preview_kind). */
  kind: PreviewKind;
  original_path: string | null;
  source_url: string | null;
  model: string | null;
  /** Where the preview goes, and the original copy's path without its extension. */
  target_path: string;
  original_stem: string;
  /**
   * KIE's cover image (apply_kie_result stores it): a video's poster fallback, an audio row's
   * preview.
   */
  cover_url: string | null;
  /** An audio row's waveform tile path (audio_waveform_path), null for the others. */
  waveform_path?: string | null;
  /** The larger sizes' path without `_{side}.webp` (paths.ts sizePath). */
  size_stem: string;
};

/** The job's input as a Claim. */
export function claimOf(job: ClaimedJob): Claim {
  return { ...(job.input as Omit<Claim, 'id'>), id: job.generation_id as string };
}

/** What a claim (the poster's or the animated preview's) says about its source. */
export type SourceRef = Pick<Claim, 'id' | 'user_id' | 'original_path' | 'source_url'>;

/**
 * The claim's source: its original in our storage (original_path) when it has one, else its URL.
 * `isolate`: the job's (JobContext.isolate). Our storage answers at once: it is read holding the
 * isolate; a URL is downloaded beside another job's render while the downloads beside stay small.
 */
export async function readSource(
  claim: SourceRef,
  deps: Pick<PreviewDeps, 'objects' | 'fetchSource' | 'config'>,
  isolate: Pick<JobContext['isolate'], 'take' | 'beside'>,
): Promise<{ bytes: Uint8Array; storedAt: string | null }> {
  const take = isolate.take;
  if (claim.original_path) {
    await take();
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
        bytes: adoptSource(await deps.objects.download(claim.original_path)),
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
    await take();
    return { bytes: adoptSource(await deps.objects.download(object.path)), storedAt: object.path };
  }
  const { bytes } = await deps.fetchSource(claim.source_url, isolate.beside);
  return { bytes, storedAt: null };
}

type Render = {
  rendered: Rendered;
  source: Uint8Array;
  format: string;
  mime: string;
  storedAt: string | null;
  /** An audio row's waveform (its preview too, unless the cover is). */
  waveform?: Waveform;
};

async function render(
  claim: Claim,
  deps: PreviewDeps,
  isolate: JobContext['isolate'],
  got: (bytes: Uint8Array) => void = () => {},
): Promise<Render> {
  const { bytes, storedAt } = await readSource(claim, deps, isolate);
  got(bytes);
  // the render and what follows hold the isolate
  await isolate.take();
  const kind = sniff(bytes);
  if (kind.kind !== claim.kind) {
    throw new PreviewError(
      'UNSUPPORTED_FORMAT',
      `Expected ${
        { video: 'a video', audio: 'an audio track', image: 'an image' }[claim.kind]
      } but the asset is ${kind.mime}`,
    );
  }
  const [first, ...larger] = deps.config.preview.sizes;
  const options = {
    maxSide: first,
    sides: larger,
    quality: deps.config.preview.quality,
    maxPixels: deps.config.preview.maxPixels,
    maxBytes: deps.config.preview.maxSourceBytes,
  };
  if (claim.kind === 'audio') {
    return {
      ...(await renderAudio(claim, deps, bytes, options)),
      source: bytes,
      format: kind.format,
      mime: kind.mime,
      storedAt,
    };
  }
  const coverUrl = claim.cover_url;
  // KIE's cover image, fetched (with the same download guard) only if the poster needs it
  const loadCover = coverUrl
    ? async () => {
      log.info('[Preview]', 'Cover fallback', {
        generationId: claim.id,
        reason: 'poster_needs_cover',
      });
      // (the poster releases the cover's bytes once it has read them: video.ts tryCover)
      return await fetchCover(coverUrl, deps);
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
 * KIE's cover image, fetched inside a render with the same download guard: its wall time is the
 * network's, not the isolate's CPU (isolate.ts noteIo).
 */
async function fetchCover(
  url: string,
  deps: Pick<PreviewDeps, 'fetchSource'>,
): Promise<Uint8Array> {
  const started = performance.now();
  try {
    return (await deps.fetchSource(url)).bytes;
  } finally {
    noteIo(performance.now() - started);
  }
}

/**
 * An audio row: the waveform tile always (the track's length comes with it), and KIE's cover image
 * as the preview when it sent one (Suno's image_url). A cover that cannot be fetched or read leaves
 * the waveform as the preview: the row still gets a tile, and the log says why.
 */
async function renderAudio(
  claim: Claim,
  deps: PreviewDeps,
  bytes: Uint8Array,
  options: RenderOptions,
): Promise<{ rendered: Rendered; waveform: Waveform }> {
  const waveform = await measureRender(() => deps.renderWaveform(bytes, options));
  if (!claim.cover_url) return { rendered: waveform, waveform };
  let cover: Uint8Array;
  try {
    cover = await fetchCover(claim.cover_url, deps);
  } catch (err) {
    log.info('[Preview]', 'Cover unusable', {
      generationId: claim.id,
      reason: err instanceof PreviewError ? err.code : 'download_failed',
    });
    return { rendered: waveform, waveform };
  }
  try {
    return { rendered: await measureRender(() => deps.renderPhoto(cover, options)), waveform };
  } catch (err) {
    if (err instanceof FreshIsolateNeeded) throw err;
    log.info('[Preview]', 'Cover unusable', {
      generationId: claim.id,
      reason: err instanceof PreviewError ? err.code : 'render_failed',
    });
    return { rendered: waveform, waveform };
  } finally {
    releaseSource(cover);
  }
}

/**
 * Runs a render; one that does not fit the CPU this isolate has left but fits a fresh isolate's
 * (budget.ts FreshIsolateNeeded) hands its job back to the queue and ends this isolate's claims
 * (isolate.ts JobSlot.handBack): the job is fenced here and taken up by a fresh isolate, and nothing is
 * counted against the file. At the attempt cap nothing can be handed back: it fails
 * OVER_CPU_BUDGET.
 */
export async function orHandBack<T>(
  ctx: Pick<JobContext, 'isCurrent' | 'isolate'>,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof FreshIsolateNeeded) {
      await ctx.isolate.handBack('cpu_for_render');
      if (!(await ctx.isCurrent())) throw new HandedBack();
    }
    throw err;
  }
}

/** Thrown by orHandBack once the job went back to the queue; handlers answer `fenced`. */
export class HandedBack extends Error {
  constructor() {
    super('handed back to a fresh isolate');
  }
}

/**
 * The preview job: the source read, rendered, written (after checking the claim is still ours:
 * a worker whose lease ran out while it rendered must not overwrite a newer attempt's objects).
 * A video's poster asks for its clip afterwards when PREVIEW_ANIMATED is on.
 */
export function previewHandler(deps: PreviewDeps): JobHandler {
  return {
    prefix: '[Preview]',
    success: 'Ready',
    downloadsFirst: true,
    run: (job, ctx) =>
      runPreview(claimOf(job), deps, ctx).catch((err) => {
        if (err instanceof HandedBack) return { fenced: 'handed_to_fresh_isolate' };
        throw err;
      }),
  };
}

async function runPreview(
  claim: Claim,
  deps: PreviewDeps,
  ctx: Parameters<Extract<JobHandler, { run: unknown }>['run']>[1],
): Promise<JobDone | JobFenced> {
  let source: Uint8Array | undefined;
  try {
    const r = await orHandBack(
      ctx,
      () => render(claim, deps, ctx.isolate, (bytes) => (source = bytes)),
    );
    return await uploadPreview(claim, deps, ctx, r);
  } finally {
    // the source is not carried into the isolate's next job (fetch.ts releaseSource)
    releaseSource(source);
  }
}

async function uploadPreview(
  claim: Claim,
  deps: PreviewDeps,
  ctx: Parameters<Extract<JobHandler, { run: unknown }>['run']>[1],
  { rendered, source, format, mime, storedAt, waveform }: Render,
): Promise<JobDone | JobFenced> {
  if (!(await ctx.isCurrent())) return { fenced: 'claim_lost_before_upload' };
  // KIE deletes its files after about 14 days: keep our own copy of the original. Each object is
  // written once across attempts: a worker killed after an upload leaves it to the next attempt.
  const original = storedAt ?? originalCopyPath(claim.original_stem, format);
  const fenced = { fenced: 'claim_lost_before_upload' };
  if (
    !storedAt &&
    await ctx.writeOnce(original, source, () => deps.objects.upload(original, source, mime)) ===
      'fenced'
  ) return fenced;
  const path = claim.target_path;
  if (
    await ctx.writeOnce(
      path,
      rendered.webp,
      () => deps.objects.upload(path, rendered.webp, 'image/webp'),
    ) ===
      'fenced'
  ) return fenced;
  const stored = await deps.objects.size(path);
  if (stored !== rendered.webp.length) {
    throw new PreviewError(
      'UPLOAD_FAILED',
      `Upload check failed: stored ${stored} bytes, expected ${rendered.webp.length}`,
    );
  }
  // the larger sizes, beside the preview
  const sizes: { side: number; path: string; width: number; height: number }[] = [];
  for (const size of rendered.sizes ?? []) {
    const at = sizePath(claim.size_stem, size.side);
    if (
      await ctx.writeOnce(at, size.webp, () => deps.objects.upload(at, size.webp, 'image/webp')) ===
        'fenced'
    ) return fenced;
    sizes.push({ side: size.side, path: at, width: size.width, height: size.height });
  }
  // an audio row's waveform: the preview itself, or its own tile beside the cover
  let waveformPath: string | undefined;
  if (waveform) {
    waveformPath = waveform === rendered ? path : claim.waveform_path ?? undefined;
    if (
      waveformPath && waveformPath !== path &&
      await ctx.writeOnce(
          waveformPath,
          waveform.webp,
          () => deps.objects.upload(waveformPath!, waveform.webp, 'image/webp'),
        ) === 'fenced'
    ) return fenced;
  }
  return {
    result: {
      path,
      width: rendered.width,
      height: rendered.height,
      thumbhash: rendered.thumbhash,
      originalPath: original,
      version: previewVersion(deps.config.preview),
      sizes,
      ...(waveform ? { waveformPath, durationMs: waveform.durationMs } : {}),
    },
    fields: {
      type: claim.type,
      path,
      width: rendered.width,
      height: rendered.height,
      bytes: rendered.webp.length,
      sizes: sizes.map((x) => `${x.width}x${x.height}`).join(',') || 'none',
      ...(waveform ? { durationMs: waveform.durationMs } : {}),
      isolateCpuMs: isolateBudget().spentMs,
    },
    outcome: { type: claim.type, path },
    after: claim.kind === 'video' && deps.config.preview.animated
      ? async () => {
        if (await ctx.store.queueAnimated(claim.id)) {
          log.info('[Preview]', 'Queued', {
            generationId: claim.id,
            reason: 'animated',
            type: claim.type,
          });
        }
      }
      : undefined,
  };
}
