/**
 * control-plane/apply.ts without a server: field sets, FieldsV1, merge, conflicts and removal
 * (the end-to-end behaviour, with kubectl, is in client-conformance.test.ts).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { apply, conflictStatus, fieldsOf, fromFieldsV1, managedAfterUpdate, pathString, toFieldsV1 } from '../control-plane/apply.js';

const deployment = (spec: Record<string, unknown>, labels?: Record<string, string>) => ({
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default', ...(labels ? { labels } : {}) }, spec,
});

test('field sets: keyed list elements, set elements, FieldsV1 round trip, kube-apiserver path strings', () => {
  const set = fieldsOf({ spec: { template: { spec: { containers: [{ name: 'a', image: 'x', ports: [{ containerPort: 80 }] }] } } }, metadata: { finalizers: ['f'] } });
  const v1 = toFieldsV1(set);
  assert.equal(v1, {
    'f:metadata': { 'f:finalizers': { 'v:"f"': {} } },
    'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"a"}': { '.': {}, 'f:image': {}, 'f:name': {}, 'f:ports': { 'k:{"containerPort":80,"protocol":"TCP"}': { '.': {}, 'f:containerPort': {} } } } } } } },
  });
  assert.equal([...fromFieldsV1(v1)].sort(), [...set].sort());
  const image = [...set].find((k) => k.endsWith('f:image'))!;
  assert.is(pathString(image), '.spec.template.spec.containers[name="a"].image');
});

test('apply: conflicts with an Update manager unless forced; same value is shared ownership', () => {
  const created = { ...deployment({ replicas: 1 }), metadata: { name: 'web', namespace: 'default', resourceVersion: '5' } };
  const first = apply(created, deployment({ replicas: 1 }), 'kubectl', 'apps/v1', false, undefined, true);
  assert.equal(first.conflicts, []);
  const live = first.object;
  live.metadata.managedFields = managedAfterUpdate(live, { ...live, spec: { replicas: 3 } }, 'scaler', 'apps/v1', undefined, true);
  live.spec = { replicas: 3 };
  const refused = apply(live, deployment({ replicas: 2 }), 'kubectl', 'apps/v1', false, undefined, true);
  assert.equal(refused.conflicts, [{ manager: '"scaler" using apps/v1', path: '.spec.replicas' }]);
  assert.is(conflictStatus(refused.conflicts).message, 'Apply failed with 1 conflict: conflict with "scaler" using apps/v1: .spec.replicas');
  assert.equal(apply(live, deployment({ replicas: 3 }), 'kubectl', 'apps/v1', false, undefined, true).conflicts, []);
  const forced = apply(live, deployment({ replicas: 2 }), 'kubectl', 'apps/v1', true, undefined, true);
  assert.is(forced.object.spec.replicas, 2);
  assert.equal(forced.object.metadata.managedFields.map((e: { manager: string }) => e.manager), ['kubectl'], 'the scaler owned nothing else and is gone');
  assert.is(forced.object.metadata.resourceVersion, '5', 'server-owned metadata kept');
});

test('apply: a field the manager stops applying goes unless someone else owns it', () => {
  const one = apply(undefined, deployment({ replicas: 1, minReadySeconds: 3 }, { a: '1', b: '2' }), 'm1', 'apps/v1', false, undefined, true).object;
  const two = apply(one, deployment({ minReadySeconds: 3 }, { b: '2' }), 'm2', 'apps/v1', false, undefined, true).object;
  const dropped = apply(two, deployment({}, {}), 'm1', 'apps/v1', false, undefined, true).object;
  assert.equal(dropped.metadata.labels, { b: '2' }, 'm2 still applies b; a was only m1\'s');
  assert.is(dropped.spec.minReadySeconds, 3);
  assert.is(dropped.spec.replicas, undefined);
});

test('apply: containers merge by name, env by name, other lists are replaced', () => {
  const live = apply(undefined, deployment({ template: { spec: { containers: [{ name: 'a', image: 'x', env: [{ name: 'E', value: '1' }], args: ['1', '2'] }], tolerations: [{ key: 'k' }] } } }), 'm1', 'apps/v1', false, undefined, true).object;
  const merged = apply(live, deployment({ template: { spec: { containers: [{ name: 'b', image: 'y' }, { name: 'a', image: 'x', env: [{ name: 'F', value: '2' }], args: ['3'] }], tolerations: [{ key: 'j' }] } } }), 'm2', 'apps/v1', true, undefined, true).object;
  const spec = merged.spec.template.spec;
  assert.equal(spec.containers.map((c: { name: string }) => c.name), ['a', 'b']);
  assert.equal(spec.containers[0].env, [{ name: 'E', value: '1' }, { name: 'F', value: '2' }]);
  assert.equal(spec.containers[0].args, ['3']);
  assert.equal(spec.tolerations, [{ key: 'j' }]);
});

test.run();
