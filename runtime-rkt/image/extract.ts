/**
 * Unpacks one image layer (a tar, gzip'd or not) into its own directory tree,
 * in the form overlayfs wants for a lowerdir: OCI whiteouts become overlayfs
 * whiteouts (`.wh.NAME` -> 0/0 char device NAME, `.wh..wh..opq` -> xattr
 * trusted.overlay.opaque=y on the directory).
 *
 * This is a security boundary: a layer is untrusted input, and extraction
 * runs as root. The rules that keep every write inside `target`:
 *  - entry names are normalised lexically; a `..` that climbs above the root
 *    is refused (a leading `/` is read as relative to the root, as tar does);
 *  - every parent component is checked with lstat and must be a real
 *    directory: a symlink (absolute or relative, wherever it points) in a
 *    parent position is refused, so nothing is ever written *through* a link;
 *  - the final component is never followed: an existing entry is unlinked
 *    first, files are created O_CREAT|O_EXCL|O_NOFOLLOW, metadata is set on
 *    the open fd (fchown/fchmod/futimes) or with the l* calls;
 *  - hardlink targets go through the same normalisation and parent checks,
 *    and must already exist in this layer's tree;
 *  - device nodes and FIFOs are refused unless the caller allows devices;
 *  - the uncompressed size, the entry count and each extension header's size
 *    are capped (limits.ts) before the bytes are written or buffered.
 * The tree is private to the extractor until it is complete (the store
 * extracts into its tmp/ and renames), so there is no concurrent writer that
 * could swap a checked directory for a symlink between check and use.
 * On any error the partial tree is removed.
 */
import * as fs from 'node:fs/promises';
import { constants as fsc, createReadStream } from 'node:fs';
import * as path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LayerDecompressor } from './decompress.js';
import * as tar from 'tar-stream';
import { InvalidInput, UserError, errnoCode } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import { fsops } from '../../common/fsops.js';
import { StreamSha256 } from './sha256.js';
import { DEFAULT_IMAGE_LIMITS, ImageLimitError, cappedTarExtract, describeLimit, type ImageBudget, type ImageLimits } from '../../runtime-api/image-limits.js';

export interface ExtractOptions {
  /** Allow character/block devices and FIFOs in the layer. Default false. */
  allowDevices?: boolean;
  /** `sha256:<hex>` the uncompressed tar must hash to (the config's rootfs.diff_ids entry). */
  diffId?: string;
  log?: Logger;
  /** Caps on uncompressed size, entry count and extension header size (limits.ts); default DEFAULT_IMAGE_LIMITS. */
  limits?: ImageLimits;
  /** The image-wide uncompressed budget this layer draws from, when it is one of an image's. */
  budget?: ImageBudget;
}

export const OPAQUE_XATTR = 'trusted.overlay.opaque';
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

export type Compression = 'gzip' | 'zstd' | 'none';

/** Sniff the compression of a layer blob from its magic bytes; refuse what we cannot read. */
export async function sniffCompression(file: string, layerDigest: string): Promise<Compression> {
  const handle = await fs.open(file, 'r');
  const magic = Buffer.alloc(6);
  try {
    await handle.read(magic, 0, 6, 0);
  } finally {
    await handle.close();
  }
  return compressionOf(magic, layerDigest);
}

/** The compression the first bytes of a layer show. */
export function compressionOf(magic: Buffer, layerDigest: string): Compression {
  if (magic[0] === 0x1f && magic[1] === 0x8b) return 'gzip';
  const hex = magic.toString('hex');
  if (hex.startsWith('28b52ffd')) return 'zstd';
  if (hex.startsWith('fd377a585a00') || hex.startsWith('425a68')) throw new InvalidInput(`layer ${layerDigest} is xz/bzip2-compressed, which OCI images do not allow`, 'use gzip or uncompressed layers');
  return 'none';
}

/** Unpack the layer at `blobPath` into `target` (which must not exist yet). */
export async function extractLayer(blobPath: string, target: string, layerDigest: string, opts: ExtractOptions = {}): Promise<void> {
  const compression = await sniffCompression(blobPath, layerDigest);
  await unpackInto(target, layerDigest, opts, (ctx) => unpack(ctx, createReadStream(blobPath, { highWaterMark: IO_CHUNK }), compression));
}

/**
 * Unpack a layer while it is still arriving: `source` yields the blob's bytes
 * in order (a pull tees its download into it). Same rules and checks as
 * extractLayer; the caller must still verify the blob's digest, and the
 * diff_id check here is over exactly the bytes unpacked.
 */
export async function extractLayerStream(source: Readable, target: string, layerDigest: string, opts: ExtractOptions = {}): Promise<void> {
  const head = await firstBytes(source, 6);
  const compression = compressionOf(head.magic, layerDigest);
  await unpackInto(target, layerDigest, opts, (ctx) => unpack(ctx, head.stream, compression));
}

/** The first `n` bytes of a stream (or fewer, at its end), and a stream that still yields everything. */
async function firstBytes(source: Readable, n: number): Promise<{ magic: Buffer; stream: Readable }> {
  const seen: Buffer[] = [];
  let have = 0;
  while (have < n) {
    const chunk = source.read() as Buffer | null;
    if (chunk !== null) {
      seen.push(chunk);
      have += chunk.length;
      continue;
    }
    if (source.readableEnded || source.destroyed) break;
    await new Promise<void>((resolve) => {
      const done = () => {
        source.off('readable', done);
        source.off('end', done);
        source.off('close', done);
        resolve();
      };
      source.on('readable', done);
      source.on('end', done);
      source.on('close', done);
    });
  }
  if (source.errored) throw source.errored;
  for (let i = seen.length - 1; i >= 0; i--) source.unshift(seen[i]!);
  return { magic: Buffer.concat(seen).subarray(0, n), stream: source };
}

async function unpackInto(target: string, layerDigest: string, opts: ExtractOptions, run: (ctx: Ctx) => Promise<string>): Promise<void> {
  const log = opts.log ?? createLogger('image-extract');
  await fs.mkdir(target, { mode: 0o755 });
  const ctx: Ctx = {
    root: target, digest: layerDigest, allowDevices: opts.allowDevices ?? false, dirTimes: new Map(), log,
    limits: opts.limits ?? DEFAULT_IMAGE_LIMITS, budget: opts.budget, bytes: 0, entries: 0,
  };
  try {
    const diff = await run(ctx);
    if (opts.diffId !== undefined && diff !== opts.diffId) {
      throw new InvalidInput(
        `layer ${layerDigest}: uncompressed content is ${diff}, but the image config says ${opts.diffId}`,
        'the image is corrupt or was tampered with; re-export it from its source',
      );
    }
    // Directory mtimes last, deepest first: creating children bumps a parent's mtime.
    const dirs = [...ctx.dirTimes].sort((a, b) => b[0].length - a[0].length);
    for (const [dir, mtime] of dirs) await fs.lutimes(dir, mtime, mtime);
  } catch (err) {
    ctx.budget?.giveBack(ctx.bytes);
    await fs.rm(target, { recursive: true, force: true });
    throw err;
  }
}

interface Ctx {
  root: string;
  digest: string;
  allowDevices: boolean;
  /** Absolute dir path -> mtime to set once the layer is complete. */
  dirTimes: Map<string, Date>;
  log: Logger;
  limits: Readonly<ImageLimits>;
  budget: ImageBudget | undefined;
  /** Uncompressed bytes and entries seen so far. */
  bytes: number;
  entries: number;
}

/** Stream blob -> (gunzip or zstd) -> hash -> tar parser, applying entries one at a time. Returns the diff id. */
const IO_CHUNK = 1 << 20;

async function unpack(ctx: Ctx, source: Readable, compression: Compression): Promise<string> {
  const hash = new StreamSha256();
  let firstError: unknown;
  const { maxLayerBytes, maxLayerEntries, maxTarHeaderBytes } = ctx.limits;
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      // Counted before anything downstream sees the bytes: the decompressor decodes no further ahead than this asks.
      ctx.bytes += chunk.length;
      try {
        if (ctx.bytes > maxLayerBytes) {
          throw new ImageLimitError('maxLayerBytes', `layer ${ctx.digest} expands to more than ${describeLimit('maxLayerBytes', maxLayerBytes)} uncompressed`);
        }
        ctx.budget?.take(chunk.length, ctx.digest);
      } catch (err) {
        firstError ??= err;
        cb(err as Error);
        return;
      }
      const backlog = hash.update(chunk);
      if (backlog) backlog.then(() => cb(null, chunk), cb);
      else cb(null, chunk);
    },
  });
  const extract = cappedTarExtract(maxTarHeaderBytes, (size, type) => {
    firstError ??= new ImageLimitError('maxTarHeaderBytes', `layer ${ctx.digest} has a ${type} header of ${size} bytes, more than ${describeLimit('maxTarHeaderBytes', maxTarHeaderBytes)}`);
    return firstError as Error;
  });
  extract.on('entry', (header, stream, next) => {
    if (++ctx.entries > maxLayerEntries) {
      firstError ??= new ImageLimitError('maxLayerEntries', `layer ${ctx.digest} has more than ${describeLimit('maxLayerEntries', maxLayerEntries)} entries`);
      stream.resume();
      next(firstError as Error);
      return;
    }
    applyEntry(ctx, header, stream).then(
      () => {
        stream.resume(); // drain whatever an entry type did not read
        next();
      },
      (err: unknown) => {
        // Filesystem errors on odd-but-not-hostile entries still name the layer and entry.
        firstError ??= err instanceof UserError ? err : new UserError(`layer ${ctx.digest}: cannot unpack entry ${JSON.stringify(header.name)}: ${(err as Error).message}`, { cause: err });
        next(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
  // Chunks of up to 1 MiB (LayerDecompressor's, or the source's): every chunk costs a hash update, a tar-stream slice and an awaited write.
  const stages: NodeJS.ReadWriteStream[] = compression === 'none' ? [hasher] : [new LayerDecompressor(compression), hasher];
  try {
    await pipeline([source, ...stages, extract as unknown as NodeJS.WritableStream]);
  } catch (err) {
    if (firstError !== undefined) throw firstError;
    throw new InvalidInput(`layer ${ctx.digest} is not a readable tar archive: ${(err as Error).message}`, 'the image is corrupt; re-export it from its source');
  }
  if (firstError !== undefined) throw firstError;
  return hash.digest();
}

function refuse(ctx: Ctx, entry: string, why: string): InvalidInput {
  return new InvalidInput(
    `layer ${ctx.digest}: refusing entry ${JSON.stringify(entry)}: ${why}`,
    'the image contains a layer that would write outside its own tree or create device nodes; do not run it, or rebuild it',
  );
}

/**
 * Lexically normalise a tar path to a relative one ('' is the root itself),
 * refusing any `..` that would climb above the root.
 */
export function normaliseEntryPath(name: string): string | undefined {
  if (name.includes('\0')) return undefined;
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out.join('/');
}

async function lstatOrUndefined(p: string) {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Make sure every parent of `rel` is a real directory inside the root,
 * creating missing ones (0755 root:root, like docker). Never follows a link.
 */
async function ensureParents(ctx: Ctx, entry: string, rel: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let cur = ctx.root;
  for (const part of parts) {
    cur = path.join(cur, part);
    const st = await lstatOrUndefined(cur);
    if (st === undefined) {
      await fs.mkdir(cur, { mode: 0o755 });
      continue;
    }
    if (st.isSymbolicLink()) throw refuse(ctx, entry, `parent ${JSON.stringify(path.relative(ctx.root, cur))} is a symlink, and writing through it could leave the layer`);
    if (!st.isDirectory()) throw refuse(ctx, entry, `parent ${JSON.stringify(path.relative(ctx.root, cur))} is not a directory`);
  }
}

/** Remove whatever is at abs (without following it), so the entry can be created fresh. */
async function clearPath(abs: string, keepDir: boolean): Promise<'dir-kept' | 'clear'> {
  const st = await lstatOrUndefined(abs);
  if (st === undefined) return 'clear';
  if (st.isDirectory()) {
    if (keepDir) return 'dir-kept';
    await fs.rm(abs, { recursive: true }); // rm never follows symlinks inside the tree
    return 'clear';
  }
  await fs.unlink(abs);
  return 'clear';
}

const asRoot = process.getuid?.() === 0;

/** chown that tolerates EPERM when we are not root (tests, rootless): ownership is then ours. */
async function tolerantChown(op: () => Promise<void>): Promise<void> {
  try {
    await op();
  } catch (err) {
    if (!asRoot && errnoCode(err) === 'EPERM') return;
    throw err;
  }
}

async function applyEntry(ctx: Ctx, header: tar.Header, stream: AsyncIterable<unknown>): Promise<void> {
  const entry = header.name;
  const rel = normaliseEntryPath(entry);
  if (rel === undefined) throw refuse(ctx, entry, 'its path climbs out of the layer root with ".."');
  const base = path.posix.basename(rel);
  const type = header.type ?? 'file';
  const mode = (header.mode ?? 0o644) & 0o7777;
  const uid = header.uid ?? 0;
  const gid = header.gid ?? 0;
  const mtime = header.mtime ?? new Date(0);

  if (base.startsWith(WHITEOUT_PREFIX)) return applyWhiteout(ctx, entry, rel, base);

  if (rel === '') {
    // The root entry ("./"): only its metadata applies.
    if (type !== 'directory') throw refuse(ctx, entry, 'the layer root must be a directory');
    await setDirMeta(ctx, ctx.root, mode, uid, gid, mtime);
    return;
  }
  const abs = path.join(ctx.root, rel);
  await ensureParents(ctx, entry, rel);

  switch (type) {
    case 'directory': {
      if ((await clearPath(abs, true)) === 'clear') await fs.mkdir(abs, { mode: 0o700 });
      await setDirMeta(ctx, abs, mode, uid, gid, mtime);
      return;
    }
    case 'file':
    case 'contiguous-file': {
      await clearPath(abs, false);
      const handle = await fs.open(abs, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      try {
        for await (const chunk of stream) await handle.write(chunk as Uint8Array); // tar-stream yields Buffers
        await tolerantChown(() => handle.chown(uid, gid));
        await handle.chmod(mode); // after chown, which would clear setuid/setgid
        await handle.utimes(mtime, mtime);
      } finally {
        await handle.close();
      }
      return;
    }
    case 'symlink': {
      const target = header.linkname ?? '';
      // Any target is legal (e.g. /bin/sh -> /bin/busybox): we never follow it.
      if (target === '' || target.includes('\0')) throw refuse(ctx, entry, 'symlink has an empty or invalid target');
      await clearPath(abs, false);
      await fs.symlink(target, abs);
      await tolerantChown(() => fs.lchown(abs, uid, gid));
      await fs.lutimes(abs, mtime, mtime);
      return;
    }
    case 'link': {
      const linkname = header.linkname ?? '';
      const targetRel = normaliseEntryPath(linkname);
      if (targetRel === undefined || targetRel === '') throw refuse(ctx, entry, `hardlink target ${JSON.stringify(linkname)} is outside the layer`);
      await checkExistingParents(ctx, entry, targetRel);
      const targetAbs = path.join(ctx.root, targetRel);
      const st = await lstatOrUndefined(targetAbs);
      if (st === undefined) throw refuse(ctx, entry, `hardlink target ${JSON.stringify(linkname)} does not exist earlier in this layer`);
      if (st.isDirectory()) throw refuse(ctx, entry, `hardlink target ${JSON.stringify(linkname)} is a directory`);
      if (targetRel === rel) return;
      await clearPath(abs, false);
      await fs.link(targetAbs, abs); // link(2) does not follow a symlink at targetAbs
      return;
    }
    case 'character-device':
    case 'block-device':
    case 'fifo': {
      if (!ctx.allowDevices) throw refuse(ctx, entry, `${type} entries are not allowed (import with allowDevices for privileged images)`);
      const kind = type === 'character-device' ? fsops.S_IFCHR : type === 'block-device' ? fsops.S_IFBLK : fsops.S_IFIFO;
      await clearPath(abs, false);
      fsops.mknod(abs, kind | mode, type === 'fifo' ? 0 : fsops.makedev(header.devmajor ?? 0, header.devminor ?? 0));
      await tolerantChown(() => fs.lchown(abs, uid, gid));
      // mknod applied the umask; chmod is safe here because abs is the node
      // we just created in a tree no one else writes (it is not a symlink).
      await fs.chmod(abs, mode);
      await fs.lutimes(abs, mtime, mtime);
      return;
    }
    default:
      // Unknown or extension entry types carry nothing we can place safely; skip them.
      ctx.log.warn({ layer: ctx.digest, entry, type }, 'skipping tar entry of unsupported type');
  }
}

/** Like ensureParents, but for a path that must already exist (hardlink targets): creates nothing. */
async function checkExistingParents(ctx: Ctx, entry: string, rel: string): Promise<void> {
  let cur = ctx.root;
  for (const part of rel.split('/').slice(0, -1)) {
    cur = path.join(cur, part);
    const st = await lstatOrUndefined(cur);
    if (st === undefined) return; // the caller's lstat of the target reports it missing
    if (!st.isDirectory()) throw refuse(ctx, entry, `hardlink target goes through ${JSON.stringify(path.relative(ctx.root, cur))}, which is not a real directory`);
  }
}

/** Set a directory's owner and mode through an O_NOFOLLOW fd; its mtime is set at the end. */
async function setDirMeta(ctx: Ctx, abs: string, mode: number, uid: number, gid: number, mtime: Date): Promise<void> {
  const handle = await fs.open(abs, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
  try {
    await tolerantChown(() => handle.chown(uid, gid));
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
  ctx.dirTimes.set(abs, mtime);
}

async function applyWhiteout(ctx: Ctx, entry: string, rel: string, base: string): Promise<void> {
  const parentRel = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
  const parentAbs = path.join(ctx.root, parentRel);
  if (base === OPAQUE_MARKER) {
    // The directory's own entry may come before or after the marker; create it if needed.
    if (parentRel !== '') {
      await ensureParents(ctx, entry, parentRel);
      const st = await lstatOrUndefined(parentAbs);
      if (st === undefined) await fs.mkdir(parentAbs, { mode: 0o755 });
      else if (!st.isDirectory()) throw refuse(ctx, entry, 'opaque marker inside something that is not a directory');
    }
    fsops.lsetxattr(parentAbs, OPAQUE_XATTR, 'y');
    return;
  }
  if (base.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) {
    ctx.log.debug({ layer: ctx.digest, entry }, 'skipping aufs metadata entry');
    return;
  }
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..') throw refuse(ctx, entry, 'whiteout of an invalid name');
  const targetRel = parentRel === '' ? name : `${parentRel}/${name}`;
  await ensureParents(ctx, entry, targetRel);
  const abs = path.join(ctx.root, targetRel);
  await clearPath(abs, false);
  fsops.mknod(abs, fsops.S_IFCHR, fsops.makedev(0, 0));
}
