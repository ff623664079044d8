/**
 * The `animated` job's handler: a video's clip (read the source → render → still ours? → upload),
 * in its own job after the poster, written in its own columns. It exists only for a video whose
 * poster is ready and whose clip was asked for (PREVIEW_ANIMATED on); the poster never waits for
 * it. Claim, fencing, completion and failure are the runner's.
 */
import type { JobHandler } from '../jobs/runner.ts';
import type { renderAnimated } from './animated.ts';
import { releaseSource } from './fetch.ts';
import { measureRender } from './isolate.ts';
import {
  HandedBack,
  orHandBack,
  type PreviewDeps,
  readSource,
  type SourceRef,
} from './generate.ts';

export type AnimatedDeps = Pick<PreviewDeps, 'objects' | 'fetchSource' | 'config'> & {
  renderAnimated: typeof renderAnimated;
};

export function animatedHandler(deps: AnimatedDeps): JobHandler {
  return {
    prefix: '[Preview]',
    success: 'Ready',
    async run(job, ctx) {
      const input = job.input as Omit<SourceRef, 'id'> & { target_path: string };
      const { bytes } = await readSource(
        { ...input, id: job.generation_id as string },
        deps,
        ctx.isolate,
      );
      let clip: Uint8Array;
      try {
        // (the source is released once the clip is made or refused: fetch.ts releaseSource)
        // counted in the isolate's CPU estimate like a poster's render (isolate.ts)
        clip = await orHandBack(
          ctx,
          () =>
            measureRender(() =>
              deps.renderAnimated(bytes, { maxBytes: deps.config.preview.maxSourceBytes })
            ),
        );
      } catch (err) {
        if (err instanceof HandedBack) return { fenced: 'handed_to_fresh_isolate' };
        throw err;
      } finally {
        releaseSource(bytes);
      }
      if (!(await ctx.isCurrent())) return { fenced: 'claim_lost_before_upload' };
      const write = () => deps.objects.upload(input.target_path, clip, 'video/mp4');
      if (await ctx.writeOnce(input.target_path, clip, write) === 'fenced') {
        return { fenced: 'claim_lost_before_upload' };
      }
      return {
        result: { path: input.target_path },
        fields: { type: 'video', path: input.target_path, bytes: clip.length },
        outcome: { type: 'video', path: input.target_path },
      };
    },
  };
}
