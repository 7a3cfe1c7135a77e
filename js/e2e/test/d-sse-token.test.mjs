// Scenario (d): behind a proxy that refuses WebSockets the client falls
// back to SSE, and everything still works (messages, counts, acks); tokens
// that expire during the session are refreshed without losing or
// repeating a message, on WebSocket (in-band refresh, same connection) and
// on SSE (a new stream takes over).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withScene } from '../lib/scene.mjs';
import { startNoWebSocketProxy } from '../lib/proxy.mjs';
import { Sender } from '../lib/sender.mjs';
import { waitFor } from '../lib/poll.mjs';

const pick = ({ id, offset, data }) => ({ id, offset, data });
const options = { backoff: { base: 100, cap: 500 } };

test('d: WebSockets blocked by a proxy — the client falls back to SSE: messages, counts push and acks', { timeout: 120_000 }, () =>
  withScene('d-sse-fallback', {}, async (s) => {
    const proxy = await startNoWebSocketProxy(() => s.herald.url);
    s.cleanups.push(() => proxy.close());
    const tab = await s.openTab('alice', { url: proxy.url, options });
    await tab.untilState('connected', 'sse');
    assert.ok(proxy.stats.upgradesRefused >= 1, `the proxy refused WebSocket upgrades (${proxy.stats.upgradesRefused})`);
    const conns = await s.herald.connections('alice');
    assert.deepEqual(conns.map((c) => c.protocol), ['sse'], 'one SSE connection');

    for (const text of ['one', 'two', 'three']) await s.herald.notify('alice', { text });
    // Acks travel over HTTP on SSE (POST /v1/ack through the proxy): the
    // server API can wait for them.
    const acked = await s.herald.notify('alice', { text: 'four' }, 'wait=ack&timeout=20s');
    assert.equal(acked.acked, 1, `the tab acknowledged over SSE: ${JSON.stringify(acked)}`);
    await tab.untilMessages(4);
    const stored = (await s.herald.history('alice')).map(pick);
    assert.deepEqual((await tab.snapshot()).messages.map(pick), stored, 'every message exactly once, in order');

    // The counts push arrives as an SSE event: the backend marks all read.
    const r = await s.herald.api('POST', '/v1/users/alice/inbox/read', { all: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await tab.until('badge cleared by the counts push over SSE', (t) => t.counts && t.counts.unread === 0);
    // And the inbox calls of the page work through the same proxy (CORS preflights included).
    const c = await tab.page.evaluate(() => window.heraldClient.inbox.counts());
    assert.deepEqual(c, { unread: 0, unseen: 0 });
    const states = (await tab.snapshot()).states;
    assert.ok(!states.some((x) => x.state === 'connected' && x.transport === 'websocket'), 'never connected over WebSocket');
    console.log(`d: SSE fallback after ${proxy.stats.upgradesRefused} refused WebSocket upgrades`);
  }));

test('d: short-lived tokens expire during the session — refreshed without a gap, on WebSocket and on SSE', { timeout: 180_000 }, () =>
  // No leeway: a token is refused, and its connection closed (4001), the
  // second its exp passes.
  withScene('d-token-refresh', { heraldEnv: { HERALD_TOKEN_LEEWAY: '0s' } }, async (s) => {
    const TTL = 20;
    const proxy = await startNoWebSocketProxy(() => s.herald.url);
    s.cleanups.push(() => proxy.close());
    const ws = await s.openTab('alice', { ttl: TTL, options, label: 'websocket' });
    const sse = await s.openTab('alice', { ttl: TTL, options, label: 'sse (behind the proxy)', url: proxy.url, profile: 'alice-sse' });
    await ws.untilState('connected', 'websocket');
    await sse.untilState('connected', 'sse');
    const started = Date.now();
    const before = await s.herald.connections('alice');
    const wsConn = before.find((c) => c.protocol === 'herald.v1');
    assert.ok(wsConn, `a WebSocket connection: ${JSON.stringify(before)}`);

    const sender = new Sender(s.herald, 'alice', { pace: 200 }).start();
    try {
      // Past the first tokens' lifetime and a little more: every token the
      // tabs started with has expired by then.
      await waitFor(`${TTL} s and more of sending`, () => Date.now() - started > (TTL + 5) * 1000, { timeout: (TTL + 30) * 1000, interval: 250 });
    } finally {
      await sender.stop();
    }
    assert.deepEqual(sender.failed, [], 'Herald accepted every notification');
    const stored = (await s.herald.history('alice')).map(pick);
    for (const t of [ws, sse]) {
      await t.untilMessages(stored.length);
      const snap = await t.snapshot();
      assert.deepEqual(snap.messages.map(pick), stored, `${t.label}: every message exactly once, in order`);
      assert.ok(snap.tokenFetches >= 2, `${t.label}: fetched fresh tokens (${snap.tokenFetches})`);
      const expired = snap.states.filter((x) => x.code === 4001);
      assert.deepEqual(expired, [], `${t.label}: never closed for an expired token`);
      const since = snap.states.findIndex((x) => x.state === 'connected');
      const drops = snap.states.slice(since).filter((x) => x.state !== 'connected');
      assert.deepEqual(drops, [], `${t.label}: never disconnected once connected`);
    }
    // On WebSocket the token is refreshed in-band: still the same connection.
    const after = await s.herald.connections('alice');
    assert.deepEqual(after.filter((c) => c.protocol === 'herald.v1').map((c) => c.id), [wsConn.id], 'the same WebSocket connection throughout');
    // On SSE a new stream (with the new token) replaced the old one.
    await waitFor('one SSE stream', async () => (await s.herald.connections('alice')).filter((c) => c.protocol === 'sse').length === 1);
    const tf = (await ws.snapshot()).tokenFetches;
    const sf = (await sse.snapshot()).tokenFetches;
    console.log(`d: ${stored.length} messages over ${((Date.now() - started) / 1000).toFixed(0)} s with ${TTL} s tokens; token fetches: websocket tab ${tf}, sse tab ${sf}`);
  }));
