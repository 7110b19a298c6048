/**
 * configMap, secret, downwardAPI and projected volumes, the agent's half:
 * which files a volume holds (keys, items paths and modes, optional), and the
 * kubelet's atomic writer (`..data` swap, user-visible links, unchanged
 * payloads write nothing), against a temporary directory; a secret volume's
 * own tmpfs (a real mount under /var/tmp, gone at the end). On a real node:
 * test/env-volumes.test.ts.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1ConfigMap, V1Pod, V1Secret, V1Volume } from '@kubernetes/client-node';
import { invalidPayloadPath, writeAtomically, type Payload } from '../agent/atomic-writer.js';
import { holdsSecrets, volumePayload, type VolumeContext } from '../agent/volume-sources.js';
import type { PodObjects } from '../agent/pod-objects.js';
import { validatePod } from '../runtime-api/pod-spec.js';
import { VolumeManager } from '../agent/volumes.js';
import { fsops } from '../common/fsops.js';
import type { Logger } from '../common/log.js';

const objects: PodObjects = {
  namespace: 'ns',
  async configMap(name) {
    return name === 'cfg' ? { metadata: { name }, data: { 'a.conf': 'A', b: 'B' }, binaryData: { bin: Buffer.from([0, 1, 2]).toString('base64') } } as V1ConfigMap : undefined;
  },
  async secret(name) {
    return name === 'sec' ? { metadata: { name }, data: { token: Buffer.from('t0k3n').toString('base64') } } as V1Secret : undefined;
  },
};
const ctx: VolumeContext = { hostIP: '192.0.2.1', node: { cpuMillis: 2000, memoryBytes: 2 ** 30, ephemeralStorageBytes: 1e9 } };
const pod: V1Pod = { metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { b: '2', a: '1' }, annotations: { note: 'x' } }, spec: { containers: [{ name: 'c', image: 'i', resources: { limits: { memory: '32Mi' } } }] } };

const files = (p: Payload) => Object.fromEntries([...p].map(([k, v]) => [k, `${v.data.toString('utf8')} ${v.mode.toString(8)}`]));
const payloadOf = (v: V1Volume) => volumePayload(pod, v, objects, ctx);
const failure = (v: V1Volume) => payloadOf(v).then(() => 'made', (err: Error) => `${err.name}: ${err.message}`);

test('configMap and secret volumes: every key, or the listed items at their paths and modes', async () => {
  assert.equal(files(await payloadOf({ name: 'v', configMap: { name: 'cfg' } })), { 'a.conf': 'A 644', b: 'B 644', bin: '\u0000\u0001\u0002 644' });
  assert.equal(files(await payloadOf({ name: 'v', configMap: { name: 'cfg', defaultMode: 0o600, items: [{ key: 'b', path: 'deep/dir/b.txt' }, { key: 'a.conf', path: 'a', mode: 0o444 }] } })), { 'deep/dir/b.txt': 'B 600', a: 'A 444' });
  assert.equal(files(await payloadOf({ name: 'v', secret: { secretName: 'sec', defaultMode: 0o400 } })), { token: 't0k3n 400' });
  assert.equal(files(await payloadOf({ name: 'v', configMap: { name: 'nope', optional: true } })), {}, 'an optional missing ConfigMap: an empty volume');
  assert.equal(files(await payloadOf({ name: 'v', configMap: { name: 'cfg', optional: true, items: [{ key: 'zzz', path: 'z' }] } })), {});
  assert.is(await failure({ name: 'v', configMap: { name: 'nope' } }), 'VolumeSetupError: MountVolume.SetUp failed for volume "v" : configmap "nope" not found');
  assert.is(await failure({ name: 'v', secret: { secretName: 'nope' } }), 'VolumeSetupError: MountVolume.SetUp failed for volume "v" : secret "nope" not found');
  assert.is(await failure({ name: 'v', configMap: { name: 'cfg', items: [{ key: 'zzz', path: 'z' }] } }), 'VolumeSetupError: MountVolume.SetUp failed for volume "v" : configmap references non-existent config key: zzz');
  assert.is(await failure({ name: 'v', secret: { secretName: 'sec', items: [{ key: 'zzz', path: 'z' }] } }), 'VolumeSetupError: MountVolume.SetUp failed for volume "v" : references non-existent secret key: zzz');
});

test('downwardAPI and projected volumes', async () => {
  const downward = { items: [
    { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
    { path: 'a', fieldRef: { fieldPath: "metadata.labels['a']" } }, { path: 'mem', resourceFieldRef: { containerName: 'c', resource: 'limits.memory', divisor: '1Mi' }, mode: 0o400 },
  ] };
  assert.equal(files(await payloadOf({ name: 'v', downwardAPI: downward })), { labels: 'a="1"\nb="2" 644', name: 'p 644', a: '1 644', mem: '32 400' });
  const projected: V1Volume = { name: 'v', projected: { defaultMode: 0o640, sources: [
    { configMap: { name: 'cfg', items: [{ key: 'b', path: 'cfg/b' }] } }, { secret: { name: 'sec' } }, { downwardAPI: { items: [{ path: 'ns', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
    { secret: { name: 'nope', optional: true } },
  ] } };
  assert.equal(files(await payloadOf(projected)), { 'cfg/b': 'B 640', token: 't0k3n 640', ns: 'ns 640' });
  assert.ok(holdsSecrets(projected), 'a projection with a Secret lives on a tmpfs');
  assert.not.ok(holdsSecrets({ name: 'v', configMap: { name: 'cfg' } }));
  assert.match(await failure({ name: 'v', projected: { sources: [{ serviceAccountToken: { path: 't' } }] } }), /serviceAccountToken projections need the API server/);
  // A token from the API (TokenRequest), at its path with the volume's mode, on a tmpfs.
  const asked: unknown[] = [];
  const withTokens: PodObjects = { ...objects, async serviceAccountToken(p, audience, seconds) { asked.push([p.metadata?.name, audience, seconds]); return `tok-${audience ?? 'api'}-${seconds}`; } };
  const tokenVolume: V1Volume = { name: 'v', projected: { defaultMode: 0o600, sources: [{ serviceAccountToken: { path: 'token' } }, { serviceAccountToken: { path: 'vault/token', audience: 'vault', expirationSeconds: 900 } }] } };
  assert.equal(files(await volumePayload(pod, tokenVolume, withTokens, ctx)), { token: 'tok-api-3600 600', 'vault/token': 'tok-vault-900 600' });
  assert.equal(asked, [['p', undefined, 3600], ['p', 'vault', 900]]);
  assert.ok(holdsSecrets(tokenVolume), 'a token lives on a tmpfs');
  const failing: PodObjects = { ...objects, async serviceAccountToken() { throw new Error('serviceaccounts "default" is forbidden'); } };
  assert.is(await volumePayload(pod, tokenVolume, failing, ctx).then(() => 'made', (err: Error) => err.message), 'MountVolume.SetUp failed for volume "v" : failed to fetch token: serviceaccounts "default" is forbidden');
});

test('validation: paths, modes and fields of these volumes, serviceAccountToken\'s path and duration', () => {
  const check = (volumes: unknown[]) => {
    try {
      validatePod({ metadata: { name: 'p' }, spec: { volumes, containers: [{ name: 'c', image: 'i' }] } }, { strict: false });
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };
  const msg = check([
    { name: 'a', configMap: { name: 'x', defaultMode: 0o1000, items: [{ key: 'k', path: '../escape' }, { key: 'k', path: '/abs' }, { key: 'k', path: '..hidden' }] } },
    { name: 'b', secret: { items: [{ key: 'k', path: 'ok', mode: -1 }] } },
    { name: 'c', downwardAPI: { items: [{ path: 'x', fieldRef: { fieldPath: 'status.podIP' } }, { path: 'y', resourceFieldRef: { resource: 'limits.cpu' } }] } },
    { name: 'd', projected: { sources: [{ serviceAccountToken: { path: '../token', expirationSeconds: 60 } }, { configMap: { name: 'x' }, secret: { name: 'y' } }] } },
  ]);
  for (const expected of [
    'spec.volumes[0].configMap.defaultMode: Invalid value: 512',
    'spec.volumes[0].configMap.items[0].path: Invalid value: "../escape": must not contain \'..\'',
    'spec.volumes[0].configMap.items[1].path: Invalid value: "/abs": must be a relative path',
    'spec.volumes[0].configMap.items[2].path: Invalid value: "..hidden": must not start with \'..\'',
    'spec.volumes[1].secret.secretName: Required value',
    'spec.volumes[1].secret.items[0].mode: Invalid value: -1',
    'spec.volumes[2].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: "status.podIP"',
    'spec.volumes[2].downwardAPI.items[1].resourceFieldRef.containerName: Required value',
    'spec.volumes[3].projected.sources[0].serviceAccountToken.path: Invalid value: "../token": must not contain \'..\'',
    'spec.volumes[3].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes',
    'spec.volumes[3].projected.sources[1]: Invalid value: must specify exactly one of',
  ]) assert.ok(msg.includes(expected), `${expected}\nin:\n${msg}`);
  assert.is(check([
    { name: 'a', configMap: { name: 'x', defaultMode: 0o644, optional: true, items: [{ key: 'k', path: 'dir/file', mode: 0o400 }] } },
    { name: 'b', secret: { secretName: 's' } },
    { name: 'c', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'cpu', resourceFieldRef: { containerName: 'c', resource: 'requests.cpu', divisor: '1m' } }] } },
    { name: 'd', projected: { defaultMode: 0o440, sources: [{ configMap: { name: 'x' } }, { secret: { name: 's', items: [{ key: 'k', path: 'k' }] } }, { downwardAPI: { items: [{ path: 'n', fieldRef: { fieldPath: 'metadata.name' } }] } }, { serviceAccountToken: { path: 'token', audience: 'vault', expirationSeconds: 600 } }] } },
  ]), '');
});

const payload = (entries: Record<string, string>, mode = 0o644): Payload => new Map(Object.entries(entries).map(([k, v]) => [k, { data: Buffer.from(v), mode }]));

test('atomic writer: files behind ..data, user-visible links, one swap per change, nothing for an unchanged payload', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'atomic-writer-'));
  try {
    assert.ok(await writeAtomically(dir, payload({ a: '1', 'sub/b': '2' }, 0o600)));
    const first = await fs.readlink(path.join(dir, '..data'));
    assert.match(first, /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\./);
    assert.is(await fs.readlink(path.join(dir, 'a')), '..data/a');
    assert.is(await fs.readlink(path.join(dir, 'sub')), '..data/sub');
    assert.is(await fs.readFile(path.join(dir, 'sub/b'), 'utf8'), '2');
    assert.is((await fs.stat(path.join(dir, 'a'))).mode & 0o777, 0o600, 'the mode asked for, whatever the umask');
    assert.not.ok(await writeAtomically(dir, payload({ a: '1', 'sub/b': '2' }, 0o600)), 'unchanged: nothing written');
    assert.is(await fs.readlink(path.join(dir, '..data')), first);

    // A reader holding the old file keeps reading old content; new opens see the new one.
    const held = await fs.open(path.join(dir, 'a'));
    assert.ok(await writeAtomically(dir, payload({ a: '1b', c: '3' }, 0o600)));
    assert.is((await held.readFile('utf8')), '1');
    await held.close();
    const second = await fs.readlink(path.join(dir, '..data'));
    assert.is.not(second, first);
    assert.is(await fs.readFile(path.join(dir, 'a'), 'utf8'), '1b');
    assert.is(await fs.readFile(path.join(dir, 'c'), 'utf8'), '3');
    assert.equal((await fs.readdir(dir)).sort(), ['..data', second, 'a', 'c'].sort(), 'the old timestamped dir and the vanished key are gone');
    assert.ok(await writeAtomically(dir, payload({ a: '1b', c: '3' }, 0o644)), 'a mode change is a change');
    await writeAtomically(dir, new Map());
    assert.equal((await fs.readdir(dir)).filter((n) => !n.startsWith('..')), [], 'an empty payload leaves no user-visible names');
    await writeAtomically(dir, payload({ '../x': 'no' })).then(() => assert.unreachable('a path out of the volume is refused'), (err: Error) => assert.match(err.message, /must not contain '\.\.'/));
    assert.is(invalidPayloadPath('..data'), "must not start with '..'");
    assert.is(invalidPayloadPath('ok/fine'), undefined);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('cleanup: the volumes of pods neither in the API nor in the runtime go, the others stay', async () => {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'volume-cleanup-'));
  try {
    const logged: string[] = [];
    const log = { info: (_: unknown, m: string) => logged.push(m), warn: (_: unknown, m: string) => logged.push(m) } as unknown as Logger;
    const volumes = new VolumeManager(dataDir, log);
    for (const uid of ['kept', 'gone']) {
      await fs.mkdir(path.join(volumes.podDir(uid), 'volumes', 'kubernetes.io~configmap', 'cfg'), { recursive: true });
      await writeAtomically(path.join(volumes.podDir(uid), 'volumes', 'kubernetes.io~configmap', 'cfg'), payload({ a: '1' }));
    }
    await volumes.cleanup(new Set(['kept']));
    assert.equal(await fs.readdir(path.join(dataDir, 'agent', 'pods')), ['kept']);
    assert.is(await fs.readFile(path.join(volumes.podDir('kept'), 'volumes', 'kubernetes.io~configmap', 'cfg', 'a'), 'utf8'), '1');
    assert.equal(logged, ['pod volumes removed']);
  } finally {
    await fs.rm(dataDir, { recursive: true, force: true });
  }
});

test('a secret volume on a tmpfs of its own (nosuid, nodev), unmounted and removed with its pod', async () => {
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-volume-tmpfs-');
  const volumes = new VolumeManager(dataDir, { info: () => undefined, warn: () => undefined } as unknown as Logger);
  const dir = path.join(volumes.podDir('u'), 'volumes', 'kubernetes.io~secret', 'sec');
  const mountOf = async () => (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')).find((f) => f[4] === dir);
  try {
    const withSecret: V1Pod = { ...pod, spec: { ...pod.spec!, volumes: [{ name: 'sec', secret: { secretName: 'sec' } }] } };
    const runtimePod = { spec: { containers: [{ name: 'c', volumeMounts: [{ name: 'sec', mountPath: '/s' }] }], volumes: [{ name: 'sec' }] } } as unknown as Parameters<VolumeManager['setUp']>[1];
    await volumes.setUp(withSecret, runtimePod, objects, ctx);
    const mount = await mountOf();
    assert.ok(mount, 'the volume is a mount point');
    assert.is(mount![mount!.indexOf('-') + 1], 'tmpfs');
    assert.equal(mount![5]!.split(',').filter((o) => o === 'nosuid' || o === 'nodev').sort(), ['nodev', 'nosuid']);
    assert.is(await fs.readFile(path.join(dir, 'token'), 'utf8'), 't0k3n');
    await volumes.cleanup(new Set());
    assert.not.ok(await mountOf(), 'unmounted');
    assert.equal(await fs.readdir(path.join(dataDir, 'agent', 'pods')), []);
  } finally {
    if (await mountOf()) fsops.umount(dir);
    await fs.rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
