import { loadAddon } from '../common/native.js';

interface InotifyAddon {
  open(): number;
  add(fd: number, dir: string): number;
  remove(fd: number, wd: number): void;
  drain(fd: number): number[];
  close(fd: number): void;
}

const inotify: InotifyAddon = loadAddon('inotify');

const UNWATCHABLE = new Set(['ENOSPC', 'ENOMEM', 'EACCES', 'EPERM']);

/** Proof that a folder was unchanged from the moment it was issued; compared by identity. */
export type FolderStamp = object;

/**
 * Which folders changed since a reader last looked, from one inotify queue
 * that the reader drains synchronously (native/inotify.c) — so a reader can
 * trust what it cached without a stat per folder, and still never answer
 * with something a change completed before the drain has outdated.
 *
 * A folder's stamp is replaced on every event for it, on an overflow of the
 * queue (every stamp), and dropped when the folder moves or goes away: every
 * failure mode makes the reader read again, none makes it trust stale data.
 */
export class FolderChanges {
  private fd: number | undefined;
  private readonly byDir = new Map<string, { wd: number; stamp: FolderStamp }>();
  private readonly byWd = new Map<number, string>();

  constructor() {
    this.fd = inotify.open();
  }

  /** Apply every event queued so far. */
  sync(): void {
    if (this.fd === undefined) return;
    for (const code of inotify.drain(this.fd)) {
      if (code === 0) {
        for (const entry of this.byDir.values()) entry.stamp = {};
      } else if (code < 0) {
        // Moved or gone: a watch follows its inode, so a moved folder's watch no longer describes this path.
        const dir = this.byWd.get(-code);
        if (dir !== undefined) this.forget(dir);
      } else {
        const dir = this.byWd.get(code);
        const entry = dir === undefined ? undefined : this.byDir.get(dir);
        if (entry) entry.stamp = {};
      }
    }
  }

  /** Whether `dir` has had no event since `stamp` was issued (call sync() first). */
  unchanged(dir: string, stamp: FolderStamp | undefined): boolean {
    return stamp !== undefined && this.byDir.get(dir)?.stamp === stamp;
  }

  /**
   * Watch `dir` (if not yet) and return its current stamp: read the folder
   * after this call, and the stamp holds only while nothing changed since.
   * undefined when it cannot be watched (the watch limit, no read permission):
   * the caller checks some other way. Throws ENOENT/ENOTDIR when there is no such folder.
   */
  stamp(dir: string): FolderStamp | undefined {
    if (this.fd === undefined) return undefined;
    const known = this.byDir.get(dir);
    if (known) return known.stamp;
    let wd: number;
    try {
      wd = inotify.add(this.fd, dir);
    } catch (err) {
      // Out of watches, or a folder this reader may search but not read: the caller's stat still works.
      if (UNWATCHABLE.has((err as { code?: string }).code ?? '')) return undefined;
      throw err;
    }
    // The same inode under a new name (a pod folder renamed between lifecycle folders) keeps its wd.
    const previous = this.byWd.get(wd);
    if (previous !== undefined) this.byDir.delete(previous);
    const entry = { wd, stamp: {} };
    this.byDir.set(dir, entry);
    this.byWd.set(wd, dir);
    return entry.stamp;
  }

  /** Stop watching `dir`. */
  forget(dir: string): void {
    const entry = this.byDir.get(dir);
    if (!entry || this.fd === undefined) return;
    this.byDir.delete(dir);
    this.byWd.delete(entry.wd);
    inotify.remove(this.fd, entry.wd);
  }

  watchedCount(): number {
    return this.byDir.size;
  }

  close(): void {
    if (this.fd !== undefined) inotify.close(this.fd);
    this.fd = undefined;
    this.byDir.clear();
    this.byWd.clear();
  }
}
