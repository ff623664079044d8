// Our pg_cron jobs, on the real pg_cron: the migrations schedule exactly these, and pg_cron runs
// them on its own (a run of ours shows in cron.job_run_details). Nothing is scheduled or created
// by the test itself.
import { describe, expect, it } from 'vitest';
import { sql, waitFor } from '../helpers/stack.ts';

const OURS = [
  { jobname: 'animated-sweep', schedule: '* * * * *', command: 'select public.dispatch_animated_sweep()' },
  { jobname: 'kie-sync-pending', schedule: '* * * * *', command: 'select public.cron_kie_sync_pending()' },
  { jobname: 'net-response-trim', schedule: '17 * * * *', command: 'select public.cron_trim_history()' },
  { jobname: 'preview-cleanup', schedule: '* * * * *', command: 'select public.dispatch_preview_cleanup()' },
  { jobname: 'preview-sweep', schedule: '* * * * *', command: 'select public.dispatch_preview_sweep()' },
];

describe('pg_cron', () => {
  it('the migrations schedule our five jobs, once each, active', async () => {
    const jobs = await sql`select jobname, schedule, command, active from cron.job where jobname = any(${OURS.map((j) => j.jobname)}) order by jobname`;
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
