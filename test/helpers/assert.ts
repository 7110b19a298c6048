/** Assertions and waits more than one test file needs. */
import * as assert from 'uvu/assert';

/** The promise rejects with a message matching `re` (and, if given, an instance of `type`); returns the error. */
export async function rejects<T extends Error = Error>(p: Promise<unknown>, re: RegExp, type?: new (...a: never[]) => T): Promise<T> {
  try {
    await p;
  } catch (err) {
    assert.match(String((err as Error).message), re);
    if (type) assert.instance(err, type, `a ${type.name}`);
    return err as T;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
  throw new Error('unreachable');
}

/** Poll `fn` until it returns something other than undefined or false; errors count as "not yet", and the last one is in the timeout's message. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
