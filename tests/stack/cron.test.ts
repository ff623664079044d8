// Real pg_cron: a scheduled job runs on its own and its run shows in cron.job_run_details.
import { afterAll, describe, expect, it } from 'vitest';
import { sql, waitFor } from '../helpers/stack.ts';

const job = `test-cron-${Date.now()}`;
afterAll(async () => {
  await sql`select cron.unschedule(${job})`.catch(() => {});
});

describe('pg_cron', () => {
  it('runs a scheduled job and records the run', async () => {
    await sql`create table if not exists public.test_cron_ticks (job text, at timestamptz default now())`;
    const [{ jobid }] = await sql`select cron.schedule(${job}, '* * * * *', ${`insert into public.test_cron_ticks (job) values ('${job}')`}) as jobid`;
    const run = await waitFor('a cron run', async () =>
      (await sql`select status, return_message from cron.job_run_details where jobid = ${jobid} and status = 'succeeded'`)[0], 75_000, 1000);
    expect(run.status).toBe('succeeded');
    const ticks = await sql`select count(*)::int as n from public.test_cron_ticks where job = ${job}`;
    expect(ticks[0].n).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
