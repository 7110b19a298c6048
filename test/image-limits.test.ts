/**
 * Size caps on pulls and imports (runtime-api/image-limits.ts) and registry
 * credentials kept to the registry's own challenge, against the real thing:
 * Debian's docker-registry on 127.0.0.1 (images pushed by hand through the
 * distribution API where skopeo would not push them: a gzip bomb, a manifest
 * without sizes), and three small local HTTP servers for the redirect attack.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type * as tar from 'tar-stream';
import { ImageStore } from '../runtime-rkt/image/store.js';
import { buildBusyboxImage, entry, writeLayerBlob, writeOciLayout } from '../runtime-rkt/image/demo-image.js';
import { MT } from '../runtime-rkt/image/plan.js';
import { ImageLimitError, DEFAULT_IMAGE_LIMITS, parseByteSize, resolveLimits } from '../runtime-api/image-limits.js';
import { RegistryError } from '../runtime-rkt/image/registry.js';
import type { PullProgress } from '../runtime-rkt/image/types.js';
import { tempDir, readLayout, tarDirectory, buildDockerArchive, runsBusybox } from './helpers/images.js';
import { startRegistry, skopeoPush, pushBlob, pushManifest, type TestRegistry } from './helpers/registry.js';
import { InvalidInput } from '../common/errors.js';
import { loadAgentConfig, imageLimitsOf } from '../agent/config.js';
import { rejects } from './helpers/assert.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const GiB = 1 << 30;
const FAST = { attempts: 2, retryDelayMs: 20 };
const CLI = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);

let work: string;
let reg: TestRegistry;
let busybox: string; // OCI layout of the demo image

test.before(async () => {
  work = await tempDir('image-limits');
  busybox = path.join(work, 'busybox');
  await buildBusyboxImage(busybox);
  reg = await startRegistry(work);
  await skopeoPush(`oci:${busybox}:latest`, `${reg.host}/demo/busybox:1.0`);
});

test.after(async () => {
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

let n = 0;
function freshStore(limits?: ConstructorParameters<typeof ImageStore>[1]): { store: ImageStore; root: string } {
  const root = path.join(work, `store-${n++}`, 'images');
  return { store: new ImageStore(root, limits), root };
}

/** Every file and directory under a dir (relative), except the store's lock file. */
async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await fs.readdir(path.join(dir, rel)).catch(() => [] as string[])).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = await fs.lstat(path.join(dir, r));
    out.push(r);
    if (st.isDirectory()) out.push(...(await walk(dir, r)));
  }
  return out.filter((p) => p !== 'lock');
}

/** Nothing but the empty layout: no record, blob, layer tree, staging dir or temp file anywhere in the store. */
async function assertNothingLeft(root: string, what: string): Promise<void> {
  const layout = new Set(['blobs', 'blobs/sha256', 'layers', 'layers/sha256', 'records', 'tmp']);
  assert.equal((await walk(root)).filter((p) => !layout.has(p)), [], `${what}: the store holds nothing but its empty directories`);
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A ustar header (for what tar-stream will not write: entries of a given size with no body in memory, GNU long names). */
function ustarHeader(name: string, size: number, typeflag: string): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100);
  b.write('0000644\0', 100);
  b.write('0000000\0', 108);
  b.write('0000000\0', 116);
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  b.write('00000000000\0', 136);
  b.fill(' ', 148, 156);
  b.write(typeflag, 156);
  b.write('ustar\0', 257);
  b.write('00', 263);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return b;
}

interface PushLayer {
  file: string;
  diffId: string;
  mediaType: string;
}

/** Push layers + a config + a manifest to the test registry by hand; `omitSize` drops `size` from those descriptors. */
async function pushImage(repo: string, tag: string, layers: PushLayer[], opts: { omitSize?: Array<'config' | 'layer'> } = {}): Promise<void> {
  const pushed = [];
  for (const l of layers) pushed.push({ ...(await pushBlob(reg.host, repo, { file: l.file })), mediaType: l.mediaType });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }));
  const c = await pushBlob(reg.host, repo, config);
  const omit = new Set(opts.omitSize ?? []);
  await pushManifest(reg.host, repo, tag, {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, digest: c.digest, ...(omit.has('config') ? {} : { size: c.size }) },
    layers: pushed.map((l) => ({ mediaType: l.mediaType, digest: l.digest, ...(omit.has('layer') ? {} : { size: l.size }) })),
  }, MT.ociManifest);
}

// ---- configuration -------------------------------------------------------------

test('limits: defaults fit real images, quantities parse, bad values are refused with the setting named', () => {
  assert.is(DEFAULT_IMAGE_LIMITS.maxLayerBytes, 64 * GiB);
  assert.is(DEFAULT_IMAGE_LIMITS.maxImageBytes, 128 * GiB);
  assert.is(DEFAULT_IMAGE_LIMITS.maxLayerEntries, 1 << 20);
  assert.is(DEFAULT_IMAGE_LIMITS.maxTarHeaderBytes, MiB);
  assert.is(parseByteSize('64Mi', 'x'), 64 * MiB);
  assert.is(parseByteSize('10G', 'x'), 10e9);
  assert.is(parseByteSize('1GiB', 'x'), GiB);
  assert.is(parseByteSize(4096, 'x'), 4096);
  assert.throws(() => parseByteSize('lots', '--image-max-layer-size'), /--image-max-layer-size: "lots" is not a size/);
  assert.throws(() => parseByteSize('0', '--image-max-layer-size'), /positive/);
  assert.throws(() => resolveLimits({ maxTarHeaderBytes: 8 * MiB }), /maxTarHeaderBytes .* above 4\.0 MiB/);
  assert.is(resolveLimits({ maxLayerBytes: MiB }, { maxLayerEntries: 7 }).maxLayerBytes, MiB);
  assert.is(resolveLimits({ maxLayerBytes: MiB }, { maxLayerBytes: 2 * MiB }).maxLayerBytes, 2 * MiB);
});

// ---- size ------------------------------------------------------------------------

/**
 * A 10 GiB gzip bomb, never held anywhere: ten 1 GiB files of zeros as a
 * multi-member gzip (tar header members, then 16 copies of one member that
 * inflates to 64 MiB of zeros), ~10 MiB on disk. Its diff_id is not the real
 * one: computing it means hashing 10 GiB, and the pull must stop at the cap
 * long before any diff_id check is reached.
 */
const zstdSync = (data: Buffer): Buffer => {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd: ${String(r.stderr)}`);
  return r.stdout;
};

async function writeZeroBomb(file: string, codec: 'gzip' | 'zstd' = 'gzip'): Promise<number> {
  // Multi-member gzip and multi-frame zstd both decode to the concatenation of their members/frames.
  const compress = codec === 'gzip' ? (b: Buffer) => gzipSync(b, { level: 9 }) : zstdSync;
  const zeros = compress(Buffer.alloc(64 * MiB));
  const out = await fs.open(file, 'w');
  let expands = 0;
  try {
    for (let i = 0; i < 10; i++) {
      await out.write(compress(ustarHeader(`zeros-${i}`, GiB, '0')));
      for (let j = 0; j < 16; j++) await out.write(zeros);
      expands += 512 + GiB;
    }
    await out.write(compress(Buffer.alloc(1024)));
  } finally {
    await out.close();
  }
  return expands + 1024;
}

test('a layer that expands to 10 GiB is refused at the layer cap (and at the image cap), nothing is left on disk, a normal pull works after', async () => {
  const bomb = path.join(work, 'bomb.gz');
  const expands = await writeZeroBomb(bomb);
  const compressed = (await fs.stat(bomb)).size;
  assert.ok(expands > 10 * GiB && compressed < 16 * MiB, `a ${compressed}-byte blob that expands to ${expands} bytes`);
  await pushImage('bomb/zeros', '1', [{ file: bomb, diffId: sha256(Buffer.from('not computed')), mediaType: MT.ociLayerGzip }]);
  const layer = (await pushBlob(reg.host, 'bomb/zeros', { file: bomb })).digest;

  const { store, root } = freshStore();
  await fs.mkdir(root, { recursive: true });
  const before = await walk(root);
  const started = Date.now();
  let downloaded = 0;
  const onProgress = (p: PullProgress) => {
    if (p.kind === 'layer' && p.state === 'downloading') downloaded = Math.max(downloaded, p.bytes);
  };
  const err = await rejects(store.pull(`${reg.host}/bomb/zeros:1`, { ...FAST, onProgress, limits: { maxLayerBytes: 64 * MiB } }), /maxLayerBytes = 64\.0 MiB/, ImageLimitError);
  // 64 MiB of output is ~64 KiB of this blob: the download stops there (plus what the stream buffers held), not at its end.
  assert.ok(downloaded < compressed / 2, `the download stopped at the cap: ${downloaded} of ${compressed} bytes`);
  assert.ok(err.message.includes(layer), `the error names the layer: ${err.message}`);
  assert.match(String((err as ImageLimitError).hint), /--image-max-layer-size .* imageMaxLayerSize/);
  assert.is((err as ImageLimitError).limit, 'maxLayerBytes');
  assert.ok(Date.now() - started < 60_000, 'refused at the cap, not after inflating 10 GiB');
  assert.equal(before, [], 'the store root was empty before');
  await assertNothingLeft(root, 'after the layer cap');

  // The same layer against the image-wide cap (the layer cap at its default).
  await rejects(store.pull(`${reg.host}/bomb/zeros:1`, { ...FAST, limits: { maxImageBytes: 96 * MiB } }), /expand to more than maxImageBytes = 96\.0 MiB together/, ImageLimitError);
  await assertNothingLeft(root, 'after the image cap');

  // The store's own limits apply when the pull sets none.
  const capped = freshStore({ limits: { maxLayerBytes: 32 * MiB } });
  await rejects(capped.store.pull(`${reg.host}/bomb/zeros:1`, FAST), /maxLayerBytes = 32\.0 MiB/, ImageLimitError);
  await assertNothingLeft(capped.root, 'store limits');

  const rec = await store.pull(`${reg.host}/demo/busybox:1.0`, FAST);
  await runsBusybox(store, rec);
});

test('a zstd layer that expands to 10 GiB is refused at the layer cap too', async () => {
  const bomb = path.join(work, 'bomb.zst');
  const expands = await writeZeroBomb(bomb, 'zstd');
  assert.ok(expands > 10 * GiB && (await fs.stat(bomb)).size < 4 * MiB);
  await pushImage('bomb/zstd', '1', [{ file: bomb, diffId: sha256(Buffer.from('not computed')), mediaType: MT.ociLayerZstd }]);
  const { store, root } = freshStore();
  await rejects(store.pull(`${reg.host}/bomb/zstd:1`, { ...FAST, limits: { maxLayerBytes: 64 * MiB } }), /expands to more than maxLayerBytes = 64\.0 MiB uncompressed/, ImageLimitError);
  await assertNothingLeft(root, 'zstd bomb');
});

test('the caps reach the CLI (image pull/import flags) and the agent (config keys and flags)', async () => {
  const dataDir = path.join(work, `cli-${n++}`);
  const cli = (args: string[]) => run(process.execPath, [CLI, '--dir', dataDir, ...args]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
  const refused = await cli(['image', 'pull', '--image-max-layer-size', '64Mi', `${reg.host}/bomb/zeros:1`]);
  assert.is(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /maxLayerBytes = 64\.0 MiB/);
  assert.match(refused.stderr, /--image-max-layer-size/);
  await assertNothingLeft(path.join(dataDir, 'images'), 'CLI pull');
  const bad = await cli(['image', 'pull', '--image-max-layer-entries', 'many', `${reg.host}/demo/busybox:1.0`]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--image-max-layer-entries must be a positive whole number/);
  const imported = await cli(['image', 'import', '--image-max-layer-entries', '3', busybox]);
  assert.is(imported.code, 2, imported.stderr);
  assert.match(imported.stderr, /more than maxLayerEntries = 3 entries/);

  const cfgFile = path.join(work, 'agent.yaml');
  await fs.writeFile(cfgFile, 'imageMaxLayerSize: 64Mi\nimageMaxLayerEntries: 5000\n');
  const cfg = await loadAgentConfig({ config: cfgFile, kubeconfig: '/dev/null', imageMaxTarHeaderSize: '2Mi' });
  assert.equal(imageLimitsOf(cfg), { maxLayerBytes: 64 * MiB, maxImageBytes: 128 * GiB, maxLayerEntries: 5000, maxTarHeaderBytes: 2 * MiB });
  await fs.writeFile(cfgFile, 'imageMaxImageSize: huge\n');
  await rejects(loadAgentConfig({ config: cfgFile, kubeconfig: '/dev/null' }), /imageMaxImageSize: "huge" is not a size/, InvalidInput);
});

test('a layer blob larger than the layer cap, or layers larger than the image cap, are refused before anything is downloaded', async () => {
  const { store, root } = freshStore();
  const layerSize = (await readLayout(busybox)).manifest.layers[0]!.size;
  await rejects(store.pull(`${reg.host}/demo/busybox:1.0`, { ...FAST, limits: { maxLayerBytes: layerSize - 1 } }), new RegExp(`its blob is ${layerSize} bytes, more than maxLayerBytes`), ImageLimitError);
  await rejects(store.pull(`${reg.host}/demo/busybox:1.0`, { ...FAST, limits: { maxImageBytes: layerSize - 1 } }), /layer blobs of .* are \d+ bytes together, more than maxImageBytes/, ImageLimitError);
  await assertNothingLeft(root, 'refused up front');
  // A docker-archive lists no sizes: its layer files' sizes are checked instead, before they are copied.
  const archive = path.join(work, 'docker.tar');
  await buildDockerArchive(busybox, archive, { repoTag: 'bb:1', label: 'x' });
  await rejects(store.importPath(archive, { limits: { maxLayerBytes: 64 << 10 } }), /layer .*layer\.tar of docker-archive image bb:1: its blob is \d+ bytes, more than maxLayerBytes = 64\.0 KiB/, ImageLimitError);
  await assertNothingLeft(root, 'docker-archive over the layer cap');
  const [rec] = await store.importPath(archive);
  await runsBusybox(store, rec!);
});

// ---- entries and headers ---------------------------------------------------------------

async function buildManyEntriesImage(dir: string, count: number): Promise<void> {
  const entries = [entry('many/', { type: 'directory' })];
  for (let i = 0; i < count; i++) entries.push(entry(`many/f${i}`, {}, Buffer.alloc(0)));
  const layer = await writeLayerBlob(dir, entries);
  await writeOciLayout(dir, [{ layers: [layer], runConfig: { Cmd: ['sh'] }, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }]);
}

test('entry-count cap: a layer with more entries than the cap is refused (pull and import), below it the same image is fine', async () => {
  const layout = path.join(work, 'many');
  await buildManyEntriesImage(layout, 3000);
  await skopeoPush(`oci:${layout}:latest`, `${reg.host}/caps/many:1`);
  const { store, root } = freshStore();
  const err = await rejects(store.pull(`${reg.host}/caps/many:1`, { ...FAST, limits: { maxLayerEntries: 1000 } }), /more than maxLayerEntries = 1000 entries/, ImageLimitError);
  assert.match(String((err as ImageLimitError).hint), /--image-max-layer-entries/);
  await assertNothingLeft(root, 'pull over the entry cap');
  await rejects(store.importPath(layout, { name: 'many', limits: { maxLayerEntries: 1000 } }), /more than maxLayerEntries = 1000 entries/, ImageLimitError);
  await assertNothingLeft(root, 'import over the entry cap');
  const rec = await store.pull(`${reg.host}/caps/many:1`, { ...FAST, limits: { maxLayerEntries: 5000 } });
  const [rootfs] = await store.layerRootfsPaths(rec);
  assert.is((await fs.readdir(path.join(rootfs!, 'many'))).length, 3000);
});

test('a 2 MiB PAX header and a 2 MiB GNU long name are refused at the 1 MiB header cap before they are read; a bigger cap lets the PAX one in', async () => {
  // PAX: a 2 MiB comment record (tar-stream writes PAX headers).
  const paxLayout = path.join(work, 'pax');
  const paxHeader = { pax: { comment: 'x'.repeat(2 * MiB) } } as unknown as Partial<tar.Header>;
  const paxLayer = await writeLayerBlob(paxLayout, [entry('etc/', { type: 'directory' }), entry('etc/hello', paxHeader, Buffer.from('hi\n'))]);
  await writeOciLayout(paxLayout, [{ layers: [paxLayer], runConfig: { Cmd: ['sh'] }, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }]);
  await skopeoPush(`oci:${paxLayout}:latest`, `${reg.host}/caps/pax:1`);

  // GNU long name ('L' entry): written by hand, tar-stream only reads them.
  const name = `${'n'.repeat(2 * MiB)}\0`;
  const tarBytes = Buffer.concat([
    ustarHeader('././@LongLink', Buffer.byteLength(name), 'L'), Buffer.from(name), Buffer.alloc((512 - (Buffer.byteLength(name) % 512)) % 512),
    ustarHeader('short', 0, '0'), Buffer.alloc(1024),
  ]);
  const gnuFile = path.join(work, 'gnu.tar.gz');
  await fs.writeFile(gnuFile, gzipSync(tarBytes));
  await pushImage('caps/gnu', '1', [{ file: gnuFile, diffId: sha256(tarBytes), mediaType: MT.ociLayerGzip }]);

  const { store, root } = freshStore();
  const err = await rejects(store.pull(`${reg.host}/caps/pax:1`, FAST), /has a pax-header header of \d+ bytes, more than maxTarHeaderBytes = 1\.0 MiB/, ImageLimitError);
  assert.ok(err.message.includes(paxLayer.digest), 'names the layer');
  await rejects(store.pull(`${reg.host}/caps/gnu:1`, FAST), /has a gnu-long-path header of 2097153 bytes, more than maxTarHeaderBytes = 1\.0 MiB/, ImageLimitError);
  await assertNothingLeft(root, 'huge headers');
  await rejects(store.importPath(paxLayout, { name: 'pax' }), /pax-header header .* maxTarHeaderBytes/, ImageLimitError);
  await assertNothingLeft(root, 'import of a huge header');

  const rec = await store.pull(`${reg.host}/caps/pax:1`, { ...FAST, limits: { maxTarHeaderBytes: 4 * MiB } });
  const [rootfs] = await store.layerRootfsPaths(rec);
  assert.is(await fs.readFile(path.join(rootfs!, 'etc/hello'), 'utf8'), 'hi\n');
});

test('import of a gzip\'d archive that unpacks to more than the image cap: refused while spooling, nothing left', async () => {
  const archive = path.join(work, 'busybox.tar.gz');
  await tarDirectory(busybox, archive, { gzip: true });
  const { store, root } = freshStore();
  await rejects(store.importPath(archive, { limits: { maxImageBytes: 256 << 10 } }), /holds more than maxImageBytes = 256\.0 KiB/, ImageLimitError);
  await assertNothingLeft(root, 'archive over the image cap');
  const [rec] = await store.importPath(archive);
  await runsBusybox(store, rec!);
});

// ---- descriptors without size --------------------------------------------------------

test('a manifest whose layer (or config) has no size is refused, naming the digest; nothing is downloaded', async () => {
  const info = await readLayout(busybox);
  const layerFile = path.join(busybox, 'blobs/sha256', info.manifest.layers[0]!.digest.slice(7));
  const layerDigest = info.manifest.layers[0]!.digest;
  const configDigest = info.manifest.config.digest;
  const diffId = (JSON.parse(await fs.readFile(path.join(busybox, 'blobs/sha256', configDigest.slice(7)), 'utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]!;
  await pushImage('caps/nosize', 'layer', [{ file: layerFile, diffId, mediaType: MT.ociLayerGzip }], { omitSize: ['layer'] });
  await pushImage('caps/nosize', 'config', [{ file: layerFile, diffId, mediaType: MT.ociLayerGzip }], { omitSize: ['config'] });
  const { store, root } = freshStore();
  await rejects(store.pull(`${reg.host}/caps/nosize:layer`, FAST), new RegExp(`layer ${layerDigest} of .* has no size`), InvalidInput);
  await rejects(store.pull(`${reg.host}/caps/nosize:config`, FAST), /the config sha256:[0-9a-f]{64} of .* has no size/, InvalidInput);
  await assertNothingLeft(root, 'no size');

  // The same refusal on import: an OCI layout whose manifest lists a layer without size.
  const layout = path.join(work, 'nosize-layout');
  await fs.cp(busybox, layout, { recursive: true });
  const manifest = JSON.parse(await fs.readFile(path.join(layout, 'blobs/sha256', info.index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ size?: number }> };
  delete manifest.layers[0]!.size;
  const body = Buffer.from(JSON.stringify(manifest));
  await fs.writeFile(path.join(layout, 'blobs/sha256', sha256(body).slice(7)), body);
  await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MT.ociManifest, digest: sha256(body), size: body.length }] }));
  await rejects(store.importPath(layout, { name: 'nosize' }), new RegExp(`layer ${layerDigest} of manifest .* has no size`), InvalidInput);
  await assertNothingLeft(root, 'import without size');
});

// ---- registry credentials and redirects -------------------------------------------------

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
}

async function listen(handler: (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen[]) => void): Promise<{ host: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    handler(req, res, seen);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

test('a 401 from a redirect target never gets the registry\'s credentials: the realm it names is not contacted, the pull fails naming the host', async () => {
  const info = await readLayout(busybox);
  const manifestBody = await fs.readFile(path.join(busybox, 'blobs/sha256', info.index.manifests[0]!.digest.slice(7)));
  const configDigest = info.manifest.config.digest;
  const layerDigest = info.manifest.layers[0]!.digest;
  const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;

  // The third server: the token realm the storage's challenge names. It would hand out a token for anything.
  const realm = await listen((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'stolen', expires_in: 300 }));
  });
  // The second server: blob storage answering 401 with a Bearer challenge pointing at that realm.
  const storage = await listen((_req, res) => {
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${realm.host}/token",service="storage",scope="everything"`, 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'storage wants a token' }] }));
  });
  // The registry: Basic auth (alice), serves the manifest and config itself, redirects the layer to storage.
  const registry = await listen((req, res) => {
    if (req.headers.authorization !== basic) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"' });
      res.end();
      return;
    }
    const url = req.url ?? '';
    if (url === '/v2/') {
      res.writeHead(200);
      res.end('{}');
    } else if (url === '/v2/app/manifests/1') {
      res.writeHead(200, { 'content-type': MT.ociManifest, 'docker-content-digest': sha256(manifestBody) });
      res.end(manifestBody);
    } else if (url === `/v2/app/blobs/${configDigest}`) {
      void fs.readFile(path.join(busybox, 'blobs/sha256', configDigest.slice(7))).then((b) => {
        res.writeHead(200);
        res.end(b);
      });
    } else if (url === `/v2/app/blobs/${layerDigest}`) {
      res.writeHead(307, { location: `http://${storage.host}/blobs/${layerDigest.slice(7)}?signature=x` });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  try {
    const { store, root } = freshStore();
    const err = await rejects(
      store.pull(`${registry.host}/app:1`, { ...FAST, auth: { [registry.host]: { username: 'alice', password: 's3cret' } } }),
      new RegExp(`${storage.host.replace(/\./g, '\\.')}, where ${registry.host.replace(/\./g, '\\.')} redirected the request, answered 401 Unauthorized; the registry's credentials are not sent to another host`),
      RegistryError,
    );
    assert.is((err as RegistryError).status, 401);
    assert.equal(realm.seen, [], 'the realm named by the storage\'s challenge is never contacted');
    assert.ok(storage.seen.length > 0, 'the layer was redirected to storage');
    assert.ok(storage.seen.every((s) => s.authorization === undefined), 'no Authorization header crosses the redirect');
    assert.ok(registry.seen.some((s) => s.authorization === basic && s.url === `/v2/app/blobs/${layerDigest}`), 'the registry itself got the credentials');
    await assertNothingLeft(root, 'redirect 401');
  } finally {
    await registry.close();
    await storage.close();
    await realm.close();
  }
});

test('the registry\'s own Bearer challenge still works with a realm on another host (as Docker Hub\'s), and a redirect to storage that needs no auth pulls', async () => {
  const info = await readLayout(busybox);
  const manifestBody = await fs.readFile(path.join(busybox, 'blobs/sha256', info.index.manifests[0]!.digest.slice(7)));
  const configDigest = info.manifest.config.digest;
  const layerDigest = info.manifest.layers[0]!.digest;
  const tokenServer = await listen((req, res) => {
    const ok = req.headers.authorization === `Basic ${Buffer.from('bob:pw').toString('base64')}`;
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(ok ? JSON.stringify({ token: 'good', expires_in: 300 }) : '{}');
  });
  const storage = await listen((req, res) => {
    void fs.readFile(path.join(busybox, 'blobs/sha256', (req.url ?? '').split('/').pop()!.split('?')[0]!)).then(
      (b) => { res.writeHead(200); res.end(b); },
      () => { res.writeHead(404); res.end(); },
    );
  });
  const registry = await listen((req, res) => {
    if (req.headers.authorization !== 'Bearer good') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${tokenServer.host}/token",service="reg"` });
      res.end();
      return;
    }
    const url = req.url ?? '';
    if (url === '/v2/app/manifests/1') {
      res.writeHead(200, { 'content-type': MT.ociManifest });
      res.end(manifestBody);
    } else if (url.startsWith('/v2/app/blobs/') && [configDigest, layerDigest].some((d) => url.endsWith(d))) {
      res.writeHead(307, { location: `http://${storage.host}/blobs/${url.slice(-64)}` });
      res.end();
    } else {
      res.writeHead(url === '/v2/' ? 200 : 404);
      res.end();
    }
  });
  try {
    const { store } = freshStore();
    const rec = await store.pull(`${registry.host}/app:1`, { ...FAST, auth: { [registry.host]: { username: 'bob', password: 'pw' } } });
    await runsBusybox(store, rec);
    assert.ok(tokenServer.seen.some((s) => s.authorization !== undefined), 'the registry\'s realm got the credentials');
    assert.ok(storage.seen.length >= 2 && storage.seen.every((s) => s.authorization === undefined), 'storage never sees the token');
  } finally {
    await registry.close();
    await storage.close();
    await tokenServer.close();
  }
});

test.run();
