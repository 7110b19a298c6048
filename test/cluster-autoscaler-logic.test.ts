/** The cluster autoscaler's decisions (cli/cluster-autoscaler-logic.ts) on fake nodes, pods and budgets. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { KObj } from '../control-plane/store.js';
import { systemReservedOf } from '../agent/config.js';
import { InvalidInput } from '../common/errors.js';
import { DEFAULT_OPTIONS, TO_BE_DELETED_TAINT, nextNodeName, nodeUtilization, planScaleDown, planScaleUp, podBlocksScaleDown, reservedFor, type NodeGroup } from '../cli/cluster-autoscaler-logic.js';

const node = (name: string, cpu = '1', memory = '2Gi', extra: KObj = {}): KObj => ({
  kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } }, spec: { ...extra },
  status: { allocatable: { cpu, memory, pods: '110' }, conditions: [{ type: 'Ready', status: 'True' }] },
});
let seq = 0;
const pod = (name: string, cpu: string, o: { node?: string; pending?: boolean; owner?: string; ns?: string; labels?: Record<string, string>; volumes?: KObj[]; annotations?: Record<string, string>; selector?: Record<string, string> } = {}): KObj => ({
  kind: 'Pod',
  metadata: {
    name, namespace: o.ns ?? 'default', uid: `uid-${name}`, labels: o.labels ?? { app: 'web' }, annotations: o.annotations ?? {}, creationTimestamp: `2026-01-01T00:00:${String(seq++).padStart(2, '0')}Z`,
    ownerReferences: o.owner === 'none' ? [] : [{ kind: o.owner ?? 'ReplicaSet', name: 'web-1', uid: 'rs', controller: true }],
  },
  spec: { ...(o.node ? { nodeName: o.node } : {}), ...(o.selector ? { nodeSelector: o.selector } : {}), containers: [{ name: 'c', resources: { requests: { cpu, memory: '64Mi' } } }], volumes: o.volumes ?? [] },
  status: o.pending ? { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }] } : { phase: 'Running' },
});
const group = (members: string[], min = 1, max = 3): NodeGroup => ({ name: 'stevedore-nodes', min, max, members });

test('scale-up: pods that do not fit anywhere are packed onto as few new nodes as they need, up to max', () => {
  const nodes = [node('node-1')];
  const pods = [pod('a', '600m', { node: 'node-1' }), pod('b', '600m', { pending: true }), pod('c', '300m', { pending: true }), pod('d', '600m', { pending: true })];
  const plan = planScaleUp(nodes, pods, group(['node-1']), nodes[0]);
  // c (300m) fits in node-1's free 400m; b and d need one new 1-cpu node each (600m + 600m > 1000m).
  assert.is(plan.add, 2);
  assert.equal(plan.triggered.map((t) => t.pod.metadata.name), ['b', 'd']);
  assert.is(plan.triggered[0]!.message, 'pod triggered scale-up: [{stevedore-nodes 1->3 (max: 3)}]');
  assert.equal(plan.notTriggered, []);
});

test('scale-up: max reached and pods that would not fit on a new node do not trigger one', () => {
  const nodes = [node('node-1'), node('node-2')];
  const pods = [pod('a', '900m', { node: 'node-1' }), pod('b', '900m', { node: 'node-2' }), pod('big', '2', { pending: true }), pod('c', '500m', { pending: true }), pod('sel', '100m', { pending: true, selector: { disk: 'ssd' } })];
  const plan = planScaleUp(nodes, pods, group(['node-1', 'node-2'], 1, 2), nodes[0]);
  assert.is(plan.add, 0);
  const msgs = Object.fromEntries(plan.notTriggered.map((v) => [v.pod.metadata.name, v.message]));
  assert.is(msgs.big, "pod didn't trigger scale-up: 1 Insufficient cpu");
  assert.is(msgs.c, "pod didn't trigger scale-up: 1 max node group size reached");
  assert.is(msgs.sel, "pod didn't trigger scale-up: 1 node(s) didn't match Pod's node affinity/selector");
});

test('scale-up: nothing unschedulable, or a node still starting with room, adds nothing', () => {
  assert.is(planScaleUp([node('node-1')], [pod('a', '100m', { node: 'node-1' })], group(['node-1']), node('node-1')).add, 0);
  const starting = node('node-2');
  starting.status.conditions = [{ type: 'Ready', status: 'False' }];
  const plan = planScaleUp([node('node-1'), starting], [pod('a', '900m', { node: 'node-1' }), pod('b', '600m', { pending: true })], group(['node-1', 'node-2']), node('node-1'));
  assert.is(plan.add, 0, 'the starting node-2 takes b');
});

test('utilization is the larger share of requested cpu and memory, DaemonSet pods aside', () => {
  const n = node('node-1', '1', '1Gi');
  assert.is(nodeUtilization(n, [pod('a', '250m', { node: 'node-1' }), pod('ds', '500m', { node: 'node-1', owner: 'DaemonSet' })]), 0.25);
  const memHeavy = pod('m', '100m', { node: 'node-1' });
  memHeavy.spec.containers[0].resources.requests.memory = '768Mi';
  assert.is(nodeUtilization(n, [memHeavy]), 0.75);
});

test('pods that block a scale-down: no controller, local storage, kube-system without a budget, a budget at 0, safe-to-evict=false', () => {
  assert.match(podBlocksScaleDown(pod('a', '1m', { owner: 'none' }), [])!, 'not replicated');
  assert.match(podBlocksScaleDown(pod('a', '1m', { volumes: [{ name: 'scratch', emptyDir: {} }] }), [])!, 'local storage');
  assert.match(podBlocksScaleDown(pod('a', '1m', { ns: 'kube-system' }), [])!, 'kube-system pod');
  const pdb = (allowed: number) => ({ metadata: { name: 'web', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'web' } } }, status: { disruptionsAllowed: allowed } });
  assert.match(podBlocksScaleDown(pod('a', '1m'), [pdb(0)])!, 'pod disruption budget');
  assert.is(podBlocksScaleDown(pod('a', '1m'), [pdb(1)]), undefined);
  assert.match(podBlocksScaleDown(pod('a', '1m', { annotations: { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false' } }), [])!, 'safe-to-evict');
  assert.is(podBlocksScaleDown(pod('a', '1m', { owner: 'none', annotations: { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'true' } }), []), undefined);
});

test('scale-down: an under-used node goes once unneeded long enough, its pods fitting elsewhere; never below min', () => {
  const nodes = [node('node-1'), node('node-2')];
  const pods = [pod('a', '300m', { node: 'node-1' }), pod('b', '200m', { node: 'node-2' })];
  const opts = { ...DEFAULT_OPTIONS, unneededMs: 20_000, delayAfterAddMs: 0 };
  const state = { since: new Map<string, number>() };
  let plan = planScaleDown(nodes, pods, [], group(['node-1', 'node-2']), state, 1000, 0, opts);
  assert.is(plan.remove, undefined, 'not unneeded long enough yet');
  assert.equal(plan.candidates.map((c) => c.node).sort(), ['node-1', 'node-2']);
  plan = planScaleDown(nodes, pods, [], group(['node-1', 'node-2']), state, 21_000, 0, opts);
  assert.is(plan.remove?.node, 'node-2', 'ties go to the newest node');
  assert.equal(plan.remove?.pods.map((p) => p.metadata.name), ['b']);
  // At min: nothing goes.
  assert.is(planScaleDown(nodes, pods, [], group(['node-1', 'node-2'], 2), state, 42_000, 0, opts).remove, undefined);
  // Right after a scale-up: nothing goes.
  assert.is(planScaleDown(nodes, pods, [], group(['node-1', 'node-2']), state, 42_000, 40_000, { ...opts, delayAfterAddMs: 10_000 }).remove, undefined);
});

test('scale-down: a busy node starts over; a pod with no room elsewhere blocks', () => {
  const nodes = [node('node-1'), node('node-2')];
  const opts = { ...DEFAULT_OPTIONS, unneededMs: 10_000, delayAfterAddMs: 0 };
  const state = { since: new Map<string, number>([['node-2', 0]]) };
  const busy = [pod('a', '900m', { node: 'node-1' }), pod('b', '600m', { node: 'node-2' })];
  let plan = planScaleDown(nodes, busy, [], group(['node-1', 'node-2']), state, 50_000, 0, opts);
  assert.is(plan.remove, undefined);
  assert.not.ok(state.since.has('node-2'), 'over the threshold: the clock starts over');
  const stuck = [pod('a', '900m', { node: 'node-1' }), pod('b', '400m', { node: 'node-2' })];
  plan = planScaleDown(nodes, stuck, [], group(['node-1', 'node-2']), state, 60_000, 0, opts);
  assert.match(plan.candidates.find((c) => c.node === 'node-2')!.blocked!, 'no place to move pod default/b');
  // A node being deleted is not a destination either.
  const tainted = [node('node-1', '1', '2Gi', { taints: [{ key: TO_BE_DELETED_TAINT, effect: 'NoSchedule' }] }), node('node-2')];
  plan = planScaleDown(tainted, [pod('b', '100m', { node: 'node-2' })], [], group(['node-1', 'node-2']), state, 70_000, 0, opts);
  assert.match(plan.candidates.find((c) => c.node === 'node-2')!.blocked!, 'no place');
});

test('node names and reserved resources', () => {
  assert.is(nextNodeName(['node-1', 'node-3']), 'node-2');
  assert.is(nextNodeName(['node-1']), 'node-2');
  assert.is(reservedFor({ cpuMillis: 1000, memoryBytes: 2 * 2 ** 30 }, { cpuMillis: 2000, memoryBytes: 8 * 2 ** 30 }), 'cpu=1000m,memory=6291456Ki');
  assert.is(reservedFor({ cpuMillis: 500 }, { cpuMillis: 2000, memoryBytes: 1 }), 'cpu=1500m');
});

test('the agent\'s --system-reserved: the kubelet\'s form; anything else is refused with a hint', () => {
  assert.equal(systemReservedOf({ systemReserved: 'cpu=1500m,memory=1Gi' }), { cpuMillis: 1500, memoryBytes: 2 ** 30 });
  assert.equal(systemReservedOf({}), { cpuMillis: 0, memoryBytes: 0 });
  for (const bad of ['cpu', 'gpu=1', 'cpu=lots', 'memory=1Gi,cpu=']) {
    try {
      systemReservedOf({ systemReserved: bad });
      assert.unreachable(`${bad} accepted`);
    } catch (err) {
      assert.instance(err, InvalidInput);
      assert.match((err as InvalidInput).message, '--system-reserved');
    }
  }
});

test.run();
