import * as fs from 'node:fs/promises';
import { chmodSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { FileLock, exists } from '../common/fsutil.js';
import { InvalidInput, PodNotFound, errnoCode } from '../common/errors.js';

/**
 * Pod lifecycle on disk, after rkt: a pod directory lives in exactly one of
 * these folders and moves between them only by rename(2), which is atomic, so
 * a crash at any instant leaves the pod in one well-defined state.
 *
 *   embryo → prepare → prepared → run → exited-garbage → (deleted)
 *                 ↘ garbage (aborted prepare) → (deleted)
 *
 * Whoever works on a pod holds an flock on its directory; a pod in embryo or
 * prepare whose directory nobody has locked was abandoned by a killed process.
 */
export const POD_DIR_STATES = ['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage'] as const;
export type PodDirState = (typeof POD_DIR_STATES)[number];

export interface PodLocation {
  uuid: string;
  state: PodDirState;
  dir: string;
}

/** A pod folder: rwx for root, rx for the folder's group (the node-state readers' when there is one), nothing for others. */
export const POD_DIR_MODE = 0o750;
const NEW_PREFIX = '.new-';
const STALE_NEW_EMBRYO_MS = 60_000;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isPodUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/**
 * Lock a pod directory if nobody holds it; undefined when it is held — or
 * gone, since another process may rename or remove it at any moment.
 */
export function tryLock(dir: string): FileLock | undefined {
  try {
    return FileLock.tryAcquire(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

export class PodStore {
  /** The locations the last full listing returned, handed out again while they hold: listings run often. */
  private known = new Map<string, PodLocation>();

  constructor(readonly root: string) {}

  async init(): Promise<void> {
    await Promise.all(POD_DIR_STATES.map((s) => fs.mkdir(path.join(this.root, s), { recursive: true, mode: 0o711 })));
  }

  dirOf(uuid: string, state: PodDirState): string {
    return path.join(this.root, state, uuid);
  }

  /**
   * Create a fresh pod directory in embryo, already locked: it is made and
   * locked under a hidden name and only then renamed into view, so nobody
   * ever sees an embryo that is unlocked because it is new (and would take it
   * for an abandoned one).
   */
  async createEmbryo(): Promise<{ location: PodLocation; lock: FileLock }> {
    const uuid = randomUUID();
    const hidden = path.join(this.root, 'embryo', `${NEW_PREFIX}${uuid}`);
    // Closed to others: pod.json, exit records and the apps' root filesystems
    // are under it. Where the lifecycle folders are setgid to the node-state
    // group (`api-service install`), the pod folder takes that group, so the
    // api-service may read it; chmod drops the setgid bit mkdir copied, so the
    // group goes no deeper than this folder (not into the apps' rootfs).
    // Synchronous, as move(): a pod start's metadata operations on the node's own disk take microseconds, the
    // round trips through libuv's pool milliseconds while CNI plugins and systemd hold the CPUs.
    mkdirSync(hidden, { mode: POD_DIR_MODE });
    chmodSync(hidden, POD_DIR_MODE);
    // Wait briefly: a reader may be probing it with a momentary shared lock.
    const lock = await FileLock.acquire(hidden, 'exclusive', 2000);
    const dir = this.dirOf(uuid, 'embryo');
    renameSync(hidden, dir);
    return { location: { uuid, state: 'embryo', dir }, lock };
  }

  /**
   * Remove hidden embryos whose creator died between mkdir and rename. Only
   * old ones: a young one may be between another process's mkdir and flock.
   */
  async removeStaleNewEmbryos(): Promise<void> {
    const dir = path.join(this.root, 'embryo');
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (!name.startsWith(NEW_PREFIX)) continue;
      const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < STALE_NEW_EMBRYO_MS) continue;
      const lock = tryLock(path.join(dir, name));
      if (!lock) continue;
      await fs.rm(path.join(dir, name), { recursive: true, force: true });
      lock.release();
    }
  }

  /** Move a pod to another lifecycle folder; the flock travels with the directory. */
  async move(loc: PodLocation, to: PodDirState): Promise<PodLocation> {
    const dir = this.dirOf(loc.uuid, to);
    renameSync(loc.dir, dir);
    return { uuid: loc.uuid, state: to, dir };
  }

  async list(states: readonly PodDirState[] = POD_DIR_STATES): Promise<PodLocation[]> {
    const out: PodLocation[] = [];
    for (const state of states) {
      let names: string[] = [];
      try {
        // Synchronous on purpose: six awaited thread-pool round trips cost more than the reads of six
        // small local folders, and on a busy node each hop can wait milliseconds (api-service p99).
        names = readdirSync(path.join(this.root, state));
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
      for (const uuid of names) {
        const seen = this.known.get(uuid);
        if (seen?.state === state) out.push(seen);
        else if (isPodUuid(uuid)) out.push({ uuid, state, dir: this.dirOf(uuid, state) });
      }
    }
    if (states === POD_DIR_STATES) this.known = new Map(out.map((l) => [l.uuid, l]));
    return out;
  }

  /**
   * Find a pod by UUID or unique UUID prefix. A pod can be seen in two folders
   * for an instant while it is renamed; retry once in that case.
   */
  async find(ref: string): Promise<PodLocation> {
    if (!/^[0-9a-f-]{1,36}$/.test(ref)) throw new InvalidInput(`"${ref}" is not a pod UUID`, 'pass the UUID `stevedore pod list` shows (a unique prefix is enough)');
    for (let attempt = 0; attempt < 3; attempt++) {
      const matches = (await this.list()).filter((p) => p.uuid.startsWith(ref));
      const uuids = new Set(matches.map((m) => m.uuid));
      if (uuids.size > 1) throw new InvalidInput(`pod prefix "${ref}" is ambiguous: it matches ${[...uuids].join(', ')}`);
      const [match] = matches;
      if (match && (await exists(match.dir))) return match;
      if (!match) break;
    }
    throw new PodNotFound(ref);
  }
}
