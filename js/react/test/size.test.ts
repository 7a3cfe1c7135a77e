// @vitest-environment node
// The size of @herald/react as an app's bundler adds it: src/index.ts bundled and minified
// with react and @herald/client left out (the app has them anyway), then gzipped.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';

/** Budget for min+gzip, bytes. The hooks are glue; more than this means something heavy came in. */
const BUDGET = 4 * 1024;

describe('bundle size', () => {
  it(`min+gzip stays under ${BUDGET} bytes, as the README says, and keeps 'use client'`, async () => {
    const out = await build({
      entryPoints: [new URL('../src/index.ts', import.meta.url).pathname],
      bundle: true,
      minify: true,
      format: 'esm',
      target: 'es2022',
      jsx: 'automatic',
      external: ['react', 'react/jsx-runtime', '@herald/client'],
      write: false,
      logLevel: 'silent',
    });
    const js = out.outputFiles[0]!.contents;
    const gz = gzipSync(js, { level: 9 }).length;
    console.log(`@herald/react bundle: ${js.length} B minified, ${gz} B min+gzip (budget ${BUDGET} B)`);
    expect(gz).toBeLessThan(BUDGET);
    // The README states the size; keep it true.
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`**${(gz / 1024).toFixed(1)} KB** min+gzip`);
    expect(new TextDecoder().decode(js.subarray(0, 20))).toMatch(/^"use client";/);
  });
});
