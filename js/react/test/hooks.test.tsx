import { act, render, renderHook } from '@testing-library/react';
import { StrictMode, type ReactNode } from 'react';
import { describe, expect, it, vi } from 'vitest';
import { HeraldProvider, useConnectionState, useCounts, useNotifications, useUnreadCount } from '../src/index.js';
import { deferred, factory, message } from './fake.js';

function setup(strict = false) {
  const f = factory();
  const wrapper = ({ children }: { children: ReactNode }) => {
    const p = (
      <HeraldProvider url="http://h" getToken={() => 't'} createClient={f.create}>
        {children}
      </HeraldProvider>
    );
    return strict ? <StrictMode>{p}</StrictMode> : p;
  };
  return { f, wrapper, client: () => f.made[f.made.length - 1]! };
}

describe('useConnectionState', () => {
  it('is connecting before the client exists and follows its state events', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => useConnectionState(), { wrapper });
    expect(result.current.state).toBe('connecting');
    act(() => client().setState({ state: 'connected', transport: 'websocket' }));
    expect(result.current).toEqual({ state: 'connected', transport: 'websocket' });
    act(() => client().setState({ state: 'disconnected', reason: 'heartbeat timeout', code: 1006, transport: 'websocket', attempt: 2, retryIn: 1500 }));
    expect(result.current).toMatchObject({ state: 'disconnected', reason: 'heartbeat timeout', transport: 'websocket', retryIn: 1500 });
  });

  it('a component that does not use it is not re-rendered by state changes', () => {
    const { wrapper, client } = setup();
    let renders = 0;
    function Other() {
      renders++;
      return null;
    }
    render(<Other />, { wrapper });
    const before = renders;
    act(() => client().setState({ state: 'connected', transport: 'sse' }));
    expect(renders).toBe(before);
  });
});

describe('useUnreadCount / useCounts', () => {
  it('is 0 (counts null) until the client reports counts, then follows every counts event', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => [useUnreadCount(), useCounts()] as const, { wrapper });
    expect(result.current).toEqual([0, null]);
    // The client's fetch at connect.
    act(() => void client().emit('counts', { unread: 3, unseen: 5 }));
    expect(result.current).toEqual([3, { unread: 3, unseen: 5 }]);
    // A push from another tab.
    act(() => void client().emit('counts', { unread: 1, unseen: 0, mark: 'read', ids: ['m1', 'm2'] }));
    expect(result.current).toEqual([1, { unread: 1, unseen: 0 }]);
  });

  it('useUnreadCount does not re-render when only unseen changes', () => {
    const { wrapper, client } = setup();
    let renders = 0;
    renderHook(
      () => {
        renders++;
        return useUnreadCount();
      },
      { wrapper },
    );
    act(() => void client().emit('counts', { unread: 2, unseen: 2 }));
    const before = renders;
    act(() => void client().emit('counts', { unread: 2, unseen: 0, mark: 'seen', ids: ['m1', 'm2'] }));
    expect(renders).toBe(before);
  });

  it('an external client gets its counts fetched at mount (its own counts event went by)', async () => {
    const { FakeHerald } = await import('./fake.js');
    const c = new FakeHerald();
    c.items = [1, 2].map((o) => ({ id: 'm' + o, offset: o, epoch: 'e1', ts: '', data: null, seen: false, read: o === 1, archived: false }));
    const { result } = renderHook(() => useUnreadCount(), {
      wrapper: ({ children }) => <HeraldProvider client={c}>{children}</HeraldProvider>,
    });
    await vi.waitFor(() => expect(result.current).toBe(1), { timeout: 2000 });
  });
});

describe('useNotifications', () => {
  it('lists messages newest first, without duplicates by offset', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => useNotifications(), { wrapper });
    expect(result.current.messages).toEqual([]);
    act(() => {
      client().emit('message', message(1));
      client().emit('message', message(2));
      client().emit('message', message(2)); // a duplicate (a resume overlapping, a relay)
      client().emit('message', message(1)); // an older one again
      client().emit('message', message(3));
    });
    expect(result.current.messages.map((m) => m.offset)).toEqual([3, 2, 1]);
  });

  it('takes a new epoch from offset 1 again; broadcasts (no offset) are de-duplicated by id', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => useNotifications(), { wrapper });
    act(() => {
      client().emit('message', message(7));
      client().emit('message', { id: 'b1', ts: '', data: 'all' });
      client().emit('message', { id: 'b1', ts: '', data: 'all' });
      client().emit('message', message(1, { id: 'n1', epoch: 'e2' }));
    });
    expect(result.current.messages.map((m) => m.id)).toEqual(['n1', 'b1', 'm7']);
  });

  it('after a reset in the same epoch, lower offsets are new (another history)', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => useNotifications(), { wrapper });
    act(() => {
      client().emit('message', message(9));
      client().emit('reset', { reason: 'r', epoch: 'e1', offset: 2 });
      client().emit('message', message(3, { id: 'x3' }));
    });
    expect(result.current.messages.map((m) => m.id)).toEqual(['x3', 'm9']);
  });

  it('keeps at most limit messages and clear() empties the list', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => useNotifications({ limit: 2 }), { wrapper });
    act(() => {
      for (let i = 1; i <= 5; i++) client().emit('message', message(i));
    });
    expect(result.current.messages.map((m) => m.offset)).toEqual([5, 4]);
    act(() => result.current.clear());
    expect(result.current.messages).toEqual([]);
    act(() => void client().emit('message', message(6)));
    expect(result.current.messages.map((m) => m.offset)).toEqual([6]);
  });

  it('the provider keeps as many as the largest limit of its hooks', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(() => [useNotifications({ limit: 3 }), useNotifications({ limit: 80 })] as const, { wrapper });
    act(() => {
      for (let i = 1; i <= 100; i++) client().emit('message', message(i));
    });
    expect(result.current[0].messages).toHaveLength(3);
    expect(result.current[1].messages).toHaveLength(80);
    expect(result.current[1].messages[79]!.offset).toBe(21);
  });

  it('a component mounted later sees what arrived before it', () => {
    const { wrapper, client } = setup();
    function List() {
      const { messages } = useNotifications();
      return <ul>{messages.map((m) => <li key={m.id}>{m.id}</li>)}</ul>;
    }
    function App({ show }: { show: boolean }) {
      return show ? <List /> : null;
    }
    const { rerender, container } = render(<App show={false} />, { wrapper });
    act(() => void client().emit('message', message(1)));
    rerender(<App show />);
    expect(container.textContent).toBe('m1');
  });

  it('onMessage is called once per new message, latest callback, also under StrictMode', () => {
    const { wrapper, client } = setup(true);
    const first = vi.fn();
    const second = vi.fn();
    const { rerender } = renderHook(({ fn }) => useNotifications({ onMessage: fn }), { wrapper, initialProps: { fn: first } });
    act(() => void client().emit('message', message(1)));
    rerender({ fn: second });
    act(() => {
      client().emit('message', message(2));
      client().emit('message', message(2));
    });
    expect(first.mock.calls.map((c) => c[0].offset)).toEqual([1]);
    expect(second.mock.calls.map((c) => c[0].offset)).toEqual([2]);
  });

  it("onMessage's promise is handed to the client, which acks once it settles", async () => {
    const { wrapper, client } = setup();
    const d = deferred<void>();
    renderHook(() => useNotifications({ onMessage: () => d.promise }), { wrapper });
    let results: unknown[] = [];
    act(() => {
      results = client().emit('message', message(1));
    });
    const all = results.filter((r) => r instanceof Promise) as Promise<unknown>[];
    expect(all).toHaveLength(1);
    let settled = false;
    void all[0]!.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    d.resolve();
    await vi.waitFor(() => expect(settled).toBe(true), { timeout: 2000 });
  });

  it('a throwing onMessage does not keep the list from updating; the client sees the failure', () => {
    const { wrapper, client } = setup();
    const { result } = renderHook(
      () =>
        useNotifications({
          onMessage: () => {
            throw new Error('boom');
          },
        }),
      { wrapper },
    );
    let results: unknown[] = [];
    act(() => {
      results = client().emit('message', message(1));
    });
    expect(result.current.messages).toHaveLength(1);
    return expect(results[0]).rejects.toThrow('boom');
  });
});
