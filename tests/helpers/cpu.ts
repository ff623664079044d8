/** Keeps the thread busy for `ms` of wall time: the CPU of a render, as the isolate's estimate sees it. */
export function busyFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* the CPU of a render */ }
}
