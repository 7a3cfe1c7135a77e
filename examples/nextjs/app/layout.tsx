import type { Metadata } from 'next';
import Link from 'next/link';
import type { ReactNode } from 'react';
import './globals.css';

export const metadata: Metadata = {
  title: 'Herald + Next.js',
  description: '@herald/react beside the original notification component',
  icons: { icon: 'data:,' }, // no favicon request (and no 404 in the console)
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <nav>
          <Link href="/">The rewrite (@herald/react)</Link>
          <Link href="/original">The original (do not copy)</Link>
        </nav>
        <main>{children}</main>
      </body>
    </html>
  );
}
