/**
 * Import sources: a directory (OCI image layout, or an unpacked docker save)
 * or a tar of either, optionally gzip'd. A tar is spooled once into the
 * import's staging directory so the importer can read index.json /
 * manifest.json before the blobs they name (tars are sequential); the
 * spooled blob files are then moved, not copied, into the store.
 *
 * The archive is untrusted: only regular files and directories are written,
 * under names normalised like layer entries (no `..` above the root), into a
 * tree that never contains symlinks. Symlinks and hardlinks in the archive
 * (docker save uses them to share identical layer.tar files) are kept as
 * aliases and resolved lexically inside the archive by `resolve()`.
 */
import * as fs from 'node:fs/promises';
import { createReadStream, constants as fsc } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { InvalidInput, UserError, errnoCode } from '../../common/errors.js';
import { normaliseEntryPath } from './extract.js';
import { DEFAULT_IMAGE_LIMITS, ImageLimitError, cappedTarExtract, describeLimit, type ImageLimits } from '../../runtime-api/image-limits.js';

export type SourceKind = 'oci' | 'docker';

export interface SourceTree {
  kind: SourceKind;
  /** True when files under the tree are our own spooled copies (they may be moved). */
  spooled: boolean;
  /** Absolute path of a file named by an archive-relative path, or undefined if absent. */
  resolve(rel: string): Promise<string | undefined>;
}

export async function openSource(source: string, spoolDir: string, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<SourceTree> {
  let st;
  try {
    st = await fs.stat(source);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new InvalidInput(`image source ${source} does not exist`);
    throw err;
  }
  if (st.isDirectory()) return dirSource(path.resolve(source));
  if (!st.isFile()) throw new InvalidInput(`image source ${source} is neither a directory nor a file`);
  await spoolTar(source, spoolDir, limits);
  return treeSource(spoolDir, await readAliases(spoolDir), source);
}

async function detectKind(resolve: (rel: string) => Promise<string | undefined>, source: string): Promise<SourceKind> {
  // docker >= 25 writes both; the OCI side keeps the real manifests, so prefer it.
  if ((await resolve('oci-layout')) !== undefined && (await resolve('index.json')) !== undefined) return 'oci';
  if ((await resolve('manifest.json')) !== undefined) return 'docker';
  throw new InvalidInput(
    `${source} is not an OCI image layout or a docker-archive`,
    'expected oci-layout + index.json + blobs/ (OCI) or manifest.json (docker save)',
  );
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return false;
    throw err;
  }
}

async function dirSource(root: string): Promise<SourceTree> {
  // The directory is the user's own (they named it); we only read it, but
  // still refuse names that climb out of it.
  const resolve = async (rel: string) => {
    const norm = normaliseEntryPath(rel);
    if (norm === undefined || norm === '') return undefined;
    const p = path.join(root, norm);
    return (await isFile(p)) ? p : undefined;
  };
  return { kind: await detectKind(resolve, root), spooled: false, resolve };
}

const ALIASES = '.stevedore-aliases.json';

async function readAliases(dir: string): Promise<Map<string, string>> {
  return new Map(Object.entries(JSON.parse(await fs.readFile(path.join(dir, ALIASES), 'utf8')) as Record<string, string>));
}

async function treeSource(root: string, aliases: Map<string, string>, source: string): Promise<SourceTree> {
  const resolve = async (rel: string) => {
    let norm = normaliseEntryPath(rel);
    // Follow archive-internal links a bounded number of times (cycles).
    for (let hops = 0; norm !== undefined && norm !== '' && hops < 16; hops++) {
      const alias = aliases.get(norm);
      if (alias === undefined) {
        const p = path.join(root, 'files', norm);
        return (await isFile(p)) ? p : undefined;
      }
      norm = normaliseEntryPath(alias);
    }
    return undefined;
  };
  return { kind: await detectKind(resolve, source), spooled: true, resolve };
}

async function gzipped(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const magic = Buffer.alloc(2);
    await handle.read(magic, 0, 2, 0);
    return magic[0] === 0x1f && magic[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** Spool an archive into spoolDir/files (regular files and dirs only) plus an alias map for its links. */
async function spoolTar(file: string, spoolDir: string, limits: ImageLimits): Promise<void> {
  const filesRoot = path.join(spoolDir, 'files');
  await fs.mkdir(filesRoot, { recursive: true });
  const aliases: Record<string, string> = {};
  let firstError: unknown;
  // A gzip'd archive can expand without bound: what it spools is capped like an image (its blobs must fit
  // in one image's size), its entries like a layer's, its extension headers like a layer's.
  const extract = cappedTarExtract(limits.maxTarHeaderBytes, (size, type) => {
    firstError ??= new ImageLimitError('maxTarHeaderBytes', `${file} has a ${type} header of ${size} bytes, more than ${describeLimit('maxTarHeaderBytes', limits.maxTarHeaderBytes)}`);
    return firstError as Error;
  });
  let entries = 0;
  let spooled = 0;
  const count = (n: number) => {
    spooled += n;
    if (spooled > limits.maxImageBytes) {
      // Recorded before throwing: the entry's stream is torn down at once and the pipeline fails before the entry's handler runs.
      firstError ??= new ImageLimitError('maxImageBytes', `${file} holds more than ${describeLimit('maxImageBytes', limits.maxImageBytes)}`);
      throw firstError;
    }
  };
  extract.on('entry', (header, stream, next) => {
    if (++entries > limits.maxLayerEntries) {
      firstError ??= new ImageLimitError('maxLayerEntries', `${file} has more than ${describeLimit('maxLayerEntries', limits.maxLayerEntries)} entries`);
      stream.resume();
      next(firstError as Error);
      return;
    }
    spoolEntry(filesRoot, aliases, header, stream, count).then(
      () => {
        stream.resume();
        next();
      },
      (err: unknown) => {
        firstError ??= err instanceof UserError ? err : new UserError(`${file}: cannot read archive entry ${JSON.stringify(header.name)}: ${(err as Error).message}`, { cause: err });
        next(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
  const stages: NodeJS.ReadWriteStream[] = (await gzipped(file)) ? [createGunzip()] : [];
  try {
    await pipeline([createReadStream(file), ...stages, extract as unknown as NodeJS.WritableStream]);
  } catch (err) {
    if (firstError !== undefined) throw firstError;
    throw new InvalidInput(`${file} is not a readable tar archive: ${(err as Error).message}`, 'pass an OCI layout directory, an OCI layout tar or a docker save tar');
  }
  await fs.writeFile(path.join(spoolDir, ALIASES), JSON.stringify(aliases));
}

async function spoolEntry(root: string, aliases: Record<string, string>, header: tar.Header, stream: AsyncIterable<unknown>, count: (bytes: number) => void): Promise<void> {
  const rel = normaliseEntryPath(header.name);
  if (rel === undefined) throw new InvalidInput(`archive entry ${JSON.stringify(header.name)} climbs out of the archive with ".."`, 'the archive is malformed or hostile');
  if (rel === '') return;
  switch (header.type) {
    case 'directory':
      await fs.mkdir(path.join(root, rel), { recursive: true });
      return;
    case 'file':
    case 'contiguous-file': {
      const abs = path.join(root, rel);
      // The spool tree holds only dirs and files we made, so mkdir -p cannot be redirected.
      await fs.mkdir(path.dirname(abs), { recursive: true });
      await fs.rm(abs, { force: true });
      const handle = await fs.open(abs, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      try {
        for await (const chunk of stream) {
          count((chunk as Uint8Array).length);
          await handle.write(chunk as Uint8Array); // tar-stream yields Buffers
        }
      } finally {
        await handle.close();
      }
      delete aliases[rel];
      return;
    }
    case 'symlink': {
      const target = header.linkname ?? '';
      // Resolved lexically inside the archive; absolute targets mean the archive root.
      aliases[rel] = target.startsWith('/') ? target : path.posix.join(path.posix.dirname(rel), target);
      return;
    }
    case 'link':
      aliases[rel] = header.linkname ?? '';
      return;
    default:
      return; // devices etc. have no place in an image archive's own structure
  }
}

/** Read a small JSON document (index, manifest, config) with a size cap. */
export async function readSmallJson<T>(file: string, what: string, maxBytes = 4 << 20): Promise<T> {
  const st = await fs.stat(file);
  if (st.size > maxBytes) throw new InvalidInput(`${what} is ${st.size} bytes, more than the ${maxBytes} allowed`);
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (err) {
    throw new UserError(`${what} is not valid JSON: ${(err as Error).message}`, { exitCode: 2 });
  }
}
