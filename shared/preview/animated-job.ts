/**
 * One animated-preview job: claim → read the source → render the clip → upload → complete |
 * fail, fenced by its own attempt (claim_animated_preview), in its own columns. It runs only for
 * a video whose poster is ready and for which the poster's worker asked (PREVIEW_ANIMATED on);
 * the poster never waits for it.
 */
import type { AnimatedStore } from '../db.ts';
import { log } from '../log.ts';
import type { renderAnimated } from './animated.ts';
import { failedOutcome, type PreviewDeps, type PreviewOutcome, readSource } from './generate.ts';

export type AnimatedDeps = Pick<PreviewDeps, 'objects' | 'fetchSource' | 'config'> & {
  store: AnimatedStore;
  renderAnimated: typeof renderAnimated;
};

export async function generateAnimated(
  generationId: string,
  deps: AnimatedDeps,
): Promise<PreviewOutcome> {
  const claim = await deps.store.claim(generationId);
  if (!claim) {
    log.info('[Preview]', 'Skipped', { generationId, step: 'animated', reason: 'not_claimable' });
    return { generationId, result: 'skipped' };
  }
  log.info('[Preview]', 'Processing', {
    generationId,
    type: 'video',
    step: 'animated',
    attempt: claim.attempt,
  });
  try {
    const { bytes } = await readSource(claim, deps);
    const clip = await deps.renderAnimated(bytes, { maxBytes: deps.config.preview.maxSourceBytes });
    await deps.objects.upload(claim.target_path, clip, 'video/mp4');
    if (!(await deps.store.complete(claim, claim.target_path))) {
      log.info('[Preview]', 'Fenced', {
        generationId,
        step: 'animated',
        attempt: claim.attempt,
        reason: 'newer_attempt',
      });
      return { generationId, result: 'fenced', type: 'video', attempt: claim.attempt };
    }
    log.info('[Preview]', 'Ready', {
      generationId,
      type: 'video',
      step: 'animated',
      path: claim.target_path,
      bytes: clip.length,
    });
    return {
      generationId,
      result: 'ready',
      type: 'video',
      path: claim.target_path,
      attempt: claim.attempt,
    };
  } catch (err) {
    return await failedOutcome(
      generationId,
      claim,
      'video',
      'Animated preview failed',
      err,
      (pe) => deps.store.fail(claim, { code: pe.code, retryable: pe.retryable }),
    );
  }
}
