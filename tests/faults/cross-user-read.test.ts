// The cross-user read of issue 10: an asset URL that points into our own storage is read
// with the service key, so a forged success callback (the callback secret and a valid
// signature) could name another user's object through an encoded separator or a dot
// segment, or leave storage for another route. Two real users, real callbacks, the gateway's
// request log: bob's bytes never reach alice's row or objects, and no service-key request
// leaves /storage/v1/object/…/generations/.
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { startGeneration } from '../helpers/flow.ts';
import { expectSettled, successRowWithAsset } from '../helpers/faults.ts';
import { kieFile, landscapeJpeg } from '../helpers/media.ts';
import { adminClient, API_URL, createUser, generation, logMark, logSince, sql, type TestUser, waitForPreview } from '../helpers/stack.ts';

let alice: TestUser;
let bob: TestUser;
let bobOriginal: string;

beforeAll(async () => {
  [alice, bob] = await Promise.all([createUser('xread-alice'), createUser('xread-bob')]);
  const { id } = await startGeneration({ userId: bob.id, type: 'photo', fixture: await kieFile(await landscapeJpeg(), 'jpg', 'image/jpeg') });
  bobOriginal = (await waitForPreview(id)).original_path;
  expect(bobOriginal).toMatch(new RegExp(`^${bob.id}/originals/`));
});

describe('an asset URL into our storage names only the row owner\'s object', () => {
  it('encoded slashes, backslashes and dot segments towards bob\'s file or another route: failed SOURCE_FORBIDDEN, nothing of bob\'s read, no request outside the bucket; alice\'s own object still reads', async () => {
    const marker = `marker-${randomUUID()}`;
    const obj = `${API_URL}/storage/v1/object`;
    const rest = bobOriginal.slice(bob.id.length + 1); // originals/<id>.jpg
    const urls = [
      `${obj}/authenticated/generations/${alice.id}%2F..%2F${bob.id}/${rest}`,
      `${obj}/authenticated/generations/${alice.id}%2f..%2f${bob.id}%2f${rest.replace('/', '%2f')}`,
      `${obj}/public/generations/${alice.id}%5C..%5C${bob.id}/${rest}`,
      `${obj}/generations/${alice.id}/%2e%2e/${bob.id}/${rest}`,
      `${obj}/generations/${alice.id}/x/../../${bob.id}/${rest}`,
      `${obj}/generations/${alice.id}%252F..%252F${bob.id}/${rest}`,
      `${obj}/generations/${alice.id}%00/../${bob.id}/${rest}`,
      `${API_URL}\\storage/v1/object/generations/${alice.id}/..\\${bob.id}/${rest}`,
      // out of storage altogether, to a route that would log the marker if reached
      `${obj}/authenticated/generations/${alice.id}%2F..%2F..%2F..%2F..%2F..%2Frest%2Fv1%2F${marker}`,
      `${obj}/generations/${alice.id}%2F..%2F..%2F..%2F..%2F_local%2Fisolates%2F${marker}`,
    ];
    const mark = logMark();
    for (const url of urls) {
      const { id } = await successRowWithAsset(alice.id, url);
      const row = await waitForPreview(id);
      const job = await expectSettled(row, { code: 'SOURCE_FORBIDDEN', error: /^Download refused: /, retryDue: false });
      expect(job!.attempts, url).toBe(1);
      expect([row.preview_path, row.original_path], url).toEqual([null, null]);
      expect(row.preview_error, url).not.toContain(bob.id);
    }
    // A legitimate read in the same window: the owner's own object by URL is read (and kept
    // as the original, no copy), and the request log shows the service key reading it.
    const ownPath = `${alice.id}/uploads/${randomUUID()}.jpg`;
    const { error } = await adminClient().storage.from('generations').upload(ownPath, await landscapeJpeg(), { contentType: 'image/jpeg' });
    expect(error).toBeNull();
    const own = await successRowWithAsset(alice.id, `${API_URL}/storage/v1/object/authenticated/generations/${ownPath}`);
    const row = await waitForPreview(own.id);
    await expectSettled(row, { ready: true });
    expect(row.original_path).toBe(ownPath);
    expect((await generation(own.id)).preview_path).toBe(`${alice.id}/previews/${own.id}_preview.webp`);
    expect(logSince(mark, '[Gateway] request method=GET', `path=/storage/v1/object/generations/${ownPath}`, 'role=service_role')).toHaveLength(1);
    // Nothing asked for in this window named bob's folder or reached the marker's route.
    expect(logSince(mark, '[Gateway] request ', bob.id)).toEqual([]);
    expect(logSince(mark, marker)).toEqual([]);
    // alice's folder holds her upload and its preview (both sizes), and no copy of anything else
    const names = (await sql<{ name: string }[]>`select name from storage.objects where name like ${`${alice.id}/%`} order by name`).map((r) => r.name);
    expect(names).toEqual([`${alice.id}/previews/${own.id}_preview.webp`, `${alice.id}/previews/${own.id}_preview_1024.webp`, ownPath]);
  });
});
