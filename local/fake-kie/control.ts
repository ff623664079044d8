/** The control API tests drive the fake with (/__control/…): files, tasks, behaviour, resets. */
import { schedule, sendCallback } from './callbacks.ts';
import { json, log } from './http.ts';
import { type FakeKieState, mergeBehaviour, taskView } from './task.ts';

export function reset(s: FakeKieState): void {
  for (const t of s.tasks.values()) for (const id of t.timers) clearTimeout(id);
  s.tasks.clear();
  s.files.clear();
  s.requests.length = 0;
  s.outage = null;
}

export async function control(s: FakeKieState, req: Request, url: URL): Promise<Response> {
  const parts = url.pathname.split('/').filter(Boolean).slice(1).map(decodeURIComponent); // after __control
  const [what, id, action] = parts;
  if (what === 'reset' && req.method === 'POST') {
    reset(s);
    log('reset');
    return json({ ok: true });
  }
  if (what === 'outage' && req.method === 'POST') {
    // {"ms": 60000, "kind": "hang" | "error"}: KIE's API fails for that long; {"ms": 0} ends it
    const body = await req.json().catch(() => null) as { ms?: unknown; kind?: unknown } | null;
    const ms = Number(body?.ms);
    const kind = body?.kind ?? 'hang';
    if (!Number.isFinite(ms) || ms < 0 || (kind !== 'hang' && kind !== 'error')) {
      return json({ ok: false, error: 'body must be {"ms": >= 0, "kind": "hang" | "error"}' }, 400);
    }
    s.outage = ms > 0 ? { until: Date.now() + ms, kind } : null;
    log(`outage kind=${kind} ms=${ms}`);
    return json({ ok: true, until: s.outage?.until ?? null });
  }
  if (what === 'requests' && req.method === 'GET') {
    const taskId = url.searchParams.get('taskId');
    return json(taskId ? s.requests.filter((r) => r.taskId === taskId) : s.requests);
  }
  if (what === 'files') {
    if (!id && req.method === 'GET') {
      return json(
        [...s.files].map(([name, f]) => ({
          name,
          size: f.bytes.length,
          contentType: f.contentType,
        })),
      );
    }
    if (id && (req.method === 'PUT' || req.method === 'POST')) {
      if (id.includes('/') || id === '') return json({ ok: false, error: 'bad file name' }, 400);
      const bytes = new Uint8Array(await req.arrayBuffer());
      const contentType = req.headers.get('content-type') || 'application/octet-stream';
      s.files.set(id, { bytes, contentType });
      log(`stored file name=${id} size=${bytes.length} type=${contentType}`);
      return json({ ok: true, name: id, size: bytes.length, contentType });
    }
  }
  if (what === 'tasks') {
    if (!id && req.method === 'GET') return json([...s.tasks.values()].map((t) => taskView(s, t)));
    const t = id ? s.tasks.get(id) : undefined;
    if (!t) return json({ ok: false, error: `no such task: ${id}` }, 404);
    if (!action && req.method === 'GET') return json(taskView(s, t));
    if (!action && req.method === 'POST') {
      let patch: unknown;
      try {
        patch = await req.json();
      } catch {
        return json({ ok: false, error: 'body must be JSON' }, 400);
      }
      const merged = mergeBehaviour(t.fake, patch);
      if (typeof merged === 'string') return json({ ok: false, error: merged }, 400);
      if (merged.state === 'success' && t.fixtures.length === 0) {
        return json({ ok: false, error: 'task has no fixture: it cannot succeed' }, 400);
      }
      t.fake = merged;
      log(`updated task=${t.taskId} fake=${JSON.stringify(patch)}`);
      schedule(s, t); // a task released from stayPending completes now (after callbackDelayMs)
      return json(taskView(s, t));
    }
    if (action === 'callback' && req.method === 'POST') {
      if (t.completedAt === null) t.completedAt = Date.now();
      const attempt = await sendCallback(s, t);
      if (!attempt) return json({ ok: false, error: 'task has no callBackUrl' }, 400);
      return json(attempt);
    }
  }
  return json({ ok: false, error: `no control route ${req.method} ${url.pathname}` }, 404);
}
