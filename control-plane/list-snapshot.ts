import { ApiError } from './resources.js';
import { GoneError, type KObj, type Store } from './store.js';

/**
 * Consistent lists (kube-apiserver's `limit`/`continue` and
 * `resourceVersionMatch=Exact`): every page of a paginated list shows the
 * objects as they were at the first page's resourceVersion. The store keeps
 * only the current objects, plus a log of recent changes with each object's
 * previous state; the state at an older resourceVersion is the current one
 * with the changes since undone, newest first. Past the log's retention the
 * snapshot cannot be rebuilt: 410 Expired, as etcd compaction makes it.
 */
export function listAt(store: Store, resource: string, namespace: string | undefined, rv: number): readonly KObj[] {
  // The store lists in (namespace, name) order already: the current state needs no rebuilding.
  // Lists are only serialized: the store's shared objects need no copy.
  if (rv >= store.currentRv) return store.listShared(resource, namespace);
  const byKey = new Map<string, KObj>();
  const key = (ns: string, name: string) => `${ns}\u0000${name}`;
  for (const o of store.listShared(resource, namespace)) byKey.set(key(o.metadata.namespace ?? '', o.metadata.name), o);
  const changes = store.changesSince(resource, rv);
  for (let i = changes.length - 1; i >= 0; i--) {
    const c = changes[i]!;
    if (namespace !== undefined && c.namespace !== namespace) continue;
    const k = key(c.namespace, c.name);
    if (c.type === 'ADDED') byKey.delete(k);
    else if (c.prev) byKey.set(k, c.prev);
  }
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
}

interface ContinueToken { v: 1; rv: number; after: string }

export function encodeContinue(rv: number, last: KObj): string {
  const token: ContinueToken = { v: 1, rv, after: `${last.metadata.namespace ?? ''}\u0000${last.metadata.name}` };
  return Buffer.from(JSON.stringify(token)).toString('base64url');
}

function decodeContinue(text: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as ContinueToken;
    if (t.v === 1 && Number.isInteger(t.rv) && t.rv >= 0 && typeof t.after === 'string') return t;
  } catch { /* reported below */ }
  throw new ApiError(400, 'BadRequest', `continue key is not valid: "${text}" was not issued by this server; list again without it`);
}

export interface Page { items: KObj[]; rv: number; continueToken?: string; remainingItemCount?: number }

/**
 * One page of a list. `limit` 0 means everything; `cont` is a token from a
 * previous page; `exactRv` lists at that resourceVersion (resourceVersionMatch=Exact).
 */
export function listPage(store: Store, resource: string, namespace: string | undefined, opts: { limit: number; cont?: string; exactRv?: number }, keep: (o: KObj) => boolean): Page {
  const token = opts.cont ? decodeContinue(opts.cont) : undefined;
  const rv = token?.rv ?? opts.exactRv ?? store.currentRv;
  let all: readonly KObj[];
  try {
    all = listAt(store, resource, namespace, rv);
  } catch (err) {
    if (!(err instanceof GoneError)) throw err;
    throw token
      ? new ApiError(410, 'Expired', `the continue token is too old: the list it belongs to (resourceVersion ${rv}) is no longer kept (oldest ${store.oldestWatchableRv}); start the list again without continue`)
      : new ApiError(410, 'Expired', `too old resource version: ${rv} (${store.oldestWatchableRv})`);
  }
  let matching = all.filter(keep);
  if (token) matching = matching.filter((o) => `${o.metadata.namespace ?? ''}\u0000${o.metadata.name}` > token.after);
  if (opts.limit <= 0 || matching.length <= opts.limit) return { items: matching, rv };
  const items = matching.slice(0, opts.limit);
  return { items, rv, continueToken: encodeContinue(rv, items[items.length - 1]!), remainingItemCount: matching.length - items.length };
}
