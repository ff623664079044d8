// Released migrations are frozen: a project that applied a file never runs it again, so an edit
// would silently never reach it. Every file in migrations/ is held to the checksum recorded in
// tests/unit/migrations.sha256; a change is a new migration, dated after every released one.
// UPDATE_MIGRATION_CHECKSUMS=1 records NEW files only: a recorded file's checksum never changes.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const recordFile = join(import.meta.dirname, 'migrations.sha256');

function recorded(): Map<string, string> {
  const lines = readFileSync(recordFile, 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  return new Map(lines.map((l) => {
    const [sum, file] = l.trim().split(/\s+/);
    return [file, sum];
  }));
}

function current(): Map<string, string> {
  const files = readdirSync(join(root, 'migrations')).filter((f) => f.endsWith('.sql')).sort();
  return new Map(files.map((f) => [f, createHash('sha256').update(readFileSync(join(root, 'migrations', f))).digest('hex')]));
}

const version = (f: string) => f.split('_')[0];

describe('released migrations are frozen', () => {
  const record = recorded();
  const now = current();
  const added = [...now.keys()].filter((f) => !record.has(f));

  it('no recorded migration was edited', () => {
    const edited = [...record].filter(([f, sum]) => now.has(f) && now.get(f) !== sum).map(([f]) => f);
    expect(edited, 'a released migration changed: revert it and put the change in a new migration').toEqual([]);
  });

  it('no recorded migration was removed', () => {
    expect([...record.keys()].filter((f) => !now.has(f)), 'a released migration is gone: projects that applied it keep its objects').toEqual([]);
  });

  it('a new migration is dated after every recorded one, and recorded', () => {
    const last = [...record.keys()].map(version).sort().at(-1) ?? '';
    expect(added.filter((f) => version(f) <= last), `new migrations must sort after ${last}`).toEqual([]);
    if (added.length && process.env.UPDATE_MIGRATION_CHECKSUMS === '1') {
      const lines = readFileSync(recordFile, 'utf8').trimEnd().split('\n');
      for (const f of added) lines.push(`${now.get(f)}  ${f}`);
      writeFileSync(recordFile, `${lines.join('\n')}\n`);
      return;
    }
    expect(added, 'record new migrations with UPDATE_MIGRATION_CHECKSUMS=1 npx vitest run tests/unit/migrations.test.ts').toEqual([]);
  });
});
