import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    // Fake timers are set per file; nothing here waits on a real clock.
    testTimeout: 20000,
  },
});
