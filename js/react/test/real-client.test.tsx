// The provider with the real @herald/client (no createClient): sockets are counted through a
// fake WebSocket constructor, so "one socket under StrictMode" is checked on what the
// browser would actually open, and messages travel the real herald.v1 parsing path.
import { act, render, waitFor } from '@testing-library/react';
import { StrictMode } from 'react';
import { hydrateRoot } from 'react-dom/client';
import { renderToString } from 'react-dom/server';
import { describe, expect, it, vi } from 'vitest';
import { HeraldProvider, useConnectionState, useNotifications, useUnreadCount } from '../src/index.js';

const T = { timeout: 2000 };

/** A token the client can read exp and sub from (Herald would check the signature). */
function token(sub = 'u1'): string {
  const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}.sig`;
}

class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  sent: string[] = [];
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    FakeSocket.all.push(this);
  }
  send(s: string) {
    this.sent.push(s);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  recv(m: object) {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  static live() {
    return FakeSocket.all.filter((s) => s.readyState < 2);
  }
}

function View() {
  const c = useConnectionState();
  const unread = useUnreadCount();
  const { messages } = useNotifications();
  return (
    <p>
      {c.state}:{unread}:{messages.map((m) => String(m.offset)).join(',')}
    </p>
  );
}

function app(fetch: typeof globalThis.fetch) {
  return (
    <HeraldProvider
      url="http://herald.test"
      getToken={() => token()}
      options={{ WebSocket: FakeSocket as unknown as typeof WebSocket, share: 'none', storage: null, fetch }}
    >
      <View />
    </HeraldProvider>
  );
}

/** A fake Herald HTTP API: the inbox is empty, the counts are `unread`. */
const countsReply = (unread: number) =>
  vi.fn(async (input: RequestInfo | URL) => {
    const path = new URL(String(input)).pathname;
    const body = path === '/v1/inbox/counts' ? { unread, unseen: unread } : path === '/v1/inbox' ? { messages: [], next: null } : null;
    return new Response(JSON.stringify(body ?? { error: { code: 'not_found', message: path } }), {
      status: body ? 200 : 404,
      headers: { 'Content-Type': 'application/json' },
    });
  });

describe('with the real client', () => {
  it('StrictMode opens exactly one WebSocket (token in the subprotocol) and unmount closes it', async () => {
    FakeSocket.all = [];
    const fetch = countsReply(2);
    const { container, unmount } = render(<StrictMode>{app(fetch)}</StrictMode>);
    await waitFor(() => expect(FakeSocket.all).toHaveLength(1), T);
    const ws = FakeSocket.all[0]!;
    const u = new URL(ws.url);
    expect(u.origin + u.pathname).toBe('ws://herald.test/ws');
    expect(u.searchParams.has('token')).toBe(false);
    expect(ws.protocols[0]).toBe('herald.v1');
    expect(ws.protocols[1]).toMatch(/^herald\.token\./);
    act(() => ws.open());
    await waitFor(() => expect(container.textContent).toBe('connected:2:'), T);
    act(() => ws.recv({ type: 'message', id: 'a', offset: 1, epoch: 'e', ts: '2026-11-25T12:00:00Z', data: {} }));

    act(() => ws.recv({ type: 'message', id: 'a', offset: 1, epoch: 'e', ts: '2026-11-25T12:00:00Z', data: {} }));


    // The client counts a new message as unread itself.
    expect(container.textContent).toBe('connected:3:1');
    unmount();
    await act(async () => {});
    expect(FakeSocket.live()).toHaveLength(0);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('hydrates server HTML without a mismatch, then connects', async () => {
    FakeSocket.all = [];
    const html = renderToString(app(countsReply(0)));
    expect(FakeSocket.all).toHaveLength(0);
    const el = document.createElement('div');
    el.innerHTML = html;
    document.body.appendChild(el);
    const errors: unknown[] = [];
    let root!: ReturnType<typeof hydrateRoot>;
    await act(async () => {
      root = hydrateRoot(el, <StrictMode>{app(countsReply(0))}</StrictMode>, {
        onRecoverableError: (e) => errors.push(e),
      });
    });
    expect(errors).toEqual([]);
    await waitFor(() => expect(FakeSocket.all).toHaveLength(1), T);
    act(() => FakeSocket.all[0]!.open());
    await waitFor(() => expect(el.textContent).toBe('connected:0:'), T);
    act(() => root.unmount());
    await act(async () => {});
    expect(FakeSocket.live()).toHaveLength(0);
    el.remove();
  });
});
