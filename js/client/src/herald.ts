import { call, HeraldError, inbox } from './inbox.js';
import type { ClientMessage, HeraldMessage, ServerMessage, SSEData } from './protocol.js';
import { join, type Relay, type Shared } from './share.js';
import type {
  CountsEvent,
  HeraldEvents,
  HeraldOptions,
  Inbox,
  ResetEvent,
  State,
  StateChange,
  Transport,
} from './types.js';
import { backoff, claims, endpoint, refreshIn } from './util.js';

/** Herald's HERALD_PING_INTERVAL default; the watchdog allows 2.5 of them. */
const PING = 25000;
/** Failed connects in a row (never opened) before trying the next transport. */
const SWITCH_AFTER = 3;
/** While on SSE, how often to try WebSocket again after the first probe. */
const PROBE_EVERY = 300000;
/** Acks wait this long so that a burst (a replay) is acknowledged once. */
const ACK_DELAY = 50;
/** A server restart (1012, `reconnect`): reconnect within this, spread out. */
const RESTART_JITTER = 1000;
const SSE_EVENTS = ['message', 'connected', 'reset', 'counts', 'reconnect', 'close'];

/** One connection to Herald, over either transport. */
interface Link {
  tr: Transport;
  /** The token it lives on (a refresh replaces it). */
  tok: string;
  /** Reached `open` (WebSocket) or `connected` (SSE). */
  open: boolean;
  /** The highest offset this connection was sent: acks beyond it are refused (bad_ack). */
  max: number;
  acked: number;
  /** SSE: the connection id for POST /v1/ack. */
  id?: string;
  /** A WebSocket tried while on SSE. */
  probe?: boolean;
  send(m: ClientMessage): void;
  close(): void;
}

type Timer = 'retry' | 'watch' | 'stable' | 'refresh' | 'probe' | 'ack';
type Handler = (v: any) => unknown;

/**
 * A connection to Herald that stays up: see README.md. Constructing one
 * touches nothing global (safe under SSR); connect() starts it, close()
 * ends it for good.
 */
export class Herald<T = unknown> {
  /** Inbox helpers over /v1/inbox…, authenticated with the client token. */
  readonly inbox: Inbox<T>;
  private o: HeraldOptions;
  private st: State = 'disconnected';
  private last: StateChange = { state: 'disconnected' };
  private ls: { [K in keyof HeraldEvents]?: Set<Handler> } = {};
  /** The connection in use. */
  private link?: Link;
  /** A connection that replaces `link` once open: a WebSocket probe while on SSE, or an SSE stream with a refreshed token. */
  private cand?: Link;
  /** The resume point: offset and epoch of the last message seen (undefined until one was). */
  private off?: number;
  private ep = '';
  private attempt = 0;
  private fails = 0;
  private tr: Transport;
  private tok = '';
  private exp = 0;
  /** When the cached token was fetched: its lifetime sets how long it stays fresh. */
  private got = 0;
  private sub = '';
  /** The token fetched to join the tabs is used for the first connect. */
  private reuse = false;
  private tm: { [K in Timer]?: ReturnType<typeof setTimeout> } = {};
  /** Bumped whenever a connection is dropped, so that awaits started for it stop. */
  private gen = 0;
  private done = false;
  private started = false;
  /** This tab connects (always, without sharing). */
  private leader = true;
  private sh?: Shared;
  private offs: (() => void)[] = [];
  /** Delivered offsets whose handlers may still run, in order; `proc` is the last offset all handlers up to which are done. */
  private q: { o: number; d: boolean }[] = [];
  private proc = 0;
  private counts?: CountsEvent;

  constructor(opts: HeraldOptions) {
    this.o = opts;
    this.tr = this.ts()[0]!;
    this.inbox = inbox<T>(opts.url, (fresh) => this.token(fresh), () => opts.fetch);
  }

  get state(): State {
    return this.st;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof HeraldEvents<T>>(event: K, fn: (v: HeraldEvents<T>[K]) => void | Promise<void>): () => void {
    const s = (this.ls[event] ??= new Set());
    s.add(fn);
    return () => void s.delete(fn);
  }

  /** Starts connecting (or, with sharing, joins the other tabs). Idempotent; no-op after close(). */
  connect(): void {
    if (this.done || this.started) return;
    this.started = true;
    this.listen();
    const g = globalThis as any;
    const locks = this.o.locks !== undefined ? this.o.locks : g.navigator?.locks;
    const BC = this.o.BroadcastChannel !== undefined ? this.o.BroadcastChannel : g.BroadcastChannel;
    if (this.o.share === 'none' || !locks || !BC) return void this.start();
    this.leader = false;
    this.set({ state: 'connecting' });
    // The user (the token's sub) is part of the name: two users signed in on
    // one origin must not share a connection.
    const go = () =>
      this.token(true).then(
        () => {
          if (this.done) return;
          this.reuse = true;
          this.load();
          this.sh = join(
            'herald:' + this.o.url + '#' + this.sub,
            locks,
            BC,
            () => {
              this.leader = true;
              this.start();
            },
            (r) => this.relay(r),
          );
        },
        (e) => {
          if (this.done) return;
          this.error(e);
          this.later('retry', this.delay(), go);
        },
      );
    go();
  }

  /** Ends everything for good: the connection, every timer, the lock and the channel. No reconnect follows. */
  close(): void {
    if (this.tm.ack) this.ack();
    this.fin({ state: 'closed', reason: 'closed by the client' }, false);
  }

  // ---- connecting ----

  private ts(): Transport[] {
    return this.o.transports?.length ? this.o.transports : ['websocket', 'sse'];
  }

  private cfg() {
    const b = this.o.backoff ?? {};
    return { base: b.base ?? 500, cap: b.cap ?? 30000, stable: b.stableAfter ?? 60000 };
  }

  private delay(floor = 0): number {
    const c = this.cfg();
    return floor + backoff(this.attempt++, c.base, c.cap);
  }

  private async token(fresh: boolean): Promise<string> {
    // Fresh while more than 30 s are left, or half the token's lifetime
    // when that is shorter: a 20 s token is reused for 10 s, not fetched
    // again for every call.
    if (!fresh && this.tok && (!this.exp || this.exp - Date.now() > Math.min(30000, (this.exp - this.got) / 2))) return this.tok;
    let t: string;
    try {
      t = await this.o.getToken();
    } catch (e) {
      throw new HeraldError('token', 'getToken failed: ' + ((e as Error)?.message ?? e));
    }
    const c = claims(t);
    this.tok = t;
    this.exp = c.exp ? c.exp * 1000 : 0;
    this.got = Date.now();
    this.sub = c.sub ?? '';
    return t;
  }

  private async start() {
    if (this.done || !this.leader) return;
    this.clear('retry');
    const g = ++this.gen;
    if ((globalThis as any).navigator?.onLine === false) return this.wait(this.cfg().cap, undefined, 'offline');
    this.set({ state: 'connecting', transport: this.tr, attempt: this.attempt });
    try {
      const t = await this.token(!this.reuse);
      this.reuse = false;
      if (g !== this.gen) return;
      this.load();
      if (this.off === undefined) await this.base();
      if (g !== this.gen) return;
      this.link = this.open(this.tr, t);
      this.watch();
    } catch (e) {
      if (g !== this.gen) return;
      this.error(e);
      this.wait(this.delay(), undefined, (e as Error).message);
    }
  }

  /**
   * With no resume point (a new tab's first connect), find one: the newest
   * retained message, archived or not, is the stream's position now. A
   * connection without ?since= starts at the stream's end, which herald.v1
   * never tells, so if it dropped before its first message the reconnect
   * would silently skip what was sent in between. Every message at or below
   * this offset was stored before the fetch, so none is dropped as a
   * duplicate; an empty stream gives 0. If the fetch fails, connect without.
   */
  private async base() {
    try {
      const pages = await Promise.all((['all', 'archived'] as const).map((status) => this.inbox.list({ status, limit: 1 })));
      const m = pages.flatMap((p) => p.messages).sort((a, b) => b.offset - a.offset)[0];
      this.off = m?.offset ?? 0;
      this.ep = m?.epoch ?? '';
    } catch {}
  }

  private open(tr: Transport, tok: string): Link {
    const o = this.o;
    const q: Record<string, string | number | undefined> = this.off === undefined ? {} : { since: this.off, epoch: this.ep };
    const l: Link = { tr, tok, open: false, max: 0, acked: 0, send() {}, close() {} };
    const msg = (e: MessageEvent) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      this.recv(l, m);
    };
    if (tr === 'sse') {
      // EventSource can set neither headers nor subprotocols: the token
      // goes in the query. Its own reconnect is not used (it would keep the
      // old token and ignore close codes): any error ends the stream here.
      q.token = tok;
      const es = new (o.EventSource ?? globalThis.EventSource)(endpoint(o.url, '/sse', q));
      for (const t of SSE_EVENTS) es.addEventListener(t, msg);
      es.onerror = () => this.ended(l, undefined, 'stream failed');
      l.close = () => es.close();
    } else {
      const protos = ['herald.v1'];
      if (o.tokenIn === 'query') q.token = tok;
      else protos.push('herald.token.' + tok);
      const ws = new (o.WebSocket ?? globalThis.WebSocket)(endpoint(o.url, '/ws', q, true), protos);
      ws.onopen = () => this.opened(l);
      ws.onmessage = msg;
      ws.onclose = (e) => this.ended(l, e.code, e.reason);
      l.send = (m) => ws.readyState === 1 && ws.send(JSON.stringify(m));
      l.close = () => {
        try {
          ws.close(1000);
        } catch {}
      };
    }
    return l;
  }

  /** A connection reached open (WebSocket) or connected (SSE). */
  private opened(l: Link) {
    if (l === this.cand) {
      this.link?.close();
      this.link = l;
      this.cand = undefined;
    } else if (l !== this.link) return;
    const swap = this.st === 'connected';
    l.open = true;
    this.fails = 0;
    this.tr = l.tr;
    const stable = this.cfg().stable;
    this.later('stable', stable, () => (this.attempt = 0));
    this.watch();
    this.refresh(l);
    this.clear('probe');
    if (l.tr === 'sse' && this.ts()[0] === 'websocket') this.later('probe', stable, () => this.probe());
    if (!swap || this.last.transport !== l.tr) this.set({ state: 'connected', transport: l.tr });
    if (!swap) this.fetchCounts();
  }

  /** A connection ended (close code, SSE close event or error, watchdog). */
  private ended(l: Link, code?: number, reason = '') {
    if (l === this.cand) {
      this.cand = undefined;
      l.close();
      if (l.probe) this.later('probe', PROBE_EVERY, () => this.probe());
      else if (this.link) this.refresh(this.link); // the stream with the new token failed: try again later
      return;
    }
    if (l !== this.link) return;
    this.drop();
    // 4003: DELETE …/connections — the server wants this user off; docs/api.md: do not reconnect.
    if (code === 4003) return this.fin({ state: 'closed', code, reason: reason || 'disconnected by the server' }, true);
    if (!l.open && ++this.fails >= SWITCH_AFTER) {
      const ts = this.ts();
      this.tr = ts[(ts.indexOf(this.tr) + 1) % ts.length]!;
      this.fails = 0;
    }
    this.wait(
      code === 4001
        ? 0 // token expired: a fresh token, at once
        : code === 1012
          ? Math.random() * RESTART_JITTER // the node drains: others are up
          : this.delay(code === 4029 ? 5000 : code === 4030 ? this.cfg().cap : 0),
      code,
      reason,
    );
  }

  private wait(retryIn: number, code: number | undefined, reason: string) {
    this.set({ state: 'disconnected', code, reason, transport: this.tr, attempt: this.attempt, retryIn });
    this.later('retry', retryIn, () => this.start());
  }

  /** Forgets the connection (and any candidate) and every timer that belongs to it. */
  private drop() {
    this.gen++;
    for (const k of ['watch', 'stable', 'refresh', 'probe', 'ack'] as const) this.clear(k);
    this.link?.close();
    this.cand?.close();
    this.link = this.cand = undefined;
  }

  /** The watchdog: a WebSocket that brought nothing (not even Herald's 25 s ping) for heartbeatTimeout is dead; so is any connection that never opened in that time. */
  private watch() {
    const l = this.link;
    if (l && (l.tr === 'websocket' || !l.open))
      this.later('watch', this.o.heartbeatTimeout ?? 2.5 * PING, () => this.ended(l, undefined, 'heartbeat timeout'));
    else this.clear('watch'); // an open SSE stream: Herald's `: ping` comments never reach JavaScript
  }

  /** Before the connection's token expires, get a new one: herald.v1 sends `refresh`; SSE opens a new stream with it, which takes over once connected. */
  private refresh(l: Link) {
    const exp = claims(l.tok).exp;
    if (exp)
      this.later('refresh', refreshIn(exp * 1000, Date.now()), async () => {
        const g = this.gen;
        const t = await this.token(true).catch((e) => (this.error(e), l.tok));
        if (g !== this.gen) return;
        if (t !== l.tok && l.tr === 'sse') {
          this.cand?.close();
          this.cand = this.open('sse', t);
          return;
        }
        if (t !== l.tok) l.send({ type: 'refresh', token: (l.tok = t) });
        this.refresh(l);
      });
  }

  /** While on SSE: try a WebSocket; it takes over if it opens. */
  private async probe() {
    const g = this.gen;
    const t = await this.token(true).catch(() => '');
    if (!t || g !== this.gen || this.link?.tr !== 'sse') return;
    this.cand?.close();
    this.cand = this.open('websocket', t);
    this.cand.probe = true;
    this.later('probe', PROBE_EVERY, () => this.probe());
  }

  // ---- receiving ----

  private recv(l: Link, m: ServerMessage | SSEData) {
    if (m.type === 'connected') l.id = m.connection_id;
    if (l === this.cand && m.type !== 'connected' && m.type !== 'close') return;
    if (l === this.link) this.watch();
    switch (m.type) {
      case 'connected':
        return this.opened(l);
      case 'close':
        return this.ended(l, m.code, m.reason);
    }
    if (l !== this.link) return;
    switch (m.type) {
      case 'message':
        if ((m.offset ?? 0) > l.max) l.max = m.offset!;
        return this.deliver(m as HeraldMessage<T>, l);
      case 'ping':
        return l.send({ type: 'pong' });
      case 'reset':
        return this.reset({ reason: 'the resume point could not be honoured', epoch: m.epoch, offset: m.offset }, true);
      case 'counts':
        return this.emitCounts(m, true);
      case 'reconnect':
        return this.ended(l, 1012, 'server restarting');
      case 'error':
        return this.error(new HeraldError(m.code, m.message));
    }
  }

  /** A message, from this tab's connection (`l`) or relayed by the leading tab. Drops what was seen (offset ≤ the last one, same epoch). */
  private deliver(m: HeraldMessage<T>, l?: Link) {
    const o = m.offset;
    if (o != null) {
      if (this.off !== undefined && m.epoch === this.ep && o <= this.off) return;
      this.off = o;
      this.ep = m.epoch!;
      this.save();
    }
    if (l) this.post({ k: 'm', m });
    const it = l && o ? { o, d: false } : undefined;
    if (it) this.q.push(it);
    const rs = this.emit('message', m);
    // docs/api.md: a new message is not followed by a counts push; a client counts it itself.
    if (it && this.counts) this.emitCounts({ unread: this.counts.unread + 1, unseen: this.counts.unseen + 1 }, true);
    if (!it) return;
    if (this.o.ackAfterHandler === false) return this.processed(it);
    Promise.allSettled(rs).then((x) => {
      for (const r of x) if (r.status === 'rejected') this.error(r.reason);
      this.processed(it);
    });
  }

  private processed(it: { o: number; d: boolean }) {
    it.d = true;
    while (this.q[0]?.d) this.proc = this.q.shift()!.o;
    if (!this.tm.ack) this.later('ack', ACK_DELAY, () => this.ack());
  }

  /** Acks are cumulative and per connection: the last processed offset, but never beyond what this connection was sent. */
  private ack() {
    this.clear('ack');
    const l = this.link;
    const n = Math.min(this.proc, l?.max ?? 0);
    if (!l?.open || n <= l.acked) return;
    l.acked = n;
    if (l.tr === 'websocket') l.send({ type: 'ack', offset: n });
    else
      call(endpoint(this.o.url, '/v1/ack'), (f) => this.token(f), this.o.fetch, { connection_id: l.id, offset: n }).catch((e) =>
        this.error(e),
      );
  }

  private reset(r: ResetEvent, own: boolean) {
    this.off = r.offset;
    this.ep = r.epoch;
    this.save();
    this.q = [];
    this.proc = 0;
    if (own) {
      this.post({ k: 'r', r });
      this.fetchCounts();
    }
    this.emit('reset', r);
  }

  private fetchCounts() {
    this.inbox.counts().then(
      (c) => this.done || this.emitCounts(c, true),
      (e) => this.error(e),
    );
  }

  private emitCounts(c: CountsEvent, own: boolean) {
    this.counts = c;
    if (own) this.post({ k: 'c', c });
    this.emit('counts', c);
  }

  // ---- tabs ----

  private relay(r: Relay) {
    switch (r.k) {
      case 'm':
        return this.deliver(r.m as HeraldMessage<T>);
      case 'c':
        return this.emitCounts(r.c, false);
      case 'r':
        return this.reset(r.r, false);
      case 's':
        if (!this.leader) r.s.state === 'closed' ? this.fin(r.s, false) : this.set(r.s);
        return;
      case 'h':
        if (this.leader) {
          this.post({ k: 's', s: this.last });
          if (this.counts) this.post({ k: 'c', c: this.counts });
        }
        return;
      case 'w':
        if (this.leader) this.wake();
    }
  }

  private post(r: Relay) {
    this.sh?.post(r);
  }

  // ---- the page ----

  private listen() {
    const w = typeof window === 'undefined' ? undefined : window;
    if (!w?.addEventListener) return;
    const on = (t: EventTarget, n: string, f: (e: any) => unknown) => {
      t.addEventListener(n, f);
      this.offs.push(() => t.removeEventListener(n, f));
    };
    on(w, 'online', () => this.wake());
    on(w, 'pageshow', (e: PageTransitionEvent) => e.persisted && this.wake());
    on(w, 'pagehide', (e: PageTransitionEvent) => e.persisted && this.freeze());
    const d = w.document;
    if (d) on(d, 'visibilitychange', () => d.visibilityState === 'visible' && this.wake());
  }

  /** Came online, visible or out of the back-forward cache: if waiting to reconnect, reconnect now. */
  private wake() {
    if (this.done || !this.started) return;
    if (!this.leader) return this.post({ k: 'w' });
    if (!this.link && this.st !== 'connecting') this.start();
  }

  /** Into the back-forward cache: close the connection, without giving up. */
  private freeze() {
    if (this.done || !this.leader || !this.started) return;
    this.drop();
    this.clear('retry');
    this.set({ state: 'disconnected', reason: 'page hidden' });
  }

  // ---- plumbing ----

  private set(s: StateChange) {
    this.st = s.state;
    this.last = s;
    if (this.leader) this.post({ k: 's', s });
    this.emit('state', s);
  }

  /** Closed for good. `tell`: the other tabs close too (the server disconnected the user). */
  private fin(s: StateChange, tell: boolean) {
    if (this.done) return;
    this.done = true;
    this.drop();
    for (const k in this.tm) this.clear(k as Timer);
    for (const f of this.offs) f();
    this.offs = [];
    if (this.leader) this.post({ k: 's', s: tell ? s : { state: 'connecting', reason: 'the leading tab left' } });
    this.sh?.leave();
    this.st = 'closed';
    this.last = s;
    this.emit('state', s);
  }

  private emit<K extends keyof HeraldEvents>(event: K, v: HeraldEvents<T>[K]): unknown[] {
    const rs: unknown[] = [];
    for (const f of [...(this.ls[event] ?? [])])
      try {
        rs.push(f(v));
      } catch (e) {
        if (event !== 'error') this.error(e);
      }
    return rs;
  }

  private error(e: unknown) {
    if (!this.done) this.emit('error', e instanceof Error ? e : new Error(String(e)));
  }

  private later(k: Timer, ms: number, fn: () => unknown) {
    this.clear(k);
    this.tm[k] = setTimeout(() => {
      delete this.tm[k];
      fn();
    }, ms);
  }

  private clear(k: Timer) {
    clearTimeout(this.tm[k]);
    delete this.tm[k];
  }

  private key() {
    return 'herald:' + this.o.url + '#' + this.sub;
  }

  private store(): Storage | null {
    if (this.o.storage !== undefined) return this.o.storage;
    try {
      return (globalThis as any).sessionStorage ?? null;
    } catch {
      return null; // sandboxed frames throw on access
    }
  }

  private load() {
    if (this.off !== undefined) return;
    try {
      const v = JSON.parse(this.store()?.getItem(this.key()) ?? 'null');
      if (typeof v?.offset === 'number' && typeof v.epoch === 'string') {
        this.off = v.offset;
        this.ep = v.epoch;
      }
    } catch {}
  }

  private save() {
    try {
      this.store()?.setItem(this.key(), JSON.stringify({ offset: this.off, epoch: this.ep }));
    } catch {}
  }
}
