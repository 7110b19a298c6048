import type { Logger } from '../../common/log.js';
import type { KObj, Store } from '../store.js';
import { KindController, POD_BURST_BATCH_MS, adoptOrphans, deleteOwnedPod, controllerUid, podActive, podAvailable, podReady, type ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import { podFromTemplate } from './replicaset.js';
import { syncRevisions } from './history.js';
import { scaledValue, selectorMatches } from '../kinds/workloads.js';

const COMPONENT = 'daemonset-controller';
export const REVISION_HASH = 'controller-revision-hash';

/**
 * The DaemonSet controller: one pod per node that matches the template's nodeSelector, bound to
 * it directly (spec.nodeName, as DaemonSets did before they went through the scheduler; no
 * resource accounting), extra or misplaced pods deleted. RollingUpdate replaces pods of an older
 * template (label controller-revision-hash) while at most maxUnavailable nodes lack an available
 * pod; OnDelete waits for someone to delete them. Each template the DaemonSet has had is a
 * ControllerRevision `<ds>-<hash>` (history.ts; the hash alone in the pods' label and the
 * revision's), so `kubectl rollout history|undo ds/x` work.
 */
export class DaemonSetController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'daemonsets', ['pods', 'nodes'], 1000, POD_BURST_BATCH_MS);
  }

  protected sync(ds: KObj): void {
    if (ds.metadata.deletionTimestamp) return;
    const ns = ds.metadata.namespace;
    const minReady: number = ds.spec?.minReadySeconds ?? 0;
    const all = this.store.list('pods', ns);
    const pods = all.filter((p) => controllerUid(p) === ds.metadata.uid);
    const inUse = new Set<string>(pods.map((p) => p.metadata.labels?.[REVISION_HASH]).filter((h): h is string => !!h).map((h) => `${ds.metadata.name}-${h}`));
    const revisions = syncRevisions(this.store, this.client, ds, REVISION_HASH, inUse);
    const hash = revisions.hash;
    pods.push(...adoptOrphans(this.client, 'pods', ds, all, (p) => podActive(p) && selectorMatches(ds.spec?.selector, p.metadata.labels)));
    const selector: Record<string, string> = ds.spec?.template?.spec?.nodeSelector ?? {};
    const nodes = this.store.list('nodes').filter((n) => !n.metadata.deletionTimestamp && Object.entries(selector).every(([k, v]) => n.metadata.labels?.[k] === v));
    const eligible = new Set(nodes.map((n) => n.metadata.name));
    const active = pods.filter(podActive);
    // misplaced pods (node gone or no longer matching) go
    for (const p of active) if (!eligible.has(p.spec?.nodeName)) deleteOwnedPod(this.client, this.events, ds, p, COMPONENT);
    const byNode = new Map<string, KObj[]>();
    for (const p of active) if (eligible.has(p.spec?.nodeName)) byNode.set(p.spec.nodeName, [...(byNode.get(p.spec.nodeName) ?? []), p]);
    for (const node of nodes) {
      const name = node.metadata.name;
      const here = (byNode.get(name) ?? []).sort((a, b) => Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp));
      for (const extra of here.slice(1)) deleteOwnedPod(this.client, this.events, ds, extra, COMPONENT);
      if (here.length) {
        byNode.set(name, here.slice(0, 1));
        continue;
      }
      const template = structuredClone(ds.spec.template);
      template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, [REVISION_HASH]: hash } };
      const pod = podFromTemplate(ds, template, `${ds.metadata.name}-`);
      pod.spec.nodeName = name;
      try {
        const made = this.client.create('pods', ns, pod);
        byNode.set(name, [made]);
        this.events.record(ds, 'Normal', 'SuccessfulCreate', `Created pod: ${made.metadata.name}`, COMPONENT);
      } catch (err) {
        this.events.record(ds, 'Warning', 'FailedCreate', `Error creating: ${(err as Error).message}`, COMPONENT);
      }
    }
    const current = [...byNode.values()].flat();
    if ((ds.spec?.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate') {
      const maxUnavailable = Math.max(1, scaledValue(ds.spec.updateStrategy?.rollingUpdate?.maxUnavailable ?? 1, nodes.length, true));
      let unavailable = nodes.length - current.filter((p) => podAvailable(p, minReady)).length;
      const old = current.filter((p) => p.metadata.labels?.[REVISION_HASH] !== hash)
        .sort((a, b) => Number(podAvailable(a, minReady)) - Number(podAvailable(b, minReady)));
      for (const p of old) {
        const wasAvailable = podAvailable(p, minReady);
        if (wasAvailable && unavailable >= maxUnavailable) break;
        deleteOwnedPod(this.client, this.events, ds, p, COMPONENT);
        if (wasAvailable) unavailable++;
      }
    }
    const live = this.store.list('pods', ns).filter((p) => controllerUid(p) === ds.metadata.uid && podActive(p));
    const onEligible = live.filter((p) => eligible.has(p.spec?.nodeName));
    const scheduledNodes = new Set(onEligible.map((p) => p.spec.nodeName));
    const status: KObj = {
      currentNumberScheduled: scheduledNodes.size,
      numberMisscheduled: new Set(live.filter((p) => !eligible.has(p.spec?.nodeName)).map((p) => p.spec?.nodeName)).size,
      desiredNumberScheduled: nodes.length,
      numberReady: onEligible.filter(podReady).length,
      observedGeneration: ds.metadata.generation ?? 1,
      updatedNumberScheduled: new Set(onEligible.filter((p) => p.metadata.labels?.[REVISION_HASH] === hash).map((p) => p.spec.nodeName)).size,
      numberAvailable: onEligible.filter((p) => podAvailable(p, minReady)).length,
    };
    status.numberUnavailable = Math.max(0, nodes.length - status.numberAvailable);
    if (revisions.collisionCount) status.collisionCount = revisions.collisionCount;
    for (const k of ['updatedNumberScheduled', 'numberAvailable', 'numberUnavailable']) if (!status[k]) delete status[k];
    const cur = this.store.get('daemonsets', ns, ds.metadata.name);
    if (!cur || cur.metadata.uid !== ds.metadata.uid || JSON.stringify(status) === JSON.stringify(cur.status ?? {})) return;
    this.client.updateStatus('daemonsets', ns, { ...cur, status });
  }
}
