import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execPlugin, findPlugin } from './exec.js';
import { CniNetwork, cachedAttachmentsIn, podIPs } from './network.js';
import { CniError, DEFAULT_BIN_DIRS, type CniPluginConf } from './types.js';
import { readdirOrEmpty } from '../common/fsutil.js';

/** host-local's default when the ipam config has no dataDir. */
export const HOST_LOCAL_DEFAULT_DATA_DIR = '/var/lib/cni/networks';

export interface IpamLease {
  ip: string;
  containerId: string;
  /** empty for leases written by host-local before it recorded the interface */
  ifName: string;
  file: string;
  mtimeMs: number;
}

export interface ReleasedLease {
  containerId: string;
  ifName: string;
  /** addresses that were leased to it */
  ips: string[];
  /** cache: full DEL from the cached ADD (veth, portmap and lease); ipam: host-local DEL only; file: lease file removed */
  via: 'cache' | 'ipam' | 'file';
}

const hostLocalPlugins = (network: CniNetwork): CniPluginConf[] => network.config.plugins.filter((p) => p.ipam?.type === 'host-local');

/** host-local keeps its leases in <dataDir>/<network name>/. */
export function hostLocalLeaseDirs(network: CniNetwork): string[] {
  return [...new Set(hostLocalPlugins(network).map((p) => path.join(typeof p.ipam?.dataDir === 'string' ? p.ipam.dataDir : HOST_LOCAL_DEFAULT_DATA_DIR, network.name)))];
}

/** host-local leases of the network: files named by IP holding "<containerId>\r\n<ifName>". */
export async function listLeases(network: CniNetwork): Promise<IpamLease[]> {
  const out: IpamLease[] = [];
  for (const dir of hostLocalLeaseDirs(network)) {
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      // Everything else there (lock, last_reserved_ip.N) is host-local's bookkeeping.
      if (!/^[0-9.]+$/.test(name) && !/^[0-9a-fA-F:]+$/.test(name)) continue;
      if (!name.includes('.') && !name.includes(':')) continue;
      const file = path.join(dir, name);
      try {
        const [text, st] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
        const [containerId = '', ifName = ''] = text.split(/\r?\n/).map((s) => s.trim());
        out.push({ ip: name, containerId, ifName, file, mtimeMs: st.mtimeMs });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
  return out;
}

/**
 * IP leak protection: release what belongs to containers that no longer exist.
 * First every cached attachment of a dead container is DELeted from its cache
 * entry (which also removes its veth and hostPort rules); then any lease still
 * held by a dead container (no cache entry: lost cache, or an ADD killed
 * before its cache write) goes back through host-local DEL, and the lease file
 * is removed if host-local did not. `liveIds` must hold the CNI container id
 * (the pod UUID) of every pod that exists or is being created: anything
 * younger than `graceMs` (default 60 s) is left alone so a pod whose ADD races
 * the scan is not robbed.
 */
export async function releaseStaleLeases(network: CniNetwork, liveIds: Set<string>, opts: { graceMs?: number } = {}): Promise<ReleasedLease[]> {
  const graceMs = opts.graceMs ?? 60_000;
  const now = Date.now();
  const released: ReleasedLease[] = [];
  const leasesBefore = await listLeases(network);
  const ipsOf = (id: string, ifName: string) => leasesBefore.filter((l) => l.containerId === id && (l.ifName === '' || l.ifName === ifName)).map((l) => l.ip);

  const failed: string[] = [];
  for (const entry of await network.cachedAttachments()) {
    if (liveIds.has(entry.containerId)) continue;
    if (now - Date.parse(entry.startedAt) < graceMs) continue;
    try {
      await network.del({ containerId: entry.containerId, ifName: entry.ifName });
      released.push({ containerId: entry.containerId, ifName: entry.ifName, ips: ipsOf(entry.containerId, entry.ifName), via: 'cache' });
    } catch (err) {
      // The others still get their turn; the entry stays for the next GC.
      failed.push((err as Error).message);
    }
  }

  const done = new Set(released.map((r) => `${r.containerId}/${r.ifName}`));
  const stale = (await listLeases(network)).filter((l) => !liveIds.has(l.containerId) && now - l.mtimeMs >= graceMs);
  const groups = new Map<string, IpamLease[]>();
  for (const l of stale) {
    const key = `${l.containerId}/${l.ifName}`;
    groups.set(key, [...(groups.get(key) ?? []), l]);
  }
  for (const [key, leases] of groups) {
    const { containerId, ifName } = leases[0]!;
    let via: ReleasedLease['via'] = 'ipam';
    if (containerId !== '' && ifName !== '') {
      for (const plugin of hostLocalPlugins(network)) {
        try {
          const bin = await findPlugin(network.name, 'host-local', network.binDirs, 'DEL');
          await execPlugin(bin, {
            network: network.name, plugin: 'host-local', command: 'DEL', binDirs: network.binDirs, timeoutMs: 30_000,
            stdin: JSON.stringify({ cniVersion: network.config.cniVersion, name: network.name, ipam: plugin.ipam }),
            env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: containerId, CNI_NETNS: '', CNI_IFNAME: ifName, CNI_ARGS: 'IgnoreUnknown=1', CNI_PATH: network.binDirs.join(':') },
          });
        } catch {
          via = 'file';
        }
      }
    } else {
      via = 'file';
    }
    for (const l of leases) {
      try {
        await fs.rm(l.file);
        via = 'file';
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    if (done.has(key)) continue;
    released.push({ containerId, ifName, ips: leases.map((l) => l.ip), via });
  }
  if (failed.length) throw gcError(network.name, released, failed);
  return released;
}

function gcError(network: string, released: ReleasedLease[], failed: string[]): CniError {
  return new CniError({
    network, command: 'DEL',
    message: `IP-leak GC released ${released.length} attachment(s) but could not DEL ${failed.length}: ${failed.join('; ')}`,
    hint: 'the cache entries stay and the next GC retries them',
  });
}

/**
 * The part of IP-leak GC that needs no network config: every cached
 * attachment in `cacheDir`, of whatever network, whose container is gone is
 * DELeted with the config and result it was ADDed with — so leases, veths and
 * hostPort rules are released even while the conf dir is broken or after the
 * network was renamed or replaced. Same `liveIds`/`graceMs` rules as
 * releaseStaleLeases; one failing DEL does not stop the others (they are
 * thrown together at the end, the entries stay for the next GC).
 */
export async function releaseStaleAttachments(cacheDir: string, liveIds: Set<string>, opts: { binDirs?: readonly string[]; graceMs?: number } = {}): Promise<ReleasedLease[]> {
  const graceMs = opts.graceMs ?? 60_000;
  const now = Date.now();
  const released: ReleasedLease[] = [];
  const failed: string[] = [];
  // A writer killed inside atomicWrite left its temporary file: none is still being written after the grace period.
  for (const n of await readdirOrEmpty(cacheDir)) {
    if (!n.startsWith('.') || !n.endsWith('.tmp')) continue;
    const file = path.join(cacheDir, n);
    const stat = await fs.stat(file).catch(() => undefined);
    if (stat && now - stat.mtimeMs >= graceMs) await fs.rm(file, { force: true });
  }
  for (const entry of await cachedAttachmentsIn(cacheDir)) {
    if (liveIds.has(entry.containerId) || now - Date.parse(entry.startedAt) < graceMs) continue;
    try {
      await CniNetwork.fromConfig(entry.config, { binDirs: opts.binDirs ?? DEFAULT_BIN_DIRS, cacheDir }).del({ containerId: entry.containerId, ifName: entry.ifName });
      released.push({ containerId: entry.containerId, ifName: entry.ifName, ips: podIPs(entry.result), via: 'cache' });
    } catch (err) {
      failed.push((err as Error).message);
    }
  }
  if (failed.length) throw gcError('*', released, failed);
  return released;
}
