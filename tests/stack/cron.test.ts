// Our pg_cron jobs, on the real pg_cron: the migrations schedule exactly these, and pg_cron runs
// them on its own (a run of ours shows in cron.job_run_details). Nothing is scheduled or created
// by the test itself.
import { describe, expect, it } from 'vitest';
import { sql, waitFor } from '../helpers/stack.ts';

// Deletions and clips are jobs (issue 22): the one preview sweep expires their leases and wakes
// their workers too, so the former preview-cleanup and animated-sweep jobs are gone.
const OURS = [
  { jobname: 'kie-sync-pending', schedule: '* * * * *', command: 'select public.cron_kie_sync_pending()' },
  { jobname: 'net-response-trim', schedule: '17 * * * *', command: 'select public.cron_trim_history()' },
  { jobname: 'preview-sweep', schedule: '* * * * *', command: 'select public.preview_sweep()' },
];
const GONE = ['animated-sweep', 'preview-cleanup'];

describe('pg_cron', () => {
  it('the migrations schedule our three jobs, once each, active, and none of the pre-baseline ones', async () => {
    const jobs = await sql`select jobname, schedule, command, active from cron.job where jobname = any(${[...OURS, ...GONE.map((jobname) => ({ jobname }))].map((j) => j.jobname)}) order by jobname`;
    expect(jobs).toEqual(OURS.map((j) => ({ ...j, active: true })));
  });

  it('runs the preview sweep on its own every minute, and the run succeeds', async () => {
    // the stack has been up since the suite started; a minute job has a run within a minute
    const run = await waitFor('a preview-sweep run', async () =>
      (await sql`select d.status, d.return_message from cron.job_run_details d join cron.job j using (jobid)
                  where j.jobname = 'preview-sweep' and d.status in ('succeeded', 'failed')
                  order by d.start_time desc limit 1`)[0], 65_000, 1000);
    expect(run).toEqual({ status: 'succeeded', return_message: 'SELECT 1' });
  }, 70_000);
});
