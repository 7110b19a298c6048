import * as fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { fsops } from '../common/fsops.js';
import { errnoCode } from '../common/errors.js';
import { podPaths } from './contract.js';

/**
 * The network gate lets stage0 attach a pod to its network (CNI ADD, ~20 ms
 * of plugin processes) while systemd starts the pod's units, instead of
 * before: each app's process waits in the gate, ahead of the OCI runtime,
 * until stage0 opens it. The kubelet's order holds (no app runs before its
 * pod's network is ready); only systemd's start of the units overlaps ADD.
 *
 * On disk, in the pod directory (stage0 makes both before the units start):
 *   network-gate    a FIFO; each waiting gate holds it open read-write, so
 *                   its own open never blocks, and reads one line
 *   network-ready   the gate is open for good: a unit that starts later (an
 *                   app behind an init container, any restart) passes at once
 *
 * Opening: network-ready first, then one `ready` line per app into the FIFO
 * (a gate that opened the FIFO before the marker existed is blocked in read;
 * one that opens it after sees the marker). Failing: `failed` lines, so the
 * blocked gates exit 1 and their units fail now rather than at stop.
 */
export const NETWORK_GATE_SCRIPT = `
exec 3<>"$1"
if [ ! -e "$2" ]; then
  read -r state <&3 || exit 1
  [ "$state" = ready ] || { echo "stevedore: the pod's network could not be attached" >&2; exit 1; }
fi
exec 3<&-
shift 2
exec "$@"
`;

/** argv that waits at the pod's network gate, then execs `argv`. */
export function behindNetworkGate(podDir: string, argv: string[]): string[] {
  const paths = podPaths(podDir);
  return ['/bin/sh', '-c', NETWORK_GATE_SCRIPT, 'stevedore-network-gate', paths.networkGate, paths.networkReady, ...argv];
}

/** Make the gate's FIFO (closed: no network-ready marker yet). */
export function createNetworkGate(podDir: string): void {
  fsops.mknod(podPaths(podDir).networkGate, fsops.S_IFIFO | 0o600, 0);
}

/**
 * Open the gate (`ready`) or fail it, for up to `waiters` gates blocked on it.
 * Never blocks: with no gate waiting, the FIFO has no reader and the open
 * fails (ENXIO), which is fine: later gates see the marker, or die with the pod.
 */
export async function releaseNetworkGate(podDir: string, outcome: 'ready' | 'failed', waiters: number): Promise<void> {
  const paths = podPaths(podDir);
  if (outcome === 'ready') await fs.writeFile(paths.networkReady, '');
  let fifo: fs.FileHandle;
  try {
    fifo = await fs.open(paths.networkGate, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ENXIO') return;
    throw err;
  }
  try {
    // A few bytes per waiter: far below the pipe's buffer, so this write neither blocks nor splits.
    await fifo.write(`${outcome}\n`.repeat(Math.max(1, waiters)));
  } finally {
    await fifo.close();
  }
}
