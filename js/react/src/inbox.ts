// The state behind one useInbox: a page (or pages) of the inbox for one filter, kept in
// sync with what happens elsewhere — new messages, counts pushes naming the ids that
// another tab marked, resets — without refetching when the change can be applied here.
import type { HeraldStore } from './store.js';
import type { CountsEvent, HeraldClient, HeraldMessage, InboxFilter, InboxItem } from './types.js';

export interface InboxSnapshot {
  /** The inbox items of the filter, newest first. */
  readonly items: readonly InboxItem[];
  /** A first page (or a refresh) is being fetched. */
  readonly loading: boolean;
  /** loadMore is fetching the next page. */
  readonly loadingMore: boolean;
  /** The last failed request's error, cleared by the next refresh. */
  readonly error: Error | null;
  /** There are older items: loadMore fetches them. */
  readonly hasMore: boolean;
}

export const INITIAL_INBOX: InboxSnapshot = Object.freeze({
  items: Object.freeze([]) as readonly InboxItem[],
  loading: true,
  loadingMore: false,
  error: null,
  hasMore: false,
});

type Mark = NonNullable<CountsEvent['mark']>;
type Change = (items: readonly InboxItem[]) => readonly InboxItem[];

/** visible says whether an item belongs to the list of a filter (docs/api.md "Inbox"). */
export function visible(it: InboxItem, filter: InboxFilter): boolean {
  if (filter === 'archived') return it.archived;
  if (filter === 'unread') return !it.read && !it.archived;
  return !it.archived;
}

function marked(it: InboxItem, mark: Mark): InboxItem {
  // read implies seen; archived implies both.
  const seen = true;
  const read = it.read || mark !== 'seen';
  const archived = it.archived || mark === 'archived';
  if (it.seen === seen && it.read === read && it.archived === archived) return it;
  return { ...it, seen, read, archived };
}

export class InboxStore {
  private snap: InboxSnapshot = INITIAL_INBOX;
  private readonly fns = new Set<() => void>();
  private client: HeraldClient | null = null;
  private filter: InboxFilter = 'all';
  private limit: number | undefined;
  private next: number | null = null;
  /** Bumped by refresh and detach: answers to older requests are dropped. */
  private gen = 0;
  /** Local changes made while requests are in flight, replayed on their answers. */
  private log: Change[] = [];
  private inFlight = 0;
  /** Bumped by attach and detach: a request of an earlier attachment leaves the log alone. */
  private session = 0;

  constructor(private readonly store: HeraldStore) {}

  readonly subscribe = (fn: () => void): (() => void) => {
    this.fns.add(fn);
    return () => {
      this.fns.delete(fn);
    };
  };
  readonly getSnapshot = (): InboxSnapshot => this.snap;
  readonly getServerSnapshot = (): InboxSnapshot => INITIAL_INBOX;

  /** attach starts following the provider's client for filter; the returned function stops. */
  attach(filter: InboxFilter, limit: number | undefined): () => void {
    if (filter !== this.filter || limit !== this.limit) {
      this.filter = filter;
      this.limit = limit;
      this.set(INITIAL_INBOX);
    }
    const offs = [
      this.store.client.subscribe(() => this.follow()),
      this.store.subscribeMarks((e) => {
        if (e.mark && e.ids) this.mark(e.mark, e.ids, false);
      }),
      this.store.subscribeResets(() => void this.refresh()),
      this.store.subscribeMessages((m) => this.receive(m)),
    ];
    this.session++;
    this.client = null;
    this.follow();
    return () => {
      for (const off of offs) off();
      this.session++;
      this.client = null;
      this.gen++;
      this.log = [];
      this.inFlight = 0;
    };
  }

  /** refresh fetches the first page again; the answer replaces the list. */
  readonly refresh = async (): Promise<void> => {
    const c = this.client;
    if (!c) return;
    const gen = ++this.gen;
    this.set({ ...this.snap, loading: true, loadingMore: false, error: null });
    const [start, session] = this.begin();
    try {
      const page = await c.inbox.list({ status: this.filter, limit: this.limit });
      if (gen !== this.gen) return;
      this.next = page.next ?? null;
      this.set({
        items: this.replay(page.messages, start),
        loading: false,
        loadingMore: false,
        error: null,
        hasMore: this.next != null,
      });
    } catch (err) {
      if (gen === this.gen) this.set({ ...this.snap, loading: false, error: asError(err) });
    } finally {
      this.end(session);
    }
  };

  /** loadMore fetches the page after the last one; nothing when there is none or a fetch is under way. */
  readonly loadMore = async (): Promise<void> => {
    const c = this.client;
    if (!c || this.next == null || this.snap.loading || this.snap.loadingMore) return;
    const gen = this.gen;
    this.set({ ...this.snap, loadingMore: true });
    const [start, session] = this.begin();
    try {
      const page = await c.inbox.list({ status: this.filter, limit: this.limit, before: this.next });
      if (gen !== this.gen) return;
      this.next = page.next ?? null;
      const have = new Set(this.snap.items.map((it) => it.id));
      const more = this.replay(page.messages, start).filter((it) => !have.has(it.id));
      this.set({ ...this.snap, items: [...this.snap.items, ...more], loadingMore: false, hasMore: this.next != null });
    } catch (err) {
      if (gen === this.gen) this.set({ ...this.snap, loadingMore: false, error: asError(err) });
    } finally {
      this.end(session);
    }
  };

  readonly markSeen = (ids: readonly string[]): Promise<void> =>
    this.op(() => this.mark('seen', ids, true), (c) => c.inbox.markSeen([...ids]));
  readonly markRead = (ids: readonly string[]): Promise<void> =>
    this.op(() => this.mark('read', ids, true), (c) => c.inbox.markRead([...ids]));
  readonly archive = (ids: readonly string[]): Promise<void> =>
    this.op(() => this.mark('archived', ids, true), (c) => c.inbox.archive([...ids]));
  readonly markAllRead = (): Promise<void> =>
    this.op(
      () => this.change((items) => this.apply(items, 'read', null)),
      (c) => c.inbox.markAllRead(),
    );

  /**
   * op applies a change here at once (so the list does not wait for the server), then asks
   * the server. The new counts come back as the server's counts push, through the client, in
   * order with new messages (the reply's counts may be older than a message already counted).
   * On failure the error is shown and the list refetched, since the local change may be
   * wrong. Never rejects: errors land in `error`, so event handlers need no catch.
   */
  private async op(local: () => void, remote: (c: HeraldClient) => Promise<unknown>) {
    const c = this.client;
    if (!c) return;
    local();
    try {
      await remote(c);
    } catch (err) {
      if (this.client !== c) return;
      this.set({ ...this.snap, error: asError(err) });
      void this.refresh();
    }
  }

  private follow(): void {
    const c = this.store.client.get();
    if (c === this.client) return;
    this.client = c;
    this.gen++;
    if (c) void this.refresh();
  }

  private mark(mark: Mark, ids: readonly string[], local: boolean): void {
    const set = new Set(ids);
    // Marks never add items to all/unread (nothing can be unread or unarchived again), but an
    // archive elsewhere adds items to the archived list that are not here: fetch them.
    if (!local && this.filter === 'archived' && mark === 'archived' && ids.some((id) => !this.snap.items.some((it) => it.id === id))) {
      void this.refresh();
      return;
    }
    this.change((items) => this.apply(items, mark, set));
  }

  /** apply marks the items in ids (all when null) and drops those the filter no longer shows. */
  private apply(items: readonly InboxItem[], mark: Mark, ids: Set<string> | null): readonly InboxItem[] {
    let changed = false;
    const out: InboxItem[] = [];
    for (const it of items) {
      if (ids && !ids.has(it.id)) {
        out.push(it);
        continue;
      }
      const n = marked(it, mark);
      if (n !== it) changed = true;
      if (visible(n, this.filter)) out.push(n);
      else changed = true;
    }
    return changed ? out : items;
  }

  private receive(m: HeraldMessage): void {
    // Unstored messages (broadcasts) are not in the inbox; new ones are neither read nor archived.
    if (m.offset == null || m.epoch == null || this.filter === 'archived') return;
    const item: InboxItem = { id: m.id, offset: m.offset, epoch: m.epoch, ts: m.ts, data: m.data, seen: false, read: false, archived: false };
    this.change((items) => {
      if (items.some((it) => it.id === item.id)) return items;
      if (items.length && items[0]!.offset > item.offset) return items;
      return [item, ...items];
    });
  }

  private change(f: Change): void {
    if (this.inFlight > 0) this.log.push(f);
    const items = f(this.snap.items);
    if (items !== this.snap.items) this.set({ ...this.snap, items });
  }

  private begin(): [start: number, session: number] {
    this.inFlight++;
    return [this.log.length, this.session];
  }
  private end(session: number): void {
    if (session !== this.session) return;
    if (--this.inFlight <= 0) {
      this.inFlight = 0;
      this.log = [];
    }
  }
  private replay(items: readonly InboxItem[], start: number): readonly InboxItem[] {
    for (let i = start; i < this.log.length; i++) items = this.log[i]!(items);
    return items;
  }

  private set(s: InboxSnapshot): void {
    this.snap = s;
    for (const fn of [...this.fns]) fn();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
