#!/usr/bin/env node
// Runs the browser end-to-end tests (npm run test:browser -w js/e2e, or
// make test-browser):
//   1. builds Herald once (go build -o <run dir>/herald ./cmd/herald);
//   2. runs every test/*.test.mjs with Node's test runner, one file at a
//      time (each file starts its own Herald processes and Chromium; two
//      cores do not run two browsers and a Go build well at once);
//   3. fails if any process of the run outlived it: TMPDIR points into the
//      run directory, so Chromium's profile (and so its command line) and
//      the Herald binary are both under it.
// Arguments, if any, are the test files to run instead of all.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildHerald } from './lib/herald.mjs';
import { CHROMIUM } from './lib/browser.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const runDir = mkdtempSync(join(tmpdir(), 'herald-e2e-run-'));
const t0 = Date.now();
const secs = (t) => ((Date.now() - t) / 1000).toFixed(1) + ' s';

let status = 1;
try {
  const bin = join(runDir, 'herald');
  const tb = Date.now();
  buildHerald(bin);
  console.log(`e2e: built ${bin} in ${secs(tb)}; browser ${CHROMIUM}`);

  const files = process.argv.slice(2).length
    ? process.argv.slice(2)
    : readdirSync(join(here, 'test')).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => join('test', f));
  const tmp = join(runDir, 'tmp');
  mkdirSync(tmp);
  const tt = Date.now();
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files], {
    cwd: here,
    stdio: 'inherit',
    env: { ...process.env, HERALD_E2E_BIN: bin, TMPDIR: tmp },
  });
  status = r.status ?? 1;
  console.log(`e2e: tests took ${secs(tt)}`);

  const leaked = processesUnder(runDir);
  if (leaked.length) {
    console.error(`e2e: FAIL: processes of this run still running after the tests:\n  ${leaked.map((p) => `${p.pid} ${p.cmd.slice(0, 200)}`).join('\n  ')}`);
    for (const p of leaked) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    status = 1;
  }
} finally {
  rmSync(runDir, { recursive: true, force: true, maxRetries: 3 });
  console.log(`e2e: ${status === 0 ? 'ok' : 'FAILED'} in ${secs(t0)}`);
}
process.exit(status);

/** Processes whose command line mentions dir (ours: the binary or the browser profile live there). */
function processesUnder(dir) {
  const out = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    if (Number(pid) === process.pid) continue;
    let cmd;
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(); } catch { continue; }
    if (cmd.includes(dir)) out.push({ pid: Number(pid), cmd });
  }
  return out;
}
