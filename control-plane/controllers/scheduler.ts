import type { Logger } from '../../common/log.js';
import { now } from '../resources.js';
import { ConflictError, type KObj, type Store } from '../store.js';
import type { EventRecorder } from './events.js';
import { lastHeartbeat } from './node-lifecycle.js';
import { prepareClaimsForBinding, volumeBindingReason } from './persistent-volume.js';
import { NO_USAGE, addPod, filterReason, scoreNode, type ClusterView, type Usage } from './scheduling.js';

/**
 * The scheduler (kube-scheduler's role): Pending pods with no nodeName go to
 * a Ready node with a fresh Lease that passes kube-scheduler's default
 * filters (unschedulable, taints and tolerations, nodeSelector and node
 * affinity, resources, volume binding, pod affinity and anti-affinity,
 * topology spread; scheduling.ts), highest score first (least allocated,
 * balanced, preferred affinities, PreferNoSchedule taints, soft spread).
 * Binding goes through the API's own binding code (`bind`), as kube-scheduler
 * posts pods/binding; a pod that fits nowhere gets PodScheduled=False and one
 * FailedScheduling event per distinct reason, worded as kube-scheduler's.
 */
/** The longest one scheduling pass runs before it yields to the API server (kube-scheduler places one pod per cycle). */
const SCHEDULING_SLICE_MS = 100;

export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private queued = false;
  private stopped = false;
  /** A pod may be waiting for a node: pod writes of bound pods then skip the pass (see start). */
  private mayHavePending = true;
  /** Each node's health, read once per pass (a Lease read per node and pod made 1000 pods × 100 nodes reads). */
  private readonly healthThisPass = new Map<string, boolean>();
  private readonly lastUnschedulable = new Map<string, string>();

  constructor(private readonly store: Store, private readonly log: Logger, private readonly events: EventRecorder,
    private readonly opts: { nodeGraceSeconds: number; bind: (pod: KObj, node: string) => KObj }) {}

  start(): void {
    this.timer = setInterval(() => this.pass(), 2000);
    this.unsubscribe = this.store.subscribe((c) => {
      if (c.resource === 'pods') {
        // Only a pod still to place, or one that leaves a node (room for those waiting), needs a pass: the status
        // writes of bound pods (most writes while 1000 pods start) would each cost a read of every pod.
        const unbound = c.type !== 'DELETED' && !c.object.spec?.nodeName;
        if (unbound) this.mayHavePending = true;
        if (unbound || (this.mayHavePending && (c.type === 'DELETED' || c.object.metadata?.deletionTimestamp || ['Succeeded', 'Failed'].includes(c.object.status?.phase)))) this.queue();
      } else if ((c.resource === 'nodes' || c.resource === 'persistentvolumeclaims' || c.resource === 'persistentvolumes') && this.mayHavePending) this.queue();
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
    const known = this.healthThisPass.get(node.metadata.name);
    if (known !== undefined) return known;
    const healthy = this.readNodeHealth(node);
    this.healthThisPass.set(node.metadata.name, healthy);
    return healthy;
  }

  private readNodeHealth(node: KObj): boolean {
    const ready = (node.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready');
    if (ready?.status !== 'True') return false;
    return Date.now() - lastHeartbeat(this.store, node) < this.opts.nodeGraceSeconds * 1000;
  }

  pass(): void {
    if (this.stopped) return;
    this.healthThisPass.clear();
    try {
      const pods = this.store.listShared('pods');
      const pending = pods.filter((p) => !p.spec?.nodeName && !p.metadata.deletionTimestamp && (p.spec?.schedulerName ?? 'default-scheduler') === 'default-scheduler' && (p.status?.phase ?? 'Pending') === 'Pending');
      // Pods left unplaced wait for a change (a node, a volume, room freed) or the timer's pass.
      this.mayHavePending = pending.length > 0;
      if (!pending.length) return;
      const nodes = [...this.store.listShared('nodes')];
      const used = new Map<string, Usage>();
      const boundPods: KObj[] = [];
      for (const p of pods) {
        const n = p.spec?.nodeName;
        if (!n || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
        used.set(n, addPod(used.get(n) ?? NO_USAGE, p));
        boundPods.push(p);
      }
      const view: ClusterView = { nodes, boundPods, usage: (node) => used.get(node) ?? NO_USAGE };
      // Higher priority first, then the oldest (kube-scheduler's queue order).
      pending.sort((a, b) => (b.spec?.priority ?? 0) - (a.spec?.priority ?? 0) || String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)));
      // A time budget per pass: 1000 pods placed in one go would hold the API server (same thread) for seconds.
      // The rest waits for the next pass, on the next turn, after the requests that queued meanwhile.
      const started = performance.now();
      for (const pod of pending) {
        if (performance.now() - started > SCHEDULING_SLICE_MS) {
          this.queue();
          break;
        }
        this.place(pod, view, used);
      }
    } catch (err) {
      this.log.error({ err }, 'scheduling pass failed');
    }
  }

  private place(pod: KObj, view: ClusterView, used: Map<string, Usage>): void {
    const { nodes } = view;
    const reasons = new Map<string, number>();
    const note = (why: string) => reasons.set(why, (reasons.get(why) ?? 0) + 1);
    const fits = nodes.filter((n) => {
      const why = filterReason(pod, n, view, (p, node) => volumeBindingReason(this.store, p, node) ?? undefined);
      if (why) return note(why), false;
      // A node that stopped renewing its Lease before the lifecycle controller tainted it.
      if (!this.nodeHealthy(n)) return note('node(s) were not ready'), false;
      return true;
    });
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (fits.length) {
      const scores = new Map(fits.map((n) => [n.metadata.name as string, scoreNode(pod, n, view)]));
      // Equal scores go to the node with fewer pods, then by name: stable, and spreading.
      const node = fits.sort((a, b) => scores.get(b.metadata.name)! - scores.get(a.metadata.name)! || view.usage(a.metadata.name).pods - view.usage(b.metadata.name).pods || a.metadata.name.localeCompare(b.metadata.name))[0]!;
      try {
        // Claims waiting for their first consumer are provisioned on this node first; the pod is bound once they are.
        if (!prepareClaimsForBinding(this.store, pod, node.metadata.name)) return;
        const bound = this.opts.bind(pod, node.metadata.name);
        used.set(node.metadata.name, addPod(view.usage(node.metadata.name), bound));
        view.boundPods.push(bound);
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
