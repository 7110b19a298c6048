import type { Logger } from '../../common/log.js';
import { ApiError, RESOURCES, resourceOfKind } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { Loop, type ApiClient } from './client.js';

/** Resources that may have owners (Events and Leases churn too much to scan and are never owned here). */
const DEPENDENT_RESOURCES = RESOURCES.filter((r) => r.name !== 'events' && r.name !== 'leases');

export const ORPHAN = 'orphan';
export const FOREGROUND = 'foregroundDeletion';

/** Objects naming `owner` (by uid) in their ownerReferences, with their resource. */
export function dependentsOf(store: Store, owner: KObj): KObj[] {
  const uid = owner.metadata?.uid;
  const ns: string | undefined = owner.metadata?.namespace || undefined;
  const out: KObj[] = [];
  for (const r of DEPENDENT_RESOURCES) {
    if (ns && !r.namespaced) continue; // a namespaced owner has no cluster-scoped dependents
    for (const o of store.listShared(r.name, r.namespaced ? ns : undefined)) {
      if ((o.metadata.ownerReferences ?? []).some((ref: KObj) => ref.uid === uid)) out.push(o);
    }
  }
  return out;
}

const resourceNameOf = (o: KObj) => resourceOfKind(o.apiVersion, o.kind)?.name;

/**
 * The garbage collector (kube-controller-manager's): an object whose owners are all gone is
 * deleted (background cascading deletion); an owner being deleted with the `orphan` finalizer
 * has its references removed from its dependents, then loses the finalizer; an owner with the
 * `foregroundDeletion` finalizer has its dependents deleted (in the foreground too) and loses
 * the finalizer once none is left. The API server removes an object whose last finalizer goes.
 */
export class GarbageCollector extends Loop {
  constructor(store: Store, private readonly log: Logger, private readonly client: ApiClient) {
    super(store, DEPENDENT_RESOURCES.map((r) => r.name), 2000, 1000);
  }

  protected pass(): void {
    try {
      this.collectDependents();
      this.finishOwners();
    } catch (err) {
      this.log.error({ err }, 'garbage collection pass failed');
    }
  }

  /** An owner reference's object, if it still exists with that uid; `unknown` for kinds this server does not serve. */
  private owner(dependent: KObj, ref: KObj): KObj | undefined | 'unknown' {
    const r = resourceOfKind(ref.apiVersion, ref.kind);
    if (!r) return 'unknown';
    const o = this.store.getShared(r.name, r.namespaced ? dependent.metadata.namespace ?? '' : '', ref.name);
    return o && o.metadata.uid === ref.uid ? o : undefined;
  }

  private collectDependents(): void {
    for (const r of DEPENDENT_RESOURCES) {
      for (const o of this.store.listShared(r.name)) {
        const refs: KObj[] = o.metadata.ownerReferences ?? [];
        if (!refs.length) continue;
        try {
          const owners = refs.map((ref) => ({ ref, owner: this.owner(o, ref) }));
          const live = owners.filter((x) => x.owner !== undefined);
          const ns = o.metadata.namespace ?? '';
          if (!live.length) {
            if (!o.metadata.deletionTimestamp) this.client.delete(r.name, ns, o.metadata.name, { propagationPolicy: 'Background', uid: o.metadata.uid });
            continue;
          }
          const orphaning = live.filter((x) => x.owner !== 'unknown' && x.owner!.metadata.deletionTimestamp && (x.owner!.metadata.finalizers ?? []).includes(ORPHAN));
          if (orphaning.length) {
            const drop = new Set(orphaning.map((x) => x.ref.uid));
            const kept = refs.filter((ref) => !drop.has(ref.uid));
            const obj = structuredClone(o);
            if (kept.length) obj.metadata.ownerReferences = kept;
            else delete obj.metadata.ownerReferences;
            this.client.update(r.name, ns, obj);
            continue;
          }
          const foreground = live.some((x) => x.owner !== 'unknown' && x.owner!.metadata.deletionTimestamp && (x.owner!.metadata.finalizers ?? []).includes(FOREGROUND));
          if (foreground && !o.metadata.deletionTimestamp) this.client.delete(r.name, ns, o.metadata.name, { propagationPolicy: 'Foreground', uid: o.metadata.uid });
        } catch (err) {
          if (err instanceof ApiError && (err.code === 404 || err.code === 409)) continue;
          throw err;
        }
      }
    }
  }

  private finishOwners(): void {
    for (const r of DEPENDENT_RESOURCES) {
      for (const o of this.store.listShared(r.name)) {
        const finalizers: string[] = o.metadata.finalizers ?? [];
        if (!o.metadata.deletionTimestamp || !(finalizers.includes(ORPHAN) || finalizers.includes(FOREGROUND))) continue;
        const dependents = dependentsOf(this.store, o);
        // orphaning is done when nobody names it any more; foreground when no blocking dependent is left
        const left = finalizers.filter((f) => {
          if (f === ORPHAN) return dependents.length > 0;
          if (f === FOREGROUND) return dependents.some((dep) => (dep.metadata.ownerReferences ?? []).some((ref: KObj) => ref.uid === o.metadata.uid && ref.blockOwnerDeletion));
          return true;
        });
        if (left.length === finalizers.length) continue;
        try {
          this.client.update(resourceNameOf(o) ?? r.name, o.metadata.namespace ?? '', { ...o, metadata: { ...o.metadata, finalizers: left } });
        } catch (err) {
          if (err instanceof ApiError && (err.code === 404 || err.code === 409)) continue;
          throw err;
        }
      }
    }
  }
}
