/**
 * syncKieTask: brings one KIE task's result into its `generations` row. The state mapping
 * and the write are one SQL function (`apply_kie_result`): terminal states are final and a
 * sync that changes nothing writes nothing, which is what makes re-syncs idempotent. The
 * preview is queued by the row's trigger in the same transaction, never here.
 */
import type { GenerationRef, SyncOutcome } from './db.ts';
import { type KieClient } from './kie/client.ts';
import { familyForModel, type KieResult } from './kie/parse.ts';
import { log } from './log.ts';

export type SyncSource = 'callback' | 'manual' | 'cron';

/** What apply_kie_result writes: the state, the results, the asset, KIE's cover of a video, the error. */
export type KieWrite = {
  taskId: string;
  state: KieResult['state'];
  resultUrls: string[];
  assetUrl: string | null;
  coverUrl: string | null;
  error: string | null;
};

/** The callback that brought a result: its body and KIE's signature headers, relayed as they came. */
export type KieCallback = { body: Record<string, unknown>; headers: Record<string, string> };

export interface SyncStore {
  findByTask(taskId: string): Promise<GenerationRef | null>;
  apply(r: KieWrite): Promise<SyncOutcome | null>;
  /**
   * kie_owner with a relay URL: a task this write finished is relayed to the app's previous webhook,
   * once per task (the callback as it came, else the callback KIE's jobs API would have sent).
   */
  relay(
    r: KieWrite,
    callback?: KieCallback,
  ): Promise<'queued' | 'relayed_before' | 'off' | 'unknown_task'>;
}

/** What syncKieTask needs: the rows, and KIE's record-info (null without an API key). */
export type SyncDeps = { store: SyncStore; kie: KieClient | null };

export type SyncReport = {
  taskId: string;
  found: boolean;
  generationId?: string;
  status?: string;
  previewStatus?: string;
  changed?: boolean;
  needsPreview?: boolean;
  note?: string;
};

/**
 * `result` is what a callback said; when it is missing or incomplete, KIE's record-info has
 * the final word (a failure to reach it leaves the row pending for the cron sweep).
 */
export async function syncKieTask(
  input: {
    taskId: string;
    result?: KieResult;
    source: SyncSource;
    generation?: GenerationRef;
    callback?: KieCallback;
  },
  deps: SyncDeps,
): Promise<SyncReport> {
  const { taskId } = input;
  const gen = input.generation ?? await deps.store.findByTask(taskId);
  if (!gen) {
    log.info('[Sync]', 'Unknown task', { taskId, source: input.source });
    return { taskId, found: false, note: 'unknown task' };
  }
  log.info(
    '[Sync ENTRY]',
    `taskId=${taskId}, genId=${gen.id}, status=${gen.status}, type=${gen.type}, preview_status=${gen.preview_status}`,
    { source: input.source },
  );
  /** The report of a sync that leaves the row as it is. */
  const unchanged = (note: string): SyncReport => ({
    taskId,
    found: true,
    generationId: gen.id,
    status: gen.status,
    previewStatus: gen.preview_status,
    changed: false,
    note,
  });

  let result = input.result;
  // A callback that would replace the asset of a finished generation is not taken on its
  // word (a leaked callback secret must not swap a user's picture): record-info decides.
  const replacesAsset = result?.state === 'success' && gen.status === 'success' &&
    !!gen.asset_url &&
    result.resultUrls[0] !== gen.asset_url;
  if (replacesAsset) {
    log.info('[Sync]', 'Callback changes the asset of a finished generation: asking record-info', {
      taskId,
    });
  }
  if (!result || !result.complete || replacesAsset) {
    if (!deps.kie) {
      log.error('[Sync]', 'Cannot ask KIE record-info: KIE_API_KEY is not set', { taskId });
      return unchanged('incomplete result and no KIE client');
    }
    try {
      // The row's model names the family; an unrecognised callback shape would default to market.
      const family = gen.model ? familyForModel(gen.model) : result?.family ?? 'market';
      result = await deps.kie.recordInfo(taskId, family);
      log.info('[KIE]', 'record-info', {
        taskId,
        state: result.state,
        results: result.resultUrls.length,
      });
    } catch (err) {
      log.error(
        '[KIE]',
        `record-info failed for ${taskId}: ${err instanceof Error ? err.message : err}`,
      );
      return unchanged('record-info failed; left for the next sync');
    }
  }

  const write: KieWrite = {
    taskId,
    state: result.state,
    resultUrls: result.resultUrls,
    assetUrl: result.state === 'success' ? result.resultUrls[0] ?? null : null,
    coverUrl: result.state === 'success' ? result.coverUrls[0] ?? null : null,
    error: result.state === 'failed' ? result.error ?? 'Generation failed' : null,
  };
  const outcome = await deps.store.apply(write);
  if (!outcome) return { taskId, found: false, note: 'unknown task' };
  // Only a final result is relayed: a `generating` callback first would use the task's one relay.
  if (outcome.changed && write.state !== 'pending') {
    // a callback that did not carry the final word (record-info did) is relayed as KIE's jobs API
    // would have called back with that result
    const callback = input.callback && input.result === result ? input.callback : undefined;
    if (await deps.store.relay(write, callback) === 'queued') {
      log.info('[Relay]', 'Queued', { generationId: outcome.id, taskId, source: input.source });
    }
  }

  // apply_kie_result says whether its write made the row eligible (the trigger then queued it).
  const needsPreview = outcome.preview_queued;
  log.info(
    '[Sync DEBUG]',
    `status=${outcome.status}, type=${outcome.type}, preview_status=${outcome.preview_status}, needsPreview=${needsPreview}`,
    { changed: outcome.changed },
  );
  if (needsPreview) {
    log.info('[Preview]', 'Queued', {
      generationId: outcome.id,
      reason: 'needsPreview',
      type: outcome.type,
      status: outcome.status,
    });
  }
  return {
    taskId,
    found: true,
    generationId: outcome.id,
    status: outcome.status,
    previewStatus: outcome.preview_status,
    changed: outcome.changed,
    needsPreview,
  };
}
