import * as fs from 'node:fs/promises';
import { FileLock } from '../common/fsutil.js';
import type { SystemdClient, UnitListEntry } from '../common/systemd.js';
import { podPaths, unitNames, type AppManifest, type ExitRecord, type RuntimePodManifest } from '../stage1/contract.js';
import { readVmRecord } from '../stage1/kvm.js';
import { podNetworkFrom } from './network.js';
import { PodFileCache } from './pod-cache.js';
import type { PodLocation } from './pod-store.js';
import { terminationOf, type AppStatus, type PodState, type PodStatus } from './status.js';

const ACTIVE = new Set(['active', 'activating', 'deactivating', 'reloading']);

export async function writeTimestamp(file: string): Promise<void> {
  await fs.writeFile(file, `${BigInt(Date.now()) * 1_000_000n}\n`);
}

/**
 * The state of units, as one ListUnitsByPatterns call reads it: listing many
 * pods asks systemd once for all units instead of once per app.
 */
export type UnitStates = Map<string, UnitListEntry>;

export async function readUnitStates(systemd: SystemdClient, uuids?: string[]): Promise<UnitStates> {
  const patterns = uuids ? uuids.map((u) => unitNames.podPattern(u)) : [unitNames.allPattern];
  return new Map((await systemd.listUnitsByPatterns(patterns)).map((u) => [u.name, u]));
}

async function appStatus(cache: PodFileCache, systemd: SystemdClient | undefined, units: UnitStates | undefined, loc: PodLocation, manifest: RuntimePodManifest, app: AppManifest, launching: boolean): Promise<AppStatus> {
  const unit = unitNames.app(manifest.uuid, app.name);
  const records = await cache.exitRecords(loc.dir, app.name);
  const base: AppStatus = { name: app.name, image: app.image, unit, state: 'unknown', restartCount: 0 };
  const live = systemd && units && (loc.state === 'run' || loc.state === 'prepared');
  const u = live ? units.get(unit) : undefined;
  const active = u !== undefined && u.loadState === 'loaded' && ACTIVE.has(u.activeState);
  // Only a live unit has properties worth a round trip (MainPID, NRestarts, start time).
  const s = active ? await systemd!.unitProperties(unit, 'Service') : undefined;
  const terminations = records.map(terminationOf);
  if (u && active) {
    const restartCount = typeof s?.NRestarts === 'number' ? s.NRestarts : records.length;
    const lastTermination = terminations.at(-1);
    if (u.subState === 'auto-restart') return { ...base, state: 'waiting', reason: 'CrashLoopBackOff', restartCount, lastTermination };
    const startedUs = Number(s?.ExecMainStartTimestamp ?? 0);
    return { ...base, state: 'running', mainPid: Number(s?.MainPID ?? 0) || undefined, restartCount, lastTermination, startedAt: startedUs ? Math.floor(startedUs / 1000) : undefined };
  }
  const last = terminations.at(-1);
  if (!last) {
    // Units not started yet by a live launcher: waiting, not a failed launch (a Never pod would be Failed for good).
    if (launching) return { ...base, state: 'waiting' };
    if (loc.state === 'run' || loc.state === 'exited-garbage') return { ...base, state: 'exited', reason: 'LaunchInterrupted', exitCode: 255 };
    return { ...base, state: loc.state === 'prepared' ? 'waiting' : 'unknown' };
  }
  return {
    ...base,
    state: 'exited',
    reason: last.reason,
    exitCode: last.exitCode,
    signal: last.signal,
    finishedAt: last.finishedAt,
    restartCount: records.length - 1,
    lastTermination: terminations.at(-2),
  };
}

function podStateOf(loc: PodLocation, apps: AppStatus[]): PodState {
  switch (loc.state) {
    case 'embryo': return FileLock.isFree(loc.dir) ? 'aborted-prepare' : 'embryo';
    case 'prepare': return FileLock.isFree(loc.dir) ? 'aborted-prepare' : 'preparing';
    case 'prepared': return 'prepared';
    case 'run': return apps.some((a) => a.state === 'running' || a.state === 'waiting') ? 'running' : 'exited';
    case 'exited-garbage': return 'deleting';
    case 'garbage': return 'garbage';
  }
}

/**
 * A pod's full status from its directory, its exit records and (when live)
 * its units; pass `units` when reading many pods (one systemd call for all)
 * and a `cache` when reading them again and again (one stat per folder).
 */
export async function readPodStatus(systemd: SystemdClient | undefined, loc: PodLocation, units?: UnitStates, cache = new PodFileCache()): Promise<PodStatus> {
  const snap = await cache.podDir(loc.dir);
  const manifest = snap.manifest;
  const unitStates = units ?? (systemd && manifest ? await readUnitStates(systemd, [manifest.uuid]) : undefined);
  const launching = loc.state === 'run' && snap.launching && !FileLock.isFree(loc.dir);
  const apps = manifest ? await Promise.all(manifest.apps.map((a) => appStatus(cache, systemd, unitStates, loc, manifest, a, launching))) : [];
  const md = manifest?.pod.metadata;
  const networks = podNetworkFrom(snap.networkRaw);
  const vm = manifest?.stage1 === 'kvm' ? await readVmRecord(loc.dir) : undefined;
  const ms = (v: bigint | undefined) => (v === undefined ? undefined : Number(v / 1_000_000n));
  return {
    uuid: loc.uuid,
    state: podStateOf(loc, apps),
    stage1: manifest?.stage1,
    name: md?.name,
    namespace: md ? md.namespace ?? 'default' : undefined,
    uid: md?.uid,
    labels: md?.labels,
    annotations: md?.annotations,
    createdAt: ms(snap.createdNs),
    startedAt: ms(snap.startedNs),
    gcMarkedAt: ms(snap.gcMarkedNs),
    slice: manifest ? unitNames.slice(manifest.uuid) : undefined,
    ...(networks ? { podIPs: networks[0]!.ips, networks } : {}),
    ...(vm ? { vm: { accel: vm.accel, accelReason: vm.accelReason, memoryMiB: vm.memoryMiB, cpus: vm.cpus, kernel: vm.kernel } } : {}),
    apps,
  };
}
