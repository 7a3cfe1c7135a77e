// npm run dashboard: the client as Herald's dashboard serves it —
// dashboard/assets/herald-client.js, one minified ESM file, committed so
// that the Go binary embeds it and "go run ./cmd/herald" needs no npm step.
// test/dashboard.test.ts fails when the committed file is not what this
// writes from the current source.
import { build } from 'esbuild';
import { writeFileSync } from 'node:fs';

export const banner = '// @herald/client, built by js/client/dashboard.mjs for Herald\'s dashboard. Do not edit: run `npm run dashboard -w js/client`.\n';

export async function dashboardBundle() {
  const r = await build({
    entryPoints: [new URL('src/index.ts', import.meta.url).pathname],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    legalComments: 'none',
    write: false,
  });
  return banner + r.outputFiles[0].text;
}

export const target = new URL('../../dashboard/assets/herald-client.js', import.meta.url);

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(target, await dashboardBundle());
  console.log(`wrote ${target.pathname}`);
}
