// Minimal typings for the parts of better-sqlite3 v12 the control plane uses
// (the package ships none; @types/better-sqlite3 is not a dependency).
declare module 'better-sqlite3' {
  namespace Database {
    interface Statement {
      run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
      get(...params: unknown[]): unknown;
      all(...params: unknown[]): unknown[];
    }
    interface Database {
      prepare(sql: string): Statement;
      exec(sql: string): this;
      pragma(sql: string): unknown;
      transaction<F extends (...args: any[]) => any>(fn: F): F;
      close(): this;
    }
  }
  interface DatabaseConstructor {
    new (filename: string, options?: Record<string, unknown>): Database.Database;
  }
  const Database: DatabaseConstructor;
  export = Database;
}
