/**
 * `stevedore up --nodes 3` for real: three node sandboxes, each in a network
 * namespace of its own on a host bridge, with their own agent, pod CIDR and
 * api-service, one control plane, the real kubectl. Shown: distinct
 * addresses and pod CIDRs, host-gw routes, a Deployment spread 2/2/2, pod to
 * pod across nodes by IP (source address kept) and through a Service's DNS
 * name, a node whose agent stops going NotReady with its pods recreated on
 * the others, and `down` leaving nothing behind.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { planNodes } from '../cli/up-nodes.js';
import { desiredRoutes } from '../agent/node-routes.js';
import { isAlive } from '../sandbox/proc.js';
import { getSandbox } from '../sandbox/sandbox.js';
import { CLI } from './helpers/node.js';
import { freePort, run } from './helpers/cluster.js';
import { clusterKubectl, tearDownMultiNode } from './helpers/multi-node.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Names and addresses of this run only: nothing else on the host is touched.
const tag = randomBytes(2).toString('hex');
const sandboxPrefix = `mn${tag}`;
const nodeBridge = `stvdmn${tag}`;
const octet = 10 + Math.floor(Math.random() * 200);
const nodeNetwork = `10.250.${octet}.0/24`;
const podCidr = `10.${251 + Math.floor(Math.random() * 4)}.0.0/16`;
const podBase = podCidr.split('.').slice(0, 2).join('.');
const serviceCidr = `10.${150 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`;
const NODES = ['node-1', 'node-2', 'node-3'];
let dataDir = '';
let cpPid = 0;
const podCidrs = new Map<string, string>();

const { kubectl, k, rollout } = clusterKubectl(() => dataDir);
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(500);
  }
}
interface PodView { name: string; node: string; ip: string; phase: string; deleting: boolean }
async function webPods(): Promise<PodView[]> {
  const list = JSON.parse(await k(['get', 'pods', '-l', 'app=web', '-o', 'json'])) as { items: Array<{ metadata: { name: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { podIP?: string; phase?: string } }> };
  return list.items.map((p) => ({ name: p.metadata.name, node: p.spec.nodeName ?? '', ip: p.status.podIP ?? '', phase: p.status.phase ?? '', deleting: !!p.metadata.deletionTimestamp }));
}
const perNode = (pods: PodView[]) => NODES.map((n) => pods.filter((p) => p.node === n).length);

const WEB = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: httpd
        image: busybox
        ports: [{name: http, containerPort: 8080}]
        # /cgi-bin/who answers with the caller's address as the server sees it (no NAT between pods).
        command: [sh, -c, 'mkdir -p /www/cgi-bin && hostname > /www/index.html && printf "#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \\$REMOTE_ADDR\\n" > /www/cgi-bin/who && chmod +x /www/cgi-bin/who && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`;
const CLIENT = `apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: node-1}
  containers:
  - name: sh
    image: busybox
    command: [sh, -c, 'exec sleep 100000']
`;

test.before(async () => {
  dataDir = await fs.mkdtemp('/var/tmp/stevedore-mn-');
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--nodes', '3', '--port', String(await freePort()), '--sandbox-name', sandboxPrefix,
    '--node-bridge', nodeBridge, '--node-network', nodeNetwork, '--pod-cidr', podCidr, '--service-cidr', serviceCidr,
    '--node-monitor-grace-period', '6s', '--default-unreachable-toleration-seconds', '2', '--default-not-ready-toleration-seconds', '2']);
  cpPid = (JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8').catch(() => '{}')) as { controlPlanePid?: number }).controlPlanePid ?? 0;
  if (up.code !== 0) throw new Error(`stevedore up --nodes 3 failed:\n${up.stderr}\n${up.stdout}`);
});

test.after(async () => {
  await tearDownMultiNode({ dataDir, sandboxPrefix, nodes: [...NODES, 'node-4'], nodeBridge, processes: [['control plane', cpPid]] });
});

test('planNodes and desiredRoutes (pure)', () => {
  const plan = planNodes({ nodes: 3, nodeNetwork: '10.250.0.0/24', podCidr: '10.88.0.0/16', sandboxName: 'stevedore', dataDir: '/d' });
  assert.is(plan.gateway, '10.250.0.1');
  assert.equal(plan.nodes.map((n) => [n.name, n.sandbox, n.address]), [
    ['node-1', 'stevedore-node-1', '10.250.0.11'], ['node-2', 'stevedore-node-2', '10.250.0.12'], ['node-3', 'stevedore-node-3', '10.250.0.13'],
  ]);
  assert.throws(() => planNodes({ nodes: 3, nodeNetwork: '10.250.0.0/24', podCidr: '10.88.0.0/25', sandboxName: 's', dataDir: '/d' }), /--pod-cidr/);
  assert.throws(() => planNodes({ nodes: 3, nodeNetwork: '10.250.0.0/16', podCidr: '10.88.0.0/16', sandboxName: 's', dataDir: '/d' }), /--node-network/);
  assert.throws(() => planNodes({ nodes: 0, nodeNetwork: '10.250.0.0/24', podCidr: '10.88.0.0/16', sandboxName: 's', dataDir: '/d' }), /--nodes/);
  const node = (name: string, cidr: string | undefined, ip: string | undefined) => ({ metadata: { name }, spec: { podCIDR: cidr }, status: { addresses: ip ? [{ type: 'InternalIP', address: ip }] : [] } });
  const routes = desiredRoutes([node('a', '10.88.1.0/24', '10.250.0.11'), node('b', '10.88.2.0/24', '10.250.0.12'), node('c', undefined, '10.250.0.13'), node('d', '10.88.4.0/24', undefined)], 'a');
  assert.equal([...routes], [['10.88.2.0/24', '10.250.0.12']], 'not to itself, not without a pod CIDR or an address');
});

test('three nodes Ready, each with its own address, pod CIDR and routes to the others', async () => {
  const nodes = JSON.parse(await k(['get', 'nodes', '-o', 'json'])) as { items: Array<{ metadata: { name: string }; spec: { podCIDR?: string }; status: { addresses: Array<{ type: string; address: string }>; conditions: Array<{ type: string; status: string }> } }> };
  assert.equal(nodes.items.map((n) => n.metadata.name).sort(), NODES);
  for (const n of nodes.items) assert.is(n.status.conditions.find((c) => c.type === 'Ready')?.status, 'True', `${n.metadata.name} Ready`);
  const ips = nodes.items.map((n) => n.status.addresses.find((a) => a.type === 'InternalIP')?.address).sort();
  assert.equal(ips, [11, 12, 13].map((i) => `10.250.${octet}.${i}`));
  // The control plane's node IPAM gave each a /24 of the cluster CIDR.
  for (const n of nodes.items) {
    assert.match(n.spec.podCIDR ?? '', new RegExp(`^${podBase.replace('.', '\\.')}\\.\\d+\\.0/24$`), `${n.metadata.name} podCIDR`);
    podCidrs.set(n.metadata.name, n.spec.podCIDR!);
  }
  assert.is(new Set(podCidrs.values()).size, 3, 'distinct pod CIDRs');
  const routes = await eventually('node-1 routes to the other nodes\' pod CIDRs', 20_000, async () => {
    const r = await run('ip', ['-n', `${sandboxPrefix}-node-1`, 'route', 'show', 'proto', '159']);
    return r.stdout.split('\n').filter(Boolean).length === 2 ? r.stdout : undefined;
  });
  assert.match(routes, `${podCidrs.get('node-2')} via 10.250.${octet}.12 dev eth0`);
  assert.match(routes, `${podCidrs.get('node-3')} via 10.250.${octet}.13 dev eth0`);
});

test('a 6-replica Deployment spreads 2/2/2; a pod on node-1 reaches a pod on node-3 by IP (source kept) and through the Service name', async () => {
  await k(['apply', '-f', '-'], WEB + '---\n' + CLIENT);
  await rollout('web', 120);
  await k(['wait', '--for=condition=Ready', 'pod/client', '--timeout=60s']);
  const pods = await webPods();
  assert.equal(perNode(pods), [2, 2, 2], JSON.stringify(pods));
  const target = pods.find((p) => p.node === 'node-3')!;
  const clientIp = (await k(['get', 'pod', 'client', '-o', 'jsonpath={.status.podIP}'])).trim();
  assert.ok(clientIp.startsWith(podCidrs.get('node-1')!.replace(/0\/24$/, '')), `the client runs on node-1 (${clientIp})`);
  const byIp = await eventually('pod on node-3 by IP', 20_000, async () => {
    const r = await kubectl(['exec', 'client', '--', 'timeout', '5', 'wget', '-q', '-O', '-', `http://${target.ip}:8080/`]);
    return r.code === 0 ? r.stdout.trim() : undefined;
  });
  assert.is(byIp, target.name);
  const who = await k(['exec', 'client', '--', 'timeout', '5', 'wget', '-q', '-O', '-', `http://${target.ip}:8080/cgi-bin/who`]);
  // busybox httpd listens on [::] and reports IPv4 callers as [::ffff:a.b.c.d].
  assert.is(who.trim().replace(/^\[::ffff:(.*)\]$/, '$1'), clientIp, 'no masquerade between pod CIDRs: the server sees the client pod\'s own address');
  // Through cluster DNS and the Service: node-1's proxy sends to backends on every node.
  const seen = new Set<string>();
  for (let i = 0; i < 30 && seen.size < 3; i++) {
    const r = await kubectl(['exec', 'client', '--', 'timeout', '5', 'wget', '-q', '-O', '-', 'http://web.default.svc.cluster.local/']);
    if (r.code === 0) seen.add(pods.find((p) => p.name === r.stdout.trim())?.node ?? `?${r.stdout.trim()}`);
  }
  assert.ok(seen.has('node-3') && seen.has('node-2'), `the Service reaches backends on other nodes (saw ${[...seen].join(', ')})`);
});

test('node-2\'s agent stopped: node-2 goes NotReady and its pods are recreated on node-1 and node-3; started again, it is Ready', async () => {
  const stop = await run(process.execPath, [CLI, 'node', 'stop', 'node-2', '--data-dir', dataDir]);
  assert.is(stop.code, 0, stop.stderr);
  await eventually('node-2 not Ready', 60_000, async () => {
    const status = (await k(['get', 'node', 'node-2', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).trim();
    return status !== 'True' ? status : undefined;
  });
  const moved = await eventually('6 web pods Running on node-1 and node-3', 90_000, async () => {
    const live = (await webPods()).filter((p) => !p.deleting);
    return live.length === 6 && live.every((p) => p.phase === 'Running' && p.node !== 'node-2') ? live : undefined;
  });
  assert.equal(perNode(moved), [3, 0, 3], JSON.stringify(moved));
  const start = await run(process.execPath, [CLI, 'node', 'start', 'node-2', '--data-dir', dataDir]);
  assert.is(start.code, 0, start.stderr);
  await eventually('node-2 Ready again', 60_000, async () => {
    const status = (await k(['get', 'node', 'node-2', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).trim();
    return status === 'True' ? status : undefined;
  });
});

test('node add node-4: Ready with the next address and a pod CIDR, routed from node-1; node remove: drained, its Node, routes and netns gone', async () => {
  const add = await run(process.execPath, [CLI, 'node', 'add', 'node-4', '--data-dir', dataDir]);
  assert.is(add.code, 0, add.stderr + add.stdout);
  const ip = (await k(['get', 'node', 'node-4', '-o', 'jsonpath={.status.addresses[?(@.type=="InternalIP")].address}'])).trim();
  assert.is(ip, `10.250.${octet}.14`);
  const cidr = (await k(['get', 'node', 'node-4', '-o', 'jsonpath={.spec.podCIDR}'])).trim();
  assert.not.ok([...podCidrs.values()].includes(cidr), `a pod CIDR of its own (${cidr})`);
  const routesOfNode1 = () => run('ip', ['-n', `${sandboxPrefix}-node-1`, 'route', 'show', 'proto', '159']).then((r) => r.stdout);
  await eventually('node-1 routes to node-4\'s pods', 20_000, async () => ((await routesOfNode1()).includes(`${cidr} via ${ip} dev eth0`) ? true : undefined));
  // A pod pinned to node-4, for the drain to move.
  await k(['apply', '-f', '-'], `apiVersion: v1\nkind: Pod\nmetadata: {name: on4}\nspec:\n  terminationGracePeriodSeconds: 1\n  nodeSelector: {kubernetes.io/hostname: node-4}\n  containers:\n  - {name: sh, image: busybox, command: [sleep, '100000']}\n`);
  await k(['wait', '--for=condition=Ready', 'pod/on4', '--timeout=60s']);

  const remove = await run(process.execPath, [CLI, 'node', 'remove', 'node-4', '--data-dir', dataDir]);
  assert.is(remove.code, 0, remove.stderr + remove.stdout);
  assert.is((await kubectl(['get', 'node', 'node-4'])).code, 1, 'the Node is deleted');
  assert.is((await kubectl(['get', 'pod', 'on4'])).code, 1, 'its pod was drained (deleted: it has no controller)');
  assert.not.ok(existsSync(`/run/netns/${sandboxPrefix}-node-4`), 'its netns is gone');
  await eventually('node-1\'s route to node-4\'s pods removed', 20_000, async () => ((await routesOfNode1()).includes(cidr) ? undefined : true));
  assert.is((await run(process.execPath, [CLI, 'node', 'remove', 'node-4', '--data-dir', dataDir])).code, 1, 'a node that is gone: a clear error');
});

test('stop, then up: the same three nodes come back Ready with their pod CIDRs, and the Deployment runs again', async () => {
  const stop = await run(process.execPath, [CLI, 'stop', '--data-dir', dataDir]);
  assert.is(stop.code, 0, stop.stderr + stop.stdout);
  assert.not.ok(await isAlive(cpPid), 'the control plane stopped');
  for (const n of NODES) assert.not.ok(await getSandbox(`${sandboxPrefix}-${n}`), `${n}'s sandbox stopped`);
  assert.not.ok(existsSync(`/sys/class/net/${nodeBridge}`), 'the node bridge is gone');
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir]);
  cpPid = (JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8')) as { controlPlanePid: number }).controlPlanePid;
  assert.is(up.code, 0, up.stderr + up.stdout);
  for (const n of NODES) {
    await k(['wait', '--for=condition=Ready', `node/${n}`, '--timeout=90s']);
    assert.is((await k(['get', 'node', n, '-o', 'jsonpath={.spec.podCIDR}'])).trim(), podCidrs.get(n), `${n} keeps its pod CIDR`);
  }
  await eventually('6 web pods Running', 90_000, async () => {
    const pods = (await webPods()).filter((p) => p.phase === 'Running' && !p.deleting && p.ip);
    return pods.length === 6 ? pods : undefined;
  });
});

test.run();
