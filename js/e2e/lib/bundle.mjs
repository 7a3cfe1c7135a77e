// Bundles pages that need it: React ships no ESM build for browsers, so
// the React page (pages/react-app.mjs, with react, react-dom,
// @herald/react and @herald/client) is bundled by esbuild — the bundler
// the client and react packages build with — once per process, on first
// request, in development mode (React's StrictMode double-mounting exists
// only there).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pages = fileURLToPath(new URL('../pages/', import.meta.url));
const built = new Map();
const dirs = [];
process.on('exit', () => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** Returns the path of the bundle of pages/<name>.mjs, building it on first use. */
export function bundle(name) {
  if (!built.has(name)) {
    built.set(name, (async () => {
      const { build } = await import('esbuild');
      const dir = mkdtempSync(join(tmpdir(), 'herald-e2e-build-'));
      dirs.push(dir);
      const outfile = join(dir, `${name}.js`);
      await build({
        entryPoints: [join(pages, `${name}.mjs`)],
        bundle: true,
        format: 'esm',
        platform: 'browser',
        outfile,
        sourcemap: 'inline',
        define: { 'process.env.NODE_ENV': '"development"' },
        logLevel: 'warning',
      });
      return outfile;
    })());
  }
  return built.get(name);
}
