/**
 * Resource usage of the node and its containers, as the kubelet's Summary API
 * (`/stats/summary`, stats/v1alpha1) and resource metrics endpoint
 * (`/metrics/resource`) report it. The counters are sampled every interval
 * (cAdvisor's housekeeping, 10 s by default): a rate such as usageNanoCores
 * needs two samples, and sampling on a timer keeps the cost fixed however
 * often the control plane asks.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from '../common/log.js';
import type { CgroupUsage } from '../common/cgroups.js';
import type { ContainerRuntime, PodUsage } from './runtime.js';

interface CpuSample { at: number; usageNs: number }

export interface CpuStats { time: string; usageNanoCores?: number; usageCoreNanoSeconds: number }
export interface MemoryStats { time: string; availableBytes?: number; usageBytes: number; workingSetBytes: number; rssBytes: number }
/** cpu and memory are left out for a container whose own counters the node cannot read (a kvm pod's: inside the VM), as the Summary API allows. */
export interface ContainerStats { name: string; startTime?: string; cpu?: CpuStats; memory?: MemoryStats }
export interface PodStats {
  podRef: { name: string; namespace: string; uid: string };
  startTime?: string;
  containers: ContainerStats[];
  cpu: CpuStats;
  memory: MemoryStats;
}
export interface Summary {
  node: { nodeName: string; startTime: string; cpu: CpuStats; memory: MemoryStats };
  pods: PodStats[];
}

const USER_HZ = 100; // /proc/stat counts in clock ticks; Linux exports 100 per second to user space

/** The node's CPU time in use (all but idle and iowait) since boot, ns. */
export function nodeCpuUsageNs(procStat = readFileSync('/proc/stat', 'utf8')): number {
  const fields = (procStat.split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return ((user + nice + system + irq + softirq + steal) * 1e9) / USER_HZ;
}

/** The node's memory as the kubelet reports it for the root cgroup: usage, working set (no reclaimable cache), available. */
export function nodeMemory(meminfo = readFileSync('/proc/meminfo', 'utf8')): { usageBytes: number; workingSetBytes: number; availableBytes: number; rssBytes: number } {
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0) * 1024;
  const total = kb('MemTotal');
  const available = kb('MemAvailable');
  return { usageBytes: total - kb('MemFree'), workingSetBytes: total - available, availableBytes: available, rssBytes: kb('AnonPages') };
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** usageNanoCores between two samples of a cumulative counter; undefined without an earlier one (or after a reset). */
export function nanoCores(prev: CpuSample | undefined, cur: CpuSample): number | undefined {
  if (!prev || cur.at <= prev.at || cur.usageNs < prev.usageNs) return undefined;
  return Math.round(((cur.usageNs - prev.usageNs) / (cur.at - prev.at)) * 1e3); // ns of CPU per ms of wall time → per s
}

type Measured = ContainerStats & { cpu: CpuStats; memory: MemoryStats };
const sumStats = (time: string, cs: Measured[]): { cpu: CpuStats; memory: MemoryStats } => {
  const rates = cs.map((c) => c.cpu.usageNanoCores);
  return {
    cpu: { time, usageCoreNanoSeconds: cs.reduce((n, c) => n + c.cpu.usageCoreNanoSeconds, 0), ...(rates.every((r) => r !== undefined) ? { usageNanoCores: rates.reduce((n, r) => n + r!, 0) } : {}) },
    memory: {
      time,
      usageBytes: cs.reduce((n, c) => n + c.memory.usageBytes, 0),
      workingSetBytes: cs.reduce((n, c) => n + c.memory.workingSetBytes, 0),
      rssBytes: cs.reduce((n, c) => n + c.memory.rssBytes, 0),
    },
  };
};

export class StatsCollector {
  private timer: NodeJS.Timeout | undefined;
  private readonly startTime = Date.now() - Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000);
  private previous = new Map<string, CpuSample>();
  private latest: Summary | undefined;

  constructor(private readonly runtime: ContainerRuntime, private readonly nodeName: string, private readonly intervalMs: number, private readonly log: Logger) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** The last sample; before the first one completes, one taken now (without rates). */
  async summary(): Promise<Summary> {
    return this.latest ?? (await this.sample());
  }

  private async sample(): Promise<Summary> {
    let pods: PodUsage[] = [];
    try {
      pods = await this.runtime.containerUsage();
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not read container usage; the node stats have no pods this time');
    }
    const at = Date.now();
    const time = iso(at);
    const seen = new Map<string, CpuSample>();
    const rate = (key: string, usageNs: number) => {
      const cur = { at, usageNs };
      seen.set(key, cur);
      return nanoCores(this.previous.get(key), cur);
    };
    const measured = (key: string, name: string, startedAt: number | undefined, u: CgroupUsage): Measured => {
      const usageNanoCores = rate(key, u.cpuUsageNs);
      return {
        name,
        ...(startedAt ? { startTime: iso(startedAt) } : {}),
        cpu: { time, usageCoreNanoSeconds: u.cpuUsageNs, ...(usageNanoCores !== undefined ? { usageNanoCores } : {}) },
        memory: { time, usageBytes: u.memoryUsageBytes, workingSetBytes: u.workingSetBytes, rssBytes: u.rssBytes },
      };
    };
    const podStats: PodStats[] = pods.filter((p) => p.uid && p.name).map((p) => {
      // A restarted container has a new start time: its counter starts again from 0.
      const containers: ContainerStats[] = p.containers.map((c) => (c.usageUnknown
        ? { name: c.name, ...(c.startedAt ? { startTime: iso(c.startedAt) } : {}) }
        : measured(`${p.uuid}/${c.name}/${c.startedAt ?? 0}`, c.name, c.startedAt, c)));
      // A VM pod: the pod's numbers are its VM's (the sandbox), not a sum of containers the node cannot see into.
      const { cpu, memory } = p.sandbox
        ? measured(`${p.uuid}/sandbox`, '', undefined, p.sandbox)
        : sumStats(time, containers.filter((c): c is Measured => c.cpu !== undefined && c.memory !== undefined));
      return {
        podRef: { name: p.name!, namespace: p.namespace ?? 'default', uid: p.uid! },
        ...(p.startedAt ? { startTime: iso(p.startedAt) } : {}),
        containers,
        cpu,
        memory,
      };
    });
    const nodeNs = nodeCpuUsageNs();
    const nodeRate = rate('node', nodeNs);
    const mem = nodeMemory();
    this.previous = seen;
    this.latest = {
      node: {
        nodeName: this.nodeName,
        startTime: iso(this.startTime),
        cpu: { time, usageCoreNanoSeconds: nodeNs, ...(nodeRate !== undefined ? { usageNanoCores: nodeRate } : {}) },
        memory: { time, ...mem },
      },
      pods: podStats,
    };
    return this.latest;
  }
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (l: Record<string, string>) => `{${Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;

/** The kubelet's /metrics/resource in Prometheus text format, from a summary. */
export function resourceMetrics(s: Summary): string {
  const ts = (time: string) => Date.parse(time);
  const out: string[] = [];
  const family = (name: string, type: 'counter' | 'gauge', help: string, samples: Array<[Record<string, string>, number, string]>) => {
    out.push(`# HELP ${name} [STABLE] ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v, time] of samples) out.push(`${name}${Object.keys(l).length ? labels(l) : ''} ${v} ${ts(time)}`);
  };
  // Containers without numbers of their own (a kvm pod's) have only their start time here; their pod's series carry the VM's usage.
  const all = s.pods.flatMap((p) => p.containers.map((c) => [{ container: c.name, namespace: p.podRef.namespace, pod: p.podRef.name }, c] as const));
  const containers = all.filter((x): x is readonly [typeof x[0], Measured] => x[1].cpu !== undefined && x[1].memory !== undefined);
  const pods = s.pods.map((p) => [{ namespace: p.podRef.namespace, pod: p.podRef.name }, p] as const);
  family('container_cpu_usage_seconds_total', 'counter', 'Cumulative cpu time consumed by the container in core-seconds', containers.map(([l, c]) => [l, c.cpu.usageCoreNanoSeconds / 1e9, c.cpu.time]));
  family('container_memory_working_set_bytes', 'gauge', 'Current working set of the container in bytes', containers.map(([l, c]) => [l, c.memory.workingSetBytes, c.memory.time]));
  family('container_start_time_seconds', 'gauge', 'Start time of the container since unix epoch in seconds', all.filter(([, c]) => c.startTime).map(([l, c]) => [l, Date.parse(c.startTime!) / 1000, s.node.cpu.time]));
  family('node_cpu_usage_seconds_total', 'counter', 'Cumulative cpu time consumed by the node in core-seconds', [[{}, s.node.cpu.usageCoreNanoSeconds / 1e9, s.node.cpu.time]]);
  family('node_memory_working_set_bytes', 'gauge', 'Current working set of the node in bytes', [[{}, s.node.memory.workingSetBytes, s.node.memory.time]]);
  family('pod_cpu_usage_seconds_total', 'counter', 'Cumulative cpu time consumed by the pod in core-seconds', pods.map(([l, p]) => [l, p.cpu.usageCoreNanoSeconds / 1e9, p.cpu.time]));
  family('pod_memory_working_set_bytes', 'gauge', 'Current working set of the pod in bytes', pods.map(([l, p]) => [l, p.memory.workingSetBytes, p.memory.time]));
  out.push('# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise', '# TYPE scrape_error gauge', 'scrape_error 0');
  return out.join('\n') + '\n';
}
