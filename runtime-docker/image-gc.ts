/**
 * The kubelet's image GC on a Docker Engine, with the same rules as
 * runtime-rkt's store (runtime-rkt/image/store.ts gc()): when the disk that
 * holds the engine's images (its DockerRootDir) is at or above `highPercent`,
 * unused images go, least recently used first, until use is at or below
 * `lowPercent`; with `minAgeMs`, unused images not used for that long go
 * whatever the disk. An image is in use when any container (running or not:
 * the engine refuses to remove those anyway) or the caller's `inUse` names
 * it; the pod infra image is always kept.
 *
 * The engine keeps no "last used" time, so, as the kubelet's image manager
 * does, each GC pass stamps the images containers use with the time it saw
 * them; the stamps persist in `stateFile` so a restart of the agent does not
 * make every image look brand new or ancient. An image never seen in use
 * counts from when this GC first saw it (the kubelet's firstDetected), and is
 * left alone for `protectNewerThanMs` after that (the kubelet's MinAge).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidInput } from '../common/errors.js';
import { EngineError, type EngineClient } from './engine-api.js';
import { PAUSE_IMAGE } from './infra.js';

export interface DockerImageGcOptions {
  /** Start removing when disk use of the engine's data root is at or above this. Default 85 (the kubelet's --image-gc-high-threshold). */
  highPercent?: number;
  /** Remove until disk use is at or below this. Default 80 (--image-gc-low-threshold). */
  lowPercent?: number;
  /** Also remove unused images not used for this long, whatever the disk. */
  minAgeMs?: number;
  /** Leave images first seen or used less than this long ago (default 2 min, the kubelet's MinAge). */
  protectNewerThanMs?: number;
  /** Image ids or names the caller knows are in use (e.g. pods about to start): never removed. */
  inUse?: Set<string>;
  /** Injected for tests; default fs.statfs of the engine's DockerRootDir. */
  statfs?: (path: string) => Promise<{ bsize: number; blocks: number; bavail: number }>;
  now?: () => number;
}

export interface DockerImageGcResult {
  removed: Array<{ id: string; names: string[]; size: number; reason: 'age' | 'disk' }>;
  /** Disk use before and after, in percent (0..100). */
  usageBefore: number;
  usageAfter: number;
  /** True when disk use stays above lowPercent because nothing more could be removed. */
  unmetTarget: boolean;
}

interface ImageSummary { Id: string; RepoTags?: string[] | null; Size: number; Created: number }
interface ContainerSummary { Image: string; ImageID: string }
/** Per image id: first seen and last seen in use (ms). */
type UseRecord = Record<string, { firstSeen: number; lastUsed?: number }>;

export async function dockerImageGc(engine: EngineClient, stateFile: string, opts: DockerImageGcOptions = {}): Promise<DockerImageGcResult> {
  const high = opts.highPercent ?? 85;
  const low = opts.lowPercent ?? 80;
  if (!(low >= 0 && high <= 100 && low <= high)) throw new InvalidInput(`image GC thresholds must satisfy 0 <= low (${low}) <= high (${high}) <= 100`);
  if (opts.minAgeMs !== undefined && !(opts.minAgeMs >= 0)) throw new InvalidInput('image GC minimum age must be >= 0');
  const protect = opts.protectNewerThanMs ?? 2 * 60_000;
  const now = (opts.now ?? Date.now)();
  const root = (await engine.call<{ DockerRootDir: string }>('GET', '/info')).DockerRootDir;
  const statfs = opts.statfs ?? (async (p: string) => {
    const s = await fs.statfs(p);
    return { bsize: Number(s.bsize), blocks: Number(s.blocks), bavail: Number(s.bavail) };
  });
  const usage = async () => {
    const s = await statfs(root);
    return s.blocks > 0 ? ((s.blocks - s.bavail) / s.blocks) * 100 : 0;
  };

  const images = await engine.call<ImageSummary[]>('GET', '/images/json');
  const containers = await engine.call<ContainerSummary[]>('GET', '/containers/json', { query: { all: 1 } });
  const records: UseRecord = JSON.parse(await fs.readFile(stateFile, 'utf8').catch(() => '{}')) as UseRecord;
  const usedByContainers = new Set(containers.map((c) => c.ImageID));
  const inUse = opts.inUse ?? new Set<string>();
  const names = (i: ImageSummary) => (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
  const used = (i: ImageSummary) => usedByContainers.has(i.Id) || inUse.has(i.Id) || names(i).some((n) => inUse.has(n) || n === PAUSE_IMAGE);
  // Stamp what is in use now; forget images the engine no longer has.
  const fresh: UseRecord = {};
  for (const i of images) {
    const r = records[i.Id] ?? { firstSeen: now };
    fresh[i.Id] = used(i) ? { ...r, lastUsed: now } : r;
  }
  await writeAtomically(stateFile, JSON.stringify(fresh));
  const lastUse = (i: ImageSummary) => fresh[i.Id]!.lastUsed ?? fresh[i.Id]!.firstSeen;

  const removed: DockerImageGcResult['removed'] = [];
  const removeOne = async (i: ImageSummary, reason: 'age' | 'disk') => {
    // By each name, then by id (as dockershim's RemoveImage): the engine refuses an id that several
    // names share. Never forced: it refuses (409) an image a container took up since we listed.
    for (const ref of [...names(i), i.Id]) {
      try {
        await engine.call('DELETE', `/images/${encodeURIComponent(ref)}`);
      } catch (err) {
        if (err instanceof EngineError && err.status === 404) continue; // the last name took the image with it
        if (err instanceof EngineError && err.status === 409) return;
        throw err;
      }
    }
    delete fresh[i.Id];
    removed.push({ id: i.Id, names: names(i), size: i.Size, reason });
  };

  const usageBefore = await usage();
  if (opts.minAgeMs !== undefined) {
    for (const i of images) if (!used(i) && now - lastUse(i) > opts.minAgeMs) await removeOne(i, 'age');
  }
  let current = await usage();
  if (current >= high) {
    const gone = new Set(removed.map((r) => r.id));
    const candidates = images
      .filter((i) => !gone.has(i.Id) && !used(i) && now - lastUse(i) >= protect)
      .sort((a, b) => lastUse(a) - lastUse(b) || a.Created - b.Created || a.Id.localeCompare(b.Id));
    for (const i of candidates) {
      if (current <= low) break;
      await removeOne(i, 'disk');
      current = await usage();
    }
  }
  await writeAtomically(stateFile, JSON.stringify(fresh));
  return { removed, usageBefore, usageAfter: current, unmetTarget: usageBefore >= high && current > low };
}

async function writeAtomically(file: string, text: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}
