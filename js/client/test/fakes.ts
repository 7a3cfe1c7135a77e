// Fakes of the browser APIs the client uses: WebSocket, EventSource, fetch,
// Web Locks, BroadcastChannel, Storage. Each is driven by the test; none
// waits on a real clock (timers are Vitest's fake timers).
import { vi } from 'vitest';
import { Herald } from '../src/index.js';
import type { HeraldOptions, Locks } from '../src/index.js';
import { check } from './schema.js';

export const URL_ = 'https://herald.test';

/** An unsigned JWT with these claims (the client never verifies signatures). */
export function jwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.sig`;
}

/** A token for user u1 living `ttl` seconds from the (fake) now. */
export const token = (ttl = 3600, sub: unknown = 'u1') => jwt({ sub, exp: Math.floor(Date.now() / 1000) + ttl });

/** Lets promises, relays and zero-delay timers run; advances the fake clock by ms. */
export const tick = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

export class FakeWS {
  url: string;
  protocols: string[];
  readyState = 0;
  sent: any[] = [];
  /** The close the client asked for. */
  closedWith?: number;
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  constructor(url: string, protocols: string[]) {
    this.url = url;
    this.protocols = protocols;
  }
  get query() {
    return new URL(this.url).searchParams;
  }
  send(d: string) {
    const m = JSON.parse(d);
    check('#/$defs/ClientMessage', m);
    this.sent.push(m);
  }
  close(code = 1000) {
    if (this.readyState >= 2) return;
    this.closedWith = code;
    this.readyState = 3;
    // A browser fires close later; the client must ignore a socket it dropped.
    queueMicrotask(() => this.onclose?.({ code: 1006, reason: '' }));
  }
  // --- the server's side ---
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  recv(m: unknown) {
    check('#/$defs/ServerMessage', m);
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  /** The server closes (or the handshake fails: code 1006 before open). */
  end(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** What the client sent of one type. */
  of(type: string) {
    return this.sent.filter((m) => m.type === type);
  }
}

export function fakeWS() {
  const all: FakeWS[] = [];
  class WS extends FakeWS {
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      all.push(this);
    }
  }
  return { WS: WS as unknown as typeof WebSocket, all, last: () => all[all.length - 1]! };
}

export class FakeES {
  url: string;
  readyState = 0;
  onerror: ((e: unknown) => void) | null = null;
  private ls = new Map<string, ((e: { data: string }) => void)[]>();
  constructor(url: string) {
    this.url = url;
  }
  get query() {
    return new URL(this.url).searchParams;
  }
  addEventListener(type: string, fn: (e: { data: string }) => void) {
    this.ls.set(type, [...(this.ls.get(type) ?? []), fn]);
  }
  close() {
    this.readyState = 2;
  }
  // --- the server's side ---
  emit(event: string, data: unknown) {
    check('#/$defs/SSEEvent', { event, data });
    if (this.readyState === 2) return;
    this.readyState = 1;
    for (const f of this.ls.get(event) ?? []) f({ data: JSON.stringify(data) });
  }
  connected(id = 'c0nnecti0n-id-01', epoch = 'e1') {
    this.emit('connected', { type: 'connected', connection_id: id, epoch });
  }
  fail() {
    if (this.readyState !== 2) this.onerror?.({});
  }
}

export function fakeES() {
  const all: FakeES[] = [];
  class ES extends FakeES {
    constructor(url: string) {
      super(url);
      all.push(this);
    }
  }
  return { ES: ES as unknown as typeof EventSource, all, last: () => all[all.length - 1]! };
}

/** Herald's answers for a user with nothing in the inbox. */
export function emptyInbox(path: string): { status?: number; body: unknown } {
  return { body: path === '/v1/inbox' ? { messages: [], next: null } : { unread: 0, unseen: 0 } };
}

/** A fetch that answers by route; records every call with its parsed body. */
export function fakeFetch(answer: (path: string, body: any, init: RequestInit, url: URL) => { status?: number; body: unknown } = emptyInbox) {
  const calls: { url: URL; path: string; body: any; auth: string | undefined; method: string }[] = [];
  const f = vi.fn(async (u: string, init: RequestInit = {}) => {
    const url = new URL(u);
    const body = init.body ? JSON.parse(String(init.body)) : undefined;
    const auth = (init.headers as Record<string, string> | undefined)?.Authorization;
    if (url.pathname === '/v1/ack') check('#/$defs/AckRequest', body);
    calls.push({ url, path: url.pathname, body, auth, method: init.method ?? 'GET' });
    const a = answer(url.pathname, body, init, url);
    return new Response(JSON.stringify(a.body), { status: a.status ?? 200, headers: { 'Content-Type': 'application/json' } });
  });
  return { fetch: f as unknown as typeof fetch, calls };
}

/** navigator.locks for one origin: exclusive locks, granted in request order, released when the callback's promise settles or the request is aborted while waiting. */
export class FakeLocks implements Locks {
  private held = new Set<string>();
  private waiting = new Map<string, { cb: () => Promise<void>; done: (v?: unknown) => void; fail: (e: unknown) => void; signal?: AbortSignal }[]>();
  request(name: string, opts: { signal?: AbortSignal }, cb: () => Promise<void>): Promise<unknown> {
    return new Promise((done, fail) => {
      const w = { cb, done, fail, signal: opts.signal };
      const q = this.waiting.get(name) ?? [];
      this.waiting.set(name, q);
      q.push(w);
      opts.signal?.addEventListener('abort', () => {
        const i = q.indexOf(w);
        if (i >= 0) {
          q.splice(i, 1);
          fail(new DOMException('aborted', 'AbortError'));
        }
      });
      this.pump(name);
    });
  }
  holder(name: string) {
    return this.held.has(name);
  }
  private pump(name: string) {
    if (this.held.has(name)) return;
    const w = this.waiting.get(name)?.shift();
    if (!w) return;
    this.held.add(name);
    queueMicrotask(() =>
      w
        .cb()
        .then(w.done, w.fail)
        .finally(() => {
          this.held.delete(name);
          this.pump(name);
        }),
    );
  }
}

/** BroadcastChannel for one origin: delivers to every other open channel of the same name, in order, asynchronously, as structured clones. */
export function fakeBC() {
  const open = new Set<any>();
  class BC {
    onmessage: ((e: { data: unknown }) => void) | null = null;
    closed = false;
    constructor(readonly name: string) {
      open.add(this);
    }
    postMessage(d: unknown) {
      if (this.closed) throw new DOMException('closed', 'InvalidStateError');
      for (const c of open)
        if (c !== this && c.name === this.name) {
          const copy = structuredClone(d);
          queueMicrotask(() => !c.closed && c.onmessage?.({ data: copy }));
        }
    }
    close() {
      this.closed = true;
      open.delete(this);
    }
  }
  return { BC: BC as unknown as typeof BroadcastChannel, open };
}

export class MemoryStorage implements Storage {
  m = new Map<string, string>();
  get length() {
    return this.m.size;
  }
  clear() {
    this.m.clear();
  }
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  key(i: number) {
    return [...this.m.keys()][i] ?? null;
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
  setItem(k: string, v: string) {
    this.m.set(k, String(v));
  }
}

/** A server message envelope for user u1's stream, epoch e1. */
export const msg = (offset: number, data: unknown = { n: offset }, epoch = 'e1') => ({
  type: 'message',
  id: 'm' + String(offset).padStart(4, '0'),
  offset,
  epoch,
  ts: '2026-11-25T12:00:00.123Z',
  data,
});

/**
 * A client on fakes, sharing off unless given locks/BroadcastChannel, with
 * every event logged. getToken counts its calls.
 */
export function client(opts: Partial<HeraldOptions> = {}, fetchAnswer?: Parameters<typeof fakeFetch>[0]) {
  const ws = fakeWS();
  const es = fakeES();
  const f = fakeFetch(fetchAnswer);
  const getToken = vi.fn(() => Promise.resolve(token()));
  const h = new Herald({
    url: URL_,
    getToken,
    WebSocket: ws.WS,
    EventSource: es.ES,
    fetch: f.fetch,
    storage: null,
    share: 'none',
    ...opts,
  });
  const log = {
    states: [] as any[],
    messages: [] as any[],
    counts: [] as any[],
    resets: [] as any[],
    errors: [] as Error[],
  };
  h.on('state', (s) => void log.states.push(s));
  h.on('message', (m) => void log.messages.push(m));
  h.on('counts', (c) => void log.counts.push(c));
  h.on('reset', (r) => void log.resets.push(r));
  h.on('error', (e) => void log.errors.push(e));
  return { h, ws, es, fetch: f, getToken, log, offsets: () => log.messages.map((m) => m.offset), states: () => log.states.map((s) => s.state) };
}
