import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Tests run against the client's source, so `npm test -w js/react` needs no client build first.
    alias: { '@herald/client': fileURLToPath(new URL('../client/src/index.ts', import.meta.url)) },
  },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.{ts,tsx}'],
    testTimeout: 10_000,
  },
});
