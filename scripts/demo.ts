/**
 * The one-command demo (npm run demo, after scripts/demo.sh has started the local stack):
 * makes real media with ffmpeg (landscape JPEG, portrait JPEG stored sideways with EXIF
 * orientation 6, PNG with transparency, a video with a black fade-in, a portrait video),
 * sends each through the real path (fake KIE task → KIE callback, signed when the stack
 * signs → kie-callback → sync → trigger → generate-preview), prints a table and the library
 * page's login link.
 *
 *   bash scripts/run-deno.sh scripts/demo.ts [--stack-env=FILE] [--once]
 *
 * Exits non-zero when any preview is not ready.
 */
import postgres from 'postgres';
import { createFakeKieClient } from '../local/fake-kie-client.ts';
import type { KieFamily } from '../shared/kie/parse.ts';
import { parseEnvFile } from '../local/env-file.ts';

export const DEMO_EMAIL = 'demo@example.com';
export const DEMO_PASSWORD = 'demo-password';

type Item = {
  label: string;
  type: 'photo' | 'video';
  family: KieFamily;
  model: string;
  file: string;
  mime: string;
};

function ffmpeg(args: string[]) {
  const out = new Deno.Command('ffmpeg', {
    args: ['-hide_banner', '-loglevel', 'error', '-y', ...args],
    stdout: 'null',
    stderr: 'piped',
  }).outputSync();
  if (!out.success) {
    throw new Error(`ffmpeg ${args.join(' ')} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Inserts an EXIF APP1 segment with only Orientation = `orientation` right after SOI. */
export function withExifOrientation(jpeg: Uint8Array, orientation: number): Uint8Array {
  const tiff = [
    0x4d,
    0x4d,
    0x00,
    0x2a,
    0,
    0,
    0,
    8,
    0,
    1,
    0x01,
    0x12,
    0,
    3,
    0,
    0,
    0,
    1,
    0,
    orientation,
    0,
    0,
    0,
    0,
    0,
    0,
  ];
  const payload = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff]; // "Exif\0\0"
  const len = payload.length + 2;
  const app1 = [0xff, 0xe1, len >> 8, len & 0xff, ...payload];
  const out = new Uint8Array(jpeg.length + app1.length);
  out.set(jpeg.subarray(0, 2));
  out.set(app1, 2);
  out.set(jpeg.subarray(2), 2 + app1.length);
  return out;
}

function makeMedia(dir: string): Item[] {
  Deno.mkdirSync(dir, { recursive: true });
  const p = (n: string) => `${dir}/${n}`;
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'mandelbrot=s=1600x1000:end_pts=1',
    '-frames:v',
    '1',
    '-q:v',
    '3',
    p('landscape.jpg'),
  ]);
  // Drawn upright at 900×1200, stored sideways (1200×900, turned 90° counter-clockwise) with
  // EXIF orientation 6 (rotate 90° clockwise to display): shown upright at 900×1200.
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'testsrc2=s=900x1200',
    '-vf',
    'transpose=2',
    '-frames:v',
    '1',
    '-q:v',
    '3',
    p('portrait-raw.jpg'),
  ]);
  Deno.writeFileSync(
    p('portrait-exif6.jpg'),
    withExifOrientation(Deno.readFileSync(p('portrait-raw.jpg')), 6),
  );
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'gradients=s=900x700:seed=3',
    '-vf',
    "format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(lt(hypot(X-W/2,Y-H/2),H/2.2),255,0)'",
    '-frames:v',
    '1',
    p('transparent.png'),
  ]);
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'testsrc2=s=1280x720:r=30:d=3',
    '-vf',
    'fade=in:st=1:d=0.5,format=yuv420p',
    '-c:v',
    'libx264',
    '-preset',
    'fast',
    '-crf',
    '28',
    '-movflags',
    '+faststart',
    p('fade-in.mp4'),
  ]);
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'gradients=s=540x960:r=30:d=3:speed=0.08',
    '-vf',
    'format=yuv420p',
    '-c:v',
    'libx264',
    '-preset',
    'fast',
    '-crf',
    '28',
    '-movflags',
    '+faststart',
    p('portrait.mp4'),
  ]);
  return [
    {
      label: 'landscape JPEG',
      type: 'photo',
      family: 'market',
      model: 'google/nano-banana',
      file: p('landscape.jpg'),
      mime: 'image/jpeg',
    },
    {
      label: 'portrait JPEG, EXIF 6',
      type: 'photo',
      family: '4o',
      model: 'gpt4o-image',
      file: p('portrait-exif6.jpg'),
      mime: 'image/jpeg',
    },
    {
      label: 'PNG with alpha',
      type: 'photo',
      family: 'flux-kontext',
      model: 'flux-kontext-pro',
      file: p('transparent.png'),
      mime: 'image/png',
    },
    {
      label: 'video, black fade-in',
      type: 'video',
      family: 'veo',
      model: 'veo3_fast',
      file: p('fade-in.mp4'),
      mime: 'video/mp4',
    },
    {
      label: 'portrait video',
      type: 'video',
      family: 'runway',
      model: 'runway-gen4',
      file: p('portrait.mp4'),
      mime: 'video/mp4',
    },
  ];
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => '│ ' + r.map((c, i) => c.padEnd(widths[i])).join(' │ ') + ' │';
  const rule = (l: string, m: string, r: string) =>
    l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r;
  return [
    rule('┌', '┬', '┐'),
    line(rows[0]),
    rule('├', '┼', '┤'),
    ...rows.slice(1).map(line),
    rule('└', '┴', '┘'),
  ].join('\n');
}

async function main(): Promise<number> {
  const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
  const arg = Deno.args.find((a) => a.startsWith('--stack-env='));
  const env = parseEnvFile(
    Deno.readTextFileSync(arg ? arg.slice('--stack-env='.length) : `${root}/.local/dev/stack.env`),
  );
  const timeoutMs = Number(Deno.args.find((a) => a.startsWith('--timeout='))?.slice(10) ?? 300) *
    1000;
  const sql = postgres(env.DB_URL, { max: 2, prepare: false, onnotice: () => {} });
  const kie = createFakeKieClient(env.KIE_URL);
  try {
    console.log('demo: making media with ffmpeg…');
    const items = makeMedia(`${env.STACK_DIR ?? `${root}/.local/dev`}/demo-media`);

    // The demo user, through the Auth API like any admin tool (kept across runs).
    const res = await fetch(`${env.API_URL}/auth/v1/admin/users`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        apikey: env.SERVICE_ROLE_KEY,
        authorization: `Bearer ${env.SERVICE_ROLE_KEY}`,
      },
      body: JSON.stringify({ email: DEMO_EMAIL, password: DEMO_PASSWORD, email_confirm: true }),
    });
    if (!res.ok && res.status !== 422) {
      throw new Error(`creating the demo user failed: ${res.status} ${await res.text()}`);
    }
    await res.body?.cancel();
    const [user] = await sql<
      { id: string }[]
    >`select id from auth.users where email = ${DEMO_EMAIL}`;
    console.log(`demo: user ${DEMO_EMAIL} / ${DEMO_PASSWORD} (${user.id})`);

    const callBackUrl = `${env.API_URL}/functions/v1/kie-callback?secret=${
      encodeURIComponent(env.KIE_CALLBACK_SECRET)
    }`;
    const started: { item: Item; id: string; taskId: string; at: number }[] = [];
    for (const item of items) {
      const name = `demo-${crypto.randomUUID()}${item.file.slice(item.file.lastIndexOf('.'))}`;
      await kie.putFile(name, Deno.readFileSync(item.file), item.mime);
      // As the platform does: create the KIE task with our callback URL, store the row, and
      // KIE calls back when done (held pending here until the row exists).
      const taskId = await kie.createTask(item.family, {
        model: item.model,
        callBackUrl,
        fixture: name,
        prompt: `demo: ${item.label}`,
        fake: { stayPending: true },
      });
      const [row] = await sql<{ id: string }[]>`
        insert into public.generations (user_id, type, status, task_id, model, prompt)
        values (${user.id}, ${item.type}, 'pending', ${taskId}, ${item.model}, ${`demo: ${item.label}`}) returning id`;
      await kie.setTask(taskId, { stayPending: false });
      started.push({ item, id: row.id, taskId, at: performance.now() });
      console.log(`demo: ${item.label} → KIE task ${taskId} → generation ${row.id}`);
    }

    type Row = {
      id: string;
      status: string;
      preview_status: string;
      preview_path: string | null;
      poster_path: string | null;
      /** The row's preview job is still live (queued or running): not settled yet. */
      job_live: boolean;
    };
    const seconds = new Map<string, number>();
    const deadline = performance.now() + timeoutMs;
    let rows: Row[] = [];
    for (;;) {
      rows = await sql<Row[]>`
        select g.id, g.status, g.preview_status, g.preview_path, g.poster_path,
               exists (select 1 from public.preview_jobs j where j.generation_id = g.id and j.kind = 'preview'
                        and j.state in ('queued', 'running')) as job_live
          from public.generations g where g.id in ${sql(started.map((s) => s.id))}`;
      for (const r of rows) {
        const s = started.find((x) => x.id === r.id)!;
        if (r.preview_status === 'ready' && !seconds.has(r.id)) {
          seconds.set(r.id, (performance.now() - s.at) / 1000);
        }
      }
      const settled = rows.every((r) =>
        r.preview_status === 'ready' ||
        (r.preview_status === 'failed' && !r.job_live) || r.status === 'failed'
      );
      if (settled || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }

    const out = [['id', 'type', 'what', 'status', 'preview', 'path', 's to ready']];
    for (const s of started) {
      const r = rows.find((x) => x.id === s.id)!;
      out.push([
        r.id,
        s.item.type,
        s.item.label,
        r.status,
        r.preview_status,
        r.poster_path ?? r.preview_path ?? '—',
        seconds.has(r.id) ? seconds.get(r.id)!.toFixed(1) : '—',
      ]);
    }
    console.log(`\n${table(out)}\n`);
    const ready = rows.filter((r) => r.preview_status === 'ready').length;
    const loginLink = `${env.API_URL}/library#email=${encodeURIComponent(DEMO_EMAIL)}&password=${
      encodeURIComponent(DEMO_PASSWORD)
    }`;
    console.log(`${ready}/${rows.length} previews ready`);
    console.log(
      `Library page:  ${env.API_URL}/library   (sign in as ${DEMO_EMAIL} / ${DEMO_PASSWORD})`,
    );
    console.log(`Login link:    ${loginLink}`);
    return ready === rows.length ? 0 : 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

if (import.meta.main) Deno.exit(await main());
