/** The closed error code a render ends with ('OK' when it resolves), asserting it is a PreviewError with a readable message. */
import { expect } from 'vitest';
import { PreviewError } from '../../shared/errors.ts';

export async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(PreviewError);
    expect((err as PreviewError).message.length).toBeGreaterThan(10);
    return (err as PreviewError).code;
  }
  return 'OK';
}
