// A sender loop: the application's backend notifying a user through the
// server API, one request at a time, recording which requests Herald
// acknowledged (2xx). Through restarts some requests fail: those may or may
// not have been stored (the reply can be lost after the commit), but every
// acknowledged one must reach every tab.

import { setTimeout as delay } from 'node:timers/promises';
import { waitFor } from './poll.mjs';

export class Sender {
  /**
   * @param {import('./herald.mjs').Herald} herald
   * @param {string} user
   * @param {{ pace?: number, prefix?: string }} o pace: ms between requests (keeps
   *   the loop from spinning while Herald is down; not used to synchronise anything)
   */
  constructor(herald, user, { pace = 25, prefix = 'n' } = {}) {
    this.herald = herald;
    this.user = user;
    this.pace = pace;
    this.prefix = prefix;
    this.seq = 0;
    /** Acknowledged requests, in order: { seq, id, offset }. */
    this.acked = [];
    /** Requests that failed: { seq, error }. */
    this.failed = [];
    this.running = false;
    this.done = undefined;
  }

  start() {
    this.running = true;
    this.done = (async () => {
      while (this.running) {
        const seq = ++this.seq;
        try {
          const r = await this.herald.notify(this.user, { seq, text: `${this.prefix}${seq}` });
          this.acked.push({ seq, id: r.id, offset: r.offset });
        } catch (err) {
          this.failed.push({ seq, error: String(err.cause?.code || err.message).slice(0, 120) });
        }
        await delay(this.pace);
      }
    })();
    return this;
  }

  async stop() {
    this.running = false;
    await this.done;
  }

  /** Resolves once n more requests than now have been acknowledged. */
  async ackedMore(n) {
    const target = this.acked.length + n;
    await waitFor(`${n} more acknowledged notifications to ${this.user}`, () => this.acked.length >= target, { timeout: 60_000 });
  }
}
