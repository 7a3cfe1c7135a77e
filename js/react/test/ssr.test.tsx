// @vitest-environment node
// Server rendering: no window, no document, no client; the hooks give their initial values.
import { renderToString } from 'react-dom/server';
import { describe, expect, it, vi } from 'vitest';

describe('server render', () => {
  it('runs without window and creates no client', async () => {
    expect(typeof window).toBe('undefined');
    expect(typeof document).toBe('undefined');
    // Importing the package (and @herald/client under it) touches no browser global.
    const { HeraldProvider, useConnectionState, useInbox, useNotifications, useUnreadCount, useHerald } = await import('../src/index.js');
    const create = vi.fn();
    function View() {
      const c = useConnectionState();
      const unread = useUnreadCount();
      const { messages } = useNotifications();
      const inbox = useInbox();
      const client = useHerald();
      return (
        <p>
          {c.state}|{unread}|{messages.length}|{inbox.loading ? 'loading' : 'loaded'}|{client === null ? 'no client' : 'client'}
        </p>
      );
    }
    const html = renderToString(
      <HeraldProvider url="http://h" getToken={() => 't'} createClient={create}>
        <View />
      </HeraldProvider>,
    );
    expect(html).toBe('<p>connecting<!-- -->|<!-- -->0<!-- -->|<!-- -->0<!-- -->|<!-- -->loading<!-- -->|<!-- -->no client</p>');
    expect(create).not.toHaveBeenCalled();
  });

  it('the real Herald is never constructed on the server', async () => {
    const { HeraldProvider } = await import('../src/index.js');
    const html = renderToString(
      <HeraldProvider url="http://h" getToken={() => 't'}>
        <i>ok</i>
      </HeraldProvider>,
    );
    expect(html).toBe('<i>ok</i>');
  });

  it("the entry starts with 'use client', for React Server Components", async () => {
    const { readFile } = await import('node:fs/promises');
    const src = await readFile(new URL('../src/index.ts', import.meta.url), 'utf8');
    expect(src.startsWith("'use client';")).toBe(true);
  });
});
