/**
 * A test node: a real systemd sandbox plus a private data directory, with the
 * stevedore CLI run *inside* the sandbox (as a user on a systemd host would),
 * and checks that the node holds nothing but what the test expects.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Test } from 'uvu';
import { execInSandbox } from '../../sandbox/sandbox.js';
import { unitNames } from '../../stage1/contract.js';
import { withSandbox, type TestSandbox } from './sandbox.js';

export const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
export const CLI = path.join(REPO, 'bin', 'stevedore.js');

export interface CliResult { exitCode: number; stdout: string; stderr: string }

export interface TestNode {
  sandbox: TestSandbox;
  dataDir: string;
  /** Run `stevedore --dir DATA ARGS…` inside the sandbox. */
  cli(args: string[], env?: Record<string, string>): Promise<CliResult>;
  /** Like cli(), but fail the test with the command's stderr unless it exits 0. */
  ok(args: string[], env?: Record<string, string>): Promise<string>;
  /** Run any command inside the sandbox. */
  sh(script: string): Promise<CliResult>;
  /** Write a manifest file into the data dir's scratch folder and return its path. */
  manifest(name: string, yaml: string): Promise<string>;
  /** Units named stevedore-* loaded in the sandbox's systemd. */
  units(): Promise<string[]>;
  /** Mount points inside the sandbox below the data dir. */
  mounts(): Promise<string[]>;
}

/** The kvm stage1's assets where the test run says (STEVEDORE_KVM_ASSETS): the sandbox does not inherit the caller's environment. */
const kvmAssetsEnv = (): Record<string, string> => (process.env.STEVEDORE_KVM_ASSETS ? { STEVEDORE_KVM_ASSETS: process.env.STEVEDORE_KVM_ASSETS } : {});

export async function sandboxExec(sandbox: TestSandbox, argv: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const r = await execInSandbox(sandbox.info.name, argv, { stdio: 'pipe', stateRoot: sandbox.stateRoot, env: { STEVEDORE_LOG_LEVEL: 'warn', ...kvmAssetsEnv(), ...env } });
  return { exitCode: r.exitCode, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Gives a suite a node: sandbox + data dir + the demo image; removes every pod and checks nothing is left. */
export function useNode<T>(suite: Test<T>): () => TestNode {
  let node: TestNode | undefined;
  let sandbox: TestSandbox | undefined;
  suite.before(async () => {
    sandbox = await withSandbox();
    const sb = sandbox;
    const dataDir = await fs.mkdtemp(path.join('/var/tmp', 'stevedore-test-'));
    await fs.mkdir(path.join(dataDir, 'manifests'));
    const cli = (args: string[], env: Record<string, string> = {}) => sandboxExec(sb, [process.execPath, CLI, '--dir', dataDir, ...args], env);
    node = {
      sandbox: sb, dataDir, cli,
      async ok(args, env) {
        const r = await cli(args, env);
        if (r.exitCode !== 0) throw new Error(`stevedore ${args.join(' ')} exited ${r.exitCode}:\n${r.stderr}${r.stdout}`);
        return r.stdout;
      },
      sh: (script) => sandboxExec(sb, ['sh', '-c', script]),
      async manifest(name, yaml) {
        const file = path.join(dataDir, 'manifests', name);
        await fs.writeFile(file, yaml);
        return file;
      },
      async units() {
        const r = await sandboxExec(sb, ['systemctl', 'list-units', '--all', '--plain', '--no-legend', 'stevedore-*']);
        return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter((u) => unitNames.parse(u) !== undefined);
      },
      async mounts() {
        const r = await sandboxExec(sb, ['cat', '/proc/self/mountinfo']);
        return r.stdout.split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dataDir));
      },
    };
    await node.ok(['image', 'import-demo']);
  });
  suite.after(async () => {
    try {
      if (node) await cleanNode(node);
    } finally {
      await sandbox?.stop();
    }
  });
  return () => {
    if (!node) throw new Error('useNode: only inside tests');
    return node;
  };
}

/** Remove every pod, then fail if any unit or mount of the test is still there. */
async function cleanNode(node: TestNode): Promise<void> {
  const pods = JSON.parse((await node.cli(['pod', 'list', '-o', 'json'])).stdout || '[]') as Array<{ uuid: string }>;
  for (const p of pods) await node.cli(['pod', 'rm', '--force', p.uuid]);
  await node.cli(['gc', '--grace-period', '0s']);
  const leftovers = [...(await node.units()), ...(await node.mounts())];
  await fs.rm(node.dataDir, { recursive: true, force: true }).catch(() => undefined);
  if (leftovers.length) throw new Error(`test node left units or mounts behind: ${leftovers.join(', ')}`);
}

export interface AppJson { name: string; state: string; reason?: string; exitCode?: number; restartCount: number; mainPid?: number; lastTermination?: { exitCode: number; reason: string } }
export interface PodJson { uuid: string; state: string; stage1: string; name: string; apps: AppJson[] }

export async function podStatus(node: TestNode, uuid: string): Promise<PodJson> {
  return JSON.parse(await node.ok(['pod', 'status', uuid, '-o', 'json'])) as PodJson;
}

/** Poll until check() returns a value (not undefined) or the time is up; the last error is reported. */
export { eventually } from './assert.js';
