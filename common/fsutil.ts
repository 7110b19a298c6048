import { loadAddon } from './native.js';
import * as fs from 'node:fs/promises';
import { openSync, closeSync, fsync, renameSync, rmSync, writeFileSync, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoCode } from './errors.js';

interface FlockAddon {
  flock(fd: number, op: number): number;
  LOCK_SH: number; LOCK_EX: number; LOCK_NB: number; LOCK_UN: number; EWOULDBLOCK: number;
}
const addon: FlockAddon = loadAddon('flock');

/**
 * Where a file's next content is written before it is renamed (or linked) into place: a hidden, unique
 * sibling, `.NAME.<8 hex>.tmp`, the one pattern that GC of a killed writer's leftovers looks for (cni forget()).
 */
export function tempSiblingOf(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Write a file so that readers see either the old or the new content, never a
 * torn one, even across a crash: write a temporary sibling, fsync, rename.
 */
export async function atomicWrite(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = tempSiblingOf(file);
  const handle = await fs.open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Replace a file atomically (readers see the old or the new content) but
 * without fsync: for files that are written again before every use, such as
 * the files a unit reads that are rewritten at each launch (a transient unit
 * does not outlive a crash of the node, so a lost write is never read). An
 * fsync costs ~2 ms here, on the pod start path.
 */
export async function replaceFile(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = tempSiblingOf(file);
  await fs.writeFile(tmp, data, { mode, flag: 'wx' });
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * replaceFile, synchronously: for the small files of a pod
 * directory written on the pod start path, where each round trip through
 * libuv's pool waits behind the CNI plugins and systemd for a thread and then
 * for the loop (milliseconds), and the write itself is microseconds of page
 * cache. Made durable, where that matters, by fsyncFile off the start path.
 */
export function replaceFileSync(file: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = tempSiblingOf(file);
  writeFileSync(tmp, data, { mode, flag: 'wx' });
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * fsync a file already written. It is opened now, so the file may be renamed
 * (its pod directory moved) while the fsync runs on the pool.
 */
export function fsyncFile(file: string): Promise<void> {
  const fd = openSync(file, 'r');
  return new Promise((resolve, reject) => fsync(fd, (err) => {
    closeSync(fd);
    if (err) reject(err);
    else resolve();
  }));
}

export async function atomicWriteJson(file: string, value: unknown): Promise<void> {
  await atomicWrite(file, JSON.stringify(value, null, 2) + '\n');
}

export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

export async function readJsonIfExists<T>(file: string): Promise<T | undefined> {
  try {
    return await readJson<T>(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** A directory's entry names; a directory that does not exist has none. Other errors are thrown. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/**
 * An flock(2) on a file or directory. The kernel drops it when the holder
 * dies, which is what lets a later command tell a pod being prepared right
 * now from one whose preparer was killed.
 */
export class FileLock {
  private constructor(private fd: number | undefined, readonly target: string) {}

  /** Take the lock, or return undefined if someone else holds it (non-blocking). */
  static tryAcquire(target: string, mode: 'exclusive' | 'shared' = 'exclusive'): FileLock | undefined {
    const fd = openSync(target, fsc.O_RDONLY);
    const op = (mode === 'exclusive' ? addon.LOCK_EX : addon.LOCK_SH) | addon.LOCK_NB;
    const rc = addon.flock(fd, op);
    if (rc === 0) return new FileLock(fd, target);
    closeSync(fd);
    if (rc === addon.EWOULDBLOCK) return undefined;
    throw new Error(`flock ${target} failed with errno ${rc}`);
  }

  /** Take the lock, waiting (polling) up to timeoutMs. */
  static async acquire(target: string, mode: 'exclusive' | 'shared' = 'exclusive', timeoutMs = 30_000): Promise<FileLock> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      const lock = FileLock.tryAcquire(target, mode);
      if (lock) return lock;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the lock on ${target}`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** True when nobody holds an exclusive lock on target right now. */
  static isFree(target: string): boolean {
    const probe = FileLock.tryAcquire(target, 'shared');
    probe?.release();
    return probe !== undefined;
  }

  release(): void {
    if (this.fd === undefined) return;
    addon.flock(this.fd, addon.LOCK_UN);
    closeSync(this.fd);
    this.fd = undefined;
  }
}
