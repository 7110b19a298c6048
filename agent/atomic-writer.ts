import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** Files of a volume: relative path → bytes and mode. */
export type Payload = Map<string, { data: Buffer; mode: number }>;

const DATA_LINK = '..data';
const DATA_TMP = '..data_tmp';

/** Why a payload path cannot be written (the kubelet's AtomicWriter rules), or undefined. */
export function invalidPayloadPath(p: string): string | undefined {
  if (p === '') return 'must not be empty';
  if (p.length > 4096) return 'must not be longer than 4096 characters';
  if (path.isAbsolute(p)) return 'must be a relative path';
  const parts = p.split('/');
  if (parts.some((s) => s.length > 255)) return 'must not have a path element longer than 255 characters';
  if (parts.includes('..')) return "must not contain '..'";
  if (p.startsWith('..')) return "must not start with '..'";
  return undefined;
}

function timestampDirName(now = new Date()): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `..${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}.`;
}

/** Every file under `dir`, relative, with its bytes and permission bits. */
async function readTree(dir: string, prefix = ''): Promise<Payload> {
  const out: Payload = new Map();
  for (const entry of await fs.readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) for (const [k, v] of await readTree(dir, rel)) out.set(k, v);
    else if (entry.isFile()) {
      const file = path.join(dir, rel);
      out.set(rel, { data: await fs.readFile(file), mode: (await fs.stat(file)).mode & 0o7777 });
    }
  }
  return out;
}

function samePayload(a: Payload, b: Payload): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.mode !== v.mode || !w.data.equals(v.data)) return false;
  }
  return true;
}

const topLevel = (payload: Iterable<string>) => new Set([...payload].map((p) => p.split('/')[0]!));

export interface WriteOptions {
  /** fsGroup: files and directories get this group, group-readable (directories setgid), as the kubelet's volume ownership does. */
  gid?: number;
}

/**
 * Write a volume's files the kubelet's way, so a reader never sees a half
 * update: the files go into a fresh timestamped directory, the `..data`
 * symlink is swapped to it with one rename, and each user-visible top-level
 * name is a symlink through `..data`. An unchanged payload writes nothing.
 * Returns whether anything changed.
 */
export async function writeAtomically(targetDir: string, payload: Payload, opts: WriteOptions = {}): Promise<boolean> {
  for (const p of payload.keys()) {
    const why = invalidPayloadPath(p);
    if (why) throw new Error(`invalid path ${JSON.stringify(p)}: ${why}`);
  }
  const oldTs = await fs.readlink(path.join(targetDir, DATA_LINK)).catch(() => undefined);
  const oldPayload = oldTs ? await readTree(path.join(targetDir, oldTs)).catch(() => undefined) : undefined;
  const wanted: Payload = new Map([...payload].map(([k, v]) => [k, { data: v.data, mode: opts.gid !== undefined ? v.mode | 0o040 : v.mode }]));
  if (oldPayload && samePayload(oldPayload, wanted)) return false;

  const tsDir = await fs.mkdtemp(path.join(targetDir, timestampDirName()));
  await fs.chmod(tsDir, 0o755);
  const chgrp = async (p: string) => { if (opts.gid !== undefined) await fs.lchown(p, 0, opts.gid); };
  await chgrp(tsDir);
  for (const [rel, { data, mode }] of wanted) {
    const file = path.join(tsDir, rel);
    const parent = path.dirname(file);
    if (parent !== tsDir) {
      await fs.mkdir(parent, { recursive: true, mode: 0o755 });
      for (let d = parent; d !== tsDir; d = path.dirname(d)) {
        await chgrp(d);
        if (opts.gid !== undefined) await fs.chmod(d, 0o2755);
      }
    }
    await fs.writeFile(file, data, { mode });
    await fs.chmod(file, mode); // the umask must not narrow defaultMode/items[].mode
    await chgrp(file);
  }
  // One rename swaps every file at once.
  const tmpLink = path.join(targetDir, DATA_TMP);
  await fs.rm(tmpLink, { force: true });
  await fs.symlink(path.basename(tsDir), tmpLink);
  await fs.rename(tmpLink, path.join(targetDir, DATA_LINK));

  const newTop = topLevel(wanted.keys());
  for (const name of newTop) {
    const link = path.join(targetDir, name);
    const current = await fs.readlink(link).catch(() => undefined);
    if (current !== path.join(DATA_LINK, name)) {
      await fs.rm(link, { force: true, recursive: true });
      await fs.symlink(path.join(DATA_LINK, name), link);
    }
  }
  for (const name of topLevel(oldPayload?.keys() ?? [])) {
    if (!newTop.has(name)) await fs.rm(path.join(targetDir, name), { force: true });
  }
  if (oldTs && oldTs !== path.basename(tsDir)) await fs.rm(path.join(targetDir, oldTs), { recursive: true, force: true });
  return true;
}
