// One connection per origin and user, shared by tabs: Web Locks elect the
// leader, BroadcastChannel relays. Several "tabs" live in this one process,
// sharing a fake navigator.locks and BroadcastChannel as tabs of one origin do.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { client, fakeBC, FakeLocks, MemoryStorage, msg, tick, token } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

function origin() {
  const locks = new FakeLocks();
  const { BC, open } = fakeBC();
  /** A tab: its own sockets and sessionStorage, the origin's locks and channels. */
  const tab = (opts = {}) => client({ share: 'auto', locks, BroadcastChannel: BC, storage: new MemoryStorage(), ...opts });
  return { locks, open, tab };
}

/** Three tabs; tab a leads, connected, with offsets 1..2 seen everywhere. */
async function three() {
  const o = origin();
  const a = o.tab();
  a.h.connect();
  await tick();
  const b = o.tab();
  b.h.connect();
  const c = o.tab();
  c.h.connect();
  await tick();
  a.ws.last().open();
  await tick();
  a.ws.last().recv(msg(1));
  a.ws.last().recv(msg(2));
  await tick();
  return { ...o, a, b, c };
}

describe('leader election', () => {
  it('one socket for three tabs; every tab gets every message once, in order', async () => {
    const { a, b, c } = await three();
    expect(a.ws.all).toHaveLength(1);
    expect(b.ws.all).toHaveLength(0);
    expect(c.ws.all).toHaveLength(0);
    for (const t of [a, b, c]) expect(t.offsets()).toEqual([1, 2]);
    for (const t of [a, b, c]) t.h.close();
  });

  it('followers mirror the leader’s state and counts (also when they join late)', async () => {
    const { a, b, c, tab } = await three();
    await tick();
    for (const t of [b, c]) expect(t.h.state).toBe('connected');
    expect(b.log.states.at(-1)).toEqual({ state: 'connected', transport: 'websocket' });
    a.ws.last().recv({ type: 'counts', unread: 3, unseen: 1, mark: 'seen', ids: ['m0001'] });
    await tick();
    expect(b.log.counts.at(-1)).toEqual({ type: 'counts', unread: 3, unseen: 1, mark: 'seen', ids: ['m0001'] });
    const d = tab(); // a fourth tab, later: asks for the state
    d.h.connect();
    await tick();
    expect(d.h.state).toBe('connected');
    expect(d.log.counts.at(-1)).toMatchObject({ unread: 3, unseen: 1 });
    a.ws.last().end(1006);
    await tick();
    for (const t of [b, c, d]) expect(t.log.states.at(-1)).toMatchObject({ state: 'disconnected', code: 1006, retryIn: 250 });
    for (const t of [a, b, c, d]) t.h.close();
  });

  it('the leader leaves: the next tab takes the lock and resumes from the shared last offset', async () => {
    const { a, b, c } = await three();
    a.h.close(); // the leading tab closes
    await tick();
    expect(b.ws.all).toHaveLength(1); // b asked for the lock first
    expect(c.ws.all).toHaveLength(0);
    expect(b.ws.last().url).toBe('wss://herald.test/ws?since=2&epoch=e1');
    expect(c.h.state).toBe('connecting');
    b.ws.last().open();
    b.ws.last().recv(msg(3));
    await tick();
    expect(c.h.state).toBe('connected');
    expect(c.offsets()).toEqual([1, 2, 3]);
    expect(b.offsets()).toEqual([1, 2, 3]);
    expect(a.offsets()).toEqual([1, 2]);
    b.h.close();
    c.h.close();
  });

  it('followers de-duplicate what a new leader replays', async () => {
    const { a, b, c } = await three();
    // a receives 3 and relays it; c sees it before b's socket replays from 2.
    a.ws.last().recv(msg(3));
    a.h.close();
    await tick();
    b.ws.last().open();
    for (const o of [3, 3, 4]) b.ws.last().recv(msg(o));
    await tick();
    expect(b.offsets()).toEqual([1, 2, 3, 4]);
    expect(c.offsets()).toEqual([1, 2, 3, 4]);
    b.h.close();
    c.h.close();
  });

  it('a follower that closes changes nothing for the others', async () => {
    const { a, b, c, locks } = await three();
    b.h.close();
    await tick();
    a.ws.last().recv(msg(3));
    await tick();
    expect(c.offsets()).toEqual([1, 2, 3]);
    expect(b.offsets()).toEqual([1, 2]);
    expect(a.ws.all).toHaveLength(1);
    a.h.close();
    await tick();
    expect(c.ws.all).toHaveLength(1); // b had left the queue
    c.h.close();
    await tick();
    expect(locks.holder('herald:https://herald.test#u1')).toBe(false);
  });

  it('only the leader acks; resets reach every tab', async () => {
    const { a, b, c } = await three();
    await tick(50);
    expect(a.ws.last().of('ack')).toEqual([{ type: 'ack', offset: 2 }]);
    a.ws.last().recv({ type: 'reset', epoch: 'e2', offset: 10 });
    await tick();
    for (const t of [a, b, c]) expect(t.log.resets).toEqual([{ reason: 'the resume point could not be honoured', epoch: 'e2', offset: 10 }]);
    a.ws.last().recv(msg(11, 'x', 'e2'));
    await tick();
    for (const t of [a, b, c]) expect(t.offsets()).toEqual([1, 2, 11]);
    for (const t of [a, b, c]) t.h.close();
  });

  it('4003 (the server disconnected the user) closes every tab for good', async () => {
    const { a, b, c, locks } = await three();
    a.ws.last().end(4003, 'disconnected by the server');
    await tick(600_000);
    for (const t of [a, b, c]) expect(t.h.state).toBe('closed');
    for (const t of [b, c]) expect(t.ws.all).toHaveLength(0);
    expect(locks.holder('herald:https://herald.test#u1')).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a follower coming online asks the leader to reconnect now', async () => {
    const o = origin();
    // Each tab has its own window: install it while that tab connects.
    const winA = new EventTarget();
    const winB = new EventTarget();
    vi.stubGlobal('window', winA);
    const a = o.tab({ transports: ['websocket'] });
    a.h.connect();
    await tick();
    vi.stubGlobal('window', winB);
    const b = o.tab({ transports: ['websocket'] });
    b.h.connect();
    vi.unstubAllGlobals();
    await tick();
    a.ws.last().open();
    a.ws.last().end(1006);
    for (let i = 0; i < 5; i++) {
      await tick(a.log.states.at(-1).retryIn);
      a.ws.last().end(1006); // the network is down: the backoff grows
    }
    expect(a.log.states.at(-1)).toMatchObject({ state: 'disconnected', retryIn: 8000 });
    winB.dispatchEvent(new Event('online')); // in the follower's tab
    await tick();
    expect(a.log.states.at(-1)).toMatchObject({ state: 'connecting' });
    expect(a.ws.all).toHaveLength(7);
    a.h.close();
    b.h.close();
  });

  it('different users on one origin do not share', async () => {
    const o = origin();
    const a = o.tab();
    const b = o.tab({ getToken: async () => token(3600, 'u2') });
    a.h.connect();
    b.h.connect();
    await tick();
    expect(a.ws.all).toHaveLength(1);
    expect(b.ws.all).toHaveLength(1);
    a.h.close();
    b.h.close();
  });
});

describe('without the APIs', () => {
  it.each([
    ['no Web Locks', { locks: null }],
    ['no BroadcastChannel', { BroadcastChannel: null }],
    ["share: 'none'", { share: 'none' as const }],
  ])('%s: one connection per tab', async (_, opts) => {
    const o = origin();
    const a = o.tab(opts);
    const b = o.tab(opts);
    a.h.connect();
    b.h.connect();
    await tick();
    expect(a.ws.all).toHaveLength(1);
    expect(b.ws.all).toHaveLength(1);
    expect(o.open.size).toBe(0); // no channel opened
    a.h.close();
    b.h.close();
  });
});

describe('leaving', () => {
  it('close() releases the lock, closes the channel and leaves no timer', async () => {
    const { a, b, c, locks, open } = await three();
    for (const t of [a, b, c]) t.h.close();
    await tick();
    expect(open.size).toBe(0);
    expect(locks.holder('herald:https://herald.test#u1')).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a tab closed while waiting for the lock never connects', async () => {
    const { a, b, c } = await three();
    b.h.close();
    c.h.close();
    a.h.close();
    await tick(600_000);
    expect(b.ws.all).toHaveLength(0);
    expect(c.ws.all).toHaveLength(0);
  });

  it('getToken calls: one per tab to join, reused by the leader’s first connect', async () => {
    const { a, b, c } = await three();
    expect(a.getToken).toHaveBeenCalledTimes(1);
    expect(b.getToken).toHaveBeenCalledTimes(1);
    expect(c.getToken).toHaveBeenCalledTimes(1);
    for (const t of [a, b, c]) t.h.close();
  });
});
