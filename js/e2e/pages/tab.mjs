// One "application tab": it connects to Herald as a user and keeps what it
// saw in window.tab, which the tests read (page.evaluate /
// page.waitForFunction), and renders it (title, unread badge, list) for
// screenshots.
//
// Two ways to connect, chosen by the test:
//   mode 'client' — @herald/client, the built ESM bundle served at /client/
//                   (what applications use; sharing, reconnect, resume,
//                   SSE fallback, token refresh are the client's);
//   mode 'raw'    — a plain herald.v1 WebSocket and fetch, no reconnect:
//                   the server's behaviour alone, as a baseline.
// Tokens come from the page's own server (GET /token), as in an
// application whose API server mints them.

const tab = {
  started: false,
  mode: null,
  user: null,
  label: null,
  /** Every notification in arrival order: { id, offset, epoch, data }. */
  messages: [],
  /** Latest counts (from the server's push or the inbox API). */
  counts: null,
  /** Every counts value seen, in order. */
  countsLog: [],
  /** State changes (client mode), or synthetic ones (raw mode). */
  states: [],
  resets: [],
  errors: [],
  /** Ids marked read in this tab (for rendering). */
  read: new Set(),
  tokenFetches: 0,
};
window.tab = tab;

let client = null; // Herald instance (client mode)
let ws = null; // WebSocket (raw mode)
let rawToken = null;

const $ = (id) => document.getElementById(id);

function render() {
  $('title').textContent = `${tab.user} — ${tab.label}`;
  const unread = tab.counts ? tab.counts.unread : 0;
  $('badge').textContent = String(unread);
  $('badge').dataset.unread = String(unread);
  const last = tab.states[tab.states.length - 1];
  $('state').textContent = last
    ? `${last.state}${last.transport ? ' over ' + last.transport : ''}${last.reason ? ' (' + last.reason + ')' : ''}`
    : 'idle';
  const list = $('list');
  list.replaceChildren(...tab.messages.map((m) => {
    const li = document.createElement('li');
    li.textContent = typeof m.data === 'object' ? (m.data?.text ?? JSON.stringify(m.data)) : String(m.data);
    if (tab.read.has(m.id)) li.className = 'read';
    const off = document.createElement('span');
    off.className = 'off';
    off.textContent = `#${m.offset}`;
    li.append(off);
    return li;
  }));
}

async function fetchToken(user, ttl) {
  tab.tokenFetches++;
  const r = await fetch(`/token?user=${encodeURIComponent(user)}&ttl=${ttl}`);
  if (!r.ok) throw new Error(`token: ${r.status}`);
  return (await r.json()).token;
}

function onMessage(m) {
  tab.messages.push({ id: m.id, offset: m.offset, epoch: m.epoch, data: m.data });
  render();
}

function onCounts(c) {
  // A push says which ids changed: another tab's reads show here too.
  if (c.mark === 'read' && Array.isArray(c.ids)) for (const id of c.ids) tab.read.add(id);
  tab.counts = { unread: c.unread, unseen: c.unseen };
  tab.countsLog.push(tab.counts);
  render();
}

function onState(s) {
  tab.states.push({ ...s, at: Date.now() });
  render();
}

/**
 * Starts the tab. cfg: { url, user, label, mode: 'client'|'raw', ttl,
 * options (extra HeraldOptions, client mode), clientModule }.
 */
window.startTab = async (cfg) => {
  if (tab.started) throw new Error('already started');
  tab.started = true;
  tab.mode = cfg.mode;
  tab.user = cfg.user;
  tab.label = cfg.label || 'tab';
  document.title = `${tab.user} — ${tab.label}`;
  render();
  const ttl = cfg.ttl || 3600;
  if (cfg.mode === 'client') {
    const { Herald } = await import(cfg.clientModule || '/client/index.js');
    client = new Herald({
      url: cfg.url,
      getToken: () => fetchToken(cfg.user, ttl),
      ...(cfg.options || {}),
    });
    window.heraldClient = client;
    client.on('message', onMessage);
    client.on('counts', onCounts);
    client.on('state', onState);
    client.on('reset', (r) => { tab.resets.push(r); });
    client.on('error', (e) => { tab.errors.push(String(e && e.message || e)); });
    client.connect();
    return;
  }
  if (cfg.mode !== 'raw') throw new Error(`unknown mode ${cfg.mode}`);
  rawToken = await fetchToken(cfg.user, ttl);
  const wsURL = cfg.url.replace(/^http/, 'ws') + '/ws';
  onState({ state: 'connecting', transport: 'websocket' });
  ws = new WebSocket(wsURL, ['herald.v1', `herald.token.${rawToken}`]);
  ws.onopen = async () => {
    onState({ state: 'connected', transport: 'websocket' });
    try {
      onCounts(await rawInbox('GET', '/v1/inbox/counts'));
    } catch (e) {
      tab.errors.push(String(e.message));
    }
  };
  ws.onclose = (e) => onState({ state: 'disconnected', code: e.code, reason: e.reason, transport: 'websocket' });
  ws.onerror = () => tab.errors.push('websocket error');
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    switch (m.type) {
      case 'message':
        onMessage(m);
        // A new message is unread and unseen until a counts push says otherwise.
        if (tab.counts) onCounts({ unread: tab.counts.unread + 1, unseen: tab.counts.unseen + 1 });
        ws.send(JSON.stringify({ type: 'ack', offset: m.offset }));
        break;
      case 'counts': onCounts(m); break;
      case 'ping': ws.send('{"type":"pong"}'); break;
      case 'reset': tab.resets.push(m); break;
      case 'error': tab.errors.push(`${m.code}: ${m.message}`); break;
      default: break;
    }
  };
};

/** Raw mode: an inbox call with the user's token, cross-origin. */
async function rawInbox(method, path, body) {
  const base = ws.url.replace(/^ws/, 'http').replace(/\/ws.*$/, '');
  const r = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${rawToken}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** Marks ids read (all when ids is omitted); returns the new counts. */
window.markRead = async (ids) => {
  let c;
  if (client) c = ids ? await client.inbox.markRead(ids) : await client.inbox.markAllRead();
  else c = await rawInbox('POST', '/v1/inbox/read', ids ? { ids } : { all: true });
  for (const id of ids || tab.messages.map((m) => m.id)) tab.read.add(id);
  onCounts(c);
  return { unread: c.unread, unseen: c.unseen };
};

/**
 * Emulates the Page Visibility API ('hidden' | 'visible'): headless pages
 * are always visible, so a test that hides a tab says so here, and the page
 * sees what a real background tab sees (document.visibilityState,
 * document.hidden, a visibilitychange event).
 */
window.emulateVisibility = (state) => {
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => state === 'hidden' });
  document.dispatchEvent(new Event('visibilitychange'));
};

/** Ends the connection for good. */
window.stopTab = () => {
  if (client) client.close();
  if (ws) ws.close(1000);
};
