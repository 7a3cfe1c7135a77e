import type { Inbox } from './types.js';
import { endpoint } from './util.js';

/**
 * An error from Herald: `code` is the server's stable error code
 * (docs/api.md "Errors": unauthorized, forbidden, invalid_request, …, or a
 * herald.v1 error code such as invalid_token), `status` the HTTP status (0
 * when none). The client's own codes: `network` (fetch failed), `http_<status>`
 * (an error reply without Herald's JSON body), `token` (getToken failed).
 */
export class HeraldError extends Error {
  override name = 'HeraldError';
  constructor(
    readonly code: string,
    message: string,
    readonly status = 0,
  ) {
    super(message);
  }
}

/** A token source: `fresh` asks getToken for a new one instead of the cached one. */
export type TokenSource = (fresh: boolean) => Promise<string>;

/**
 * Calls a browser route of Herald with the user's token in
 * `Authorization: Bearer`; on 401 asks for a fresh token once and retries.
 */
export async function call(url: string, token: TokenSource, f: typeof fetch | undefined, body?: unknown): Promise<any> {
  const go = f ?? fetch; // a plain call: a fetch stored on an object and called as a method throws "Illegal invocation"
  for (let again = false; ; again = true) {
    const tok = await token(again);
    let r: Response;
    try {
      r = await go(url, {
        method: body ? 'POST' : 'GET',
        headers: body ? { Authorization: 'Bearer ' + tok, 'Content-Type': 'application/json' } : { Authorization: 'Bearer ' + tok },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw new HeraldError('network', (e as Error)?.message ?? String(e));
    }
    if (r.status === 401 && !again) continue;
    const j = await r.json().catch(() => null);
    if (!r.ok) throw new HeraldError(j?.error?.code ?? 'http_' + r.status, j?.error?.message ?? r.statusText, r.status);
    return j;
  }
}

/** The inbox helpers over /v1/inbox… (docs/api.md "Inbox"). */
export function inbox<T>(url: string, token: TokenSource, f: () => typeof fetch | undefined): Inbox<T> {
  const get = (path: string, q?: Record<string, string | number | undefined>) => call(endpoint(url, path, q), token, f());
  const post = (path: string, body: unknown) => call(endpoint(url, path), token, f(), body);
  return {
    list: (q = {}) => get('/v1/inbox', { status: q.status, before: q.before, limit: q.limit }),
    counts: () => get('/v1/inbox/counts'),
    markSeen: (ids) => post('/v1/inbox/seen', { ids }),
    markAllSeen: () => post('/v1/inbox/seen', { all: true }),
    markRead: (ids) => post('/v1/inbox/read', { ids }),
    markAllRead: () => post('/v1/inbox/read', { all: true }),
    archive: (ids) => post('/v1/inbox/archive', { ids }),
  };
}
