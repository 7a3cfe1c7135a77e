'use client';
// ─────────────────────────────────────────────────────────────────────────────────────────
//  THE ORIGINAL, FOR COMPARISON. DO NOT COPY.
//  The notification component of the system Herald replaces, as it was: every fault is kept
//  on purpose so that the two can be compared side by side. See README.md for what is wrong.
//  Use app/components/Notifications.tsx (@herald/react) instead.
// ─────────────────────────────────────────────────────────────────────────────────────────
import { useEffect, useState } from 'react';

export default function EventReceiver({ url, token }: { url: string; token: string }) {
  const [event, setEvent] = useState<unknown>(null);

  useEffect(() => {
    function connect() {
      // The token in the URL: it lands in access logs, proxies and browser history.
      const ws = new WebSocket(url + '?token=' + token);
      // Only the last event is kept: each one replaces the one before.
      ws.onmessage = (e) => setEvent(JSON.parse(e.data));
      // Reconnect after 1 s, forever: no backoff, no jitter (every browser comes back in the
      // same second after a restart), no resume (what arrived meanwhile is lost), and the
      // same token, long expired.
      ws.onclose = () => setTimeout(connect, 1000);
    }
    connect();
    // No cleanup: after unmount the socket stays open, and when it closes it reconnects —
    // forever. Under StrictMode (dev) the effect runs twice: two sockets from the start.
  }, []);

  return <pre>{event === null ? 'No events yet' : JSON.stringify(event, null, 2)}</pre>;
}
