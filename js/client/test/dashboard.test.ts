// Herald's dashboard serves a committed copy of this client
// (dashboard/assets/herald-client.js, embedded in the Go binary). It must be
// the build of the current source: a change to src/ without
// `npm run dashboard -w js/client` fails here, in CI.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without type declarations
import { dashboardBundle, target } from '../dashboard.mjs';

it('dashboard/assets/herald-client.js is the build of the current source', async () => {
  const want: string = await dashboardBundle();
  const got = readFileSync(target, 'utf8');
  expect(got === want, 'dashboard/assets/herald-client.js is stale: run `npm run dashboard -w js/client` and commit it').toBe(true);
});
