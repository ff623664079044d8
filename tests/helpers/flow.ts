/**
 * The platform's side of a generation, as the tests drive it: the platform creates a KIE
 * task with our callback URL, stores the row (status pending, task_id), and KIE later calls
 * back. The fake task is held pending until the row exists, then released.
 */
import type { KieFamily } from '../../shared/kie/parse.ts';
import type { FakeKieBehaviour } from '../../local/fake-kie-client.ts';
import { callbackUrl, insertGeneration, kie } from './stack.ts';

export const MODELS: Record<KieFamily, string> = {
  market: 'google/nano-banana',
  '4o': 'gpt4o-image',
  'flux-kontext': 'flux-kontext-pro',
  mj: 'mj-v7',
  veo: 'veo3_fast',
  runway: 'runway-gen4',
  suno: 'V4_5',
};

export async function startGeneration(o: {
  userId: string;
  type: 'photo' | 'video' | 'audio';
  family?: KieFamily;
  fixture: string;
  /** An uploaded image KIE reports as the cover (runway image_url, veo imageUrls, suno image_url). */
  cover?: string;
  fake?: FakeKieBehaviour;
  createdAt?: Date;
}): Promise<{ id: string; taskId: string }> {
  const family = o.family ?? 'market';
  const taskId = await kie.createTask(family, {
    model: MODELS[family],
    callBackUrl: callbackUrl(),
    fixture: o.fixture,
    ...(o.cover ? { coverFixture: o.cover } : {}),
    fake: { ...o.fake, stayPending: true },
  });
  const id = await insertGeneration({ userId: o.userId, type: o.type, taskId, model: MODELS[family], createdAt: o.createdAt });
  if (!o.fake?.stayPending) await kie.setTask(taskId, { stayPending: false });
  return { id, taskId };
}
