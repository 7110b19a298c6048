import * as fs from 'node:fs/promises';
import { EMPTY_POLICY, STAGE1_POLICY_ANNOTATION, policyAnnotation, type Stage1Policy } from './stage1-policy.js';
import * as os from 'node:os';
import type { V1Node, V1NodeCondition } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import { systemReservedOf, type AgentConfig } from './config.js';
import { apiStatus, microTime, patchAs, type KubeClients } from './kube.js';
import type { ContainerRuntime } from './runtime.js';
import type { NodeAllocatable } from './downward-api.js';
import { LOCAL_PATH_ROOT_ANNOTATION, localPathRoot } from './claims.js';

const LEASE_NAMESPACE = 'kube-node-lease';
const LEASE_DURATION_SECONDS = 40;

async function readTrim(file: string): Promise<string> {
  return (await fs.readFile(file, 'utf8').catch(() => '')).trim();
}

/** Dates, not strings: client-node serializes typed bodies itself (and calls toISOString on them). */
function readyCondition(now: Date, since: Date): V1NodeCondition {
  return { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'stevedore agent is posting ready status', lastHeartbeatTime: now, lastTransitionTime: since };
}

/** What the Node reports allocatable, in numbers (downward API resourceFieldRef limits a container does not set). */
export async function nodeAllocatable(dataDir: string, reserved?: string): Promise<NodeAllocatable> {
  const disk = await fs.statfs(dataDir).catch(() => undefined);
  const r = systemReservedOf({ systemReserved: reserved });
  return { cpuMillis: Math.max(0, os.cpus().length * 1000 - r.cpuMillis), memoryBytes: Math.max(0, Math.floor(os.totalmem() / 1024) * 1024 - r.memoryBytes), ephemeralStorageBytes: disk ? disk.blocks * disk.bsize : 0 };
}

/** The Node object as this agent describes its host. */
export async function describeNode(cfg: AgentConfig, runtime: ContainerRuntime, readySince: Date, policy: Stage1Policy = EMPTY_POLICY): Promise<V1Node> {
  const cpus = String(os.cpus().length);
  const memory = `${Math.floor(os.totalmem() / 1024)}Ki`;
  // Allocatable = capacity - system-reserved, as the kubelet's (no kube-reserved or eviction threshold here).
  const reserved = systemReservedOf(cfg);
  const allocCpu = reserved.cpuMillis ? `${Math.max(0, os.cpus().length * 1000 - reserved.cpuMillis)}m` : cpus;
  const allocMemory = reserved.memoryBytes ? `${Math.max(0, Math.floor((os.totalmem() - reserved.memoryBytes) / 1024))}Ki` : memory;
  const now = new Date();
  const osRelease = await readTrim('/etc/os-release');
  const prettyName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? 'Linux';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: cfg.nodeName,
      labels: {
        'kubernetes.io/hostname': cfg.nodeName,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': os.arch() === 'x64' ? 'amd64' : os.arch(),
        'stevedore.io/container-runtime': runtime.name,
        'stevedore.io/default-stage1': cfg.rktStage1Image,
        ...runtime.nodeLabels,
      },
      // Where the local-path provisioner puts this node's volumes (control-plane/controllers/persistent-volume.ts).
      annotations: { [LOCAL_PATH_ROOT_ANNOTATION]: localPathRoot(cfg.dataDir), [STAGE1_POLICY_ANNOTATION]: policyAnnotation(policy) },
    },
    spec: { podCIDR: cfg.podCidr, podCIDRs: [cfg.podCidr] },
    status: {
      capacity: { cpu: cpus, memory, pods: String(cfg.maxPods) },
      allocatable: { cpu: allocCpu, memory: allocMemory, pods: String(cfg.maxPods) },
      conditions: [readyCondition(now, readySince)],
      addresses: [{ type: 'InternalIP', address: cfg.nodeIP }, { type: 'Hostname', address: cfg.nodeName }],
      daemonEndpoints: { kubeletEndpoint: { Port: cfg.port } },
      nodeInfo: {
        machineID: await readTrim('/etc/machine-id'),
        systemUUID: await readTrim('/sys/class/dmi/id/product_uuid') || await readTrim('/etc/machine-id'),
        bootID: await readTrim('/proc/sys/kernel/random/boot_id'),
        kernelVersion: os.release(),
        osImage: prettyName,
        containerRuntimeVersion: `${runtime.name}://${runtime.version}`,
        kubeletVersion: 'v1.32.0-stevedore',
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: os.arch() === 'x64' ? 'amd64' : os.arch(),
      },
    },
  };
}

/**
 * Registers the Node and keeps it alive: a Lease renewed every
 * heartbeatSeconds (what the control plane's health check reads) and the
 * Ready condition's heartbeat in node status.
 */
export class NodeHeartbeat {
  private readonly readySince = new Date();
  private lastStatusAt = 0;

  constructor(private readonly kube: KubeClients, private readonly cfg: AgentConfig, private readonly runtime: ContainerRuntime, private readonly log: Logger, private readonly policy: Stage1Policy = EMPTY_POLICY) {}

  async register(): Promise<void> {
    const node = await describeNode(this.cfg, this.runtime, this.readySince, this.policy);
    try {
      await this.kube.core.createNode({ body: node });
      this.log.info({ node: this.cfg.nodeName }, 'node registered');
    } catch (err) {
      if (apiStatus(err) !== 409) throw err;
      await this.kube.core.patchNode({ name: this.cfg.nodeName, body: { metadata: { labels: node.metadata!.labels, annotations: node.metadata!.annotations } } }, patchAs('merge'));
      await this.kube.core.patchNodeStatus({ name: this.cfg.nodeName, body: { status: node.status } }, patchAs('strategic'));
      this.log.info({ node: this.cfg.nodeName }, 'node already registered; status updated');
    }
    this.lastStatusAt = Date.now();
    await this.renewLease();
  }

  /** One heartbeat: renew the lease; refresh node status every few heartbeats. */
  async beat(): Promise<void> {
    await this.renewLease();
    if (Date.now() - this.lastStatusAt >= 3 * this.cfg.heartbeatSeconds * 1000) {
      await this.kube.core.patchNodeStatus({ name: this.cfg.nodeName, body: { status: { conditions: [readyCondition(new Date(), this.readySince)] } } }, patchAs('strategic'));
      this.lastStatusAt = Date.now();
    }
  }

  private async renewLease(): Promise<void> {
    const name = this.cfg.nodeName;
    const spec = { holderIdentity: name, leaseDurationSeconds: LEASE_DURATION_SECONDS, renewTime: microTime() };
    try {
      await this.kube.coordination.patchNamespacedLease({ name, namespace: LEASE_NAMESPACE, body: { spec } }, patchAs('merge'));
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      // Created without renewTime, then patched: client-node would write the
      // MicroTime with millisecond precision, which kubectl cannot decode.
      const { renewTime: _, ...rest } = spec;
      await this.kube.coordination.createNamespacedLease({ namespace: LEASE_NAMESPACE, body: { metadata: { name, namespace: LEASE_NAMESPACE }, spec: rest } });
      await this.kube.coordination.patchNamespacedLease({ name, namespace: LEASE_NAMESPACE, body: { spec } }, patchAs('merge'));
    }
  }
}
