// GET /api/token: a client token for the signed-in user. Here a demo user; in your app, check
// the session first and answer 401 without one. A route of the app's own origin, so the
// browser sends its cookies and nothing cross-origin is needed.
import { demoToken } from '@/lib/token';

export const dynamic = 'force-dynamic';

export function GET(): Response {
  try {
    return new Response(demoToken(), { headers: { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' } });
  } catch (err) {
    return Response.json({ error: { code: 'internal', message: (err as Error).message } }, { status: 500 });
  }
}
