import * as fs from 'node:fs/promises';
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { podPaths, type ExitRecord, type RuntimePodManifest } from '../stage1/contract.js';
import type { FolderChanges, FolderStamp } from './folder-changes.js';

/** What a pod directory's top-level files say, as of one mtime of the directory. */
export interface PodDirSnapshot {
  /** NaN when the folder is watched instead (stamp) */
  mtimeMs: number;
  stamp?: FolderStamp;
  manifestRaw?: Buffer;
  manifest?: RuntimePodManifest;
  /** ns since epoch, as the files hold them */
  createdNs?: bigint;
  startedNs?: bigint;
  gcMarkedNs?: bigint;
  launching: boolean;
  networkRaw?: string;
}

/**
 * Only trust a snapshot whose directory has not changed for this long: file
 * timestamps are coarse (a jiffy), so two changes in one tick can share an
 * mtime — re-reading anything that recent closes that window (git's "racy
 * clean" rule).
 */
const SETTLED_MS = 1000;

async function readIfExists(file: string): Promise<Buffer | undefined> {
  return fs.readFile(file).catch(() => undefined);
}

function ns(buf: Buffer | undefined): bigint | undefined {
  const text = buf?.toString('utf8').trim();
  return text && /^\d+$/.test(text) ? BigInt(text) : undefined;
}

/**
 * A reader's cache of pod files. Every file the runtime writes into a pod
 * directory appears by creation or rename, which changes the directory's
 * mtime; exit records do the same to their folder. So one stat per folder
 * tells whether what was read before still holds. Readers that list many
 * pods often (the agent, the api-service) keep one; it never writes.
 *
 * Given a FolderChanges, the folders are watched instead (inotify, drained
 * when a listing starts — see sync()): a steady listing then makes no stat at
 * all, and a change is seen as soon as it is made, with no settling window.
 * Folders it cannot watch fall back to the stat.
 */
export class PodFileCache {
  private readonly dirs = new Map<string, PodDirSnapshot>();
  /** pod dir -> app -> its exit records as last read */
  private readonly exits = new Map<string, Map<string, ExitsSnapshot>>();

  /** performance.now() of the last drain of `changes` */
  private syncedAt = -Infinity;

  constructor(private readonly changes?: FolderChanges) {}

  /**
   * Take in the folder changes made so far. A listing calls this (through
   * retain) when it starts; podDir also does when the last time is over a
   * millisecond ago, so no caller can read from a stale view for longer.
   */
  sync(): void {
    if (!this.changes) return;
    this.changes.sync();
    this.syncedAt = performance.now();
  }

  /** The pod directory's files; throws ENOENT when the directory is gone (it may have moved). */
  async podDir(dir: string): Promise<PodDirSnapshot> {
    const cached = this.dirs.get(dir);
    if (this.changes) {
      if (performance.now() - this.syncedAt > 1) this.sync();
      if (cached && this.changes.unchanged(dir, cached.stamp)) return cached;
      const stamp = this.changes.stamp(dir); // watched before it is read: a change while reading voids the stamp
      if (stamp !== undefined) return this.remember(dir, await readPodDir(dir, NaN, stamp));
    }
    // Synchronous on purpose: a local stat takes microseconds, while a trip
    // through libuv's thread pool per pod dominated a listing of many pods.
    const st = statSync(dir);
    if (cached && cached.mtimeMs === st.mtimeMs && Date.now() - st.mtimeMs > SETTLED_MS) return cached;
    return this.remember(dir, await readPodDir(dir, st.mtimeMs, undefined));
  }

  /** An app's exit records, oldest first. */
  async exitRecords(podDir: string, app: string): Promise<ExitRecord[]> {
    let byApp = this.exits.get(podDir);
    const cached = byApp?.get(app);
    // The cached path string again (its hash is kept), else plain concatenation: this runs per app on every listing.
    const dir = cached?.dir ?? `${podDir}/apps/${app}/exits`;
    let stamp: FolderStamp | undefined;
    let mtimeMs = NaN;
    if (this.changes && this.changes.unchanged(dir, cached?.stamp)) return cached!.records;
    try {
      stamp = this.changes?.stamp(dir);
    } catch {
      return []; // no exits folder (yet): nothing to cache
    }
    if (stamp === undefined) {
      mtimeMs = statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? -1;
      if (cached && cached.mtimeMs === mtimeMs && Date.now() - mtimeMs > SETTLED_MS) return cached.records;
    }
    const records = await readExitRecords(dir);
    if (!byApp) this.exits.set(podDir, (byApp = new Map()));
    byApp.set(app, { dir, mtimeMs, stamp, records });
    return records;
  }

  /** Forget pods that are no longer where they were (moved or removed). */
  retain(liveDirs: Iterable<string>): void {
    this.sync();
    const live = liveDirs instanceof Set ? (liveDirs as Set<string>) : new Set(liveDirs);
    for (const dir of this.dirs.keys()) {
      if (live.has(dir)) continue;
      this.dirs.delete(dir);
      this.changes?.forget(dir);
    }
    for (const [podDir, byApp] of this.exits) {
      if (live.has(podDir)) continue;
      this.exits.delete(podDir);
      for (const exits of byApp.values()) this.changes?.forget(exits.dir);
    }
  }

  private remember(dir: string, snapshot: PodDirSnapshot): PodDirSnapshot {
    this.dirs.set(dir, snapshot);
    return snapshot;
  }
}

interface ExitsSnapshot {
  dir: string;
  /** NaN when the folder is watched instead */
  mtimeMs: number;
  stamp?: FolderStamp;
  records: ExitRecord[];
}

async function readPodDir(dir: string, mtimeMs: number, stamp: FolderStamp | undefined): Promise<PodDirSnapshot> {
  const paths = podPaths(dir);
  const [manifestRaw, created, started, gcMarked, launching, network] = await Promise.all([
    readIfExists(paths.manifest), readIfExists(paths.created), readIfExists(paths.started), readIfExists(paths.gcMarked),
    fs.access(paths.launching).then(() => true, () => false), readIfExists(paths.network),
  ]);
  let manifest: RuntimePodManifest | undefined;
  try {
    manifest = manifestRaw ? (JSON.parse(manifestRaw.toString('utf8')) as RuntimePodManifest) : undefined;
  } catch {
    manifest = undefined; // torn or foreign: the pod reads as having no manifest
  }
  return {
    mtimeMs, ...(stamp ? { stamp } : {}), manifestRaw, manifest, createdNs: ns(created), startedNs: ns(started), gcMarkedNs: ns(gcMarked),
    launching, networkRaw: network?.toString('utf8'),
  };
}

async function readExitRecords(dir: string): Promise<ExitRecord[]> {
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => /^\d+\.json$/.test(n));
  names.sort((a, b) => (a.length - b.length) || (a < b ? -1 : 1));
  return (await Promise.all(names.map(async (n) => {
    try {
      return JSON.parse(await fs.readFile(path.join(dir, n), 'utf8')) as ExitRecord;
    } catch {
      return undefined;
    }
  }))).filter((r): r is ExitRecord => r !== undefined);
}
