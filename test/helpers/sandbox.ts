/**
 * Test helper: a throw-away node sandbox (real systemd + D-Bus + journald) per
 * suite, with a unique name under a test-only state root, stopped in the
 * suite's `after` hook and, best effort, when the process exits or is
 * interrupted — a test run must never leave a systemd behind.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Test } from 'uvu';
import { startSandbox, stopSandbox } from '../../sandbox/sandbox.js';
import type { SandboxInfo, SandboxStartOptions } from '../../sandbox/types.js';

export const TEST_STATE_ROOT = '/run/stevedore-test/sandboxes';

export function uniqueSandboxName(prefix = 't'): string {
  return `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export interface TestSandbox {
  info: SandboxInfo;
  stateRoot: string;
  /** Stops the sandbox and forgets it (idempotent). */
  stop(): Promise<void>;
}

/** Sandboxes this process started and has not stopped yet. */
const live = new Map<string, { name: string; stateRoot: string }>();

/** Starts a sandbox with a unique name; it is stopped on exit even if the test forgets. */
export async function withSandbox(opts: SandboxStartOptions = {}): Promise<TestSandbox> {
  installExitHooks();
  const name = opts.name ?? uniqueSandboxName();
  const stateRoot = opts.stateRoot ?? TEST_STATE_ROOT;
  const key = `${stateRoot}/${name}`;
  // Registered before the start: a start interrupted half-way still gets cleaned.
  live.set(key, { name, stateRoot });
  const info = await startSandbox({ ...opts, name, stateRoot });
  return {
    info,
    stateRoot,
    async stop() {
      await stopSandbox(name, stateRoot);
      live.delete(key);
    },
  };
}

/**
 * Gives a uvu suite its own sandbox: started in `before`, stopped in `after`.
 * Returns a getter, valid inside tests.
 */
export function useSandbox<T>(suite: Test<T>, opts: SandboxStartOptions = {}): () => TestSandbox {
  let sandbox: TestSandbox | undefined;
  suite.before(async () => {
    sandbox = await withSandbox(opts);
  });
  suite.after(async () => {
    await sandbox?.stop();
  });
  return () => {
    if (!sandbox) throw new Error('useSandbox: the sandbox is only available inside tests (it failed to start?)');
    return sandbox;
  };
}

async function stopAllLive(): Promise<void> {
  for (const [key, { name, stateRoot }] of live) {
    await stopSandbox(name, stateRoot).catch((err) => console.error(`could not stop sandbox ${name}:`, err));
    live.delete(key);
  }
}

let hooksInstalled = false;
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // `on`, not `once`: execa's signal-exit re-raises the signal (killing us
    // mid-cleanup) when it sees no other listener left after ours ran.
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      void stopAllLive().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  // 'exit' handlers cannot await: stop what is left from a child Node process.
  process.once('exit', () => {
    if (live.size === 0) return;
    const moduleUrl = new URL('../../sandbox/sandbox.js', import.meta.url).href;
    const script =
      `const { stopSandbox } = await import(${JSON.stringify(moduleUrl)});\n` +
      `for (const [name, root] of ${JSON.stringify([...live.values()].map((s) => [s.name, s.stateRoot]))}) ` +
      `await stopSandbox(name, root).catch((e) => console.error(e));`;
    spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit', timeout: 30_000 });
  });
}
