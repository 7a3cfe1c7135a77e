// Server side only: mints the demo's client tokens. It stands in for your application's own
// auth: in a real app the user id comes from the session (cookie, OAuth, …) of the request,
// and the token is minted by your API server, or by your identity provider (Herald also
// checks RS256/ES256/EdDSA tokens against a JWKS). Never ship the secret to the browser.
import { createHmac } from 'node:crypto';

const b64url = (s: string): string => Buffer.from(s).toString('base64url');

/** mintToken returns an HS256 JWT for sub, valid ttl seconds: what Herald checks (docs/api.md "Client tokens"). */
export function mintToken(secret: string, sub: string, ttl: number, now = Date.now()): string {
  const iat = Math.floor(now / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, iat, exp: iat + ttl }));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** The demo's user: HERALD_DEMO_USER, else "demo" (the user `herald` in dev mode prints a token for). */
export const demoUser = (): string => process.env.HERALD_DEMO_USER || 'demo';

/**
 * demoToken mints a short-lived token for the demo user from HERALD_TOKEN_SECRET. Short, because
 * @herald/client asks for a new one before it expires: a leaked token is worth minutes.
 */
export function demoToken(ttl = 300): string {
  const secret = process.env.HERALD_TOKEN_SECRET;
  if (!secret) throw new Error('HERALD_TOKEN_SECRET is not set: export the one Herald uses (dev mode prints it)');
  return mintToken(secret, demoUser(), ttl);
}

/** Herald's base URL for the browser (inlined at build time). */
export const heraldUrl = (): string => process.env.NEXT_PUBLIC_HERALD_URL || 'http://localhost:8080';
