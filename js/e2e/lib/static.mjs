// The test pages' own web server (pages/, the built client at /client/,
// bundles at /build/NAME.js — see bundle.mjs): the "application" the browser loads,
// on its own port, so that the page is cross-origin to Herald as in a real
// deployment (Herald must allow the page's origin, answer CORS preflights
// for the inbox routes, …). It also plays the application's API server
// for tokens: GET /token?user=U&ttl=S mints a client token, as a real
// backend would, and counts the calls (token refresh is observable).

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT } from './herald.mjs';
import { bundle } from './bundle.mjs';

const PAGES = fileURLToPath(new URL('../pages/', import.meta.url));
/** The built @herald/client (npm run build -w js/client). */
export const CLIENT_DIST = join(ROOT, 'js', 'client', 'dist');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

/** Resolves p under dir, refusing to leave it. */
function under(dir, p) {
  const full = resolve(dir, '.' + sep + normalize(decodeURIComponent(p)));
  return full.startsWith(resolve(dir) + sep) ? full : null;
}

/**
 * Starts the page server on a free loopback port.
 * @param {{ mint: (user: string, ttl: number) => string }} tokens
 * @returns {Promise<{ origin: string, tokenCalls: Map<string, number>, close(): Promise<void> }>}
 */
export async function startStatic(tokens) {
  const tokenCalls = new Map();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    try {
      if (url.pathname === '/token') {
        const user = url.searchParams.get('user');
        const ttl = Number(url.searchParams.get('ttl') || 3600);
        tokenCalls.set(user, (tokenCalls.get(user) || 0) + 1);
        res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        res.end(JSON.stringify({ token: tokens.mint(user, ttl) }));
        return;
      }
      let file = null;
      const b = /^\/build\/([a-z-]+)\.js$/.exec(url.pathname);
      if (b) file = await bundle(b[1]);
      else if (url.pathname.startsWith('/client/')) file = under(CLIENT_DIST, url.pathname.slice('/client/'.length));
      else file = under(PAGES, url.pathname.slice(1) || 'tab.html');
      if (!file) {
        res.writeHead(403).end();
        return;
      }
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
      res.end(body);
    } catch (err) {
      res.writeHead(err.code === 'ENOENT' ? 404 : 500, { 'Content-Type': 'text/plain' });
      res.end(String(err.message));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    tokenCalls,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
