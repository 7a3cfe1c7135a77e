'use client';
// The rewrite of app/original/EventReceiver.tsx with @herald/react: the connection belongs to
// the provider in app/(rewrite)/layout.tsx; these components only read from it.
import { useConnectionState, useInbox, useNotifications, useUnreadCount, type HeraldMessage } from '@herald/react';

/** What to show of a message: the original API sent {"message": "…"}; anything else as JSON. */
function text(data: unknown): string {
  if (data && typeof data === 'object' && 'message' in data) return String((data as { message: unknown }).message);
  return typeof data === 'string' ? data : JSON.stringify(data);
}

/** The bell: the unread count, kept in sync across tabs by the server's counts pushes. */
export function Bell() {
  const unread = useUnreadCount();
  return (
    <span className="bell" role="img" aria-label={`${unread} unread notifications`}>
      <svg width="26" height="26" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" aria-hidden="true">
        <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0" />
      </svg>
      {unread > 0 && <span className="badge">{unread > 99 ? '99+' : unread}</span>}
    </span>
  );
}

/** The connection: state, transport, and why and when when it is down. */
export function ConnectionState() {
  const { state, transport, reason, retryIn } = useConnectionState();
  let label: string = state;
  if (state === 'connected' && transport) label += ` (${transport === 'sse' ? 'Server-Sent Events' : 'WebSocket'})`;
  if (state === 'disconnected' && retryIn != null) label += ` — retrying in ${Math.ceil(retryIn / 1000)} s`;
  return (
    <span className="state" data-state={state} title={reason}>
      {label}
    </span>
  );
}

/** Every message received since the page opened (replayed after a reconnect, never twice), newest first. */
export function LiveList() {
  const { messages, clear } = useNotifications({ limit: 20 });
  if (messages.length === 0) return <p><small>Nothing yet. Send one with curl (see README.md).</small></p>;
  return (
    <>
      <ul>
        {messages.map((m: HeraldMessage) => (
          <li key={m.id}>
            {text(m.data)} <small>#{m.offset ?? 'broadcast'} · {new Date(m.ts).toLocaleTimeString()}</small>
          </li>
        ))}
      </ul>
      <button onClick={clear}>Clear</button>
    </>
  );
}

/** The stored inbox: what arrived while the page was closed too; reading here clears the bell everywhere. */
export function Inbox() {
  const { items, loading, error, hasMore, markRead, markAllRead, archive, loadMore } = useInbox({ limit: 10 });
  return (
    <>
      {error && <p className="warning">{error.message}</p>}
      {loading && items.length === 0 ? (
        <p><small>Loading…</small></p>
      ) : (
        <ul>
          {items.map((it) => (
            <li key={it.id} data-read={it.read}>
              {text(it.data)} <small>{new Date(it.ts).toLocaleString()}</small>{' '}
              {!it.read && <button onClick={() => markRead([it.id])}>Mark read</button>}{' '}
              <button onClick={() => archive([it.id])}>Archive</button>
            </li>
          ))}
        </ul>
      )}
      <button onClick={markAllRead}>Mark all read</button> {hasMore && <button onClick={loadMore}>Older</button>}
    </>
  );
}

export default function Notifications() {
  return (
    <>
      <header>
        <h1>Notifications</h1>
        <ConnectionState />
        <Bell />
      </header>
      <h2>Live</h2>
      <LiveList />
      <h2>Inbox</h2>
      <Inbox />
    </>
  );
}
