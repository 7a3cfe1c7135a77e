// The connection's life: states, reconnect with backoff, close codes,
// the heartbeat watchdog, pings.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { client, msg, tick, token } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('state machine', () => {
  it('connecting → connected → disconnected → connecting → connected', async () => {
    const c = client();
    expect(c.h.state).toBe('disconnected'); // before connect(): idle
    c.h.connect();
    expect(c.h.state).toBe('connecting');
    await tick();
    expect(c.ws.all).toHaveLength(1);
    c.ws.last().open();
    expect(c.h.state).toBe('connected');
    c.ws.last().end(1006);
    expect(c.h.state).toBe('disconnected');
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', code: 1006, retryIn: 250, attempt: 1 });
    await tick(250);
    expect(c.h.state).toBe('connecting');
    c.ws.last().open();
    expect(c.states()).toEqual(['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
    expect(c.log.states[1]).toEqual({ state: 'connected', transport: 'websocket' });
    c.h.close();
  });

  it('closed is final: no events, no reconnect, no timers left', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(1)); // an ack timer is pending
    c.h.close();
    expect(c.h.state).toBe('closed');
    expect(c.log.states.at(-1)).toEqual({ state: 'closed', reason: 'closed by the client' });
    expect(c.ws.last().closedWith).toBe(1000);
    expect(vi.getTimerCount()).toBe(0);
    const n = c.log.states.length;
    c.ws.last().recv(msg(2));
    c.ws.last().end(1012);
    c.h.connect();
    await tick(120_000);
    expect(c.log.states).toHaveLength(n);
    expect(c.ws.all).toHaveLength(1);
    expect(c.offsets()).toEqual([1]);
    c.h.close(); // twice is fine
    expect(c.log.states).toHaveLength(n);
  });

  it('close() while getToken is pending opens nothing', async () => {
    let give!: (t: string) => void;
    const c = client({ getToken: () => new Promise<string>((r) => (give = r)) });
    c.h.connect();
    expect(c.h.state).toBe('connecting');
    c.h.close();
    give(token());
    await tick(60_000);
    expect(c.ws.all).toHaveLength(0);
    expect(c.states()).toEqual(['connecting', 'closed']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('close() while the socket is connecting closes it', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    c.h.close();
    expect(ws.closedWith).toBe(1000);
    ws.open(); // too late: ignored
    await tick(60_000);
    expect(c.states()).toEqual(['connecting', 'closed']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('failures that land after close() emit nothing and schedule nothing', async () => {
    let fail!: (e: Error) => void;
    const c = client({ getToken: () => new Promise<string>((_, r) => (fail = r)) });
    c.h.connect();
    c.h.close();
    fail(new Error('late'));
    await tick();
    expect(c.log.errors).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('connect() twice opens one socket', async () => {
    const c = client();
    c.h.connect();
    c.h.connect();
    await tick();
    expect(c.ws.all).toHaveLength(1);
    c.h.close();
  });

  it('a getToken failure is an error and a retry with backoff', async () => {
    const getToken = vi.fn().mockRejectedValueOnce(new Error('no session')).mockResolvedValue(token());
    const c = client({ getToken });
    c.h.connect();
    await tick();
    expect(c.log.errors[0]).toMatchObject({ name: 'HeraldError', code: 'token' });
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', retryIn: 250 });
    await tick(250);
    expect(c.ws.all).toHaveLength(1);
    c.h.close();
  });
});

describe('reconnect backoff', () => {
  it('full jitter, doubling per failure up to the cap', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      c.ws.last().open(); // opened: not an early failure (no transport switch)
      c.ws.last().end(1006);
      waits.push(c.log.states.at(-1).retryIn);
      await tick(c.log.states.at(-1).retryIn);
    }
    // random() = 0.5: half of 500·2^n, capped at 30 s.
    expect(waits).toEqual([250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
    c.h.close();
  });

  it('custom base and cap', async () => {
    const c = client({ backoff: { base: 100, cap: 1000 } });
    c.h.connect();
    await tick();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      c.ws.last().open();
      c.ws.last().end(1006);
      waits.push(c.log.states.at(-1).retryIn);
      await tick(c.log.states.at(-1).retryIn);
    }
    expect(waits).toEqual([50, 100, 200, 400, 500, 500]);
    c.h.close();
  });

  it('the attempt count resets once a connection stayed up stableAfter (60 s)', async () => {
    const c = client();
    c.h.connect();
    await tick();
    for (let i = 0; i < 4; i++) {
      c.ws.last().open();
      c.ws.last().end(1006);
      await tick(c.log.states.at(-1).retryIn);
    }
    expect(c.log.states.at(-1)).toMatchObject({ state: 'connecting', attempt: 4 });
    c.ws.last().open();
    await tick(59_000);
    c.ws.last().recv({ type: 'ping' });
    c.ws.last().end(1006); // 59 s: not stable yet
    expect(c.log.states.at(-1)).toMatchObject({ retryIn: 4000, attempt: 5 });
    await tick(4000);
    c.ws.last().open();
    for (let t = 0; t < 60_000; t += 20_000) {
      c.ws.last().recv({ type: 'ping' });
      await tick(20_000);
    }
    c.ws.last().end(1006);
    expect(c.log.states.at(-1)).toMatchObject({ retryIn: 250, attempt: 1 });
    c.h.close();
  });
});

describe('close codes', () => {
  // random() = 0.5 throughout; the connection was open (no transport switch).
  it.each([
    { code: 1000, what: 'normal', retryIn: 250 },
    { code: 1006, what: 'abnormal (network)', retryIn: 250 },
    { code: 1008, what: 'heartbeat timeout', retryIn: 250 },
    { code: 1011, what: 'history unavailable', retryIn: 250 },
    { code: 1012, what: 'server restarting: small jitter, no backoff step', retryIn: 500, attempt: 0 },
    { code: 4001, what: 'token expired: a fresh token at once', retryIn: 0, attempt: 0, freshToken: true },
    { code: 4008, what: 'send queue full: resume', retryIn: 250 },
    { code: 4029, what: 'too many connections: back off', retryIn: 5250 },
    { code: 4030, what: 'message rate exceeded: back off longer', retryIn: 30250 },
  ])('$code $what', async ({ code, retryIn, attempt = 1, freshToken }) => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(5));
    c.ws.last().end(code, 'why');
    expect(c.log.states.at(-1)).toEqual({ state: 'disconnected', code, reason: 'why', transport: 'websocket', attempt, retryIn });
    const tokens = c.getToken.mock.calls.length;
    await tick(retryIn);
    expect(c.ws.all).toHaveLength(2);
    expect(c.ws.last().query.get('since')).toBe('5'); // every reconnect resumes
    if (freshToken) expect(c.getToken.mock.calls.length).toBe(tokens + 1);
    c.h.close();
  });

  it('4003 disconnected by the server: closed for good, no reconnect', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().end(4003, 'disconnected by the server');
    expect(c.h.state).toBe('closed');
    expect(c.log.states.at(-1)).toEqual({ state: 'closed', code: 4003, reason: 'disconnected by the server' });
    await tick(600_000);
    expect(c.ws.all).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a `reconnect` message (drain) reconnects at once, before the 1012', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const old = c.ws.last();
    old.open();
    old.recv(msg(3));
    old.recv({ type: 'reconnect' });
    expect(old.closedWith).toBe(1000);
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', code: 1012, reason: 'server restarting', retryIn: 500 });
    old.end(1012); // the server's close arrives late: ignored
    await tick(500);
    expect(c.ws.all).toHaveLength(2);
    expect(c.ws.last().query.get('since')).toBe('3');
    c.h.close();
  });

  it('4001 again and again is not a tight loop: the handshake 401s (closes before open) and backs off', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().end(4001, 'token expired');
    await tick(0);
    c.ws.last().end(1006); // 401 at the handshake: the browser says only 1006
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', retryIn: 250 });
    await tick(250);
    c.ws.last().end(1006);
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', retryIn: 500 });
    // getToken was asked on every attempt: the app gets a chance to log in again.
    expect(c.getToken).toHaveBeenCalledTimes(3);
    c.h.close();
  });
});

describe('heartbeat', () => {
  it('answers the server ping with pong', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv({ type: 'ping' });
    expect(c.ws.last().of('pong')).toEqual([{ type: 'pong' }]);
    c.h.close();
  });

  it('nothing for heartbeatTimeout (2.5 × 25 s): close and reconnect', async () => {
    const c = client();
    c.h.connect();
    await tick();
    const ws = c.ws.last();
    ws.open();
    for (let i = 0; i < 10; i++) {
      await tick(25_000);
      ws.recv({ type: 'ping' }); // alive
    }
    expect(c.h.state).toBe('connected');
    await tick(62_499);
    expect(c.h.state).toBe('connected');
    await tick(1);
    expect(ws.closedWith).toBe(1000);
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', reason: 'heartbeat timeout' });
    await tick(250);
    expect(c.ws.all).toHaveLength(2);
    c.h.close();
  });

  it('any message feeds the watchdog; heartbeatTimeout is an option', async () => {
    const c = client({ heartbeatTimeout: 10_000 });
    c.h.connect();
    await tick();
    c.ws.last().open();
    await tick(9_000);
    c.ws.last().recv(msg(1));
    await tick(9_000);
    c.ws.last().recv({ type: 'counts', unread: 1, unseen: 1 });
    await tick(9_000);
    expect(c.h.state).toBe('connected');
    await tick(1_000);
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', reason: 'heartbeat timeout' });
    c.h.close();
  });

  it('a handshake that hangs is given up after heartbeatTimeout', async () => {
    const c = client();
    c.h.connect();
    await tick();
    await tick(62_500);
    expect(c.ws.last().closedWith).toBe(1000);
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', reason: 'heartbeat timeout' });
    c.h.close();
  });
});

describe('server errors', () => {
  it('a herald.v1 error message becomes an error event with its code; the connection stays', async () => {
    const c = client();
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv({ type: 'error', code: 'bad_ack', message: 'offset 9 was never sent' });
    expect(c.log.errors[0]).toMatchObject({ name: 'HeraldError', code: 'bad_ack', message: 'offset 9 was never sent' });
    expect(c.h.state).toBe('connected');
    c.h.close();
  });

  it('a throwing handler is reported and does not stop the others', async () => {
    const c = client();
    const seen: number[] = [];
    c.h.on('message', () => {
      throw new Error('boom');
    });
    c.h.on('message', (m) => void seen.push(m.offset!));
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(1));
    expect(seen).toEqual([1]);
    expect(c.log.errors.map((e) => e.message)).toEqual(['boom']);
    c.h.close();
  });

  it('on() returns an unsubscribe', async () => {
    const c = client();
    const seen: number[] = [];
    const off = c.h.on('message', (m) => void seen.push(m.offset!));
    c.h.connect();
    await tick();
    c.ws.last().open();
    c.ws.last().recv(msg(1));
    off();
    c.ws.last().recv(msg(2));
    expect(seen).toEqual([1]);
    c.h.close();
  });
});
