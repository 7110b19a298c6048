/**
 * FolderChanges (inotify, drained synchronously) and PodFileCache on top of
 * it, as the api-service uses them: against real folders and files, so every
 * change below is a real kernel event.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FolderChanges } from '../runtime-rkt/folder-changes.js';
import { PodFileCache } from '../runtime-rkt/pod-cache.js';
import { makeSyntheticDataDir } from './helpers/api-client.js';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-folder-changes-'));
test.after(() => fs.rmSync(base, { recursive: true, force: true }));

test('a stamp holds until the folder changes: create, write, rename, remove, attributes', () => {
  const changes = new FolderChanges();
  const dir = fs.mkdtempSync(path.join(base, 'd-'));
  try {
    const steps: Array<[string, () => void]> = [
      ['create', () => fs.writeFileSync(path.join(dir, 'a'), '1')],
      ['write in place', () => fs.appendFileSync(path.join(dir, 'a'), '2')],
      ['rename inside', () => fs.renameSync(path.join(dir, 'a'), path.join(dir, 'b'))],
      ['chmod', () => fs.chmodSync(path.join(dir, 'b'), 0o600)],
      ['remove', () => fs.rmSync(path.join(dir, 'b'))],
      ['subfolder', () => fs.mkdirSync(path.join(dir, 'sub'))],
    ];
    for (const [what, change] of steps) {
      const stamp = changes.stamp(dir);
      changes.sync();
      assert.ok(changes.unchanged(dir, stamp), `${what}: unchanged before`);
      change();
      changes.sync(); // no waiting: the event is queued by the change itself
      assert.not.ok(changes.unchanged(dir, stamp), `${what}: seen at once`);
    }
    // A change inside a subfolder is not a change of this folder.
    const stamp = changes.stamp(dir);
    fs.writeFileSync(path.join(dir, 'sub', 'x'), '');
    changes.sync();
    assert.ok(changes.unchanged(dir, stamp), 'nested change ignored');
  } finally {
    changes.close();
  }
});

test('a folder that moves or goes away voids its stamp; a missing one throws ENOENT; forget unwatches', () => {
  const changes = new FolderChanges();
  try {
    const a = fs.mkdtempSync(path.join(base, 'm-'));
    const moved = `${a}-moved`;
    const sa = changes.stamp(a);
    fs.renameSync(a, moved);
    changes.sync();
    assert.not.ok(changes.unchanged(a, sa), 'moved away');
    // The same inode under its new name keeps its watch descriptor: watching it again must not confuse the two.
    const sm = changes.stamp(moved);
    changes.sync();
    assert.ok(changes.unchanged(moved, sm));
    assert.not.ok(changes.unchanged(a, sa));
    fs.rmSync(moved, { recursive: true });
    changes.sync();
    assert.not.ok(changes.unchanged(moved, sm), 'removed');
    assert.throws(() => changes.stamp(path.join(base, 'no-such-folder')), (err: Error & { code?: string }) => err.code === 'ENOENT');
    const b = fs.mkdtempSync(path.join(base, 'f-'));
    changes.stamp(b);
    const before = changes.watchedCount();
    changes.forget(b);
    changes.sync();
    assert.is(changes.watchedCount(), before - 1);
    assert.not.ok(changes.unchanged(b, {}));
  } finally {
    changes.close();
  }
});

test('a folder the reader may search but not read is not watched: the caller falls back (no error)', async () => {
  const dir = fs.mkdtempSync(path.join(base, 'x-'));
  fs.chmodSync(dir, 0o711);
  try {
    const { spawnSync } = await import('node:child_process');
    // As nobody (uid 65534), through a child: this test process is root and may read anything.
    const probe = `import('${new URL('../runtime-rkt/folder-changes.js', import.meta.url).href}').then(({ FolderChanges }) => { const c = new FolderChanges(); console.log(String(c.stamp(${JSON.stringify(dir)}))); c.close(); })`;
    fs.chmodSync(base, 0o755);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, '--input-type=module', '-e', probe], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout.trim(), 'undefined');
  } finally {
    fs.chmodSync(dir, 0o700);
  }
});

test('an overflowing queue voids every stamp', () => {
  const changes = new FolderChanges();
  const dir = fs.mkdtempSync(path.join(base, 'o-'));
  const quiet = fs.mkdtempSync(path.join(base, 'q-'));
  try {
    const sQuiet = changes.stamp(quiet);
    changes.stamp(dir);
    const max = Number(fs.readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'));
    // Each new empty file queues two events (IN_CREATE, IN_CLOSE_WRITE): this is more than the queue holds.
    for (let i = 0; i <= max / 2 + 1; i++) fs.writeFileSync(path.join(dir, `n${i}`), '');
    changes.sync();
    assert.not.ok(changes.unchanged(quiet, sQuiet), 'the untouched folder was voided too');
  } finally {
    changes.close();
  }
});

test('PodFileCache over FolderChanges: the same snapshot while nothing changes, a new exit record seen at once', async () => {
  const data = path.join(base, 'data');
  fs.mkdirSync(data);
  const made = makeSyntheticDataDir(data, { pods: 2, appsPerPod: 1, images: 1 });
  const changes = new FolderChanges();
  const cache = new PodFileCache(changes);
  try {
    const [p0, p1] = made.pods.map((p) => path.join(data, 'pods', p.state, p.uuid));
    const a = await cache.podDir(p0!);
    assert.ok((await cache.podDir(p0!)) === a, 'unchanged folder: the same snapshot object');
    const exits = path.join(p0!, 'apps', 'app0', 'exits');
    fs.mkdirSync(exits, { recursive: true });
    const before = await cache.exitRecords(p0!, 'app0');
    const at = BigInt(Date.now()) * 1_000_000n;
    fs.writeFileSync(path.join(exits, `${at}.json`), JSON.stringify({ at: Number(at), invocation: 'z', result: 'exit-code', code: 'exited', status: '3', oomKills: 0 }));
    cache.sync();
    const after = await cache.exitRecords(p0!, 'app0');
    assert.is(after.length, before.length + 1, 'no settling window with a watch');
    fs.writeFileSync(path.join(p0!, 'started'), `${at}\n`);
    cache.sync();
    const b = await cache.podDir(p0!);
    assert.ok(b !== a);
    assert.is(b.startedNs, at);
    // The pod moves to another lifecycle folder: its old path is gone.
    const moved = path.join(data, 'pods', 'garbage', path.basename(p0!));
    fs.mkdirSync(path.dirname(moved), { recursive: true });
    fs.renameSync(p0!, moved);
    cache.sync();
    const gone = await cache.podDir(p0!).then(() => 'read', (err: { code?: string }) => err.code);
    assert.is(gone, 'ENOENT', 'the old path is gone');
    assert.is((await cache.podDir(moved)).startedNs, at);
    const watched = changes.watchedCount();
    cache.retain([moved, p1!]);
    assert.ok(changes.watchedCount() < watched, 'folders of pods no longer listed are unwatched');
  } finally {
    changes.close();
  }
});

test.run();
