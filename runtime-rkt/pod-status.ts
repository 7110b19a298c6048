import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileSync } from 'node:fs';
import { FileLock } from '../common/fsutil.js';
import type { SystemdClient, UnitListEntry } from '../common/systemd.js';
import { unitNames, type AppManifest, type ExitRecord, type RuntimePodManifest } from '../stage1/contract.js';
import { podSlice } from '../stage1/devices.js';
import { readVmRecord, type VmRecord } from '../stage1/kvm.js';
import { podNetworkFrom } from './network.js';
import type { FolderChanges } from './folder-changes.js';
import { PodFileCache, type PodDirSnapshot } from './pod-cache.js';
import type { PodLocation } from './pod-store.js';
import { terminationOf, type AppStatus, type PodState, type PodStatus } from './status.js';

const ACTIVE = new Set(['active', 'activating', 'deactivating', 'reloading']);

/** A lifecycle timestamp (ns) beside the pod's folder state; synchronous, as the moves it goes with (pod-store.ts). */
export function writeTimestamp(file: string): void {
  writeFileSync(file, `${BigInt(Date.now()) * 1_000_000n}\n`);
}

/**
 * The state of units, as one ListUnitsByPatterns call reads it: listing many
 * pods asks systemd once for all units instead of once per app.
 */
export type UnitStates = Map<string, UnitListEntry>;

export async function readUnitStates(systemd: SystemdClient, uuids?: string[]): Promise<UnitStates> {
  const patterns = uuids ? uuids.flatMap((u) => unitNames.podPatterns(u)) : unitNames.allPatterns;
  return new Map((await systemd.listUnitsByPatterns(patterns)).map((u) => [u.name, u]));
}

/** What a live app's unit says beyond the unit listing. */
interface LiveFacts { mainPid?: number; nRestarts?: number; startedUs: number }

/**
 * Caches for readers that list many pods again and again (the agent's sync
 * passes, the api-service): the pod files (PodFileCache), the few properties
 * of live units, and the last status of each pod. A status is reused while
 * everything it was computed from is unchanged: the same file snapshots
 * (PodFileCache keeps the same objects while a folder's mtime holds) and the
 * same unit states. A live unit's MainPID, NRestarts and start time change
 * only when the app's process exits — which writes an exit record, changing
 * the exits folder — or when the unit changes state, so they are refetched
 * only then.
 */
export class PodStatusCache {
  readonly files: PodFileCache;
  private readonly facts = new Map<string, { uuid: string; key: string; records: ExitRecord[]; facts: LiveFacts }>();
  private readonly statuses = new Map<string, { inputs: unknown[]; status: PodStatus }>();

  /** `folders`: watch pod folders instead of stat-ing them on every read (see PodFileCache). */
  constructor(opts: { folders?: FolderChanges } = {}) {
    this.files = new PodFileCache(opts.folders);
  }

  async liveFacts(systemd: SystemdClient, unit: string, state: UnitListEntry, records: ExitRecord[]): Promise<LiveFacts> {
    const key = `${state.activeState}/${state.subState}`;
    const hit = this.facts.get(unit);
    if (hit && hit.key === key && hit.records === records) return hit.facts;
    const p = await systemd.unitPropertyValues(unit, 'Service', ['MainPID', 'NRestarts', 'ExecMainStartTimestamp']);
    const facts: LiveFacts = {
      mainPid: Number(p.MainPID ?? 0) || undefined,
      nRestarts: typeof p.NRestarts === 'number' ? p.NRestarts : undefined,
      startedUs: Number(p.ExecMainStartTimestamp ?? 0),
    };
    this.facts.set(unit, { uuid: unitNames.parse(unit)?.uuid ?? '', key, records, facts });
    return facts;
  }

  /** The status computed last from exactly these inputs, if any. */
  reuse(dir: string, inputs: unknown[]): PodStatus | undefined {
    const hit = this.statuses.get(dir);
    return hit && hit.inputs.length === inputs.length && hit.inputs.every((v, i) => v === inputs[i]) ? hit.status : undefined;
  }

  remember(dir: string, inputs: unknown[], status: PodStatus): void {
    this.statuses.set(dir, { inputs, status });
  }

  /** Forget pods that are no longer where they were (moved or removed). */
  retain(liveDirs: Iterable<string>): void {
    const live = new Set(liveDirs);
    this.files.retain(live);
    for (const dir of this.statuses.keys()) if (!live.has(dir)) this.statuses.delete(dir);
    const uuids = new Set([...live].map((dir) => path.basename(dir)));
    for (const [unit, entry] of this.facts) if (!uuids.has(entry.uuid)) this.facts.delete(unit);
  }
}

function appStatus(app: AppManifest, unit: string, records: ExitRecord[], u: UnitListEntry | undefined, facts: LiveFacts | undefined, locState: PodLocation['state'], launching: boolean): AppStatus {
  const base: AppStatus = { name: app.name, image: app.image, unit, state: 'unknown', restartCount: 0 };
  const terminations = records.map(terminationOf);
  if (u && facts) {
    const restartCount = facts.nRestarts ?? records.length;
    const lastTermination = terminations.at(-1);
    // Its launcher is still at work: the unit may be up while its process waits at the network gate (stage1/network-gate.ts).
    if (launching) return { ...base, state: 'waiting', reason: 'ContainerCreating', restartCount, lastTermination };
    if (u.subState === 'auto-restart') return { ...base, state: 'waiting', reason: 'CrashLoopBackOff', restartCount, lastTermination };
    // Not yet started (a Type=notify unit before READY=1: a kvm pod's app while its VM boots).
    if (u.activeState === 'activating' && u.subState === 'start') return { ...base, state: 'waiting', reason: 'ContainerCreating', restartCount, lastTermination };
    // Held in its ExecCondition= until the init container before it is done (init-gate.ts).
    if (u.activeState === 'activating' && u.subState === 'condition') return { ...base, state: 'waiting', reason: 'PodInitializing', restartCount, lastTermination };
    return { ...base, state: 'running', mainPid: facts.mainPid, restartCount, lastTermination, startedAt: facts.startedUs ? Math.floor(facts.startedUs / 1000) : undefined };
  }
  const last = terminations.at(-1);
  if (!last) {
    // Units not started yet by a live launcher: waiting, not a failed launch (a Never pod would be Failed for good).
    if (launching) return { ...base, state: 'waiting' };
    if (locState === 'run' || locState === 'exited-garbage') return { ...base, state: 'exited', reason: 'LaunchInterrupted', exitCode: 255 };
    return { ...base, state: locState === 'prepared' ? 'waiting' : 'unknown' };
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

/** The kubelet reads at most 4 KiB of a termination message. */
const MAX_TERMINATION_MESSAGE = 4096;

/** Termination messages of the apps that exited for good: what the exit recorder kept from their last run. */
async function readTerminationMessages(dir: string, manifest: RuntimePodManifest, apps: AppStatus[], records: ExitRecord[][]): Promise<void> {
  await Promise.all(manifest.apps.map(async (app, i) => {
    const a = apps[i]!;
    const last = records[i]?.at(-1);
    if (!app.terminationMessagePath || a.state !== 'exited' || !last) return;
    const fh = await fs.open(path.join(dir, 'apps', app.name, 'exits', `msg-${last.invocation}`), 'r').catch(() => undefined);
    if (!fh) return;
    try {
      const buf = Buffer.alloc(MAX_TERMINATION_MESSAGE);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead) apps[i] = { ...a, terminationMessage: buf.subarray(0, bytesRead).toString('utf8') };
    } finally {
      await fh.close();
    }
  }));
}

/** The reason of an app that will never start: an init container before it failed for good (restartPolicy Never). */
const INIT_FAILED = 'PodInitializing';

/**
 * Under restartPolicy Never a failed init container ends the pod: the apps
 * behind it were skipped by their gate (init-gate.ts) and never ran, so they
 * wait (PodInitializing, as the kubelet shows them) rather than count as a
 * launch that went wrong, and the pod is exited.
 */
function holdBehindFailedInit(manifest: RuntimePodManifest, apps: AppStatus[]): void {
  if (manifest.restartPolicy !== 'Never') return;
  const failedAt = manifest.apps.findIndex((a, i) => a.init === 'once' && apps[i]!.state === 'exited' && apps[i]!.exitCode !== 0 && apps[i]!.reason !== 'LaunchInterrupted');
  if (failedAt < 0) return;
  for (let i = failedAt + 1; i < apps.length; i++) {
    const a = apps[i]!;
    if (a.state !== 'running' && a.finishedAt === undefined) apps[i] = { ...a, state: 'waiting', reason: INIT_FAILED, exitCode: undefined, signal: undefined };
  }
}

function podStateOf(loc: PodLocation, apps: AppStatus[]): PodState {
  switch (loc.state) {
    case 'embryo': return FileLock.isFree(loc.dir) ? 'aborted-prepare' : 'embryo';
    case 'prepare': return FileLock.isFree(loc.dir) ? 'aborted-prepare' : 'preparing';
    case 'prepared': return 'prepared';
    case 'run': return apps.some((a) => a.state === 'running' || (a.state === 'waiting' && a.reason !== INIT_FAILED)) ? 'running' : 'exited';
    case 'exited-garbage': return 'deleting';
    case 'garbage': return 'garbage';
  }
}

/**
 * A kvm pod's VM record (stage1/kvm/vm.json), once per pod folder snapshot:
 * prepare writes it (atomically) before the pod leaves its prepare folder and
 * nothing changes it afterwards, so only a missing record is looked for again.
 */
const vmRecords = new WeakMap<PodDirSnapshot, VmRecord>();
async function vmRecordOf(snap: PodDirSnapshot, dir: string): Promise<VmRecord | undefined> {
  let vm = vmRecords.get(snap);
  if (!vm && (vm = await readVmRecord(dir))) vmRecords.set(snap, vm);
  return vm;
}

/** Each app's unit name, once per manifest object (a cached snapshot keeps its manifest). */
const appUnits = new WeakMap<RuntimePodManifest, string[]>();
function appUnitsOf(manifest: RuntimePodManifest): string[] {
  let units = appUnits.get(manifest);
  if (!units) appUnits.set(manifest, (units = manifest.apps.map((app) => unitNames.app(manifest.uuid, app.name))));
  return units;
}

/**
 * A pod's full status from its directory, its exit records and (when live)
 * its units; pass `units` when reading many pods (one systemd call for all)
 * and a `cache` when reading them again and again (one stat per folder, and
 * the previous status back when nothing it depends on changed).
 */
export async function readPodStatus(systemd: SystemdClient | undefined, loc: PodLocation, units?: UnitStates, cache = new PodStatusCache()): Promise<PodStatus> {
  const snap = await cache.files.podDir(loc.dir);
  const manifest = snap.manifest;
  const unitStates = units ?? (systemd && manifest ? await readUnitStates(systemd, [manifest.uuid]) : undefined);
  const launching = loc.state === 'run' && snap.launching && !FileLock.isFree(loc.dir);
  const live = systemd !== undefined && unitStates !== undefined && (loc.state === 'run' || loc.state === 'prepared');
  const inputs: unknown[] = [snap, loc.state, launching];
  const appUnitNames = manifest ? appUnitsOf(manifest) : [];
  const perApp = manifest ? await Promise.all(manifest.apps.map(async (app, i) => {
    const unit = appUnitNames[i]!;
    const records = await cache.files.exitRecords(loc.dir, app.name);
    const u = live ? unitStates.get(unit) : undefined;
    const active = u !== undefined && u.loadState === 'loaded' && ACTIVE.has(u.activeState);
    // Only a live unit has properties worth a round trip (MainPID, NRestarts, start time).
    const facts = active ? await cache.liveFacts(systemd!, unit, u, records) : undefined;
    inputs.push(records, facts, active ? u.subState : undefined);
    return { app, unit, records, u: active ? u : undefined, facts };
  })) : [];
  const vm = manifest?.stage1 === 'kvm' ? await vmRecordOf(snap, loc.dir) : undefined;
  inputs.push(vm);
  // embryo/prepare states depend on a lock nobody can see changing: never reused.
  const reusable = loc.state !== 'embryo' && loc.state !== 'prepare';
  const cached = reusable ? cache.reuse(loc.dir, inputs) : undefined;
  if (cached) return cached;
  const apps = perApp.map((a) => appStatus(a.app, a.unit, a.records, a.u, a.facts, loc.state, launching));
  if (manifest) holdBehindFailedInit(manifest, apps);
  if (manifest) await readTerminationMessages(loc.dir, manifest, apps, perApp.map((a) => a.records));
  const md = manifest?.pod.metadata;
  const networks = podNetworkFrom(snap.networkRaw);
  const ms = (v: bigint | undefined) => (v === undefined ? undefined : Number(v / 1_000_000n));
  const status: PodStatus = {
    uuid: loc.uuid,
    state: podStateOf(loc, apps),
    handler: manifest?.stage1,
    hostNetwork: manifest ? manifest.stage1 === 'fly' || manifest.pod.spec.hostNetwork === true : undefined,
    name: md?.name,
    namespace: md ? md.namespace ?? 'default' : undefined,
    uid: md?.uid,
    labels: md?.labels,
    annotations: md?.annotations,
    createdAt: ms(snap.createdNs),
    startedAt: ms(snap.startedNs),
    gcMarkedAt: ms(snap.gcMarkedNs),
    slice: manifest ? podSlice(manifest) : undefined,
    ...(networks ? { podIPs: networks[0]!.ips, networks } : {}),
    ...(vm ? { vm: { accel: vm.accel, accelReason: vm.accelReason, memoryMiB: vm.memoryMiB, cpus: vm.cpus, kernel: vm.kernel } } : {}),
    apps,
  };
  if (reusable) cache.remember(loc.dir, inputs, status);
  return status;
}
