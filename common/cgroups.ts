/**
 * A process's cgroups as this process sees them mounted (v1 hierarchies, the
 * v2 one, or both on a hybrid host), and the usage counters the kubelet's
 * Summary API reports, read from them.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export interface CgroupDir {
  /** v1: the hierarchy's controllers (e.g. ['cpu'], ['memory'], ['name=systemd']); v2: [] */
  controllers: string[];
  version: 1 | 2;
  /** the cgroup's path in its hierarchy, e.g. /stevedore.slice/stevedore-….slice/stevedore-…-web.service */
  path: string;
  /** the cgroup's folder under its mount */
  dir: string;
}

/** Every cgroup `pid` is in, as folders under the cgroup mounts of this mount namespace; [] if the process is gone. */
export function cgroupDirsOf(pid: number): CgroupDir[] {
  let membership: string, mountinfo: string;
  try {
    membership = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  // mountinfo: ... mountpoint (5th) ... " - " fstype source superoptions
  const mounts = mountinfo.split('\n').map((line) => {
    const [pre, post] = line.split(' - ');
    const [fstype, , superOptions] = (post ?? '').split(' ');
    return { dir: pre?.split(' ')[4] ?? '', fstype, options: (superOptions ?? '').split(',') };
  }).filter((m) => m.fstype === 'cgroup' || m.fstype === 'cgroup2');
  const dirs: CgroupDir[] = [];
  for (const line of membership.split('\n').filter(Boolean)) {
    const [, controllers, cgPath] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (cgPath === undefined) continue;
    const names = controllers ? controllers.split(',') : [];
    const mount = names.length === 0
      ? mounts.find((m) => m.fstype === 'cgroup2')
      : mounts.find((m) => m.fstype === 'cgroup' && names.every((c) => m.options.includes(c)));
    if (mount) dirs.push({ controllers: names, version: names.length ? 1 : 2, path: cgPath, dir: path.join(mount.dir, cgPath) });
  }
  return dirs;
}

export interface CgroupUsage {
  /** CPU time used since the cgroup was made, ns */
  cpuUsageNs: number;
  /** memory charged to the cgroup, page cache included */
  memoryUsageBytes: number;
  /** usage minus inactive file pages: what the kubelet evicts and `kubectl top` shows */
  workingSetBytes: number;
  /** anonymous memory and swap cache */
  rssBytes: number;
}

const readNumber = (file: string): number | undefined => {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
};

function readStat(file: string): Map<string, number> {
  const out = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

/**
 * The usage of the cgroup `pid` is in, as cAdvisor reads it (see
 * cgroupUsageIn). Undefined when the process is gone or no counter of its own
 * cgroup is there. `isOwn` says which v1 folder is the process's own cgroup
 * where the unit's path is not the test (a container engine's cgroup names the
 * container's ID, and hierarchies may sit under different parents).
 */
export function cgroupUsageOf(pid: number, isOwn?: (dir: CgroupDir) => boolean): CgroupUsage | undefined {
  return cgroupUsageIn(cgroupDirsOf(pid), { isOwn });
}

/** The unit's own cgroup path: the v2 one, else name=systemd's (what systemd placed the process in). */
const unitPathOf = (dirs: CgroupDir[]) => dirs.find((d) => d.version === 2)?.path ?? dirs.find((d) => d.controllers.includes('name=systemd'))?.path;

/**
 * The folders of unit `unit`, a sibling in the same slice of the unit whose
 * folders `dirs` are (the kvm stage1's VM unit beside an app's proxy unit):
 * derived without asking systemd. A v1 hierarchy where the known unit has no
 * folder of its own (the process sits in its slice's) is left out: the sibling
 * has none there either, as far as can be told.
 */
export function siblingCgroupDirs(dirs: CgroupDir[], unit: string): CgroupDir[] {
  const unitPath = unitPathOf(dirs);
  if (!unitPath) return [];
  const sibling = path.posix.join(path.posix.dirname(unitPath), unit);
  return dirs.filter((d) => d.path === unitPath).map((d) => ({ ...d, path: sibling, dir: path.join(d.dir, '..', unit) }));
}

/**
 * The usage of the cgroup whose folders are `dirs`, as cAdvisor reads it: CPU
 * from v2 cpu.stat (kept for every cgroup2 folder, controllers enabled or not,
 * so it is per unit even on a hybrid host) else v1 cpuacct; memory from v1
 * memory else v2. A v1 hierarchy where the process sits higher than its unit's
 * own cgroup (systemd realises cpuacct only where it is co-mounted with cpu,
 * say) would count the whole slice or node, so it is not used. With no memory
 * controller of its own (a unit without memory accounting), `processMemory`
 * asks for the resident memory of its processes instead (VmRSS of each in
 * cgroup.procs, which has no page cache: working set = rss = usage). Undefined
 * when no counter of its own cgroup is there (the cgroup is gone).
 */
export function cgroupUsageIn(dirs: CgroupDir[], opts: { processMemory?: boolean; isOwn?: (dir: CgroupDir) => boolean } = {}): CgroupUsage | undefined {
  const v2 = dirs.find((d) => d.version === 2);
  const unitPath = unitPathOf(dirs);
  const own = (c: string) => dirs.find((d) => d.version === 1 && d.controllers.includes(c) && (opts.isOwn ? opts.isOwn(d) : d.path === unitPath))?.dir;
  let cpuUsageNs: number | undefined;
  const usec = v2 ? readStat(path.join(v2.dir, 'cpu.stat')).get('usage_usec') : undefined;
  if (usec !== undefined) cpuUsageNs = usec * 1000;
  const cpuacct = own('cpuacct');
  if (cpuUsageNs === undefined && cpuacct) cpuUsageNs = readNumber(path.join(cpuacct, 'cpuacct.usage'));
  let memory: { usage: number; inactiveFile: number; rss: number } | undefined;
  const mem1 = own('memory');
  const usage1 = mem1 ? readNumber(path.join(mem1, 'memory.usage_in_bytes')) : undefined;
  if (mem1 && usage1 !== undefined) {
    const stat = readStat(path.join(mem1, 'memory.stat'));
    memory = { usage: usage1, inactiveFile: stat.get('total_inactive_file') ?? stat.get('inactive_file') ?? 0, rss: stat.get('total_rss') ?? stat.get('rss') ?? 0 };
  } else if (v2) {
    const usage2 = readNumber(path.join(v2.dir, 'memory.current'));
    if (usage2 !== undefined) {
      const stat = readStat(path.join(v2.dir, 'memory.stat'));
      memory = { usage: usage2, inactiveFile: stat.get('inactive_file') ?? 0, rss: stat.get('anon') ?? 0 };
    }
  }
  const procsDir = v2?.dir ?? dirs.find((d) => d.path === unitPath)?.dir;
  if (!memory && opts.processMemory && procsDir) {
    const rss = residentBytesOf(path.join(procsDir, 'cgroup.procs'));
    if (rss !== undefined) memory = { usage: rss, inactiveFile: 0, rss };
  }
  if (cpuUsageNs === undefined || !memory) return undefined;
  return {
    cpuUsageNs,
    memoryUsageBytes: memory.usage,
    workingSetBytes: Math.max(0, memory.usage - memory.inactiveFile),
    rssBytes: memory.rss,
  };
}

/** The summed VmRSS of the processes a cgroup.procs file lists; undefined if the file cannot be read. */
function residentBytesOf(procsFile: string): number | undefined {
  let pids: string[];
  try {
    pids = readFileSync(procsFile, 'utf8').split('\n').filter(Boolean);
  } catch {
    return undefined;
  }
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch { /* exited meanwhile */ }
  }
  return total;
}
