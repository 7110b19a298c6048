import type { Logger } from '../../common/log.js';
import { now } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { KindController, adoptOrphans, controllerRef, controllerUid, podActive, type ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import { scaledValue, selectorMatches } from '../kinds/workloads.js';

const COMPONENT = 'deployment-controller';
export const REVISION = 'deployment.kubernetes.io/revision';
const DESIRED = 'deployment.kubernetes.io/desired-replicas';
const MAX_REPLICAS = 'deployment.kubernetes.io/max-replicas';
export const POD_TEMPLATE_HASH = 'pod-template-hash';
/** Annotations of a Deployment not copied to its ReplicaSets (kube's skipCopyAnnotation). */
const NOT_COPIED = new Set(['kubectl.kubernetes.io/last-applied-configuration', REVISION, 'deployment.kubernetes.io/revision-history', DESIRED, MAX_REPLICAS, 'deprecated.deployment.rollback.to']);

/** JSON with sorted keys and without nulls: templates compare equal whatever their key order. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    const out: KObj = {};
    for (const k of Object.keys(v).sort()) {
      const x = (v as KObj)[k];
      if (x !== null && x !== undefined) out[k] = canonical(x);
    }
    return out;
  }
  return v;
}

function withoutHash(template: KObj | undefined): unknown {
  const t = structuredClone(template ?? {});
  if (t.metadata?.labels) {
    delete t.metadata.labels[POD_TEMPLATE_HASH];
    if (Object.keys(t.metadata.labels).length === 0) delete t.metadata.labels;
  }
  return canonical(t);
}

/** Templates equal but for the pod-template-hash label (kube's EqualIgnoreHash). */
export const equalIgnoringHash = (a: KObj | undefined, b: KObj | undefined) => JSON.stringify(withoutHash(a)) === JSON.stringify(withoutHash(b));

/** FNV-1a 32-bit. */
function fnv32a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The pod-template-hash of a template: FNV-1a of it, written with apimachinery's SafeEncodeString alphabet. */
export function templateHash(template: KObj, collisionCount = 0): string {
  const digits = String(fnv32a(JSON.stringify(withoutHash(template)) + (collisionCount ? String(collisionCount) : '')));
  return [...digits].map((c) => 'bcdfghjklmnpqrstvwxz2456789'[c.charCodeAt(0) % 27]).join('');
}

const revisionOf = (rs: KObj) => Number(rs.metadata.annotations?.[REVISION] ?? 0) || 0;
const specReplicas = (rss: KObj[]) => rss.reduce((n, rs) => n + (rs.spec?.replicas ?? 0), 0);
const sumStatus = (rss: KObj[], f: string) => rss.reduce((n, rs) => n + (rs.status?.[f] ?? 0), 0);

/** maxSurge and maxUnavailable as numbers (surge rounded up, unavailable down; both 0 → unavailable 1). */
export function surgeAndUnavailable(d: KObj): { surge: number; unavailable: number } {
  const replicas: number = d.spec?.replicas ?? 1;
  if (d.spec?.strategy?.type !== 'RollingUpdate') return { surge: 0, unavailable: 0 };
  const ru = d.spec.strategy.rollingUpdate ?? {};
  const surge = scaledValue(ru.maxSurge ?? '25%', replicas, true);
  let unavailable = scaledValue(ru.maxUnavailable ?? '25%', replicas, false);
  if (surge === 0 && unavailable === 0) unavailable = 1;
  return { surge, unavailable: Math.min(unavailable, replicas) };
}

function condition(type: string, status: string, reason: string, message: string, prev: KObj | undefined, progressed: boolean): KObj {
  const t = now();
  const same = prev && prev.status === status;
  return {
    type, status,
    lastUpdateTime: same && prev.reason === reason && !progressed ? prev.lastUpdateTime : t,
    lastTransitionTime: same ? prev.lastTransitionTime : t,
    reason, message,
  };
}

/**
 * The Deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`,
 * labelled pod-template-hash), the newest scaled up and the older ones down as the strategy
 * says (RollingUpdate within maxSurge/maxUnavailable counting available pods; Recreate: old
 * pods gone first), revision annotations, old ReplicaSets kept up to revisionHistoryLimit, and
 * the status kubectl rollout status reads (Available and Progressing conditions).
 */
export class DeploymentController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'deployments', ['replicasets'], 1000);
  }

  private ownReplicaSets(d: KObj): KObj[] {
    return this.store.list('replicasets', d.metadata.namespace).filter((rs) => controllerUid(rs) === d.metadata.uid);
  }

  protected sync(d: KObj): void {
    if (d.metadata.deletionTimestamp) return;
    const ns = d.metadata.namespace;
    const all = this.store.list('replicasets', ns);
    let rss = all.filter((rs) => controllerUid(rs) === d.metadata.uid);
    rss.push(...adoptOrphans(this.client, 'replicasets', d, all, (rs) => selectorMatches(d.spec?.selector, rs.metadata.labels)));
    // Act only on ReplicaSets whose controller has seen their last change (kube's expectations).
    if (rss.some((rs) => (rs.status?.observedGeneration ?? 0) < (rs.metadata.generation ?? 1))) return;
    let newRS = rss.find((rs) => equalIgnoringHash(rs.spec?.template, d.spec?.template));
    const maxOldRevision = Math.max(0, ...rss.filter((rs) => rs !== newRS).map(revisionOf));
    let created = false;
    if (d.spec?.paused) return this.writeStatus(d, newRS, rss.filter((rs) => rs !== newRS), false);
    if (!newRS) {
      newRS = this.createReplicaSet(d, rss, maxOldRevision + 1);
      created = true;
      rss = [...rss, newRS];
    } else if (revisionOf(newRS) <= maxOldRevision) {
      // a rollback to an older template: it becomes the newest revision again
      newRS = this.client.update('replicasets', ns, { ...newRS, metadata: { ...newRS.metadata, annotations: { ...newRS.metadata.annotations, [REVISION]: String(maxOldRevision + 1) } } });
      rss = rss.map((rs) => (rs.metadata.uid === newRS!.metadata.uid ? newRS! : rs));
    }
    if (d.metadata.annotations?.[REVISION] !== newRS.metadata.annotations?.[REVISION]) {
      d = this.client.update('deployments', ns, { ...d, metadata: { ...d.metadata, annotations: { ...d.metadata.annotations, [REVISION]: newRS.metadata.annotations?.[REVISION] } } });
    }
    const old = rss.filter((rs) => rs.metadata.uid !== newRS!.metadata.uid);
    if (d.spec?.strategy?.type === 'Recreate') this.recreate(d, newRS, old);
    else this.rollingUpdate(d, newRS, old);
    const latest = this.ownReplicaSets(d);
    const latestNew = latest.find((rs) => rs.metadata.uid === newRS!.metadata.uid);
    const latestOld = latest.filter((rs) => rs.metadata.uid !== newRS!.metadata.uid);
    this.cleanup(d, latestOld);
    this.writeStatus(d, latestNew, latestOld, created);
  }

  private createReplicaSet(d: KObj, existing: KObj[], revision: number): KObj {
    let collisions = d.status?.collisionCount ?? 0;
    let hash = templateHash(d.spec.template, collisions);
    while (existing.some((rs) => rs.metadata.name === `${d.metadata.name}-${hash}`) || this.store.get('replicasets', d.metadata.namespace, `${d.metadata.name}-${hash}`)) hash = templateHash(d.spec.template, ++collisions);
    const template = structuredClone(d.spec.template);
    template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, [POD_TEMPLATE_HASH]: hash } };
    const selector = structuredClone(d.spec.selector);
    selector.matchLabels = { ...selector.matchLabels, [POD_TEMPLATE_HASH]: hash };
    const { surge } = surgeAndUnavailable(d);
    const annotations: Record<string, string> = {};
    for (const [k, v] of Object.entries<string>(d.metadata.annotations ?? {})) if (!NOT_COPIED.has(k)) annotations[k] = v;
    annotations[DESIRED] = String(d.spec.replicas);
    annotations[MAX_REPLICAS] = String(d.spec.replicas + surge);
    annotations[REVISION] = String(revision);
    const replicas = d.spec.strategy?.type === 'Recreate' ? 0 : this.rollingScaleUp(d, 0, existing);
    const rs = this.client.create('replicasets', d.metadata.namespace, {
      apiVersion: 'apps/v1', kind: 'ReplicaSet',
      metadata: { name: `${d.metadata.name}-${hash}`, labels: template.metadata.labels, annotations, ownerReferences: [controllerRef(d)] },
      spec: { replicas, ...(d.spec.minReadySeconds ? { minReadySeconds: d.spec.minReadySeconds } : {}), selector, template },
    });
    if (replicas > 0) this.events.record(d, 'Normal', 'ScalingReplicaSet', `Scaled up replica set ${rs.metadata.name} from 0 to ${replicas}`, COMPONENT);
    return rs;
  }

  /** The new ReplicaSet's replicas for a rolling update: up to replicas + maxSurge pods in all. */
  private rollingScaleUp(d: KObj, newReplicas: number, old: KObj[]): number {
    const replicas: number = d.spec.replicas;
    if (newReplicas >= replicas) return replicas;
    const { surge } = surgeAndUnavailable(d);
    const current = newReplicas + specReplicas(old);
    const room = replicas + surge - current;
    if (room <= 0) return newReplicas;
    return newReplicas + Math.min(room, replicas - newReplicas);
  }

  private scale(d: KObj, rs: KObj, to: number): KObj {
    const from: number = rs.spec?.replicas ?? 0;
    if (from === to) return rs;
    const { surge } = surgeAndUnavailable(d);
    const updated = this.client.update('replicasets', d.metadata.namespace, {
      ...rs,
      metadata: { ...rs.metadata, annotations: { ...rs.metadata.annotations, [DESIRED]: String(d.spec.replicas), [MAX_REPLICAS]: String(d.spec.replicas + surge) } },
      spec: { ...rs.spec, replicas: to },
    });
    this.events.record(d, 'Normal', 'ScalingReplicaSet', `Scaled ${to > from ? 'up' : 'down'} replica set ${rs.metadata.name} from ${from} to ${to}`, COMPONENT);
    return updated;
  }

  private rollingUpdate(d: KObj, newRS: KObj, old: KObj[]): void {
    const replicas: number = d.spec.replicas;
    const newReplicas: number = newRS.spec?.replicas ?? 0;
    // 1. the new ReplicaSet: up within maxSurge (or down if the Deployment was scaled down)
    if (newReplicas > replicas) {
      this.scale(d, newRS, replicas);
      return;
    }
    const up = this.rollingScaleUp(d, newReplicas, old);
    if (up !== newReplicas) {
      this.scale(d, newRS, up);
      return;
    }
    // 2. the old ones: down while at least replicas - maxUnavailable pods stay available
    const oldLive = old.filter((rs) => (rs.spec?.replicas ?? 0) > 0);
    if (!oldLive.length) return;
    const { unavailable } = surgeAndUnavailable(d);
    const minAvailable = replicas - unavailable;
    const all = [newRS, ...old];
    const newUnavailable = Math.max(0, newReplicas - (newRS.status?.availableReplicas ?? 0));
    let maxScaleDown = specReplicas(all) - minAvailable - newUnavailable;
    if (maxScaleDown <= 0) return;
    const byAge = [...oldLive].sort((a, b) => revisionOf(a) - revisionOf(b));
    // unhealthy old pods first: they count for nothing
    const scaled = new Map<string, number>();
    for (const rs of byAge) {
      if (maxScaleDown <= 0) break;
      const cur: number = rs.spec.replicas;
      const unhealthy = cur - (rs.status?.availableReplicas ?? 0);
      if (unhealthy <= 0) continue;
      const n = Math.min(unhealthy, maxScaleDown);
      scaled.set(rs.metadata.uid, cur - n);
      maxScaleDown -= n;
    }
    // then available ones, as long as enough stay available
    let available = sumStatus(all, 'availableReplicas');
    for (const rs of byAge) {
      const cur = scaled.get(rs.metadata.uid) ?? rs.spec.replicas;
      if (available <= minAvailable || cur === 0) continue;
      const n = Math.min(cur, available - minAvailable);
      scaled.set(rs.metadata.uid, cur - n);
      available -= n;
    }
    for (const rs of byAge) {
      const to = scaled.get(rs.metadata.uid);
      if (to !== undefined) this.scale(d, rs, to);
    }
  }

  private recreate(d: KObj, newRS: KObj, old: KObj[]): void {
    for (const rs of old) if ((rs.spec?.replicas ?? 0) > 0) this.scale(d, rs, 0);
    const oldUids = new Set(old.map((rs) => rs.metadata.uid));
    // the new pods start only when no old pod runs any more (terminating ones included)
    const oldRunning = this.store.listShared('pods', d.metadata.namespace).some((p) => oldUids.has(controllerUid(p) ?? '') && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
    if (oldRunning) return;
    this.scale(d, newRS, d.spec.replicas);
  }

  /** Old ReplicaSets with no pods beyond revisionHistoryLimit go, oldest first. */
  private cleanup(d: KObj, old: KObj[]): void {
    const limit: number = d.spec?.revisionHistoryLimit ?? 10;
    const idle = old.filter((rs) => !rs.metadata.deletionTimestamp && (rs.spec?.replicas ?? 0) === 0 && (rs.status?.replicas ?? 0) === 0).sort((a, b) => revisionOf(a) - revisionOf(b));
    for (const rs of idle.slice(0, Math.max(0, idle.length - limit))) {
      const hasPods = this.store.listShared('pods', d.metadata.namespace).some((p) => controllerUid(p) === rs.metadata.uid && podActive(p));
      if (!hasPods) this.client.delete('replicasets', d.metadata.namespace, rs.metadata.name, { uid: rs.metadata.uid });
    }
  }

  private writeStatus(d: KObj, newRS: KObj | undefined, old: KObj[], created: boolean): void {
    const cur = this.store.get('deployments', d.metadata.namespace, d.metadata.name);
    if (!cur || cur.metadata.uid !== d.metadata.uid) return;
    const all = [...(newRS ? [newRS] : []), ...old];
    const replicas: number = cur.spec?.replicas ?? 0;
    const prev: KObj = cur.status ?? {};
    const status: KObj = {
      observedGeneration: cur.metadata.generation ?? 1,
      replicas: sumStatus(all, 'replicas'),
      updatedReplicas: newRS?.status?.replicas ?? 0,
      readyReplicas: sumStatus(all, 'readyReplicas'),
      availableReplicas: sumStatus(all, 'availableReplicas'),
      unavailableReplicas: Math.max(0, specReplicas(all) - sumStatus(all, 'availableReplicas')),
    };
    for (const k of ['replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas', 'unavailableReplicas']) if (!status[k]) delete status[k];
    if (prev.collisionCount) status.collisionCount = prev.collisionCount;
    const prevConds: KObj[] = prev.conditions ?? [];
    const prevOf = (t: string) => prevConds.find((c) => c.type === t);
    const { unavailable } = surgeAndUnavailable(cur);
    const minAvailable = cur.spec?.strategy?.type === 'Recreate' ? replicas : replicas - unavailable;
    const availableOk = (status.availableReplicas ?? 0) >= minAvailable;
    const conds: KObj[] = [];
    const availPrev = prevOf('Available');
    const avail = availableOk
      ? condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.', availPrev, false)
      : condition('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.', availPrev, false);
    conds.push(availPrev && availPrev.status === avail.status && availPrev.reason === avail.reason ? availPrev : avail);
    const progPrev = prevOf('Progressing');
    if (newRS && typeof cur.spec?.progressDeadlineSeconds === 'number' && !cur.spec?.paused) {
      const name = newRS.metadata.name;
      const complete = (status.updatedReplicas ?? 0) === replicas && (status.availableReplicas ?? 0) === replicas && (status.replicas ?? 0) === replicas;
      const progressed = (status.updatedReplicas ?? 0) > (prev.updatedReplicas ?? 0) || (status.readyReplicas ?? 0) > (prev.readyReplicas ?? 0)
        || (status.availableReplicas ?? 0) > (prev.availableReplicas ?? 0) || ((status.replicas ?? 0) - (status.updatedReplicas ?? 0)) < ((prev.replicas ?? 0) - (prev.updatedReplicas ?? 0));
      let prog: KObj;
      if (complete) prog = condition('Progressing', 'True', 'NewReplicaSetAvailable', `ReplicaSet "${name}" has successfully progressed.`, progPrev, false);
      else if (created) prog = condition('Progressing', 'True', 'NewReplicaSetCreated', `Created new replica set "${name}"`, progPrev, true);
      else if (progressed || !progPrev) prog = condition('Progressing', 'True', progPrev ? 'ReplicaSetUpdated' : 'FoundNewReplicaSet', progPrev ? `ReplicaSet "${name}" is progressing.` : `Found new replica set "${name}"`, progPrev, true);
      else if (progPrev.reason !== 'NewReplicaSetAvailable' && progPrev.reason !== 'ProgressDeadlineExceeded' && Date.parse(progPrev.lastUpdateTime) + cur.spec.progressDeadlineSeconds * 1000 < Date.now()) {
        prog = condition('Progressing', 'False', 'ProgressDeadlineExceeded', `ReplicaSet "${name}" has timed out progressing.`, progPrev, true);
        this.events.record(cur, 'Warning', 'ProgressDeadlineExceeded', `Deployment "${cur.metadata.name}" has timed out progressing.`, COMPONENT);
      } else if (progPrev.reason === 'NewReplicaSetAvailable' && !complete) prog = condition('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${name}" is progressing.`, progPrev, true);
      else prog = progPrev;
      conds.push(prog);
    } else if (progPrev) conds.push(progPrev);
    if (cur.spec?.paused) conds.push(condition('Progressing', 'Unknown', 'DeploymentPaused', 'Deployment is paused', progPrev, false));
    status.conditions = conds.filter((c, i) => conds.findIndex((x) => x.type === c.type) === i || c.reason === 'DeploymentPaused').filter((c, i, a) => !(c.type === 'Progressing' && a.some((x, j) => j > i && x.type === 'Progressing')));
    if (JSON.stringify(status) === JSON.stringify(prev)) return;
    this.client.updateStatus('deployments', cur.metadata.namespace, { ...cur, status });
  }
}
