// Scenario (a): two tabs of user A and one of user B, each page served from
// its own origin (cross-origin to Herald). A notification to A shows in
// both A tabs exactly once and not in B; marking it read in one A tab
// clears the badge in the other (the server's counts push).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withScene, ARTIFACTS, screenshotSideBySide } from '../lib/scene.mjs';

/** The scenario, for a way of connecting (mode: 'raw' | 'client'). */
async function twoTabs(s, mode, { afterFirstRead } = {}) {
  const a1 = await s.openTab('alice', { mode, label: 'tab 1' });
  const a2 = await s.openTab('alice', { mode, label: 'tab 2' });
  const b = await s.openTab('bob', { mode, label: 'tab 1' });
  for (const t of [a1, a2, b]) await t.untilState('connected');

  const sent = [];
  for (const text of ['deploy finished', 'build failed', 'new comment']) {
    const r = await s.herald.notify('alice', { text });
    sent.push({ id: r.id, offset: r.offset, data: { text } });
  }
  await a1.untilMessages(3);
  await a2.untilMessages(3);
  // Markers: anything wrongly queued to a connection before them (a
  // duplicate to A, A's messages to B) arrives before them, so once the
  // markers are in, the lists are final.
  // The marker also checks delivery receipts: the reply waits for a tab's ack.
  const marker = await s.herald.notify('alice', { text: 'a-marker' }, 'wait=ack&timeout=20s');
  assert.ok(marker.acked >= 1, `a tab acknowledged the marker: ${JSON.stringify(marker)}`);
  // Sharing: with @herald/client a user's tabs in one browser hold one connection.
  assert.equal(marker.connections, mode === 'client' ? 1 : 2, 'connections of alice');
  sent.push({ id: marker.id, offset: marker.offset, data: { text: 'a-marker' } });
  await s.herald.notify('bob', { text: 'b-marker' });
  await a1.untilMessages(4);
  await a2.untilMessages(4);
  await b.untilMessages(1);

  const expected = sent.map(({ id, offset, data }) => ({ id, offset, data }));
  assert.deepEqual(expected.map((m) => m.offset), [1, 2, 3, 4], 'alice stream offsets');
  for (const t of [a1, a2]) {
    const got = (await t.snapshot()).messages.map(({ id, offset, data }) => ({ id, offset, data }));
    assert.deepEqual(got, expected, `${t.user} ${t.label}: every message exactly once, in order`);
  }
  assert.deepEqual(await b.data(), [{ text: 'b-marker' }], 'bob sees only his own message');

  // Read one in tab 1: tab 2's badge follows through the counts push.
  const after1 = await a1.page.evaluate((id) => window.markRead([id]), sent[0].id);
  assert.deepEqual(after1, { unread: 3, unseen: 3 }, 'counts after marking one read');
  await a2.until('badge 3 after a read in tab 1', (t) => t.counts && t.counts.unread === 3);
  assert.equal((await a2.snapshot()).badge, '3');
  await a2.until('the read shown in tab 2', (t, id) => t.read.has(id), sent[0].id);
  if (afterFirstRead) await afterFirstRead(a1, a2);

  // Read all in tab 2: tab 1's badge clears.
  const after2 = await a2.page.evaluate(() => window.markRead());
  assert.deepEqual(after2, { unread: 0, unseen: 0 }, 'counts after marking all read');
  await a1.until('badge cleared after read-all in tab 2', (t) => t.counts && t.counts.unread === 0);
  assert.equal((await a1.snapshot()).badge, '0');

  // Bob's inbox is his own: untouched by alice's marks.
  const bc = await s.herald.api('GET', '/v1/users/bob/inbox/counts');
  assert.deepEqual(bc.body, { unread: 1, unseen: 1 }, "bob's counts");
  return { a1, a2, b };
}

test('a+f: two tabs of one user in sync, another user apart — @herald/client; screenshot of the two tabs', { timeout: 120_000 }, () =>
  withScene('a-two-tabs-client', {}, async (s) => {
    await twoTabs(s, 'client', {
      // f: the two tabs side by side after a read in tab 1: same list, same badge, same read item.
      afterFirstRead: async (a1, a2) => {
        const file = join(ARTIFACTS, 'two-tabs.png');
        await screenshotSideBySide(s.browser, [a1.page, a2.page], file);
        console.log(`f: screenshot of two tabs in sync: ${file}`);
      },
    });
  }));

test('a: two tabs of one user in sync, another user apart — plain herald.v1 WebSocket (server baseline)', { timeout: 120_000 }, () =>
  withScene('a-two-tabs-raw', {}, (s) => twoTabs(s, 'raw')));
