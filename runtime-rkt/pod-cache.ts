import * as fs from 'node:fs/promises';
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { podPaths, type ExitRecord, type RuntimePodManifest } from '../stage1/contract.js';

/** What a pod directory's top-level files say, as of one mtime of the directory. */
export interface PodDirSnapshot {
  mtimeMs: number;
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
 */
export class PodFileCache {
  private readonly dirs = new Map<string, PodDirSnapshot>();
  private readonly exits = new Map<string, { mtimeMs: number; records: ExitRecord[] }>();

  /** The pod directory's files; throws ENOENT when the directory is gone (it may have moved). */
  async podDir(dir: string): Promise<PodDirSnapshot> {
    // Synchronous on purpose: a local stat takes microseconds, while a trip
    // through libuv's thread pool per pod dominated a listing of many pods.
    const st = statSync(dir);
    const cached = this.dirs.get(dir);
    if (cached && cached.mtimeMs === st.mtimeMs && Date.now() - st.mtimeMs > SETTLED_MS) return cached;
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
    const snapshot: PodDirSnapshot = {
      mtimeMs: st.mtimeMs, manifestRaw, manifest, createdNs: ns(created), startedNs: ns(started), gcMarkedNs: ns(gcMarked),
      launching, networkRaw: network?.toString('utf8'),
    };
    this.dirs.set(dir, snapshot);
    return snapshot;
  }

  /** An app's exit records, oldest first. */
  async exitRecords(podDir: string, app: string): Promise<ExitRecord[]> {
    // Plain concatenation, not podPaths(): this runs per app on every listing. podDir is absolute and normalized.
    const dir = `${podDir}/apps/${app}/exits`;
    const mtimeMs = statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? -1;
    const cached = this.exits.get(dir);
    if (cached && cached.mtimeMs === mtimeMs && Date.now() - mtimeMs > SETTLED_MS) return cached.records;
    const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => /^\d+\.json$/.test(n));
    names.sort((a, b) => (a.length - b.length) || (a < b ? -1 : 1));
    const records = (await Promise.all(names.map(async (n) => {
      try {
        return JSON.parse(await fs.readFile(path.join(dir, n), 'utf8')) as ExitRecord;
      } catch {
        return undefined;
      }
    }))).filter((r): r is ExitRecord => r !== undefined);
    this.exits.set(dir, { mtimeMs, records });
    return records;
  }

  /** Forget pods that are no longer where they were (moved or removed). */
  retain(liveDirs: Iterable<string>): void {
    const live = new Set(liveDirs);
    for (const dir of this.dirs.keys()) if (!live.has(dir)) this.dirs.delete(dir);
    for (const dir of this.exits.keys()) if (!live.has(path.dirname(path.dirname(path.dirname(dir))))) this.exits.delete(dir);
  }
}
