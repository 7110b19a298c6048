import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { UserError } from './errors.js';
import { atomicWrite } from './fsutil.js';

/** Write a unit file, reload systemd and enable the unit (starting it with `now`). */
export async function installUnit(unitDir: string, name: string, text: string, now: boolean): Promise<void> {
  await fs.mkdir(unitDir, { recursive: true });
  await atomicWrite(path.join(unitDir, name), text);
  const systemctl = async (...args: string[]) => {
    const r = await execa('systemctl', args, { reject: false });
    if (r.exitCode !== 0) throw new UserError(`systemctl ${args.join(' ')} failed: ${r.stderr.trim()}`, { hint: 'this needs a running systemd (PID 1, or a node sandbox: stevedore sandbox exec -- stevedore …)' });
  };
  await systemctl('daemon-reload');
  await systemctl('enable', ...(now ? ['--now'] : []), name);
}

/** This checkout's launcher (bin/stevedore.js). */
export function cliScript(): string {
  return path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);
}

/** The stevedore CLI as a unit's ExecStart= prefix: this Node with `nodeFlags` and this checkout's launcher. */
export function cliCommand(nodeFlags: readonly string[] = DAEMON_NODE_FLAGS): string {
  return `${process.execPath} ${nodeFlags.join(' ')} ${cliScript()}`;
}

/**
 * V8 flags for the long-running services. Node's default young generation
 * (16 MiB semi-spaces) is sized for throughput; these daemons allocate
 * little per pass, and 4 MiB semi-spaces cut ~25 MiB of resident memory from
 * each (measured: bench/RESULTS.md, cluster benchmark) for a few more, cheap
 * scavenges.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=4', '--optimize-for-size'];

/**
 * The api-service answers requests, so its latency matters more than the last
 * MiB: `--optimize-for-size` made each ListPods of 100 pods spend ~1.3 ms in
 * the garbage collector (0.2 ms without) and tripled the p99 (measured:
 * bench/RESULTS.md, api-service). It keeps the small young generation.
 */
export const API_SERVICE_NODE_FLAGS = ['--max-semi-space-size=4'];
