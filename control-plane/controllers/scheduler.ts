import type { Logger } from '../../common/log.js';
import { cpuMillis, memoryBytes } from '../../common/quantity.js';
import { now } from '../resources.js';
import { ConflictError, type KObj, type Store } from '../store.js';
import type { EventRecorder } from './events.js';
import { lastHeartbeat } from './node-lifecycle.js';
import { prepareClaimsForBinding, volumeBindingReason } from './persistent-volume.js';

interface Usage { cpu: number; mem: number; pods: number }

/** A pod's requests (its limits where it states no requests, as the API defaults them). */
function podRequests(pod: KObj): { cpu: number; mem: number } {
  let cpu = 0, mem = 0;
  for (const c of pod.spec?.containers ?? []) {
    const req = c?.resources?.requests ?? c?.resources?.limits ?? {};
    try {
      if (req.cpu !== undefined) cpu += cpuMillis(req.cpu, 'cpu');
      if (req.memory !== undefined) mem += memoryBytes(req.memory, 'memory');
    } catch {
      /* validated on create */
    }
  }
  return { cpu, mem };
}

/**
 * The scheduler (kube-scheduler's role, a subset): Pending pods with no
 * nodeName go to a Ready node with a fresh Lease that matches nodeSelector and
 * has room for their requests, least allocated first. Binding goes through the
 * API's own binding code (`bind`), as kube-scheduler posts pods/binding; a pod
 * that fits nowhere gets PodScheduled=False and one FailedScheduling event per
 * distinct reason.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private queued = false;
  private stopped = false;
  private readonly lastUnschedulable = new Map<string, string>();

  constructor(private readonly store: Store, private readonly log: Logger, private readonly events: EventRecorder,
    private readonly opts: { nodeGraceSeconds: number; bind: (pod: KObj, node: string) => KObj }) {}

  start(): void {
    this.timer = setInterval(() => this.pass(), 2000);
    this.unsubscribe = this.store.subscribe((c) => {
      if (c.resource === 'pods' || c.resource === 'nodes' || c.resource === 'persistentvolumeclaims' || c.resource === 'persistentvolumes') this.queue();
    });
    this.queue();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  private queue(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    setImmediate(() => {
      this.queued = false;
      this.pass();
    });
  }

  /** Schedulable: Ready=True and its Lease (or Ready heartbeat) renewed within the grace period. */
  private nodeHealthy(node: KObj): boolean {
    const ready = (node.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready');
    if (ready?.status !== 'True') return false;
    return Date.now() - lastHeartbeat(this.store, node) < this.opts.nodeGraceSeconds * 1000;
  }

  pass(): void {
    if (this.stopped) return;
    try {
      const pods = this.store.list('pods');
      const pending = pods.filter((p) => !p.spec?.nodeName && !p.metadata.deletionTimestamp && (p.spec?.schedulerName ?? 'default-scheduler') === 'default-scheduler' && (p.status?.phase ?? 'Pending') === 'Pending');
      if (!pending.length) return;
      const nodes = this.store.list('nodes');
      const used = new Map<string, Usage>();
      const usage = (node: string) => used.get(node) ?? { cpu: 0, mem: 0, pods: 0 };
      for (const p of pods) {
        const n = p.spec?.nodeName;
        if (!n || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
        const u = usage(n);
        const r = podRequests(p);
        used.set(n, { cpu: u.cpu + r.cpu, mem: u.mem + r.mem, pods: u.pods + 1 });
      }
      for (const pod of pending) this.place(pod, nodes, used, usage);
    } catch (err) {
      this.log.error({ err }, 'scheduling pass failed');
    }
  }

  private place(pod: KObj, nodes: KObj[], used: Map<string, Usage>, usage: (node: string) => Usage): void {
    const req = podRequests(pod);
    const reasons = new Map<string, number>();
    const note = (why: string) => reasons.set(why, (reasons.get(why) ?? 0) + 1);
    const fits = nodes.filter((n) => {
      if (!this.nodeHealthy(n)) return note('node(s) were not ready'), false;
      if (n.spec?.unschedulable) return note('node(s) were unschedulable'), false;
      const labels = n.metadata.labels ?? {};
      if (!Object.entries<string>(pod.spec?.nodeSelector ?? {}).every(([k, v]) => labels[k] === v)) return note("node(s) didn't match Pod's node affinity/selector"), false;
      const volumes = volumeBindingReason(this.store, pod, n);
      if (volumes) return note(volumes), false;
      const alloc = n.status?.allocatable ?? n.status?.capacity ?? {};
      const u = usage(n.metadata.name);
      try {
        if (alloc.cpu !== undefined && u.cpu + req.cpu > cpuMillis(alloc.cpu, 'cpu')) return note('Insufficient cpu'), false;
        if (alloc.memory !== undefined && u.mem + req.mem > memoryBytes(alloc.memory, 'memory')) return note('Insufficient memory'), false;
        if (alloc.pods !== undefined && u.pods + 1 > Number(alloc.pods)) return note('Too many pods'), false;
      } catch {
        return note('node(s) had invalid allocatable resources'), false;
      }
      return true;
    });
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (fits.length) {
      const free = (n: KObj) => {
        const alloc = n.status?.allocatable ?? {};
        const u = usage(n.metadata.name);
        try { return (alloc.cpu ? cpuMillis(alloc.cpu, 'cpu') : 1e9) - u.cpu - u.pods; } catch { return 0; }
      };
      const node = fits.sort((a, b) => free(b) - free(a))[0]!;
      try {
        // Claims waiting for their first consumer are provisioned on this node first; the pod is bound once they are.
        if (!prepareClaimsForBinding(this.store, pod, node.metadata.name)) return;
        const bound = this.opts.bind(pod, node.metadata.name);
        const u = usage(node.metadata.name);
        used.set(node.metadata.name, { cpu: u.cpu + req.cpu, mem: u.mem + req.mem, pods: u.pods + 1 });
        this.lastUnschedulable.delete(key);
        this.events.record(bound, 'Normal', 'Scheduled', `Successfully assigned ${key} to ${node.metadata.name}`, 'default-scheduler');
        this.log.info({ pod: key, node: node.metadata.name }, 'pod scheduled');
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
      return;
    }
    const detail = [...reasons.entries()].map(([why, n]) => `${n} ${why}`).sort().join(', ');
    const msg = `0/${nodes.length} nodes are available${detail ? `: ${detail}` : ''}. preemption: 0/${nodes.length} nodes are available: ${nodes.length} Preemption is not helpful for scheduling.`;
    const existing = (pod.status?.conditions ?? []).find((c: KObj) => c.type === 'PodScheduled');
    if (this.lastUnschedulable.get(key) === msg || (existing?.status === 'False' && existing.message === msg)) return;
    this.lastUnschedulable.set(key, msg);
    const obj = structuredClone(pod);
    obj.status ??= {};
    obj.status.conditions = [...(obj.status.conditions ?? []).filter((c: KObj) => c.type !== 'PodScheduled'), { type: 'PodScheduled', status: 'False', lastProbeTime: null, lastTransitionTime: now(), reason: 'Unschedulable', message: msg }];
    try {
      const stored = this.store.update('pods', pod.metadata.namespace, pod.metadata.name, obj, pod.metadata.resourceVersion);
      this.events.record(stored, 'Warning', 'FailedScheduling', msg, 'default-scheduler');
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
}
