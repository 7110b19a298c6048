import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { expandVars } from '../common/var-expansion.js';
import { ContainerConfigError, errnoCode } from '../common/errors.js';
import { memoryBytes } from '../common/quantity.js';
import type { AppMount } from '../stage1/contract.js';
import { fsops } from '../common/fsops.js';
import { podEnv } from '../runtime-api/pod-env.js';
import { localDescendingPathProblem, type ContainerSpec, type HostPathType, type Pod, type Volume } from '../runtime-api/pod-spec.js';

/**
 * stage0's volumes, as the kubelet's volume manager prepares them before the
 * runtime sees a container (rkt had only `host` and `empty` volumes, and
 * rktnetes let the kubelet do the rest): every volume becomes a directory or
 * file of the node, and every volumeMount a bind mount of it (or of a path
 * inside it) into the app, which each stage1 applies its own way.
 *
 *   emptyDir        volumes/<name>/ in the pod directory (0777, or setgid and
 *                   group fsGroup); medium Memory: a tmpfs mounted there
 *   hostPath        the node's path, checked by type as the kubelet does
 *   subPath(Expr)   the path inside the volume, opened component by component
 *                   without following a link out of the volume, then bind
 *                   mounted through its file descriptor at
 *                   volume-subpaths/<app>/<n> (the kubelet's CVE-2017-1002101
 *                   fix): a link swapped in later cannot redirect the mount
 *
 * Everything else (configMap, secret, downwardAPI, projected,
 * persistentVolumeClaim) is the agent's to turn into a hostPath before the
 * pod gets here; reaching the runtime as such, it is refused.
 */

const O_PATH = 0o10000000;
const MAX_LINKS = 40;

export const volumeDir = (podDir: string, name: string) => path.join(podDir, 'volumes', name);
const subPathsDir = (podDir: string) => path.join(podDir, 'volume-subpaths');

/** A volume as the apps see it: where it is on the node (relative: under the pod directory). */
interface PreparedVolume {
  source: string;
  /** The node path for checks and subPaths (the pod directory as it is now). */
  nodePath: string;
  fsGroupOwned: boolean;
}

/** MountVolume.SetUp's wording, so a user who knows the kubelet's events recognises the failure. */
function setUpFailed(volume: string, why: string, hint: string): ContainerConfigError {
  return new ContainerConfigError(`MountVolume.SetUp failed for volume "${volume}" : ${why}`, hint);
}

/** The kubelet's hostPath type check (pkg/volume/hostpath), with its messages; *OrCreate make what is missing. */
export async function checkHostPathType(volume: string, p: string, type: HostPathType | undefined): Promise<void> {
  if (!type) {
    // No type, no check; a missing path becomes a directory, as containerd's CRI makes a missing bind source (Docker's old rule).
    await fsp.mkdir(p, { recursive: true, mode: 0o755 }).catch((err) => {
      if (errnoCode(err) !== 'EEXIST') throw setUpFailed(volume, `cannot make the missing hostPath ${p}: ${(err as Error).message}`, 'create it on the node, or set hostPath.type');
    });
    return;
  }
  const stat = () => fsp.stat(p).catch((err) => { if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined; throw err; });
  let st = await stat();
  const fail = (what: string) => setUpFailed(volume, `hostPath type check failed: ${p} is not ${what}`,
    `make ${p} ${what} on the node, or change spec.volumes[].hostPath.type of volume "${volume}"`);
  if (!st && type === 'DirectoryOrCreate') {
    await fsp.mkdir(p, { recursive: true, mode: 0o755 });
    st = await stat();
  }
  if (!st && type === 'FileOrCreate') {
    try {
      await (await fsp.open(p, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW, 0o644)).close();
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw setUpFailed(volume, `hostPath type check failed: cannot create file ${p}: ${(err as Error).message}`, `create the parent directory ${path.dirname(p)} on the node`);
    }
    st = await stat();
  }
  switch (type) {
    case 'DirectoryOrCreate': case 'Directory':
      if (!st?.isDirectory()) throw fail('a directory');
      return;
    case 'FileOrCreate': case 'File':
      if (!st?.isFile()) throw fail('a file');
      return;
    case 'Socket':
      if (!st?.isSocket()) throw fail('a socket file');
      return;
    case 'CharDevice':
      if (!st?.isCharacterDevice()) throw fail('a character device');
      return;
    case 'BlockDevice':
      if (!st?.isBlockDevice()) throw fail('a block device');
      return;
  }
}

/** The pod's memory limit when every container has one (the kubelet sizes Memory emptyDirs by it). */
function podMemoryLimit(pod: Pod): number | undefined {
  let sum = 0;
  for (const [i, c] of pod.spec.containers.entries()) {
    const limit = c.resources?.limits?.memory;
    if (limit === undefined) return undefined;
    sum += memoryBytes(limit, `spec.containers[${i}].resources.limits.memory`);
  }
  return sum;
}

/** A Memory emptyDir's tmpfs size: min(sizeLimit, pod memory limit), whichever are known. */
export function tmpfsSize(pod: Pod, volume: Volume, index: number): number | undefined {
  const limit = volume.emptyDir?.sizeLimit !== undefined ? memoryBytes(volume.emptyDir.sizeLimit, `spec.volumes[${index}].emptyDir.sizeLimit`) : undefined;
  const podLimit = podMemoryLimit(pod);
  if (limit === undefined) return podLimit;
  return podLimit === undefined ? limit : Math.min(limit, podLimit);
}

/** The kubelet's SetVolumeOwnership on a new volume: group fsGroup, setgid, group read-write. */
async function ownByFsGroup(dir: string, fsGroup: number): Promise<void> {
  await fsp.chown(dir, 0, fsGroup);
  const mode = (await fsp.stat(dir)).mode & 0o7777;
  await fsp.chmod(dir, mode | 0o2000 | 0o070);
}

async function prepareEmptyDir(podDir: string, pod: Pod, volume: Volume, index: number): Promise<PreparedVolume> {
  const dir = volumeDir(podDir, volume.name);
  await fsp.mkdir(dir, { recursive: true });
  if (volume.emptyDir?.medium === 'Memory') {
    const size = tmpfsSize(pod, volume, index);
    try {
      fsops.mount('tmpfs', dir, 'tmpfs', `mode=0777${size !== undefined ? `,size=${size}` : ''}`);
    } catch (err) {
      throw setUpFailed(volume.name, `cannot mount a tmpfs: ${(err as Error).message}`, 'the node needs tmpfs; check the size asked (sizeLimit)');
    }
  }
  // 0777 whatever the umask, as the kubelet makes emptyDirs: any uid of the pod may write.
  await fsp.chmod(dir, 0o777);
  const fsGroup = pod.spec.securityContext?.fsGroup;
  if (fsGroup !== undefined) await ownByFsGroup(dir, fsGroup);
  return { source: path.relative(podDir, dir), nodePath: dir, fsGroupOwned: fsGroup !== undefined };
}

async function prepareVolume(podDir: string, pod: Pod, volume: Volume, index: number): Promise<PreparedVolume> {
  if (volume.emptyDir) return prepareEmptyDir(podDir, pod, volume, index);
  if (volume.hostPath) {
    await checkHostPathType(volume.name, volume.hostPath.path, volume.hostPath.type);
    return { source: volume.hostPath.path, nodePath: volume.hostPath.path, fsGroupOwned: false };
  }
  const kind = Object.keys(volume).find((k) => k !== 'name') ?? 'unknown';
  throw new ContainerConfigError(`volume "${volume.name}" (spec.volumes[${index}]): a ${kind} volume is prepared by the node agent from the API server's objects, and this pod did not come through one`,
    'run the pod through the agent (kubectl), or use emptyDir/hostPath volumes with `stevedore pod run`');
}

const fdPath = (fd: number, name?: string) => `/proc/self/fd/${fd}${name ? `/${name}` : ''}`;

/**
 * Open `sub` inside `base` without ever leaving it: each component is opened
 * relative to its parent's descriptor with O_NOFOLLOW; a symlink is resolved
 * by hand and must land inside the volume (then the walk restarts from the
 * volume's root); a missing directory is made (mode `dirMode`), as the
 * kubelet makes a missing subPath. Returns an O_PATH descriptor.
 */
function openInside(base: string, sub: string, dirMode: number, what: string): number {
  const realBase = fs.realpathSync(base);
  let parts = sub.split('/').filter((p) => p && p !== '.');
  let links = 0;
  const escapes = (target: string) => new ContainerConfigError(`${what}: ${JSON.stringify(sub)} leads out of the volume (through a symlink to ${target})`,
    'a subPath must stay inside its volume (CVE-2017-1002101); fix the link or the subPath');
  for (;;) {
    let fd = fs.openSync(realBase, O_PATH | fs.constants.O_DIRECTORY);
    let walked = realBase;
    let restarted = false;
    try {
      while (parts.length && !restarted) {
        const part = parts[0]!;
        if (part === '..') throw escapes('..');
        let next: number;
        try {
          next = fs.openSync(fdPath(fd, part), O_PATH | fs.constants.O_NOFOLLOW);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
          try {
            fs.mkdirSync(fdPath(fd, part));
            // fchmod on what was made, never a path a container could have swapped for a link meanwhile.
            const made = fs.openSync(fdPath(fd, part), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
            try { fs.fchmodSync(made, dirMode); } finally { fs.closeSync(made); }
          } catch (e) { if (errnoCode(e) !== 'EEXIST') throw e; }
          continue; // open what is there now
        }
        const st = fs.fstatSync(next);
        if (st.isSymbolicLink()) {
          fs.closeSync(next);
          if (++links > MAX_LINKS) throw new ContainerConfigError(`${what}: too many levels of symbolic links in ${JSON.stringify(sub)}`);
          const target = fs.readlinkSync(fdPath(fd, part));
          const absolute = target.startsWith('/') ? target : path.join(walked, target);
          // A dangling link is judged by where it points (the walk then makes what is missing).
          let real: string;
          try { real = fs.realpathSync(absolute); } catch (e) { if (errnoCode(e) !== 'ENOENT') throw e; real = path.resolve(absolute); }
          if (real !== realBase && !real.startsWith(realBase + '/')) throw escapes(target);
          parts = [...path.relative(realBase, real).split('/').filter(Boolean), ...parts.slice(1)];
          restarted = true;
          continue;
        }
        if (parts.length > 1 && !st.isDirectory()) { fs.closeSync(next); throw new ContainerConfigError(`${what}: ${walked}/${part} is not a directory`); }
        fs.closeSync(fd);
        fd = next;
        walked = path.join(walked, part);
        parts = parts.slice(1);
      }
      if (!restarted) return fd;
      fs.closeSync(fd);
    } catch (err) {
      try { fs.closeSync(fd); } catch { /* already closed */ }
      throw err;
    }
  }
}

/** Bind-mount an open descriptor at `target` (made as a file or directory to match). */
async function bindFd(fd: number, target: string): Promise<void> {
  const st = fs.fstatSync(fd);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  if (st.isDirectory()) await fsp.mkdir(target);
  else await fsp.writeFile(target, '', { flag: 'wx' });
  // The descriptor's /proc link names the object it holds, not a path to resolve again (a swapped
  // symlink cannot redirect the bind); mount(2) itself, not a mount(8) process.
  try {
    fsops.mount(`/proc/self/fd/${fd}`, target, 'none', '', fsops.MS_BIND);
  } catch (err) {
    throw new Error(`bind mount of a subPath at ${target} failed: ${(err as Error).message}`);
  }
}

export interface VolumeInput {
  podDir: string;
  pod: Pod;
}

/**
 * Prepare the pod's volumes and return each container's mounts, in the order
 * of its volumeMounts. A failure throws a ContainerConfigError naming the
 * volume; the caller discards the half-made pod (unmountPodVolumes).
 */
export async function preparePodVolumes({ podDir, pod }: VolumeInput): Promise<Map<string, AppMount[]>> {
  const prepared = new Map<string, PreparedVolume>();
  for (const [i, v] of (pod.spec.volumes ?? []).entries()) prepared.set(v.name, await prepareVolume(podDir, pod, v, i));
  const out = new Map<string, AppMount[]>();
  const inits = pod.spec.initContainers ?? [];
  for (const [ci, c] of inits.entries()) out.set(c.name, await containerMounts(podDir, c, `spec.initContainers[${ci}]`, prepared));
  for (const [ci, c] of pod.spec.containers.entries()) out.set(c.name, await containerMounts(podDir, c, `spec.containers[${ci}]`, prepared));
  return out;
}

async function containerMounts(podDir: string, c: ContainerSpec, field: string, prepared: Map<string, PreparedVolume>): Promise<AppMount[]> {
  const mounts: AppMount[] = [];
  // The container's env as it will run (values the agent read come escaped; env.ts expands and unescapes).
  // status.podIP is not known yet here: a subPathExpr naming it sees it empty.
  const env = podEnv(c, []);
  for (const [mi, vm] of (c.volumeMounts ?? []).entries()) {
    const at = `${field}.volumeMounts[${mi}]`;
    const volume = prepared.get(vm.name);
    if (!volume) throw new ContainerConfigError(`${at}.name: no volume named "${vm.name}"`);
    const readOnly = vm.readOnly === true;
    let sub = vm.subPath ?? '';
    if (vm.subPathExpr) {
      sub = expandVars(vm.subPathExpr, (name) => env.get(name));
      const problem = localDescendingPathProblem(sub);
      if (problem) throw new ContainerConfigError(`${at}.subPathExpr: ${JSON.stringify(vm.subPathExpr)} expands to ${JSON.stringify(sub)}, which ${problem}`, 'a subPath must stay inside its volume');
    }
    if (!sub) {
      mounts.push({ volume: vm.name, source: volume.source, destination: vm.mountPath, readOnly });
      continue;
    }
    const what = `${at}.${vm.subPathExpr ? 'subPathExpr' : 'subPath'} of volume "${vm.name}"`;
    let fd: number;
    try {
      const rootMode = (await fsp.stat(volume.nodePath)).mode & 0o7777;
      fd = openInside(volume.nodePath, sub, rootMode & 0o777, what);
    } catch (err) {
      if (err instanceof ContainerConfigError) throw err;
      throw new ContainerConfigError(`${what}: ${JSON.stringify(sub)}: ${(err as Error).message}`, 'check the volume and the path inside it');
    }
    const staged = path.join(subPathsDir(podDir), c.name, String(mi));
    try {
      await bindFd(fd, staged);
    } finally {
      fs.closeSync(fd);
    }
    mounts.push({ volume: vm.name, source: path.relative(podDir, staged), destination: vm.mountPath, readOnly });
  }
  return mounts;
}

/** Mount points below a directory, deepest first (mountinfo escapes spaces and such as \NNN). */
function mountsBelow(mountinfo: string, dir: string): string[] {
  return mountinfo.split('\n').map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m.startsWith(dir + '/')).sort((a, b) => b.length - a.length);
}

/** Undo every mount preparePodVolumes made (subPath binds, tmpfs); safe on a half-made or clean pod. */
export async function unmountPodVolumes(podDir: string): Promise<void> {
  // subPath binds first: some are of a tmpfs volume.
  await unmountBelow([subPathsDir(podDir), path.join(podDir, 'volumes')]);
}

/** Unmount whatever is mounted below each directory in turn, deepest first; mounts already gone are fine. */
export async function unmountBelow(dirs: string[]): Promise<void> {
  const mountinfo = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  for (const dir of dirs) {
    for (const m of mountsBelow(mountinfo, dir)) {
      try {
        fsops.umount(m);
      } catch (err) {
        if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'ENOENT') throw err;
      }
    }
  }
}
