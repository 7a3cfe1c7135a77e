// Bounded polling: the only synchronisation the e2e tests use. A loaded
// 2-core machine makes every duration unpredictable, so tests never sleep a
// guessed time and never assert on timing; they wait (generously) for a
// condition and fail with a description of what they last saw.

import { setTimeout as delay } from 'node:timers/promises';

/** Default bound for one condition. Generous: only a broken feature hits it. */
export const TIMEOUT = 30_000;

/**
 * Calls fn until it returns a truthy value (returned) or the timeout passes
 * (throws, naming `what` and describing the last value or error seen).
 */
export async function waitFor(what, fn, { timeout = TIMEOUT, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? `error: ${last.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (${seen})`);
    }
    await delay(interval);
  }
}
