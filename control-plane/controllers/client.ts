import { randomBytes } from 'node:crypto';
import type { KObj, Store } from '../store.js';
import type { Logger } from '../../common/log.js';
import { ApiError } from '../resources.js';
import type { EventRecorder } from './events.js';

export type PropagationPolicy = 'Orphan' | 'Background' | 'Foreground';

/**
 * How controllers write: through the API server's own create, update and delete code (defaults,
 * validation, generations, finalizers, optimistic concurrency), as kube-controller-manager's
 * clients go through kube-apiserver. Errors are the API's (ApiError with 409 on a stale
 * resourceVersion); a controller drops the pass and tries again on the next change.
 */
export interface ApiClient {
  create(resource: string, namespace: string, obj: KObj): KObj;
  /** The main resource; obj.metadata.resourceVersion is the precondition. */
  update(resource: string, namespace: string, obj: KObj): KObj;
  /** The status subresource; obj.metadata.resourceVersion is the precondition. */
  updateStatus(resource: string, namespace: string, obj: KObj): KObj;
  delete(resource: string, namespace: string, name: string, opts?: { propagationPolicy?: PropagationPolicy; uid?: string }): KObj;
}

/** The owner reference a controller puts on what it makes (controller: true, blockOwnerDeletion: true). */
export function controllerRef(owner: KObj): KObj {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** The uid of the object's controller, if it has one. */
export const controllerUid = (o: KObj): string | undefined => (o.metadata?.ownerReferences ?? []).find((r: KObj) => r.controller)?.uid;

/** Like apimachinery's utilrand.String: lower-case consonants and digits that cannot spell words. */
export const randomName = (n = 5) => Array.from(randomBytes(n), (b) => 'bcdfghjklmnpqrstvwxz2456789'[b % 27]).join('');

/**
 * Objects that match an owner's selector and have no controller become its own (kube's
 * ControllerRefManager adoption): after `kubectl delete --cascade=orphan` and a re-apply, the
 * orphans are taken back instead of duplicated. Returns the adopted objects as stored.
 */
export function adoptOrphans(client: ApiClient, resource: string, owner: KObj, candidates: readonly KObj[], matches: (o: KObj) => boolean): KObj[] {
  const adopted: KObj[] = [];
  if (owner.metadata.deletionTimestamp) return adopted;
  for (const o of candidates) {
    if (controllerUid(o) || o.metadata.deletionTimestamp || !matches(o)) continue;
    adopted.push(client.update(resource, o.metadata.namespace, { ...o, metadata: { ...o.metadata, ownerReferences: [...(o.metadata.ownerReferences ?? []), controllerRef(owner)] } }));
  }
  return adopted;
}

/** Delete a pod its owner no longer wants, with the owner's SuccessfulDelete event; a pod already gone is fine. */
export function deleteOwnedPod(client: ApiClient, events: EventRecorder, owner: KObj, pod: KObj, component: string): void {
  try {
    client.delete('pods', owner.metadata.namespace, pod.metadata.name, { uid: pod.metadata.uid });
    events.record(owner, 'Normal', 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name}`, component);
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 404)) throw err;
  }
}

/** A pod is Ready when its Ready condition is True. */
export function podReady(pod: KObj): boolean {
  return (pod.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
}

/** Ready for at least minReadySeconds (kube's IsPodAvailable). */
export function podAvailable(pod: KObj, minReadySeconds: number, nowMs = Date.now()): boolean {
  const ready = (pod.status?.conditions ?? []).find((c: KObj) => c.type === 'Ready' && c.status === 'True');
  if (!ready) return false;
  if (!minReadySeconds) return true;
  const since = Date.parse(ready.lastTransitionTime ?? '');
  return !Number.isNaN(since) && since + minReadySeconds * 1000 <= nowMs;
}

/** Neither finished nor being deleted (kube's FilterActivePods). */
export const podActive = (pod: KObj) => !pod.metadata.deletionTimestamp && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';

/**
 * How often controllers that read every pod of a namespace per pass run while pods churn: a
 * burst of pod writes (1000 pods starting) becomes a pass per 100 ms instead of one per write.
 */
export const POD_BURST_BATCH_MS = 100;

/**
 * A reconcile loop driven by store changes (coalesced) and a resync period, as informers and
 * work queues drive kube-controller-manager's controllers.
 */
export abstract class Loop {
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private queued = false;
  private lastPassAt = 0;
  protected stopped = false;

  /**
   * `batchMs`: passes woken by changes run at most this often (0: on the next turn). A loop whose
   * pass lists a whole resource would otherwise run once per write under a burst (1000 pods: a
   * million objects read); kube-controller-manager's work queues batch the same way.
   */
  constructor(protected readonly store: Store, private readonly resources: string[], private readonly resyncMs: number, private readonly batchMs = 0) {}

  start(): void {
    this.unsubscribe = this.store.subscribe((c) => {
      if (this.resources.includes(c.resource)) this.queue();
    });
    this.timer = setInterval(() => this.queue(), this.resyncMs);
    this.queue();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  protected abstract pass(): void;

  queue(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    const run = () => {
      this.queued = false;
      this.lastPassAt = performance.now();
      if (!this.stopped) this.pass();
    };
    const wait = this.lastPassAt + this.batchMs - performance.now();
    if (wait > 0) setTimeout(run, wait);
    else setImmediate(run);
  }
}

/**
 * A controller of one kind: every pass syncs each object of that kind. A
 * conflict or an object gone meanwhile is left to the next pass (the store's
 * change wakes it); anything else is logged and the other objects still sync.
 */
export abstract class KindController extends Loop {
  constructor(store: Store, protected readonly log: Logger, private readonly resource: string, alsoWatched: string[], resyncMs: number, batchMs = 0) {
    super(store, [resource, ...alsoWatched], resyncMs, batchMs);
  }

  protected abstract sync(obj: KObj): void;

  protected pass(): void {
    for (const obj of this.store.list(this.resource)) {
      try {
        this.sync(obj);
      } catch (err) {
        if (err instanceof ApiError && (err.code === 409 || err.code === 404)) continue;
        this.log.error({ err, object: `${this.resource}/${obj.metadata.namespace}/${obj.metadata.name}` }, 'controller sync failed');
      }
    }
  }
}
