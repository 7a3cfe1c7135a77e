// A real Herald process for the browser tests: built once per run from this
// checkout, started per test file or scenario on a free loopback port with
// configured secrets and a temporary SQLite file, and killed when the test
// ends (or when this Node process exits, whatever the reason).

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './poll.mjs';

/** The repository root (js/e2e/lib → ../../..). */
export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/**
 * The path of the Herald binary. run.mjs builds it once and passes it in
 * HERALD_E2E_BIN; a test file run on its own (node --test test/x.test.mjs)
 * builds its own copy.
 */
export function heraldBinary() {
  const given = process.env.HERALD_E2E_BIN;
  if (given) {
    if (!existsSync(given)) throw new Error(`HERALD_E2E_BIN=${given} does not exist`);
    return given;
  }
  const dir = mkdtempSync(join(tmpdir(), 'herald-e2e-bin-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'herald');
  buildHerald(bin);
  process.env.HERALD_E2E_BIN = bin;
  return bin;
}

/** go build -o bin ./cmd/herald, in the repository root. */
export function buildHerald(bin) {
  execFileSync(process.env.GO || 'go', ['build', '-o', bin, './cmd/herald'], { cwd: ROOT, stdio: 'inherit' });
}

/** Every Herald process this Node process started and has not seen exit. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

const LISTENING = /listening on (https?:\/\/\S+)/;

/** base64url of a JSON value, as JWS wants it. */
function b64url(v) {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

/**
 * Mints an HS256 client token for user, valid ttlSeconds from now: what an
 * application's API server does (docs/api.md "Client tokens").
 */
export function mintToken(secret, user, ttlSeconds = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({ sub: user, iat: now, exp: now + ttlSeconds });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/**
 * One Herald server: a database file, secrets and a port that survive
 * restarts, and the process currently serving them.
 */
export class Herald {
  /**
   * @param {object} o
   * @param {string} o.origin the test page's origin (HERALD_ALLOWED_ORIGINS)
   * @param {Record<string,string>} [o.env] more HERALD_* settings
   */
  constructor({ origin, env = {} }) {
    this.bin = heraldBinary();
    this.dir = mkdtempSync(join(tmpdir(), 'herald-e2e-'));
    this.secret = randomBytes(32).toString('hex');
    this.apiKey = randomBytes(24).toString('hex');
    this.origin = origin;
    this.extraEnv = env;
    this.addr = '127.0.0.1:0';
    this.url = undefined;
    this.child = undefined;
    this.exited = undefined;
    /** Everything the processes wrote, for failure reports. */
    this.log = '';
    this.starts = 0;
  }

  /** Starts the process and waits for its "listening on" line. */
  async start() {
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME || this.dir,
      HERALD_ADDR: this.addr,
      HERALD_DB: join(this.dir, 'herald.db'),
      HERALD_TOKEN_SECRET: this.secret,
      HERALD_API_KEY: this.apiKey,
      HERALD_ALLOWED_ORIGINS: this.origin,
      HERALD_DRAIN_TIMEOUT: '1s',
      HERALD_LOG_LEVEL: 'info',
      ...this.extraEnv,
    };
    const n = ++this.starts;
    const child = spawn(this.bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    this.child = child;
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (s) => { stdout += s; this.log += `[herald#${n} out] ${s}`; });
    child.stderr.on('data', (s) => { this.log += `[herald#${n} err] ${s}`; });
    this.exited = new Promise((res) => child.on('exit', (code, signal) => {
      live.delete(child);
      this.log += `[herald#${n}] exited code=${code} signal=${signal}\n`;
      res({ code, signal });
    }));
    let gone = false;
    this.exited.then(() => { gone = true; });
    const m = await waitFor(`herald#${n} to print its listening line`, () => {
      if (gone) throw new Error(`herald exited before listening:\n${this.log}`);
      return LISTENING.exec(stdout);
    }, { timeout: 60_000, interval: 20 });
    const url = new URL(m[1]);
    if (url.hostname === 'localhost') url.hostname = '127.0.0.1';
    this.url = url.origin;
    // Restarts keep the port: browsers reconnect to the URL they were given.
    this.addr = url.host;
    return this;
  }

  /**
   * Ends the process with signal and waits for it to exit. SIGTERM drains
   * (HERALD_DRAIN_TIMEOUT is 1s here); SIGKILL is a crash.
   */
  async stop(signal = 'SIGTERM') {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    let timer;
    const res = await Promise.race([this.exited, new Promise((r) => { timer = setTimeout(r, 30_000, null); })]);
    clearTimeout(timer);
    if (res === null) {
      child.kill('SIGKILL');
      await this.exited;
      throw new Error(`herald did not exit within 30 s of ${signal}`);
    }
    return res;
  }

  /** Stops with signal, then starts on the same port and database. */
  async restart(signal = 'SIGTERM') {
    const res = await this.stop(signal);
    // The port was just released; another program may take it in between.
    // Retrying a few times is enough on a test machine.
    for (let i = 0; ; i++) {
      try {
        await this.start();
        return res;
      } catch (err) {
        if (i >= 4 || !/address already in use/.test(String(err.message))) throw err;
      }
    }
  }

  /** Kills the process for good and removes its database (cleanup; never throws). */
  async kill() {
    try { await this.stop('SIGKILL'); } catch { /* ignore */ }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A client token for user (HS256 with this server's secret). */
  token(user, ttlSeconds = 3600) {
    return mintToken(this.secret, user, ttlSeconds);
  }

  /** A server API call with the API key. Returns { status, body }. */
  async api(method, path, body) {
    const res = await fetch(this.url + path, {
      method,
      headers: { Authorization: `Bearer ${this.apiKey}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: res.status, body: json };
  }

  /**
   * POST /v1/users/{user}/messages[?query]; throws unless 2xx. Returns the
   * reply ({ user_id, id, offset, connections[, acked] }).
   */
  async notify(user, data, query = '') {
    const r = await this.api('POST', `/v1/users/${encodeURIComponent(user)}/messages${query ? '?' + query : ''}`, data);
    if (r.status < 200 || r.status > 299) throw new Error(`notify ${user}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** The user's open connections (GET /v1/users/{user}/connections). */
  async connections(user) {
    const r = await this.api('GET', `/v1/users/${encodeURIComponent(user)}/connections`);
    if (r.status !== 200) throw new Error(`connections ${user}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.connections;
  }

  /** The user's whole stored stream, oldest first (history API, paged). */
  async history(user) {
    const out = [];
    for (let since = 0; ;) {
      const r = await this.api('GET', `/v1/users/${encodeURIComponent(user)}/messages?since=${since}&limit=1000`);
      if (r.status !== 200) throw new Error(`history ${user}: ${r.status} ${JSON.stringify(r.body)}`);
      if (r.body.messages.length === 0) return out;
      out.push(...r.body.messages);
      since = r.body.next;
    }
  }
}
