import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { errnoCode } from '../common/errors.js';
import { killQuietly, sleep } from './proc.js';

interface CgroupMount {
  mountPoint: string;
  /** The cgroup path this mount shows at mountPoint ("/" unless we sit in a cgroup namespace). */
  root: string;
  version: 1 | 2;
  /** v1: controllers and name=… of the hierarchy. */
  controllers: Set<string>;
}

async function cgroupMounts(): Promise<CgroupMount[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const mounts: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const f = pre.split(' ');
    const [fstype, , superOpts = ''] = post.split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    mounts.push({
      mountPoint: f[4] ?? '',
      root: f[3] ?? '/',
      version: fstype === 'cgroup2' ? 2 : 1,
      controllers: new Set(superOpts.split(',')),
    });
  }
  return mounts;
}

/**
 * The directory of this process's cgroup in every mounted hierarchy (v1
 * controllers, name=systemd, and cgroup2). Hierarchies the process belongs to
 * but that are not mounted are skipped: nothing could clean them up anyway.
 */
export async function ownCgroupDirs(): Promise<string[]> {
  const mounts = await cgroupMounts();
  const lines = (await fs.readFile('/proc/self/cgroup', 'utf8')).split('\n').filter(Boolean);
  const dirs: string[] = [];
  for (const line of lines) {
    const [id, controllerList = '', ...rest] = line.split(':');
    const cgPath = rest.join(':');
    const mount =
      id === '0'
        ? mounts.find((m) => m.version === 2)
        : mounts.find((m) => m.version === 1 && controllerList.split(',').every((c) => m.controllers.has(c)));
    if (!mount) continue;
    const rel = path.posix.relative(mount.root, cgPath);
    // A path outside the mount's root cannot be reached through this mount.
    if (rel.startsWith('..')) continue;
    const dir = path.join(mount.mountPoint, rel);
    if (!dirs.includes(dir)) dirs.push(dir);
  }
  return dirs;
}

/** v1 cpuset refuses tasks until cpus and mems are set; inherit the parent's. */
async function initCpuset(dir: string): Promise<void> {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    const parentValue = await fs.readFile(path.join(path.dirname(dir), file), 'utf8').catch(() => undefined);
    if (parentValue === undefined) return; // not a cpuset hierarchy
    await fs.writeFile(path.join(dir, file), parentValue.trim() || '\n');
  }
}

/** Creates `<parent>/<name>` in each parent dir; returns the created dirs. */
export async function createCgroups(parents: string[], name: string): Promise<string[]> {
  const created: string[] = [];
  for (const parent of parents) {
    const dir = path.join(parent, name);
    await fs.mkdir(dir);
    created.push(dir);
    await initCpuset(dir);
  }
  return created;
}

/** Every directory of the tree, deepest first. */
async function subtreeDepthFirst(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const e of entries) if (e.isDirectory()) out.push(...(await subtreeDepthFirst(path.join(dir, e.name))));
  out.push(dir);
  return out;
}

/** Host PIDs of every process anywhere in the tree. */
export async function tasksInTree(dir: string): Promise<number[]> {
  const pids = new Set<number>();
  for (const d of await subtreeDepthFirst(dir)) {
    const text = await fs.readFile(path.join(d, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const p of text.split('\n').filter(Boolean)) pids.add(Number(p));
  }
  return [...pids];
}

/**
 * Kills whatever is still in the tree (only processes the sandbox put there)
 * and removes it depth-first. rmdir fails with EBUSY while exiting tasks are
 * still being drained, so retry for a little while.
 */
export async function removeCgroupTree(dir: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const pid of await tasksInTree(dir)) killQuietly(pid);
    let busy: unknown;
    for (const d of await subtreeDepthFirst(dir)) {
      try {
        await fs.rmdir(d);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        busy = err;
      }
    }
    if (busy === undefined) return;
    if (Date.now() > deadline) throw busy;
    await sleep(20);
  }
}
