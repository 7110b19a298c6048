/**
 * Test images: variants of the busybox demo layout, a docker-archive, a
 * whiteout image, and hostile layers that attack the extractor. All built
 * with tar-stream + zlib (and the zstd CLI); nothing is fetched.
 */
import * as fs from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as tar from 'tar-stream';
import { entry, writeLayerBlob, writeOciLayout, writeBlob, hostArchitecture, DEMO_MTIME, type LayerEntry, type BuiltLayer } from '../../runtime-rkt/image/demo-image.js';
import { MT } from '../../runtime-rkt/image/plan.js';
import type { ImageRecord, ImageStoreApi } from '../../runtime-rkt/image/types.js';

export async function tempDir(prefix: string): Promise<string> {
  await fs.mkdir('/var/tmp', { recursive: true });
  return fs.mkdtemp(path.join('/var/tmp', `stv-${prefix}-`));
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function walkFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await fs.readdir(path.join(dir, rel))).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = await fs.stat(path.join(dir, r));
    if (st.isDirectory()) out.push(`${r}/`, ...(await walkFiles(dir, r)));
    else out.push(r);
  }
  return out;
}

/** Pack a directory (an OCI layout) into a tar, optionally gzip'd. */
export async function tarDirectory(dir: string, outFile: string, opts: { gzip?: boolean } = {}): Promise<void> {
  const entries: LayerEntry[] = [];
  for (const r of await walkFiles(dir)) {
    if (r.endsWith('/')) entries.push(entry(r, { type: 'directory' }));
    else entries.push(entry(r, {}, await fs.readFile(path.join(dir, r))));
  }
  await writeTar(entries, outFile, opts);
}

/** Write tar entries to a file (small test archives: bodies are Buffers). */
export async function writeTar(entries: LayerEntry[], outFile: string, opts: { gzip?: boolean } = {}): Promise<void> {
  const pack = tar.pack();
  const stages: NodeJS.ReadWriteStream[] = opts.gzip ? [createGzip()] : [];
  const done = pipeline([pack as unknown as NodeJS.ReadableStream, ...stages, createWriteStream(outFile)]);
  for (const e of entries) {
    if (e.body !== undefined && !Buffer.isBuffer(e.body)) throw new Error('writeTar takes Buffer bodies');
    pack.entry(e.header, e.body ?? Buffer.alloc(0));
  }
  pack.finalize();
  await done;
}

interface LayoutInfo {
  index: { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  manifest: { config: { digest: string }; layers: Array<{ digest: string; size: number; mediaType: string }> };
  config: { config: Record<string, unknown> & { Env?: string[] }; rootfs: { diff_ids: string[] } };
}

export async function readLayout(dir: string): Promise<LayoutInfo> {
  const blob = async (d: string) => JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', d.slice(7)), 'utf8'));
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
  const manifest = await blob(index.manifests[0].digest);
  const config = await blob(manifest.config.digest);
  return { index, manifest, config };
}

/** Copy the (only) layer blob of a layout into another layout. */
async function borrowLayer(fromLayout: string, outDir: string): Promise<{ layer: BuiltLayer; src: LayoutInfo }> {
  const src = await readLayout(fromLayout);
  const l = src.manifest.layers[0]!;
  await fs.mkdir(path.join(outDir, 'blobs/sha256'), { recursive: true });
  await fs.copyFile(path.join(fromLayout, 'blobs/sha256', l.digest.slice(7)), path.join(outDir, 'blobs/sha256', l.digest.slice(7)));
  return { layer: { digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: src.config.rootfs.diff_ids[0]! }, src };
}

/** A second image sharing the first image's (only) layer blob, with a different config (a label) and name. */
export async function buildVariantImage(fromLayout: string, outDir: string, opts: { name: string; label: string; env?: string[] }): Promise<void> {
  const { layer, src } = await borrowLayer(fromLayout, outDir);
  const env = opts.env ? { Env: [...(src.config.config.Env ?? []), ...opts.env] } : {};
  await writeOciLayout(outDir, [{
    layers: [layer],
    runConfig: { ...src.config.config, Labels: { variant: opts.label }, ...env },
    annotations: { 'io.containerd.image.name': opts.name },
  }]);
}

/**
 * The layout's image with its (only) layer recompressed with zstd (the zstd
 * CLI; node 20 has no zstd): same tar, so the same diff_id, and the OCI
 * +zstd media type.
 */
export async function buildZstdImage(fromLayout: string, outDir: string): Promise<void> {
  const src = await readLayout(fromLayout);
  const l = src.manifest.layers[0]!;
  const tar = gunzipSync(await fs.readFile(path.join(fromLayout, 'blobs/sha256', l.digest.slice(7))));
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: tar, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  const blob = await writeBlob(outDir, r.stdout);
  await writeOciLayout(outDir, [{
    layers: [{ ...blob, mediaType: MT.ociLayerZstd, diffId: src.config.rootfs.diff_ids[0]! }],
    runConfig: src.config.config,
  }]);
}

/**
 * A multi-arch image: index.json -> one nested image index (named by its
 * annotation) -> arm64 and amd64 manifests, each labelled with its arch.
 */
export async function buildMultiArchImage(fromLayout: string, outDir: string, name: string): Promise<void> {
  const { layer, src } = await borrowLayer(fromLayout, outDir);
  await writeOciLayout(outDir, ['arm64', 'amd64'].map((architecture) => ({
    layers: [layer],
    // PICKED_ARCH shows, from inside a container, which entry of the index was run.
    runConfig: { ...src.config.config, Labels: { arch: architecture }, Env: [...(src.config.config.Env ?? []), `PICKED_ARCH=${architecture}`] },
    architecture,
  })));
  const nested = await writeBlob(outDir, await fs.readFile(path.join(outDir, 'index.json')));
  await fs.writeFile(path.join(outDir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: nested.digest, size: nested.size, annotations: { 'io.containerd.image.name': name } }],
  }));
}

/**
 * A `docker save`-style archive built from the demo layout's layer
 * (uncompressed, as docker writes it): manifest.json with Config, RepoTags,
 * Layers, plus the legacy `repositories`, `<id>/VERSION` and `<id>/json`.
 */
export async function buildDockerArchive(fromLayout: string, outFile: string, opts: { repoTag: string; label: string }): Promise<{ id: string }> {
  const src = await readLayout(fromLayout);
  const l = src.manifest.layers[0]!;
  const layerTar = gunzipSync(await fs.readFile(path.join(fromLayout, 'blobs/sha256', l.digest.slice(7))));
  const config = Buffer.from(JSON.stringify({ ...src.config, config: { ...src.config.config, Labels: { docker: opts.label } } }));
  const id = sha256(config);
  const layerId = sha256(layerTar).slice(7);
  const [repo, tag] = opts.repoTag.split(':') as [string, string];
  await writeTar([
    entry(`${layerId}/`, { type: 'directory' }),
    entry(`${layerId}/VERSION`, {}, Buffer.from('1.0')),
    entry(`${layerId}/json`, {}, Buffer.from(JSON.stringify({ id: layerId }))),
    entry(`${layerId}/layer.tar`, {}, layerTar),
    entry(`${id.slice(7)}.json`, {}, config),
    entry('manifest.json', {}, Buffer.from(JSON.stringify([{ Config: `${id.slice(7)}.json`, RepoTags: [opts.repoTag], Layers: [`${layerId}/layer.tar`] }]))),
    entry('repositories', {}, Buffer.from(JSON.stringify({ [repo]: { [tag]: layerId } }))),
  ], outFile);
  return { id };
}

export const LONG_PATH = `long/${'d'.repeat(120)}/${'f'.repeat(120)}`;

/**
 * Two layers: the lower has etc/keep (+ hardlink etc/keep-link), etc/gone,
 * opq/a, opq/b and LONG_PATH; the upper
 * whites out etc/gone and makes opq/ opaque (adding opq/new).
 */
export async function buildWhiteoutImage(outDir: string, name: string): Promise<void> {
  const d = (n: string) => entry(n, { type: 'directory' });
  const f = (n: string, s: string) => entry(n, {}, Buffer.from(s));
  const lower = await writeLayerBlob(outDir, [
    d('etc/'), f('etc/keep', 'keep\n'), f('etc/gone', 'gone\n'), d('opq/'), f('opq/a', 'a\n'), f('opq/b', 'b\n'),
    // also: a hardlink within the layer, and a path too long for a plain ustar header (pax)
    entry('etc/keep-link', { type: 'link', linkname: 'etc/keep' }),
    f(LONG_PATH, 'long\n'),
  ]);
  const upper = await writeLayerBlob(outDir, [d('etc/'), f('etc/.wh.gone', ''), d('opq/'), f('opq/.wh..wh..opq', ''), f('opq/new', 'new\n')], { gzip: false });
  await writeOciLayout(outDir, [{ layers: [lower, upper], runConfig: { Cmd: ['sh'] }, annotations: { 'io.containerd.image.name': name } }]);
}

export type HostileKind = 'dotdot' | 'abs-symlink' | 'hardlink-escape' | 'device' | 'symlink-parent';

/**
 * An OCI layout whose single layer attacks the extractor, aiming at
 * `outsideDir` (a directory the test owns, outside the store):
 *  - dotdot:          a file `../../…/<outsideDir>/pwned`
 *  - abs-symlink:     `evil -> <outsideDir>` (absolute), then a file `evil/pwned`
 *  - symlink-parent:  `a/b -> ../../…/<outsideDir>` (relative, climbing), then `a/b/pwned`
 *  - hardlink-escape: a hardlink `stolen` to `../../…/<outsideDir>/victim`
 *  - device:          a block device `dev/disk` (8:0) in a non-privileged image
 * Returns the entry name the refusal must mention.
 */
export async function buildHostileImage(outDir: string, kind: HostileKind, outsideDir: string): Promise<{ entry: string }> {
  const climb = '../'.repeat(32) + outsideDir.replace(/^\/+/, '');
  let entries: LayerEntry[];
  let bad: string;
  switch (kind) {
    case 'dotdot':
      bad = `${climb}/pwned`;
      entries = [entry('etc/', { type: 'directory' }), entry(bad, {}, Buffer.from('pwned\n'))];
      break;
    case 'abs-symlink':
      bad = 'evil/pwned';
      entries = [entry('evil', { type: 'symlink', linkname: outsideDir }), entry(bad, {}, Buffer.from('pwned\n'))];
      break;
    case 'symlink-parent':
      bad = 'a/b/pwned';
      entries = [entry('a/', { type: 'directory' }), entry('a/b', { type: 'symlink', linkname: climb }), entry(bad, {}, Buffer.from('pwned\n'))];
      break;
    case 'hardlink-escape':
      bad = 'stolen';
      entries = [entry(bad, { type: 'link', linkname: `${climb}/victim` })];
      break;
    case 'device':
      bad = 'dev/disk';
      entries = [entry('dev/', { type: 'directory' }), entry(bad, { type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 })];
      break;
  }
  const layer = await writeLayerBlob(outDir, entries);
  await writeOciLayout(outDir, [{ layers: [layer], runConfig: { Cmd: ['sh'] }, annotations: { 'io.containerd.image.name': `localhost/hostile-${kind}:latest` } }]);
  return { entry: bad };
}

/** An image with a layer whose symlink is later replaced by a regular file: must not write through it. */
export async function buildSymlinkReplaceImage(outDir: string, outsideFile: string): Promise<void> {
  const layer = await writeLayerBlob(outDir, [
    entry('x', { type: 'symlink', linkname: outsideFile }),
    entry('x', {}, Buffer.from('replaced\n')),
  ]);
  await writeOciLayout(outDir, [{ layers: [layer], runConfig: {}, annotations: { 'io.containerd.image.name': 'localhost/replace:latest' } }]);
}

export { writeBlob, hostArchitecture, DEMO_MTIME };

/** The image's busybox runs from its unpacked layer: the pull produced a working root filesystem. */
export async function runsBusybox(store: ImageStoreApi, rec: ImageRecord): Promise<void> {
  const [rootfs] = await store.layerRootfsPaths(rec);
  const r = spawnSync(path.join(rootfs!, 'bin/busybox'), ['echo', 'pulled'], { encoding: 'utf8' });
  if (r.stdout !== 'pulled\n') throw new Error(`busybox from ${rec.id} printed ${JSON.stringify(r.stdout)} (${r.stderr || r.error?.message || `exit ${r.status}`})`);
}
