import type { Logger } from '../../common/log.js';
import { now } from '../resources.js';
import { ConflictError, type KObj, type Store } from '../store.js';
import type { EventRecorder } from './events.js';

/** When a node last showed it was alive: its Lease renewal, its Ready heartbeat, or its creation. */
export function lastHeartbeat(store: Store, node: KObj): number {
  const lease = store.get('leases', 'kube-node-lease', node.metadata.name);
  const ready = (node.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready');
  const times = [lease?.spec?.renewTime, ready?.lastHeartbeatTime, node.metadata.creationTimestamp].map((t) => (t ? Date.parse(t) || 0 : 0));
  return Math.max(...times);
}

/**
 * The node lifecycle controller (kube-controller-manager's): a node whose
 * Lease is not renewed within the grace period gets every condition Unknown
 * and a NodeNotReady event; terminating pods of deleted nodes are dropped
 * (nobody is left to confirm their end).
 */
export class NodeLifecycleController {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly store: Store, private readonly log: Logger, private readonly events: EventRecorder, private readonly graceSeconds: number) {}

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
      for (const node of this.store.list('nodes')) {
        if (Date.now() - lastHeartbeat(this.store, node) < this.graceSeconds * 1000) continue;
        const conds: KObj[] = node.status?.conditions ?? [];
        const ready = conds.find((c) => c.type === 'Ready');
        if (ready?.status === 'Unknown') continue;
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
      for (const pod of this.store.list('pods')) {
        if (pod.metadata.deletionTimestamp && pod.spec?.nodeName && !this.store.get('nodes', '', pod.spec.nodeName)) this.store.delete('pods', pod.metadata.namespace, pod.metadata.name);
      }
    } catch (err) {
      this.log.error({ err }, 'node monitor pass failed');
    }
  }
}
