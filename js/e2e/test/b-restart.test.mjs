// Scenario (b): Herald restarts on the same database — gracefully
// (SIGTERM: drain, reconnect message, close 1012) and by crash (kill -9) —
// while the backend keeps notifying. Every notification Herald
// acknowledged (2xx) reaches every tab exactly once, in stream order, and
// no tab sees a reset (the history survived).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withScene } from '../lib/scene.mjs';
import { Sender } from '../lib/sender.mjs';
import { waitFor } from '../lib/poll.mjs';

const pick = ({ id, offset, data }) => ({ id, offset, data });

test('b: restarts (SIGTERM, then kill -9) while sending — every acknowledged notification in every tab exactly once, in order', { timeout: 300_000 }, () =>
  withScene('b-restart', {}, async (s) => {
    // Quick retries keep the test short; the defaults (500 ms … 30 s) would only make it slower.
    const options = { backoff: { base: 100, cap: 1000 } };
    const tabs = [
      await s.openTab('alice', { options, label: 'tab 1' }),
      await s.openTab('alice', { options, label: 'tab 2' }),
      // Another browser (profile) of alice: its own connection.
      await s.openTab('alice', { options, label: 'other browser', profile: 'alice-2' }),
    ];
    for (const t of tabs) await t.untilState('connected');
    await s.herald.notify('alice', { seq: 0, text: 'before' });
    for (const t of tabs) await t.untilMessages(1);

    // Each restart must hit live connections: before it, every tab is
    // connected to the running Herald (two connections: the shared one and
    // the other browser's). After a drain the client reconnects with a
    // random delay, so this is waited for, not assumed.
    const allConnected = () => waitFor('every tab connected to the running Herald', async () => {
      if ((await s.herald.connections('alice')).length !== 2) return false;
      for (const t of tabs) {
        const st = (await t.snapshot()).states;
        if (st[st.length - 1]?.state !== 'connected') return false;
      }
      return true;
    });
    const sender = new Sender(s.herald, 'alice').start();
    let term;
    let kill;
    try {
      await sender.ackedMore(10);
      term = await s.herald.restart('SIGTERM');
      await sender.ackedMore(10);
      await allConnected();
      kill = await s.herald.restart('SIGKILL');
      await sender.ackedMore(10);
      await allConnected();
      await sender.ackedMore(5);
    } finally {
      await sender.stop();
    }
    assert.deepEqual(term, { code: 0, signal: null }, 'SIGTERM: a clean exit after the drain');
    assert.deepEqual(kill, { code: null, signal: 'SIGKILL' }, 'kill -9');

    // What Herald stored is the truth: offsets 1..N without gaps, one epoch,
    // and every acknowledged request among them.
    const stored = (await s.herald.history('alice')).map(pick);
    assert.deepEqual(stored.map((m) => m.offset), stored.map((_, i) => i + 1), 'stored offsets are 1..N');
    assert.equal(new Set((await s.herald.history('alice')).map((m) => m.epoch)).size, 1, 'one epoch: history survived both restarts');
    const storedIds = new Map(stored.map((m) => [m.id, m]));
    for (const a of sender.acked) {
      assert.equal(storedIds.get(a.id)?.offset, a.offset, `acknowledged seq ${a.seq} (offset ${a.offset}) is stored`);
    }
    const seqs = stored.map((m) => m.data.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'stored in the order sent');

    for (const t of tabs) {
      await t.untilMessages(stored.length, 60_000);
      const snap = await t.snapshot();
      assert.deepEqual(snap.messages.map(pick), stored, `${t.user} ${t.label}: every stored notification exactly once, in order`);
      assert.deepEqual(snap.resets, [], `${t.user} ${t.label}: no reset`);
      const drops = snap.states.filter((x) => x.state === 'disconnected').length;
      assert.ok(drops >= 2, `${t.user} ${t.label}: lost the connection at each restart (saw ${drops} disconnects)`);
    }
    const lost = sender.failed.length;
    const unackedStored = stored.length - 1 - sender.acked.length;
    console.log(`b: ${sender.acked.length} notifications acknowledged, ${lost} refused or failed during the restarts ` +
      `(${unackedStored} of those stored anyway), ${stored.length} stored; all ${tabs.length} tabs have all ${stored.length}, once each, in order`);
  }));
