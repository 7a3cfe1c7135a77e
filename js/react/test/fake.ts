// A fake Herald client: the events and inbox calls of the real one, driven by the test.
// Its inbox is a small in-memory server (newest first, the filters of docs/api.md) whose
// answers can be held back to test races.
import type { Counts, HeraldClient, HeraldMessage, HeraldOptions, InboxItem, State, StateChange } from '../src/types.js';

type Fn = (arg: any) => unknown;

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}
export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

export function item(offset: number, over: Partial<InboxItem> = {}): InboxItem {
  return { id: 'm' + offset, offset, epoch: 'e1', ts: '2026-11-25T12:00:00Z', data: { n: offset }, seen: false, read: false, archived: false, ...over };
}
export function message(offset: number, over: Partial<HeraldMessage> = {}): HeraldMessage {
  return { id: 'm' + offset, offset, epoch: 'e1', ts: '2026-11-25T12:00:00Z', data: { n: offset }, ...over };
}

export class FakeHerald implements HeraldClient {
  state: State = 'disconnected';
  connects = 0;
  closed = false;
  /** Inbox on the "server", newest first. */
  items: InboxItem[] = [];
  /** When set, the next inbox calls of that name wait for the test to settle them. */
  hold: Partial<Record<'list' | 'counts' | 'mark', Deferred<void>>> = {};
  readonly calls: { name: string; arg?: unknown }[] = [];
  private readonly handlers = new Map<string, Set<Fn>>();

  constructor(readonly opts?: HeraldOptions) {}

  /** live: connected (or trying) and not closed — a socket the app would hold. */
  get live(): boolean {
    return this.connects > 0 && !this.closed;
  }

  connect(): void {
    this.connects++;
    this.setState({ state: 'connecting' });
  }
  close(): void {
    this.closed = true;
    this.setState({ state: 'closed' });
  }

  on(event: string, fn: Fn): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }
  listeners(event: string): number {
    return this.handlers.get(event)?.size ?? 0;
  }

  /** emit calls the handlers of event and returns what they returned. */
  emit(event: 'message', m: HeraldMessage): unknown[];
  emit(event: 'counts', c: Counts & { mark?: 'seen' | 'read' | 'archived'; ids?: string[] }): unknown[];
  emit(event: 'state', s: StateChange): unknown[];
  emit(event: 'reset', r: { reason: string; epoch: string; offset: number }): unknown[];
  emit(event: string, arg: unknown): unknown[] {
    return [...(this.handlers.get(event) ?? [])].map((fn) => fn(arg));
  }
  setState(s: StateChange): void {
    this.state = s.state;
    this.emit('state', s);
  }

  countsNow(): Counts {
    const live = this.items.filter((i) => !i.archived);
    return { unread: live.filter((i) => !i.read).length, unseen: live.filter((i) => !i.seen).length };
  }

  private async wait(kind: 'list' | 'counts' | 'mark'): Promise<void> {
    const d = this.hold[kind];
    if (d) await d.promise;
  }
  private mark(name: string, ids: string[] | null, f: (i: InboxItem) => InboxItem) {
    this.calls.push({ name, arg: ids });
    return this.wait('mark').then(() => {
      const changed: string[] = [];
      this.items = this.items.map((i) => {
        if (ids && !ids.includes(i.id)) return i;
        const n = f(i);
        if (n.seen !== i.seen || n.read !== i.read || n.archived !== i.archived) changed.push(i.id);
        return n;
      });
      return { ...this.countsNow(), changed };
    });
  }

  inbox = {
    list: (q: { status?: 'all' | 'unread' | 'archived'; before?: number; limit?: number } = {}) => {
      this.calls.push({ name: 'list', arg: q });
      return this.wait('list').then(() => {
        const status = q.status ?? 'all';
        let rows = this.items.filter((i) => (status === 'archived' ? i.archived : status === 'unread' ? !i.read && !i.archived : !i.archived));
        if (q.before != null) rows = rows.filter((i) => i.offset < q.before!);
        const limit = q.limit ?? 50;
        const page = rows.slice(0, limit);
        const next = rows.length > limit ? page[page.length - 1]!.offset : null;
        return { messages: page.map((i) => ({ ...i })), next };
      });
    },
    counts: () => {
      this.calls.push({ name: 'counts' });
      return this.wait('counts').then(() => this.countsNow());
    },
    markSeen: (ids: string[]) => this.mark('markSeen', ids, (i) => ({ ...i, seen: true })),
    markAllSeen: () => this.mark('markAllSeen', null, (i) => ({ ...i, seen: true })),
    markRead: (ids: string[]) => this.mark('markRead', ids, (i) => ({ ...i, seen: true, read: true })),
    markAllRead: () => this.mark('markAllRead', null, (i) => ({ ...i, seen: true, read: true })),
    archive: (ids: string[]) => this.mark('archive', ids, (i) => ({ ...i, seen: true, read: true, archived: true })),
  };
}

/** A createClient for the provider that records every client it made. */
export function factory(setup?: (c: FakeHerald) => void) {
  const made: FakeHerald[] = [];
  const create = (opts: HeraldOptions) => {
    const c = new FakeHerald(opts);
    setup?.(c);
    made.push(c);
    return c;
  };
  return { made, create, live: () => made.filter((c) => c.live) };
}
