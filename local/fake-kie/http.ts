/** The fake KIE's small HTTP helpers and its log line. */
export function log(line: string): void {
  console.log(`[FakeKIE] ${line}`);
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

export function kieError(code: number, msg: string, httpStatus = 200): Response {
  return json({ code, msg, data: null }, httpStatus);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
