/**
 * v1 ConfigMaps in the control plane, driven by the real kubectl:
 * `kubectl create configmap --from-literal/--from-file` (kubectl sends
 * protobuf), the DATA column, binaryData, kube-apiserver's validation
 * (config keys, a key in both maps, immutable), and the node authorizer: a
 * node reads a ConfigMap only when a pod bound to it references it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTestControlPlane, type TestCP, type ClientCert } from './helpers/control-plane.js';

let t: TestCP;
let scratch: string;
let nodeA: ClientCert;
test.before(async () => {
  t = await startTestControlPlane();
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-cm-'));
  nodeA = await t.nodeCert('node-a');
});
test.after(async () => {
  await t?.close();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

const cm = (name: string, body: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, ...body });

test('kubectl create configmap --from-literal and --from-file (protobuf); get, table, delete', async () => {
  const file = path.join(scratch, 'app.properties');
  await fs.writeFile(file, 'color=blue\nsize=3\n');
  const bin = path.join(scratch, 'blob.bin');
  await fs.writeFile(bin, Buffer.from([0xff, 0xfe, 0x00, 0x01]));
  const c = await t.kubectl(['create', 'configmap', 'settings', '--from-literal=mode=fast', '--from-literal=level=3', `--from-file=${file}`, `--from-file=${bin}`]);
  assert.is(c.exitCode, 0, c.stderr);
  assert.match(c.stdout, 'configmap/settings created');
  const got = JSON.parse((await t.kubectl(['get', 'cm', 'settings', '-o', 'json'])).stdout);
  assert.equal(got.data, { mode: 'fast', level: '3', 'app.properties': 'color=blue\nsize=3\n' });
  assert.equal(got.binaryData, { 'blob.bin': Buffer.from([0xff, 0xfe, 0x00, 0x01]).toString('base64') });
  const list = await t.kubectl(['get', 'configmaps']);
  assert.is(list.exitCode, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+DATA\s+AGE/);
  assert.match(list.stdout, /^settings\s+4\s+\d+s/m);
  const del = await t.kubectl(['delete', 'configmap', 'settings']);
  assert.is(del.exitCode, 0, del.stderr);
  assert.match((await t.kubectl(['get', 'cm', 'settings'])).stderr, /configmaps "settings" not found/);
});

test('validation: bad key, a key in data and binaryData, non-base64 binaryData, non-string value', async () => {
  const badKey = await t.api('POST', '/api/v1/namespaces/default/configmaps', cm('bad-key', { data: { 'a/b': 'x' } }));
  assert.is(badKey.status, 422);
  assert.match(badKey.body.message, /data\[a\/b\]: Invalid value: "a\/b": a valid config key/);
  const dup = await t.api('POST', '/api/v1/namespaces/default/configmaps', cm('dup', { data: { k: 'x' }, binaryData: { k: 'eA==' } }));
  assert.is(dup.status, 422);
  assert.match(dup.body.message, /binaryData\[k\]: Invalid value: "k": duplicate of key present in data/);
  const b64 = await t.api('POST', '/api/v1/namespaces/default/configmaps', cm('b64', { binaryData: { k: '!!' } }));
  assert.is(b64.status, 400);
  assert.match(b64.body.message, /binaryData\[k\] is not valid base64/);
  const num = await t.api('POST', '/api/v1/namespaces/default/configmaps', cm('num', { data: { k: 3 } }));
  assert.is(num.status, 400);
  for (const name of ['bad-key', 'dup', 'b64', 'num']) assert.is((await t.api('GET', `/api/v1/namespaces/default/configmaps/${name}`)).status, 404);
});

test('immutable: data and the flag itself cannot change; other ConfigMaps can', async () => {
  assert.is((await t.api('POST', '/api/v1/namespaces/default/configmaps', cm('frozen', { data: { k: 'v' }, immutable: true }))).status, 201);
  const change = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/frozen', { data: { k: 'w' } }, { contentType: 'application/merge-patch+json' });
  assert.is(change.status, 422);
  assert.match(change.body.message, /data: Forbidden: field is immutable when `immutable` is set/);
  const thaw = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/frozen', { immutable: false }, { contentType: 'application/merge-patch+json' });
  assert.is(thaw.status, 422);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/configmaps/frozen')).body.data.k, 'v');
  assert.is((await t.api('POST', '/api/v1/namespaces/default/configmaps', cm('mutable', { data: { k: 'v' } }))).status, 201);
  const ok = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/mutable', { data: { k: 'w' } }, { contentType: 'application/merge-patch+json' });
  assert.is(ok.status, 200, ok.text);
  assert.is(ok.body.data.k, 'w');
});

test('a node reads a ConfigMap only when a pod bound to it references it (volume, env, envFrom, projected)', async () => {
  for (const name of ['vol', 'env', 'from', 'proj', 'unrelated']) assert.is((await t.api('POST', '/api/v1/namespaces/default/configmaps', cm(name, { data: { k: 'v' } }))).status, 201);
  const pod = {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'refs' },
    spec: {
      nodeName: 'node-a',
      containers: [{ name: 'main', image: 'busybox', env: [{ name: 'K', valueFrom: { configMapKeyRef: { name: 'env', key: 'k' } } }], envFrom: [{ configMapRef: { name: 'from' } }] }],
      volumes: [{ name: 'v', configMap: { name: 'vol' } }, { name: 'p', projected: { sources: [{ configMap: { name: 'proj' } }] } }],
    },
  };
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod)).status, 201);
  for (const name of ['vol', 'env', 'from', 'proj']) {
    const r = await t.api('GET', `/api/v1/namespaces/default/configmaps/${name}`, undefined, { cert: nodeA });
    assert.is(r.status, 200, `${name}: ${r.text}`);
  }
  const unrelated = await t.api('GET', '/api/v1/namespaces/default/configmaps/unrelated', undefined, { cert: nodeA });
  assert.is(unrelated.status, 403);
  assert.match(unrelated.body.message, /no relationship found between node 'node-a' and this object/);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/configmaps', undefined, { cert: nodeA })).status, 403);
  assert.is((await t.api('PATCH', '/api/v1/namespaces/default/configmaps/vol', { data: { k: 'x' } }, { cert: nodeA, contentType: 'application/merge-patch+json' })).status, 403);
});

test.run();
