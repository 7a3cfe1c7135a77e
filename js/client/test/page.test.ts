// The page's life: offline, online, visibility, the back-forward cache.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { client, tick } from './fakes.js';

let win: EventTarget & { document: EventTarget & { visibilityState: string } };
let nav: { onLine: boolean };

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
  win = Object.assign(new EventTarget(), { document: Object.assign(new EventTarget(), { visibilityState: 'visible' }) });
  nav = { onLine: true };
  vi.stubGlobal('window', win);
  vi.stubGlobal('navigator', nav);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

const pageEvent = (type: string, persisted: boolean) => Object.assign(new Event(type), { persisted });

/** A client whose connection failed often enough that the next try is 4 s away. */
async function waiting() {
  const c = client({ transports: ['websocket'] });
  c.h.connect();
  await tick();
  c.ws.last().open();
  c.ws.last().end(1006);
  for (let i = 0; i < 4; i++) {
    await tick(c.log.states.at(-1).retryIn);
    c.ws.last().end(1006);
  }
  expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', retryIn: 4000 });
  return c;
}

describe('offline and online', () => {
  it('no attempt while navigator.onLine is false; `online` reconnects at once', async () => {
    const c = await waiting();
    nav.onLine = false;
    await tick(4000);
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', reason: 'offline' });
    const n = c.ws.all.length;
    await tick(20_000);
    expect(c.ws.all).toHaveLength(n); // paused (a slow re-check at the cap, 30 s)
    nav.onLine = true;
    win.dispatchEvent(new Event('online'));
    expect(c.h.state).toBe('connecting');
    await tick();
    expect(c.ws.all).toHaveLength(n + 1);
    c.h.close();
  });

  it('`online` while connected does nothing', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    win.dispatchEvent(new Event('online'));
    await tick();
    expect(c.ws.all).toHaveLength(1);
    c.h.close();
  });
});

describe('visibility', () => {
  it('becoming visible while the socket is down reconnects now', async () => {
    const c = await waiting();
    const n = c.ws.all.length;
    win.document.visibilityState = 'hidden';
    win.document.dispatchEvent(new Event('visibilitychange'));
    await tick();
    expect(c.ws.all).toHaveLength(n);
    win.document.visibilityState = 'visible';
    win.document.dispatchEvent(new Event('visibilitychange'));
    await tick();
    expect(c.ws.all).toHaveLength(n + 1);
    c.h.close();
  });
});

describe('back-forward cache', () => {
  it('pagehide (persisted) closes the socket without giving up; pageshow (persisted) reconnects, resuming', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    ws.recv({ type: 'message', id: 'm1', offset: 1, epoch: 'e1', ts: '2026-11-25T12:00:00Z', data: 1 });
    win.dispatchEvent(pageEvent('pagehide', true));
    expect(ws.closedWith).toBe(1000);
    expect(c.log.states.at(-1)).toEqual({ state: 'disconnected', reason: 'page hidden' });
    await tick(600_000);
    expect(c.ws.all).toHaveLength(1); // frozen: no reconnect from the cache
    win.dispatchEvent(pageEvent('pageshow', true));
    await tick();
    expect(c.ws.all).toHaveLength(2);
    expect(c.ws.last().query.get('since')).toBe('1');
    c.h.close();
  });

  it('a pagehide that is not for the cache (the page unloads) changes nothing', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    win.dispatchEvent(pageEvent('pagehide', false));
    win.dispatchEvent(pageEvent('pageshow', false));
    expect(c.h.state).toBe('connected');
    expect(c.ws.last().closedWith).toBeUndefined();
    c.h.close();
  });
});

describe('close()', () => {
  it('removes every listener', async () => {
    const add = vi.spyOn(win, 'addEventListener');
    const remove = vi.spyOn(win, 'removeEventListener');
    const dAdd = vi.spyOn(win.document, 'addEventListener');
    const dRemove = vi.spyOn(win.document, 'removeEventListener');
    const c = client();
    c.h.connect();
    await tick();
    c.h.close();
    expect(add.mock.calls.map((x) => x[0]).sort()).toEqual(['online', 'pagehide', 'pageshow']);
    expect(remove.mock.calls.map((x) => [x[0], x[1]])).toEqual(add.mock.calls.map((x) => [x[0], x[1]]));
    expect(dRemove.mock.calls.map((x) => [x[0], x[1]])).toEqual(dAdd.mock.calls.map((x) => [x[0], x[1]]));
    win.dispatchEvent(new Event('online'));
    await tick();
    expect(c.ws.all).toHaveLength(1);
  });
});
