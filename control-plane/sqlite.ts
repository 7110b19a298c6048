import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

const require = createRequire(import.meta.url);

export interface SqlStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** The few SQLite operations the store needs, whichever driver provides them. */
export interface SqlDatabase {
  exec(sql: string): void;
  prepare(sql: string): SqlStatement;
  /** Run fn in one transaction: all of its writes or none. */
  transaction(fn: () => void): void;
  close(): void;
  readonly driver: 'better-sqlite3' | 'node:sqlite';
}

interface NodeSqlite { DatabaseSync: new (file: string) => { exec(sql: string): void; prepare(sql: string): SqlStatement; close(): void } }

/**
 * Open a SQLite database in WAL mode. better-sqlite3 is used where its native
 * addon loads (Node 20, which it is built for); it binds to V8 directly, not
 * N-API, so on Node 24 it cannot load and the built-in node:sqlite (stable
 * there, missing on 20) takes over. Both give synchronous, durable writes.
 */
export function openSqlite(file: string): SqlDatabase {
  let loadError: unknown;
  try {
    // The addon itself is loaded by the constructor, so a wrong ABI shows up here.
    const Better = require('better-sqlite3') as typeof BetterSqlite3;
    const db = new Better(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    return { driver: 'better-sqlite3', exec: (s) => { db.exec(s); }, prepare: (s) => db.prepare(s), transaction: (fn) => db.transaction(fn)(), close: () => { db.close(); } };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'ERR_DLOPEN_FAILED' && code !== 'MODULE_NOT_FOUND') throw err;
    loadError = err;
  }
  let builtin: NodeSqlite;
  try {
    builtin = require('node:sqlite') as NodeSqlite;
  } catch {
    throw new Error(`no SQLite driver: better-sqlite3 did not load (${String((loadError as Error)?.message ?? loadError)}) and this Node has no node:sqlite; run npm ci (it builds better-sqlite3) or use Node 22.13+`);
  }
  const db = new builtin.DatabaseSync(file);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
  return {
    driver: 'node:sqlite',
    exec: (s) => db.exec(s),
    prepare: (s) => db.prepare(s),
    transaction: (fn) => {
      db.exec('BEGIN IMMEDIATE');
      try {
        fn();
        db.exec('COMMIT');
      } catch (err) {
        db.exec('ROLLBACK');
        throw err;
      }
    },
    close: () => db.close(),
  };
}
