// A React application page for the StrictMode scenario: <HeraldProvider>
// inside <React.StrictMode>, mounted and unmounted on the test's command.
// Bundled by lib/bundle.mjs with esbuild (React ships no browser ESM) into
// /build/react-app.js. Counts every WebSocket the page opens and closes.

import { StrictMode, createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import { HeraldProvider, useConnectionState, useNotifications } from '@herald/react';

const stats = { opened: 0, closed: 0, open: 0, state: null, messages: [] };
window.reactApp = stats;

// Count sockets at the source: every WebSocket the page creates.
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    stats.opened++;
    stats.open++;
    this.addEventListener('close', () => { stats.closed++; stats.open--; });
  }
};

function Status() {
  const s = useConnectionState();
  const { messages } = useNotifications();
  stats.state = s.state;
  stats.messages = messages.map((m) => m.data);
  return h('div', null,
    h('p', { id: 'state' }, `${s.state}${s.transport ? ' over ' + s.transport : ''}`),
    h('ol', null, messages.map((m) => h('li', { key: m.id }, JSON.stringify(m.data)))));
}

let root = null;
window.mountApp = ({ url, user }) => {
  if (root) throw new Error('already mounted');
  const getToken = () => fetch(`/token?user=${encodeURIComponent(user)}`).then((r) => r.json()).then((j) => j.token);
  root = createRoot(document.getElementById('root'));
  root.render(h(StrictMode, null, h(HeraldProvider, { url, getToken }, h(Status))));
};
window.unmountApp = () => {
  root.unmount();
  root = null;
  stats.state = 'unmounted';
};
