import { demoToken, heraldUrl } from '@/lib/token';
import EventReceiver from './EventReceiver';

// A token is minted per request (the original received it from the page).
export const dynamic = 'force-dynamic';

export default function OriginalPage() {
  let token: string;
  try {
    token = demoToken(24 * 3600); // the original used long-lived tokens: it never refreshed them
  } catch (err) {
    return <p className="warning">{(err as Error).message}</p>;
  }
  const ws = heraldUrl().replace(/^http/, 'ws').replace(/\/+$/, '') + '/ws';
  return (
    <>
      <p className="warning">
        <strong>The original component, for comparison — do not copy.</strong> Open the network panel, then navigate to
        the rewrite: this page&apos;s socket stays open, and reconnects every second after Herald restarts, even though
        the component is gone. See README.md.
      </p>
      <h1>Last event</h1>
      <EventReceiver url={ws} token={token} />
    </>
  );
}
