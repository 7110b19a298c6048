import { closeSync, constants as fsConstants, openSync, writeFileSync, writeSync } from 'node:fs';
import { fsops } from '../common/fsops.js';
import { errnoCode } from '../common/errors.js';
import { podPaths } from './contract.js';

/**
 * The network gate lets stage0 attach a pod to its network (CNI ADD, ~20 ms
 * of plugin processes) while it prepares the pod and systemd starts the
 * units, instead of before: each app's process waits in the gate, ahead of
 * the OCI runtime, until stage0 opens it. The kubelet's order holds (no app
 * runs before its pod's network is ready).
 *
 * On disk, in the pod directory (stage0 makes the FIFO before the units start):
 *   network-gate     a FIFO; a waiting gate holds it open read-write (so its
 *                    own open never blocks) and sleeps reading it
 *   network-ready    the gate is open for good: a unit that starts later (an
 *                    app behind an init container, any restart) passes at once
 *   network-failed   ADD failed: a waiting gate exits 1, its unit fails now
 *                    rather than when the pod is removed
 *
 * Releasing: the marker first, then one newline per app into the FIFO. The
 * newlines only wake the readers (each takes one), the markers say what
 * happened: what concurrent readers of one pipe read is not theirs to choose
 * (a message per reader came out interleaved under load). A gate that opened
 * the FIFO before the marker existed is woken by a newline; one that opens it
 * later sees the marker.
 */
export const NETWORK_GATE_SCRIPT = `
exec 3<>"$1"
until [ -e "$2" ]; do
  if [ -e "$3" ]; then echo "stevedore: the pod's network could not be attached" >&2; exit 1; fi
  read -r _ <&3 || exit 1
done
exec 3<&-
shift 3
exec "$@"
`;

/** argv that waits at the pod's network gate, then execs `argv`. */
export function behindNetworkGate(podDir: string, argv: string[]): string[] {
  const paths = podPaths(podDir);
  return ['/bin/sh', '-c', NETWORK_GATE_SCRIPT, 'stevedore-network-gate', paths.networkGate, paths.networkReady, paths.networkFailed, ...argv];
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
  // Synchronous (the calls below never block): the apps wait on it, and a round trip through libuv's pool
  // waits behind the CNI plugins and systemd for a thread and for the loop.
  const paths = podPaths(podDir);
  writeFileSync(outcome === 'ready' ? paths.networkReady : paths.networkFailed, '');
  let fifo: number;
  try {
    fifo = openSync(paths.networkGate, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ENXIO') return;
    throw err;
  }
  try {
    // A byte per waiter: far below the pipe's buffer, so this write never blocks.
    writeSync(fifo, '\n'.repeat(Math.max(1, waiters)));
  } finally {
    closeSync(fifo);
  }
}
