#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) in its own Node
// process, one after another: most tests boot a real systemd sandbox, and on
// 2 cores running them side by side only makes them flaky. Prints a closing
// "N passed, N failed" line that CI reads. Arguments filter files by substring.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');
const filters = process.argv.slice(2);
const perFileTimeoutMs = Number(process.env.STEVEDORE_TEST_TIMEOUT_MS ?? 15 * 60_000);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.js') ? [p] : [];
  });
}

const files = walk(testDir).sort().filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
const stripAnsi = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
let passed = 0, failed = 0, skipped = 0;
const failedFiles = [];

for (const file of files) {
  const name = relative(testDir, file);
  const started = Date.now();
  process.stdout.write(`\n=== ${name}\n`);
  const result = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['--enable-source-maps', file], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } });
    let out = '';
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
    const timer = setTimeout(() => { out += '\n(test file timed out)\n'; child.kill('SIGTERM'); setTimeout(() => child.kill('SIGKILL'), 10_000); }, perFileTimeoutMs);
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out: stripAnsi(out) }); });
  });
  const total = Number(/Total:\s+(\d+)/.exec(result.out)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(result.out)?.[1] ?? 0);
  const skip = Number(/Skipped:\s+(\d+)/.exec(result.out)?.[1] ?? 0);
  // A file that crashed before uvu printed its summary counts as one failure.
  const bad = result.code === 0 ? Math.max(0, total - ok - skip) : Math.max(1, total - ok - skip);
  passed += ok; failed += bad; skipped += skip;
  if (bad > 0) failedFiles.push(name);
  process.stdout.write(`--- ${name}: ${ok} passed, ${bad} failed, ${skip} skipped in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

if (failedFiles.length) process.stdout.write(`\nfailing files:\n  ${failedFiles.join('\n  ')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
