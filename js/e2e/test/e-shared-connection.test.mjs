// Scenario (e): five tabs of one user in one browser hold ONE connection to
// Herald between them (@herald/client's cross-tab sharing: Web Locks +
// BroadcastChannel), every tab still sees every message once; when the
// tab holding the connection closes, another takes over without losing or
// repeating a message.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withScene } from '../lib/scene.mjs';
import { waitFor } from '../lib/poll.mjs';

const pick = ({ id, offset, data }) => ({ id, offset, data });
const options = { backoff: { base: 100, cap: 1000 } };

test('e: 5 tabs of one user share one connection; closing the leading tab hands it over', { timeout: 180_000 }, () =>
  withScene('e-shared', {}, async (s) => {
    const tabs = [];
    for (let i = 1; i <= 5; i++) {
      const t = await s.openTab('alice', { options, label: `tab ${i}` });
      await t.untilState('connected');
      tabs.push(t);
    }
    await s.herald.notify('alice', { text: 'to five tabs' });
    for (const t of tabs) await t.untilMessages(1);
    const conns = await s.herald.connections('alice');
    console.log(`e: sockets to Herald for one user with 5 tabs open: ${conns.length}`);
    assert.equal(conns.length, 1, `one connection for 5 tabs: ${JSON.stringify(conns.map((c) => c.id))}`);

    // Tab 1 asked for the lock first, so it leads: close it.
    await tabs[0].page.close();
    const rest = tabs.slice(1);
    await waitFor('the first connection to go and another to take its place', async () => {
      const c = await s.herald.connections('alice');
      return c.length === 1 && c[0].id !== conns[0].id;
    });
    for (const text of ['after handover 1', 'after handover 2']) await s.herald.notify('alice', { text });
    const stored = (await s.herald.history('alice')).map(pick);
    for (const t of rest) {
      await t.untilMessages(stored.length);
      assert.deepEqual((await t.snapshot()).messages.map(pick), stored, `${t.label}: every message exactly once, in order`);
    }
    assert.equal((await s.herald.connections('alice')).length, 1, 'still one connection for 4 tabs');
  }));

test('e: React StrictMode mount/unmount cycles leave no socket open (@herald/react)', { timeout: 120_000 }, () =>
  withScene('e-react-strictmode', {}, async (s) => {
    const context = await s.context('alice');
    const page = await context.newPage();
    page.on('console', (m) => s.consoleLog.push(`[react] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => s.consoleLog.push(`[react] pageerror: ${e.message}`));
    await page.goto(`${s.static.origin}/react.html`);
    const app = () => page.evaluate(() => ({ ...window.reactApp, messages: window.reactApp.messages }));
    const CYCLES = 3;
    for (let i = 1; i <= CYCLES; i++) {
      // StrictMode (development) mounts, unmounts and mounts the provider again.
      await page.evaluate((url) => window.mountApp({ url, user: 'alice' }), s.herald.url);
      await page.waitForFunction(() => window.reactApp.state === 'connected', undefined, { timeout: 30_000, polling: 100 });
      const text = `cycle ${i}`;
      await s.herald.notify('alice', { text });
      await page.waitForFunction((t) => window.reactApp.messages.some((d) => d.text === t), text, { timeout: 30_000, polling: 100 });
      const a = await app();
      assert.equal(a.open, 1, `cycle ${i}: one WebSocket open while mounted (${JSON.stringify(a)})`);
      assert.equal(a.opened, i, `cycle ${i}: one WebSocket per mount, none for StrictMode's extra mount (${JSON.stringify(a)})`);
      assert.equal((await s.herald.connections('alice')).length, 1, `cycle ${i}: one connection on the server`);
      await page.evaluate(() => window.unmountApp());
      await page.waitForFunction(() => window.reactApp.open === 0, undefined, { timeout: 30_000, polling: 100 });
      await waitFor(`cycle ${i}: no connection left on the server after unmount`, async () => (await s.herald.connections('alice')).length === 0);
    }
    const a = await app();
    assert.deepEqual([a.opened, a.closed, a.open], [CYCLES, CYCLES, 0], 'every socket opened was closed');
    console.log(`e: React StrictMode: ${CYCLES} mount/unmount cycles opened ${a.opened} WebSockets, closed ${a.closed}, ${a.open} left open`);
  }));
