/**
 * What the agent needs from a container runtime (the kubelet's
 * kubecontainer.Runtime). The agent holds only this interface; which runtime
 * it drives (rkt's systemd units, a Docker Engine) is chosen by the
 * composition root (cli/) from --container-runtime.
 */
import type { CgroupUsage } from '../common/cgroups.js';
import type { KvmAccelMode } from './handlers.js';
import type { ImageLimits } from './image-limits.js';
import type { LogLine, LogQuery } from './logs.js';
import type { PodNetworkOptions } from './network.js';
import type { Pod } from './pod-spec.js';
import type { RegistryKeyring } from './registry-auth.js';
import type { PodStatus } from './status.js';
import type { ExecOptions, ExecProcess, PortForwardTarget } from './streams.js';

export interface ContainerRuntime {
  /** Scheme of container IDs and nodeInfo.containerRuntimeVersion, e.g. "rkt" or "docker". */
  readonly name: string;
  readonly version: string;
  /** The runtime handlers (RuntimeClass handlers) it offers; runPod refuses others with HandlerNotOffered. */
  readonly handlers: readonly string[];
  /** Labels the node carries because of this runtime (e.g. what VM pods get: stevedore.io/kvm-accel). */
  readonly nodeLabels: Readonly<Record<string, string>>;
  /** Start a pod; `handler` unset means the runtime's default. Resolves to the runtime's pod ID. */
  runPod(pod: Pod, opts: { handler?: string }): Promise<string>;
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
  /**
   * The pod's ports for a port-forward session (kubectl port-forward); throws (UserError) when they
   * cannot be reached (not running, a VM without the path). The caller closes it.
   */
  openPortForward(podId: string): Promise<PortForwardTarget>;
  /** Throws what exec would (unknown or stopped container, no terminal) without running anything. */
  checkExec(podId: string, container: string, opts: Pick<ExecOptions, 'tty'>): Promise<void>;
  /** Garbage-collect what the runtime left behind (aborted pods, orphaned units or containers). */
  gc(): Promise<void>;
  /**
   * Run a command in a running container to completion, with its output (cut
   * at 10 KiB, as the kubelet's probes) and a timeout: exec probes and hooks.
   */
  runInContainer(podId: string, container: string, command: string[], timeoutMs: number): Promise<{ exitCode: number; output: string; timedOut: boolean }>;
  /** Kill a container's current run (SIGTERM, SIGKILL after the grace period); its restartPolicy decides what follows. */
  killContainer(podId: string, container: string, gracePeriodSeconds: number): Promise<void>;
  /** Called when something about running pods may have changed (a unit's or container's state). */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

export interface ContainerUsage extends CgroupUsage {
  name: string;
  /** ms since epoch: when this run of the container started */
  startedAt?: number;
  /** The container runs but its own counters cannot be read from the node (inside a VM): the numbers above are 0 and are not reported. */
  usageUnknown?: boolean;
}

/** One pod's containers' counters, read now. */
export interface PodUsage {
  uuid: string;
  uid?: string;
  name?: string;
  namespace?: string;
  startedAt?: number;
  containers: ContainerUsage[];
  /**
   * The pod's own counters where they are not its containers' sum: a VM pod
   * (stage1 kvm) counts its VM's unit (qemu and its helpers), and the host
   * cannot split that per container; its `containers` then come without
   * numbers of their own (`usageUnknown`).
   */
  sandbox?: CgroupUsage;
}

/** What the agent hands any runtime when it opens it (the node's settings a runtime needs). */
export interface RuntimeOpenOptions {
  /** The runtime's own state lives under here (rkt: pods/, images/; docker: the engine's data root). */
  dataDir: string;
  /** The node's system bus (rkt starts pods as systemd units over it). */
  dbusAddress?: string;
  /** The default runtime handler (rkt: its default stage1). */
  defaultHandler?: string;
  /** Use hardware virtualization for VM pods: auto, kvm (required) or tcg. */
  kvmAccel?: KvmAccelMode;
  network: PodNetworkOptions;
  /** The node's pod CIDR (the default network's range; the hollow runtime hands out its pretend pod IPs from it). */
  podCidr?: string;
  imageLimits: ImageLimits;
  /** Cluster DNS the pods' resolv.conf names (ClusterFirst). */
  clusterDns?: { servers: string[]; domain: string };
  /** Docker: the engine's socket (default /var/run/docker.sock). */
  dockerEndpoint?: string;
}

export type RuntimeFactory = (opts: RuntimeOpenOptions) => Promise<ContainerRuntime>;
