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
  /** The pace of the pods the workload controllers create (kube-controller-manager's client rate limit): see podCreationAllowed. */
  readonly podCreations: TokenBucket;
}

/** kube-controller-manager's defaults for its API client: --kube-api-qps 20, --kube-api-burst 30. */
export const DEFAULT_KUBE_API_QPS = 20;
export const DEFAULT_KUBE_API_BURST = 30;

/** A token bucket as client-go's rate limiter: `burst` tokens at most, `qps` more each second. */
export class TokenBucket {
  private tokens: number;
  private refilledAt = performance.now();
  constructor(readonly qps: number, readonly burst: number) {
    this.tokens = burst;
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) * this.qps) / 1000);
    this.refilledAt = now;
  }

  /** Take a token if there is one. */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** How long until take() can succeed. */
  msUntilToken(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.qps);
  }
}

/**
 * Whether a controller may create one more pod now. kube-controller-manager's API client is rate
 * limited (20 requests a second, bursts of 30, by default), so a 1000-replica StatefulSet's pods
 * are created over about 50 s rather than in one pass; the scalability SLOs (pod startup under 5 s)
 * are defined with pods arriving so. Here the pods the workload controllers create draw from that
 * budget (their other writes are few); when it is spent, the loop is woken once a token is back.
 */
export function podCreationAllowed(client: ApiClient, loop: Loop): boolean {
  if (client.podCreations.take()) return true;
  loop.wakeIn(client.podCreations.msUntilToken());
  return false;
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
  private wakeTimer: NodeJS.Timeout | undefined;
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
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.unsubscribe?.();
  }

  protected abstract pass(): void;

  /** Run a pass again in `ms` (at most one such wake-up pending): for work a pass had to leave, such as paced creations. */
  wakeIn(ms: number): void {
    if (this.wakeTimer || this.stopped) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.queue();
    }, ms);
  }

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
