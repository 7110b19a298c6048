import type { Logger } from '../../common/log.js';
import { ApiError, now } from '../resources.js';
import type { ApiClient } from './client.js';
import { tolerates } from './scheduling.js';
import { ConflictError, type KObj, type Store } from '../store.js';
import type { EventRecorder } from './events.js';

/** When a node last showed it was alive: its Lease renewal, its Ready heartbeat, or its creation. */
export function lastHeartbeat(store: Store, node: KObj): number {
  const lease = store.get('leases', 'kube-node-lease', node.metadata.name);
  const ready = (node.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready');
  const times = [lease?.spec?.renewTime, ready?.lastHeartbeatTime, node.metadata.creationTimestamp].map((t) => (t ? Date.parse(t) || 0 : 0));
  return Math.max(...times);
}

/** The taints the node lifecycle puts on nodes whose Ready condition is False or Unknown. */
export const NOT_READY_TAINT = 'node.kubernetes.io/not-ready';
export const UNREACHABLE_TAINT = 'node.kubernetes.io/unreachable';

/** The lifecycle taints a node should carry for its Ready condition: not-ready (False) or unreachable (Unknown), NoSchedule and NoExecute. */
export function lifecycleTaints(node: KObj, current: KObj[], at: string): KObj[] {
  const ready = (node.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready');
  const key = ready?.status === 'False' ? NOT_READY_TAINT : ready?.status === 'Unknown' ? UNREACHABLE_TAINT : undefined;
  const others = current.filter((t) => t.key !== NOT_READY_TAINT && t.key !== UNREACHABLE_TAINT);
  if (!key) return others;
  // Keep the time a NoExecute taint was first added: eviction counts tolerationSeconds from it.
  const kept = current.find((t) => t.key === key && t.effect === 'NoExecute');
  return [...others, { key, effect: 'NoSchedule' }, { key, effect: 'NoExecute', timeAdded: kept?.timeAdded ?? at }];
}

/**
 * When a pod on a node with NoExecute taints must go (the taint eviction
 * controller's rule): now for a taint it does not tolerate, else once the
 * shortest tolerationSeconds of the taints it tolerates has passed since each
 * was added; undefined when it tolerates them all for ever.
 */
export function evictionTime(pod: KObj, taints: KObj[]): number | undefined {
  let at: number | undefined;
  for (const taint of taints) {
    if (taint.effect !== 'NoExecute') continue;
    const matching = (pod.spec?.tolerations ?? []).filter((t: KObj) => tolerates(t, taint));
    if (!matching.length) return 0;
    const limits = matching.map((t: KObj) => t.tolerationSeconds).filter((n: unknown): n is number => typeof n === 'number');
    if (limits.length < matching.length) continue; // one toleration without a limit: tolerated for ever
    const until = (Date.parse(taint.timeAdded ?? '') || 0) + Math.max(0, Math.min(...limits)) * 1000;
    at = at === undefined ? until : Math.min(at, until);
  }
  return at;
}

/**
 * The node lifecycle controller (kube-controller-manager's): a node whose
 * Lease is not renewed within the grace period gets every condition Unknown
 * and a NodeNotReady event; nodes not Ready carry the not-ready or
 * unreachable taints (NoSchedule, NoExecute); pods on a node with NoExecute
 * taints are evicted once their tolerations run out (the taint eviction
 * controller; DefaultTolerationSeconds gives every pod 300 s), so the
 * controllers that own them make them again elsewhere; terminating pods of
 * deleted nodes are dropped (nobody is left to confirm their end).
 */
export class NodeLifecycleController {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly store: Store, private readonly log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient, private readonly graceSeconds: number) {}

  start(): void {
    this.timer = setInterval(() => this.pass(), Math.max(200, Math.min(5000, this.graceSeconds * 500)));
    this.pass();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  pass(): void {
    try {
      // Shared objects: markUnknown and taint copy a node before they change it.
      for (const node of this.store.listShared('nodes')) {
        this.markUnknown(node);
        this.taint(this.store.getShared('nodes', '', node.metadata.name) ?? node);
      }
      this.evict();
      for (const pod of this.store.listShared('pods')) {
        if (pod.metadata.deletionTimestamp && pod.spec?.nodeName && !this.store.get('nodes', '', pod.spec.nodeName)) this.store.delete('pods', pod.metadata.namespace, pod.metadata.name);
      }
    } catch (err) {
      this.log.error({ err }, 'node monitor pass failed');
    }
  }

  private markUnknown(node: KObj): void {
    if (Date.now() - lastHeartbeat(this.store, node) < this.graceSeconds * 1000) return;
    const conds: KObj[] = node.status?.conditions ?? [];
    const ready = conds.find((c) => c.type === 'Ready');
    if (ready?.status === 'Unknown') return;
    const obj = structuredClone(node);
    obj.status ??= {};
    const t = now();
    const types = conds.length ? conds.map((c) => c.type) : ['Ready'];
    obj.status.conditions = types.map((type) => {
      const c = conds.find((x) => x.type === type) ?? { type, lastHeartbeatTime: null };
      return { ...c, status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.', lastTransitionTime: t };
    });
    try {
      this.store.update('nodes', '', node.metadata.name, obj, node.metadata.resourceVersion);
      this.log.warn({ node: node.metadata.name }, 'node stopped renewing its lease; Ready is now Unknown');
      this.events.record({ ...obj, metadata: { ...obj.metadata, namespace: 'default' } }, 'Normal', 'NodeNotReady', `Node ${node.metadata.name} status is now: NodeNotReady`, 'node-controller');
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }

  private taint(node: KObj): void {
    const current: KObj[] = node.spec?.taints ?? [];
    const want = lifecycleTaints(node, current, now());
    if (JSON.stringify(want) === JSON.stringify(current)) return;
    const obj = structuredClone(node);
    obj.spec ??= {};
    if (want.length) obj.spec.taints = want;
    else delete obj.spec.taints;
    try {
      this.client.update('nodes', '', obj);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 409)) throw err;
    }
  }

  private evict(): void {
    const taintsByNode = new Map<string, KObj[]>();
    for (const n of this.store.listShared('nodes')) {
      const noExecute = (n.spec?.taints ?? []).filter((t: KObj) => t.effect === 'NoExecute');
      if (noExecute.length) taintsByNode.set(n.metadata.name, noExecute);
    }
    if (!taintsByNode.size) return;
    for (const pod of this.store.listShared('pods')) {
      const taints = taintsByNode.get(pod.spec?.nodeName);
      if (!taints || pod.metadata.deletionTimestamp || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
      const at = evictionTime(pod, taints);
      if (at === undefined || Date.now() < at) continue;
      try {
        this.events.record(pod, 'Normal', 'TaintManagerEviction', `Marking for deletion Pod ${pod.metadata.namespace}/${pod.metadata.name}`, 'taint-eviction-controller');
        this.client.delete('pods', pod.metadata.namespace, pod.metadata.name, { uid: pod.metadata.uid });
        this.log.info({ pod: `${pod.metadata.namespace}/${pod.metadata.name}`, node: pod.spec?.nodeName }, 'pod evicted: its node has a NoExecute taint it no longer tolerates');
      } catch (err) {
        if (!(err instanceof ApiError && (err.code === 404 || err.code === 409))) throw err;
      }
    }
  }
}
