// SSE: the fallback after WebSocket keeps failing, the stream itself, acks over
// POST /v1/ack, and the way back to WebSocket.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { client, msg, tick } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** A client that failed 3 WebSocket handshakes and is on SSE, connected, having seen offset 5. */
async function onSSE(opts = {}) {
  const c = client(opts);
  c.h.connect();
  await tick();
  c.ws.last().open();
  c.ws.last().recv(msg(5));
  c.ws.last().end(1006); // a proxy starts refusing upgrades
  for (let i = 0; i < 3; i++) {
    await tick(c.log.states.at(-1).retryIn);
    c.ws.last().end(1006); // never opens
  }
  await tick(c.log.states.at(-1).retryIn);
  c.es.last().connected('c0nnecti0n-id-01', 'e1');
  await tick();
  return c;
}

describe('fallback to SSE', () => {
  it('after 3 WebSocket failures in a row that never reached open', async () => {
    const c = await onSSE();
    expect(c.ws.all).toHaveLength(4);
    expect(c.es.all).toHaveLength(1);
    expect(c.log.states.at(-1)).toEqual({ state: 'connected', transport: 'sse' });
    const transports = c.log.states.filter((s) => s.state === 'connecting').map((s) => s.transport);
    expect(transports).toEqual(['websocket', 'websocket', 'websocket', 'websocket', 'sse']);
    c.h.close();
  });

  it('failures of connections that had opened do not count', async () => {
    const c = client();
    c.h.connect();
    await tick();
    for (let i = 0; i < 6; i++) {
      c.ws.last().open();
      c.ws.last().end(1006);
      await tick(c.log.states.at(-1).retryIn);
    }
    expect(c.es.all).toHaveLength(0);
    c.h.close();
  });

  it('the SSE URL carries the token (EventSource cannot set headers) and the resume point', async () => {
    const c = await onSSE();
    const es = c.es.last();
    const t = await c.getToken.mock.results.at(-1)!.value;
    expect(es.url.startsWith('https://herald.test/sse?')).toBe(true);
    expect(es.query.get('token')).toBe(t);
    expect(es.query.get('since')).toBe('5');
    expect(es.query.get('epoch')).toBe('e1');
    c.h.close();
  });

  it("transports: ['websocket'] never falls back", async () => {
    const c = client({ transports: ['websocket'] });
    c.h.connect();
    for (let i = 0; i < 8; i++) {
      await tick(c.log.states.at(-1).retryIn ?? 0);
      c.ws.last().end(1006);
    }
    expect(c.es.all).toHaveLength(0);
    c.h.close();
  });

  it("transports: ['sse'] uses SSE only", async () => {
    const c = client({ transports: ['sse'] });
    c.h.connect();
    await tick();
    expect(c.ws.all).toHaveLength(0);
    expect(c.es.all).toHaveLength(1);
    c.h.close();
  });

  it('when SSE fails 3 times too, WebSocket is tried again (both down: keep alternating, with backoff)', async () => {
    const c = client();
    c.h.connect();
    const seq: string[] = [];
    for (let i = 0; i < 12; i++) {
      await tick(c.log.states.at(-1).retryIn ?? 0);
      const s = c.log.states.at(-1);
      seq.push(s.transport);
      if (s.transport === 'sse') c.es.last().fail();
      else c.ws.last().end(1006);
    }
    expect(seq.join(' ')).toBe('websocket websocket websocket sse sse sse websocket websocket websocket sse sse sse');
    c.h.close();
  });
});

describe('the SSE stream', () => {
  it('delivers messages, counts, resets; de-duplicates; state follows connected', async () => {
    const c = await onSSE();
    const es = c.es.last();
    es.emit('message', msg(5)); // replay overlap
    es.emit('message', msg(6));
    es.emit('counts', { type: 'counts', unread: 1, unseen: 0, mark: 'seen', ids: ['m0006'] });
    es.emit('reset', { type: 'reset', epoch: 'e2', offset: 0 });
    es.emit('message', msg(1, 'x', 'e2'));
    expect(c.offsets()).toEqual([5, 6, 1]);
    expect(c.log.resets).toHaveLength(1);
    expect(c.log.counts.some((x) => x.mark === 'seen')).toBe(true);
    c.h.close();
  });

  it('acks go to POST /v1/ack with the connection id, the token in Authorization', async () => {
    const c = await onSSE();
    c.es.last().emit('message', msg(6));
    c.es.last().emit('message', msg(7));
    await tick(50);
    const acks = c.fetch.calls.filter((x) => x.path === '/v1/ack');
    expect(acks).toHaveLength(1);
    expect(acks[0]).toMatchObject({ method: 'POST', body: { connection_id: 'c0nnecti0n-id-01', offset: 7 } });
    expect(acks[0]!.auth).toMatch(/^Bearer /);
    c.h.close();
  });

  it.each([
    { code: 4001, reason: 'token expired', retryIn: 0 },
    { code: 1012, reason: 'server restarting', retryIn: 500 },
    // 4 failures so far and the stream not yet up a minute: backoff step 4.
    { code: 4008, reason: 'send queue full', retryIn: 4000 },
  ])('a close event $code ends the stream and reconnects', async ({ code, reason, retryIn }) => {
    const c = await onSSE();
    const es = c.es.last();
    es.emit('close', { type: 'close', code, reason });
    expect(es.readyState).toBe(2); // EventSource's own reconnect is not used
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', code, retryIn });
    c.h.close();
  });

  it('a close event 4003 closes for good', async () => {
    const c = await onSSE();
    c.es.last().emit('close', { type: 'close', code: 4003, reason: 'disconnected by the server' });
    expect(c.h.state).toBe('closed');
    await tick(600_000);
    expect(c.es.all).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('the reconnect event (drain) reconnects, resuming', async () => {
    const c = await onSSE();
    c.es.last().emit('message', msg(6));
    c.es.last().emit('reconnect', { type: 'reconnect' });
    c.es.last().emit('close', { type: 'close', code: 1012, reason: 'server restarting' });
    expect(c.log.states.filter((s) => s.state === 'disconnected').at(-1)).toMatchObject({ code: 1012 });
    await tick(500);
    expect(c.es.all).toHaveLength(2);
    expect(c.es.last().query.get('since')).toBe('6');
    c.h.close();
  });

  it('a stream that never sends connected is given up after heartbeatTimeout; an open one is not watched', async () => {
    const c = client({ transports: ['sse'] });
    c.h.connect();
    await tick();
    await tick(62_500);
    expect(c.es.last().readyState).toBe(2);
    await tick(250);
    c.es.last().connected();
    await tick(600_000); // Herald's `: ping` comments are invisible to EventSource: no watchdog
    expect(c.h.state).toBe('connected');
    c.h.close();
  });
});

describe('back to WebSocket', () => {
  it('probes WebSocket once SSE was stable for a minute, and switches when it opens', async () => {
    const c = await onSSE();
    expect(c.ws.all).toHaveLength(4);
    await tick(59_999);
    expect(c.ws.all).toHaveLength(4);
    await tick(1);
    expect(c.ws.all).toHaveLength(5);
    const probe = c.ws.last();
    expect(probe.query.get('since')).toBe('5');
    c.es.last().emit('message', msg(6)); // SSE serves until the switch
    probe.open();
    expect(c.es.last().readyState).toBe(2);
    expect(c.log.states.at(-1)).toEqual({ state: 'connected', transport: 'websocket' });
    probe.recv(msg(6)); // the probe resumed from 5: 6 again is dropped
    probe.recv(msg(7));
    expect(c.offsets()).toEqual([5, 6, 7]);
    // no state flicker in between
    expect(c.states().slice(-2)).toEqual(['connected', 'connected']);
    c.h.close();
  });

  it('a failed probe leaves SSE alone and tries again every 5 minutes', async () => {
    const c = await onSSE();
    await tick(60_000);
    expect(c.ws.all).toHaveLength(5);
    c.ws.last().end(1006);
    expect(c.log.states.at(-1)).toEqual({ state: 'connected', transport: 'sse' });
    expect(c.es.last().readyState).not.toBe(2);
    await tick(299_999);
    expect(c.ws.all).toHaveLength(5);
    await tick(1);
    expect(c.ws.all).toHaveLength(6);
    c.ws.last().open();
    expect(c.log.states.at(-1)).toEqual({ state: 'connected', transport: 'websocket' });
    c.h.close();
  });

  it("transports: ['sse', 'websocket'] prefers SSE: no probing", async () => {
    const c = client({ transports: ['sse', 'websocket'] });
    c.h.connect();
    await tick();
    c.es.last().connected();
    await tick(3_600_000);
    expect(c.ws.all).toHaveLength(0);
    c.h.close();
  });

  it('a probe that hangs is replaced by the next one', async () => {
    const c = await onSSE();
    await tick(60_000);
    const hung = c.ws.last();
    await tick(300_000);
    expect(hung.closedWith).toBe(1000);
    expect(c.ws.all).toHaveLength(6);
    c.h.close();
  });

  it('if SSE drops while probing, the probe is dropped too and reconnecting starts over', async () => {
    const c = await onSSE();
    await tick(60_000);
    const probe = c.ws.last();
    c.es.last().fail();
    expect(probe.closedWith).toBe(1000);
    probe.open(); // too late
    expect(c.log.states.at(-1)).toMatchObject({ state: 'disconnected', transport: 'sse' });
    c.h.close();
  });
});
