/**
 * The infra container's network namespace while the engine is still starting
 * it. The engine answers `POST /containers/{id}/start` only after runc has
 * created the container, started its process and dockerd and containerd have
 * recorded it: 30–45 ms (of ~110) after runc has made the namespaces on this
 * machine. The pod's CNI ADD needs nothing but the network namespace, so it
 * runs in that window instead of after it (the docker node's pod start).
 *
 * How: the container's cgroup (a sibling of the containers already started,
 * below dockerd's --cgroup-parent) gets runc's init process as soon as runc
 * starts it; the first process there whose network namespace is not ours
 * (the infra has no engine network: runc unshares a new one) is in
 * the container's (and not its parent's: only a runc stage that unshared it,
 * or the container's process, qualifies). Its namespace is held open here (the process may be one
 * of runc's short-lived setup stages) and named `/proc/<our pid>/fd/<fd>` for
 * the CNI plugins and nsenter, which are our children.
 *
 * Best effort: when the namespace is not seen before the start returns (the
 * first pod, before the cgroup parent is known; a different cgroup layout),
 * the caller takes the infra's PID from inspect as before.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface HeldNetns {
  /** A path to the namespace valid while held (for this process and its children). */
  path: string;
  release(): Promise<void>;
}

/** How often the cgroup is read while the start runs: short against CNI ADD's ~40 ms, and cheap (one small read). */
const POLL_MS = 2;

let ownNetnsIno: number | undefined;

/**
 * The directory holding the engine's container cgroups, in a cgroup v1
 * hierarchy or the v2 one as this process sees them, learnt from a running
 * container's process (its /proc/PID/cgroup lines hold the container ID).
 */
export async function containerCgroupParent(containerId: string, hostPid: number): Promise<string | undefined> {
  const lines = (await fs.readFile(`/proc/${hostPid}/cgroup`, 'utf8').catch(() => '')).split('\n');
  for (const line of lines) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m || !m[2]!.includes(containerId)) continue;
    const controllers = m[1]!;
    const mount = controllers === '' ? 'unified' : controllers.replace(/^name=/, '');
    const dir = path.join('/sys/fs/cgroup', mount, m[2]!);
    if (path.basename(dir) !== containerId) continue;
    if (await fs.stat(path.join(dir, 'cgroup.procs')).then(() => true, () => false)) return path.dirname(dir);
  }
  return undefined;
}

/** The inode of a process's network namespace, undefined once it is gone. */
async function netnsIno(pid: string | number): Promise<number | undefined> {
  return fs.stat(`/proc/${pid}/ns/net`).then((s) => s.ino, () => undefined);
}

async function parentPid(pid: string): Promise<string | undefined> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, the last ")" ends it.
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
}

/**
 * Watch for the container's network namespace until `stop()` (the start
 * returned or failed); `found` resolves with it held, or undefined.
 */
export function watchContainerNetns(cgroupParent: string, containerId: string): { found: Promise<HeldNetns | undefined>; stop(): void } {
  let stopped = false;
  const procs = path.join(cgroupParent, containerId, 'cgroup.procs');
  const found = (async (): Promise<HeldNetns | undefined> => {
    ownNetnsIno ??= (await fs.stat('/proc/self/ns/net')).ino;
    while (!stopped) {
      const pids = (await fs.readFile(procs, 'utf8').catch(() => '')).split('\n').filter(Boolean);
      for (const pid of pids) {
        const handle = await fs.open(`/proc/${pid}/ns/net`, 'r').catch(() => undefined);
        if (!handle) continue;
        const ino = await handle.stat().then((s) => s.ino, () => undefined);
        // A namespace other than its parent's: runc's stage that unshared it, or the container's process (whose parent
        // is then the engine's shim). runc's first stage, still in the engine's namespace, is never taken.
        const ppid = ino !== undefined && ino !== ownNetnsIno ? await parentPid(pid) : undefined;
        const parentIno = ppid ? await netnsIno(ppid) : undefined;
        if (ino !== undefined && ino !== ownNetnsIno && parentIno !== undefined && parentIno !== ino) {
          return { path: `/proc/${process.pid}/fd/${handle.fd}`, release: () => handle.close().catch(() => undefined) };
        }
        await handle.close().catch(() => undefined);
      }
      await sleep(POLL_MS);
    }
    return undefined;
  })();
  return { found, stop: () => { stopped = true; } };
}
