// getToken: when it is called, where the token goes, and refresh before expiry.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { claims } from '../src/util.js';
import { client, jwt, tick, token } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.setSystemTime(new Date('2026-11-25T12:00:00Z'));
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** getToken handing out numbered tokens of `ttl` seconds, newest each call. */
function tokens(ttl: number) {
  let n = 0;
  return vi.fn(async () => jwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + ttl, n: ++n }));
}

describe('where the token goes', () => {
  it('by default in the herald.token.<jwt> subprotocol, beside herald.v1, not in the URL', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const t = await c.getToken.mock.results[0]!.value;
    expect(c.ws.last().protocols).toEqual(['herald.v1', 'herald.token.' + t]);
    expect(c.ws.last().query.has('token')).toBe(false);
    c.h.close();
  });

  it("tokenIn: 'query' puts it in ?token=", async () => {
    const c = client({ tokenIn: 'query' });
    c.h.connect();
    await tick();
    const t = await c.getToken.mock.results[0]!.value;
    expect(c.ws.last().protocols).toEqual(['herald.v1']);
    expect(c.ws.last().query.get('token')).toBe(t);
    c.h.close();
  });

  it('getToken may return a string synchronously', async () => {
    const t = token();
    const c = client({ getToken: () => t });
    c.h.connect();
    await tick();
    expect(c.ws.last().protocols[1]).toBe('herald.token.' + t);
    c.h.close();
  });
});

describe('getToken on every (re)connect', () => {
  it('is called once per attempt, and each attempt uses the token it got', async () => {
    const getToken = tokens(3600);
    const c = client({ getToken });
    c.h.connect();
    for (let i = 0; i < 4; i++) {
      await tick(c.log.states.at(-1).retryIn ?? 0);
      c.ws.last().end(1006); // never opened: maybe a 401
    }
    expect(getToken).toHaveBeenCalledTimes(4);
    const used = c.ws.all.map((w) => claims(w.protocols[1]!.slice('herald.token.'.length)) as any);
    expect(used.map((u) => u.sub)).toEqual(['u1', 'u1', 'u1']); // the 4th went to SSE (fallback)
    expect(c.es.all).toHaveLength(1);
    c.h.close();
  });
});

describe('refresh before expiry (herald.v1)', () => {
  it.each([
    // token life → when the refresh is sent: 80% of it, or 30 s before exp, whichever first.
    { ttl: 3600, at: 2880_000 },
    { ttl: 600, at: 480_000 },
    { ttl: 60, at: 30_000 },
  ])('a $ttl s token is refreshed after $at ms', async ({ ttl, at }) => {
    const getToken = tokens(ttl);
    const c = client({ getToken });
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    const ping = () => ws.recv({ type: 'ping' });
    // keep the watchdog fed while time passes
    for (let t = 0; t + 20_000 < at; t += 20_000) {
      await tick(20_000);
      ping();
    }
    await tick(at - 1 - Math.floor((at - 1) / 20_000) * 20_000);
    expect(ws.of('refresh')).toHaveLength(0);
    await tick(1);
    expect(getToken).toHaveBeenCalledTimes(2);
    const fresh = await getToken.mock.results[1]!.value;
    expect(ws.of('refresh')).toEqual([{ type: 'refresh', token: fresh }]);
    ws.recv({ type: 'refreshed', expires: '2026-11-25T13:00:30Z' });
    expect(c.h.state).toBe('connected');
    expect(c.ws.all).toHaveLength(1); // same connection
    c.h.close();
  });

  it('keeps refreshing on the new token’s schedule', async () => {
    const getToken = tokens(100);
    const c = client({ getToken, heartbeatTimeout: 1e9 });
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick(70_000); // 100 s: min(80, 70) = 70 s
    expect(c.ws.last().of('refresh')).toHaveLength(1);
    await tick(70_000);
    expect(c.ws.last().of('refresh')).toHaveLength(2);
    c.h.close();
  });

  it('when getToken returns the same token, sends nothing and asks again later', async () => {
    const t = token(60);
    const getToken = vi.fn(async () => t);
    const c = client({ getToken, heartbeatTimeout: 1e9 });
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick(30_000); // 60 s token: refresh at 30 s
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(c.ws.last().of('refresh')).toHaveLength(0);
    await tick(4_999);
    expect(getToken).toHaveBeenCalledTimes(2);
    await tick(1); // 30 s left: at least 5 s later
    expect(getToken).toHaveBeenCalledTimes(3);
    c.h.close();
  });

  it('a refused refresh is an error; the 4001 that follows gets a fresh token at once', async () => {
    const getToken = tokens(60);
    const c = client({ getToken, heartbeatTimeout: 1e9 });
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick(30_000);
    c.ws.last().recv({ type: 'error', code: 'invalid_token', message: 'token expired' });
    expect(c.log.errors.at(-1)).toMatchObject({ code: 'invalid_token' });
    c.ws.last().end(4001, 'token expired');
    await tick(0);
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(c.ws.all).toHaveLength(2);
    c.h.close();
  });

  it('a token without exp is never refreshed', async () => {
    const c = client({ getToken: async () => jwt({ sub: 'u1' }), heartbeatTimeout: 1e9 });
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick(24 * 3600_000);
    expect(c.ws.last().of('refresh')).toHaveLength(0);
    c.h.close();
  });
});

describe('refresh on SSE', () => {
  it('opens a new stream with the fresh token; it takes over once connected, resuming, with no state flicker', async () => {
    const getToken = tokens(600);
    const c = client({ getToken, transports: ['sse'] });
    c.h.connect();
    await tick();
    const first = c.es.last();
    first.connected();
    first.emit('message', { type: 'message', id: 'm1', offset: 1, epoch: 'e1', ts: '2026-11-25T12:00:00Z', data: 1 });
    await tick(480_000);
    expect(c.es.all).toHaveLength(2);
    const second = c.es.last();
    const fresh = await getToken.mock.results.at(-1)!.value;
    expect(second.query.get('token')).toBe(fresh);
    expect(second.query.get('since')).toBe('1');
    expect(first.readyState).not.toBe(2); // still serving until the new one is up
    second.connected('s3c0nd-c0nnecti0', 'e1');
    expect(first.readyState).toBe(2);
    expect(c.states()).toEqual(['connecting', 'connected']);
    first.emit('message', { type: 'message', id: 'm2', offset: 2, epoch: 'e1', ts: '2026-11-25T12:00:00Z', data: 2 });
    second.emit('message', { type: 'message', id: 'm2', offset: 2, epoch: 'e1', ts: '2026-11-25T12:00:00Z', data: 2 });
    expect(c.offsets()).toEqual([1, 2]);
    c.h.close();
  });

  it('a new stream that fails leaves the old one serving, and the refresh is tried again', async () => {
    const getToken = tokens(600);
    const c = client({ getToken, transports: ['sse'] });
    c.h.connect();
    await tick();
    c.es.last().connected();
    await tick(480_000);
    expect(c.es.all).toHaveLength(2);
    c.es.last().fail();
    expect(c.es.all[0]!.readyState).not.toBe(2);
    expect(c.h.state).toBe('connected');
    await tick(60_000); // 120 s left: min(96, 90) = 90 s
    expect(c.es.all).toHaveLength(2);
    await tick(30_000);
    expect(c.es.all).toHaveLength(3);
    c.h.close();
  });
});
