/** Small pure helpers, kept apart so that tests can check them directly. */

/**
 * Full-jitter exponential backoff (the AWS architecture blog's "full
 * jitter"): a uniformly random delay in [0, min(cap, base·2^attempt)).
 * Spreading reconnects over the whole window is what keeps a fleet of
 * browsers from reconnecting in lockstep after a server restart.
 */
export function backoff(attempt: number, base: number, cap: number, random: () => number = Math.random): number {
  return random() * Math.min(cap, base * 2 ** attempt);
}

/**
 * The claims Herald's client needs from a JWT: `exp` (seconds) and `sub`.
 * The signature is not verified — the server does that; the client only
 * wants to know when to refresh and whose resume point to keep. A token
 * that is not a JWT gives {}.
 */
export function claims(jwt: string): { exp?: number; sub?: string } {
  try {
    const bin = atob(jwt.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'));
    const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0))));
    return {
      exp: typeof c.exp === 'number' ? c.exp : undefined,
      sub: c.sub == null ? undefined : String(c.sub),
    };
  } catch {
    return {};
  }
}

/**
 * How long to wait before refreshing a token that expires at `exp` (ms since
 * the epoch): at 80% of its remaining life or 30 s before it expires,
 * whichever comes first, but never sooner than 5 s, so that an app whose
 * getToken keeps returning a nearly expired token is not asked in a loop
 * (Herald's own leeway, 30 s by default, covers the difference).
 */
export function refreshIn(exp: number, now: number): number {
  const left = exp - now;
  return Math.max(5000, Math.min(left * 0.8, left - 30000));
}

/**
 * An endpoint under Herald's base URL: the base's path is kept (Herald
 * behind a prefix), `path` appended, empty query values left out. `ws`
 * turns http(s) into ws(s).
 */
export function endpoint(base: string, path: string, query: Record<string, string | number | undefined> = {}, ws = false): string {
  const u = new URL(base);
  u.pathname = u.pathname.replace(/\/+$/, '') + path;
  for (const k in query) if (query[k] !== undefined && query[k] !== '') u.searchParams.set(k, String(query[k]));
  if (ws) u.protocol = u.protocol.replace('http', 'ws');
  return u.href;
}
