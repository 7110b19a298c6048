import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import { createLogger } from '../common/log.js';
import { SqliteStore, ConflictError, GoneError, type ObjectStore, type Change } from '../control-plane/store.js';
import { EtcdStore } from '../control-plane/etcd-store.js';
import { parseStoreSpec } from '../control-plane/store-spec.js';
import { startTestEtcd, type TestEtcd } from './helpers/etcd.js';
import { waitFor } from './helpers/control-plane.js';

const log = createLogger('etcd-store-test', 'silent');
let etcd: TestEtcd;
let sqliteDir: string;
let prefixSeq = 0;
/** Each store under test gets a fresh prefix (etcd) or a fresh database (SQLite). */
const makers: Array<[string, () => Promise<ObjectStore>]> = [
  ['sqlite', async () => new SqliteStore(await fs.mkdtemp(`${sqliteDir}/db-`), log)],
  ['etcd', async () => new EtcdStore({ endpoints: [etcd.url], prefix: `/t${++prefixSeq}` }, log)],
];
const opened: ObjectStore[] = [];
async function open(make: () => Promise<ObjectStore>): Promise<ObjectStore> {
  const s = await make();
  opened.push(s);
  return s;
}

const pod = (name: string, extra: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', ...extra }, spec: { containers: [{ name: 'a', image: 'b' }] } });

test.before(async () => {
  etcd = await startTestEtcd();
  sqliteDir = await fs.mkdtemp('/var/tmp/stevedore-store-test-');
});
test.after(async () => {
  for (const s of opened) s.close();
  await etcd?.stop();
  if (sqliteDir) await fs.rm(sqliteDir, { recursive: true, force: true });
});

test('--store parsing: sqlite default, sqlite:PATH, etcd:URL,URL; bad input is refused with a hint', () => {
  assert.equal(parseStoreSpec(undefined, '/d'), { kind: 'sqlite', file: '/d/state.db' });
  assert.equal(parseStoreSpec('sqlite:x.db', '/d'), { kind: 'sqlite', file: '/d/x.db' });
  assert.equal(parseStoreSpec('etcd:http://127.0.0.1:2379,http://127.0.0.2:2379', '/d'), { kind: 'etcd', endpoints: ['http://127.0.0.1:2379', 'http://127.0.0.2:2379'] });
  for (const bad of ['etcd:', 'etcd:127.0.0.1:2379x', 'etcd:https://h:2379', 'etcd:http://h', 'mysql:x', 'sqlite:']) {
    assert.throws(() => parseStoreSpec(bad, '/d'), (e: Error) => /--store/.test(e.message), bad);
  }
});

// One table of behaviours, run against both stores: the etcd store must be a drop-in replacement.
for (const [kind, make] of makers) {
  test(`${kind}: create/get/list/update/delete semantics`, async () => {
    const s = await open(make);
    const rv0 = s.currentRv;
    const seen: Change[] = [];
    const unsub = s.subscribe((c) => seen.push(c));
    const a = s.create('pods', 'default', 'a', pod('a', { resourceVersion: '999' }));
    assert.ok(Number(a.metadata.resourceVersion) > rv0, 'create assigns a new resourceVersion (ignoring the one given)');
    assert.is(s.currentRv, Number(a.metadata.resourceVersion));
    assert.throws(() => s.create('pods', 'default', 'a', pod('a')), (e: Error) => e instanceof ConflictError);
    s.create('pods', 'other', 'b', pod('b', { namespace: 'other' }));
    s.create('pods', 'default', 'c', pod('c'));
    s.create('nodes', '', 'n1', { kind: 'Node', metadata: { name: 'n1' } });
    assert.equal(s.get('pods', 'default', 'a'), a);
    assert.is(s.get('pods', 'default', 'zz'), undefined);
    assert.equal(s.list('pods').map((o) => `${o.metadata.namespace}/${o.metadata.name}`), ['default/a', 'default/c', 'other/b'], 'ordered by namespace, name');
    assert.equal(s.list('pods', 'default').map((o) => o.metadata.name), ['a', 'c']);
    assert.equal(s.list('pods', '').map((o) => o.metadata.name), ['a', 'c', 'b'], 'an empty namespace lists them all');
    assert.equal(s.list('nodes').map((o) => o.metadata.name), ['n1']);
    assert.equal(s.list('services'), []);
    // Callers may change what they get: the store keeps its own copy.
    s.get('pods', 'default', 'a')!.metadata.labels = { changed: 'yes' };
    assert.is(s.get('pods', 'default', 'a')!.metadata.labels, undefined);

    const a2 = s.update('pods', 'default', 'a', { ...a, metadata: { ...a.metadata, labels: { x: '1' } } }, a.metadata.resourceVersion);
    assert.ok(Number(a2.metadata.resourceVersion) > Number(a.metadata.resourceVersion));
    assert.equal(s.get('pods', 'default', 'a'), a2);
    assert.throws(() => s.update('pods', 'default', 'a', a, a.metadata.resourceVersion), (e: Error) => e instanceof ConflictError, 'stale resourceVersion');
    assert.throws(() => s.update('pods', 'default', 'a', a, 'garbage'), (e: Error) => e instanceof ConflictError, 'non-numeric resourceVersion');
    assert.throws(() => s.update('pods', 'default', 'nope', a), (e: Error) => !(e instanceof ConflictError) && /not found/.test(e.message));
    const a3 = s.update('pods', 'default', 'a', { ...a2, metadata: { ...a2.metadata, labels: { x: '2' } } });
    assert.is(s.get('pods', 'default', 'a')!.metadata.labels.x, '2', 'an update without resourceVersion is unconditional');

    const gone = s.delete('pods', 'default', 'a');
    assert.ok(gone && Number(gone.metadata.resourceVersion) > Number(a3.metadata.resourceVersion), 'delete returns the object with the deletion\'s resourceVersion');
    assert.is(gone!.metadata.labels.x, '2');
    assert.is(s.get('pods', 'default', 'a'), undefined);
    assert.is(s.delete('pods', 'default', 'a'), undefined);
    assert.is(s.currentRv, Number(gone!.metadata.resourceVersion));

    unsub();
    assert.equal(seen.map((c) => `${c.type} ${c.resource} ${c.namespace}/${c.name}`), [
      'ADDED pods default/a', 'ADDED pods other/b', 'ADDED pods default/c', 'ADDED nodes /n1', 'MODIFIED pods default/a', 'MODIFIED pods default/a', 'DELETED pods default/a',
    ]);
    const mod = seen[4]!;
    assert.is(mod.prev!.metadata.resourceVersion, a.metadata.resourceVersion, 'MODIFIED carries the previous object');
    assert.is(mod.object.metadata.resourceVersion, a2.metadata.resourceVersion);
    assert.is(seen[6]!.prev!.metadata.labels.x, '2');
    assert.ok(seen.every((c, i) => i === 0 || c.rv > seen[i - 1]!.rv), 'changes in increasing resourceVersion');

    // A watch from an old resourceVersion replays the changes of its resource after it.
    const replay = s.changesSince('pods', rv0);
    assert.equal(replay.map((c) => `${c.type} ${c.name} ${c.object.metadata.resourceVersion}`), seen.filter((c) => c.resource === 'pods').map((c) => `${c.type} ${c.name} ${c.rv}`));
    assert.equal(s.changesSince('pods', Number(a2.metadata.resourceVersion)).map((c) => c.type), ['MODIFIED', 'DELETED']);
    // After compaction an older resourceVersion is Gone.
    s.compact(Number(a2.metadata.resourceVersion));
    assert.is(s.oldestWatchableRv, Number(a2.metadata.resourceVersion));
    assert.throws(() => s.changesSince('pods', rv0), (e: Error) => e instanceof GoneError);
    assert.equal(s.changesSince('pods', Number(a2.metadata.resourceVersion)).map((c) => c.type), ['MODIFIED', 'DELETED']);
  });
}

// The shared read path (getShared/listShared): parsed once, frozen, replaced by every write.
for (const [kind, make] of makers) {
  test(`${kind}: shared objects are frozen all the way down, follow every write, and never leak into copies`, async () => {
    const s = await open(make);
    const a = s.create('pods', 'default', 'a', pod('a', { labels: { v: '1' } }));
    s.create('pods', 'default', 'c', pod('c'));
    const shared = s.getShared('pods', 'default', 'a')!;
    assert.ok(Object.isFrozen(shared) && Object.isFrozen(shared.metadata) && Object.isFrozen(shared.metadata.labels) && Object.isFrozen(shared.spec.containers[0]), 'deep-frozen');
    assert.throws(() => { shared.metadata.labels.v = 'changed'; }, (e: Error) => e instanceof TypeError, 'a reader cannot change it');
    assert.is(s.getShared('pods', 'default', 'a'), shared, 'parsed once: the same object until a write');
    assert.equal(shared, a);
    // get and list still hand out copies the caller may change, and those changes reach nobody else.
    const copy = s.get('pods', 'default', 'a')!;
    assert.not.ok(Object.isFrozen(copy));
    copy.metadata.labels.v = 'mine';
    assert.is(s.getShared('pods', 'default', 'a')!.metadata.labels.v, '1');
    assert.is(s.list('pods')[0]!.metadata.labels.v, '1');
    // Every write path replaces the shared object: update, create, delete.
    const a2 = s.update('pods', 'default', 'a', { ...a, metadata: { ...a.metadata, labels: { v: '2' } } });
    const after = s.getShared('pods', 'default', 'a')!;
    assert.is.not(after, shared);
    assert.is(after.metadata.labels.v, '2');
    assert.is(after.metadata.resourceVersion, a2.metadata.resourceVersion);
    assert.is(shared.metadata.labels.v, '1', 'an object handed out earlier stays as it was read');
    s.create('pods', 'default', 'b', pod('b'));
    assert.equal(s.listShared('pods').map((o) => `${o.metadata.name}@${o.metadata.labels?.v ?? ''}`), ['a@2', 'b@', 'c@'], 'ordered by name, new objects in their place');
    assert.ok(s.listShared('pods').every((o) => Object.isFrozen(o)));
    s.delete('pods', 'default', 'b');
    assert.is(s.getShared('pods', 'default', 'b'), undefined);
    assert.equal(s.listShared('pods').map((o) => o.metadata.name), ['a', 'c']);
    assert.equal(s.listShared('pods', 'other'), []);
    assert.equal(s.listShared('pods', 'default').map((o) => o.metadata.name), ['a', 'c']);
    // A failed conditional write changes nothing.
    assert.throws(() => s.update('pods', 'default', 'a', { ...a, metadata: { ...a.metadata, labels: { v: 'stale' } } }, a.metadata.resourceVersion), (e: Error) => e instanceof ConflictError);
    assert.is(s.getShared('pods', 'default', 'a')!.metadata.labels.v, '2');
  });
}

test('sqlite: the objects read after a reopen are the database\'s (the view is loaded from it)', async () => {
  const dir = await fs.mkdtemp(`${sqliteDir}/reopen-`);
  const first = new SqliteStore(dir, log);
  first.create('configmaps', 'default', 'x', { kind: 'ConfigMap', metadata: { name: 'x', namespace: 'default' }, data: { k: '1' } });
  first.close();
  const again = await open(async () => new SqliteStore(dir, log));
  assert.is(again.getShared('configmaps', 'default', 'x')!.data.k, '1');
  assert.equal(again.list('configmaps').map((o) => o.metadata.name), ['x']);
});

test('etcd: resourceVersion is the etcd revision; the value in etcd carries none', async () => {
  const s = await open(makers[1]![1]);
  const o = s.create('configmaps', 'default', 'rv', { kind: 'ConfigMap', metadata: { name: 'rv', namespace: 'default' }, data: { k: 'v' } });
  const res = await fetch(`${etcd.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(`/t${prefixSeq}/configmaps/default/rv`).toString('base64') }) });
  const body = (await res.json()) as { header: { revision: string }; kvs: Array<{ mod_revision: string; value: string }> };
  assert.is(body.kvs.length, 1, 'kube-apiserver\'s key layout: PREFIX/RESOURCE/NAMESPACE/NAME');
  assert.is(o.metadata.resourceVersion, body.kvs[0]!.mod_revision);
  assert.is(body.header.revision, body.kvs[0]!.mod_revision);
  const stored = JSON.parse(Buffer.from(body.kvs[0]!.value, 'base64').toString());
  assert.is(stored.metadata.resourceVersion, undefined);
  assert.equal(stored.data, { k: 'v' });
});

test('etcd: a second store on the same etcd sees the first one\'s writes through the watch; conflicts across them', async () => {
  const prefix = `/shared${++prefixSeq}`;
  const one = await open(async () => new EtcdStore({ endpoints: [etcd.url], prefix }, log));
  const two = await open(async () => new EtcdStore({ endpoints: [etcd.url], prefix }, log));
  const heard: Change[] = [];
  two.subscribe((c) => heard.push(c));
  const made = one.create('pods', 'default', 'p', pod('p'));
  // The other store learns of it asynchronously, from its watch.
  const deadline = Date.now() + 5000;
  while (!heard.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.is(heard.length, 1);
  assert.is(heard[0]!.type, 'ADDED');
  assert.equal(two.get('pods', 'default', 'p'), made);
  assert.is(two.currentRv, Number(made.metadata.resourceVersion));
  // Both write against the same resourceVersion: one wins, the other gets a conflict (no lost update).
  one.update('pods', 'default', 'p', { ...made, metadata: { ...made.metadata, labels: { by: 'one' } } }, made.metadata.resourceVersion);
  assert.throws(() => two.update('pods', 'default', 'p', { ...made, metadata: { ...made.metadata, labels: { by: 'two' } } }, made.metadata.resourceVersion), (e: Error) => e instanceof ConflictError);
  // After a conflict the loser already sees the winner's object (its retry reads the new resourceVersion).
  assert.is(two.get('pods', 'default', 'p')!.metadata.labels.by, 'one');
  // The shared (cached) objects follow the other control plane's writes too: each etcd watch event replaces them.
  const sharedBefore = two.getShared('pods', 'default', 'p')!;
  assert.is(sharedBefore.metadata.labels.by, 'one');
  const cur = one.get('pods', 'default', 'p')!;
  one.update('pods', 'default', 'p', { ...cur, metadata: { ...cur.metadata, labels: { by: 'one again' } } });
  const until = Date.now() + 5000;
  while (two.getShared('pods', 'default', 'p')!.metadata.labels.by !== 'one again' && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.is(two.getShared('pods', 'default', 'p')!.metadata.labels.by, 'one again');
  assert.is(two.listShared('pods')[0]!.metadata.labels.by, 'one again');
  assert.is(sharedBefore.metadata.labels.by, 'one');
  one.delete('pods', 'default', 'p');
  while (two.getShared('pods', 'default', 'p') && Date.now() < until + 5000) await new Promise((r) => setTimeout(r, 20));
  assert.is(two.getShared('pods', 'default', 'p'), undefined);
  assert.equal(two.listShared('pods'), []);
  one.create('pods', 'default', 'p', pod('p'));
  assert.throws(() => two.create('pods', 'default', 'p', pod('p')), (e: Error) => e instanceof ConflictError);
});

test('etcd: close and reopen keeps objects and resourceVersions; the watch log is replayed from etcd\'s history (up to retain revisions)', async () => {
  const prefix = `/reopen${++prefixSeq}`;
  const first = new EtcdStore({ endpoints: [etcd.url], prefix }, log);
  const a = first.create('pods', 'default', 'a', pod('a'));
  const b = first.create('pods', 'default', 'b', pod('b'));
  first.delete('pods', 'default', 'b');
  const rv = first.currentRv;
  first.close();
  const again = await open(async () => new EtcdStore({ endpoints: [etcd.url], prefix }, log));
  assert.equal(again.list('pods'), [a]);
  assert.is(again.currentRv, rv);
  // A watch from before the reopening goes on: the changes after it come from etcd's history, with the objects before them.
  const replayed = again.changesSince('pods', Number(a.metadata.resourceVersion));
  assert.equal(replayed.map((c) => `${c.type} ${c.name} ${c.rv}`), [`ADDED b ${b.metadata.resourceVersion}`, `DELETED b ${rv}`]);
  assert.is(replayed[1]!.prev?.metadata.resourceVersion, b.metadata.resourceVersion);
  assert.equal(again.changesSince('pods', rv), []);
  // Only `retain` revisions are replayed: older resourceVersions are Gone (relist).
  const short = await open(async () => new EtcdStore({ endpoints: [etcd.url], prefix, retain: 1 }, log));
  assert.equal(short.changesSince('pods', rv - 1).map((c) => c.type), ['DELETED']);
  assert.throws(() => short.changesSince('pods', Number(a.metadata.resourceVersion)), (e: Error) => e instanceof GoneError, 'older than the replayed history: relist');
  short.close();
  const a2 = again.update('pods', 'default', 'a', a, a.metadata.resourceVersion);
  assert.ok(Number(a2.metadata.resourceVersion) > rv);
});

test('etcd: compact compacts etcd too; a store nobody answers fails with a clear error', async () => {
  const s = await open(makers[1]![1]);
  const o = s.create('pods', 'default', 'c', pod('c'));
  s.update('pods', 'default', 'c', o);
  s.compact(s.currentRv);
  const res = await fetch(`${etcd.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(`/t${prefixSeq}/pods/default/c`).toString('base64'), revision: o.metadata.resourceVersion }) });
  const body = (await res.json()) as { error?: string; message?: string };
  assert.match(JSON.stringify(body), /compacted/);

  const refused = Date.now();
  assert.throws(() => new EtcdStore({ endpoints: ['http://127.0.0.1:9'], timeoutMs: 5000 }, log), (e: Error) => /etcd at http:\/\/127\.0\.0\.1:9 cannot be reached: is it running\?/.test(e.message));
  assert.ok(Date.now() - refused < 6000);
  // A listener that never speaks: the call times out rather than hanging the control plane.
  const mute = net.createServer(() => undefined);
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (mute.address() as net.AddressInfo).port;
    const started = Date.now();
    assert.throws(() => new EtcdStore({ endpoints: [`http://127.0.0.1:${port}`], timeoutMs: 1500 }, log), (e: Error) => new RegExp(`etcd at http://127.0.0.1:${port} (did not answer within 2 s|cannot be reached): is it running\\?`).test(e.message));
    assert.ok(Date.now() - started < 5000);
  } finally {
    mute.close();
  }
});

test('etcd: restarted under the stores, etcd is followed again: writes go through and the other store hears them', async () => {
  const prefix = `/restart${++prefixSeq}`;
  const one = await open(async () => new EtcdStore({ endpoints: [etcd.url], prefix }, log));
  const two = await open(async () => new EtcdStore({ endpoints: [etcd.url], prefix }, log));
  const a = one.create('pods', 'default', 'a', pod('a'));
  await etcd.restart(true);
  // The client reconnects on its own; the first calls may fail while etcd comes back.
  const b = await waitFor('a write after the restart', async () => {
    try {
      return one.create('pods', 'default', 'b', pod('b'));
    } catch {
      return undefined;
    }
  }, 20_000);
  assert.ok(Number(b.metadata.resourceVersion) > Number(a.metadata.resourceVersion));
  // The other store's watch resumed from where it was: it hears both, in order.
  await waitFor('the second store to hear b', async () => two.get('pods', 'default', 'b') !== undefined || undefined, 20_000);
  assert.equal(two.list('pods').map((o) => `${o.metadata.name} ${o.metadata.resourceVersion}`), [`a ${a.metadata.resourceVersion}`, `b ${b.metadata.resourceVersion}`]);
  assert.is(two.currentRv, Number(b.metadata.resourceVersion));
});

test.run();
