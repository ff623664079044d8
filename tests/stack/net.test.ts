// The pg_net stand-in: a request is sent only when its transaction commits, exactly once,
// and its outcome (status, body, timeout) is recorded in net._http_response.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netFence, sql, waitFor } from '../helpers/stack.ts';

let server: Server;
let base = '';
const hits: { path: string; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hits.push({ path: req.url ?? '', body });
      if (req.url?.startsWith('/slow')) return void setTimeout(() => res.end('late'), 3000);
      res.writeHead(201, { 'content-type': 'application/json' }).end('{"got":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('net.http_post stand-in', () => {
  it('sends nothing for a rolled-back transaction', async () => {
    const marker = `/rollback-${Date.now()}`;
    const err = await sql.begin(async (tx) => {
      await tx`select net.http_post(${base + marker}, '{"a":1}'::jsonb)`;
      await tx`select 1/0`;
    }).then(() => null, (e: { code?: string }) => e.code);
    expect(err).toBe('22012'); // the division by zero rolled it back, not a broken http_post
    await netFence();
    expect(hits.filter((h) => h.path === marker)).toHaveLength(0);
  });

  it('delivers a committed request once and records its response', async () => {
    const marker = `/commit-${Date.now()}`;
    const [{ id }] = await sql`select net.http_post(${base + marker}, '{"hello":"world"}'::jsonb) as id`;
    const response = await waitFor('response row', async () => (await sql`select * from net._http_response where id = ${id}`)[0]);
    expect(response.status_code).toBe(201);
    expect(response.content).toBe('{"got":true}');
    expect(response.timed_out).toBe(false);
    const sent = hits.filter((h) => h.path === marker);
    expect(sent).toHaveLength(1);
    expect(JSON.parse(sent[0].body)).toEqual({ hello: 'world' });
    await netFence(); // a second delivery of the same request would come before the fence's
    expect(hits.filter((h) => h.path === marker)).toHaveLength(1);
  });

  it('records a timeout as timed_out', async () => {
    const [{ id }] = await sql`select net.http_post(${`${base}/slow-${Date.now()}`}, '{}'::jsonb, timeout_milliseconds => 500) as id`;
    const response = await waitFor('timeout row', async () => (await sql`select * from net._http_response where id = ${id}`)[0], 15_000);
    expect(response.timed_out).toBe(true);
    expect(response.status_code).toBeNull();
    expect(response.error_msg).toMatch(/Timeout/);
  });
});
