/**
 * metrics.k8s.io/v1beta1 (metrics-server's role): NodeMetrics and PodMetrics
 * from each node's Summary API (`/stats/summary` on its node API, reached with
 * the same verified TLS as the logs proxy), so `kubectl top nodes|pods` work.
 * Node summaries are cached for a few seconds: one `kubectl top` asks for
 * nodes or pods once, but an HPA and several users would otherwise scrape
 * every node on every request.
 */
import type { Logger } from '../common/log.js';
import { ApiError } from './resources.js';
import { matchLabels, parseLabelSelector, parseFieldSelector, matchFields, SelectorError } from './selectors.js';
import type { KObj, Store } from './store.js';
import { fetchNodeJson, nodeEndpoint, type NodeClientTls } from './node-client.js';

export const METRICS_GROUP = 'metrics.k8s.io';
export const METRICS_VERSION = 'v1beta1';
const GROUP_VERSION = `${METRICS_GROUP}/${METRICS_VERSION}`;
const CACHE_MS = 5000;

interface UsageStats { time?: string; usageNanoCores?: number; workingSetBytes?: number }
interface SummaryDoc {
  node?: { nodeName?: string; cpu?: UsageStats; memory?: UsageStats };
  pods?: Array<{ podRef?: { name?: string; namespace?: string; uid?: string }; cpu?: UsageStats; memory?: UsageStats; containers?: Array<{ name?: string; cpu?: UsageStats; memory?: UsageStats }> }>;
}

/** One pod's usage: per container, CPU in nanocores and the memory working set in bytes. */
export interface PodUsage {
  pod: KObj;
  timestamp: string;
  containers: Array<{ name: string; cpuNanoCores: number; memoryBytes: number }>;
}

export const metricsDiscovery = {
  group: { name: METRICS_GROUP, versions: [{ groupVersion: GROUP_VERSION, version: METRICS_VERSION }], preferredVersion: { groupVersion: GROUP_VERSION, version: METRICS_VERSION } },
  resources: {
    kind: 'APIResourceList', apiVersion: 'v1', groupVersion: GROUP_VERSION,
    resources: [
      { name: 'nodes', singularName: '', namespaced: false, kind: 'NodeMetrics', verbs: ['get', 'list'] },
      { name: 'pods', singularName: '', namespaced: true, kind: 'PodMetrics', verbs: ['get', 'list'] },
    ],
  },
};

/** Quantities as metrics-server writes them: CPU in nanocores, memory in KiB. */
const cpuQuantity = (nanoCores: number) => `${Math.round(nanoCores)}n`;
const memoryQuantity = (bytes: number) => `${Math.round(bytes / 1024)}Ki`;
const seconds = (ms: number) => `${Math.round(ms / 1000)}s`;

/**
 * The kubelet's name for a pod's sandbox (its infra container), under which
 * PodMetrics carries the usage of a pod that is counted as a whole: a kvm
 * pod's VM, whose containers the node cannot see into.
 */
export const SANDBOX_CONTAINER = 'POD';

/**
 * A pod whose containers come without numbers but which has its own (the
 * agent's Summary for a VM pod): its usage as one SANDBOX_CONTAINER entry, so
 * `kubectl top pod` and the HPA (which sum a pod's containers) see the VM's
 * usage, and `--containers` says it is not any one container's.
 */
function vmPodUsage(p: NonNullable<SummaryDoc['pods']>[number]): { time: string; usage: PodUsage['containers'][number] } | undefined {
  const cs = p.containers ?? [];
  if (!cs.length || cs.some((c) => c.cpu !== undefined || c.memory !== undefined)) return undefined;
  if (p.cpu?.usageNanoCores === undefined || p.memory?.workingSetBytes === undefined) return undefined;
  return { time: p.cpu.time ?? '', usage: { name: SANDBOX_CONTAINER, cpuNanoCores: p.cpu.usageNanoCores, memoryBytes: p.memory.workingSetBytes } };
}

export class MetricsApi {
  private cache = new Map<string, { at: number; summary: Promise<SummaryDoc | undefined> }>();

  /** `windowMs`: the agents' sampling interval, reported as each metric's window. */
  constructor(private readonly store: Store, private readonly nodeClient: NodeClientTls, private readonly log: Logger, private readonly windowMs = 10_000) {}

  /** The summary of one node, or undefined when it cannot be had (logged; the node's objects are left out, as metrics-server does). */
  private summaryOf(node: KObj): Promise<SummaryDoc | undefined> {
    const name: string = node.metadata.name;
    const hit = this.cache.get(name);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.summary;
    const { ip, port } = nodeEndpoint(node);
    const summary = ip
      ? (fetchNodeJson(name, ip, port, '/stats/summary', this.nodeClient) as Promise<SummaryDoc>).catch((err) => {
        this.log.warn({ node: name, err: String(err) }, 'could not scrape the node\'s stats; its metrics are left out');
        return undefined;
      })
      : Promise.resolve(undefined);
    this.cache.set(name, { at: Date.now(), summary });
    return summary;
  }

  private async summaries(): Promise<Array<{ node: KObj; summary: SummaryDoc }>> {
    const nodes = this.store.list('nodes');
    const all = await Promise.all(nodes.map(async (node) => ({ node, summary: await this.summaryOf(node) })));
    return all.filter((x): x is { node: KObj; summary: SummaryDoc } => x.summary !== undefined);
  }

  private async nodeMetrics(): Promise<KObj[]> {
    const out: KObj[] = [];
    for (const { node, summary } of await this.summaries()) {
      const cpu = summary.node?.cpu;
      const mem = summary.node?.memory;
      if (cpu?.usageNanoCores === undefined || mem?.workingSetBytes === undefined) continue; // no rate yet: not ready, as metrics-server
      out.push({
        metadata: { name: node.metadata.name, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), ...(node.metadata.labels ? { labels: node.metadata.labels } : {}) },
        timestamp: cpu.time, window: seconds(this.windowMs),
        usage: { cpu: cpuQuantity(cpu.usageNanoCores), memory: memoryQuantity(mem.workingSetBytes) },
      });
    }
    return out;
  }

  /**
   * The latest usage of each pod the API knows (by uid: a pod deleted and made again under its
   * name is another pod) that has a rate for every container; `namespace` '' for all.
   */
  async podUsage(namespace: string): Promise<PodUsage[]> {
    const out: PodUsage[] = [];
    for (const { summary } of await this.summaries()) {
      for (const p of summary.pods ?? []) {
        const ns = p.podRef?.namespace ?? '';
        if (namespace && ns !== namespace) continue;
        const pod = this.store.get('pods', ns, p.podRef?.name ?? '');
        if (!pod || pod.metadata.uid !== p.podRef?.uid) continue;
        const containers = (p.containers ?? []).filter((c) => c.cpu?.usageNanoCores !== undefined && c.memory?.workingSetBytes !== undefined);
        const vm = vmPodUsage(p);
        if (vm) {
          out.push({ pod, timestamp: vm.time, containers: [vm.usage] });
          continue;
        }
        if (!containers.length || containers.length !== (p.containers ?? []).length) continue;
        out.push({
          pod,
          timestamp: containers[0]!.cpu!.time ?? '',
          containers: containers.map((c) => ({ name: c.name ?? '', cpuNanoCores: c.cpu!.usageNanoCores!, memoryBytes: c.memory!.workingSetBytes! })),
        });
      }
    }
    return out;
  }

  private async podMetrics(namespace: string): Promise<KObj[]> {
    return (await this.podUsage(namespace)).map(({ pod, timestamp, containers }) => ({
      metadata: { name: pod.metadata.name, namespace: pod.metadata.namespace, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), ...(pod.metadata.labels ? { labels: pod.metadata.labels } : {}) },
      timestamp, window: seconds(this.windowMs),
      containers: containers.map((c) => ({ name: c.name, usage: { cpu: cpuQuantity(c.cpuNanoCores), memory: memoryQuantity(c.memoryBytes) } })),
    }));
  }

  /** A GET under /apis/metrics.k8s.io/v1beta1: `resource` nodes|pods, `name` for one object. */
  async get(resource: string, namespace: string, name: string | undefined, q: URLSearchParams): Promise<KObj> {
    const kind = resource === 'nodes' ? 'NodeMetrics' : resource === 'pods' ? 'PodMetrics' : undefined;
    if (!kind) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    let items = resource === 'nodes' ? await this.nodeMetrics() : await this.podMetrics(namespace);
    items = items.map((i) => ({ kind, apiVersion: GROUP_VERSION, ...i }));
    if (name !== undefined) {
      const one = items.find((i) => i.metadata.name === name);
      if (!one) throw new ApiError(404, 'NotFound', `${resource === 'nodes' ? 'nodemetrics' : 'podmetrics'}.${METRICS_GROUP} "${namespace ? `${namespace}/` : ''}${name}" not found`, { name, group: METRICS_GROUP, kind: resource });
      return one;
    }
    try {
      const labels = parseLabelSelector(q.get('labelSelector'));
      const fields = parseFieldSelector(q.get('fieldSelector'), 'metrics', kind);
      items = items.filter((i) => matchLabels(i, labels) && matchFields(i, fields));
    } catch (err) {
      if (err instanceof SelectorError) throw new ApiError(400, 'BadRequest', err.message);
      throw err;
    }
    return { kind: `${kind}List`, apiVersion: GROUP_VERSION, metadata: {}, items };
  }
}
