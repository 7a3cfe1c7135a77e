// A reverse proxy that does not pass WebSockets, like some corporate
// proxies and old load balancers: an Upgrade: websocket request gets 403,
// everything else (plain HTTP, CORS preflights, streaming SSE) is forwarded
// unbuffered to Herald. The client must then fall back to SSE.

import { createServer, request } from 'node:http';

/**
 * Starts the proxy on a free loopback port in front of target().
 * @param {() => string} target Herald's base URL (read per request: Herald may restart)
 */
export async function startNoWebSocketProxy(target) {
  const stats = { upgradesRefused: 0, requests: 0, sse: 0 };
  const sockets = new Set();
  const server = createServer((req, res) => {
    if (/websocket/i.test(req.headers.upgrade || '')) {
      // A plain HTTP server never sees upgrades here (they go to 'upgrade'),
      // but be explicit in case a client sends one without Connection: upgrade.
      stats.upgradesRefused++;
      res.writeHead(403, { 'Content-Type': 'text/plain', Connection: 'close' }).end('websocket not allowed here');
      return;
    }
    stats.requests++;
    if (req.url.startsWith('/sse')) stats.sse++;
    const t = new URL(target());
    const up = request({
      host: t.hostname, port: t.port, method: req.method, path: req.url,
      headers: { ...req.headers, host: t.host },
    }, (ur) => {
      res.writeHead(ur.statusCode, ur.statusMessage, ur.rawHeaders);
      res.flushHeaders();
      ur.pipe(res);
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' }).end('herald unreachable');
      else res.destroy();
    });
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (req, socket) => {
    stats.upgradesRefused++;
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 26\r\nConnection: close\r\n\r\nwebsocket not allowed here');
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stats,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
