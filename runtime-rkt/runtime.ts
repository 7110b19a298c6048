import * as fs from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { ContainerConfigError, UserError, errnoCode } from '../common/errors.js';
import { ImageNotFound } from '../runtime-api/errors.js';
import { exists, fsyncFile, readJsonIfExists } from '../common/fsutil.js';
import { rmSync, writeFileSync } from 'node:fs';
import { createLogger } from '../common/log.js';
import { runCaptured } from '../common/run-captured.js';
import { crashPoint } from '../common/failpoint.js';
import { prop, SystemdClient } from '../common/systemd.js';
import { PODS_SLICE, podPaths, unitNames, type EnterCommand, type PreparedPod, type RuntimePodManifest, type Stage1Name } from '../stage1/contract.js';
import { deviceAllowListProperties, podSlice } from '../stage1/devices.js';
import { stage1For as stage1Of, type Stage1 } from '../stage1/index.js';
import type { KvmAccelMode } from '../stage1/kvm/accel.js';
import { ImageStore } from './image/store.js';
import type { ImageLimits } from '../runtime-api/image-limits.js';
import { imageStoreDir, podStoreDir } from './data-dir.js';
import type { Pod } from '../runtime-api/pod-spec.js';
import { PodStore, tryLock, type PodLocation } from './pod-store.js';
import { PodStatusCache, readPodStatus, readUnitStates, writeTimestamp } from './pod-status.js';
import { createNetworkGate, releaseNetworkGate } from '../stage1/network-gate.js';
import {
  addToNetwork, attachPod, detachPod, loadNetwork, needsPodNetwork, netnsPath, recordAttachment, releaseLeases, writeAttachment,
  type PodNetworkOptions, type PodNetworkRecord,
} from './network.js';
import type { CniNetwork } from '../cni/index.js';
import { openPortTarget } from '../common/netns-dial.js';
import { processStartTime } from '../common/proc.js';
import type { PortForwardTarget } from '../runtime-api/streams.js';
import { attachConsole } from './attach.js';
import { allContainers, fillPodIPs, preparePodDir, unmountPodRootfs } from './prepare.js';
import { checkRuntimeEnv, usesPodIP } from '../runtime-api/pod-env.js';
import { unmountBelow, unmountPodVolumes } from './volumes.js';
import type { ClusterDnsConfig } from './network.js';
import { seccompRootDir } from './security.js';
import type { PodStatus } from './status.js';
import { appProperties, sliceProperties } from './units.js';
import { startExec, type EnterPlan, type ExecOptions, type ExecProcess } from './exec.js';

const log = createLogger('runtime-rkt');

export interface RktRuntimeOptions {
  /** Root of all on-disk state (pods/, images/). */
  dataDir: string;
  /** D-Bus address of the node's systemd; default: the system bus. */
  dbusAddress?: string;
  defaultStage1?: Stage1Name;
  restartDelayMs?: number;
  /** CNI pod network for namespaces pods that are not hostNetwork; 'none' (default): loopback only. */
  network?: PodNetworkOptions | 'none';
  /** kvm pods: hardware KVM if a boot probe passes (auto), only hardware (kvm: refuse otherwise), or TCG emulation. */
  kvmAccel?: KvmAccelMode;
  /** Caps on image pulls and imports (image/limits.ts); unset ones are the defaults. */
  imageLimits?: Partial<ImageLimits>;
  /** Cluster DNS for pods' resolv.conf (kubelet's --cluster-dns/--cluster-domain); unset: ClusterFirst falls back to the node's. */
  clusterDns?: ClusterDnsConfig;
}

export interface RunOptions {
  stage1?: Stage1Name;
}

/**
 * runtime-rkt's stage0: prepares pods on disk and hands them to a stage1,
 * which runs them as systemd units. Every operation is idempotent and safe to
 * interrupt: the next call of reconcile() finishes or undoes what a killed
 * process left (aborted prepares, interrupted launches, half-removed pods).
 */
export class RktRuntime {
  readonly pods: PodStore;
  readonly images: ImageStore;
  private systemdClient: Promise<SystemdClient> | undefined;
  /** Pod files already read, for callers that list pods over and over (the agent's sync passes). */
  private readonly statusCache = new PodStatusCache();

  private constructor(readonly options: Required<Omit<RktRuntimeOptions, 'dbusAddress' | 'imageLimits' | 'clusterDns'>> & { dbusAddress?: string; imageLimits?: Partial<ImageLimits>; clusterDns?: ClusterDnsConfig }) {
    this.pods = new PodStore(podStoreDir(options.dataDir));
    this.images = new ImageStore(imageStoreDir(options.dataDir), { limits: options.imageLimits });
  }

  static async open(opts: RktRuntimeOptions): Promise<RktRuntime> {
    const rt = new RktRuntime({ defaultStage1: 'namespaces', restartDelayMs: 1000, network: 'none', kvmAccel: 'auto', ...opts });
    await fs.mkdir(opts.dataDir, { recursive: true, mode: 0o711 });
    await rt.pods.init();
    return rt;
  }

  /** One instance per stage1: they keep per-container caches (the namespaces stage1's probe enter targets). */
  private readonly stage1s = new Map<Stage1Name, Stage1>();

  private stage1For(name: Stage1Name): Stage1 {
    let stage1 = this.stage1s.get(name);
    if (!stage1) this.stage1s.set(name, (stage1 = stage1Of(name, { kvmAccel: this.options.kvmAccel })));
    return stage1;
  }

  systemd(): Promise<SystemdClient> {
    this.systemdClient ??= SystemdClient.connect(this.options.dbusAddress).then(async (c) => {
      await c.subscribe();
      // Before any pod starts under it (see PODS_SLICE); idempotent, so every connection sets it again.
      await c.setUnitProperties(PODS_SLICE, true, deviceAllowListProperties()).catch((err) => {
        c.close();
        throw new UserError(`could not set the containers' device allow-list on ${PODS_SLICE}: ${(err as Error).message}`, { hint: 'no pod can start without it; check that systemd answers on D-Bus and supports DevicePolicy= (systemd 240 or later)' });
      });
      return c;
    });
    return this.systemdClient;
  }

  async close(): Promise<void> {
    if (this.systemdClient) (await this.systemdClient.catch(() => undefined))?.close();
  }

  /** Prepare and start a pod; returns its UUID once every app's unit has started. */
  async runPod(pod: Pod, opts: RunOptions = {}): Promise<string> {
    const stage1Name = opts.stage1 ?? this.options.defaultStage1;
    const stage1 = this.stage1For(stage1Name);
    // Everything that can be checked without touching the disk comes first, so bad input changes nothing.
    checkRuntimeEnv(pod);
    // Only the namespaces stage1 binds a termination message file (fly's /dev is the node's, kvm's is the guest's).
    const customPath = allContainers(pod).findIndex((c) => (c.terminationMessagePath ?? '/dev/termination-log') !== '/dev/termination-log');
    if (stage1Name !== 'namespaces' && customPath >= 0) {
      throw new ContainerConfigError(`container "${allContainers(pod)[customPath]!.name}": terminationMessagePath: not supported by the ${stage1Name} stage1: only the namespaces stage1 reads termination messages`, 'leave terminationMessagePath at its default, use terminationMessagePolicy FallbackToLogsOnError, or run the pod with the namespaces stage1');
    }
    const images = await Promise.all(allContainers(pod).map(async (c) => {
      const image = await this.images.resolve(c.image);
      if (!image) throw new ImageNotFound(c.image, c.name, 'import it with `stevedore image import FILE|DIR`; `stevedore image list` shows what is there');
      return image;
    }));
    // A broken network config fails the run here, before anything is on disk.
    const net = this.options.network;
    const network = net !== 'none' && needsPodNetwork(pod, stage1Name) ? await loadNetwork(net) : undefined;
    // The network is attached while the pod is prepared and its units start, the apps waiting at the network
    // gate (stage1/network-gate.ts), unless the apps' environment needs the pod's IP before they start.
    const attachEarly = network !== undefined && stage1.networkGate === true && stage1.makeNamespaces !== undefined && !usesPodIP(pod);
    const systemd = await this.systemd();
    const { location, lock } = await this.pods.createEmbryo();
    let loc: PodLocation = location;
    let prepared: PreparedPod | undefined;
    let early: { attaching: Promise<PodNetworkRecord> } | undefined;
    let manifestDurable: Promise<void> | undefined;
    try {
      writeTimestamp(podPaths(loc.dir).created);
      crashPoint('run:embryo');
      loc = await this.pods.move(loc, 'prepare');
      // The namespaces are made and ADD starts while stage0 makes the pod directory. The directory moves (and a
      // failed pod is discarded) only once the namespaces are made: their bind mounts are inside it.
      const attachStarting = network && attachEarly && stage1.makeNamespaces ? this.startAttaching(network, stage1.makeNamespaces.bind(stage1), loc, pod) : undefined;
      const [dirMade, attachStarted] = await Promise.allSettled([
        preparePodDir({
          uuid: loc.uuid, podDir: loc.dir, pod, images, stage1: stage1Name, imageStore: this.images,
          seccompRoot: seccompRootDir(this.options.dataDir), clusterDns: this.options.clusterDns, awaitsNetwork: attachEarly,
        }),
        attachStarting,
      ]);
      if (attachStarted.status === 'fulfilled') early = attachStarted.value;
      if (dirMade.status === 'rejected') throw dirMade.reason;
      if (attachStarted.status === 'rejected') throw attachStarted.reason;
      const manifest = dirMade.value;
      // pod.json reaches the disk while the units start, before the launch is marked done (the marker's removal):
      // a power loss before that leaves the marker, and the pod is undone whatever its pod.json holds.
      manifestDurable = fsyncFile(podPaths(loc.dir).manifest);
      manifestDurable.catch(() => undefined);
      crashPoint('run:prepared-dir');
      prepared = { dir: loc.dir, manifest };
      await stage1.prepare(prepared);
      if (network && !early) {
        // The netns exists and no app runs yet: attach it now, while the pod is
        // still in prepare/, so a crash from here on is undone (CNI DEL) by reconcile().
        const attached = await attachPod(network, prepared);
        log.info({ uuid: loc.uuid, network: network.name, ips: attached.ips }, 'pod attached to the network');
        if (usesPodIP(pod)) prepared = { dir: loc.dir, manifest: await fillPodIPs(loc.dir, manifest, images, attached.ips) };
      }
      crashPoint('run:stage1-prepared');
      // The marker tells reconcile() that a launch never finished if this process dies before removing it.
      // It is written before the first move out of prepare/, so the directory never is in prepared/ or
      // run/ without it: a pod found there without it is one whose launch completed.
      writeFileSync(podPaths(loc.dir).launching, '');
      crashPoint('run:launching');
      loc = await this.pods.move(loc, 'prepared');
      crashPoint('run:moved-to-prepared');
      // Units and stage1 files name the pod directory by its final path, so launch from run/.
      loc = await this.pods.move(loc, 'run');
      crashPoint('run:moved-to-run');
      prepared = { dir: loc.dir, manifest: prepared.manifest };
      if (early) await this.launchAttaching(systemd, prepared, early.attaching);
      else await this.launch(systemd, prepared);
      crashPoint('run:launched');
      writeTimestamp(podPaths(loc.dir).started);
      await manifestDurable;
      rmSync(podPaths(loc.dir).launching, { force: true });
      // Off the start path: only image GC reads it.
      for (const image of new Set(images)) await this.images.markUsed(image).catch((err) => log.warn({ err: String(err) }, 'could not record image use'));
      log.info({ uuid: loc.uuid, stage1: stage1Name }, 'pod started');
      return loc.uuid;
    } catch (err) {
      // An ADD still running finishes first, so that the pod's removal DELs whatever it made.
      await Promise.all([early?.attaching.catch(() => undefined), manifestDurable?.catch(() => undefined)]);
      log.info({ uuid: loc.uuid, err: String(err) }, 'pod run failed; discarding the pod');
      await this.destroy(loc, prepared?.manifest).catch((e) => log.error({ uuid: loc.uuid, err: String(e) }, 'discarding a failed pod failed; gc will retry'));
      throw err;
    } finally {
      lock.release();
    }
  }

  /**
   * CNI ADD from as soon as the pod's namespaces exist, while stage0 prepares the pod directory and
   * systemd starts the units (launchAttaching). The directory moves meanwhile (prepare/ to run/), so
   * the plugins enter the network namespace through a descriptor held here; the CNI cache records
   * its run/ path. The record is on disk before ADD starts: a crash from here on is DELeted by
   * reconcile().
   */
  private async startAttaching(network: CniNetwork, makeNamespaces: (podDir: string) => Promise<void>, loc: PodLocation, pod: Pod): Promise<{ attaching: Promise<PodNetworkRecord> }> {
    await makeNamespaces(loc.dir);
    createNetworkGate(loc.dir);
    const record = await recordAttachment(network, loc.dir);
    const held = await fs.open(netnsPath(loc.dir), 'r');
    const attaching = addToNetwork(network, record, loc.uuid, pod, { path: `/proc/${process.pid}/fd/${held.fd}`, cachedPath: netnsPath(this.pods.dirOf(loc.uuid, 'run')) })
      .then(() => record)
      .finally(() => held.close());
    // Awaited by launchAttaching, or before the pod is discarded: never an unhandled rejection meanwhile.
    attaching.catch(() => undefined);
    return { attaching };
  }

  /**
   * launch() while the pod's CNI ADD finishes: the apps' processes wait at the network gate until
   * the record and /etc/hosts have the pod's IPs. Both are awaited before either's error is thrown,
   * so a pod is never destroyed while its units are still being started.
   */
  private async launchAttaching(systemd: SystemdClient, pod: PreparedPod, attaching: Promise<PodNetworkRecord>): Promise<void> {
    const uuid = pod.manifest.uuid;
    const waiters = pod.manifest.apps.length;
    const attached = attaching.then(async (record) => {
      await writeAttachment(pod, record);
      log.info({ uuid, network: record.network, ips: record.ips }, 'pod attached to the network');
      crashPoint('run:network-attached');
      await releaseNetworkGate(pod.dir, 'ready', waiters);
    }, async (err: unknown) => {
      await releaseNetworkGate(pod.dir, 'failed', waiters).catch((e) => log.warn({ uuid, err: String(e) }, 'could not fail the network gate; the pod\'s removal stops its units'));
      throw err;
    });
    const [network, launched] = await Promise.allSettled([attached, this.launch(systemd, pod)]);
    if (network.status === 'rejected') throw network.reason;
    if (launched.status === 'rejected') throw launched.reason;
  }

  private async launch(systemd: SystemdClient, pod: PreparedPod): Promise<void> {
    const stage1 = this.stage1For(pod.manifest.stage1);
    const uuid = pod.manifest.uuid;
    // The slice must exist before services name it, or systemd makes an empty
    // one of its own. systemd handles one connection's calls in order, so
    // sending the slice's call first is enough; no need to wait for its reply.
    const slice = podSlice(pod.manifest);
    const sliceCall = systemd.startTransientUnit(slice, sliceProperties(pod, stage1.cgroupLimits !== false));
    // The apps' unit properties are built while systemd makes the slice (fly writes the env
    // files here), and their calls follow the slice's without waiting for its reply.
    const plansBuilt = Promise.all(pod.manifest.apps.map((app) => appProperties(pod, app, stage1, this.options)));
    // Awaited below, each in turn: a failure of one while another is awaited is not an unhandled rejection.
    sliceCall.catch(() => undefined);
    plansBuilt.catch(() => undefined);
    // Pod-level units (kvm: the VM) run before any app: an app unit may rely on them being started.
    const podPlans = stage1.podUnits ? await stage1.podUnits(pod) : [];
    const podCalls = podPlans.map((p) => systemd.startTransientUnit(p.name, [...p.properties, prop.str('Slice', slice)]));
    const podResults = podCalls.length ? await Promise.all((await Promise.all(podCalls)).map((j) => systemd.waitForJob(j))) : [];
    const plans = await plansBuilt;
    const appCalls = pod.manifest.apps.map((app, i) => systemd.startTransientUnit(unitNames.app(uuid, app.name), plans[i]!));
    appCalls.forEach((call) => call.catch(() => undefined));
    const sliceJob = await sliceCall;
    crashPoint('run:slice-started');
    // With init containers, every app's start job waits for its predecessor (init-gate.ts), possibly for
    // hours: wait only for the units that start at once; systemd goes on with the rest on its own.
    const hasInit = pod.manifest.apps.some((a) => a.init);
    const jobs = (await Promise.all(appCalls)).filter((_, i) => !hasInit || i === 0);
    const results = [...podResults, ...await Promise.all([sliceJob, ...jobs].map((j) => systemd.waitForJob(j)))];
    const failed = results.filter((r) => r.result !== 'done');
    if (failed.length) {
      throw new UserError(`pod ${uuid}: systemd could not start ${failed.map((f) => `${f.unit} (${f.result})`).join(', ')}`, {
        hint: `see \`journalctl -u '${unitNames.podPattern(uuid)}'\` on the node`,
      });
    }
  }

  async listPods(): Promise<PodStatus[]> {
    const systemd = await this.systemd().catch(() => undefined);
    const locations = await this.pods.list();
    const units = systemd ? await readUnitStates(systemd) : undefined;
    // A pod may move to its next lifecycle folder (or vanish) while we read it: it shows up in the next listing.
    const statuses = await Promise.all(locations.map((loc) => readPodStatus(systemd, loc, units, this.statusCache).catch((err) => {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    })));
    this.statusCache.retain(locations.map((l) => l.dir));
    return statuses.filter((s): s is PodStatus => s !== undefined);
  }

  async podStatus(ref: string): Promise<PodStatus> {
    return readPodStatus(await this.systemd().catch(() => undefined), await this.pods.find(ref));
  }

  private async manifestOf(loc: PodLocation): Promise<RuntimePodManifest | undefined> {
    return readJsonIfExists<RuntimePodManifest>(podPaths(loc.dir).manifest).catch(() => undefined);
  }

  /** Stop every app (SIGTERM, then SIGKILL after the grace period) and the pod's slice. */
  async stopPod(ref: string, opts: { gracePeriodSeconds?: number } = {}): Promise<PodStatus> {
    const loc = await this.pods.find(ref);
    const manifest = await this.manifestOf(loc);
    if (manifest && (loc.state === 'run' || loc.state === 'prepared')) await this.stopUnits(manifest, opts.gracePeriodSeconds);
    return this.podStatus(loc.uuid);
  }

  /**
   * Stop the apps: systemd sends SIGTERM and, after the TimeoutStopSec= the
   * unit was created with (the pod's grace period), SIGKILL. A shorter grace
   * period asked for now is enforced with our own timer and KillUnit, since
   * systemd cannot change a running service's stop timeout.
   */
  private async stopUnits(manifest: RuntimePodManifest, gracePeriodSeconds?: number): Promise<void> {
    const systemd = await this.systemd();
    const units = manifest.apps.map((a) => unitNames.app(manifest.uuid, a.name));
    const jobs = await Promise.all(units.map((u) => systemd.stopUnit(u)));
    const timer = gracePeriodSeconds !== undefined && gracePeriodSeconds < manifest.terminationGracePeriodSeconds
      ? setTimeout(() => { for (const u of units) void systemd.killUnit(u, 9).catch(() => undefined); }, gracePeriodSeconds * 1000)
      : undefined;
    try {
      await Promise.all(jobs.filter((j): j is string => !!j).map((j) => systemd.waitForJob(j)));
    } finally {
      clearTimeout(timer);
    }
    const sliceJob = await systemd.stopUnit(podSlice(manifest));
    if (sliceJob) await systemd.waitForJob(sliceJob);
  }

  /** Remove a pod and everything it holds; a running pod needs force (it is stopped first). */
  async removePod(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    const loc = await this.pods.find(ref);
    const lock = tryLock(loc.dir);
    if (!lock) throw new UserError(`pod ${loc.uuid} is busy: another command is preparing or changing it`, { hint: 'wait for it to finish and try again' });
    try {
      const status = await readPodStatus(await this.systemd(), loc);
      if (status.state === 'running' && !opts.force) throw new UserError(`pod ${loc.uuid} is running`, { hint: 'stop it first (`stevedore pod stop`) or pass --force' });
      await this.destroy(loc, await this.manifestOf(loc));
    } finally {
      lock.release();
    }
  }

  /**
   * Take a pod apart: mark it garbage (an atomic rename, so an interrupted
   * removal is finished by the next reconcile), stop and forget its units,
   * undo the stage1, unmount, delete.
   */
  private async destroy(loc: PodLocation, manifest: RuntimePodManifest | undefined): Promise<void> {
    const systemd = await this.systemd();
    // Stop first, while the pod is still where its units' exit recorder
    // writes (its run/ path), so the final exit of every app is recorded.
    if (manifest) await this.stopUnits(manifest, 0);
    for (const unit of await systemd.listUnitsByPatterns(unitNames.podPatterns(loc.uuid))) {
      const job = await systemd.stopUnit(unit.name);
      if (job) await systemd.waitForJob(job);
    }
    if (loc.state !== 'garbage' && loc.state !== 'exited-garbage') {
      loc = await this.pods.move(loc, loc.state === 'run' ? 'exited-garbage' : 'garbage');
      writeTimestamp(podPaths(loc.dir).gcMarked);
      crashPoint('rm:marked');
    }
    // The listing includes failed units, so this forgets every unit of the pod.
    for (const unit of await systemd.listUnitsByPatterns(unitNames.podPatterns(loc.uuid))) await systemd.resetFailedUnit(unit.name);
    // CNI DEL while the netns is still mounted (its veth goes explicitly); a
    // failure is left to gc(), which DELs every cached attachment of a dead pod.
    await detachPod(loc.dir, loc.uuid).catch((err) => log.warn({ uuid: loc.uuid, err: String(err) }, 'CNI DEL failed; gc will release the lease'));
    if (manifest) await this.stage1For(manifest.stage1).cleanup({ dir: loc.dir, manifest });
    // No manifest: the pod failed while its directory was made, and its stage1 had made only the namespaces (makeNamespaces).
    else await unmountBelow([podPaths(loc.dir).stage1]);
    await unmountPodRootfs(loc.dir);
    await unmountPodVolumes(loc.dir);
    await assertNoMountsBelow(loc.dir);
    await fs.rm(loc.dir, { recursive: true, force: true });
    log.info({ uuid: loc.uuid }, 'pod removed');
  }

  /**
   * Finish or undo what killed commands left behind. Cheap enough to run at
   * the start of every command: it only looks at pods nobody holds a lock on.
   */
  async reconcile(): Promise<string[]> {
    const cleaned: string[] = [];
    await this.pods.removeStaleNewEmbryos();
    for (const loc of await this.pods.list(['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage'])) {
      // A prepared or running pod is left alone unless its launch was interrupted or it has no manifest (it cannot be run or described).
      if ((loc.state === 'prepared' || loc.state === 'run') && !(await exists(podPaths(loc.dir).launching)) && (await exists(podPaths(loc.dir).manifest))) continue;
      const lock = tryLock(loc.dir);
      if (!lock) continue;
      try {
        if (!(await exists(loc.dir))) continue;
        await this.destroy(loc, await this.manifestOf(loc));
        cleaned.push(loc.uuid);
      } finally {
        lock.release();
      }
    }
    return cleaned;
  }

  /** Garbage-collect: exited pods older than the grace period, then units whose pod is gone. */
  async gc(opts: { exitedGracePeriodMs?: number; leaseGraceMs?: number } = {}): Promise<{ removedPods: string[]; orphanUnits: string[]; releasedLeases: string[] }> {
    const grace = opts.exitedGracePeriodMs ?? 30 * 60_000;
    const removedPods = await this.reconcile();
    const systemd = await this.systemd();
    for (const loc of await this.pods.list(['run'])) {
      const lock = tryLock(loc.dir);
      if (!lock) continue;
      try {
        const status = await readPodStatus(systemd, loc);
        const finished = Math.max(0, ...status.apps.map((a) => a.finishedAt ?? 0));
        if (status.state === 'exited' && Date.now() - finished >= grace) {
          await this.destroy(loc, await this.manifestOf(loc));
          removedPods.push(loc.uuid);
        }
      } finally {
        lock.release();
      }
    }
    const live = new Set((await this.pods.list(['embryo', 'prepare', 'prepared', 'run'])).map((p) => p.uuid));
    const orphanUnits: string[] = [];
    for (const unit of await systemd.listUnitsByPatterns(unitNames.allPatterns)) {
      const parsed = unitNames.parse(unit.name);
      if (!parsed || live.has(parsed.uuid)) continue;
      const job = await systemd.stopUnit(unit.name);
      if (job) await systemd.waitForJob(job);
      await systemd.resetFailedUnit(unit.name);
      orphanUnits.push(unit.name);
    }
    // IP leak protection: pods listed after the removals above, so every pod that exists or is being created is live.
    let releasedLeases: string[] = [];
    if (this.options.network !== 'none') {
      const alive = new Set((await this.pods.list(['embryo', 'prepare', 'prepared', 'run'])).map((p) => p.uuid));
      releasedLeases = (await releaseLeases(this.options.network, alive, opts.leaseGraceMs)).map((r) => `${r.containerId} ${r.ips.join(',')} (${r.via})`);
    }
    return { removedPods, orphanUnits, releasedLeases };
  }

  /**
   * Run a command inside a running app to completion (probes, lifecycle
   * hooks): the stage1's enter path, no shell or agent helper in between.
   * Output is stdout and stderr, cut at `maxOutputBytes`; a command still
   * running after `timeoutMs` is killed and reported as timed out.
   */
  async runInContainer(ref: string, appName: string, command: string[], opts: { timeoutMs: number; maxOutputBytes?: number }): Promise<{ exitCode: number; output: string; timedOut: boolean }> {
    const enter = await this.quickEnter(ref, appName, command);
    const max = opts.maxOutputBytes ?? 10 * 1024;
    // A probe every few seconds per container makes the agent's own cost per exec count: where the stage1
    // says which cgroups to join, a vfork'd child joins them and execs (no fork of the agent, no shell).
    if (!Array.isArray(enter)) {
      try {
        return await runCaptured(enter.argv, { cgroupProcs: enter.cgroupProcs, timeoutMs: opts.timeoutMs, maxOutputBytes: max });
      } catch (err) {
        // As a shell would have said it: 125 the cgroup join failed, 127 the program did not start.
        return { exitCode: (err as { exitCode?: number }).exitCode ?? 126, output: (err as Error).message, timedOut: false };
      }
    }
    const argv = enter;
    return new Promise((resolve) => {
      // Its own process group: an enter program may fork the command into the pod's PID namespace, and
      // killing it alone would leave the command running and holding our pipes past the timeout.
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const chunks: Buffer[] = [];
      let size = 0;
      const take = (b: Buffer) => { if (size < max) { chunks.push(b); size += b.length; } };
      child.stdout!.on('data', take);
      child.stderr!.on('data', take);
      let timedOut = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        resolve({ exitCode: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15), output: Buffer.concat(chunks).subarray(0, max).toString('utf8'), timedOut });
      };
      const timer = setTimeout(() => {
        timedOut = true;
        try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
        // The answer is due now (a probe's timeout), whoever still holds the pipes.
        const done = (code: number | null, signal: NodeJS.Signals | null) => { child.stdout!.destroy(); child.stderr!.destroy(); finish(code, signal); };
        if (child.exitCode !== null || child.signalCode !== null) done(child.exitCode, child.signalCode);
        else child.once('exit', done);
      }, opts.timeoutMs);
      child.on('error', (err) => { clearTimeout(timer); resolve({ exitCode: 127, output: String(err.message), timedOut: false }); });
      child.on('close', finish);
    });
  }

  /** Pod directory and manifest by UUID, for runInContainer: neither changes while the pod runs. */
  private readonly enterTargets = new Map<string, { dir: string; manifest: RuntimePodManifest }>();
  /** uuid/app → its unit's MainPID and that process's start time, as last asked of systemd. */
  private readonly enterMainPids = new Map<string, { pid: number; startTime: string }>();

  /**
   * The enter command (or argv) for repeated calls (exec probes every few seconds, kubernetes#82440):
   * the pod's manifest is read once, and systemd is asked for the app's MainPID only when the
   * process it named last is gone (its start time in /proc changed): a unit's main process lives
   * exactly as long as its run, so while it lives the answer would be the same, and a probe costs
   * no D-Bus round trip (nor systemd's and the bus daemon's work for it).
   */
  private async quickEnter(ref: string, appName: string, command: string[]): Promise<string[] | EnterCommand> {
    let target = this.enterTargets.get(ref);
    const known = target && this.enterMainPids.get(`${target.manifest.uuid}/${appName}`);
    let mainPid = known && processStartTime(known.pid) === known.startTime ? known.pid : 0;
    if (!mainPid) {
      if (!target || !(await exists(target.dir))) {
        const loc = await this.pods.find(ref);
        const manifest = loc.state === 'run' ? await this.manifestOf(loc) : undefined;
        if (!manifest) throw new UserError(`pod ${loc.uuid} is not running (state ${loc.state})`);
        target = { dir: loc.dir, manifest };
        if (this.enterTargets.size > 4096) this.enterTargets.clear();
        this.enterTargets.set(ref, target);
      }
    }
    const app = target!.manifest.apps.find((a) => a.name === appName);
    if (!app) throw new UserError(`pod ${target!.manifest.uuid} has no container "${appName}"`);
    if (!mainPid) {
      const systemd = await this.systemd();
      const props = await systemd.unitPropertyValues(unitNames.app(target!.manifest.uuid, app.name), 'Service', ['MainPID']).catch(() => ({ MainPID: 0 }));
      mainPid = Number(props.MainPID ?? 0);
      if (!mainPid) throw new UserError(`container "${app.name}" of pod ${target!.manifest.uuid} is not running`);
      const startTime = processStartTime(mainPid);
      if (this.enterMainPids.size > 4096) this.enterMainPids.clear();
      if (startTime) this.enterMainPids.set(`${target!.manifest.uuid}/${app.name}`, { pid: mainPid, startTime });
    }
    const stage1 = this.stage1For(target!.manifest.stage1);
    return stage1.enterCommand ? stage1.enterCommand(target!, app, mainPid, command) : stage1.enterArgv(target!, app, mainPid, command);
  }

  /**
   * Kill one app's current run (a failed liveness probe): SIGTERM to its
   * processes, SIGKILL after the grace period if the same run still lives.
   * The unit's Restart= then decides, as the kubelet's restartPolicy does.
   */
  async killApp(ref: string, appName: string, gracePeriodSeconds: number): Promise<void> {
    const loc = await this.pods.find(ref);
    const unit = unitNames.app(loc.uuid, appName);
    const systemd = await this.systemd();
    const pidOf = async () => Number((await systemd.unitPropertyValues(unit, 'Service', ['MainPID']).catch(() => ({ MainPID: 0 }))).MainPID ?? 0);
    const before = await pidOf();
    if (!before) return;
    await systemd.killUnit(unit, 15, 'all').catch(() => undefined);
    const deadline = Date.now() + gracePeriodSeconds * 1000;
    while (Date.now() < deadline) {
      if ((await pidOf()) !== before) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    if ((await pidOf()) === before) await systemd.killUnit(unit, 9, 'all').catch(() => undefined);
  }

  /**
   * How to run commands inside a running app: exec and `pod enter` both go through this.
   * `ref` is a pod UUID or unique prefix; the first app when `appName` is not given.
   */
  async enterPlan(ref: string, appName: string | undefined): Promise<EnterPlan & { terminal: boolean }> {
    const loc = await this.pods.find(ref);
    const manifest = await this.manifestOf(loc);
    const status = await readPodStatus(await this.systemd(), loc);
    if (!manifest || status.state !== 'running') throw new UserError(`pod ${loc.uuid} is not running (state ${status.state})`, { hint: 'exec and enter need a running pod; see its state with `stevedore pod status`' });
    const app = appName ? manifest.apps.find((a) => a.name === appName) : manifest.apps[0];
    if (!app) throw new UserError(`pod ${loc.uuid} has no container "${appName}"`, { hint: `its containers: ${manifest.apps.map((a) => a.name).join(', ')}` });
    const appStatus = status.apps.find((a) => a.name === app.name);
    if (appStatus?.state !== 'running' || !appStatus.mainPid) {
      throw new UserError(`container "${app.name}" of pod ${loc.uuid} is not running (state ${appStatus?.state ?? 'unknown'})`, { hint: 'a command can only be run in a running container; wait for it to (re)start' });
    }
    const stage1 = this.stage1For(manifest.stage1);
    const pod = { dir: loc.dir, manifest };
    const mainPid = appStatus.mainPid;
    return {
      argv: (command) => stage1.enterArgv(pod, app, mainPid, command),
      ...(stage1.enterTtyArgv ? { ttyArgv: (command: string[], socket: string, size?: { cols: number; rows: number }) => stage1.enterTtyArgv!(pod, app, mainPid, command, socket, size) } : {}),
      ...(stage1.enterTerminalArgv ? { terminalArgv: (command: string[], size?: { cols: number; rows: number }) => stage1.enterTerminalArgv!(pod, app, mainPid, command, size) } : {}),
      protectedPids: [mainPid],
      terminal: stage1.enterTerminal !== false,
    };
  }

  /** argv to run a command inside a running app, without a terminal. */
  async enterArgv(ref: string, appName: string | undefined, command: string[]): Promise<string[]> {
    return (await this.enterPlan(ref, appName)).argv(command);
  }

  /** Run a command inside a running app with its streams apart (runtime-rkt/exec.ts): kubectl exec, `pod enter`. */
  async exec(ref: string, appName: string | undefined, command: string[], opts: ExecOptions): Promise<ExecProcess> {
    return startExec(await this.checkExec(ref, appName, opts), command, opts);
  }

  /**
   * Where a port-forward to this pod connects: the pod's network namespace file (namespaces
   * stage1), or undefined for a pod on the node's network (fly, hostNetwork). kvm is refused.
   */
  /**
   * Where port-forward connects for a running pod: its netns (localhost there, as the kubelet),
   * the node's network (fly, hostNetwork: no netns), or for kvm the pod's IP, which the guest
   * holds (the netns only has the tap towards it).
   */
  async portForwardTarget(ref: string): Promise<{ netns?: string; host?: string }> {
    const loc = await this.pods.find(ref);
    const manifest = await this.manifestOf(loc);
    const status = await readPodStatus(await this.systemd(), loc);
    if (!manifest || status.state !== 'running') throw new UserError(`pod ${loc.uuid} is not running (state ${status.state})`, { hint: 'port-forward needs a running pod' });
    if (manifest.pod.spec.hostNetwork) return {};
    if (manifest.stage1 === 'kvm') {
      const ip = status.podIPs?.find((a) => !a.includes(':')) ?? status.podIPs?.[0];
      if (!ip) throw new UserError(`kvm pod ${loc.uuid} has no pod IP to forward to`, { hint: 'port-forward into a VM goes to the pod\'s IP; this pod has no network attachment' });
      return { host: ip };
    }
    if (manifest.stage1 === 'fly') return {};
    return { netns: netnsPath(loc.dir) };
  }

  /** The pod's ports for a port-forward session: its namespace held open, or its IP (kubectl port-forward). */
  async openPortForward(ref: string): Promise<PortForwardTarget> {
    const target = await this.portForwardTarget(ref);
    // A VM's IP is dialled from the node's network: once the pod has stopped, nothing answers there
    // but ARP's timeout, so each dial looks at the pod first. (A namespace held open refuses at once.)
    return openPortTarget(target.netns, target.host, target.host ? async () => { await this.portForwardTarget(ref); } : undefined);
  }

  /** The attach socket of a running app with stdin or a terminal; a UserError saying why when there is none. */
  async attachTarget(ref: string, appName: string | undefined, opts: { tty: boolean }): Promise<string> {
    const loc = await this.pods.find(ref);
    const manifest = await this.manifestOf(loc);
    const status = await readPodStatus(await this.systemd(), loc);
    if (!manifest || status.state !== 'running') throw new UserError(`pod ${loc.uuid} is not running (state ${status.state})`, { hint: 'attach needs a running pod' });
    const app = appName ? manifest.apps.find((a) => a.name === appName) : manifest.apps[0];
    if (!app) throw new UserError(`pod ${loc.uuid} has no container "${appName}"`, { hint: `its containers: ${manifest.apps.map((a) => a.name).join(', ')}` });
    if (status.apps.find((a) => a.name === app.name)?.state !== 'running') throw new UserError(`container "${app.name}" of pod ${loc.uuid} is not running`, { hint: 'attach needs a running container' });
    if (!app.console) throw new UserError(`container "${app.name}" was started without stdin or tty, so there is nothing to attach to`, { hint: 'read its output with kubectl logs -f, or run it with stdin: true (kubectl run -i)' });
    if (opts.tty && !app.console.tty) throw new UserError(`container "${app.name}" has no terminal (tty: false)`, { hint: 'attach without -t' });
    return podPaths(loc.dir).attachSocket(app.name);
  }

  /** Connect to a running app's stdin and output (kubectl attach). */
  async attach(ref: string, appName: string | undefined, opts: { stdin: boolean; tty: boolean }): Promise<ExecProcess> {
    return attachConsole(await this.attachTarget(ref, appName, opts), opts);
  }

  /** What exec would refuse, without running anything. */
  async checkExec(ref: string, appName: string | undefined, opts: Pick<ExecOptions, 'tty'>): Promise<EnterPlan> {
    const plan = await this.enterPlan(ref, appName);
    if (opts.tty && !plan.terminal) {
      throw new UserError('this pod\'s stage1 cannot give an exec a terminal', { hint: 'run the command without a terminal (kubectl exec -i without -t)' });
    }
    return plan;
  }
}

async function assertNoMountsBelow(dir: string): Promise<void> {
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const below = mountinfo.split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')));
  if (below.length) throw new UserError(`cannot remove ${dir}: still mounted: ${below.join(', ')}`, { hint: 'unmount them (umount) and run `stevedore gc`' });
}

