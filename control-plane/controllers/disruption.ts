import type { Logger } from '../../common/log.js';
import { now } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { scaledCount } from '../kinds/disruption.js';
import { selectorMatches } from '../kinds/workloads.js';
import { KindController, POD_BURST_BATCH_MS, podReady, type ApiClient } from './client.js';

/** How long an eviction's pod counts as gone before its deletion shows (kube's DeletionTimeout). */
const DISRUPTED_POD_TIMEOUT_MS = 2 * 60_000;

/** The pods a budget covers: its namespace, its selector (an empty one selects every pod there). */
export function budgetPods(store: Store, pdb: KObj): KObj[] {
  const sel = pdb.spec?.selector;
  return store.listShared('pods', pdb.metadata.namespace).filter((p) => sel !== undefined && (Object.keys(sel).length === 0 || selectorMatches(sel, p.metadata.labels)));
}

/** The budgets of a pod (its namespace's budgets whose selector matches it). */
export function budgetsOf(store: Store, pod: KObj): KObj[] {
  return store.list('poddisruptionbudgets', pod.metadata.namespace).filter((b) => {
    const sel = b.spec?.selector;
    return sel !== undefined && (Object.keys(sel).length === 0 || selectorMatches(sel, pod.metadata.labels));
  });
}

/** How many pods the budget's pods' controllers want (the scale of each controller once), or undefined with why not. */
function expectedFromControllers(store: Store, pods: KObj[]): { count: number } | { error: string } {
  const seen = new Set<string>();
  let count = 0;
  for (const p of pods) {
    const ref = (p.metadata.ownerReferences ?? []).find((r: KObj) => r.controller);
    if (!ref) return { error: `found no controllers for pod "${p.metadata.name}"` };
    if (seen.has(ref.uid)) continue;
    seen.add(ref.uid);
    const owners: Record<string, string> = { ReplicaSet: 'replicasets', StatefulSet: 'statefulsets' };
    const owner = owners[ref.kind] ? store.get(owners[ref.kind]!, p.metadata.namespace, ref.name) : undefined;
    if (!owner || owner.metadata.uid !== ref.uid) return { error: `found no controller with a scale for pod "${p.metadata.name}" (${ref.kind} ${ref.name})` };
    // A ReplicaSet of a Deployment: the Deployment's replicas, as kube's finder for Deployments.
    const dref = (owner.metadata.ownerReferences ?? []).find((r: KObj) => r.controller && r.kind === 'Deployment');
    const deployment = dref ? store.get('deployments', p.metadata.namespace, dref.name) : undefined;
    const key = deployment ? deployment.metadata.uid : owner.metadata.uid;
    if (deployment && seen.has(`d:${key}`)) continue;
    if (deployment) seen.add(`d:${key}`);
    count += (deployment ?? owner).spec?.replicas ?? 0;
  }
  return { count };
}

/**
 * A budget's status from its pods now (kube's disruption controller):
 * currentHealthy counts Ready pods not being deleted and not just evicted;
 * desiredHealthy is minAvailable (a count, or a share of what the pods'
 * controllers want) or that want less maxUnavailable.
 */
export function budgetStatus(store: Store, pdb: KObj, at = Date.now()): KObj {
  const pods = budgetPods(store, pdb);
  const disrupted: Record<string, string> = {};
  for (const [name, when] of Object.entries<string>(pdb.status?.disruptedPods ?? {})) {
    const pod = pods.find((p) => p.metadata.name === name);
    if (pod && !pod.metadata.deletionTimestamp && at - Date.parse(when) < DISRUPTED_POD_TIMEOUT_MS) disrupted[name] = when;
  }
  const currentHealthy = pods.filter((p) => !p.metadata.deletionTimestamp && !disrupted[p.metadata.name] && podReady(p)).length;
  const { minAvailable, maxUnavailable } = pdb.spec ?? {};
  let expectedPods = pods.length;
  let desiredHealthy = 0;
  let error: string | undefined;
  if (maxUnavailable !== undefined || (typeof minAvailable === 'string')) {
    const expected = expectedFromControllers(store, pods);
    if ('error' in expected) error = expected.error;
    else expectedPods = expected.count;
    desiredHealthy = maxUnavailable !== undefined ? Math.max(0, expectedPods - scaledCount(maxUnavailable, expectedPods)) : scaledCount(minAvailable, expectedPods);
  } else if (typeof minAvailable === 'number') {
    desiredHealthy = minAvailable;
  }
  const disruptionsAllowed = error ? 0 : Math.max(0, currentHealthy - desiredHealthy);
  const previous = (pdb.status?.conditions ?? []).find((c: KObj) => c.type === 'DisruptionAllowed');
  const condStatus = disruptionsAllowed > 0 ? 'True' : 'False';
  const reason = error ? 'SyncFailed' : disruptionsAllowed > 0 ? 'SufficientPods' : 'InsufficientPods';
  const condition = { type: 'DisruptionAllowed', status: condStatus, reason, message: error ?? '', observedGeneration: pdb.metadata.generation,
    lastTransitionTime: previous?.status === condStatus ? previous.lastTransitionTime : now() };
  return { observedGeneration: pdb.metadata.generation, ...(Object.keys(disrupted).length ? { disruptedPods: disrupted } : {}), disruptionsAllowed, currentHealthy, desiredHealthy, expectedPods, conditions: [condition] };
}

/** Keeps every PodDisruptionBudget's status in step with its pods (kube-controller-manager's disruption controller). */
export class DisruptionController extends KindController {
  constructor(store: Store, log: Logger, private readonly client: ApiClient) {
    super(store, log, 'poddisruptionbudgets', ['pods', 'replicasets', 'deployments', 'statefulsets'], 5000, POD_BURST_BATCH_MS);
  }

  protected sync(pdb: KObj): void {
    const status = budgetStatus(this.store, pdb);
    if (JSON.stringify(status) === JSON.stringify(pdb.status)) return;
    this.client.updateStatus('poddisruptionbudgets', pdb.metadata.namespace, { ...pdb, status });
  }
}
