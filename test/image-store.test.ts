import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ImageStore } from '../runtime-rkt/image/store.js';
import { buildBusyboxImage } from '../runtime-rkt/image/demo-image.js';
import { fsops } from '../common/fsops.js';
import { UserError } from '../common/errors.js';
import { tempDir, tarDirectory, readLayout, buildVariantImage, buildDockerArchive, buildWhiteoutImage, buildMultiArchImage, LONG_PATH } from './helpers/images.js';

const run = promisify(execFile);
let work: string;
let busybox: string; // the demo OCI layout, built once

test.before(async () => {
  work = await tempDir('image-store');
  busybox = path.join(work, 'busybox-layout');
  await buildBusyboxImage(busybox);
});

test.after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

let n = 0;
async function freshStore(): Promise<{ store: ImageStore; root: string }> {
  const root = path.join(work, `store-${n++}`, 'images');
  return { store: new ImageStore(root), root };
}

const ls = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).filter((f) => !f.startsWith('.')).sort();

test('the demo image is deterministic', async () => {
  const again = path.join(work, 'busybox-again');
  await buildBusyboxImage(again);
  assert.is(await fs.readFile(path.join(again, 'index.json'), 'utf8'), await fs.readFile(path.join(busybox, 'index.json'), 'utf8'));
  const info = await readLayout(busybox);
  assert.equal(info.config.config.Cmd, ['sh']);
  assert.is(info.index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'latest');
});

test('import an OCI layout dir: list, resolve by name, short name, name:tag, id, id prefix', async () => {
  const { store, root } = await freshStore();
  const [rec] = await store.importPath(busybox);
  assert.ok(rec);
  assert.equal(rec.names, ['localhost/busybox:latest']);
  assert.is(rec.format, 'oci');
  assert.equal(rec.config.Cmd, ['sh']);
  assert.is(rec.layers.length, 1);
  assert.ok(rec.size > 500_000);
  assert.equal((await store.list()).map((r) => r.id), [rec.id]);
  for (const ref of ['localhost/busybox:latest', 'localhost/busybox', 'busybox', 'busybox:latest', rec.id, rec.id.slice(7, 19), rec.id.slice(7, 13)]) {
    assert.is((await store.resolve(ref))?.id, rec.id, `resolve(${ref})`);
  }
  assert.is(await store.resolve('busybox:other'), undefined);
  assert.is(await store.resolve(rec.id.slice(7, 12)), undefined, 'a 5-char prefix is too short');
  assert.is(await store.resolve('docker.io/library/busybox'), undefined);
  // blobs: manifest, config, layer; one layer tree marked complete; tmp empty
  assert.is((await ls(path.join(root, 'blobs/sha256'))).length, 3);
  const [layerHex] = await ls(path.join(root, 'layers/sha256'));
  assert.is(`sha256:${layerHex}`, rec.layers[0]);
  assert.ok(await fs.stat(path.join(root, 'layers/sha256', layerHex!, 'ok')));
  assert.equal(await ls(path.join(root, 'tmp')), []);
});

test('the unpacked layer runs: <rootfs>/bin/busybox echo hi; symlinks and modes kept', async () => {
  const { store } = await freshStore();
  const [rec] = await store.importPath(busybox);
  const [rootfs] = await store.layerRootfsPaths(rec!);
  const { stdout } = await run(path.join(rootfs!, 'bin/busybox'), ['echo', 'hi']);
  assert.is(stdout, 'hi\n');
  assert.is(await fs.readlink(path.join(rootfs!, 'bin/sh')), '/bin/busybox');
  assert.is((await fs.lstat(path.join(rootfs!, 'tmp'))).mode & 0o7777, 0o1777);
  assert.is((await fs.lstat(path.join(rootfs!, 'bin/busybox'))).mode & 0o777, 0o755);
  assert.is((await fs.lstat(path.join(rootfs!, 'etc/passwd'))).mtime.toISOString(), '2000-01-01T00:00:00.000Z');
  assert.is((await fs.lstat(path.join(rootfs!, 'etc'))).mtime.toISOString(), '2000-01-01T00:00:00.000Z');
  assert.match(await fs.readFile(path.join(rootfs!, 'etc/passwd'), 'utf8'), /^root:x:0:0:/);
});

test('import an OCI layout tar, plain and gzip, with a name for an unnamed layout', async () => {
  const { store } = await freshStore();
  const tarFile = path.join(work, 'busybox.tar');
  await tarDirectory(busybox, tarFile);
  const [a] = await store.importPath(tarFile);
  assert.equal(a?.names, ['localhost/busybox:latest']);
  // gzip'd tar of a layout without a full name: ref.name is a bare tag, so opts.name supplies the repository
  const unnamed = path.join(work, 'unnamed-layout');
  await fs.cp(busybox, unnamed, { recursive: true });
  const index = JSON.parse(await fs.readFile(path.join(unnamed, 'index.json'), 'utf8'));
  index.manifests[0].annotations = { 'org.opencontainers.image.ref.name': '1.36' };
  await fs.writeFile(path.join(unnamed, 'index.json'), JSON.stringify(index));
  const tgz = path.join(work, 'unnamed.tar.gz');
  await tarDirectory(unnamed, tgz, { gzip: true });
  const [b] = await store.importPath(tgz, { name: 'mybox' });
  assert.is(b?.id, a?.id, 'same config, same image');
  assert.equal(b?.names.sort(), ['localhost/busybox:latest', 'localhost/mybox:1.36']);
  assert.is((await store.resolve('mybox:1.36'))?.id, a?.id);
});

test('a layer shared by two images is stored once; remove keeps shared blobs', async () => {
  const { store, root } = await freshStore();
  const variant = path.join(work, 'variant-layout');
  await buildVariantImage(busybox, variant, { name: 'localhost/variant:1', label: 'v1' });
  const [a] = await store.importPath(busybox);
  const [b] = await store.importPath(variant);
  assert.ok(a && b && a.id !== b.id);
  assert.equal(a.layers, b.layers);
  assert.is((await ls(path.join(root, 'blobs/sha256'))).length, 5, '2 manifests + 2 configs + 1 shared layer');
  assert.is((await ls(path.join(root, 'layers/sha256'))).length, 1);

  const removed = await store.remove('busybox');
  assert.is(removed.id, a.id);
  assert.equal((await store.list()).map((r) => r.id), [b.id]);
  const blobs = await ls(path.join(root, 'blobs/sha256'));
  assert.equal(blobs, [b.manifestDigest, b.configDigest, b.layers[0]!].map((d) => d.slice(7)).sort());
  assert.is((await ls(path.join(root, 'layers/sha256'))).length, 1, 'shared layer tree kept');

  await store.remove(b.id.slice(7, 20));
  assert.equal(await store.list(), []);
  assert.equal(await ls(path.join(root, 'blobs/sha256')), []);
  assert.equal(await ls(path.join(root, 'layers/sha256')), []);
  try {
    await store.remove('busybox');
    assert.unreachable('remove of a missing image must throw');
  } catch (err) {
    assert.instance(err, UserError);
  }
});

test('re-importing a name moves it to the new image', async () => {
  const { store } = await freshStore();
  const [a] = await store.importPath(busybox);
  const variant = path.join(work, 'variant-same-name');
  await buildVariantImage(busybox, variant, { name: 'localhost/busybox:latest', label: 'new' });
  const [b] = await store.importPath(variant);
  assert.is((await store.resolve('busybox'))?.id, b?.id);
  const old = (await store.list()).find((r) => r.id === a?.id);
  assert.equal(old?.names, [], 'the old image keeps its id but loses the name');
  assert.is((await store.resolve(a!.id))?.id, a!.id);
});

test('digest mismatch: clear error, no record, no blobs, no layers', async () => {
  const { store, root } = await freshStore();
  const corrupt = path.join(work, 'corrupt-layout');
  await fs.cp(busybox, corrupt, { recursive: true });
  const info = await readLayout(corrupt);
  const layerFile = path.join(corrupt, 'blobs/sha256', info.manifest.layers[0]!.digest.slice(7));
  const fh = await fs.open(layerFile, 'r+');
  await fh.write(Buffer.from([0x42]), 0, 1, 1000); // flip a byte in the middle, same size
  await fh.close();
  try {
    await store.importPath(corrupt);
    assert.unreachable('import of a corrupt blob must fail');
  } catch (err) {
    assert.instance(err, UserError);
    assert.match((err as Error).message, /digest mismatch/);
    assert.match((err as Error).message, info.manifest.layers[0]!.digest);
  }
  assert.equal(await store.list(), []);
  assert.equal(await ls(path.join(root, 'blobs/sha256')), []);
  assert.equal(await ls(path.join(root, 'layers/sha256')), []);
  assert.equal(await ls(path.join(root, 'tmp')), []);
});

test('docker-archive tar import (docker save format)', async () => {
  const { store, root } = await freshStore();
  const archive = path.join(work, 'docker.tar');
  const { id } = await buildDockerArchive(busybox, archive, { repoTag: 'dockerbox:1.0', label: 'd' });
  const [rec] = await store.importPath(archive);
  assert.is(rec?.id, id);
  assert.is(rec?.format, 'docker');
  assert.equal(rec?.names, ['docker.io/library/dockerbox:1.0']);
  assert.is((await store.resolve('dockerbox:1.0'))?.id, id);
  assert.ok(await fs.stat(path.join(root, 'blobs/sha256', rec!.manifestDigest.slice(7))), 'synthesized manifest stored');
  const [rootfs] = await store.layerRootfsPaths(rec!);
  const { stdout } = await run(path.join(rootfs!, 'bin/busybox'), ['echo', 'from docker']);
  assert.is(stdout, 'from docker\n');
});

test('layer trees: a missing tree is re-unpacked; crash leftovers are cleaned when a store opens', async () => {
  const { store, root } = await freshStore();
  const [rec] = await store.importPath(busybox);
  const layerDir = path.join(root, 'layers/sha256', rec!.layers[0]!.slice(7));
  await fs.rm(path.join(layerDir, 'ok')); // as if a crash hit mid-unpack
  const [rootfs] = await store.layerRootfsPaths(rec!);
  assert.ok(await fs.stat(path.join(layerDir, 'ok')));
  assert.ok(await fs.stat(path.join(rootfs!, 'bin/busybox')));

  // Leftovers of a crashed writer: a staging dir, an orphan blob and layer, an incomplete tree.
  await fs.mkdir(path.join(root, 'tmp/stage-crashed/blobs'), { recursive: true });
  await fs.writeFile(path.join(root, 'blobs/sha256', 'ab'.repeat(32)), 'orphan');
  await fs.mkdir(path.join(root, 'layers/sha256', 'cd'.repeat(32), 'rootfs'), { recursive: true });
  await fs.writeFile(path.join(root, 'records', `.${rec!.id.slice(7)}.json.1234.tmp`), '{');
  const reopened = new ImageStore(root);
  await reopened.markUsed(rec!); // first locked operation opens the store
  assert.equal(await ls(path.join(root, 'tmp')), []);
  assert.not.ok((await ls(path.join(root, 'blobs/sha256'))).includes('ab'.repeat(32)));
  assert.equal(await ls(path.join(root, 'layers/sha256')), [rec!.layers[0]!.slice(7)]);
  assert.equal((await fs.readdir(path.join(root, 'records'))).sort(), [`${rec!.id.slice(7)}.json`]);
  assert.ok((await reopened.resolve('busybox'))?.lastUsedAt);
});

test('whiteouts: overlay mount hides a deleted file and an opaque dir\'s lower contents', async () => {
  const { store } = await freshStore();
  const layout = path.join(work, 'whiteout-layout');
  await buildWhiteoutImage(layout, 'localhost/whiteout:latest');
  const [rec] = await store.importPath(layout);
  const [l1, l2] = await store.layerRootfsPaths(rec!);
  const wh = await fs.lstat(path.join(l2!, 'etc/gone'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is a 0/0 char device');
  assert.is(fsops.lgetxattr(path.join(l2!, 'opq'), 'trusted.overlay.opaque')?.toString(), 'y');
  assert.equal(await ls(path.join(l2!, 'opq')), ['new'], 'no .wh. files left in the tree');
  assert.is((await fs.stat(path.join(l1!, 'etc/keep'))).nlink, 2, 'hardlink within the layer');
  assert.is(await fs.readFile(path.join(l1!, LONG_PATH), 'utf8'), 'long\n');

  const mnt = await tempDir('overlay');
  const [upper, wk, target] = ['upper', 'work', 'merged'].map((d) => path.join(mnt, d)) as [string, string, string];
  for (const d of [upper, wk, target]) await fs.mkdir(d);
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${l2}:${l1},upperdir=${upper},workdir=${wk}`, target]);
  try {
    assert.equal(await ls(path.join(target, 'etc')), ['keep', 'keep-link']);
    assert.equal(await ls(path.join(target, 'opq')), ['new']);
    assert.is(await fs.readFile(path.join(target, 'etc/keep'), 'utf8'), 'keep\n');
  } finally {
    await run('umount', [target]);
    await fs.rm(mnt, { recursive: true, force: true });
  }
});

test('multi-arch nested index: linux/amd64 is picked and named from the outer descriptor', async () => {
  const { store } = await freshStore();
  const layout = path.join(work, 'multiarch-layout');
  await buildMultiArchImage(busybox, layout, 'localhost/multi:1');
  const recs = await store.importPath(layout);
  assert.is(recs.length, 1);
  assert.is(recs[0]!.architecture, 'amd64');
  assert.equal(recs[0]!.config.Labels, { arch: 'amd64' });
  assert.equal(recs[0]!.names, ['localhost/multi:1']);
});

test('bad references and sources give user errors', async () => {
  const { store } = await freshStore();
  for (const bad of [path.join(work, 'nope'), work]) {
    try {
      await store.importPath(bad);
      assert.unreachable(`import ${bad} must fail`);
    } catch (err) {
      assert.instance(err, UserError, (err as Error).stack);
    }
  }
  try {
    await store.importPath(busybox, {});
    await store.resolve('   ');
    assert.unreachable('empty ref must throw');
  } catch (err) {
    assert.instance(err, UserError);
  }
});

test.run();
