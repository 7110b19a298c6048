/**
 * The cluster autoscaler for real: `stevedore up --nodes 1 --max-nodes 2`
 * with 1-cpu nodes, the real kubectl. A Deployment scaled past node-1's
 * room leaves a pod Pending → TriggeredScaleUp → node-2 (a new node sandbox)
 * joins and the pod runs there; a pod no node of the group could take gets
 * NotTriggerScaleUp; the Deployment scaled down, node-2 goes after the
 * (short) unneeded time, its pod evicted to node-1; `down` leaves nothing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAlive } from '../sandbox/proc.js';
import { getSandbox } from '../sandbox/sandbox.js';
import { CLI } from './helpers/node.js';
import { freePort, run } from './helpers/cluster.js';
import { clusterKubectl, tearDownMultiNode } from './helpers/multi-node.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Names and addresses of this run only: nothing else on the host is touched.
const tag = randomBytes(2).toString('hex');
const sandboxPrefix = `ca${tag}`;
const nodeBridge = `stvdca${tag}`;
const octet = 10 + Math.floor(Math.random() * 200);
const nodeNetwork = `10.249.${octet}.0/24`;
const podCidr = `10.${246 + Math.floor(Math.random() * 4)}.0.0/16`;
const serviceCidr = `10.${100 + Math.floor(Math.random() * 40)}.${Math.floor(Math.random() * 250)}.0/24`;
let dataDir = '';
let cpPid = 0;
let autoscalerPid = 0;

const { k } = clusterKubectl(() => dataDir);
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(1000);
  }
}
interface PodView { name: string; node: string; phase: string; deleting: boolean }
async function fillPods(): Promise<PodView[]> {
  const list = JSON.parse(await k(['get', 'pods', '-l', 'app=fill', '-o', 'json'])) as { items: Array<{ metadata: { name: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { phase?: string } }> };
  return list.items.map((p) => ({ name: p.metadata.name, node: p.spec.nodeName ?? '', phase: p.status.phase ?? '', deleting: !!p.metadata.deletionTimestamp }));
}
async function eventsFor(pod: string): Promise<Array<{ reason: string; message: string; source: string }>> {
  const list = JSON.parse(await k(['get', 'events', '-o', 'json'])) as { items: Array<{ reason: string; message: string; involvedObject: { name: string }; source?: { component?: string } }> };
  return list.items.filter((e) => e.involvedObject.name === pod).map((e) => ({ reason: e.reason, message: e.message, source: e.source?.component ?? '' }));
}
async function nodeNames(): Promise<string[]> {
  return (await k(['get', 'nodes', '-o', 'jsonpath={.items[*].metadata.name}'])).trim().split(/\s+/).filter(Boolean).sort();
}

// 400m each on 1-cpu nodes: node-1 (with the demo pod's 100m) takes two.
const FILL = `apiVersion: apps/v1
kind: Deployment
metadata: {name: fill}
spec:
  replicas: 2
  selector: {matchLabels: {app: fill}}
  template:
    metadata: {labels: {app: fill}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: busybox
        command: [sh, -c, 'exec sleep 100000']
        resources: {requests: {cpu: 400m, memory: 32Mi}}
`;
const HUGE = `apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers:
  - name: sleep
    image: busybox
    command: [sh, -c, 'exec sleep 100000']
    resources: {requests: {cpu: '3'}}
`;

test.before(async () => {
  dataDir = await fs.mkdtemp('/var/tmp/stevedore-ca-');
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--nodes', '1', '--max-nodes', '2', '--node-allocatable', 'cpu=1,memory=2Gi',
    '--scale-down-unneeded-time', '20s', '--scale-down-delay-after-add', '0s', '--scan-interval', '2s',
    '--port', String(await freePort()), '--sandbox-name', sandboxPrefix, '--node-bridge', nodeBridge, '--node-network', nodeNetwork, '--pod-cidr', podCidr, '--service-cidr', serviceCidr]);
  cpPid = (JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8').catch(() => '{}')) as { controlPlanePid?: number }).controlPlanePid ?? 0;
  autoscalerPid = Number((await fs.readFile(path.join(dataDir, 'cluster-autoscaler.pid'), 'utf8').catch(() => '0')).trim());
  if (up.code !== 0) throw new Error(`stevedore up --max-nodes 2 failed:\n${up.stderr}\n${up.stdout}`);
});

test.after(async () => {
  const log = await fs.readFile(path.join(dataDir, 'cluster-autoscaler.log'), 'utf8').catch(() => '');
  if (process.env.STEVEDORE_TEST_VERBOSE) process.stdout.write(`--- cluster-autoscaler.log\n${log}\n`);
  await tearDownMultiNode({ dataDir, sandboxPrefix, nodes: ['node-1', 'node-2', 'node-3'], nodeBridge, processes: [['cluster autoscaler', autoscalerPid], ['control plane', cpPid]] });
});

test('up --max-nodes: one node of 1 cpu, the autoscaler running, its status ConfigMap written', async () => {
  assert.ok(autoscalerPid && (await isAlive(autoscalerPid)), 'the cluster autoscaler process runs');
  assert.equal(await nodeNames(), ['node-1']);
  assert.is((await k(['get', 'node', 'node-1', '-o', 'jsonpath={.status.allocatable.cpu}'])).trim(), '1000m');
  const status = await eventually('cluster-autoscaler-status', 30_000, async () => (await k(['-n', 'kube-system', 'get', 'configmap', 'cluster-autoscaler-status', '-o', 'jsonpath={.data.status}'])) || undefined);
  assert.match(status, 'autoscalerStatus: Running');
  assert.match(status, 'name: stevedore-nodes');
  assert.match(status, 'maxSize: 2');
});

test('a pod that does not fit: TriggeredScaleUp, node-2 joins and the pod runs there; one that fits no node: NotTriggerScaleUp', async () => {
  await k(['apply', '-f', '-'], FILL);
  await k(['rollout', 'status', 'deploy/fill', '--timeout=90s']);
  assert.ok((await fillPods()).every((p) => p.node === 'node-1'));
  await k(['scale', 'deploy/fill', '--replicas=3']);
  await k(['apply', '-f', '-'], HUGE);
  const pending = await eventually('a fill pod Pending (Insufficient cpu)', 30_000, async () => (await fillPods()).find((p) => !p.node));
  const triggered = await eventually(`TriggeredScaleUp on ${pending.name}`, 30_000, async () => (await eventsFor(pending.name)).find((e) => e.reason === 'TriggeredScaleUp'));
  assert.is(triggered.message, 'pod triggered scale-up: [{stevedore-nodes 1->2 (max: 2)}]');
  assert.is(triggered.source, 'cluster-autoscaler');
  const scheduled = await eventually(`${pending.name} Running on node-2`, 150_000, async () => {
    const p = (await fillPods()).find((x) => x.name === pending.name);
    return p?.node === 'node-2' && p.phase === 'Running' ? p : undefined;
  });
  assert.is(scheduled.node, 'node-2');
  assert.equal(await nodeNames(), ['node-1', 'node-2']);
  const huge = await eventually('NotTriggerScaleUp on huge', 30_000, async () => (await eventsFor('huge')).find((e) => e.reason === 'NotTriggerScaleUp'));
  assert.is(huge.message, "pod didn't trigger scale-up: 1 Insufficient cpu");
  assert.is((await k(['get', 'pod', 'huge', '-o', 'jsonpath={.spec.nodeName}'])).trim(), '', 'still Pending');
  await k(['delete', 'pod', 'huge', '--wait=false']);
});

test('scaled down: node-2 is kept while a PodDisruptionBudget holds its pod, then goes once unneeded for 20 s, its pod evicted to node-1; never below min', async () => {
  // Leave one fill pod on each node: node-1 at 500m (not under 0.5), node-2 at 400m (under).
  const onNode1 = (await fillPods()).find((p) => p.node === 'node-1')!;
  await k(['delete', 'pod', onNode1.name, '--wait=false']);
  await k(['scale', 'deploy/fill', '--replicas=2']);
  const placed = await eventually('one fill pod on each node', 60_000, async () => {
    const pods = (await fillPods()).filter((p) => !p.deleting);
    return pods.length === 2 && pods.every((p) => p.phase === 'Running') && new Set(pods.map((p) => p.node)).size === 2 ? pods : undefined;
  });
  const moving = placed.find((p) => p.node === 'node-2')!;
  await k(['apply', '-f', '-'], 'apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: fill}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: fill}}\n');
  const held = await eventually('the budget blocking node-2 in the status', 30_000, async () => {
    const status = await k(['-n', 'kube-system', 'get', 'configmap', 'cluster-autoscaler-status', '-o', 'jsonpath={.data.status}']);
    return /status: NoCandidates/.test(status) ? status : undefined;
  });
  assert.match(held, 'NoCandidates');
  await sleep(25_000);
  assert.equal(await nodeNames(), ['node-1', 'node-2'], 'the budget holds node-2 past the unneeded time');
  await k(['delete', 'pdb', 'fill']);
  const t0 = Date.now();
  await eventually('node-2 removed', 150_000, async () => ((await nodeNames()).join(',') === 'node-1' ? true : undefined));
  assert.ok(Date.now() - t0 >= 15_000, 'not before the unneeded time');
  const evicted = await eventsFor(moving.name);
  assert.ok(evicted.some((e) => e.reason === 'ScaleDown' && e.message === 'deleting pod for node scale down' && e.source === 'cluster-autoscaler'), JSON.stringify(evicted));
  const live = await eventually('2 fill pods Running on node-1', 60_000, async () => {
    const pods = (await fillPods()).filter((p) => !p.deleting);
    return pods.length === 2 && pods.every((p) => p.node === 'node-1' && p.phase === 'Running') ? pods : undefined;
  });
  assert.is(live.length, 2);
  const nodeEvents = await eventsFor('node-2');
  assert.ok(nodeEvents.some((e) => e.reason === 'ScaleDown' && e.message === 'marked the node as toBeDeleted/unschedulable'), JSON.stringify(nodeEvents));
  assert.ok(nodeEvents.some((e) => e.reason === 'ScaleDown' && e.message === 'node removed by cluster autoscaler'), JSON.stringify(nodeEvents));
  assert.not.ok(await getSandbox(`${sandboxPrefix}-node-2`), 'its sandbox is gone');
  const state = JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8')) as { nodes: Array<{ name: string }> };
  assert.equal(state.nodes.map((n) => n.name), ['node-1']);
  // node-1 stays: min is 1 (and the demo pod has no controller).
  await k(['scale', 'deploy/fill', '--replicas=0']);
  await sleep(8000);
  assert.equal(await nodeNames(), ['node-1']);
});

test.run();
