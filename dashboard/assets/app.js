// Herald's dashboard: a page that uses @herald/client like any app would.
// herald-client.js is the client's built bundle, committed beside this file
// so that the binary serves the page without an npm step.
import { Herald } from './herald-client.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const config = await (await fetch('config.json')).json();

let client = null;
let user = '';
let items = []; // inbox, newest first, as the page shows it

// getToken is called on every (re)connect and before the token expires.
// In dev mode the server mints one for the chosen user; otherwise the
// token the page was opened with (#token=…) is all there is.
function tokenSource(fixed) {
  if (fixed) return async () => fixed;
  return async () => {
    const r = await fetch('dev/token', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: user }),
    });
    if (!r.ok) throw new Error(`token: ${r.status}`);
    return (await r.json()).token;
  };
}

function subjectOf(token) {
  try { return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub + ''; } catch { return ''; }
}

function start(u, token) {
  user = u || subjectOf(token);
  $('signin').hidden = true;
  $('inbox').hidden = false;
  $('who').textContent = `— ${user}`;
  $('dev-user').value = user; // the test form sends to yourself by default
  client = new Herald({ url: location.origin, getToken: tokenSource(token) });
  client.on('state', (s) => {
    $('state').dataset.state = s.state;
    $('state').textContent = s.transport && s.state === 'connected' ? `connected (${s.transport})` : s.state;
    $('state').title = s.reason || '';
  });
  client.on('counts', showCounts);
  client.on('message', (m) => {
    if (items.some((i) => i.id === m.id)) return;
    if ($('filter').value !== 'archived') items.unshift({ ...m, seen: false, read: false, archived: false });
    render();
  });
  client.on('reset', () => refresh());
  client.connect();
  refresh();
}

function showCounts(c) {
  $('badge').hidden = !c.unread;
  $('badge').textContent = c.unread > 99 ? '99+' : String(c.unread);
  $('bell').setAttribute('aria-label', `${c.unread} unread notifications`);
  if (c.ids && c.mark) { // another tab (or the API) marked these
    for (const i of items) {
      if (c.ids.includes(i.id)) {
        if (c.mark === 'read') i.read = i.seen = true;
        if (c.mark === 'seen') i.seen = true;
        if (c.mark === 'archived') i.archived = true;
      }
    }
    if (c.mark === 'archived' && $('filter').value !== 'archived') items = items.filter((i) => !i.archived);
    render();
  }
}

async function refresh() {
  const page = await client.inbox.list({ status: $('filter').value, limit: 50 });
  items = page.messages;
  render();
  showCounts(await client.inbox.counts());
}

function render() {
  const ul = $('items');
  ul.replaceChildren(...items.map((i) => {
    const li = document.createElement('li');
    li.className = i.read ? 'read' : 'unread';
    li.dataset.id = i.id;
    const body = document.createElement('div');
    body.className = 'body';
    const pre = document.createElement('pre');
    pre.textContent = typeof i.data === 'string' ? i.data : JSON.stringify(i.data, null, 1);
    const time = document.createElement('time');
    time.textContent = `#${i.offset} · ${new Date(i.ts).toLocaleString()}`;
    body.append(pre, time);
    li.append(body);
    if (!i.read) li.append(button('Mark read', () => client.inbox.markRead([i.id]).then(showCounts).then(() => { i.read = i.seen = true; render(); })));
    if (!i.archived) li.append(button('Archive', () => client.inbox.archive([i.id]).then(showCounts).then(() => { items = items.filter((x) => x !== i); render(); })));
    return li;
  }));
  $('empty').hidden = items.length > 0;
}

function button(label, onclick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.onclick = onclick;
  return b;
}

$('mark-all').onclick = async () => {
  showCounts(await client.inbox.markAllRead());
  for (const i of items) i.read = i.seen = true;
  render();
};
$('filter').onchange = refresh;

$('signin-form').onsubmit = (e) => {
  e.preventDefault();
  const token = $('signin-token').value.trim();
  start($('signin-user').value.trim(), token || undefined);
};

if (config.dev) {
  $('dev').hidden = false;
  $('signin-token-row').hidden = true;
  $('signin-hint').textContent = 'Dev mode: the server mints a token for the user you name.';
  $('dev-form').onsubmit = async (e) => {
    e.preventDefault();
    let data;
    try { data = JSON.parse($('dev-data').value); } catch { $('dev-result').textContent = 'not JSON'; return; }
    const r = await fetch('dev/notify', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: $('dev-user').value.trim(), data }),
    });
    const body = await r.json();
    $('dev-result').textContent = r.ok ? `sent: offset ${body.offset}, ${body.connections} connection(s)` : body.error.message;
  };
} else {
  $('signin-user').closest('label').hidden = true;
  $('signin-hint').textContent = 'Open this page as /dashboard/#token=<a client token>, or paste one.';
}

if (params.get('token')) start('', params.get('token'));
else if (config.dev && params.get('user')) start(params.get('user'));
else $('signin').hidden = false;
