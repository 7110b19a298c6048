/**
 * Scheduling and node lifecycle on a real control plane with the real
 * kubectl, over three registered nodes whose Leases this test renews (no
 * agents: nothing runs, pods stay Pending on their nodes): spreading,
 * taints and tolerations, kube-scheduler's Unschedulable message, cordon,
 * and a node that stops renewing its Lease losing its pods to the others.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestControlPlane, registerNode, waitFor, type TestCP } from './helpers/control-plane.js';

let t: TestCP;
const NODES = ['node-1', 'node-2', 'node-3'];
/** Nodes whose Lease this test keeps renewing (a node taken out of it "dies"). */
const alive = new Set(NODES);
let renewer: NodeJS.Timeout | undefined;

/** What an agent would report: every pod bound to a live node is Running and Ready (from the drain test on). */
let reportReady = false;
async function reportPodsReady(): Promise<void> {
  if (!reportReady) return;
  const list = JSON.parse(await t.k(['get', 'pods', '-o', 'json'])).items as Array<Pod & { metadata: { namespace: string } ; status: { phase?: string } }>;
  const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  for (const p of list) {
    if (!p.spec.nodeName || !alive.has(p.spec.nodeName) || p.metadata.deletionTimestamp || p.status.phase === 'Running') continue;
    await t.api('PATCH', `/api/v1/namespaces/${p.metadata.namespace}/pods/${p.metadata.name}/status`,
      { status: { phase: 'Running', startTime: ts, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }] } },
      { contentType: 'application/strategic-merge-patch+json', cert: await t.nodeCert(p.spec.nodeName) });
  }
}

async function renewLeases(): Promise<void> {
  for (const name of alive) {
    const cert = await t.nodeCert(name);
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`;
    const cur = await t.api('GET', path, undefined, { cert });
    if (cur.status !== 200) continue;
    cur.body.spec.renewTime = new Date().toISOString().replace('Z', '000Z');
    await t.api('PUT', path, cur.body, { cert });
  }
}

type Pod = { metadata: { name: string; deletionTimestamp?: string; labels?: Record<string, string> }; spec: { nodeName?: string }; status: { conditions?: Array<{ type: string; status: string; message?: string }> } };
const pods = async (selector: string): Promise<Pod[]> => JSON.parse(await t.k(['get', 'pods', '-l', selector, '-o', 'json'])).items;
const perNode = (list: Pod[]) => {
  const out: Record<string, number> = {};
  for (const p of list) if (p.spec.nodeName && !p.metadata.deletionTimestamp) out[p.spec.nodeName] = (out[p.spec.nodeName] ?? 0) + 1;
  return out;
};

test.before(async () => {
  t = await startTestControlPlane({ nodeMonitorGracePeriodSeconds: 2, defaultUnreachableTolerationSeconds: 2 });
  for (const [i, name] of NODES.entries()) await registerNode(t, name, { cpu: '4', memory: '8Gi', labels: { 'topology.kubernetes.io/zone': `zone-${i + 1}` } });
  let busy = false;
  renewer = setInterval(() => {
    if (busy) return;
    busy = true;
    void renewLeases().then(reportPodsReady).catch(() => undefined).finally(() => { busy = false; });
  }, 300);
});

test.after(async () => {
  if (renewer) clearInterval(renewer);
  await t.close();
});

test('a 6-replica Deployment spreads over 3 nodes, 2 each', async () => {
  await t.k(['create', 'deployment', 'web', '--image=busybox:1', '--replicas=6']);
  const spread = await waitFor('6 web pods bound', async () => {
    const list = await pods('app=web');
    const counts = perNode(list);
    return Object.values(counts).reduce((a, b) => a + b, 0) === 6 && counts;
  }, 20_000);
  assert.equal(spread, { 'node-1': 2, 'node-2': 2, 'node-3': 2 });
});

test('a NoSchedule taint keeps pods off unless they tolerate it; Unschedulable says why per node as kube-scheduler does', async () => {
  await t.k(['taint', 'nodes', 'node-3', 'dedicated=gpu:NoSchedule']);
  await t.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: gpu-job}
spec:
  nodeSelector: {topology.kubernetes.io/zone: zone-3}
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  containers: [{name: c, image: busybox:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-toleration}
spec:
  nodeSelector: {topology.kubernetes.io/zone: zone-3}
  containers: [{name: c, image: busybox:1}]
`);
  const node = await waitFor('gpu-job bound', async () => (await t.k(['get', 'pod', 'gpu-job', '-o', 'jsonpath={.spec.nodeName}'])) || undefined);
  assert.is(node, 'node-3');
  const cond = await waitFor('no-toleration unschedulable', async () => {
    const p = JSON.parse(await t.k(['get', 'pod', 'no-toleration', '-o', 'json'])) as Pod;
    return p.status.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  });
  assert.is(cond.message, "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.");
  const events = await t.k(['get', 'events', '--field-selector', 'involvedObject.name=no-toleration,reason=FailedScheduling', '-o', 'jsonpath={.items[0].message}']);
  assert.is(events, cond.message);
  await t.k(['taint', 'nodes', 'node-3', 'dedicated=gpu:NoSchedule-']);
  await waitFor('no-toleration bound once the taint is gone', async () => (await t.k(['get', 'pod', 'no-toleration', '-o', 'jsonpath={.spec.nodeName}'])) === 'node-3');
  // No agent confirms a graceful end here: force, so they stop counting on node-3.
  await t.k(['delete', 'pod', 'gpu-job', 'no-toleration', '--grace-period=0', '--force']);
});

test('a cordoned node takes no new pods; uncordoned, it does again', async () => {
  await t.k(['cordon', 'node-1']);
  await t.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: pinned-zone-1}
spec:
  nodeSelector: {topology.kubernetes.io/zone: zone-1}
  containers: [{name: c, image: busybox:1}]
`);
  const cond = await waitFor('pinned-zone-1 unschedulable', async () => {
    const p = JSON.parse(await t.k(['get', 'pod', 'pinned-zone-1', '-o', 'json'])) as Pod;
    return p.status.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  });
  assert.match(cond.message ?? '', '1 node(s) were unschedulable');
  assert.match(await t.k(['get', 'node', 'node-1']), /Ready,SchedulingDisabled/);
  await t.k(['uncordon', 'node-1']);
  await waitFor('pinned-zone-1 bound after uncordon', async () => (await t.k(['get', 'pod', 'pinned-zone-1', '-o', 'jsonpath={.spec.nodeName}'])) === 'node-1');
  await t.k(['delete', 'pod', 'pinned-zone-1', '--grace-period=0', '--force']);
});

test('a node that stops renewing its Lease goes Unknown, gets the unreachable taints, and its Deployment pods are recreated on the others', async () => {
  const before = (await pods('app=web')).filter((p) => p.spec.nodeName === 'node-2').map((p) => p.metadata.name);
  assert.is(before.length, 2);
  alive.delete('node-2');
  const taints = await waitFor('node-2 tainted unreachable', async () => {
    const n = JSON.parse(await t.k(['get', 'node', 'node-2', '-o', 'json']));
    const list: Array<{ key: string; effect: string }> = n.spec?.taints ?? [];
    return list.some((x) => x.key === 'node.kubernetes.io/unreachable' && x.effect === 'NoExecute') && list;
  }, 15_000);
  assert.equal(taints.map((x) => `${x.key}:${x.effect}`).sort(), ['node.kubernetes.io/unreachable:NoExecute', 'node.kubernetes.io/unreachable:NoSchedule']);
  assert.match(await t.k(['get', 'node', 'node-2']), /node-2\s+NotReady/);
  // After the 2 s toleration the pods are evicted (Terminating: nobody on node-2 confirms) and replaced elsewhere.
  const counts = await waitFor('6 live web pods on node-1 and node-3', async () => {
    const c = perNode(await pods('app=web'));
    return !c['node-2'] && (c['node-1'] ?? 0) + (c['node-3'] ?? 0) === 6 && c;
  }, 30_000);
  assert.equal(counts, { 'node-1': 3, 'node-3': 3 });
  const evicted = JSON.parse(await t.k(['get', 'events', '--field-selector', 'reason=TaintManagerEviction', '-o', 'json'])).items.map((e: { involvedObject: { name: string } }) => e.involvedObject.name).sort();
  assert.equal(evicted, [...before].sort());
  // The node comes back: the taints go.
  alive.add('node-2');
  const n = await t.api('GET', '/api/v1/nodes/node-2');
  n.body.status.conditions[0].status = 'True';
  n.body.status.conditions[0].lastHeartbeatTime = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const put = await t.api('PUT', '/api/v1/nodes/node-2/status', n.body, { cert: await t.nodeCert('node-2') });
  assert.is(put.status, 200, put.text);
  await waitFor('node-2 untainted', async () => !JSON.parse(await t.k(['get', 'node', 'node-2', '-o', 'json'])).spec?.taints, 10_000);
});

test('kubectl drain evicts through the Eviction API and stops where a PodDisruptionBudget holds', async () => {
  reportReady = true;
  await waitFor('all web pods Ready', async () => (await pods('app=web')).filter((p) => !p.metadata.deletionTimestamp && p.spec.nodeName !== 'node-2').every((p) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')), 15_000);
  await t.k(['apply', '-f', '-'], `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web-pdb}
spec:
  minAvailable: 6
  selector: {matchLabels: {app: web}}
`);
  const row = await waitFor('the budget counts 6 healthy', async () => {
    const out = await t.k(['get', 'pdb', 'web-pdb']);
    return /web-pdb\s+6\s+N\/A\s+0\s+/.test(out) && JSON.parse(await t.k(['get', 'pdb', 'web-pdb', '-o', 'json'])).status.currentHealthy === 6 && out;
  }, 15_000);
  assert.match(row, /^NAME\s+MIN AVAILABLE\s+MAX UNAVAILABLE\s+ALLOWED DISRUPTIONS\s+AGE/);
  const onNode1 = (await pods('app=web')).filter((p) => p.spec.nodeName === 'node-1' && !p.metadata.deletionTimestamp).map((p) => p.metadata.name);
  assert.is(onNode1.length, 3);
  const held = await t.kubectl(['drain', 'node-1', '--ignore-daemonsets', '--grace-period=0', '--timeout=4s']);
  assert.is.not(held.exitCode, 0);
  assert.match(held.stderr, "Cannot evict pod as it would violate the pod's disruption budget.");
  assert.equal((await pods('app=web')).filter((p) => p.spec.nodeName === 'node-1' && !p.metadata.deletionTimestamp).length, 3, 'nothing evicted');
  assert.match(await t.k(['get', 'node', 'node-1']), /SchedulingDisabled/);
  // One disruption at a time: each eviction waits for the replacement to be Ready elsewhere.
  await t.k(['patch', 'pdb', 'web-pdb', '--type=merge', '-p', '{"spec":{"minAvailable":5}}']);
  const drained = await t.kubectl(['drain', 'node-1', '--ignore-daemonsets', '--grace-period=0', '--timeout=60s']);
  assert.is(drained.exitCode, 0, drained.stderr);
  for (const name of onNode1) assert.match(drained.stdout, `pod/${name} evicted`);
  // drain returns once the last evicted pod is gone; its replacement may still be waiting for the scheduler.
  const after = await waitFor('six web pods scheduled again', async () => {
    const placed = perNode(await pods('app=web'));
    return Object.values(placed).reduce((a, b) => a + b, 0) === 6 ? placed : undefined;
  }, 15_000);
  assert.not.ok(after['node-1'], JSON.stringify(after));
  const eviction = await t.api('POST', `/api/v1/namespaces/default/pods/${(await pods('app=web'))[0]!.metadata.name}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'someone-else' } });
  assert.is(eviction.status, 400, 'the Eviction must name the pod of the URL');
  await t.k(['uncordon', 'node-1']);
});

test.run();
