/**
 * Structured log lines with the checklist's fixed vocabulary: one line per state change,
 * `<prefix> <message> key=value key=value`, so operators can grep them
 * (`grep '\[Preview\] Ready'`). Values with spaces are JSON-quoted.
 */
export type LogPrefix =
  | '[Webhook]'
  | '[Sync ENTRY]'
  | '[Sync DEBUG]'
  | '[Sync]'
  | '[KIE]'
  | '[Preview]'
  | '[Backfill]'
  | '[Sweep]'
  | '[Cleanup]'
  | '[Relay]'
  | '[Library]'
  | '[Health]'
  | '[Config]'
  | '[Function]';

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export function formatFields(fields: LogFields = {}, separator = ' '): string {
  return Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      const s = v === null ? 'null' : String(v);
      return `${k}=${/[\s"=,]/.test(s) ? JSON.stringify(s) : s}`;
    })
    .join(separator);
}

export function logLine(
  prefix: LogPrefix,
  message: string,
  fields?: LogFields,
  separator?: string,
): string {
  const rest = formatFields(fields, separator);
  return [prefix, message, rest].filter((p) => p !== '').join(' ');
}

export const log = {
  info(prefix: LogPrefix, message: string, fields?: LogFields, separator?: string): void {
    console.log(logLine(prefix, message, fields, separator));
  },
  error(prefix: LogPrefix, message: string, fields?: LogFields, separator?: string): void {
    console.error(logLine(prefix, message, fields, separator));
  },
};
