import { Worker, MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { UserError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { ConflictError, GoneError, ResourceCache, deepFreeze, sharedOf, type Change, type KObj, type ObjectStore, type WatchType } from './store.js';
import type { EtcdReply, EtcdRequest, EtcdWorkerData, EventMessage, HistoryEvent, WireEvent } from './etcd-worker.js';

export const DEFAULT_ETCD_PREFIX = '/registry';

export interface EtcdStoreOptions {
  /** Client URLs of the members of one etcd cluster. */
  endpoints: string[];
  /** Keys are PREFIX/RESOURCE/NAMESPACE/NAME (PREFIX/RESOURCE/NAME when cluster-scoped), as kube-apiserver lays them out. */
  prefix?: string;
  /** Changes kept in memory for watches and consistent lists (default 10 000); older ones get 410 Gone. */
  retain?: number;
  /** How long a call waits for etcd before it fails (default 10 s). */
  timeoutMs?: number;
}

interface LoggedChange { rv: number; resource: string; namespace: string; name: string; type: WatchType; data: string; prev: string | undefined }

type Request = EtcdRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/**
 * The object store on etcd, with kube-apiserver's watch-cache shape: an
 * in-memory mirror of every key under the prefix, kept current by one etcd
 * watch, serves get/list/changesSince; writes are etcd transactions (create:
 * create_revision == 0; update with a resourceVersion: mod_revision == it),
 * so several control planes on one etcd never lose an update. resourceVersion
 * is the etcd revision: each object's is its mod_revision (not stored in the
 * value; filled in when read), currentRv the last revision applied.
 *
 * The API is synchronous like SqliteStore's: the etcd3 client runs in a worker
 * thread (etcd-worker.ts) and a call blocks on Atomics.wait until it answers.
 */
export class EtcdStore implements ObjectStore {
  private readonly prefix: string;
  private readonly retain: number;
  private readonly timeoutMs: number;
  private readonly endpoints: string[];
  private readonly worker: Worker;
  private readonly signal: Int32Array;
  private readonly replyPort: MessagePort;
  private readonly eventPort: MessagePort;
  private nextId = 0;
  /**
   * resource → its objects (namespace '' when cluster-scoped) as JSON with the resourceVersion filled
   * in, and parsed and frozen once a shared read or a listener needed them. Every change, this
   * control plane's own writes and other control planes' alike, arrives as an etcd watch event
   * and replaces the entry in apply(), so nothing here outlives the revision it was read at.
   */
  private readonly objects = new Map<string, ResourceCache>();
  private changes: LoggedChange[] = [];
  private readonly pending: WireEvent[] = [];
  private readonly listeners = new Set<(c: Change) => void>();
  private appliedRev = 0;
  private compactedRv = 0;
  private lost: string | undefined;
  private closed = false;

  constructor(opts: EtcdStoreOptions, private log: Logger) {
    this.prefix = (opts.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '') + '/';
    this.retain = opts.retain ?? 10_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.endpoints = opts.endpoints;
    const sab = new SharedArrayBuffer(4);
    this.signal = new Int32Array(sab);
    const replies = new MessageChannel();
    const events = new MessageChannel();
    this.replyPort = replies.port1;
    this.eventPort = events.port1;
    const workerData: EtcdWorkerData = { endpoints: opts.endpoints, prefix: this.prefix, signal: sab, replyPort: replies.port2, eventPort: events.port2, watchWaitMs: this.timeoutMs, historyRevisions: this.retain };
    this.worker = new Worker(new URL('./etcd-worker.js', import.meta.url), { workerData, transferList: [replies.port2, events.port2] });
    this.worker.on('error', (err) => {
      this.lost = `the etcd client thread failed: ${err.message}`;
      this.log.error({ err }, 'etcd client thread failed');
    });
    // Events of other writers (other control planes) arrive while this thread is idle.
    this.eventPort.on('message', (m: EventMessage) => {
      this.take(m);
      this.applyPending();
    });
    this.worker.unref();
    this.eventPort.unref();
    let initial: { rev: number; kvs: Array<{ key: string; value: string; rev: number }>; history: { from: number; events: HistoryEvent[] } };
    try {
      initial = this.call({ op: 'init' });
    } catch (err) {
      void this.worker.terminate();
      throw err;
    }
    for (const kv of initial.kvs) {
      const k = this.parseKey(kv.key);
      if (k) this.resourceCache(k.resource).put(k.namespace, k.name, withRv(kv.value, kv.rev));
    }
    // The mirror starts at this revision; the log holds the changes etcd still had before it, so a
    // watch from a resourceVersion of before a restart goes on (kube-apiserver's watch cache would say 410).
    this.appliedRev = initial.rev;
    this.changes = this.logOf(initial.history.events);
    this.compactedRv = initial.history.from;
  }

  /** Log entries of replayed history, as apply() would have logged them. */
  private logOf(events: HistoryEvent[]): LoggedChange[] {
    const out: LoggedChange[] = [];
    for (const e of events) {
      const k = this.parseKey(e.key);
      if (!k) continue;
      const prev = e.prev ? withRv(e.prev.value, e.prev.rev) : undefined;
      if (e.type === 'put') out.push({ rv: e.rev, ...k, type: prev ? 'MODIFIED' : 'ADDED', data: withRv(e.value!, e.rev), prev });
      else if (e.prev) out.push({ rv: e.rev, ...k, type: 'DELETED', data: withRv(e.prev.value, e.rev), prev });
    }
    return out;
  }

  get currentRv(): number {
    return this.appliedRev;
  }

  get oldestWatchableRv(): number {
    return this.compactedRv;
  }

  get(resource: string, namespace: string, name: string): KObj | undefined {
    this.checkLive();
    const e = this.objects.get(resource)?.get(namespace, name);
    return e ? JSON.parse(e.data) : undefined;
  }

  getShared(resource: string, namespace: string, name: string): KObj | undefined {
    this.checkLive();
    const e = this.objects.get(resource)?.get(namespace, name);
    return e ? sharedOf(e) : undefined;
  }

  listShared(resource: string, namespace?: string): readonly KObj[] {
    this.checkLive();
    // '' means every namespace, as in SqliteStore (cluster-scoped objects are all under '').
    return this.objects.get(resource)?.ordered(namespace || undefined).map(sharedOf) ?? [];
  }

  list(resource: string, namespace?: string): KObj[] {
    this.checkLive();
    // '' means every namespace, as in SqliteStore (cluster-scoped objects are all under '').
    return this.objects.get(resource)?.ordered(namespace || undefined).map((e) => JSON.parse(e.data)) ?? [];
  }

  create(resource: string, namespace: string, name: string, obj: KObj): KObj {
    const { rev } = this.call<{ rev: number }>({ op: 'create', key: this.key(resource, namespace, name), value: stripRv(obj) });
    return stamped(obj, rev);
  }

  update(resource: string, namespace: string, name: string, obj: KObj, expectRv?: string): KObj {
    let expectMod: number | undefined;
    if (expectRv !== undefined && expectRv !== '') expectMod = /^[1-9]\d*$/.test(expectRv) ? Number(expectRv) : -1;
    const { rev } = this.call<{ rev: number }>({ op: 'update', key: this.key(resource, namespace, name), value: stripRv(obj), expectMod });
    return stamped(obj, rev);
  }

  delete(resource: string, namespace: string, name: string): KObj | undefined {
    const r = this.call<{ rev: number; prev: string | undefined } | undefined>({ op: 'delete', key: this.key(resource, namespace, name) });
    if (!r || r.prev === undefined) return undefined;
    return JSON.parse(withRv(r.prev, r.rev));
  }

  changesSince(resource: string, rv: number): Change[] {
    this.checkLive();
    if (rv < this.compactedRv) throw new GoneError(`too old resource version: ${rv} (${this.compactedRv})`);
    const out: Change[] = [];
    for (let i = this.firstAfter(rv); i < this.changes.length; i++) {
      const c = this.changes[i]!;
      if (c.resource !== resource) continue;
      out.push({ rv: c.rv, resource: c.resource, namespace: c.namespace, name: c.name, type: c.type, object: JSON.parse(c.data), prev: c.prev === undefined ? undefined : JSON.parse(c.prev) });
    }
    return out;
  }

  /** Drops the in-memory log up to rv and compacts etcd's history there (other control planes' watches from before it get 410 too). */
  compact(rv: number): void {
    this.call({ op: 'compact', rev: rv });
    this.changes = this.changes.slice(this.firstAfter(rv));
    this.compactedRv = Math.max(this.compactedRv, rv);
  }

  subscribe(fn: (c: Change) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.call({ op: 'close' }, 3000);
    } catch (err) {
      this.log.warn({ err }, 'etcd client did not close cleanly');
    }
    this.closed = true;
    this.listeners.clear();
    this.eventPort.close();
    this.replyPort.close();
    void this.worker.terminate();
  }

  // ------------------------------------------------------------ internals

  /**
   * Posts a request to the worker and blocks until its answer. Every event the
   * worker posted before answering is applied first, so a write's own change
   * is in the mirror (and has reached the listeners) when the write returns.
   */
  private call<T = any>(req: Request, timeoutMs = this.timeoutMs): T {
    if (this.closed) throw new Error('the etcd store is closed');
    const id = ++this.nextId;
    Atomics.store(this.signal, 0, 0);
    this.worker.postMessage({ ...req, id } as EtcdRequest);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let reply: EtcdReply | undefined;
      for (let m = receiveMessageOnPort(this.replyPort); m; m = receiveMessageOnPort(this.replyPort)) {
        // An answer to an earlier call that timed out is dropped.
        if ((m.message as EtcdReply).id === id) reply = m.message as EtcdReply;
      }
      if (reply) {
        this.drainEvents();
        if (reply.ok) return reply.result as T;
        if (reply.kind === 'exists' || reply.kind === 'stale') throw new ConflictError(reply.message);
        if (reply.kind === 'notfound') throw new Error('not found');
        if (/UNAVAILABLE|ECONNREFUSED|No connection established/.test(reply.message)) {
          throw new UserError(`etcd at ${this.endpoints.join(',')} cannot be reached: is it running? (${reply.message.split('\n')[0]})`,
            { hint: `check that etcd listens there (etcdctl --endpoints ${this.endpoints.join(',')} endpoint health), or pick another store with --store` });
        }
        throw new UserError(`etcd at ${this.endpoints.join(',')} failed a ${req.op}: ${reply.message}`, { hint: 'check etcd\'s health (etcdctl endpoint health) and its log' });
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        this.drainEvents();
        throw new UserError(`etcd at ${this.endpoints.join(',')} did not answer within ${Math.round(timeoutMs / 1000)} s: is it running?`,
          { hint: `check that etcd listens there (etcdctl --endpoints ${this.endpoints.join(',')} endpoint health), or pick another store with --store` });
      }
      Atomics.wait(this.signal, 0, 0, left);
      Atomics.store(this.signal, 0, 0);
    }
  }

  private drainEvents(): void {
    for (let m = receiveMessageOnPort(this.eventPort); m; m = receiveMessageOnPort(this.eventPort)) this.take(m.message as EventMessage);
    this.applyPending();
  }

  private take(m: EventMessage): void {
    if ('warning' in m) {
      this.log.warn({ reason: m.warning }, 'etcd history not replayed');
      return;
    }
    if ('fatal' in m) {
      this.lost = `the etcd watch ended: ${m.fatal}`;
      this.log.error({ reason: m.fatal }, 'etcd watch lost; this control plane can no longer follow etcd and must be restarted');
      return;
    }
    this.pending.push(...m.events);
  }

  /**
   * Applies queued events in order. Re-entrant: a listener that writes applies
   * the rest of the queue (and its own change) before its write returns, still
   * in revision order, because each event leaves the queue before it is applied.
   */
  private applyPending(): void {
    for (let e = this.pending.shift(); e; e = this.pending.shift()) this.apply(e);
  }

  private apply(e: WireEvent): void {
    if (e.rev < this.appliedRev) return;
    const k = this.parseKey(e.key);
    this.appliedRev = Math.max(this.appliedRev, e.rev);
    if (!k) return;
    const cache = this.resourceCache(k.resource);
    const prevEntry = cache.get(k.namespace, k.name);
    // Taken before the entry is replaced in place.
    const prevData = prevEntry?.data;
    const prevShared = prevEntry?.shared;
    let change: LoggedChange;
    let object: KObj;
    if (e.type === 'put') {
      // One parse per event: the stamped object is the listeners' and the shared readers' (frozen), its JSON the log's.
      object = deepFreeze(stamped(JSON.parse(e.value!), e.rev));
      const data = JSON.stringify(object);
      cache.put(k.namespace, k.name, data, object);
      change = { rv: e.rev, ...k, type: prevEntry ? 'MODIFIED' : 'ADDED', data, prev: prevData };
    } else {
      if (!prevEntry) return;
      cache.remove(k.namespace, k.name);
      object = deepFreeze(stamped(prevShared ?? JSON.parse(prevData!), e.rev));
      change = { rv: e.rev, ...k, type: 'DELETED', data: JSON.stringify(object), prev: prevData };
    }
    this.changes.push(change);
    if (this.changes.length >= this.retain + 500) {
      const cut = this.changes.length - this.retain;
      this.compactedRv = this.changes[cut - 1]!.rv;
      this.changes = this.changes.slice(cut);
    }
    if (!this.listeners.size) return;
    // Listeners read changes and never edit them (store.ts Change), so the shared frozen forms serve.
    const prev = prevData === undefined ? undefined : (prevShared ?? JSON.parse(prevData));
    for (const l of this.listeners) {
      try {
        l({ rv: change.rv, resource: change.resource, namespace: change.namespace, name: change.name, type: change.type, object, prev });
      } catch (err) {
        this.log.error({ err }, 'watch listener failed');
      }
    }
  }

  /** Index of the first logged change after rv. */
  private firstAfter(rv: number): number {
    let lo = 0, hi = this.changes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.changes[mid]!.rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private checkLive(): void {
    if (this.lost) throw new UserError(`the control plane lost etcd: ${this.lost}`, { hint: 'restart the control plane: it rebuilds its view from etcd' });
  }

  private key(resource: string, namespace: string, name: string): string {
    this.checkLive();
    for (const [what, v] of [['resource', resource], ['namespace', namespace], ['name', name]] as const) {
      if (v.includes('/')) throw new Error(`cannot store ${resource} ${namespace}/${name} in etcd: its ${what} contains "/"`);
    }
    return namespace ? `${this.prefix}${resource}/${namespace}/${name}` : `${this.prefix}${resource}/${name}`;
  }

  private parseKey(key: string): { resource: string; namespace: string; name: string } | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const parts = key.slice(this.prefix.length).split('/');
    if (parts.length === 3) return { resource: parts[0]!, namespace: parts[1]!, name: parts[2]! };
    if (parts.length === 2) return { resource: parts[0]!, namespace: '', name: parts[1]! };
    // Not one of ours (another tool's key under the prefix): not an object of the API.
    return undefined;
  }

  private resourceCache(resource: string): ResourceCache {
    let c = this.objects.get(resource);
    if (!c) this.objects.set(resource, (c = new ResourceCache()));
    return c;
  }
}

/** The JSON kept in etcd: the object without its resourceVersion (etcd's mod_revision is it). */
function stripRv(obj: KObj): string {
  const metadata = { ...obj.metadata };
  delete metadata.resourceVersion;
  return JSON.stringify({ ...obj, metadata });
}

function stamped(obj: KObj, rev: number): KObj {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rev) } };
}

function withRv(json: string, rev: number): string {
  return JSON.stringify(stamped(JSON.parse(json), rev));
}
