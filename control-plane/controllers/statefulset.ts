import type { Logger } from '../../common/log.js';
import type { KObj, Store } from '../store.js';
import { KindController, POD_BURST_BATCH_MS, podCreationAllowed, adoptOrphans, controllerRef, controllerUid, deleteOwnedPod, podAvailable, podReady, type ApiClient } from './client.js';
import { ApiError } from '../resources.js';
import type { EventRecorder } from './events.js';
import { podFromTemplate } from './replicaset.js';
import { HISTORY_HASH_LABEL, syncRevisions } from './history.js';
import { REVISION_HASH } from './daemonset.js';
import { selectorMatches } from '../kinds/workloads.js';

const COMPONENT = 'statefulset-controller';
/** A pod's claim from a volumeClaimTemplate, named as kube names it. */
export const claimName = (template: string, set: string, ordinal: number) => `${template}-${set}-${ordinal}`;
export const POD_NAME_LABEL = 'statefulset.kubernetes.io/pod-name';
export const POD_INDEX_LABEL = 'apps.kubernetes.io/pod-index';

const terminating = (p: KObj) => !!p.metadata.deletionTimestamp;
const finished = (p: KObj) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
/** Running and Ready, and not on its way out (kube's isRunningAndReady). */
const runningAndReady = (p: KObj) => !terminating(p) && p.status?.phase === 'Running' && podReady(p);

/** The ordinal of a pod named `<set>-<n>`, or undefined for any other name. */
export function ordinalOf(set: string, podName: string): number | undefined {
  if (!podName.startsWith(`${set}-`)) return undefined;
  const rest = podName.slice(set.length + 1);
  return /^(0|[1-9]\d*)$/.test(rest) ? Number(rest) : undefined;
}

/**
 * The StatefulSet controller: pods with stable names `<set>-<ordinal>`
 * (ordinals from spec.ordinals.start), each with hostname = its name and
 * subdomain = spec.serviceName, so its DNS name stays the same across
 * restarts. OrderedReady creates them one at a time in ordinal order, each
 * only once its predecessors are Running and Ready, and removes them from the
 * highest ordinal down, one at a time; Parallel creates and removes them all
 * at once. A failed or finished pod is deleted and made again under the same
 * name. RollingUpdate replaces pods of an older template from the highest
 * ordinal down to the partition, one at a time, each once the others are
 * Ready; OnDelete waits for someone to delete them. Each template the set has
 * had is a ControllerRevision `<set>-<hash>` (history.ts), named in the pods'
 * controller-revision-hash label and in status.current/updateRevision, so
 * `kubectl rollout history|undo sts/x` work.
 */
export class StatefulSetController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'statefulsets', ['pods'], 1000, POD_BURST_BATCH_MS);
  }

  protected sync(sts: KObj): void {
    if (sts.metadata.deletionTimestamp) return;
    const ns = sts.metadata.namespace;
    const name: string = sts.metadata.name;
    const all = this.store.listShared('pods', ns);
    const pods = all.filter((p) => controllerUid(p) === sts.metadata.uid);
    const inUse = new Set<string>(pods.map((p) => p.metadata.labels?.[REVISION_HASH]).filter((h): h is string => !!h));
    if (sts.status?.currentRevision) inUse.add(sts.status.currentRevision);
    const revisions = syncRevisions(this.store, this.client, sts, HISTORY_HASH_LABEL, inUse);
    const updateRevision: string = revisions.update.metadata.name;
    pods.push(...adoptOrphans(this.client, 'pods', sts, all, (p) => ordinalOf(name, p.metadata.name) !== undefined && selectorMatches(sts.spec?.selector, p.metadata.labels)));
    const start: number = sts.spec?.ordinals?.start ?? 0;
    const replicas: number = sts.spec?.replicas ?? 1;
    const inRange = (o: number) => o >= start && o < start + replicas;
    const ordered = sts.spec?.podManagementPolicy !== 'Parallel';
    const byOrdinal = new Map<number, KObj>();
    const condemned: KObj[] = [];
    for (const p of pods) {
      const o = ordinalOf(name, p.metadata.name);
      if (o === undefined) continue;
      if (inRange(o)) byOrdinal.set(o, p);
      else condemned.push(p);
    }

    // Make and mend the pods in range, lowest ordinal first.
    let blocked = false;
    for (let o = start; o < start + replicas && !blocked; o++) {
      const pod = byOrdinal.get(o);
      if (!pod) {
        if (!podCreationAllowed(this.client, this)) { blocked = true; break; }
        const made = this.createPod(sts, o, updateRevision);
        if (made) byOrdinal.set(o, made);
        if (ordered) blocked = true; // wait for it to be Running and Ready
        continue;
      }
      if (finished(pod) && !terminating(pod)) {
        deleteOwnedPod(this.client, this.events, sts, pod, COMPONENT); // made again under its name next pass
        if (ordered) blocked = true;
        continue;
      }
      if (ordered && !runningAndReady(pod)) blocked = true;
    }

    // Remove what is beyond the range, highest ordinal first; ordered: one at a time, and only when the rest are healthy.
    condemned.sort((a, b) => ordinalOf(name, b.metadata.name)! - ordinalOf(name, a.metadata.name)!);
    for (const pod of condemned) {
      if (terminating(pod)) {
        if (ordered) break;
        continue;
      }
      if (ordered && (blocked || [...byOrdinal.values()].some((p) => !runningAndReady(p)))) break;
      deleteOwnedPod(this.client, this.events, sts, pod, COMPONENT);
      this.deleteClaimsOf(sts, ordinalOf(name, pod.metadata.name)!);
      if (ordered) break;
    }

    // Rolling update: highest ordinal first, down to the partition, one pod at a time, all others Ready.
    const strategy = sts.spec?.updateStrategy ?? {};
    const inRangePods = [...byOrdinal.entries()].sort(([a], [b]) => b - a);
    if (strategy.type === 'RollingUpdate' && !blocked && condemned.length === 0) {
      const partition: number = strategy.rollingUpdate?.partition ?? 0;
      const allReady = inRangePods.every(([, p]) => runningAndReady(p));
      for (const [o, pod] of inRangePods) {
        if (o < start + partition) break;
        if (pod.metadata.labels?.[REVISION_HASH] === updateRevision) continue;
        if (terminating(pod) || !allReady) break;
        deleteOwnedPod(this.client, this.events, sts, pod, COMPONENT);
        break;
      }
    }
    this.writeStatus(sts, updateRevision, revisions.collisionCount);
  }

  /** The claims of one ordinal (made if missing); undefined when one could not be made (the event says why). */
  private ensureClaims(sts: KObj, ordinal: number): Array<{ volume: string; claim: string }> | undefined {
    const ns = sts.metadata.namespace;
    const out: Array<{ volume: string; claim: string }> = [];
    for (const t of sts.spec.volumeClaimTemplates ?? []) {
      const claim = claimName(t.metadata.name, sts.metadata.name, ordinal);
      out.push({ volume: t.metadata.name, claim });
      if (this.store.get('persistentvolumeclaims', ns, claim)) continue;
      const deleteWithSet = sts.spec.persistentVolumeClaimRetentionPolicy?.whenDeleted === 'Delete';
      try {
        this.client.create('persistentvolumeclaims', ns, {
          apiVersion: 'v1', kind: 'PersistentVolumeClaim',
          metadata: {
            name: claim,
            labels: { ...(t.metadata.labels ?? {}), ...(sts.spec.selector?.matchLabels ?? {}) },
            ...(t.metadata.annotations ? { annotations: { ...t.metadata.annotations } } : {}),
            ...(deleteWithSet ? { ownerReferences: [{ ...controllerRef(sts), controller: false }] } : {}),
          },
          spec: structuredClone(t.spec),
        });
        this.events.record(sts, 'Normal', 'SuccessfulCreate', `create Claim ${claim} Pod ${sts.metadata.name}-${ordinal} in StatefulSet ${sts.metadata.name} success`, COMPONENT);
      } catch (err) {
        this.events.record(sts, 'Warning', 'FailedCreate', `create Claim ${claim} for Pod ${sts.metadata.name}-${ordinal} in StatefulSet ${sts.metadata.name} failed error: ${(err as Error).message}`, COMPONENT);
        return undefined;
      }
    }
    return out;
  }

  /** whenScaled: Delete — a scaled-away pod's claims go with it (the pvc-protection finalizer keeps them until the pod is gone). */
  private deleteClaimsOf(sts: KObj, ordinal: number): void {
    if (sts.spec.persistentVolumeClaimRetentionPolicy?.whenScaled !== 'Delete') return;
    for (const t of sts.spec.volumeClaimTemplates ?? []) {
      const claim = claimName(t.metadata.name, sts.metadata.name, ordinal);
      try {
        this.client.delete('persistentvolumeclaims', sts.metadata.namespace, claim);
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 404)) throw err;
      }
    }
  }

  private createPod(sts: KObj, ordinal: number, revision: string): KObj | undefined {
    const name = `${sts.metadata.name}-${ordinal}`;
    const claims = this.ensureClaims(sts, ordinal);
    if (!claims) return undefined;
    const template = structuredClone(sts.spec.template);
    if (claims.length) {
      template.spec.volumes = [...(template.spec.volumes ?? []), ...claims.map((c) => ({ name: c.volume, persistentVolumeClaim: { claimName: c.claim } }))];
    }
    template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, [REVISION_HASH]: revision, [POD_NAME_LABEL]: name, [POD_INDEX_LABEL]: String(ordinal) } };
    const pod = podFromTemplate(sts, template, '');
    delete pod.metadata.generateName;
    pod.metadata.name = name;
    pod.spec.hostname = name;
    if (sts.spec.serviceName) pod.spec.subdomain = sts.spec.serviceName;
    try {
      const made = this.client.create('pods', sts.metadata.namespace, pod);
      this.events.record(sts, 'Normal', 'SuccessfulCreate', `create Pod ${name} in StatefulSet ${sts.metadata.name} successful`, COMPONENT);
      return made;
    } catch (err) {
      this.events.record(sts, 'Warning', 'FailedCreate', `create Pod ${name} in StatefulSet ${sts.metadata.name} failed error: ${(err as Error).message}`, COMPONENT);
      return undefined;
    }
  }

  private writeStatus(sts: KObj, updateRevision: string, collisionCount: number): void {
    const ns = sts.metadata.namespace;
    const minReady: number = sts.spec?.minReadySeconds ?? 0;
    const pods = this.store.listShared('pods', ns).filter((p) => controllerUid(p) === sts.metadata.uid && !terminating(p) && ordinalOf(sts.metadata.name, p.metadata.name) !== undefined);
    const replicas: number = sts.spec?.replicas ?? 1;
    const updated = pods.filter((p) => p.metadata.labels?.[REVISION_HASH] === updateRevision).length;
    const ready = pods.filter(podReady).length;
    // The update is complete once every wanted pod is of the new revision and Ready: then the current revision is the new one.
    const previous: string = sts.status?.currentRevision ?? updateRevision;
    const currentRevision = updated === replicas && pods.length === replicas && ready === replicas ? updateRevision : previous;
    const status: KObj = {
      observedGeneration: sts.metadata.generation ?? 1,
      replicas: pods.length,
      readyReplicas: ready,
      currentReplicas: pods.filter((p) => p.metadata.labels?.[REVISION_HASH] === currentRevision).length,
      updatedReplicas: updated,
      currentRevision,
      updateRevision,
      collisionCount,
      availableReplicas: pods.filter((p) => podAvailable(p, minReady)).length,
    };
    for (const k of ['readyReplicas', 'currentReplicas', 'updatedReplicas']) if (!status[k]) delete status[k];
    if (ready > status.availableReplicas && minReady > 0) setTimeout(() => this.queue(), 1000).unref();
    const cur = this.store.get('statefulsets', ns, sts.metadata.name);
    if (!cur || cur.metadata.uid !== sts.metadata.uid || JSON.stringify(status) === JSON.stringify(cur.status ?? {})) return;
    this.client.updateStatus('statefulsets', ns, { ...cur, status });
  }
}
