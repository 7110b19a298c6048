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

  private stmts: {
    get: SqlStatement;
    put: SqlStatement;
    del: SqlStatement;
    listAll: SqlStatement;
    listNs: SqlStatement;
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
      get: this.db.prepare('SELECT data FROM objects WHERE resource = ? AND namespace = ? AND name = ?'),
      put: this.db.prepare('INSERT OR REPLACE INTO objects (resource, namespace, name, rv, data) VALUES (?, ?, ?, ?, ?)'),
      del: this.db.prepare('DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?'),
      listAll: this.db.prepare('SELECT data FROM objects WHERE resource = ? ORDER BY namespace, name'),
      listNs: this.db.prepare('SELECT data FROM objects WHERE resource = ? AND namespace = ? ORDER BY name'),
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
    const row = this.stmts.get.get(resource, namespace, name) as { data: string } | undefined;
    return row ? JSON.parse(row.data) : undefined;
  }

  list(resource: string, namespace?: string): KObj[] {
    const rows = (namespace ? this.stmts.listNs.all(resource, namespace) : this.stmts.listAll.all(resource)) as { data: string }[];
    return rows.map((r) => JSON.parse(r.data));
  }

  /**
   * Create (expectRv = 'absent'), update (expectRv = the caller's resourceVersion, or undefined for
   * an unconditional write) or delete an object; assigns the next resourceVersion and logs the change.
   */
  private write(resource: string, namespace: string, name: string, type: WatchType, obj: KObj, prev: KObj | undefined): KObj {
    const rv = this.rvCounter + 1;
    const stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
    const data = JSON.stringify(stored);
    this.db.transaction(() => {
      if (type === 'DELETED') this.stmts.del.run(resource, namespace, name);
      else this.stmts.put.run(resource, namespace, name, rv, data);
      this.stmts.log.run(rv, resource, namespace, name, type, data, prev ? JSON.stringify(prev) : null);
      this.stmts.setMeta.run('rv', String(rv));
      if (rv % 500 === 0 && rv - this.retain > this.compactedRv) {
        const cut = rv - this.retain;
        this.stmts.prune.run(cut);
        this.stmts.setMeta.run('compactedRv', String(cut));
        this.compactedRv = cut;
      }
    });
    this.rvCounter = rv;
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
    if (this.get(resource, namespace, name)) throw new ConflictError('exists');
    return this.write(resource, namespace, name, 'ADDED', obj, undefined);
  }

  /** Replace; when expectRv is given and differs from the stored one, throws ConflictError. */
  update(resource: string, namespace: string, name: string, obj: KObj, expectRv?: string): KObj {
    const cur = this.get(resource, namespace, name);
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
