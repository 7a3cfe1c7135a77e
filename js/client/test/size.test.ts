// The size budget: the ESM bundle of src/index.ts, minified by esbuild and
// gzipped (level 9), must stay within 6 KB, and README.md must state the
// current size (within 0.1 KB), so the number people read is the real one.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { expect, it } from 'vitest';

const BUDGET = 6144;
const here = (p: string) => new URL(p, import.meta.url);

async function measure() {
  const r = await build({
    entryPoints: [here('../src/index.ts').pathname],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    legalComments: 'none',
    write: false,
  });
  const min = r.outputFiles[0]!.contents;
  return { min: min.length, gz: gzipSync(min, { level: 9 }).length };
}

it('the minified + gzipped ESM bundle fits in 6 KB, and README.md states its size', async () => {
  const { min, gz } = await measure();
  const kb = Math.round((gz / 1024) * 10) / 10;
  console.log(`@herald/client size: ${gz} bytes min+gzip (${kb} KB; ${min} bytes minified); budget ${BUDGET}`);
  expect(gz).toBeLessThanOrEqual(BUDGET);
  const readme = readFileSync(here('../README.md'), 'utf8');
  const stated = [...readme.matchAll(/\*\*([\d.]+) KB\*\* min\+gzip/g)].map((m) => Number(m[1]));
  expect(stated.length, 'README.md states "**N.N KB** min+gzip"').toBeGreaterThan(0);
  // Within rounding: the stated figure may be off by at most 0.1 KB, so it
  // needs updating when the size really moves, not at every byte.
  for (const n of stated)
    expect(Math.abs(n - gz / 1024), `README.md says ${n} KB; the bundle is ${kb} KB (${gz} bytes): update the README`).toBeLessThanOrEqual(0.1);
});
