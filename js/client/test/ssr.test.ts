// Server-side rendering (Next.js) and Node: importing the module and
// constructing a client must not touch window, document or navigator.
import { afterEach, describe, expect, it, vi } from 'vitest';

const browserGlobals = ['window', 'document', 'navigator', 'sessionStorage', 'localStorage', 'location', 'self'];

afterEach(() => {
  for (const g of browserGlobals) delete (globalThis as any)[g];
  vi.useRealTimers();
});

describe('SSR safety', () => {
  it('runs where the browser globals are absent', () => {
    for (const g of ['window', 'document']) expect(g in globalThis).toBe(false);
  });

  it('import and construction touch no browser global', async () => {
    const touched: string[] = [];
    for (const g of browserGlobals)
      Object.defineProperty(globalThis, g, {
        configurable: true,
        get() {
          touched.push(g);
          return undefined;
        },
      });
    vi.resetModules();
    const mod = await import('../src/index.js');
    const h = new mod.Herald({ url: 'https://herald.test', getToken: () => 'x.y.z' });
    expect(h.state).toBe('disconnected');
    h.on('message', () => {});
    h.close();
    expect(touched).toEqual([]);
  });

  it('works in Node without them, given a WebSocket (a server-side client)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { Herald } = await import('../src/index.js');
    const { fakeWS, token, tick } = await import('./fakes.js');
    const ws = fakeWS();
    const h = new Herald({ url: 'http://127.0.0.1:8080', getToken: () => token(), WebSocket: ws.WS, fetch: async () => new Response('{"unread":0,"unseen":0}') });
    const got: unknown[] = [];
    h.on('message', (m) => void got.push(m.data));
    h.connect(); // share 'auto' falls back: Node 20 has no navigator.locks
    await tick();
    ws.last().open();
    ws.last().recv({ type: 'message', id: 'a', offset: 1, epoch: 'e', ts: '2026-11-25T12:00:00Z', data: 'hi' });
    expect(got).toEqual(['hi']);
    h.close();
  });
});
