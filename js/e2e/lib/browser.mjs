// Chromium for the e2e tests: Debian's /usr/bin/chromium (HERALD_CHROMIUM
// overrides), driven by playwright-core over its pipe. Never a browser
// download: playwright-core ships no browser, and the tests name the
// executable.
//
// The flags are the ones this machine needs: without the background
// networking switches Chromium keeps trying hosts the closed network
// refuses. chromium.launch() itself adds --headless and a fresh
// --user-data-dir=<mkdtemp(os.tmpdir())/playwright_chromiumdev_profile-…>,
// which it deletes on close (it refuses a --user-data-dir in args; run.mjs
// points TMPDIR at its run directory, so a leaked profile or process is
// found there and reported).

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.HERALD_CHROMIUM || '/usr/bin/chromium';

export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches Chromium. Close it with close(browser) in an after/finally;
 * should that never run, playwright-core kills the browsers it launched
 * when this Node process exits.
 */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set HERALD_CHROMIUM)`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: 60_000,
  });
  return browser;
}

export async function close(browser) {
  if (!browser) return;
  await browser.close().catch(() => {});
}
