// A scenario's world: the page server, one Herald process, one Chromium,
// browser contexts per user (a user's tabs share a context, as tabs of one
// browser profile do, so they can share one connection), and cleanup that
// always runs. On failure the error carries what each tab saw and the tail
// of Herald's log, and the full logs are written under artifacts/.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { close, launch } from './browser.mjs';
import { Herald } from './herald.mjs';
import { startStatic } from './static.mjs';

export const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));

/** How the tabs connect: the real client, unless HERALD_E2E_MODE=raw. */
export const MODE = process.env.HERALD_E2E_MODE || 'client';

/**
 * Runs body(scene) with a fresh world and tears it down whatever happens.
 * @param {string} name used for the log file under artifacts/
 * @param {{ heraldEnv?: Record<string,string> }} opts
 * @param {(s: Scene) => Promise<void>} body
 */
export async function withScene(name, opts, body) {
  const s = new Scene(name);
  try {
    await s.init(opts);
    await body(s);
  } catch (err) {
    const diag = await s.diagnostics().catch((e) => `(no diagnostics: ${e.message})`);
    console.error(`--- ${name} failed: ${err.message.split('\n')[0]}\n${diag}`);
    throw err;
  } finally {
    await s.cleanup();
  }
}

export class Scene {
  constructor(name) {
    this.name = name;
    this.tabs = [];
    this.contexts = new Map();
    this.consoleLog = [];
    this.cleanups = [];
  }

  async init({ heraldEnv } = {}) {
    // The page server mints tokens with Herald's secret; Herald needs the
    // page's origin first, hence the late binding.
    this.static = await startStatic({ mint: (u, ttl) => this.herald.token(u, ttl) });
    this.cleanups.push(() => this.static.close());
    this.herald = new Herald({ origin: this.static.origin, env: heraldEnv });
    this.cleanups.push(() => this.herald.kill());
    await this.herald.start();
    this.browser = await launch();
    this.cleanups.push(() => close(this.browser));
  }

  /** The browser context ("profile") of a user: its tabs share storage and BroadcastChannels. */
  async context(key) {
    let c = this.contexts.get(key);
    if (!c) {
      c = await this.browser.newContext({ viewport: { width: 480, height: 360 } });
      this.contexts.set(key, c);
    }
    return c;
  }

  /**
   * Opens a tab of user and starts it.
   * @param {string} user
   * @param {{ label?: string, mode?: 'client'|'raw', ttl?: number, options?: object, url?: string, profile?: string }} o
   *   url: where the tab connects (default: Herald; a proxy's URL to put one in between);
   *   options: extra HeraldOptions for the client; profile: context key (default user).
   */
  async openTab(user, o = {}) {
    const context = await this.context(o.profile || user);
    const page = await context.newPage();
    const label = o.label || `tab ${this.tabs.filter((t) => t.user === user).length + 1}`;
    page.on('console', (m) => this.consoleLog.push(`[${user} ${label}] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => this.consoleLog.push(`[${user} ${label}] pageerror: ${e.message}`));
    await page.goto(`${this.static.origin}/tab.html`);
    const tab = new Tab(page, user, label);
    this.tabs.push(tab);
    await page.evaluate((cfg) => window.startTab(cfg), {
      url: o.url || this.herald.url,
      user,
      label,
      mode: o.mode || MODE,
      ttl: o.ttl,
      options: o.options,
    });
    return tab;
  }

  async diagnostics() {
    mkdirSync(ARTIFACTS, { recursive: true });
    const logFile = join(ARTIFACTS, `${this.name}.log`);
    const tabs = [];
    const brief = [];
    for (const t of this.tabs) {
      const st = await t.snapshot().catch((e) => ({ error: e.message }));
      tabs.push(`${t.user} ${t.label}: ${JSON.stringify(st)}`);
      brief.push(`${t.user} ${t.label}: ${summary(st)}`);
    }
    writeFileSync(logFile, [
      '== tabs', ...tabs, '== console', ...this.consoleLog, '== herald', this.herald?.log ?? '',
    ].join('\n'));
    const tail = (this.herald?.log ?? '').split('\n').slice(-15).join('\n');
    return `tabs:\n  ${brief.join('\n  ')}\nherald log (tail; everything the tabs saw, their consoles and Herald's log: ${logFile}):\n${tail}`;
  }

  async cleanup() {
    for (const fn of this.cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  }
}

/** A tab's snapshot in a few lines: message offsets (first and last few), counts, the last states. */
export function summary(st) {
  if (!st || st.error || !st.messages) return JSON.stringify(st);
  const offs = st.messages.map((m) => m.offset);
  const list = offs.length > 12 ? `${offs.slice(0, 5).join(',')} … ${offs.slice(-5).join(',')}` : offs.join(',');
  const states = st.states.slice(-6).map((x) => `${x.state}${x.transport ? '/' + x.transport : ''}${x.code ? ' ' + x.code : ''}${x.reason ? ' ' + x.reason : ''}`);
  return `${offs.length} messages [offsets ${list}], counts ${JSON.stringify(st.counts)}, ` +
    `resets ${st.resets.length}, errors ${JSON.stringify(st.errors.slice(-3))}, token fetches ${st.tokenFetches}, last states: ${states.join(' → ')}`;
}

/** One tab: its page and helpers to read and wait on what it saw. */
export class Tab {
  constructor(page, user, label) {
    this.page = page;
    this.user = user;
    this.label = label;
  }

  /** What the tab has seen so far (a plain copy of window.tab). */
  snapshot() {
    return this.page.evaluate(() => {
      const t = window.tab;
      return {
        mode: t.mode, messages: t.messages, counts: t.counts, states: t.states.map((s) => ({ ...s })),
        resets: t.resets, errors: t.errors, tokenFetches: t.tokenFetches,
        badge: document.getElementById('badge').textContent,
      };
    });
  }

  /** The data of every message seen, in arrival order. */
  async data() {
    return (await this.snapshot()).messages.map((m) => m.data);
  }

  /**
   * Waits (bounded, polling) until fn(window.tab, arg) is truthy in the page;
   * on timeout the error says what and shows the tab's state.
   */
  async until(what, fn, arg, timeout = 30_000) {
    try {
      const expr = `(${fn})(window.tab, ${JSON.stringify(arg ?? null)})`;
      const h = await this.page.waitForFunction(expr, undefined, { timeout, polling: 100 });
      return h.jsonValue();
    } catch (err) {
      const st = await this.snapshot().catch((e) => ({ error: e.message }));
      throw new Error(`${this.user} ${this.label}: ${what}: ${err.message.split('\n')[0]}\n  tab saw: ${summary(st)}`);
    }
  }

  /** Waits until the tab has at least n messages. */
  untilMessages(n, timeout) {
    return this.until(`at least ${n} messages`, (t, n) => t.messages.length >= n, n, timeout);
  }

  /** Waits until the tab's connection state is state (optionally over transport). */
  untilState(state, transport, timeout) {
    return this.until(`state ${state}${transport ? ' over ' + transport : ''}`, (t, [s, tr]) => {
      const last = t.states[t.states.length - 1];
      return last && last.state === s && (!tr || last.transport === tr);
    }, [state, transport], timeout);
  }
}

/**
 * Writes one PNG with the pages' screenshots side by side (composed in a
 * page of its own, so no image library is needed).
 */
export async function screenshotSideBySide(browser, pages, file) {
  const shots = [];
  for (const p of pages) shots.push((await p.screenshot()).toString('base64'));
  mkdirSync(ARTIFACTS, { recursive: true });
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 400 } });
  try {
    const page = await ctx.newPage();
    await page.setContent(`<body style="margin:0;padding:8px;display:flex;gap:8px;background:#bbb">${
      shots.map((b) => `<img style="border:1px solid #666" src="data:image/png;base64,${b}">`).join('')}</body>`);
    await page.waitForFunction(() => [...document.images].every((i) => i.complete && i.naturalWidth > 0), undefined, { timeout: 30_000 });
    await page.screenshot({ path: file, fullPage: true });
  } finally {
    await ctx.close();
  }
}
