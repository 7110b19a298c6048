import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ImageStore } from '../runtime-rkt/image/store.js';
import { UserError } from '../common/errors.js';
import { tempDir, buildHostileImage, buildSymlinkReplaceImage, type HostileKind } from './helpers/images.js';
import { entry, writeLayerBlob, writeOciLayout } from '../runtime-rkt/image/demo-image.js';

let work: string;
test.before(async () => {
  work = await tempDir('image-hostile');
});
test.after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

const ls = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).sort();

/** Everything the store holds besides its empty skeleton. */
async function storeContents(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of ['records', 'blobs/sha256', 'layers/sha256', 'tmp']) for (const f of await ls(path.join(root, d))) out.push(`${d}/${f}`);
  return out;
}

const kinds: HostileKind[] = ['dotdot', 'abs-symlink', 'symlink-parent', 'hardlink-escape', 'device'];

for (const kind of kinds) {
  test(`hostile layer (${kind}) is refused and writes nothing outside the store`, async () => {
    const base = path.join(work, kind);
    const outside = path.join(base, 'outside');
    await fs.mkdir(outside, { recursive: true });
    const victim = path.join(outside, 'victim');
    await fs.writeFile(victim, 'original\n');
    const layout = path.join(base, 'layout');
    const { entry } = await buildHostileImage(layout, kind, outside);
    const root = path.join(base, 'store');
    const store = new ImageStore(root);

    try {
      await store.importPath(layout);
      assert.unreachable(`${kind} must be refused`);
    } catch (err) {
      assert.instance(err, UserError, (err as Error).stack);
      const msg = (err as Error).message;
      assert.ok(msg.includes(JSON.stringify(entry)), `error names the entry: ${msg}`);
      assert.match(msg, /layer sha256:[0-9a-f]{64}/);
      assert.match(msg, /refusing entry/);
    }
    // Nothing outside: the sentinel dir holds only the untouched victim, with one link.
    assert.equal(await ls(outside), ['victim']);
    assert.is(await fs.readFile(victim, 'utf8'), 'original\n');
    assert.is((await fs.stat(victim)).nlink, 1, 'no hardlink to the victim was made');
    // Nothing inside either: no record, no blob, no layer tree, no staging.
    assert.equal(await storeContents(root), []);
  });
}

// Variants that reach outside through a symlink by other entry types.
const throughLink: Array<[string, (outside: string) => ReturnType<typeof entry>[]]> = [
  ['hardlink target via a symlinked dir', (o) => [entry('evil', { type: 'symlink', linkname: o }), entry('stolen', { type: 'link', linkname: 'evil/victim' })]],
  ['whiteout via a symlinked dir', (o) => [entry('evil', { type: 'symlink', linkname: o }), entry('evil/.wh.victim', {}, Buffer.alloc(0))]],
  ['opaque marker on a symlink', (o) => [entry('evil', { type: 'symlink', linkname: o }), entry('evil/.wh..wh..opq', {}, Buffer.alloc(0))]],
  ['directory via a symlinked dir', (o) => [entry('evil', { type: 'symlink', linkname: o }), entry('evil/sub/', { type: 'directory' })]],
];
for (const [label, make] of throughLink) {
  test(`refused: ${label}`, async () => {
    const base = path.join(work, label.replace(/\W+/g, '-'));
    const outside = path.join(base, 'outside');
    await fs.mkdir(outside, { recursive: true });
    await fs.writeFile(path.join(outside, 'victim'), 'original\n');
    const layout = path.join(base, 'layout');
    const layer = await writeLayerBlob(layout, make(outside));
    await writeOciLayout(layout, [{ layers: [layer], runConfig: {}, annotations: { 'io.containerd.image.name': 'localhost/x:1' } }]);
    const root = path.join(base, 'store');
    try {
      await new ImageStore(root).importPath(layout);
      assert.unreachable('must be refused');
    } catch (err) {
      assert.instance(err, UserError, (err as Error).stack);
      assert.match((err as Error).message, /refusing entry "(evil\/|stolen")/);
    }
    assert.equal(await ls(outside), ['victim']);
    assert.is((await fs.stat(path.join(outside, 'victim'))).nlink, 1);
    assert.equal(await storeContents(root), []);
  });
}

test('device nodes are allowed for privileged imports (allowDevices)', async () => {
  const base = path.join(work, 'device-allowed');
  const outside = path.join(base, 'outside');
  await fs.mkdir(outside, { recursive: true });
  const layout = path.join(base, 'layout');
  await buildHostileImage(layout, 'device', outside);
  const store = new ImageStore(path.join(base, 'store'));
  const [rec] = await store.importPath(layout, { allowDevices: true });
  const [rootfs] = await store.layerRootfsPaths(rec!);
  const st = await fs.lstat(path.join(rootfs!, 'dev/disk'));
  assert.ok(st.isBlockDevice());
  assert.is(st.mode & 0o777, 0o660);
});

test('a file entry replacing a symlink replaces the link, never writes through it', async () => {
  const base = path.join(work, 'replace');
  await fs.mkdir(base, { recursive: true });
  const victim = path.join(base, 'victim');
  await fs.writeFile(victim, 'original\n');
  const layout = path.join(base, 'layout');
  await buildSymlinkReplaceImage(layout, victim);
  const store = new ImageStore(path.join(base, 'store'));
  const [rec] = await store.importPath(layout);
  const [rootfs] = await store.layerRootfsPaths(rec!);
  assert.is(await fs.readFile(victim, 'utf8'), 'original\n');
  const st = await fs.lstat(path.join(rootfs!, 'x'));
  assert.ok(st.isFile());
  assert.is(await fs.readFile(path.join(rootfs!, 'x'), 'utf8'), 'replaced\n');
});

test.run();
