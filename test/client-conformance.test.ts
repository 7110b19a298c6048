/**
 * The control plane as clients this project did not write use it (issue 22): kubectl's
 * server-side apply over every kind in discovery, diff, wait, get -w, events and proxy; the
 * official Python client (test/clients/python_conformance.py); @kubernetes/client-node's
 * informers through a forced 410. And the server side of it: managedFields, apply conflicts as
 * kube-apiserver reports them, dryRun on every mutating verb, content negotiation.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa, type ResultPromise } from 'execa';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { KubeConfig, CoreV1Api, makeInformer, type ListWatch, type V1Pod } from '@kubernetes/client-node';
import { startTestControlPlane, KUBECTL, type TestCP } from './helpers/control-plane.js';

let t: TestCP;
const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON_SUITE = path.resolve(here, '../../test/clients/python_conformance.py');

test.before(async () => {
  t = await startTestControlPlane();
});
test.after(async () => {
  await t?.close();
});

const container = { name: 'main', image: 'localhost/busybox:latest', command: ['sleep', '1000'] };
const template = (app: string) => ({ metadata: { labels: { app } }, spec: { containers: [container] } });

/** One small valid object of every kind the control plane serves, by resource name (namespaced ones go to `ssa`). */
function manifests(label: Record<string, string>): Record<string, any> {
  const meta = (name: string, namespaced = true) => ({ name, ...(namespaced ? { namespace: 'ssa' } : {}), labels: { ...label } });
  return {
    namespaces: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('ssa', false) },
    pods: { apiVersion: 'v1', kind: 'Pod', metadata: meta('ssa-pod'), spec: { containers: [container] } },
    nodes: { apiVersion: 'v1', kind: 'Node', metadata: meta('ssa-node', false) },
    secrets: { apiVersion: 'v1', kind: 'Secret', metadata: meta('ssa-secret'), stringData: { key: 'value' } },
    configmaps: { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta('ssa-cm'), data: { key: 'value' } },
    persistentvolumes: { apiVersion: 'v1', kind: 'PersistentVolume', metadata: meta('ssa-pv', false), spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], storageClassName: 'manual', hostPath: { path: '/var/tmp/ssa-pv' } } },
    persistentvolumeclaims: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: meta('ssa-pvc'), spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'manual', resources: { requests: { storage: '1Gi' } } } },
    events: { apiVersion: 'v1', kind: 'Event', metadata: meta('ssa-event'), involvedObject: { kind: 'Pod', namespace: 'ssa', name: 'ssa-pod' }, reason: 'Applied', message: 'applied server-side' },
    leases: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: meta('ssa-lease'), spec: { holderIdentity: 'suite', leaseDurationSeconds: 40 } },
    replicasets: { apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: meta('ssa-rs'), spec: { replicas: 0, selector: { matchLabels: { app: 'ssa-rs' } }, template: template('ssa-rs') } },
    daemonsets: { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: meta('ssa-ds'), spec: { selector: { matchLabels: { app: 'ssa-ds' } }, template: { ...template('ssa-ds'), spec: { ...template('ssa-ds').spec, nodeSelector: { none: 'none' } } } } },
    statefulsets: { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: meta('ssa-sts'), spec: { replicas: 0, serviceName: 'ssa-svc', selector: { matchLabels: { app: 'ssa-sts' } }, template: template('ssa-sts') } },
    controllerrevisions: { apiVersion: 'apps/v1', kind: 'ControllerRevision', metadata: meta('ssa-cr'), data: { spec: { template: { $patch: 'replace' } } }, revision: 1 },
    deployments: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta('ssa-deploy'), spec: { replicas: 0, selector: { matchLabels: { app: 'ssa-deploy' } }, template: template('ssa-deploy') } },
    jobs: { apiVersion: 'batch/v1', kind: 'Job', metadata: meta('ssa-job'), spec: { suspend: true, template: { spec: { containers: [container], restartPolicy: 'Never' } } } },
    cronjobs: { apiVersion: 'batch/v1', kind: 'CronJob', metadata: meta('ssa-cj'), spec: { schedule: '0 0 1 1 *', suspend: true, jobTemplate: { spec: { template: { spec: { containers: [container], restartPolicy: 'Never' } } } } } },
    horizontalpodautoscalers: { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: meta('ssa-hpa'), spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'ssa-deploy' }, minReplicas: 1, maxReplicas: 2, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } }] } },
    serviceaccounts: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('ssa-sa') },
    roles: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta('ssa-role'), rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get'] }] },
    clusterroles: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta('ssa-clusterrole', false), rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }] },
    rolebindings: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: meta('ssa-rolebinding'), subjects: [{ kind: 'ServiceAccount', name: 'ssa-sa', namespace: 'ssa' }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'ssa-role' } },
    clusterrolebindings: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: meta('ssa-clusterrolebinding', false), subjects: [{ kind: 'Group', name: 'ssa-group', apiGroup: 'rbac.authorization.k8s.io' }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'ssa-clusterrole' } },
    poddisruptionbudgets: { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: meta('ssa-pdb'), spec: { minAvailable: 1, selector: { matchLabels: { app: 'ssa' } } } },
    storageclasses: { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: meta('ssa-sc', false), provisioner: 'example.com/none' },
    services: { apiVersion: 'v1', kind: 'Service', metadata: meta('ssa-svc'), spec: { selector: { app: 'ssa-sts' }, ports: [{ port: 80 }] } },
    endpoints: { apiVersion: 'v1', kind: 'Endpoints', metadata: meta('ssa-ep'), subsets: [{ addresses: [{ ip: '10.88.0.9' }], ports: [{ port: 80 }] }] },
    endpointslices: { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: meta('ssa-slice'), addressType: 'IPv4', endpoints: [{ addresses: ['10.88.0.9'] }], ports: [{ port: 80, protocol: 'TCP' }] },
    runtimeclasses: { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: meta('ssa-rc', false), handler: 'namespaces' },
  };
}

/** Every resource in discovery that can be patched: group/version, name, namespaced. */
async function discoveredResources(): Promise<Array<{ gv: string; name: string; namespaced: boolean }>> {
  const gvs = ['v1'];
  const groups = (await t.api('GET', '/apis')).body.groups as Array<{ preferredVersion: { groupVersion: string } }>;
  gvs.push(...groups.map((g) => g.preferredVersion.groupVersion));
  const out: Array<{ gv: string; name: string; namespaced: boolean }> = [];
  for (const gv of gvs) {
    const list = (await t.api('GET', gv === 'v1' ? '/api/v1' : `/apis/${gv}`)).body;
    for (const r of list.resources) if (!r.name.includes('/') && r.verbs.includes('patch')) out.push({ gv, name: r.name, namespaced: r.namespaced });
  }
  return out;
}

const objectPath = (gv: string, resource: string, name: string, namespaced: boolean) => `${gv === 'v1' ? '/api/v1' : `/apis/${gv}`}${namespaced ? '/namespaces/ssa' : ''}/${resource}/${name}`;

test('kubectl apply --server-side creates, updates and prunes fields of every kind in discovery', async () => {
  const resources = await discoveredResources();
  const first = manifests({ conformance: 'one', keep: 'kept' });
  assert.equal(resources.map((r) => r.name).filter((n) => !first[n]).sort(), [], 'every kind in discovery has a manifest here');
  const docs = (m: Record<string, any>) => Object.values(m).map((o) => toYaml(o)).join('---\n');
  const created = await t.kubectl(['apply', '--server-side', '-f', '-'], docs(first));
  assert.is(created.exitCode, 0, created.stderr);
  assert.is(created.stdout.trim().split('\n').filter((l) => l.endsWith('serverside-applied')).length, resources.length, created.stdout);
  for (const r of resources) {
    const obj = (await t.api('GET', objectPath(r.gv, r.name, first[r.name].metadata.name, r.namespaced))).body;
    assert.is(obj.metadata.labels.conformance, 'one', r.name);
    const entry = obj.metadata.managedFields?.find((e: any) => e.manager === 'kubectl');
    assert.ok(entry, `${r.name}: managedFields has kubectl's apply`);
    assert.is(entry.operation, 'Apply', r.name);
    assert.ok(entry.fieldsV1['f:metadata']['f:labels']['f:conformance'], r.name);
  }
  // The same configuration again changes nothing; a changed one updates; a field left out goes.
  const rvBefore = (await t.api('GET', '/api/v1/namespaces/ssa/configmaps/ssa-cm')).body.metadata.resourceVersion;
  assert.is((await t.kubectl(['apply', '--server-side', '-f', '-'], docs(first))).exitCode, 0);
  assert.is((await t.api('GET', '/api/v1/namespaces/ssa/configmaps/ssa-cm')).body.metadata.resourceVersion, rvBefore, 'a no-op apply keeps the resourceVersion');
  const second = manifests({ conformance: 'two' });
  const updated = await t.kubectl(['apply', '--server-side', '-f', '-'], docs(second));
  assert.is(updated.exitCode, 0, updated.stderr);
  for (const r of resources) {
    const obj = (await t.api('GET', objectPath(r.gv, r.name, first[r.name].metadata.name, r.namespaced))).body;
    assert.is(obj.metadata.labels.conformance, 'two', r.name);
    assert.is(obj.metadata.labels.keep, undefined, `${r.name}: the label kubectl no longer applies is removed`);
  }
});

const deployment = (replicas: number, image = 'localhost/busybox:1', extra: Record<string, unknown> = {}) => toYaml({
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ ...container, name: 'web', image, ...extra }] } } },
});

test('apply conflicts: 409 with FieldManagerConflict causes, --force-conflicts takes the field', async () => {
  assert.is((await t.kubectl(['apply', '--server-side', '-f', '-'], deployment(1))).exitCode, 0);
  const scaled = await t.api('PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-client-side-apply', { spec: { replicas: 3 } }, { contentType: 'application/merge-patch+json' });
  assert.is(scaled.status, 200, scaled.text);
  const owners = scaled.body.metadata.managedFields.map((e: any) => `${e.manager}/${e.operation}`);
  assert.equal(owners, ['kubectl/Apply', 'kubectl-client-side-apply/Update']);
  const refused = await t.kubectl(['apply', '--server-side', '-f', '-'], deployment(2));
  assert.is(refused.exitCode, 1);
  assert.match(refused.stderr, 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas');
  const raw = await t.api('PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl', deployment(2, 'localhost/busybox:2'), { contentType: 'application/apply-patch+yaml' });
  assert.is(raw.status, 409);
  assert.is(raw.body.reason, 'Conflict');
  assert.equal(raw.body.details.causes, [{ reason: 'FieldManagerConflict', message: 'conflict with "kubectl-client-side-apply" using apps/v1', field: '.spec.replicas' }]);
  // Same value: shared ownership, no conflict.
  assert.is((await t.kubectl(['apply', '--server-side', '-f', '-'], deployment(3))).exitCode, 0);
  const forced = await t.kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], deployment(2));
  assert.is(forced.exitCode, 0, forced.stderr);
  const after = (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
  assert.is(after.spec.replicas, 2);
  const csa = after.metadata.managedFields.find((e: any) => e.manager === 'kubectl-client-side-apply');
  assert.not.ok(csa?.fieldsV1?.['f:spec']?.['f:replicas'], 'the forced field left its former manager');
  // Two Update managers changing different fields both conflict, and the message lists them.
  await t.api('PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=editor', { spec: { replicas: 4, minReadySeconds: 5 } }, { contentType: 'application/merge-patch+json' });
  const two = await t.api('PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=tool', toYaml({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { replicas: 1, minReadySeconds: 1 } }), { contentType: 'application/apply-patch+yaml' });
  assert.is(two.status, 409);
  assert.is(two.body.message, 'Apply failed with 2 conflicts: conflicts with "editor" using apps/v1:\n- .spec.minReadySeconds\n- .spec.replicas');
});

test('kubectl apply --server-side takes over from client-side apply; apply on /status', async () => {
  const cm = toYaml({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'migrated', namespace: 'default' }, data: { a: '1' } });
  assert.is((await t.kubectl(['apply', '-f', '-'], cm)).exitCode, 0);
  const csa = (await t.api('GET', '/api/v1/namespaces/default/configmaps/migrated')).body.metadata.managedFields;
  assert.equal(csa.map((e: any) => `${e.manager}/${e.operation}`), ['kubectl-client-side-apply/Update']);
  const ssa = await t.kubectl(['apply', '--server-side', '-f', '-'], cm);
  assert.is(ssa.exitCode, 0, ssa.stderr);
  // kubectl moves the client-side manager's fields to its apply managers with a JSON patch of managedFields.
  const owners = (await t.api('GET', '/api/v1/namespaces/default/configmaps/migrated')).body.metadata.managedFields.map((e: any) => `${e.manager}/${e.operation}`).sort();
  assert.equal(owners, ['kubectl-last-applied/Apply', 'kubectl/Apply']);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'status-applied' }, spec: { containers: [container] } })).status, 201);
  const st = await t.api('PATCH', '/api/v1/namespaces/default/pods/status-applied/status?fieldManager=probe', toYaml({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'status-applied' }, status: { conditions: [{ type: 'Ready', status: 'False' }] } }), { contentType: 'application/apply-patch+yaml' });
  assert.is(st.status, 200, st.text);
  assert.ok(st.body.status.conditions.some((c: any) => c.type === 'Ready'));
  assert.ok(st.body.status.conditions.some((c: any) => c.type === 'PodScheduled'), 'the scheduler\'s condition stays (conditions merge by type)');
  const entry = st.body.metadata.managedFields.find((e: any) => e.manager === 'probe');
  assert.is(entry.subresource, 'status');
  assert.ok(entry.fieldsV1['f:status']['f:conditions']['k:{"type":"Ready"}']);
});

test('apply merges lists by their keys and removes only what the manager stops applying', async () => {
  const cfg = (manager: string, containers: unknown[]) => t.api('PATCH', `/api/v1/namespaces/default/pods/merge?fieldManager=${manager}`, JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'merge' }, spec: { containers } }), { contentType: 'application/apply-patch+yaml' });
  const a = await cfg('team-a', [{ ...container, name: 'a', env: [{ name: 'A', value: '1' }], ports: [{ containerPort: 80 }] }]);
  assert.is(a.status, 201, a.text);
  // A pod's container list cannot change after create; so the second manager co-owns container a's env.
  const b = await t.api('PATCH', '/api/v1/namespaces/default/pods/merge?fieldManager=team-b', toYaml({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'merge', labels: { b: 'yes' } }, spec: { containers: [{ name: 'a', image: container.image }] } }), { contentType: 'application/apply-patch+yaml' });
  assert.is(b.status, 200, b.text);
  assert.is(b.body.spec.containers.length, 1);
  assert.equal(b.body.spec.containers[0].env, [{ name: 'A', value: '1' }], 'env kept: team-b did not name it');
  const fields = b.body.metadata.managedFields.find((e: any) => e.manager === 'team-a').fieldsV1;
  assert.ok(fields['f:spec']['f:containers']['k:{"name":"a"}']['f:ports']['k:{"containerPort":80,"protocol":"TCP"}'], 'ports keyed by containerPort and protocol');
  // team-b stops applying its label: it goes; team-a's fields stay.
  const b2 = await t.api('PATCH', '/api/v1/namespaces/default/pods/merge?fieldManager=team-b', toYaml({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'merge' } }), { contentType: 'application/apply-patch+yaml' });
  assert.is(b2.status, 200, b2.text);
  assert.is(b2.body.metadata.labels?.b, undefined);
  assert.equal(b2.body.spec.containers[0].env, [{ name: 'A', value: '1' }]);
  // ConfigMap data: two managers, keys of a map.
  const cm = (manager: string, data: Record<string, string>) => t.api('PATCH', `/api/v1/namespaces/default/configmaps/shared?fieldManager=${manager}`, toYaml({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'shared' }, data }), { contentType: 'application/apply-patch+yaml' });
  assert.is((await cm('one', { x: '1', y: '1' })).status, 201);
  assert.is((await cm('two', { z: '2' })).status, 200);
  const dropped = await cm('one', { x: '1' });
  assert.equal(dropped.body.data, { x: '1', z: '2' });
});

test('apply options and errors are kube-apiserver\'s; Update managers are recorded on every write', async () => {
  const body = toYaml({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'opts' }, data: { a: '1' } });
  const noManager = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/opts', body, { contentType: 'application/apply-patch+yaml' });
  assert.is(noManager.status, 422);
  assert.is(noManager.body.message, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
  const forceMerge = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/opts?force=true', { data: {} }, { contentType: 'application/merge-patch+json' });
  assert.is(forceMerge.status, 422);
  assert.match(forceMerge.body.message, 'force: Forbidden: may not be specified for non-apply patch');
  const wrongKind = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/opts?fieldManager=m', toYaml({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'opts' } }), { contentType: 'application/apply-patch+yaml' });
  assert.is(wrongKind.status, 400);
  const wrongName = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/opts?fieldManager=m', toYaml({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'other' } }), { contentType: 'application/apply-patch+yaml' });
  assert.is(wrongName.status, 400);
  assert.match(wrongName.body.message, 'does not match the name on the URL');
  // Update managers: POST, PUT, PATCH, with fieldManager or the User-Agent's product.
  const created = await t.api('POST', '/api/v1/namespaces/default/configmaps?fieldManager=creator', { metadata: { name: 'upd' }, data: { a: '1' } });
  assert.equal(created.body.metadata.managedFields.map((e: any) => [e.manager, e.operation]), [['creator', 'Update']]);
  assert.ok(created.body.metadata.managedFields[0].fieldsV1['f:data']['f:a']);
  const put = await t.api('PUT', '/api/v1/namespaces/default/configmaps/upd?fieldManager=putter', { ...created.body, data: { a: '1', b: '2' } });
  assert.is(put.status, 200, put.text);
  const byManager = Object.fromEntries(put.body.metadata.managedFields.map((e: any) => [e.manager, Object.keys(e.fieldsV1['f:data'] ?? {})]));
  assert.equal(byManager, { creator: ['f:a'], putter: ['f:b'] });
  const patched = await t.kubectl(['patch', 'configmap', 'upd', '--type=merge', '-p', '{"data":{"a":"9"}}']);
  assert.is(patched.exitCode, 0, patched.stderr);
  const cur = (await t.api('GET', '/api/v1/namespaces/default/configmaps/upd')).body;
  const a = cur.metadata.managedFields.find((e: any) => e.fieldsV1['f:data']?.['f:a']);
  assert.is(a.manager, 'kubectl-patch', 'the changed field moved to kubectl patch');
  // managedFields: [{}] clears them.
  const cleared = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/upd', { metadata: { managedFields: [{}] } }, { contentType: 'application/merge-patch+json' });
  assert.is(cleared.body.metadata.managedFields, undefined);
});

test('dryRun=All on every mutating verb stores nothing; other dryRun values are 400', async () => {
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'dry' }, data: { a: '1' } };
  assert.is((await t.api('POST', '/api/v1/namespaces/default/configmaps?dryRun=All', cm)).status, 201);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/configmaps/dry')).status, 404);
  const applyDry = await t.api('PATCH', '/api/v1/namespaces/default/configmaps/dry?dryRun=All&fieldManager=m', toYaml(cm), { contentType: 'application/apply-patch+yaml' });
  assert.is(applyDry.status, 201, applyDry.text);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/configmaps/dry')).status, 404);
  const stored = (await t.api('POST', '/api/v1/namespaces/default/configmaps', cm)).body;
  const rv = stored.metadata.resourceVersion;
  const writes: Array<[string, string, unknown, string?]> = [
    ['PUT', '/api/v1/namespaces/default/configmaps/dry?dryRun=All', { ...stored, data: { a: 'put' } }],
    ['PATCH', '/api/v1/namespaces/default/configmaps/dry?dryRun=All', { data: { a: 'merge' } }, 'application/merge-patch+json'],
    ['PATCH', '/api/v1/namespaces/default/configmaps/dry?dryRun=All', [{ op: 'replace', path: '/data/a', value: 'json' }], 'application/json-patch+json'],
    ['PATCH', '/api/v1/namespaces/default/configmaps/dry?dryRun=All', { data: { a: 'strategic' } }, 'application/strategic-merge-patch+json'],
    // force: the create above made its manager the owner of data.a
    ['PATCH', '/api/v1/namespaces/default/configmaps/dry?dryRun=All&fieldManager=m&force=true', toYaml({ ...cm, data: { a: 'apply' } }), 'application/apply-patch+yaml'],
    ['DELETE', '/api/v1/namespaces/default/configmaps/dry?dryRun=All', undefined],
  ];
  for (const [method, url, body, contentType] of writes) {
    const r = await t.api(method, url, body, contentType ? { contentType } : {});
    assert.is(r.status, 200, `${method} ${contentType ?? ''}: ${r.text}`);
    if (method !== 'DELETE') assert.not.equal(r.body.data.a, '1', `${method} ${contentType ?? ''} answers the changed object`);
  }
  const after = (await t.api('GET', '/api/v1/namespaces/default/configmaps/dry')).body;
  assert.is(after.metadata.resourceVersion, rv);
  assert.equal(after.data, { a: '1' });
  const bad = await t.api('DELETE', '/api/v1/namespaces/default/configmaps/dry?dryRun=Yes');
  assert.is(bad.status, 400);
  assert.match(bad.body.message, 'Invalid dry run value: "Yes"');
  // kubectl's own dry runs.
  const serverDry = await t.kubectl(['create', 'configmap', 'never', '--from-literal=a=b', '--dry-run=server', '-o', 'name']);
  assert.is(serverDry.exitCode, 0, serverDry.stderr);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/configmaps/never')).status, 404);
});

test('content negotiation: JSON when the client accepts it, PartialObjectMetadata, 406 for protobuf alone', async () => {
  const get = (accept: string, url = '/api/v1/namespaces/default/configmaps') => new Promise<{ status: number; body: any; type: string }>((resolve, reject) => {
    execa('/usr/bin/curl', ['-s', '--cacert', path.join(t.dataDir, 'pki', 'ca.crt'), '-H', `Authorization: Bearer ${t.cp.adminToken}`, '-H', `Accept: ${accept}`, '-w', '\n%{http_code} %{content_type}', `${t.cp.url}${url}`])
      .then((r) => {
        const lines = String(r.stdout).split('\n');
        const [status, type] = lines.pop()!.split(' ');
        resolve({ status: Number(status), body: JSON.parse(lines.join('\n')), type: type ?? '' });
      }, reject);
  });
  const both = await get('application/vnd.kubernetes.protobuf, application/json');
  assert.is(both.status, 200);
  assert.is(both.body.kind, 'ConfigMapList');
  assert.match(both.type, 'application/json');
  const onlyProto = await get('application/vnd.kubernetes.protobuf');
  assert.is(onlyProto.status, 406);
  assert.is(onlyProto.body.reason, 'NotAcceptable');
  const partial = await get('application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json');
  assert.is(partial.body.kind, 'PartialObjectMetadataList');
  assert.ok(partial.body.items.length > 0 && partial.body.items.every((i: any) => i.kind === 'PartialObjectMetadata' && !i.data));
  const one = await get('application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io', '/api/v1/namespaces/default/configmaps/upd');
  assert.is(one.body.kind, 'PartialObjectMetadata');
});

test('kubectl diff (client- and server-side) shows what apply would change and changes nothing', async () => {
  const cm = (v: string) => toYaml({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'diffed', namespace: 'default' }, data: { v } });
  assert.is((await t.kubectl(['apply', '--server-side', '-f', '-'], cm('1'))).exitCode, 0);
  const same = await t.kubectl(['diff', '--server-side', '-f', '-'], cm('1'));
  assert.is(same.exitCode, 0, same.stderr + same.stdout);
  for (const mode of [['--server-side'], []]) {
    const d = await t.kubectl(['diff', ...mode, '-f', '-'], cm('2'));
    assert.is(d.exitCode, 1, `kubectl diff ${mode.join(' ')}: ${d.stderr}`);
    assert.match(d.stdout, /^-\s+v: "1"$/m);
    assert.match(d.stdout, /^\+\s+v: "2"$/m);
  }
  assert.equal((await t.api('GET', '/api/v1/namespaces/default/configmaps/diffed')).body.data, { v: '1' });
});

/** A kubectl that keeps running (get -w, wait, proxy): its output so far, and how to end it. */
function background(args: string[]): { proc: ResultPromise; output: () => string; waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray> } {
  const proc = execa(KUBECTL, args, { env: { KUBECONFIG: t.kubeconfig, HOME: t.dataDir }, reject: false, all: true, timeout: 60_000 });
  let text = '';
  proc.all?.on('data', (d: Buffer) => (text += d.toString()));
  return {
    proc,
    output: () => text,
    waitFor: async (re, ms = 20_000) => {
      const end = Date.now() + ms;
      for (;;) {
        const m = text.match(re);
        if (m) return m;
        if (Date.now() > end) throw new Error(`kubectl ${args.join(' ')}: no ${re} in ${ms} ms; output: ${text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

const podDoc = (name: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { containers: [container] } });

test('kubectl get -w, wait --for=condition and --for=delete, events, proxy', async () => {
  const watching = background(['get', 'pods', '-w', '--output-watch-events']);
  await new Promise((r) => setTimeout(r, 1000));
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', podDoc('watched'))).status, 201);
  await watching.waitFor(/^ADDED\s+watched\s+0\/1\s+Pending/m);
  watching.proc.kill('SIGTERM');
  await watching.proc;

  const ready = background(['wait', '--for=condition=Ready', 'pod/watched', '--timeout=30s']);
  await new Promise((r) => setTimeout(r, 1000));
  const status = await t.api('PATCH', '/api/v1/namespaces/default/pods/watched/status', { status: { conditions: [{ type: 'Ready', status: 'True' }] } }, { contentType: 'application/strategic-merge-patch+json' });
  assert.is(status.status, 200, status.text);
  const waited = await ready.proc;
  assert.is(waited.exitCode, 0, ready.output());
  assert.match(ready.output(), 'pod/watched condition met');

  const gone = background(['wait', '--for=delete', 'pod/watched', '--timeout=30s']);
  await new Promise((r) => setTimeout(r, 1000));
  assert.is((await t.api('DELETE', '/api/v1/namespaces/default/pods/watched?gracePeriodSeconds=0')).status, 200);
  assert.is((await gone.proc).exitCode, 0, gone.output());

  const ev = await t.api('POST', '/api/v1/namespaces/default/events', { metadata: { name: 'watched.1' }, involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: 'default', name: 'watched' }, reason: 'Checked', message: 'seen by the suite', type: 'Normal', source: { component: 'suite' } });
  assert.is(ev.status, 201, ev.text);
  const events = await t.kubectl(['events', '--for', 'pod/watched']);
  assert.is(events.exitCode, 0, events.stderr);
  assert.match(events.stdout, /Checked\s+Pod\/watched\s+seen by the suite/, events.stdout);

  const proxy = background(['proxy', '--port=0']);
  const [, port] = await proxy.waitFor(/Starting to serve on 127\.0\.0\.1:(\d+)/);
  const viaProxy = await execa('/usr/bin/curl', ['-s', '-f', `http://127.0.0.1:${port}/api/v1/namespaces/default/configmaps/diffed`], { reject: false });
  proxy.proc.kill('SIGTERM');
  await proxy.proc;
  assert.is(viaProxy.exitCode, 0, viaProxy.stderr);
  assert.is(JSON.parse(String(viaProxy.stdout)).data.v, '1');
});

test('the official Python client: list, watch with and without resourceVersion, pagination, patch types, apply, errors', async () => {
  assert.is((await t.api('POST', '/api/v1/namespaces', { metadata: { name: 'python' } })).status, 201);
  const r = await execa('/usr/bin/python3', [PYTHON_SUITE, t.kubeconfig, 'python'], { reject: false, timeout: 90_000, env: { HOME: t.dataDir } });
  assert.is(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  for (const check of ['list', 'pagination', 'watch-initial', 'watch-from-resourceVersion', 'patch-json', 'patch-strategic', 'patch-merge', 'server-side-apply', 'error-404', 'error-409', 'error-422', 'error-400']) {
    assert.match(String(r.stdout), new RegExp(`^ok ${check}\\b`, 'm'), `python check ${check}`);
  }
});

test('client-node informer: list-watch, reconnects at each watch timeout, relists after a forced 410 and still sees later events', async () => {
  // Watches end after 1–2 s here, so the informer reconnects from its resourceVersion again and again.
  const short = await startTestControlPlane({ watchLimits: { maxTimeoutSeconds: 2 } });
  const kc = new KubeConfig();
  kc.loadFromFile(short.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  let lists = 0;
  // makeInformer returns a ListWatch, which is also the informer's object cache.
  const informer = makeInformer<V1Pod>(kc, '/api/v1/namespaces/default/pods', () => {
    lists++;
    return core.listNamespacedPod({ namespace: 'default' });
  }) as ListWatch<V1Pod>;
  const seen: string[] = [];
  let connects = 0;
  informer.on('add', (p) => seen.push(`add:${p.metadata?.name}`));
  informer.on('update', (p) => seen.push(`update:${p.metadata?.name}`));
  informer.on('delete', (p) => seen.push(`delete:${p.metadata?.name}`));
  informer.on('connect', () => connects++);
  const errors: unknown[] = [];
  informer.on('error', (err) => errors.push(err));
  const until = async (cond: () => boolean, what: string, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`informer: ${what} not seen in ${ms} ms; seen ${seen.join(' ')}; errors ${errors.map(String).join('; ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    assert.is((await short.api('POST', '/api/v1/namespaces/default/pods', podDoc('before'))).status, 201);
    await informer.start();
    await until(() => seen.includes('add:before'), 'the listed pod');
    assert.is((await short.api('POST', '/api/v1/namespaces/default/pods', podDoc('first'))).status, 201);
    await until(() => seen.includes('add:first'), 'a watched create');
    await until(() => connects >= 3, 'reconnects at the watch timeout');
    assert.is(lists, 1, 'reconnecting from a resourceVersion needs no relist');
    // While the informer is between watches: changes, then the change log is dropped past its resourceVersion.
    assert.is((await short.api('DELETE', '/api/v1/namespaces/default/pods/first?gracePeriodSeconds=0')).status, 200);
    assert.is((await short.api('POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'bump' } })).status, 201);
    short.cp.store.compact(short.cp.store.currentRv);
    await until(() => lists >= 2, 'a relist after 410 Gone');
    await until(() => seen.includes('delete:first'), 'the delete found by the relist');
    assert.is((await short.api('POST', '/api/v1/namespaces/default/pods', podDoc('after'))).status, 201);
    await until(() => seen.includes('add:after'), 'a create after the relist');
    assert.equal(informer.list('default').map((p) => p.metadata?.name).sort(), ['after', 'before']);
    assert.equal(errors, []);
  } finally {
    await informer.stop();
    await short.close();
  }
});

test.run();
