import { act, render, renderHook } from '@testing-library/react';
import { StrictMode, useState, type ReactNode } from 'react';
import { describe, expect, it, vi } from 'vitest';
import { HeraldProvider, useConnectionState, useHerald, useInbox, useNotifications, useUnreadCount } from '../src/index.js';
import { factory, FakeHerald } from './fake.js';

/** flush lets queued microtasks (the provider's deferred close) run. */
const flush = () => act(async () => {});

function Probe() {
  const c = useConnectionState();
  return <p>{c.state}</p>;
}

describe('HeraldProvider', () => {
  it('creates the client in an effect, not during render, and connects it once', () => {
    let renders = 0;
    const f = factory();
    const create = vi.fn((o: Parameters<typeof f.create>[0]) => {
      // An effect runs after the render committed.
      expect(renders).toBeGreaterThan(0);
      return f.create(o);
    });
    function Count() {
      renders++;
      return null;
    }
    render(
      <HeraldProvider url="http://h" getToken={() => 't'} createClient={create}>
        <Count />
      </HeraldProvider>,
    );
    expect(create).toHaveBeenCalledTimes(1);
    expect(f.made[0]!.connects).toBe(1);
    expect(f.made[0]!.opts!.url).toBe('http://h');
  });

  it('StrictMode: one mount makes one client, unmount leaves none live', async () => {
    const f = factory();
    const { unmount } = render(
      <StrictMode>
        <HeraldProvider url="http://h" getToken={() => 't'} createClient={f.create}>
          <Probe />
        </HeraldProvider>
      </StrictMode>,
    );
    await flush();
    expect(f.made).toHaveLength(1);
    expect(f.live()).toHaveLength(1);
    expect(f.made[0]!.connects).toBe(1);
    unmount();
    await flush();
    expect(f.live()).toHaveLength(0);
    expect(f.made[0]!.closed).toBe(true);
  });

  it('StrictMode: repeated mount/unmount cycles never hold two live clients', async () => {
    let most = 0;
    const f = factory();
    const create: typeof f.create = (o) => {
      const c = f.create(o);
      most = Math.max(most, f.live().length + 1);
      return c;
    };
    function App() {
      const [on, setOn] = useState(true);
      (globalThis as { toggle?: () => void }).toggle = () => setOn((v) => !v);
      return on ? (
        <HeraldProvider url="http://h" getToken={() => 't'} createClient={create}>
          <Probe />
        </HeraldProvider>
      ) : null;
    }
    render(
      <StrictMode>
        <App />
      </StrictMode>,
    );
    for (let i = 0; i < 5; i++) {
      await flush();
      expect(f.live().length).toBeLessThanOrEqual(1);
      act(() => (globalThis as { toggle?: () => void }).toggle!());
    }
    await flush();
    // Five toggles from mounted: ends unmounted.
    expect(f.live()).toHaveLength(0);
    expect(most).toBeLessThanOrEqual(1);
    // Three mounts in all (start, after toggles 2 and 4), one client each.
    expect(f.made).toHaveLength(3);
  });

  it('hooks see the client once it exists; re-rendering keeps it', async () => {
    const f = factory();
    const wrapper = ({ children }: { children: ReactNode }) => (
      <HeraldProvider url="http://h" getToken={() => 't'} createClient={f.create}>
        {children}
      </HeraldProvider>
    );
    const { result, rerender } = renderHook(() => useHerald(), { wrapper });
    expect(result.current).toBe(f.made[0]);
    rerender();
    expect(result.current).toBe(f.made[0]);
    expect(f.made).toHaveLength(1);
  });

  it('a new url closes the old client and connects a new one', async () => {
    const f = factory();
    const { rerender } = render(
      <HeraldProvider url="http://a" getToken={() => 't'} createClient={f.create}>
        <Probe />
      </HeraldProvider>,
    );
    rerender(
      <HeraldProvider url="http://b" getToken={() => 't'} createClient={f.create}>
        <Probe />
      </HeraldProvider>,
    );
    await flush();
    expect(f.made.map((c) => [c.opts!.url, c.live])).toEqual([
      ['http://a', false],
      ['http://b', true],
    ]);
  });

  it('a new getToken (an inline arrow each render) does not reconnect; the latest is called', async () => {
    const f = factory();
    const { rerender } = render(
      <HeraldProvider url="http://h" getToken={() => 'one'} createClient={f.create}>
        <Probe />
      </HeraldProvider>,
    );
    rerender(
      <HeraldProvider url="http://h" getToken={() => 'two'} createClient={f.create}>
        <Probe />
      </HeraldProvider>,
    );
    await flush();
    expect(f.made).toHaveLength(1);
    expect(await f.made[0]!.opts!.getToken()).toBe('two');
  });

  it('passes options through to the client', () => {
    const f = factory();
    render(
      <HeraldProvider url="http://h" getToken={() => 't'} options={{ tokenIn: 'query', share: 'none' }} createClient={f.create}>
        <Probe />
      </HeraldProvider>,
    );
    expect(f.made[0]!.opts).toMatchObject({ url: 'http://h', tokenIn: 'query', share: 'none' });
  });

  it('an external client is used as it is: neither connected nor closed by the provider', async () => {
    const c = new FakeHerald();
    c.state = 'connected';
    const { unmount, getByText } = render(
      <StrictMode>
        <HeraldProvider client={c}>
          <Probe />
        </HeraldProvider>
      </StrictMode>,
    );
    await flush();
    expect(getByText('connected')).toBeTruthy();
    expect(c.connects).toBe(0);
    unmount();
    await flush();
    expect(c.closed).toBe(false);
    // The provider's subscriptions are gone with it.
    expect(c.listeners('message') + c.listeners('state') + c.listeners('counts')).toBe(0);
  });

  it('unmount unsubscribes from the client', async () => {
    const f = factory();
    const { unmount } = render(
      <HeraldProvider url="http://h" getToken={() => 't'} createClient={f.create}>
        <Probe />
      </HeraldProvider>,
    );
    const c = f.made[0]!;
    expect(c.listeners('state')).toBe(1);
    unmount();
    await flush();
    expect(c.listeners('state') + c.listeners('message') + c.listeners('counts') + c.listeners('reset')).toBe(0);
  });

  it.each<[string, () => unknown]>([
    ['useConnectionState', useConnectionState],
    ['useUnreadCount', useUnreadCount],
    ['useNotifications', () => useNotifications()],
    ['useInbox', () => useInbox()],
  ])('%s outside a provider throws an error naming it', (name, hook) => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(() => renderHook(hook)).toThrow(`${name} must be used inside <HeraldProvider>`);
    vi.restoreAllMocks();
  });
});
