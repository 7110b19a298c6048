/**
 * The etcd side of EtcdStore, in a worker thread: the etcd3 client is
 * asynchronous (gRPC), the store API is synchronous. The main thread posts a
 * request and blocks on Atomics.wait over `signal`; this thread answers on
 * `replyPort`, then sets signal[0] and notifies.
 *
 * Ordering: this thread also runs the one watch over the prefix and posts its
 * events on `eventPort` as they come. A write is answered only once the watch
 * has delivered the write's own revision, so when the main thread wakes, every
 * event up to that revision is already queued on `eventPort` ahead of the
 * answer, and it applies them, in revision order, before returning.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Etcd3, type Watcher, type IKeyValue, type IResponseOp } from 'etcd3';

export interface EtcdWorkerData {
  endpoints: string[];
  /** Ends in '/'. */
  prefix: string;
  signal: SharedArrayBuffer;
  replyPort: MessagePort;
  eventPort: MessagePort;
  /** How long a write waits for its own event on the watch. */
  watchWaitMs: number;
  /** At start, replay up to this many revisions of history before the current one (the watch log a restart keeps). */
  historyRevisions: number;
}

export type EtcdRequest =
  | { id: number; op: 'init' }
  | { id: number; op: 'create'; key: string; value: string }
  /** expectMod: the mod revision the key must have (-1: no revision can match); undefined: any, as long as it exists. */
  | { id: number; op: 'update'; key: string; value: string; expectMod?: number }
  | { id: number; op: 'delete'; key: string }
  | { id: number; op: 'compact'; rev: number }
  | { id: number; op: 'close' };

export type EtcdReply =
  | { id: number; ok: true; result: any }
  | { id: number; ok: false; kind: 'exists' | 'stale' | 'notfound' | 'error'; message: string };

export interface WireEvent { type: 'put' | 'delete'; key: string; value?: string; rev: number }
/** A change from before the start, with the key's value before it (etcd's prev_kv). */
export interface HistoryEvent extends WireEvent { prev?: { value: string; rev: number } }
export type EventMessage = { events: WireEvent[] } | { fatal: string } | { warning: string };

const data = workerData as EtcdWorkerData;
const signal = new Int32Array(data.signal);
const client = new Etcd3({ hosts: data.endpoints, dialTimeout: 3000 });
const prefixKey = Buffer.from(data.prefix);
/** The end of the prefix's key range: the prefix with its last byte incremented. */
const prefixEnd = Buffer.from(prefixKey);
prefixEnd[prefixEnd.length - 1]! += 1;

let watcher: Watcher | undefined;
/** The highest revision the watch has delivered (or the initial range covered). */
let watchedRev = 0;
let waiters: Array<{ rev: number; resolve: () => void }> = [];

function answer(reply: EtcdReply): void {
  data.replyPort.postMessage(reply);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

function watchReached(rev: number): Promise<void> {
  if (watchedRev >= rev) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters = waiters.filter((w) => w.resolve !== done);
      reject(new Error(`etcd committed revision ${rev} but its watch did not deliver it within ${data.watchWaitMs} ms`));
    }, data.watchWaitMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    waiters.push({ rev, resolve: done });
  });
}

function delivered(rev: number): void {
  if (rev <= watchedRev) return;
  watchedRev = rev;
  const ready = waiters.filter((w) => w.rev <= rev);
  waiters = waiters.filter((w) => w.rev > rev);
  for (const w of ready) w.resolve();
}

/** Whether etcd still has revision `rev` (not compacted away). */
async function hasRevision(rev: number): Promise<boolean> {
  try {
    await client.kv.range({ key: prefixKey, range_end: prefixEnd, revision: String(rev), count_only: true });
    return true;
  } catch (err) {
    if (/compacted/.test((err as Error).message)) return false;
    throw err;
  }
}

/**
 * The changes under the prefix in revisions (from, to], each with the value before it: what the
 * watch log held before a restart. Watches the whole keyspace from `from + 1` so that every
 * revision up to `to` shows up (each revision is at least one put or delete somewhere), which is
 * how the replay knows it is complete; keys outside the prefix are dropped. `from` is moved up past
 * etcd's compaction first (binary search: etcd reports no compacted revision to a range).
 */
async function history(from: number, to: number): Promise<{ from: number; events: HistoryEvent[] }> {
  if (!(await hasRevision(from))) {
    let lo = from + 1, hi = to;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (await hasRevision(mid)) hi = mid;
      else lo = mid + 1;
    }
    from = lo;
  }
  const events: HistoryEvent[] = [];
  if (from >= to) return { from: to, events };
  const replay = await client.watch().prefix('').withPreviousKV().startRevision(String(from + 1)).create();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`etcd did not replay revisions ${from + 1}-${to} within ${data.watchWaitMs} ms`)), data.watchWaitMs);
      replay.on('error', (err: Error) => { clearTimeout(timer); reject(err); });
      replay.on('data', (wr) => {
        for (const e of wr.events) {
          const erev = Number(e.kv.mod_revision);
          if (erev > to) continue;
          const key = e.kv.key.toString();
          if (!key.startsWith(data.prefix)) continue;
          const prev = e.prev_kv ? { value: e.prev_kv.value.toString(), rev: Number(e.prev_kv.mod_revision) } : undefined;
          events.push(e.type === 'Put' ? { type: 'put', key, value: e.kv.value.toString(), rev: erev, prev } : { type: 'delete', key, rev: erev, prev });
        }
        if (wr.events.some((e) => Number(e.kv.mod_revision) >= to)) { clearTimeout(timer); resolve(); }
      });
    });
  } finally {
    await replay.cancel().catch(() => undefined);
  }
  return { from, events };
}

async function init(): Promise<{ rev: number; kvs: Array<{ key: string; value: string; rev: number }>; history: { from: number; events: HistoryEvent[] } }> {
  const res = await client.kv.range({ key: prefixKey, range_end: prefixEnd });
  const rev = Number(res.header.revision);
  // Revision 1 is etcd's empty start; history begins after it.
  const past = await history(Math.max(1, rev - data.historyRevisions), rev).catch((err: Error) => {
    data.eventPort.postMessage({ warning: `the watch log starts empty: ${err.message}` } satisfies EventMessage);
    return { from: rev, events: [] };
  });
  watchedRev = rev;
  watcher = await client.watch().prefix(data.prefix).startRevision(String(rev + 1)).create();
  watcher.on('data', (wr) => {
    const events: WireEvent[] = [];
    let last = 0;
    for (const e of wr.events) {
      const erev = Number(e.kv.mod_revision);
      events.push(e.type === 'Put' ? { type: 'put', key: e.kv.key.toString(), value: e.kv.value.toString(), rev: erev } : { type: 'delete', key: e.kv.key.toString(), rev: erev });
      last = Math.max(last, erev);
    }
    if (events.length) data.eventPort.postMessage({ events } satisfies EventMessage);
    delivered(last);
  });
  // A canceled watch (its start revision compacted away while disconnected): the mirror can no longer follow.
  watcher.on('error', (err: Error) => data.eventPort.postMessage({ fatal: err.message } satisfies EventMessage));
  return { rev, kvs: res.kvs.map((kv: IKeyValue) => ({ key: kv.key.toString(), value: kv.value.toString(), rev: Number(kv.mod_revision) })), history: past };
}

/** The key's state from a failed transaction's range: its mod revision, or undefined when absent. */
function rangedMod(responses: IResponseOp[]): number | undefined {
  const kv = responses[0]?.response_range?.kvs?.[0];
  return kv ? Number(kv.mod_revision) : undefined;
}

async function handle(req: EtcdRequest): Promise<EtcdReply> {
  const { id } = req;
  switch (req.op) {
    case 'init':
      return { id, ok: true, result: await init() };
    case 'create': {
      const key = Buffer.from(req.key);
      const res = await client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: Buffer.from(req.value) } }],
        failure: [{ request_range: { key } }],
      });
      if (!res.succeeded) {
        const mod = rangedMod(res.responses);
        if (mod !== undefined) await watchReached(mod);
        return { id, ok: false, kind: 'exists', message: 'exists' };
      }
      const rev = Number(res.header.revision);
      await watchReached(rev);
      return { id, ok: true, result: { rev } };
    }
    case 'update': {
      const key = Buffer.from(req.key);
      const compare = req.expectMod === undefined
        ? [{ key, target: 'Create' as const, result: 'Greater' as const, create_revision: 0 }]
        : [{ key, target: 'Create' as const, result: 'Greater' as const, create_revision: 0 }, { key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: Math.max(req.expectMod, 0) }];
      const res = await client.kv.txn({ compare, success: [{ request_put: { key, value: Buffer.from(req.value) } }], failure: [{ request_range: { key } }] });
      if (!res.succeeded) {
        const mod = rangedMod(res.responses);
        if (mod === undefined) return { id, ok: false, kind: 'notfound', message: 'not found' };
        await watchReached(mod);
        return { id, ok: false, kind: 'stale', message: 'stale' };
      }
      const rev = Number(res.header.revision);
      await watchReached(rev);
      return { id, ok: true, result: { rev } };
    }
    case 'delete': {
      const key = Buffer.from(req.key);
      const res = await client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Greater', create_revision: 0 }],
        success: [{ request_delete_range: { key, prev_kv: true } }],
        failure: [],
      });
      if (!res.succeeded) return { id, ok: true, result: undefined };
      const rev = Number(res.header.revision);
      const prev = res.responses[0]?.response_delete_range?.prev_kvs?.[0];
      await watchReached(rev);
      return { id, ok: true, result: { rev, prev: prev ? prev.value.toString() : undefined } };
    }
    case 'compact': {
      // etcd refuses a future revision and one already compacted; neither is an error here.
      const current = Number((await client.kv.range({ key: prefixKey, range_end: prefixEnd, count_only: true })).header.revision);
      try {
        await client.kv.compact({ revision: Math.min(req.rev, current) });
      } catch (err) {
        if (!/compacted/.test((err as Error).message)) throw err;
      }
      return { id, ok: true, result: undefined };
    }
    case 'close':
      await watcher?.cancel().catch(() => undefined);
      client.close();
      return { id, ok: true, result: undefined };
  }
}

parentPort!.on('message', (req: EtcdRequest) => {
  handle(req).then(answer, (err: Error) => answer({ id: req.id, ok: false, kind: 'error', message: err.message }));
});
