'use client';
// The client layout that holds the page's one Herald connection. A client component because
// getToken is a function (a server component cannot pass one to a client component). It is
// the layout of the rewrite's routes only, so leaving them (for /original) closes the
// connection: compare with the original, whose socket outlives its page.
import { HeraldProvider } from '@herald/react';
import type { ReactNode } from 'react';

const url = process.env.NEXT_PUBLIC_HERALD_URL || 'http://localhost:8080';

/** Asks the app's own server for a short-lived token; the client calls it again before expiry and on reconnect. */
async function getToken(): Promise<string> {
  const r = await fetch('/api/token', { cache: 'no-store' });
  if (!r.ok) throw new Error(`/api/token answered ${r.status}`);
  return r.text();
}

export default function RewriteLayout({ children }: { children: ReactNode }) {
  return (
    <HeraldProvider url={url} getToken={getToken}>
      {children}
    </HeraldProvider>
  );
}
