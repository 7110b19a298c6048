import type { Logger } from '../../common/log.js';
import { ApiError } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { KindController, POD_BURST_BATCH_MS, podCreationAllowed, adoptOrphans, controllerRef, controllerUid, podActive, podAvailable, podReady, type ApiClient } from './client.js';
import { selectorMatches } from '../kinds/workloads.js';
import type { EventRecorder } from './events.js';

/** Most pods one pass creates (kube-controller-manager's burstReplicas). */
const BURST = 500;
const COMPONENT = 'replicaset-controller';

/** Which pods go first when scaling down, as kube's ActivePods ordering: the least useful first. */
function deletionRank(p: KObj): number[] {
  const phase = p.status?.phase === 'Pending' ? 0 : p.status?.phase === 'Running' ? 2 : 1;
  const readySince = Date.parse((p.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready' && c.status === 'True')?.lastTransitionTime ?? '') || 0;
  const restarts = (p.status?.containerStatuses ?? []).reduce((n: number, c: KObj) => n + (c.restartCount ?? 0), 0);
  return [p.spec?.nodeName ? 1 : 0, phase, podReady(p) ? 1 : 0, -readySince, -restarts, -(Date.parse(p.metadata.creationTimestamp) || 0)];
}

function compareRank(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** A pod of a ReplicaSet: the template's labels, annotations and spec, owned by the ReplicaSet. */
export function podFromTemplate(owner: KObj, template: KObj, generateName: string): KObj {
  const meta = template.metadata ?? {};
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: {
      generateName,
      ...(meta.labels ? { labels: { ...meta.labels } } : {}),
      ...(meta.annotations ? { annotations: { ...meta.annotations } } : {}),
      ...(meta.finalizers ? { finalizers: [...meta.finalizers] } : {}),
      ownerReferences: [controllerRef(owner)],
    },
    spec: structuredClone(template.spec ?? {}),
  };
}

/**
 * The ReplicaSet controller: keeps spec.replicas active pods made from the template
 * (names `<rs>-<5 random>`, a controller owner reference), deletes the least useful ones
 * first when there are too many, and reports replicas, fullyLabeledReplicas, readyReplicas,
 * availableReplicas and observedGeneration.
 */
export class ReplicaSetController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'replicasets', ['pods'], 1000, POD_BURST_BATCH_MS);
  }

  protected sync(rs: KObj): void {
    const ns = rs.metadata.namespace;
    const all = this.store.listShared('pods', ns);
    const pods = all.filter((p) => controllerUid(p) === rs.metadata.uid);
    pods.push(...adoptOrphans(this.client, 'pods', rs, all, (p) => podActive(p) && selectorMatches(rs.spec?.selector, p.metadata.labels)));
    let active = pods.filter(podActive);
    if (!rs.metadata.deletionTimestamp) {
      const want: number = rs.spec?.replicas ?? 1;
      const diff = want - active.length;
      if (diff > 0) {
        for (let i = 0; i < Math.min(diff, BURST); i++) {
          if (!podCreationAllowed(this.client, this)) break;
          try {
            const pod = this.client.create('pods', ns, podFromTemplate(rs, rs.spec.template, `${rs.metadata.name}-`));
            active.push(pod);
            this.events.record(rs, 'Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`, COMPONENT);
          } catch (err) {
            this.events.record(rs, 'Warning', 'FailedCreate', `Error creating: ${(err as Error).message}`, COMPONENT);
            break;
          }
        }
      } else if (diff < 0) {
        const doomed = [...active].sort((a, b) => compareRank(deletionRank(a), deletionRank(b))).slice(0, -diff);
        for (const pod of doomed) {
          try {
            this.client.delete('pods', ns, pod.metadata.name, { uid: pod.metadata.uid });
            this.events.record(rs, 'Normal', 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name}`, COMPONENT);
          } catch (err) {
            if (!(err instanceof ApiError && err.code === 404)) this.events.record(rs, 'Warning', 'FailedDelete', `Error deleting: ${(err as Error).message}`, COMPONENT);
          }
        }
        const gone = new Set(doomed.map((p) => p.metadata.uid));
        active = active.filter((p) => !gone.has(p.metadata.uid));
      }
    }
    this.writeStatus(rs, active);
  }

  private writeStatus(rs: KObj, active: KObj[]): void {
    const minReady: number = rs.spec?.minReadySeconds ?? 0;
    const templateLabels: Record<string, string> = rs.spec?.template?.metadata?.labels ?? {};
    const fully = active.filter((p) => Object.entries(templateLabels).every(([k, v]) => p.metadata.labels?.[k] === v)).length;
    const ready = active.filter(podReady).length;
    const available = active.filter((p) => podAvailable(p, minReady)).length;
    const status: KObj = { replicas: active.length };
    if (fully) status.fullyLabeledReplicas = fully;
    if (ready) status.readyReplicas = ready;
    if (available) status.availableReplicas = available;
    status.observedGeneration = rs.metadata.generation ?? 1;
    const failure = (rs.status?.conditions ?? []).filter((c: KObj) => c.type === 'ReplicaFailure');
    if (failure.length) status.conditions = failure;
    if (ready > available && minReady > 0) setTimeout(() => this.queue(), 1000).unref();
    if (JSON.stringify(status) === JSON.stringify(rs.status ?? {})) return;
    const cur = this.store.get('replicasets', rs.metadata.namespace, rs.metadata.name);
    if (!cur) return;
    this.client.updateStatus('replicasets', rs.metadata.namespace, { ...cur, status });
  }
}

