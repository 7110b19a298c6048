/**
 * Builds small OCI image layouts with our own code (tar-stream + zlib), so
 * tests and demos need no registry, docker, umoci or skopeo. The busybox
 * image is made from the host's static busybox (Debian: busybox-static).
 *
 * Output is deterministic — fixed mtimes and ownership, sorted entries,
 * stable JSON key order, gzip without a timestamp — so the same busybox
 * binary always gives the same layer, config and manifest digests.
 */
import * as fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { InvalidInput } from '../../common/errors.js';
import { MT, ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_NAME } from './plan.js';
import { qualifyName } from './names.js';

export const DEMO_MTIME = new Date('2000-01-01T00:00:00Z');
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** One tar entry: header plus content (bytes, or a host file streamed in). */
export interface LayerEntry {
  header: Partial<tar.Header> & { name: string };
  body?: Buffer | { file: string };
}

export interface BuiltBlob {
  digest: string;
  size: number;
}

export interface BuiltLayer extends BuiltBlob {
  diffId: string;
  mediaType: string;
}

function hashingTap(onDone: (digest: string, size: number) => void): Transform {
  const hash = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      onDone(`sha256:${hash.digest('hex')}`, size);
      cb();
    },
  });
}

async function blobsDir(layoutDir: string): Promise<string> {
  const dir = path.join(layoutDir, 'blobs', 'sha256');
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

/** Write bytes as a blob of the layout; returns its descriptor parts. */
export async function writeBlob(layoutDir: string, data: Buffer | string): Promise<BuiltBlob> {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
  await fs.writeFile(path.join(await blobsDir(layoutDir), digest.slice(7)), buf);
  return { digest, size: buf.length };
}

/** Stream tar entries (in the order given) into a layer blob, gzip'd unless told otherwise. */
export async function writeLayerBlob(layoutDir: string, entries: LayerEntry[], opts: { gzip?: boolean } = {}): Promise<BuiltLayer> {
  const gzip = opts.gzip ?? true;
  const dir = await blobsDir(layoutDir);
  const tmp = path.join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  const pack = tar.pack();
  let diffId = '';
  let digest = '';
  let size = 0;
  const stages: NodeJS.ReadWriteStream[] = [hashingTap((d) => (diffId = d))];
  if (gzip) stages.push(createGzip({ level: 9 }));
  stages.push(hashingTap((d, s) => ((digest = d), (size = s))));
  const written = pipeline([pack as unknown as NodeJS.ReadableStream, ...stages, createWriteStream(tmp)]);
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.body === undefined || Buffer.isBuffer(e.body)) {
        pack.entry(e.header, e.body ?? Buffer.alloc(0), done);
      } else {
        const sink = pack.entry(e.header, done);
        const src = createReadStream(e.body.file);
        src.on('error', reject);
        src.pipe(sink);
      }
    });
  }
  pack.finalize();
  await written;
  await fs.rename(tmp, path.join(dir, digest.slice(7)));
  return { digest, size, diffId, mediaType: gzip ? MT.ociLayerGzip : MT.ociLayerTar };
}

export interface LayoutImage {
  layers: BuiltLayer[];
  /** The image config's `config` object (Cmd, Env, Labels...). */
  runConfig: Record<string, unknown>;
  /** index.json annotations of this image (ref names). */
  annotations?: Record<string, string>;
  architecture?: string;
}

export interface WrittenImage {
  manifest: BuiltBlob;
  config: BuiltBlob;
}

export function hostArchitecture(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch;
}

/** Write config + manifest blobs and (over)write oci-layout and index.json listing `images`. */
export async function writeOciLayout(outDir: string, images: LayoutImage[]): Promise<WrittenImage[]> {
  await fs.mkdir(outDir, { recursive: true });
  const out: WrittenImage[] = [];
  const descriptors: unknown[] = [];
  for (const img of images) {
    const architecture = img.architecture ?? hostArchitecture();
    const config = await writeBlob(outDir, JSON.stringify({
      created: DEMO_MTIME.toISOString(),
      architecture,
      os: 'linux',
      config: img.runConfig,
      rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffId) },
      history: img.layers.map(() => ({ created: DEMO_MTIME.toISOString(), created_by: 'stevedore demo-image' })),
    }));
    const manifest = await writeBlob(outDir, JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: config.digest, size: config.size },
      layers: img.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }));
    descriptors.push({
      mediaType: MT.ociManifest,
      digest: manifest.digest,
      size: manifest.size,
      platform: { architecture, os: 'linux' },
      ...(img.annotations ? { annotations: img.annotations } : {}),
    });
    out.push({ manifest, config });
  }
  await fs.writeFile(path.join(outDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(path.join(outDir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: descriptors }));
  return out;
}

/** Header defaults for deterministic entries: root-owned, fixed mtime. */
export function entry(name: string, h: Partial<tar.Header> = {}, body?: LayerEntry['body']): LayerEntry {
  const type = h.type ?? 'file';
  return {
    header: { name, type, mode: type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644, uid: 0, gid: 0, mtime: DEMO_MTIME, ...h },
    ...(body !== undefined ? { body } : {}),
  };
}

const BUSYBOX = '/bin/busybox';

/** The busybox rootfs entries, sorted by name. */
export async function busyboxEntries(busybox = BUSYBOX): Promise<LayerEntry[]> {
  const st = await fs.stat(busybox).catch(() => undefined);
  if (st === undefined || !st.isFile()) throw new InvalidInput(`${busybox} not found`, 'install the busybox-static package');
  const { stdout } = await promisify(execFile)(busybox, ['--list-full']);
  // Applets become absolute symlinks to /bin/busybox, as in the official image.
  const applets = stdout.split('\n').map((s) => s.trim()).filter((s) => s.includes('/') && s !== 'bin/busybox');
  const dirs = new Set(['bin', 'dev', 'etc', 'proc', 'root', 'sys', 'tmp']);
  for (const a of applets) for (let d = path.posix.dirname(a); d !== '.'; d = path.posix.dirname(d)) dirs.add(d);
  const text = (s: string) => Buffer.from(s);
  const entries: LayerEntry[] = [
    ...[...dirs].map((d) => entry(`${d}/`, { type: 'directory', mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 })),
    entry('bin/busybox', { mode: 0o755, size: st.size }, { file: busybox }),
    ...applets.map((a) => entry(a, { type: 'symlink', linkname: '/bin/busybox' })),
    entry('etc/passwd', {}, text('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n')),
    entry('etc/group', {}, text('root:x:0:\nnogroup:x:65534:\n')),
    entry('etc/hostname', {}, text('')),
    entry('etc/hosts', {}, text('127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n')),
    entry('etc/resolv.conf', {}, text('')),
  ];
  return entries.sort((a, b) => (a.header.name < b.header.name ? -1 : a.header.name > b.header.name ? 1 : 0));
}

/**
 * Write an OCI image layout of busybox to outDir: one gzip layer, Cmd ["sh"],
 * index.json annotated with ref.name = tag and the full local name
 * (io.containerd.image.name = localhost/NAME:TAG).
 */
export async function buildBusyboxImage(outDir: string, opts: { name?: string; tag?: string } = {}): Promise<void> {
  const name = opts.name ?? 'busybox';
  const tag = opts.tag ?? 'latest';
  const fullName = qualifyName(`${name}:${tag}`, 'localhost'); // validates before any work
  const layer = await writeLayerBlob(outDir, await busyboxEntries());
  await writeOciLayout(outDir, [{
    layers: [layer],
    runConfig: { Cmd: ['sh'], Env: [DEFAULT_PATH] },
    annotations: { [ANNOTATION_CONTAINERD_NAME]: fullName, [ANNOTATION_REF_NAME]: tag },
  }]);
}
