/**
 * PersistentVolumes, PersistentVolumeClaims and the default `local-path`
 * StorageClass: first against a control plane alone (validation, tables as
 * kube-apiserver prints them, static binding, WaitForFirstConsumer
 * provisioning on the node the scheduler chose, the Node authorizer's graph),
 * then on a real node: a claim is provisioned, bound, written by a pod, the
 * pod deleted and another started, and the data is still there.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { registerNode, startTestControlPlane, waitFor, type TestCP } from './helpers/control-plane.js';
import { useCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';

type KObj = Record<string, any>;

const claim = (name: string, extra: KObj = {}): KObj => ({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '100Mi' } }, ...extra } });
const volume = (name: string, extra: KObj = {}): KObj => ({ apiVersion: 'v1', kind: 'PersistentVolume', metadata: { name }, spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], hostPath: { path: `/srv/${name}` }, ...extra } });
const podUsing = (name: string, claimName: string, extra: KObj = {}): KObj => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name },
  spec: { containers: [{ name: 'main', image: 'busybox', volumeMounts: [{ name: 'data', mountPath: '/data' }] }], volumes: [{ name: 'data', persistentVolumeClaim: { claimName } }], ...extra },
});

const api = suite('persistent volumes: API, binder, local-path provisioner, node authorizer');
let t: TestCP;
api.before(async () => { t = await startTestControlPlane(); });
api.after(async () => { await t?.close(); });

const k = (args: string[], input?: string) => t.k(args, input);
const get = async (p: string) => (await t.api('GET', p)).body;

api('the default StorageClass is local-path, printed as kubectl prints it', async () => {
  const out = await k(['get', 'storageclass']);
  assert.match(out, /^NAME\s+PROVISIONER\s+RECLAIMPOLICY\s+VOLUMEBINDINGMODE\s+ALLOWVOLUMEEXPANSION\s+AGE\n/);
  assert.match(out, /\nlocal-path \(default\)\s+stevedore\.io\/local-path\s+Delete\s+WaitForFirstConsumer\s+false\s+\d+s$/m);
  assert.is((await get('/apis/storage.k8s.io/v1/storageclasses/local-path')).metadata.annotations['storageclass.kubernetes.io/is-default-class'], 'true');
});

api('validation names the field, as kube-apiserver does', async () => {
  const bad = await t.api('POST', '/api/v1/namespaces/default/persistentvolumeclaims', { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'bad' }, spec: {} });
  assert.is(bad.status, 422);
  assert.match(bad.body.message, /spec\.accessModes: Required value: at least 1 access mode is required/);
  assert.match(bad.body.message, /spec\.resources\[storage\]: Required value/);
  const badPv = await t.api('POST', '/api/v1/persistentvolumes', { apiVersion: 'v1', kind: 'PersistentVolume', metadata: { name: 'bad' }, spec: { capacity: { storage: 'lots' }, accessModes: ['ReadWriteSometimes'] } });
  assert.is(badPv.status, 422);
  assert.match(badPv.body.message, /spec\.accessModes: Unsupported value: "ReadWriteSometimes"/);
  assert.match(badPv.body.message, /spec\.capacity\[storage\]: Invalid value: "lots"/);
  assert.match(badPv.body.message, /spec: Required value: must specify a volume type/);
  const traversal = await t.api('POST', '/api/v1/persistentvolumes', volume('dots', { hostPath: { path: '/srv/../etc' } }));
  assert.match(traversal.body.message, /spec\.hostPath\.path: Invalid value: "\/srv\/\.\.\/etc": must not contain '\.\.'/);
});

api('static binding: a claim binds the smallest fitting volume; its deletion releases it (Retain)', async () => {
  for (const [name, size] of [['big', '5Gi'], ['small', '1Gi'], ['tiny', '10Mi']] as const) {
    assert.is((await t.api('POST', '/api/v1/persistentvolumes', volume(name, { capacity: { storage: size }, storageClassName: 'manual' }))).status, 201);
  }
  assert.is((await t.api('POST', '/api/v1/namespaces/default/persistentvolumeclaims', claim('static', { storageClassName: 'manual' }))).status, 201);
  const bound = await waitFor('the claim to bind', async () => {
    const c = await get('/api/v1/namespaces/default/persistentvolumeclaims/static');
    return c.status?.phase === 'Bound' ? c : undefined;
  });
  assert.is(bound.spec.volumeName, 'small');
  assert.equal(bound.status.capacity, { storage: '1Gi' });
  const pv = await get('/api/v1/persistentvolumes/small');
  assert.is(pv.status.phase, 'Bound');
  assert.equal([pv.spec.claimRef.namespace, pv.spec.claimRef.name, pv.spec.claimRef.uid], ['default', 'static', bound.metadata.uid]);
  assert.is(pv.spec.persistentVolumeReclaimPolicy, 'Retain', 'the default of a PV made by hand');
  const pvs = await k(['get', 'pv']);
  assert.match(pvs, /^NAME\s+CAPACITY\s+ACCESS MODES\s+RECLAIM POLICY\s+STATUS\s+CLAIM\s+STORAGECLASS\s+VOLUMEATTRIBUTESCLASS\s+REASON\s+AGE\n/);
  assert.match(pvs, /\nsmall\s+1Gi\s+RWO\s+Retain\s+Bound\s+default\/static\s+manual\s+<unset>\s+\d+s$/m);
  assert.match(pvs, /\nbig\s+5Gi\s+RWO\s+Retain\s+Available\s+manual\s+<unset>\s+\d+s$/m);
  const pvcs = await k(['get', 'pvc', '-o', 'wide']);
  assert.match(pvcs, /^NAME\s+STATUS\s+VOLUME\s+CAPACITY\s+ACCESS MODES\s+STORAGECLASS\s+VOLUMEATTRIBUTESCLASS\s+AGE\s+VOLUMEMODE\n/);
  assert.match(pvcs, /\nstatic\s+Bound\s+small\s+1Gi\s+RWO\s+manual\s+<unset>\s+\d+s\s+Filesystem$/m);
  const change = await t.api('PATCH', '/api/v1/namespaces/default/persistentvolumeclaims/static', { spec: { accessModes: ['ReadWriteMany'] } }, { contentType: 'application/merge-patch+json' });
  assert.is(change.status, 422);
  assert.match(change.body.message, /spec is immutable after creation/);
  await k(['delete', 'pvc', 'static']);
  await waitFor('the volume to be released', async () => (await get('/api/v1/persistentvolumes/small')).status?.phase === 'Released');
});

api('local-path: a claim waits for its first consumer, is provisioned on the node the scheduler chose, and the pod is bound there', async () => {
  await registerNode(t, 'node-a');
  const created = await t.api('POST', '/api/v1/namespaces/default/persistentvolumeclaims', claim('data'));
  assert.is(created.status, 201);
  // The default class is the claim's from its create on (kube-apiserver's DefaultStorageClass admission), not after a controller pass.
  assert.is(created.body.spec.storageClassName, 'local-path');
  assert.is(created.body.status.phase, 'Pending');
  await waitFor('the WaitForFirstConsumer event', async () => /WaitForFirstConsumer\s+\S+\s+persistentvolume-controller\s+waiting for first consumer to be created before binding/.test(await k(['describe', 'pvc', 'data'])));
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', podUsing('user', 'data'))).status, 201);
  const pod = await waitFor('the pod to be scheduled', async () => {
    const p = await get('/api/v1/namespaces/default/pods/user');
    return p.spec.nodeName ? p : undefined;
  });
  assert.is(pod.spec.nodeName, 'node-a');
  const bound = await get('/api/v1/namespaces/default/persistentvolumeclaims/data');
  assert.is(bound.status.phase, 'Bound', 'the claim was bound before the pod');
  assert.is(bound.metadata.annotations['volume.kubernetes.io/selected-node'], 'node-a');
  const pv = await get(`/api/v1/persistentvolumes/${bound.spec.volumeName}`);
  assert.is(pv.metadata.name, `pvc-${bound.metadata.uid}`);
  assert.is(pv.spec.hostPath.path, `/var/lib/stevedore/local-path/pvc-${bound.metadata.uid}_default_data`, 'the default root: node-a announces none');
  assert.equal(pv.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions, [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-a'] }]);
  assert.is(pv.spec.persistentVolumeReclaimPolicy, 'Delete');
  assert.match(await k(['describe', 'pvc', 'data']), /ProvisioningSucceeded\s+\S+\s+stevedore\.io\/local-path\s+Successfully provisioned volume pvc-/);

  // The Node authorizer walks node → pod → claim → volume.
  const nodeA = await t.nodeCert('node-a');
  assert.is((await t.api('GET', '/api/v1/namespaces/default/persistentvolumeclaims/data', undefined, { cert: nodeA })).status, 200);
  assert.is((await t.api('GET', `/api/v1/persistentvolumes/${pv.metadata.name}`, undefined, { cert: nodeA })).status, 200);
  const other = await t.api('GET', '/api/v1/persistentvolumes/big', undefined, { cert: nodeA });
  assert.is(other.status, 403);
  assert.match(other.body.message, /no relationship found between node 'node-a' and this object/);
  assert.is((await t.api('GET', '/api/v1/persistentvolumes', undefined, { cert: nodeA })).status, 403);
  assert.is((await t.api('PATCH', '/api/v1/namespaces/default/persistentvolumeclaims/data', { metadata: { labels: { a: 'b' } } }, { cert: nodeA, contentType: 'application/merge-patch+json' })).status, 403);

  // A pod whose claim does not exist is not scheduled, and says why.
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', podUsing('orphan', 'nope'))).status, 201);
  await waitFor('FailedScheduling', async () => /persistentvolumeclaim "nope" not found/.test(await k(['describe', 'pod', 'orphan'])));
  // A claim in use stays (pvc-protection) until its pods are gone; then its volume is released, and the Delete policy deletes it.
  await k(['delete', 'pvc', 'data', '--wait=false']);
  await new Promise((r) => setTimeout(r, 500));
  assert.match(await k(['get', 'pvc', 'data']), /\ndata\s+Terminating\s+pvc-/);
  assert.equal((await get('/api/v1/namespaces/default/persistentvolumeclaims/data')).metadata.finalizers, ['kubernetes.io/pvc-protection']);
  await k(['delete', 'pod', 'user', 'orphan', '--grace-period=0', '--force']);
  await waitFor('the claim to go', async () => (await t.api('GET', '/api/v1/namespaces/default/persistentvolumeclaims/data')).status === 404);
  // Its directory is on node-a: a helper pod there removes it (local-path's model), then the volume goes.
  const helperPath = `/api/v1/namespaces/kube-system/pods/helper-pod-delete-${pv.metadata.name}`;
  const helper = await waitFor('the helper pod', async () => { const r = await t.api('GET', helperPath); return r.status === 200 ? r.body : undefined; });
  assert.is(helper.spec.nodeName, 'node-a');
  assert.equal(helper.spec.containers[0].command, ['rm', '-rf', '--', `/volume-parent/pvc-${bound.metadata.uid}_default_data`]);
  assert.equal(helper.spec.volumes[0].hostPath, { path: '/var/lib/stevedore/local-path', type: 'DirectoryOrCreate' });
  assert.is((await get(`/api/v1/persistentvolumes/${pv.metadata.name}`)).status.phase, 'Released');
  // node-a is simulated: report the helper done as its agent would.
  const done = await t.api('PATCH', `${helperPath}/status`, { status: { phase: 'Succeeded' } }, { contentType: 'application/merge-patch+json', cert: nodeA });
  assert.is(done.status, 200, done.text);
  await waitFor('the provisioned volume to go', async () => (await t.api('GET', `/api/v1/persistentvolumes/${pv.metadata.name}`)).status === 404);
});

const node = suite('persistent volumes on a real node: data outlives the pod');
const getCluster = useCluster(node);

node('a claim is provisioned on the node, bound, written by a pod; after the pod is deleted another reads the data', async () => {
  const c = getCluster();
  const pod = (name: string, command: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000}
  containers:
  - name: main
    image: busybox
    command: [sh, -c, '${command}']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: state}}]
`;
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: state}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
`);
  assert.match(await c.k(['get', 'pvc', 'state']), /\nstate\s+Pending\s+local-path\s+<unset>/);
  await c.k(['apply', '-f', '-'], pod('writer', 'echo written-by-$(hostname) > /data/state.txt; id -u > /data/uid; echo done'));
  const phase = async (name: string) => (await c.k(['get', 'pod', name, '-o', 'jsonpath={.status.phase}'])).trim();
  await eventually('the writer to succeed', async () => (await phase('writer')) === 'Succeeded', 90_000);
  const pvc = JSON.parse(await c.k(['get', 'pvc', 'state', '-o', 'json'])) as KObj;
  assert.is(pvc.status.phase, 'Bound');
  const pv = JSON.parse(await c.k(['get', 'pv', pvc.spec.volumeName, '-o', 'json'])) as KObj;
  const dir = pv.spec.hostPath.path as string;
  assert.ok(dir.startsWith(path.join(c.dataDir, 'node', 'local-path') + '/'), `the volume is under the node's local-path root: ${dir}`);
  assert.equal(pv.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values, [c.nodeName]);
  assert.is(await fs.readFile(path.join(dir, 'state.txt'), 'utf8'), 'written-by-writer\n', 'a non-root pod wrote into the provisioned directory');
  assert.match(await c.k(['get', 'pv']), new RegExp(`\\n${pv.metadata.name}\\s+64Mi\\s+RWO\\s+Delete\\s+Bound\\s+default/state\\s+local-path\\s+<unset>`));
  await c.k(['delete', 'pod', 'writer', '--wait=true']);
  await c.k(['apply', '-f', '-'], pod('reader', 'cat /data/state.txt /data/uid'));
  await eventually('the reader to succeed', async () => (await phase('reader')) === 'Succeeded', 90_000);
  assert.is(await c.k(['logs', 'reader']), 'written-by-writer\n1000\n');
  await c.k(['delete', 'pod', 'reader', '--wait=true']);
  await c.k(['delete', 'pvc', 'state']);
  await eventually('the volume to be deleted', async () => (await c.kubectl(['get', 'pv', pv.metadata.name])).code !== 0, 60_000);
  assert.is(await fs.access(dir).then(() => 'still there', () => 'gone'), 'gone', 'the helper pod removed the directory on the node');
  await eventually('the helper pod to go', async () => !(await c.k(['get', 'pods', '-n', 'kube-system'])).includes('helper-pod-delete'), 30_000);
});

node('a StatefulSet\'s pod made again finds its claim\'s data; deleting the set (whenDeleted: Delete) deletes the claim and the volume', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kv}
spec:
  serviceName: kv
  replicas: 1
  selector: {matchLabels: {app: kv}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}
  template:
    metadata: {labels: {app: kv}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'if [ -f /data/first ]; then echo again:$(cat /data/first); else hostname > /data/first; echo first; fi; exec sleep 3600']
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 32Mi}}}
`);
  const logsOf = async (uid?: string) => eventually('kv-0 running', async () => {
    const p = JSON.parse(await c.k(['get', 'pod', 'kv-0', '-o', 'json'])) as KObj;
    if (p.status?.phase !== 'Running' || p.metadata.uid === uid || p.metadata.deletionTimestamp) return undefined;
    const logs = await c.k(['logs', 'kv-0']);
    return logs ? { uid: p.metadata.uid as string, logs } : undefined;
  }, 90_000);
  const first = await logsOf();
  assert.is(first.logs, 'first\n');
  assert.match(await c.k(['get', 'pvc', 'data-kv-0']), /\ndata-kv-0\s+Bound\s+pvc-/);
  await c.k(['delete', 'pod', 'kv-0', '--wait=true']);
  const again = await logsOf(first.uid);
  assert.is(again.logs, 'again:kv-0\n', 'the new kv-0 mounted the same claim');
  const pv = (await c.k(['get', 'pvc', 'data-kv-0', '-o', 'jsonpath={.spec.volumeName}'])).trim();
  await c.k(['delete', 'sts', 'kv']);
  await eventually('the claim and its volume to go', async () => (await c.kubectl(['get', 'pvc', 'data-kv-0'])).code !== 0 && (await c.kubectl(['get', 'pv', pv])).code !== 0, 90_000);
});

node('a pod bound by hand to a node waits in CreateContainerConfigError naming the claim', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeName: ${c.nodeName}
  containers: [{name: main, image: busybox, command: [sleep, '3600'], volumeMounts: [{name: data, mountPath: /data}]}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: absent}}]
`);
  await eventually('CreateContainerConfigError', async () => {
    const p = JSON.parse(await c.k(['get', 'pod', 'pinned', '-o', 'json'])) as KObj;
    const w = p.status?.containerStatuses?.[0]?.state?.waiting;
    return w?.reason === 'CreateContainerConfigError' && /volume "data" \(spec\.volumes\[0\]\): persistentvolumeclaim "absent" not found/.test(w.message) ? true : undefined;
  }, 60_000);
  await c.k(['delete', 'pod', 'pinned', '--wait=true']);
});

api.run();
node.run();
