import * as path from 'node:path';
import { ensureDefaultNetwork } from '../cni/index.js';
import { RktRuntime } from '../runtime-rkt/runtime.js';
import type { PodNetworkOptions } from '../runtime-rkt/network.js';
import { readLogs, type LogLine, type LogQuery } from '../runtime-rkt/logs.js';
import type { Pod } from '../runtime-rkt/manifest.js';
import type { ExecOptions, ExecProcess } from '../runtime-rkt/exec.js';
export type { ExecOptions, ExecProcess, TerminalSize } from '../runtime-rkt/exec.js';
import type { PortConnection } from '../runtime-rkt/port-forward.js';
export type { PortConnection } from '../runtime-rkt/port-forward.js';
import type { PodStatus } from '../runtime-rkt/status.js';
import type { Stage1Name } from '../stage1/contract.js';
import type { RegistryKeyring } from '../runtime-rkt/image/auth.js';
import { UserError } from '../common/errors.js';
import { cgroupUsageOf, type CgroupUsage } from '../common/cgroups.js';
import { imageLimitsOf, type AgentConfig } from './config.js';

/**
 * What the agent needs from a container engine. The agent never knows which
 * engine it drives: rkt (systemd units) or, later, Docker.
 */
export interface ContainerRuntime {
  /** Scheme of container IDs and nodeInfo.containerRuntimeVersion, e.g. "rkt". */
  readonly name: string;
  readonly version: string;
  runPod(pod: Pod, opts: { stage1?: Stage1Name }): Promise<string>;
  /** The stored image a reference names; `local` for images built or imported on this node (never pulled). */
  findImage(ref: string): Promise<{ id: string; local: boolean } | undefined>;
  /** `auth`: registry credentials (the pod's imagePullSecrets); never logged. */
  pullImage(ref: string, opts: { insecureRegistries?: string[]; auth?: RegistryKeyring }): Promise<void>;
  listPods(): Promise<PodStatus[]>;
  stopPod(id: string, gracePeriodSeconds?: number): Promise<void>;
  removePod(id: string): Promise<void>;
  logs(query: LogQuery): AsyncGenerator<LogLine>;
  /** CPU and memory counters of every running container (the CRI's ListContainerStats). */
  containerUsage(): Promise<PodUsage[]>;
  /**
   * Run a command in a running container of a runtime pod, streams kept apart (kubectl exec).
   * Throws a UserError saying why for an unknown or stopped container.
   */
  exec(podId: string, container: string, command: string[], opts: ExecOptions): Promise<ExecProcess>;
  /** Connect to a running container's stdin and output (kubectl attach); detaching leaves it running. */
  attach(podId: string, container: string, opts: { stdin: boolean; tty: boolean }): Promise<ExecProcess>;
  /** Throws what attach would, without connecting. */
  checkAttach(podId: string, container: string, opts: { tty: boolean }): Promise<void>;
  /** Throws (UserError) when the pod's ports cannot be reached (not running, kvm). */
  checkPortForward(podId: string): Promise<void>;
  /** A TCP connection to `port` inside the pod's network namespace (kubectl port-forward). */
  dialPort(podId: string, port: number): Promise<PortConnection>;
  /** Throws what exec would (unknown or stopped container, no terminal) without running anything. */
  checkExec(podId: string, container: string, opts: Pick<ExecOptions, 'tty'>): Promise<void>;
  /** Garbage-collect what the engine left behind (aborted pods, orphaned units). */
  gc(): Promise<void>;
  /** What VM pods get on this node (probed at start): kvm, tcg, or unavailable (no assets, or kvm required and absent). */
  readonly vmAccel?: 'kvm' | 'tcg' | 'unavailable';
  /**
   * Run a command in a running container to completion, with its output (cut
   * at 10 KiB, as the kubelet's probes) and a timeout: exec probes and hooks.
   */
  runInContainer(podId: string, container: string, command: string[], timeoutMs: number): Promise<{ exitCode: number; output: string; timedOut: boolean }>;
  /** Kill a container's current run (SIGTERM, SIGKILL after the grace period); its restartPolicy decides what follows. */
  killContainer(podId: string, container: string, gracePeriodSeconds: number): Promise<void>;
  /** Called when something about running pods may have changed (a unit's state, say). */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

export interface ContainerUsage extends CgroupUsage {
  name: string;
  /** ms since epoch: when this run of the container started */
  startedAt?: number;
}

/** One pod's containers' counters, read now. */
export interface PodUsage {
  uuid: string;
  uid?: string;
  name?: string;
  namespace?: string;
  startedAt?: number;
  containers: ContainerUsage[];
}

export const RUNTIME_VERSION = '0.1.0';

class RktContainerRuntime implements ContainerRuntime {
  readonly name = 'rkt';
  readonly version = RUNTIME_VERSION;
  constructor(private readonly rt: RktRuntime, readonly vmAccel?: 'kvm' | 'tcg' | 'unavailable') {}
  runPod(pod: Pod, opts: { stage1?: Stage1Name }) { return this.rt.runPod(pod, opts); }
  async findImage(ref: string) {
    const image = await this.rt.images.resolve(ref);
    // localhost/ is where built and imported images live (Podman's convention): no registry has them.
    return image && { id: image.id, local: image.names.some((n) => n.startsWith('localhost/')) };
  }
  async pullImage(ref: string, opts: { insecureRegistries?: string[]; auth?: RegistryKeyring }) { await this.rt.images.pull(ref, opts); }
  listPods() { return this.rt.listPods(); }
  async stopPod(id: string, gracePeriodSeconds?: number) { await this.rt.stopPod(id, { gracePeriodSeconds }); }
  removePod(id: string) { return this.rt.removePod(id, { force: true }); }
  logs(query: LogQuery) { return readLogs(query); }
  runInContainer(podId: string, container: string, command: string[], timeoutMs: number) { return this.rt.runInContainer(podId, container, command, { timeoutMs }); }
  killContainer(podId: string, container: string, gracePeriodSeconds: number) { return this.rt.killApp(podId, container, gracePeriodSeconds); }
  exec(podId: string, container: string, command: string[], opts: ExecOptions) { return this.rt.exec(podId, container, command, opts); }
  attach(podId: string, container: string, opts: { stdin: boolean; tty: boolean }) { return this.rt.attach(podId, container, opts); }
  async checkAttach(podId: string, container: string, opts: { tty: boolean }) { await this.rt.attachTarget(podId, container, opts); }
  async checkPortForward(podId: string) { await this.rt.portForwardTarget(podId); }
  dialPort(podId: string, port: number) { return this.rt.dialPort(podId, port); }
  async checkExec(podId: string, container: string, opts: Pick<ExecOptions, 'tty'>) { await this.rt.checkExec(podId, container, opts); }
  async gc() { await this.rt.gc({ exitedGracePeriodMs: Number.MAX_SAFE_INTEGER }); }
  /**
   * From each running app's cgroup (its unit's). kvm pods are left out: their
   * apps' units hold only a proxy, and the guest's usage is not split per app.
   */
  async containerUsage(): Promise<PodUsage[]> {
    const out: PodUsage[] = [];
    for (const pod of await this.rt.listPods()) {
      if (pod.state !== 'running' || pod.stage1 === 'kvm') continue;
      const containers: ContainerUsage[] = [];
      for (const app of pod.apps) {
        if (app.state !== 'running' || !app.mainPid) continue;
        const usage = cgroupUsageOf(app.mainPid);
        if (usage) containers.push({ name: app.name, startedAt: app.startedAt, ...usage });
      }
      out.push({ uuid: pod.uuid, uid: pod.uid, name: pod.name, namespace: pod.namespace, startedAt: pod.startedAt, containers });
    }
    return out;
  }
  onChange(listener: () => void) {
    void this.rt.systemd().then((sd) => sd.on('unitChanged', listener), () => undefined);
  }
  close() { return this.rt.close(); }
}

/**
 * The pod network: the conf dir's network, or else the default one (bridge +
 * host-local on the node's pod CIDR + portmap), written there once. Leases
 * and results live under the data dir, next to the pods they belong to.
 */
async function podNetwork(cfg: AgentConfig): Promise<PodNetworkOptions> {
  const confDir = cfg.cniConfDir ?? path.join(cfg.dataDir, 'cni', 'net.d');
  await ensureDefaultNetwork(confDir, { podCidr: cfg.podCidr, bridge: cfg.cniBridge, ipamDataDir: path.join(cfg.dataDir, 'cni', 'networks') });
  return { confDir, cacheDir: path.join(cfg.dataDir, 'cni', 'results'), binDirs: cfg.cniBinDirs };
}

export async function openRuntime(cfg: AgentConfig): Promise<ContainerRuntime> {
  if (cfg.containerRuntime === 'docker') {
    throw new UserError('--container-runtime=docker is not available in this build yet', { hint: 'use --container-runtime=rkt (the default)' });
  }
  const rt = await RktRuntime.open({ dataDir: cfg.dataDir, dbusAddress: cfg.dbusAddress, defaultStage1: cfg.rktStage1Image, network: await podNetwork(cfg), kvmAccel: cfg.kvmAccel, imageLimits: imageLimitsOf(cfg),
    ...(cfg.clusterDNS.length ? { clusterDns: { servers: cfg.clusterDNS, domain: cfg.clusterDomain } } : {}) });
  await rt.reconcile();
  await rt.systemd();
  return new RktContainerRuntime(rt, await vmAccelAtStart(cfg));
}

/** The boot probe at start (its verdict is kept for this boot of the node and these assets: stage1/kvm/accel.ts). */
async function vmAccelAtStart(cfg: AgentConfig): Promise<'kvm' | 'tcg' | 'unavailable'> {
  const { loadKvmAssets } = await import('../stage1/kvm/assets.js');
  const { chooseAccel } = await import('../stage1/kvm/accel.js');
  try {
    const assets = await loadKvmAssets();
    return (await chooseAccel(cfg.kvmAccel, assets)).accel;
  } catch {
    return 'unavailable';
  }
}
