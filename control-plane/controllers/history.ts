/**
 * ControllerRevisions (apps/v1) as kube's StatefulSet and DaemonSet controllers keep them
 * (pkg/controller/history): one per distinct pod template the owner has had, named
 * `<owner>-<hash>`, owned by it, holding the template as the strategic merge patch that
 * puts it back (`{"spec":{"template":{…,"$patch":"replace"}}}`, what `kubectl rollout undo`
 * sends), numbered in the order the templates were last used; old ones beyond
 * `spec.revisionHistoryLimit` pruned. Revisions without a controller that match the owner's
 * selector are adopted.
 */
import type { KObj, Store } from '../store.js';
import { adoptOrphans, controllerRef, controllerUid, type ApiClient } from './client.js';
import { selectorMatches } from '../kinds/workloads.js';
import { templateHash } from './deployment.js';
import { ApiError } from '../resources.js';

/** The label kube's history package puts on the revisions it makes (StatefulSets). */
export const HISTORY_HASH_LABEL = 'controller.kubernetes.io/hash';

/** Sorted keys all the way down, so equal templates compare equal as text. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    const out: KObj = {};
    for (const k of Object.keys(v).sort()) out[k] = canonical((v as KObj)[k]);
    return out;
  }
  return v;
}

/**
 * The revision's data for a template: the patch that restores it, written exactly as kube's
 * getPatch writes it (keys sorted, as Go marshals maps, and the template's metadata with
 * `creationTimestamp: null`, as Go marshals a typed PodTemplateSpec). kubectl compares these
 * bytes with the same patch made from the live object to tell that a revision is the current one
 * (`rollout undo`: "skipped rollback").
 */
export function revisionData(template: KObj): KObj {
  const t = structuredClone(template ?? {});
  t.metadata = { creationTimestamp: null, ...(t.metadata ?? {}) };
  return canonical({ spec: { template: { ...t, $patch: 'replace' } } }) as KObj;
}

const sameTemplate = (rev: KObj, template: KObj) => JSON.stringify(canonical(rev.data)) === JSON.stringify(revisionData(template));

export interface Revisions {
  /** The revision of the owner's template now (made if new). */
  update: KObj;
  /** Its hash (the name is `<owner>-<hash>`). */
  hash: string;
  /** status.collisionCount: how often a hash had to be made again because another revision held the name. */
  collisionCount: number;
  /** The owner's revisions, oldest first, after this pass. */
  all: KObj[];
}

/**
 * Makes sure the owner's current template has a ControllerRevision and that it is the newest
 * (a template used before, as after `rollout undo`, gets the next number back instead of a
 * copy), then deletes the oldest revisions beyond revisionHistoryLimit (default 10) that are
 * neither the update revision nor named in `keep` (the current revision and those pods still run).
 */
export function syncRevisions(store: Store, client: ApiClient, owner: KObj, hashLabel: string, keep: Set<string>): Revisions {
  const ns: string = owner.metadata.namespace;
  const name: string = owner.metadata.name;
  const template: KObj = owner.spec.template;
  const all = store.list('controllerrevisions', ns);
  // Revisions left by an owner of the same name deleted with --cascade=orphan are taken back (kube's ControllerRefManager).
  const adopted = adoptOrphans(client, 'controllerrevisions', owner, all, (r) => selectorMatches(owner.spec?.selector, r.metadata.labels));
  let owned = [...all.filter((r) => controllerUid(r) === owner.metadata.uid), ...adopted]
    .sort((a, b) => (a.revision ?? 0) - (b.revision ?? 0));
  const newest = owned.length ? owned[owned.length - 1]!.revision ?? 0 : 0;
  let collisionCount: number = owner.status?.collisionCount ?? 0;
  let update = owned.find((r) => sameTemplate(r, template));
  if (update && update.revision !== newest) {
    update = client.update('controllerrevisions', ns, { ...update, revision: newest + 1 });
  } else if (!update) {
    for (;;) {
      const hash = templateHash(template, collisionCount);
      const taken = store.get('controllerrevisions', ns, `${name}-${hash}`);
      if (!taken) break;
      if (controllerUid(taken) === owner.metadata.uid && sameTemplate(taken, template)) break;
      collisionCount++;
    }
    const hash = templateHash(template, collisionCount);
    try {
      update = client.create('controllerrevisions', ns, {
        apiVersion: 'apps/v1', kind: 'ControllerRevision',
        metadata: {
          name: `${name}-${hash}`,
          labels: { ...(template.metadata?.labels ?? {}), [hashLabel]: hash },
          ...(owner.metadata.annotations ? { annotations: { ...owner.metadata.annotations } } : {}),
          ownerReferences: [controllerRef(owner)],
        },
        data: revisionData(template),
        revision: newest + 1,
      });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 409)) throw err;
      update = store.get('controllerrevisions', ns, `${name}-${hash}`)!; // made meanwhile by an earlier pass
    }
  }
  owned = owned.filter((r) => r.metadata.name !== update!.metadata.name).concat(update!)
    .sort((a, b) => (a.revision ?? 0) - (b.revision ?? 0));
  const limit: number = owner.spec.revisionHistoryLimit ?? 10;
  const prunable = owned.filter((r) => r.metadata.name !== update!.metadata.name && !keep.has(r.metadata.name));
  for (const r of prunable.slice(0, Math.max(0, prunable.length - limit))) {
    try {
      client.delete('controllerrevisions', ns, r.metadata.name, { uid: r.metadata.uid });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 404)) throw err;
    }
    owned = owned.filter((o) => o !== r);
  }
  return { update: update!, hash: update!.metadata.name.slice(name.length + 1), collisionCount, all: owned };
}
