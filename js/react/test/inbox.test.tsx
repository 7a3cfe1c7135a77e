import { act, renderHook, waitFor } from '@testing-library/react';
import { StrictMode, type ReactNode } from 'react';
import { describe, expect, it } from 'vitest';
import { HeraldProvider, useInbox, type UseInboxOptions } from '../src/index.js';
import { deferred, factory, item, message, type FakeHerald } from './fake.js';

const T = { timeout: 2000 };

/** setup renders useInbox over a fake whose server inbox holds offsets 1..n (newest first). */
function setup(n: number, opts: UseInboxOptions = {}, prepare?: (c: FakeHerald) => void, strict = false) {
  const f = factory((c) => {
    c.items = Array.from({ length: n }, (_, i) => item(n - i));
    prepare?.(c);
  });
  const wrapper = ({ children }: { children: ReactNode }) => {
    const p = (
      <HeraldProvider url="http://h" getToken={() => 't'} createClient={f.create}>
        {children}
      </HeraldProvider>
    );
    return strict ? <StrictMode>{p}</StrictMode> : p;
  };
  const hook = renderHook((o: UseInboxOptions) => useInbox(o), { wrapper, initialProps: opts });
  return { ...hook, f, client: () => f.made[0]! };
}
const ids = (r: { current: { items: readonly { id: string }[] } }) => r.current.items.map((i) => i.id);
const loaded = (r: { current: { loading: boolean } }) => waitFor(() => expect(r.current.loading).toBe(false), T);

describe('useInbox', () => {
  it('is loading, then holds the first page newest first', async () => {
    const { result } = setup(3);
    expect(result.current.loading).toBe(true);
    await loaded(result);
    expect(ids(result)).toEqual(['m3', 'm2', 'm1']);
    expect(result.current.hasMore).toBe(false);
    expect(result.current.error).toBeNull();
  });

  it('passes filter and limit as status and limit; loadMore fetches older pages until the end', async () => {
    const { result, client } = setup(5, { limit: 2 });
    await loaded(result);
    expect(client().calls[0]).toEqual({ name: 'list', arg: { status: 'all', limit: 2 } });
    expect(ids(result)).toEqual(['m5', 'm4']);
    expect(result.current.hasMore).toBe(true);
    await act(() => result.current.loadMore());
    expect(client().calls.at(-1)).toEqual({ name: 'list', arg: { status: 'all', limit: 2, before: 4 } });
    await act(() => result.current.loadMore());
    expect(ids(result)).toEqual(['m5', 'm4', 'm3', 'm2', 'm1']);
    expect(result.current.hasMore).toBe(false);
    const calls = client().calls.length;
    await act(() => result.current.loadMore());
    expect(client().calls.length).toBe(calls);
  });

  it('a failed fetch shows the error; refresh clears it', async () => {
    const { result, client } = setup(1, {}, (c) => {
      const list = c.inbox.list;
      let first = true;
      c.inbox.list = (q) => {
        if (first) {
          first = false;
          return Promise.reject(new Error('unavailable'));
        }
        return list(q);
      };
    });
    await loaded(result);
    expect(result.current.error?.message).toBe('unavailable');
    await act(() => result.current.refresh());
    expect(result.current.error).toBeNull();
    expect(ids(result)).toEqual(['m1']);
    expect(client()).toBeTruthy();
  });

  it('markRead changes the list at once, then the server', async () => {
    const { result, client } = setup(3, { filter: 'unread' });
    await loaded(result);
    const hold = deferred<void>();
    client().hold.mark = hold;
    let done!: Promise<void>;
    act(() => {
      done = result.current.markRead(['m2']);
    });
    // Unread list: m2 is gone before the server answered.
    expect(ids(result)).toEqual(['m3', 'm1']);
    expect(client().items.find((i) => i.id === 'm2')!.read).toBe(false);
    hold.resolve();
    await act(() => done);
    expect(client().items.find((i) => i.id === 'm2')!.read).toBe(true);
  });

  it('markAllRead, markSeen and archive on the all list', async () => {
    const { result, client } = setup(3);
    await loaded(result);
    await act(() => result.current.markSeen(['m3']));
    expect(result.current.items[0]).toMatchObject({ id: 'm3', seen: true, read: false });
    await act(() => result.current.archive(['m2']));
    expect(ids(result)).toEqual(['m3', 'm1']);
    await act(() => result.current.markAllRead());
    expect(result.current.items.every((i) => i.read && i.seen)).toBe(true);
    expect(client().calls.map((c) => c.name)).toEqual(['list', 'markSeen', 'archive', 'markAllRead']);
  });

  it('a refused mark shows the error and refetches the truth', async () => {
    const { result, client } = setup(2, { filter: 'unread' }, (c) => {
      c.inbox.markRead = () => Promise.reject(new Error('forbidden'));
    });
    await loaded(result);
    await act(() => result.current.markRead(['m1']));
    await waitFor(() => expect(ids(result)).toEqual(['m2', 'm1']), T);
    expect(client().calls.filter((c) => c.name === 'list')).toHaveLength(2);
  });

  it('follows marks made in another tab (counts pushes with ids)', async () => {
    const { result, client } = setup(3, { filter: 'unread' });
    await loaded(result);
    act(() => void client().emit('counts', { unread: 2, unseen: 2, mark: 'seen', ids: ['m3'] }));
    expect(result.current.items[0]).toMatchObject({ id: 'm3', seen: true, read: false });
    act(() => void client().emit('counts', { unread: 1, unseen: 1, mark: 'read', ids: ['m3', 'unknown'] }));
    expect(ids(result)).toEqual(['m2', 'm1']);
    act(() => void client().emit('counts', { unread: 0, unseen: 0, mark: 'archived', ids: ['m2'] }));
    expect(ids(result)).toEqual(['m1']);
    // Counts without ids (a fetch, a new message) change no item.
    const before = result.current.items;
    act(() => void client().emit('counts', { unread: 5, unseen: 5 }));
    expect(result.current.items).toBe(before);
  });

  it('the archived list refetches when another tab archives what it does not have', async () => {
    const { result, client } = setup(3, { filter: 'archived' }, (c) => (c.items[0]!.archived = true));
    await loaded(result);
    expect(ids(result)).toEqual(['m3']);
    client().items[1]!.archived = true; // archived elsewhere
    act(() => void client().emit('counts', { unread: 1, unseen: 1, mark: 'archived', ids: ['m2'] }));
    await waitFor(() => expect(ids(result)).toEqual(['m3', 'm2']), T);
  });

  it('new messages are prepended to all and unread, not to archived; broadcasts never', async () => {
    for (const [filter, want] of [
      ['all', ['m4', 'm3']],
      ['unread', ['m4', 'm3']],
      ['archived', []],
    ] as const) {
      const { result, client, unmount } = setup(3, { filter, limit: 1 });
      await loaded(result);
      act(() => {
        client().emit('message', message(4));
        client().emit('message', { id: 'b', ts: '', data: null });
      });
      expect(ids(result)).toEqual(want);
      unmount();
    }
  });

  it('a reset refetches', async () => {
    const { result, client } = setup(2);
    await loaded(result);
    client().items = [item(1, { id: 'fresh' })];
    act(() => void client().emit('reset', { reason: 'r', epoch: 'e2', offset: 1 }));
    await waitFor(() => expect(ids(result)).toEqual(['fresh']), T);
  });

  it('marks and messages that arrive while a page is being fetched apply to its answer', async () => {
    const hold = deferred<void>();
    const { result, client } = setup(3, { filter: 'unread' }, (c) => (c.hold.list = hold));
    expect(result.current.loading).toBe(true);
    // The server answers with m3..m1 unread, but meanwhile m2 was read elsewhere and m4 came.
    act(() => {
      client().emit('counts', { unread: 2, unseen: 2, mark: 'read', ids: ['m2'] });
      client().emit('message', message(4));
    });
    hold.resolve();
    await loaded(result);
    expect(ids(result)).toEqual(['m4', 'm3', 'm1']);
  });

  it('a new filter fetches again; the older filter’s late answer is dropped', async () => {
    const first = deferred<void>();
    const { result, client, rerender } = setup(3, { filter: 'all' }, (c) => {
      const list = c.inbox.list;
      let n = 0;
      c.inbox.list = (q) => (n++ === 0 ? first.promise.then(() => list(q)) : list(q));
      c.items[0]!.read = true;
    });
    rerender({ filter: 'unread' });
    await loaded(result);
    expect(ids(result)).toEqual(['m2', 'm1']);
    first.resolve();
    await act(() => first.promise);
    await act(async () => {});
    expect(ids(result)).toEqual(['m2', 'm1']);
    expect(client().calls.filter((c) => c.name === 'list').map((c) => (c.arg as { status: string }).status).sort()).toEqual(['all', 'unread']);
  });

  it('StrictMode: the first mount’s fetch is dropped, the list is fetched right once more', async () => {
    const { result, client } = setup(2, {}, undefined, true);
    await loaded(result);
    expect(ids(result)).toEqual(['m2', 'm1']);
    expect(client().calls.filter((c) => c.name === 'list').length).toBeLessThanOrEqual(2);
  });
});
