/**
 * stage1/network-gate.ts with the real /bin/sh and a real FIFO, no systemd:
 * many gates waiting at once (as a pod's apps do) all pass when the gate is
 * opened and all fail when it is failed, and a gate started afterwards passes
 * or fails at once. Its pod directory is a temporary folder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { behindNetworkGate, createNetworkGate, releaseNetworkGate } from '../stage1/network-gate.js';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-network-gate-'));
test.after(() => fs.rmSync(base, { recursive: true, force: true }));

/** Until `n` gates hold the FIFO open (each has opened it and sleeps in read). */
async function waitForReaders(podDir: string, pids: () => number[], n: number): Promise<void> {
  const fifo = fs.statSync(path.join(podDir, 'network-gate'));
  for (let i = 0; i < 500; i++) {
    const holding = pids().filter((pid) => {
      try {
        return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
          try { return fs.statSync(`/proc/${pid}/fd/${fd}`).ino === fifo.ino; } catch { return false; }
        });
      } catch { return false; }
    });
    if (holding.length >= n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`fewer than ${n} gates opened the FIFO`);
}

function podDirWithGate(name: string): string {
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  createNetworkGate(dir);
  return dir;
}

/** `n` gates in front of `echo passed`, started at once. */
function gates(podDir: string, n: number) {
  const started = Array.from({ length: n }, () => {
    const [cmd, ...args] = behindNetworkGate(podDir, ['/bin/echo', 'passed']);
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    return { pid: child.pid!, done: new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out: out.trim() }))) };
  });
  return { pids: () => started.map((g) => g.pid), results: () => Promise.all(started.map((g) => g.done)) };
}

/** One gate, started now: its exit code and output. */
const gate = async (podDir: string) => (await gates(podDir, 1).results())[0];

test('eight gates waiting at once all pass when the gate opens, twenty times over; a later one passes at once', async () => {
  for (let round = 0; round < 20; round++) {
    const dir = podDirWithGate(`ready-${round}`);
    const g = gates(dir, 8);
    await waitForReaders(dir, g.pids, 8);
    await releaseNetworkGate(dir, 'ready', 8);
    const results = await g.results();
    assert.equal(results, Array(8).fill({ code: 0, out: 'passed' }), `round ${round}`);
    assert.equal(await gate(dir), { code: 0, out: 'passed' }, 'a restart passes without waiting');
  }
});

test('a failed attachment: every waiting gate exits 1 saying so, and so does a later one; nothing runs', async () => {
  const dir = podDirWithGate('failed');
  const g = gates(dir, 4);
  await waitForReaders(dir, g.pids, 4);
  await releaseNetworkGate(dir, 'failed', 4);
  const failed = { code: 1, out: 'stevedore: the pod\'s network could not be attached' };
  assert.equal(await g.results(), Array(4).fill(failed));
  assert.equal(await gate(dir), failed);
});

test('released with no gate waiting: no error, and the gates that come later pass', async () => {
  const dir = podDirWithGate('early');
  await releaseNetworkGate(dir, 'ready', 2);
  assert.equal(await gate(dir), { code: 0, out: 'passed' });
});

test.run();
