// The dashboard Herald serves at /dashboard/, in dev mode, in two tabs of
// one user: test notifications sent from the page's own dev form reach both
// tabs (over one shared connection), and marking one read in one tab clears
// it from the other's badge. The screenshot of the two tabs in sync is the
// issue's artifact: js/e2e/artifacts/dashboard-two-tabs.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Herald } from '../lib/herald.mjs';
import { launch, close } from '../lib/browser.mjs';
import { ARTIFACTS, screenshotSideBySide } from '../lib/scene.mjs';

const TIMEOUT = 30_000;

test('dashboard: two tabs in sync, the dev form, a read in one tab clears the other', { timeout: 120_000 }, async () => {
  // Dev mode with the harness's secrets: the dashboard and its dev routes
  // are on; the page is served by Herald, so its origin is Herald's own.
  const herald = await new Herald({ origin: 'http://127.0.0.1:1', env: { HERALD_DEV: 'true' } }).start();
  const browser = await launch();
  try {
    const ctx = await browser.newContext({ viewport: { width: 640, height: 560 } });
    const url = `${herald.url}/dashboard/#user=alice`;
    const tabs = [];
    for (let i = 0; i < 2; i++) {
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(url);
      tabs.push({ page, errors });
    }
    for (const { page } of tabs) {
      await page.waitForFunction(() => document.getElementById('state').dataset.state === 'connected', null, { timeout: TIMEOUT });
    }

    // Three test notifications from tab 1's dev form.
    const [one, two] = tabs.map((t) => t.page);
    await one.fill('#dev-user', 'alice');
    for (const n of [1, 2, 3]) {
      await one.fill('#dev-data', JSON.stringify({ message: `hello ${n}` }));
      await one.click('#dev-form button[type=submit]');
      await one.waitForFunction((n) => document.getElementById('dev-result').textContent.startsWith(`sent: offset ${n},`), n, { timeout: TIMEOUT });
    }
    // Both tabs list the three, newest first, once each; the badge says 3.
    for (const page of [one, two]) {
      await page.waitForFunction(() => document.querySelectorAll('#items li').length >= 3 && document.getElementById('badge').textContent === '3', null, { timeout: TIMEOUT });
      const shown = await page.$$eval('#items li pre', (els) => els.map((e) => JSON.parse(e.textContent).message));
      assert.deepEqual(shown, ['hello 3', 'hello 2', 'hello 1']);
    }
    // The two tabs share one connection.
    const conns = await herald.api('GET', '/v1/users/alice/connections');
    assert.equal(conns.body.connections.length, 1, `alice's connections: ${JSON.stringify(conns.body)}`);

    // Mark the newest read in tab 1: tab 2 follows through the counts push.
    await one.click('#items li:first-child button');
    await two.waitForFunction(() => document.getElementById('badge').textContent === '2' &&
      document.querySelector('#items li:first-child').classList.contains('read'), null, { timeout: TIMEOUT });

    for (const page of [one, two]) await page.evaluate(() => window.scrollTo(0, 0));
    const file = join(ARTIFACTS, 'dashboard-two-tabs.png');
    await screenshotSideBySide(browser, [one, two], file);
    console.log(`dashboard screenshot of two tabs in sync: ${file}`);
    for (const t of tabs) assert.deepEqual(t.errors, [], 'no script errors on the page');
    await ctx.close();
  } finally {
    await close(browser);
    await herald.kill();
  }
});
