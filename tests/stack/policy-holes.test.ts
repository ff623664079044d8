// Who a write policy lets write what (scripts/doctor.ts policyHoles, run by doctor, refused by
// deploy, closed by adopt): not only policies open to everybody, but any write policy on
// `generations` or the bucket that lets one signed-in user write another's rows or objects. Each
// case runs in one transaction on this stack and is rolled back: the policies are created, a
// second user writes the first one's row and deletes their object (the hole is real), the fixes
// policyHoles names are run, the same writes now touch nothing while each user's own still work.
import { randomUUID } from 'node:crypto';
import type postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { policyHoles } from '../../scripts/doctor.ts';
import { createUser, sql } from '../helpers/stack.ts';

class Rollback extends Error {}

/** Runs `fn` in a transaction that is always rolled back. */
async function rolledBack(fn: (tx: postgres.TransactionSql) => Promise<void>) {
  await sql.begin(async (tx) => {
    await fn(tx);
    throw new Rollback();
  }).catch((err) => {
    if (!(err instanceof Rollback)) throw err;
  });
}

/**
 * The row count of `statement` run as `userId` the way PostgREST and the Storage API run it (the
 * API sets storage.allow_delete_query for its own deletes; RLS decides which rows), in a savepoint.
 */
async function as(tx: postgres.TransactionSql, userId: string, statement: string): Promise<number> {
  return await tx.savepoint(async (sp) => {
    await sp`select set_config('role', 'authenticated', true), set_config('storage.allow_delete_query', 'true', true),
                    set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: 'authenticated' })}, true)`;
    const r = await sp.unsafe(statement);
    await sp`select set_config('role', 'none', true)`;
    return r.count;
  });
}

describe('policies that let a caller write other users\' data', () => {
  it('are found with their fix (scope an everybody policy, add the owner check to an any-user one); after the fix a user writes only their own', async () => {
    const [a, b] = [await createUser('holes-a'), await createUser('holes-b')];
    const tag = randomUUID().slice(0, 8);
    await rolledBack(async (tx) => {
      const names = {
        update: `holes ${tag}: signed-in users update any row`,
        del: `holes ${tag}: signed-in users delete any file`,
        service: `holes ${tag}: Service can manage all`,
        own: `holes ${tag}: users update own rows`,
        ownFiles: `holes ${tag}: users upload to own folder`,
      };
      await tx.unsafe(`
        create policy "${names.update}" on public.generations for update to authenticated using (auth.role() = 'authenticated');
        create policy "${names.del}" on storage.objects for delete to authenticated using (bucket_id = 'generations');
        create policy "${names.service}" on public.generations for all using (true) with check (true);
        create policy "${names.own}" on public.generations for update using (auth.uid() = user_id);
        create policy "${names.ownFiles}" on storage.objects for insert to authenticated
          with check (bucket_id = 'generations' and (storage.foldername(name))[1] = auth.uid()::text);
        create policy "holes ${tag}: read" on public.generations for select to authenticated using (true);
        create policy "holes ${tag}: read files" on storage.objects for select to authenticated using (bucket_id = 'generations');`);
      const [rowA] = await tx<{ id: string }[]>`
        insert into public.generations (user_id, type, status, prompt) values (${a.id}, 'photo', 'pending', 'a') returning id`;
      const [rowB] = await tx<{ id: string }[]>`
        insert into public.generations (user_id, type, status, prompt) values (${b.id}, 'photo', 'pending', 'b') returning id`;
      await tx`insert into storage.objects (bucket_id, name) values ('generations', ${`${a.id}/previews/${rowA.id}_preview.webp`}),
                                                                     ('generations', ${`${b.id}/previews/${rowB.id}_preview.webp`})`;

      const holes = (await policyHoles(tx)).filter((h) => h.policyname.startsWith(`holes ${tag}`));
      expect(holes.map((h) => [h.policyname, h.kind]).sort()).toEqual([
        [names.service, 'everybody'], [names.del, 'any_user'], [names.update, 'any_user'],
      ].sort());
      expect(holes.find((h) => h.policyname === names.service)!.fix).toBe(`alter policy "${names.service}" on public.generations to service_role`);
      expect(holes.find((h) => h.policyname === names.update)!.fix).toBe(
        `alter policy "${names.update}" on public.generations using (((auth.role() = 'authenticated'::text)) and (select auth.uid()) = user_id) ` +
          `with check (((auth.role() = 'authenticated'::text)) and (select auth.uid()) = user_id)`,
      );
      expect(holes.find((h) => h.policyname === names.del)!.fix).toBe(
        `alter policy "${names.del}" on storage.objects using (((bucket_id = 'generations'::text)) and (storage.foldername(name))[1] = (select auth.uid())::text)`,
      );

      // the holes are real: b writes a's row and deletes a's object
      expect(await as(tx, b.id, `update public.generations set prompt = 'by b' where id = '${rowA.id}'`)).toBe(1);
      expect(await as(tx, b.id, `delete from storage.objects where name = '${a.id}/previews/${rowA.id}_preview.webp'`)).toBe(1);
      await tx`insert into storage.objects (bucket_id, name) values ('generations', ${`${a.id}/previews/${rowA.id}_preview.webp`})`;

      for (const h of holes) await tx.unsafe(h.fix);
      expect((await policyHoles(tx)).filter((h) => h.policyname.startsWith(`holes ${tag}`))).toEqual([]);
      expect(await as(tx, b.id, `update public.generations set prompt = 'by b again' where id = '${rowA.id}'`)).toBe(0);
      expect(await as(tx, b.id, `delete from storage.objects where name = '${a.id}/previews/${rowA.id}_preview.webp'`)).toBe(0);
      // each user's own writes still work
      expect(await as(tx, b.id, `update public.generations set prompt = 'mine' where id = '${rowB.id}'`)).toBe(1);
      expect(await as(tx, b.id, `delete from storage.objects where name = '${b.id}/previews/${rowB.id}_preview.webp'`)).toBe(1);
      expect((await tx`select prompt from public.generations where id = ${rowA.id}`)[0].prompt).toBe('by b');
    });
  });

  it('owner-checked policies and reads are not holes', async () => {
    const tag = randomUUID().slice(0, 8);
    await rolledBack(async (tx) => {
      await tx.unsafe(`
        create policy "ok ${tag}: insert own" on public.generations for insert to authenticated with check (auth.uid() = user_id);
        create policy "ok ${tag}: delete own" on public.generations for delete using ((select auth.uid()) = user_id);
        create policy "ok ${tag}: public gallery" on public.generations for select using (true);
        create policy "hole ${tag}: insert anything" on public.generations for insert to authenticated with check (true);
        create policy "hole ${tag}: update own, move anywhere" on public.generations for update to authenticated
          using (auth.uid() = user_id) with check (true);`);
      const holes = (await policyHoles(tx)).filter((h) => h.policyname.includes(tag));
      expect(holes.map((h) => [h.policyname, h.cmd, h.kind]).sort()).toEqual([
        [`hole ${tag}: insert anything`, 'INSERT', 'any_user'],
        [`hole ${tag}: update own, move anywhere`, 'UPDATE', 'any_user'],
      ]);
      expect(holes.find((h) => h.cmd === 'INSERT')!.fix).toBe(
        `alter policy "hole ${tag}: insert anything" on public.generations with check ((true) and (select auth.uid()) = user_id)`,
      );
    });
  });
});
