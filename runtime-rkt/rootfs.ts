import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError, errnoCode } from '../common/errors.js';

/**
 * Path lookups (and the working directory's creation) inside a container
 * rootfs, done from the host. Symlinks in an image are relative to the
 * image's root, not the host's, so every link is resolved against `root` and
 * can never lead out of it (an absolute link like /bin/sh -> /bin/busybox
 * means <root>/bin/busybox).
 *
 * Synchronous on purpose: each step is an lstat of a freshly mounted local
 * overlay, microseconds in the dentry cache. Awaited one after another through
 * libuv's pool (a command looked up along PATH is ~15 of them), every step
 * waited for a pool thread and then for the event loop while the pod's CNI
 * plugins held the CPUs: ~9 ms of each pod start (bench/RESULTS.md).
 */
export function resolveInRoot(root: string, inside: string, maxLinks = 40): string | undefined {
  const parts = inside.split('/').filter((p) => p && p !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (parts.length) {
    const part = parts.shift()!;
    if (part === '..') { resolved.pop(); continue; }
    const candidate = path.join(root, ...resolved, part);
    let st;
    try {
      st = fs.lstatSync(candidate);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw err;
    }
    if (st.isSymbolicLink()) {
      if (++links > maxLinks) return undefined;
      const target = fs.readlinkSync(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      parts.unshift(...target.split('/').filter((p) => p && p !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return '/' + resolved.join('/');
}

/** Find an executable the way execvp would, inside the rootfs; returns its path inside the container. */
export function findExecutable(root: string, name: string, envPath: string): string | undefined {
  const candidates = name.includes('/') ? [name.startsWith('/') ? name : `/${name}`] : envPath.split(':').filter(Boolean).map((d) => path.posix.join(d, name));
  for (const candidate of candidates) {
    const inside = resolveInRoot(root, candidate);
    if (!inside) continue;
    const st = fs.statSync(path.join(root, inside), { throwIfNoEntry: false });
    if (st?.isFile() && (st.mode & 0o111) !== 0) return candidate;
  }
  return undefined;
}

/** Create a directory inside a rootfs without ever following a symlink out of it. */
export function mkdirInRoot(root: string, inside: string): void {
  if (resolveInRoot(root, inside)) return;
  let current = root;
  for (const part of inside.split('/').filter((p) => p && p !== '.' && p !== '..')) {
    current = path.join(current, part);
    const st = fs.lstatSync(current, { throwIfNoEntry: false });
    if (!st) fs.mkdirSync(current, { mode: 0o755 });
    else if (!st.isDirectory()) throw new UserError(`working directory ${inside} cannot be created in the image: ${current.slice(root.length)} is not a directory`);
  }
}

/** Read a small text file from inside the rootfs, or undefined if it is missing. */
export function readFileInRoot(root: string, inside: string, maxBytes = 1 << 20): string | undefined {
  const resolved = resolveInRoot(root, inside);
  if (!resolved) return undefined;
  let fd: number;
  try {
    fd = fs.openSync(path.join(root, resolved), 'r');
  } catch {
    return undefined;
  }
  try {
    // Unfilled: only the bytes read are ever looked at (zero-filling 1 MiB per read showed on the pod start path).
    const buf = Buffer.allocUnsafe(maxBytes);
    const bytesRead = fs.readSync(fd, buf, 0, maxBytes, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Resolve an image's User ("name", "uid", "uid:gid", "name:group") to numbers
 * using the image's own /etc/passwd and /etc/group, like Docker does.
 */
export function resolveUser(root: string, user: string | undefined, files?: { passwd: string; group: string }): { uid: number; gid: number } | { error: string } {
  if (!user) return { uid: 0, gid: 0 };
  const [u, g] = user.split(':', 2) as [string, string | undefined];
  const passwd = files?.passwd ?? readFileInRoot(root, '/etc/passwd') ?? '';
  const group = files?.group ?? readFileInRoot(root, '/etc/group') ?? '';
  const rows = (text: string) => text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
  let uid: number, gid: number;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    gid = Number(rows(passwd).find((r) => r[2] === u)?.[3] ?? uid);
  } else {
    const row = rows(passwd).find((r) => r[0] === u);
    if (!row) return { error: `user "${u}" is not in the image's /etc/passwd` };
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const row = rows(group).find((r) => r[0] === g);
      if (!row) return { error: `group "${g}" is not in the image's /etc/group` };
      gid = Number(row[2]);
    }
  }
  return { uid, gid };
}
