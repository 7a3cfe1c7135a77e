// Scenario (c): a tab that goes offline, and a background tab the browser
// freezes, catch up on return: every notification sent meanwhile, once,
// in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withScene } from '../lib/scene.mjs';
import { waitFor } from '../lib/poll.mjs';

const pick = ({ id, offset, data }) => ({ id, offset, data });
const options = { backoff: { base: 100, cap: 1000 } };

test('c: offline, then online — the tab catches up', { timeout: 180_000 }, () =>
  // A 1 s heartbeat: Herald drops the offline tab's connection within
  // seconds (its pongs no longer arrive), so the tab must reconnect and
  // resume, not merely receive frames Chromium held back.
  withScene('c-offline', { heraldEnv: { HERALD_PING_INTERVAL: '1s' } }, async (s) => {
    const tab = await s.openTab('alice', { options });
    await tab.untilState('connected');
    await s.herald.notify('alice', { text: 'online 1' });
    await tab.untilMessages(1);

    await tab.page.context().setOffline(true);
    await s.herald.notify('alice', { text: 'offline 1' });
    await s.herald.notify('alice', { text: 'offline 2' });
    await waitFor("Herald to drop the offline tab's connection (heartbeat)", async () => (await s.herald.connections('alice')).length === 0);
    await s.herald.notify('alice', { text: 'offline 3' });
    const offlineSeen = (await tab.snapshot()).messages.length;
    await tab.page.context().setOffline(false);
    await s.herald.notify('alice', { text: 'online 2' });

    const stored = (await s.herald.history('alice')).map(pick);
    assert.equal(stored.length, 5);
    await tab.untilMessages(5);
    await tab.until('connected again', (t) => t.states.some((x, i) => i > 1 && x.state === 'connected'));
    const snap = await tab.snapshot();
    assert.deepEqual(snap.messages.map(pick), stored, 'every notification exactly once, in order');
    assert.equal(offlineSeen, 1, 'nothing arrived while offline');
    assert.deepEqual(snap.resets, []);
  }));

test('c: a background tab, frozen while Herald crashes and restarts — catches up when it is shown again', { timeout: 180_000 }, () =>
  withScene('c-frozen', {}, async (s) => {
    const tab = await s.openTab('alice', { options });
    await tab.untilState('connected');
    await s.herald.notify('alice', { text: 'before' });
    await tab.untilMessages(1);

    // What Chrome does to a long-hidden tab: hidden, then frozen — no
    // JavaScript runs, no timers, no events — until it is shown again.
    // Page.setWebLifecycleState('frozen') has no effect here (headless
    // pages are always visible, and Chromium 156 freezes only hidden
    // ones: timers kept running), so the tab is hidden by emulating the
    // Page Visibility API and frozen by pausing its JavaScript (CDP
    // Debugger.pause), which stops it just as completely.
    await tab.page.evaluate(() => window.emulateVisibility('hidden'));
    const cdp = await tab.page.context().newCDPSession(tab.page);
    await cdp.send('Debugger.enable');
    await cdp.send('Debugger.pause');
    await s.herald.notify('alice', { text: 'while frozen 1' });
    await s.herald.restart('SIGKILL'); // the frozen tab's connection dies
    await s.herald.notify('alice', { text: 'while frozen 2' });
    await s.herald.notify('alice', { text: 'while frozen 3' });
    // Frozen, the tab cannot have reconnected.
    assert.deepEqual(await s.herald.connections('alice'), [], 'no connection while frozen');

    await cdp.send('Debugger.resume');
    await cdp.send('Debugger.disable');
    await tab.page.evaluate(() => window.emulateVisibility('visible'));
    const stored = (await s.herald.history('alice')).map(pick);
    assert.equal(stored.length, 4);
    await tab.untilMessages(4);
    const snap = await tab.snapshot();
    assert.deepEqual(snap.messages.map(pick), stored, 'every notification exactly once, in order');
    assert.deepEqual(snap.resets, []);
    await waitFor('the tab connected again', async () => (await s.herald.connections('alice')).length === 1);
  }));

test('c: a tab that has received nothing yet, frozen while Herald restarts — gets what was sent meanwhile', {
  // A herald.v1 client without an offset used to reconnect without ?since=
  // and start at the stream's end, losing what was sent while it was away.
  timeout: 120_000,
}, () =>
  withScene('c-frozen-fresh', {}, async (s) => {
    const tab = await s.openTab('alice', { options });
    await tab.untilState('connected');
    await tab.page.evaluate(() => window.emulateVisibility('hidden'));
    const cdp = await tab.page.context().newCDPSession(tab.page);
    await cdp.send('Debugger.enable');
    await cdp.send('Debugger.pause');
    await s.herald.restart('SIGKILL');
    await s.herald.notify('alice', { text: 'while frozen 1' });
    await s.herald.notify('alice', { text: 'while frozen 2' });
    assert.deepEqual(await s.herald.connections('alice'), [], 'no connection while frozen');
    await cdp.send('Debugger.resume');
    await cdp.send('Debugger.disable');
    await tab.page.evaluate(() => window.emulateVisibility('visible'));
    const stored = (await s.herald.history('alice')).map(pick);
    assert.equal(stored.length, 2);
    await tab.untilMessages(2);
    assert.deepEqual((await tab.snapshot()).messages.map(pick), stored);
  }));
