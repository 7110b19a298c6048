/**
 * Hollow nodes against a real control plane, with the real kubectl: `stevedore hollow-nodes
 * --count 5` registers five nodes, each with its own identity (the Node authorizer sees
 * system:node:hollow-i); a Deployment's pods run across them with addresses of each node's pod
 * CIDR; the process stopped, the nodes' Leases go stale and the node lifecycle controller turns
 * them NotReady. Also the control plane's /metrics, as kube-apiserver authorizes it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { startTestControlPlane, waitFor, type TestCP } from './helpers/control-plane.js';
import { CLI } from './helpers/node.js';
import { freePortRange } from './helpers/cluster.js';
import { validateNodeIpam } from '../control-plane/controllers/node-ipam.js';

let t: TestCP;
let hollow: ChildProcess | undefined;
let hollowDir = '';
let output = '';

interface NodeView { metadata: { name: string; labels: Record<string, string> }; spec: { podCIDR?: string }; status: { conditions: Array<{ type: string; status: string }>; nodeInfo: { containerRuntimeVersion: string } } }
interface PodView { metadata: { name: string }; spec: { nodeName?: string }; status: { phase?: string; podIP?: string; containerStatuses?: Array<{ ready: boolean; containerID?: string }> } }

const ready = (n: NodeView) => n.status?.conditions?.find((c) => c.type === 'Ready')?.status;

test.before(async () => {
  t = await startTestControlPlane({ allocateNodeCidrs: validateNodeIpam({ clusterCidr: '10.210.0.0/16', nodeCidrMaskSize: 24 }), nodeMonitorGracePeriodSeconds: 5 });
  hollowDir = await fs.mkdtemp('/var/tmp/stevedore-hollow-test-');
  // hollow-i serves its node API on base+i.
  const base = await freePortRange(5);
  hollow = spawn(process.execPath, [CLI, 'hollow-nodes', '--count', '5', '--server', t.cp.url, '--control-plane-dir', t.dataDir, '--data-dir', hollowDir,
    '--node-api-port-base', String(base), '--heartbeat-seconds', '2', '--start-delay', '100ms'], { stdio: ['ignore', 'pipe', 'pipe'] });
  hollow.stdout!.on('data', (d) => { output += d; });
  hollow.stderr!.on('data', (d) => { output += d; });
});

test.after(async () => {
  if (hollow && hollow.exitCode === null && hollow.signalCode === null) {
    const gone = new Promise((r) => hollow!.once('exit', r));
    hollow.kill('SIGKILL');
    await gone;
  }
  await t?.close();
  if (hollowDir) await fs.rm(hollowDir, { recursive: true, force: true });
});

test('hollow-nodes --count 5: five Ready nodes, each with a pod CIDR and the hollow runtime', async () => {
  const nodes = await waitFor('5 Ready hollow nodes', async () => {
    const list = JSON.parse(await t.k(['get', 'nodes', '-o', 'json'])).items as NodeView[];
    return list.length === 5 && list.every((n) => ready(n) === 'True') ? list : undefined;
  }, 30_000).catch((err) => { throw new Error(`${(err as Error).message}\nhollow-nodes said:\n${output}`); });
  assert.equal(nodes.map((n) => n.metadata.name).sort(), ['hollow-1', 'hollow-2', 'hollow-3', 'hollow-4', 'hollow-5']);
  for (const n of nodes) {
    assert.match(n.spec.podCIDR ?? '', /^10\.210\.\d+\.0\/24$/);
    assert.match(n.status.nodeInfo.containerRuntimeVersion, /^hollow:\/\//);
    assert.is(n.metadata.labels['stevedore.io/hollow'], 'true');
  }
  const table = await t.k(['get', 'nodes']);
  assert.is(table.split('\n').filter((l) => /\sReady\s/.test(l)).length, 5, table);
  // Each node is its own identity: its credentials are its own, the Node authorizer keeps it to itself.
  const kubeconfig = path.join(hollowDir, 'hollow-1', 'pki', 'kubeconfig');
  const r = await t.kubectl(['--kubeconfig', kubeconfig, 'label', 'node', 'hollow-2', 'x=y']);
  assert.is.not(r.exitCode, 0);
  assert.match(r.stderr, /system:node:hollow-1/);
});

test('a 20-replica Deployment runs across the hollow nodes, each pod with an address of its node\'s pod CIDR', async () => {
  await t.k(['create', 'deployment', 'web', '--image=busybox', '--replicas=20', '--', 'sleep', '3600']);
  const pods = await waitFor('20 Running pods', async () => {
    const list = JSON.parse(await t.k(['get', 'pods', '-l', 'app=web', '-o', 'json'])).items as PodView[];
    return list.length === 20 && list.every((p) => p.status.phase === 'Running' && p.status.containerStatuses?.[0]?.ready) ? list : undefined;
  }, 40_000);
  const nodes = JSON.parse(await t.k(['get', 'nodes', '-o', 'json'])).items as NodeView[];
  const cidrOf = new Map(nodes.map((n) => [n.metadata.name, n.spec.podCIDR!]));
  const used = new Set(pods.map((p) => p.spec.nodeName));
  assert.ok(used.size >= 4, `pods on ${[...used].join(', ')}`);
  for (const p of pods) {
    const prefix = cidrOf.get(p.spec.nodeName!)!.replace(/0\/24$/, '');
    assert.ok(p.status.podIP?.startsWith(prefix), `${p.metadata.name} on ${p.spec.nodeName}: ${p.status.podIP} not in ${cidrOf.get(p.spec.nodeName!)}`);
    assert.match(p.status.containerStatuses![0]!.containerID ?? '', /^hollow:\/\//);
  }
  assert.is(new Set(pods.map((p) => p.status.podIP)).size, 20);
  // exec is refused with the node's reason, not a hang or a generic failure.
  const exec = await t.kubectl(['exec', pods[0]!.metadata.name, '--', 'true']);
  assert.is.not(exec.exitCode, 0);
  assert.match(exec.stderr, /hollow node/);
});

test('/metrics: request counters and latency histograms, for the admin and system:monitoring, not for a node', async () => {
  const admin = await t.api('GET', '/metrics');
  assert.is(admin.status, 200);
  assert.match(admin.text, /apiserver_request_total\{verb="PATCH",dry_run="",group="",version="v1",resource="pods",subresource="status",scope="resource",component="apiserver",code="200"\} \d+/);
  assert.match(admin.text, /apiserver_request_duration_seconds_bucket\{verb="LIST",.*resource="pods".*le="0.005"\} \d+/);
  assert.not.match(admin.text, /apiserver_request_duration_seconds_bucket\{verb="WATCH"/);
  const node = await t.api('GET', '/metrics', undefined, { cert: await t.nodeCert('hollow-1') });
  assert.is(node.status, 403);
  const sa = await t.kubectl(['create', 'clusterrolebinding', 'prom', '--clusterrole=system:monitoring', '--serviceaccount=default:default']);
  assert.is(sa.exitCode, 0, sa.stderr);
  const token = (await t.k(['create', 'token', 'default'])).trim();
  const monitoring = await t.api('GET', '/metrics', undefined, { token });
  assert.is(monitoring.status, 200, monitoring.text);
});

test('hollow-nodes stopped: the nodes turn NotReady once their Leases are older than the grace period', async () => {
  const exited = new Promise<number | null>((r) => hollow!.once('exit', (code) => r(code)));
  hollow!.kill('SIGTERM');
  assert.is(await exited, 0, output);
  assert.match(output, /5 hollow nodes stopped/);
  await waitFor('5 NotReady nodes', async () => {
    const list = JSON.parse(await t.k(['get', 'nodes', '-o', 'json'])).items as NodeView[];
    return list.length === 5 && list.every((n) => ready(n) !== 'True');
  }, 30_000);
});

test.run();
