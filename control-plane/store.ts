/// <reference path="./better-sqlite3.d.ts" />
import { openSqlite, type SqlDatabase, type SqlStatement } from './sqlite.js';
import * as path from 'node:path';
import type { Logger } from '../common/log.js';

/** A stored Kubernetes object (JSON). */
export type KObj = Record<string, any>;

export type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Change {
  rv: number;
  resource: string;
  namespace: string;
  name: string;
  type: WatchType;
  object: KObj;
  /** The object before this change (MODIFIED/DELETED), so watches with a selector can tell enter/leave. */
  prev: KObj | undefined;
}

export class ConflictError extends Error {}
export class GoneError extends Error {}

/**
 * What the API server and the controllers need of a store, synchronously: the
 * current objects by (resource, namespace, name), one monotonic
 * resourceVersion, and the recent changes that watches replay from. Two
 * implementations: SqliteStore (embedded, the default) and EtcdStore
 * (etcd-store.ts, for several control planes on one etcd).
 */
export interface ObjectStore {
  /** The resourceVersion of the last change this store has applied. */
  readonly currentRv: number;
  /** Watches and snapshots from before this resourceVersion get 410 Gone. */
  readonly oldestWatchableRv: number;
  get(resource: string, namespace: string, name: string): KObj | undefined;
  /** Ordered by (namespace, name). Each call returns fresh objects the caller may change. */
  list(resource: string, namespace?: string): KObj[];
  /**
   * The stored object itself, parsed once and deep-frozen (Object.freeze all the way down), shared
   * by every reader until the next write of it replaces it: for readers that do not change what they
   * read (the node authorizer, existence checks, controllers' reads of every pod per pass), which then
   * cost no JSON parse. Changing it throws a TypeError (modules are strict); copy first to edit.
   */
  getShared(resource: string, namespace: string, name: string): KObj | undefined;
  /** Like list, with the shared deep-frozen objects of getShared. */
  listShared(resource: string, namespace?: string): readonly KObj[];
  /** Throws ConflictError('exists') when the object is there already. */
  create(resource: string, namespace: string, name: string, obj: KObj): KObj;
  /** Throws Error('not found') when absent; ConflictError('stale') when expectRv is given and differs. */
  update(resource: string, namespace: string, name: string, obj: KObj, expectRv?: string): KObj;
  /** The deleted object (with the deletion's resourceVersion), or undefined when absent. */
  delete(resource: string, namespace: string, name: string): KObj | undefined;
  /** Changes to `resource` after rv, oldest first; throws GoneError if rv predates the retained log. */
  changesSince(resource: string, rv: number): Change[];
  /** Drop the change log up to rv so older watches get 410 (and, on etcd, compact etcd's history). */
  compact(rv: number): void;
  subscribe(fn: (c: Change) => void): () => void;
  close(): void;
}

/** Freeze an object and everything it holds, so a shared parsed object cannot be changed by one of its readers. */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

/** One object in a store's in-memory view: its JSON, and its parsed deep-frozen form once a shared read asked for it. */
export interface CachedObject {
  readonly namespace: string;
  readonly name: string;
  data: string;
  shared: KObj | undefined;
}

/** The shared, frozen form of a cached object (parsed at most once per write). */
export function sharedOf(e: CachedObject): KObj {
  return (e.shared ??= deepFreeze(JSON.parse(e.data)));
}

/**
 * The objects of one resource in memory, by namespace and name, with their (namespace, name) order
 * remembered until an object is added or removed (status writes, most writes under load, keep it).
 */
export class ResourceCache {
  readonly byKey = new Map<string, CachedObject>();
  private sorted: CachedObject[] | undefined;

  static key(namespace: string, name: string): string {
    return `${namespace}\u0000${name}`;
  }

  get(namespace: string, name: string): CachedObject | undefined {
    return this.byKey.get(ResourceCache.key(namespace, name));
  }

  /** Add or replace; a replaced entry keeps its place in the order and drops its parsed form. */
  put(namespace: string, name: string, data: string, shared?: KObj): void {
    const k = ResourceCache.key(namespace, name);
    const e = this.byKey.get(k);
    if (e) {
      e.data = data;
      e.shared = shared;
      return;
    }
    this.byKey.set(k, { namespace, name, data, shared });
    this.sorted = undefined;
  }

  remove(namespace: string, name: string): void {
    if (this.byKey.delete(ResourceCache.key(namespace, name))) this.sorted = undefined;
  }

  /** Ordered by (namespace, name), as SQLite's ORDER BY (byte order; names are ASCII). */
  ordered(namespace?: string): CachedObject[] {
    this.sorted ??= [...this.byKey.values()].sort((a, b) => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return namespace ? this.sorted.filter((e) => e.namespace === namespace) : this.sorted;
  }
}

/** The name the controllers and the API server use for whichever store runs. */
export type Store = ObjectStore;

/**
 * Durable object store: one SQLite database (WAL) holding every object by
 * (resource, namespace, name), a single monotonic resourceVersion counter and a
 * change log that watches replay from. The log keeps the last `retain` changes;
 * a watch from an older resourceVersion gets 410 Gone.
 */
export class SqliteStore implements ObjectStore {
  private db: SqlDatabase;
  private listeners = new Set<(c: Change) => void>();
  private rvCounter: number;
  private compactedRv: number;
  private readonly retain: number;
  /**
   * Every object of the resources read so far, as JSON and (after a shared read) parsed and frozen:
   * reads are served from memory, as kube-apiserver's watch cache serves them. Loaded from the
   * database on a resource's first read; this process is the database's only writer, so every
   * write goes through write() below, which keeps it current.
   */
  private readonly cache = new Map<string, ResourceCache>();

  private stmts: {
    put: SqlStatement;
    del: SqlStatement;
    listAll: SqlStatement;
    log: SqlStatement;
    setMeta: SqlStatement;
    since: SqlStatement;
    prune: SqlStatement;
  };

  /** opts.file: the database (default DATADIR/state.db). */
  constructor(dataDir: string, private log: Logger, opts: { retain?: number; file?: string } = {}) {
    this.retain = opts.retain ?? 10_000;
    this.db = openSqlite(opts.file ?? path.join(dataDir, 'state.db'));
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS objects (resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, rv INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (resource, namespace, name));
      CREATE TABLE IF NOT EXISTS changes (rv INTEGER PRIMARY KEY, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, prev TEXT);
      CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
    `);
    const meta = (k: string) => (this.db.prepare('SELECT v FROM meta WHERE k = ?').get(k) as { v: string } | undefined)?.v;
    this.rvCounter = Number(meta('rv') ?? 0);
    this.compactedRv = Number(meta('compactedRv') ?? 0);
    this.stmts = {
      put: this.db.prepare('INSERT OR REPLACE INTO objects (resource, namespace, name, rv, data) VALUES (?, ?, ?, ?, ?)'),
      del: this.db.prepare('DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?'),
      listAll: this.db.prepare('SELECT namespace, name, data FROM objects WHERE resource = ?'),
      log: this.db.prepare('INSERT INTO changes (rv, resource, namespace, name, type, data, prev) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      setMeta: this.db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)'),
      since: this.db.prepare('SELECT * FROM changes WHERE rv > ? AND resource = ? ORDER BY rv'),
      prune: this.db.prepare('DELETE FROM changes WHERE rv <= ?'),
    };
  }

  get currentRv(): number {
    return this.rvCounter;
  }

  get oldestWatchableRv(): number {
    return this.compactedRv;
  }

  get(resource: string, namespace: string, name: string): KObj | undefined {
    const e = this.resourceCache(resource).get(namespace, name);
    return e ? JSON.parse(e.data) : undefined;
  }

  list(resource: string, namespace?: string): KObj[] {
    return this.resourceCache(resource).ordered(namespace).map((e) => JSON.parse(e.data));
  }

  getShared(resource: string, namespace: string, name: string): KObj | undefined {
    const e = this.resourceCache(resource).get(namespace, name);
    return e ? sharedOf(e) : undefined;
  }

  listShared(resource: string, namespace?: string): readonly KObj[] {
    return this.resourceCache(resource).ordered(namespace).map(sharedOf);
  }

  private resourceCache(resource: string): ResourceCache {
    let c = this.cache.get(resource);
    if (!c) {
      c = new ResourceCache();
      for (const row of this.stmts.listAll.all(resource) as { namespace: string; name: string; data: string }[]) c.put(row.namespace, row.name, row.data);
      this.cache.set(resource, c);
    }
    return c;
  }

  /**
   * Create (expectRv = 'absent'), update (expectRv = the caller's resourceVersion, or undefined for
   * an unconditional write) or delete an object; assigns the next resourceVersion and logs the change.
   */
  private write(resource: string, namespace: string, name: string, type: WatchType, obj: KObj, prev: KObj | undefined): KObj {
    const rv = this.rvCounter + 1;
    const stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
    const data = JSON.stringify(stored);
    // The previous state as stored: no second serialization of it.
    const prevData = prev ? (this.resourceCache(resource).get(namespace, name)?.data ?? JSON.stringify(prev)) : null;
    this.db.transaction(() => {
      if (type === 'DELETED') this.stmts.del.run(resource, namespace, name);
      else this.stmts.put.run(resource, namespace, name, rv, data);
      this.stmts.log.run(rv, resource, namespace, name, type, data, prevData);
      this.stmts.setMeta.run('rv', String(rv));
      if (rv % 500 === 0 && rv - this.retain > this.compactedRv) {
        const cut = rv - this.retain;
        this.stmts.prune.run(cut);
        this.stmts.setMeta.run('compactedRv', String(cut));
        this.compactedRv = cut;
      }
    });
    this.rvCounter = rv;
    // After the commit: a failed transaction leaves the view as the database is.
    if (type === 'DELETED') this.resourceCache(resource).remove(namespace, name);
    else this.resourceCache(resource).put(namespace, name, data);
    const change: Change = { rv, resource, namespace, name, type, object: stored, prev };
    for (const l of this.listeners) {
      try {
        l(change);
      } catch (err) {
        this.log.error({ err }, 'watch listener failed');
      }
    }
    return stored;
  }

  create(resource: string, namespace: string, name: string, obj: KObj): KObj {
    if (this.resourceCache(resource).get(namespace, name)) throw new ConflictError('exists');
    return this.write(resource, namespace, name, 'ADDED', obj, undefined);
  }

  /** Replace; when expectRv is given and differs from the stored one, throws ConflictError. */
  update(resource: string, namespace: string, name: string, obj: KObj, expectRv?: string): KObj {
    // The shared form: it only becomes the change's `prev`, which listeners read and never change.
    const cur = this.getShared(resource, namespace, name);
    if (!cur) throw new Error('not found');
    if (expectRv !== undefined && expectRv !== '' && cur.metadata?.resourceVersion !== expectRv) throw new ConflictError('stale');
    return this.write(resource, namespace, name, 'MODIFIED', obj, cur);
  }

  delete(resource: string, namespace: string, name: string): KObj | undefined {
    const cur = this.get(resource, namespace, name);
    if (!cur) return undefined;
    return this.write(resource, namespace, name, 'DELETED', cur, cur);
  }

  /** Changes to `resource` after rv, oldest first; throws GoneError if rv predates the retained log. */
  changesSince(resource: string, rv: number): Change[] {
    if (rv < this.compactedRv) throw new GoneError(`too old resource version: ${rv} (${this.compactedRv})`);
    const rows = this.stmts.since.all(rv, resource) as { rv: number; resource: string; namespace: string; name: string; type: WatchType; data: string; prev: string | null }[];
    return rows.map((r) => ({ rv: r.rv, resource: r.resource, namespace: r.namespace, name: r.name, type: r.type, object: JSON.parse(r.data), prev: r.prev ? JSON.parse(r.prev) : undefined }));
  }

  /** Testing/maintenance: drop the change log up to rv so older watches get 410. */
  compact(rv: number): void {
    this.stmts.prune.run(rv);
    this.stmts.setMeta.run('compactedRv', String(rv));
    this.compactedRv = rv;
  }

  subscribe(fn: (c: Change) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    this.listeners.clear();
    this.db.close();
  }
}
