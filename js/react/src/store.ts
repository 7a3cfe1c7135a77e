// The state behind the hooks, kept outside React so that one client's events are
// subscribed once per provider (not once per component) and read by components
// through useSyncExternalStore. Nothing here touches window or document.
import type { Counts, CountsEvent, HeraldClient, HeraldMessage, StateChange } from './types.js';

type Listener = () => void;

/** A value with subscribers: the unit that useSyncExternalStore reads. */
export class Cell<T> {
  private readonly fns = new Set<Listener>();
  constructor(private value: T) {}
  readonly get = (): T => this.value;
  readonly subscribe = (fn: Listener): (() => void) => {
    this.fns.add(fn);
    return () => {
      this.fns.delete(fn);
    };
  };
  set(value: T): void {
    if (Object.is(value, this.value)) return;
    this.value = value;
    for (const fn of [...this.fns]) fn();
  }
}

/** What useConnectionState returns: the client's last state change. */
export type ConnectionInfo = Readonly<StateChange>;

/** Before the client exists (server render, first client render) the provider is about to connect. */
export const INITIAL_CONNECTION: ConnectionInfo = Object.freeze({ state: 'connecting' });
export const NO_MESSAGES: readonly HeraldMessage[] = Object.freeze([]);

/** How many received messages the provider keeps when no useNotifications asks for more. */
export const DEFAULT_LIMIT = 50;

/** Unstored messages (broadcasts) have no offset; their ids are remembered this far back. */
const RECENT_IDS = 256;

/**
 * HeraldStore is one provider's view of its client: connection state, counts and the
 * received messages, plus fan-out of messages, marks and resets to the hooks.
 *
 * It owns the client's lifetime through acquire/release. release closes the client one
 * microtask later, and an acquire for the same key in between cancels that: React
 * StrictMode (mount, unmount, mount in one commit) and fast refresh (effects re-run,
 * state kept) therefore keep the one client and its socket instead of opening a second.
 */
export class HeraldStore {
  readonly client = new Cell<HeraldClient | null>(null);
  readonly connection = new Cell<ConnectionInfo>(INITIAL_CONNECTION);
  readonly counts = new Cell<Counts | null>(null);
  readonly messages = new Cell<readonly HeraldMessage[]>(NO_MESSAGES);

  private readonly messageFns = new Set<(m: HeraldMessage) => unknown>();
  private readonly markFns = new Set<(e: CountsEvent) => void>();
  private readonly resetFns = new Set<Listener>();
  private readonly limits: number[] = [];

  private key: unknown = undefined;
  private owned = false;
  private offs: (() => void)[] = [];
  private releasing: HeraldClient | null = null;
  private countsGen = 0;
  // Dedupe: the highest offset seen in the current epoch (offsets arrive in order), and
  // the ids of recent unstored messages.
  private high: { epoch: string; offset: number } | null = null;
  private readonly recentIds = new Set<string>();

  /**
   * acquire makes the client for key current: the one already held when its key is the
   * same (cancelling a pending release), else a new one from make, connected when owned.
   */
  acquire(key: unknown, make: () => HeraldClient, owned: boolean): void {
    const cur = this.client.get();
    if (cur && Object.is(this.key, key)) {
      this.releasing = null;
      return;
    }
    if (cur) this.drop();
    const c = make();
    this.key = key;
    this.owned = owned;
    this.attach(c);
    if (owned) c.connect();
    // A client that said nothing on connect, or an external one already running: its
    // counts event went by before we listened.
    if (this.connection.get() === INITIAL_CONNECTION && c.state !== 'connecting') {
      this.connection.set({ state: c.state });
    }
    if (!owned) this.fetchCounts(c);
  }

  /** release closes the current client after a microtask unless acquire takes it back first. */
  release(): void {
    const c = this.client.get();
    if (!c) return;
    this.releasing = c;
    queueMicrotask(() => {
      if (this.releasing === c && this.client.get() === c) this.drop();
    });
  }

  /** retainLimit asks the store to keep at least n messages until the returned function is called. */
  retainLimit(n: number): () => void {
    this.limits.push(n);
    return () => {
      const i = this.limits.indexOf(n);
      if (i >= 0) this.limits.splice(i, 1);
    };
  }

  readonly clearMessages = (): void => {
    this.messages.set(NO_MESSAGES);
  };

  /** subscribeMessages calls fn for each new message (after dedupe); fn's promise delays the ack. */
  subscribeMessages(fn: (m: HeraldMessage) => unknown): () => void {
    return add(this.messageFns, fn);
  }
  /** subscribeMarks calls fn for each counts push that says which ids changed. */
  subscribeMarks(fn: (e: CountsEvent) => void): () => void {
    return add(this.markFns, fn);
  }
  /** subscribeResets calls fn after a reset: what was fetched may be wrong now. */
  subscribeResets(fn: Listener): () => void {
    return add(this.resetFns, fn);
  }

  private attach(c: HeraldClient): void {
    this.client.set(c);
    this.offs = [
      c.on('state', (s) => this.connection.set({ ...s })),
      // The client fetches counts on every (re)connect and after a reset, and counts each
      // new stored message itself; its 'counts' events are the whole truth.
      c.on('counts', (e) => {
        this.countsGen++;
        this.putCounts(e);
        if (e.mark && e.ids) for (const fn of [...this.markFns]) fn(e);
      }),
      c.on('reset', () => {
        this.high = null;
        for (const fn of [...this.resetFns]) fn();
      }),
      c.on('message', (m) => this.receive(m)),
    ];
  }

  private drop(): void {
    const c = this.client.get();
    if (!c) return;
    for (const off of this.offs) off();
    this.offs = [];
    this.releasing = null;
    this.key = undefined;
    this.countsGen++;
    this.client.set(null);
    this.connection.set(INITIAL_CONNECTION);
    if (this.owned) c.close();
  }

  private receive(m: HeraldMessage): void | Promise<void> {
    if (!this.isNew(m)) return;
    const cap = Math.max(DEFAULT_LIMIT, ...this.limits);
    const cur = this.messages.get();
    this.messages.set([m, ...(cur.length >= cap ? cur.slice(0, cap - 1) : cur)]);
    const waits: Promise<unknown>[] = [];
    for (const fn of [...this.messageFns]) {
      try {
        const r = fn(m);
        if (r && typeof (r as Promise<unknown>).then === 'function') waits.push(r as Promise<unknown>);
      } catch (err) {
        waits.push(Promise.reject(err));
      }
    }
    if (waits.length) return Promise.all(waits).then(() => undefined);
  }

  private isNew(m: HeraldMessage): boolean {
    if (m.offset != null && m.epoch != null) {
      const h = this.high;
      if (h && h.epoch === m.epoch && m.offset <= h.offset) return false;
      this.high = { epoch: m.epoch, offset: m.offset };
      return true;
    }
    if (this.recentIds.has(m.id)) return false;
    this.recentIds.add(m.id);
    if (this.recentIds.size > RECENT_IDS) {
      const first = this.recentIds.values().next().value;
      if (first !== undefined) this.recentIds.delete(first);
    }
    return true;
  }

  private fetchCounts(c: HeraldClient): void {
    const gen = ++this.countsGen;
    c.inbox.counts().then(
      (n) => {
        if (gen === this.countsGen && this.client.get() === c) this.putCounts(n);
      },
      // Counts stay as they were; the client's next counts event replaces them.
      () => undefined,
    );
  }

  private putCounts(n: Counts): void {
    const cur = this.counts.get();
    if (cur && cur.unread === n.unread && cur.unseen === n.unseen) return;
    this.counts.set({ unread: n.unread, unseen: n.unseen });
  }
}

function add<T>(set: Set<T>, fn: T): () => void {
  set.add(fn);
  return () => {
    set.delete(fn);
  };
}
