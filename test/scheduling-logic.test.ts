/**
 * kube-scheduler's filters and scores (control-plane/controllers/scheduling.ts)
 * and the node lifecycle's taint rules (node-lifecycle.ts), as pure functions.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NO_USAGE, addPod, filterReason, podRequests, scoreNode, tolerates, type ClusterView, type Usage } from '../control-plane/controllers/scheduling.js';
import { evictionTime, lifecycleTaints } from '../control-plane/controllers/node-lifecycle.js';
import { admitDefaultTolerations } from '../control-plane/kinds/pods.js';
import type { KObj } from '../control-plane/store.js';

const node = (name: string, labels: Record<string, string> = {}, extra: KObj = {}): KObj => ({
  metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } },
  spec: extra.spec ?? {},
  status: { allocatable: { cpu: extra.cpu ?? '4', memory: extra.memory ?? '8Gi', pods: extra.pods ?? '110' }, conditions: [{ type: 'Ready', status: 'True' }] },
});
const pod = (name: string, spec: KObj = {}, labels: Record<string, string> = {}): KObj => ({
  metadata: { name, namespace: 'default', labels, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: { containers: [{ name: 'c', image: 'busybox' }], ...spec },
});
const bound = (p: KObj, nodeName: string): KObj => ({ ...p, spec: { ...p.spec, nodeName } });

function view(nodes: KObj[], boundPods: KObj[] = []): ClusterView {
  const used = new Map<string, Usage>();
  for (const p of boundPods) used.set(p.spec.nodeName, addPod(used.get(p.spec.nodeName) ?? NO_USAGE, p));
  return { nodes, boundPods, usage: (n) => used.get(n) ?? NO_USAGE };
}

test('requests: a limit stands for a missing request; the largest init container counts when it exceeds the apps; sidecars add up', () => {
  assert.equal(podRequests(pod('p', { containers: [{ name: 'a', resources: { limits: { cpu: '500m', memory: '64Mi' } } }, { name: 'b', resources: { requests: { cpu: '250m' } } }] })), { cpu: 750, mem: 64 * 2 ** 20 });
  assert.equal(podRequests(pod('p', { initContainers: [{ name: 'i', resources: { requests: { cpu: '2' } } }], containers: [{ name: 'a', resources: { requests: { cpu: '1' } } }] })).cpu, 2000);
  assert.equal(podRequests(pod('p', { initContainers: [{ name: 's', restartPolicy: 'Always', resources: { requests: { cpu: '1' } } }], containers: [{ name: 'a', resources: { requests: { cpu: '1' } } }] })).cpu, 2000);
});

test('taints: NoSchedule and NoExecute need a toleration (Exists, Equal, empty key); PreferNoSchedule only lowers the score', () => {
  const tainted = node('t', {}, { spec: { taints: [{ key: 'gpu', value: 'yes', effect: 'NoSchedule' }] } });
  const v = view([tainted]);
  assert.is(filterReason(pod('p'), tainted, v), 'node(s) had untolerated taint {gpu: yes}');
  assert.is(filterReason(pod('p', { tolerations: [{ key: 'gpu', operator: 'Equal', value: 'yes' }] }), tainted, v), undefined);
  assert.is(filterReason(pod('p', { tolerations: [{ key: 'gpu', operator: 'Equal', value: 'no' }] }), tainted, v), 'node(s) had untolerated taint {gpu: yes}');
  assert.is(filterReason(pod('p', { tolerations: [{ operator: 'Exists' }] }), tainted, v), undefined, 'an empty key with Exists tolerates everything');
  assert.ok(tolerates({ key: 'a', operator: 'Exists', effect: 'NoExecute' }, { key: 'a', effect: 'NoExecute' }));
  assert.not.ok(tolerates({ key: 'a', operator: 'Exists', effect: 'NoSchedule' }, { key: 'a', effect: 'NoExecute' }));
  const soft = node('s', {}, { spec: { taints: [{ key: 'meh', effect: 'PreferNoSchedule' }] } });
  const plain = node('p');
  const v2 = view([soft, plain]);
  assert.is(filterReason(pod('p'), soft, v2), undefined);
  assert.ok(scoreNode(pod('p'), plain, v2) > scoreNode(pod('p'), soft, v2));
});

test('cordoned nodes take only pods that tolerate node.kubernetes.io/unschedulable', () => {
  const cordoned = node('c', {}, { spec: { unschedulable: true } });
  assert.is(filterReason(pod('p'), cordoned, view([cordoned])), 'node(s) were unschedulable');
  assert.is(filterReason(pod('p', { tolerations: [{ key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' }] }), cordoned, view([cordoned])), undefined);
});

test('node affinity: required terms ORed, expressions ANDed, In/NotIn/Exists/DoesNotExist/Gt/Lt and matchFields; preferred weights score', () => {
  const a = node('a', { zone: 'z1', gen: '3' });
  const b = node('b', { zone: 'z2', gen: '5' });
  const v = view([a, b]);
  const required = (terms: KObj[]) => pod('p', { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } });
  const miss = "node(s) didn't match Pod's node affinity/selector";
  assert.is(filterReason(required([{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['z2'] }] }]), a, v), miss);
  assert.is(filterReason(required([{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['z2'] }] }, { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['a'] }] }]), a, v), undefined);
  assert.is(filterReason(required([{ matchExpressions: [{ key: 'gen', operator: 'Gt', values: ['4'] }] }]), a, v), miss);
  assert.is(filterReason(required([{ matchExpressions: [{ key: 'gen', operator: 'Gt', values: ['4'] }] }]), b, v), undefined);
  assert.is(filterReason(required([{ matchExpressions: [{ key: 'gpu', operator: 'DoesNotExist' }, { key: 'zone', operator: 'NotIn', values: ['z2'] }] }]), a, v), undefined);
  assert.is(filterReason(required([{}]), a, v), miss, 'an empty term matches nothing');
  const preferring = pod('p', { affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 80, preference: { matchExpressions: [{ key: 'zone', operator: 'In', values: ['z2'] }] } }] } } });
  assert.ok(scoreNode(preferring, b, v) > scoreNode(preferring, a, v));
});

test('resources: cpu, memory and pod count against allocatable, with what is already bound', () => {
  const small = node('s', {}, { cpu: '1', memory: '1Gi', pods: '2' });
  const hungry = pod('h', { containers: [{ name: 'c', resources: { requests: { cpu: '600m' } } }] });
  assert.is(filterReason(hungry, small, view([small], [bound(hungry, 's')])), 'Insufficient cpu');
  const big = pod('b', { containers: [{ name: 'c', resources: { requests: { memory: '2Gi' } } }] });
  assert.is(filterReason(big, small, view([small])), 'Insufficient memory');
  assert.is(filterReason(pod('x'), small, view([small], [bound(pod('1'), 's'), bound(pod('2'), 's')])), 'Too many pods');
  // least allocated: the emptier node scores higher
  const n1 = node('n1');
  const n2 = node('n2');
  const v = view([n1, n2], [bound(pod('busy', { containers: [{ name: 'c', resources: { requests: { cpu: '3', memory: '6Gi' } } }] }), 'n1')]);
  assert.ok(scoreNode(pod('p'), n2, v) > scoreNode(pod('p'), n1, v));
});

test('pod affinity and anti-affinity by topology domain; the first pod of a group may go anywhere; existing pods\' anti-affinity holds', () => {
  const a = node('a', { zone: 'z1' });
  const b = node('b', { zone: 'z2' });
  const db = bound(pod('db', {}, { app: 'db' }), 'a');
  const v = view([a, b], [db]);
  const near = pod('web', { affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'db' } }, topologyKey: 'zone' }] } } });
  assert.is(filterReason(near, a, v), undefined);
  assert.is(filterReason(near, b, v), "node(s) didn't match pod affinity rules");
  const apart = pod('db2', { affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'db' } }, topologyKey: 'kubernetes.io/hostname' }] } } }, { app: 'db' });
  assert.is(filterReason(apart, a, v), "node(s) didn't match pod anti-affinity rules");
  assert.is(filterReason(apart, b, v), undefined);
  const first = pod('cache', { affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'cache' } }, topologyKey: 'zone' }] } } }, { app: 'cache' });
  assert.is(filterReason(first, b, v), undefined, 'no cache pod anywhere, and it is one itself');
  const loner = bound(pod('loner', { affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { noisy: 'yes' } }, topologyKey: 'kubernetes.io/hostname' }] } } }), 'b');
  assert.is(filterReason(pod('n', {}, { noisy: 'yes' }), b, view([a, b], [loner])), "node(s) didn't satisfy existing pods anti-affinity rules");
});

test('topology spread: DoNotSchedule keeps the skew within maxSkew; minDomains counts missing domains as empty; ScheduleAnyway only scores', () => {
  const nodes = [node('a', { zone: 'z1' }), node('b', { zone: 'z2' }), node('c', { zone: 'z2' })];
  const web = (name: string, spread: KObj) => pod(name, { topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'zone', labelSelector: { matchLabels: { app: 'web' } }, ...spread }] }, { app: 'web' });
  const placed = [bound(pod('w1', {}, { app: 'web' }), 'b'), bound(pod('w2', {}, { app: 'web' }), 'c')];
  const v = view(nodes, placed);
  assert.is(filterReason(web('w3', {}), nodes[1]!, v), "node(s) didn't match pod topology spread constraints", 'z2 has 2, z1 has 0');
  assert.is(filterReason(web('w3', {}), nodes[0]!, v), undefined);
  assert.is(filterReason(web('w3', { minDomains: 3 }), nodes[0]!, view(nodes, [])), undefined);
  assert.is(filterReason(web('w3', { minDomains: 3 }), nodes[0]!, view(nodes, [bound(pod('w0', {}, { app: 'web' }), 'a')])), "node(s) didn't match pod topology spread constraints", 'only two zones exist: the minimum counts as 0');
  const soft = web('w3', { whenUnsatisfiable: 'ScheduleAnyway' });
  assert.is(filterReason(soft, nodes[1]!, v), undefined);
  assert.ok(scoreNode(soft, nodes[0]!, v) > scoreNode(soft, nodes[1]!, v));
});

test('a controller\'s pods without constraints spread over hosts by the system defaults, even when the fuller node has more room', () => {
  const roomy = node('roomy', {}, { cpu: '64', memory: '256Gi' });
  const small = node('small', {}, { cpu: '4', memory: '8Gi' });
  const owned = (name: string) => ({ ...pod(name, {}, { app: 'web' }), metadata: { name, namespace: 'default', labels: { app: 'web' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web-1', uid: 'rs', controller: true }] } });
  const v = view([roomy, small], [bound(owned('w1'), 'roomy'), bound(owned('w2'), 'roomy'), bound(owned('w3'), 'roomy')]);
  assert.ok(scoreNode(owned('w4'), small, v) > scoreNode(owned('w4'), roomy, v), 'skew 3 on roomy already: small wins');
  assert.ok(scoreNode(pod('solo'), roomy, v) > scoreNode(pod('solo'), small, v), 'a pod no controller owns just takes the roomier node');
});

test('lifecycle taints follow the Ready condition and keep the time NoExecute was first added', () => {
  const n = node('n');
  assert.equal(lifecycleTaints(n, [{ key: 'x', effect: 'NoSchedule' }], 'T1'), [{ key: 'x', effect: 'NoSchedule' }]);
  n.status.conditions[0].status = 'Unknown';
  const t1 = lifecycleTaints(n, [], 'T1');
  assert.equal(t1, [{ key: 'node.kubernetes.io/unreachable', effect: 'NoSchedule' }, { key: 'node.kubernetes.io/unreachable', effect: 'NoExecute', timeAdded: 'T1' }]);
  assert.equal(lifecycleTaints(n, t1, 'T2'), t1, 'timeAdded kept');
  n.status.conditions[0].status = 'False';
  assert.is(lifecycleTaints(n, t1, 'T3')[0]!.key, 'node.kubernetes.io/not-ready');
  n.status.conditions[0].status = 'True';
  assert.equal(lifecycleTaints(n, t1, 'T4'), []);
});

test('eviction: at once without a toleration, after the shortest tolerationSeconds, never with an unlimited toleration; DefaultTolerationSeconds adds what is missing', () => {
  const added = '2026-01-01T00:00:00Z';
  const taints = [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute', timeAdded: added }];
  assert.is(evictionTime(pod('p'), taints), 0);
  const p = pod('p');
  admitDefaultTolerations(p, { notReady: 300, unreachable: 7 });
  assert.equal(p.spec.tolerations.map((t: KObj) => `${t.key}=${t.tolerationSeconds}`), ['node.kubernetes.io/not-ready=300', 'node.kubernetes.io/unreachable=7']);
  assert.is(evictionTime(p, taints), Date.parse(added) + 7000);
  const forever = pod('f', { tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' }] });
  admitDefaultTolerations(forever, { notReady: 300, unreachable: 300 });
  assert.is(forever.spec.tolerations.length, 2, 'only not-ready was added');
  assert.is(evictionTime(forever, taints), undefined);
  const all = pod('a', { tolerations: [{ operator: 'Exists' }] });
  admitDefaultTolerations(all, { notReady: 300, unreachable: 300 });
  assert.is(all.spec.tolerations.length, 1, 'tolerating everything already covers both');
});

test.run();
