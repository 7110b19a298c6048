/**
 * `stevedore up --control-planes 3 --store etcd` for real: a 3-member etcd
 * cluster, three control planes with leader election, kubectl through the
 * load balancer on --port, the node's agent with every control plane's
 * address. The Lease holder is SIGKILLed during a Deployment rollout (and the
 * first control plane too, the one the balancer and the agent start with) and
 * another finishes the rollout; an etcd member is SIGKILLed and kubectl
 * get/apply go on; `stop` then `up` keeps the objects, their resourceVersions,
 * and a watch from a resourceVersion of before the stop.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAlive, readProc } from '../sandbox/proc.js';
import { getSandbox, stopSandbox } from '../sandbox/sandbox.js';
import { CLI } from './helpers/node.js';
import { freePortRange, run } from './helpers/cluster.js';
import { clusterKubectl } from './helpers/multi-node.js';

const tag = randomBytes(2).toString('hex');
const sandbox = `upha${tag}`;
const bridge = `stvdha${tag}`;
let dataDir = '';
interface State { controlPlanePids?: number[]; etcdPids?: number[]; lbPid?: number; options?: { controlPlanes?: { ports: number[] } } }
let state: State = {};
/** Every PID any `up` of this test recorded: the teardown checks that none outlives `down`. */
const started = new Set<number>();
const { kubectl, k, rollout } = clusterKubectl(() => dataDir);

async function readState(): Promise<State> {
  state = JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8').catch(() => '{}'));
  for (const pid of [...(state.controlPlanePids ?? []), ...(state.etcdPids ?? []), state.lbPid]) if (pid) started.add(pid);
  return state;
}

/** Whether PID is alive and one of this cluster's processes (etcd, a control plane, the balancer: each names the data dir). */
async function ours(pid: number): Promise<boolean> {
  if (!(await isAlive(pid))) return false;
  return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(dataDir);
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The Lease holder's PID (the identity is host_pid_suffix) and its transitions. */
async function leaseHolder(): Promise<{ pid: number; transitions: number } | undefined> {
  const r = await kubectl(['get', 'lease', '-n', 'kube-system', 'stevedore-controller-manager', '-o', 'json']);
  if (r.code !== 0) return undefined;
  const spec = JSON.parse(r.stdout).spec as { holderIdentity?: string; leaseTransitions?: number };
  const pid = Number(/_(\d+)_/.exec(spec.holderIdentity ?? '')?.[1]);
  return pid ? { pid, transitions: spec.leaseTransitions ?? 0 } : undefined;
}

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox
        command: [sleep, '3600']
`;

test.before(async () => {
  dataDir = await fs.mkdtemp('/var/tmp/stevedore-up-ha-');
  // base+1: kubectl's balancer; +2…+4: the control planes; +5…+10: etcd's client and peer ports.
  const base = await freePortRange(10);
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--store', 'etcd', '--control-planes', '3',
    '--port', String(base + 1), '--control-plane-ports', `${base + 2},${base + 3},${base + 4}`, '--etcd-port', String(base + 5),
    '--node-api-port', String(base - 1), '--dns-port', String(base - 2), '--sandbox-name', sandbox, '--bridge', bridge,
    '--pod-cidr', `10.${200 + Math.floor(Math.random() * 50)}.0.0/16`, '--service-cidr', `10.${150 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`, '--node-name', `n${tag}`]);
  await readState();
  if (up.code !== 0) throw new Error(`stevedore up --control-planes 3 failed:\n${up.stderr}\n${up.stdout}`);
});

test.after(async () => {
  await readState();
  const down = existsSync(path.join(dataDir, 'up.json')) ? await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]) : { code: 0, stderr: '' };
  const leftovers: string[] = [];
  if (await getSandbox(sandbox)) { leftovers.push(`sandbox ${sandbox}`); await stopSandbox(sandbox); }
  if (existsSync(`/sys/class/net/${bridge}`)) { leftovers.push(`bridge ${bridge}`); await run('ip', ['link', 'del', bridge]); }
  for (const pid of started) {
    // Only a process this test's `up` started (its command line names the data dir), not a reused PID.
    if (await ours(pid)) { leftovers.push(`pid ${pid} (${(await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ').trim()})`); process.kill(pid, 'SIGKILL'); }
  }
  await fs.rm(dataDir, { recursive: true, force: true });
  if (down.code !== 0 || leftovers.length) throw new Error(`stevedore down failed (exit ${down.code}: ${down.stderr.trim()}); left behind: ${leftovers.join(', ') || 'nothing'}`);
});

test('up --control-planes 3: etcd cluster of 3, three control planes, kubectl through the balancer, the node knows every control plane', async () => {
  assert.is(state.etcdPids?.length, 3);
  for (const pid of state.etcdPids!) assert.is((await readProc(pid))?.comm, 'etcd');
  assert.is(state.controlPlanePids?.length, 3);
  for (const pid of [...state.controlPlanePids!, state.lbPid!]) assert.ok(await isAlive(pid), `pid ${pid} runs`);
  const ports = state.options!.controlPlanes!.ports;
  const members = await run('/usr/bin/etcdctl', ['--endpoints', `http://127.0.0.1:${(await fs.readFile(path.join(dataDir, 'control-plane', 'control-plane-1.log'), 'utf8')).match(/etcd:http:\/\/127\.0\.0\.1:(\d+)/)![1]}`, 'member', 'list'], { ETCDCTL_API: '3' });
  assert.is(members.stdout.trim().split('\n').length, 3, members.stdout + members.stderr);
  const kubeconfig = await fs.readFile(path.join(dataDir, 'kubeconfig'), 'utf8');
  assert.not.ok(ports.some((p) => kubeconfig.includes(`server: https://127.0.0.1:${p}`)), 'kubectl goes through the balancer, not one control plane');
  const nodeKubeconfig = await fs.readFile(path.join(dataDir, 'node-kubeconfig'), 'utf8');
  assert.ok(nodeKubeconfig.includes(JSON.stringify(ports.map((p) => `https://127.0.0.1:${p}`))), 'the node\'s kubeconfig lists every control plane');
  const node = JSON.parse(await k(['get', 'node', `n${tag}`, '-o', 'json']));
  assert.is(node.status.conditions.find((c: { type: string }) => c.type === 'Ready').status, 'True');
  const holder = await waitFor('a leader', leaseHolder, 30_000);
  assert.ok(state.controlPlanePids!.includes(holder.pid), 'one of the three leads');
});

test('the leader SIGKILLed during a rollout: another takes the Lease and finishes it; kubectl and the agent fail over', async () => {
  await k(['apply', '-f', '-'], DEPLOYMENT);
  await rollout('web', 120);
  const before = (await leaseHolder())!;
  await k(['patch', 'deployment', 'web', '-p', '{"spec":{"template":{"metadata":{"annotations":{"rollout":"2"}}}}}']);
  process.kill(before.pid, 'SIGKILL');
  // The first control plane is where the balancer and the agent go first: it dies too if it was not the leader.
  const first = state.controlPlanePids![0]!;
  if (first !== before.pid) process.kill(first, 'SIGKILL');
  const after = await waitFor('another control plane to take the Lease', async () => {
    const h = await leaseHolder();
    return h && h.pid !== before.pid && h.pid !== first ? h : undefined;
  }, 60_000);
  assert.ok(after.transitions > before.transitions, 'the Lease changed hands');
  await rollout('web', 120);
  const pods = JSON.parse(await k(['get', 'pods', '-l', 'app=web', '-o', 'json'])).items as Array<{ metadata: { annotations?: Record<string, string> }; status: { phase: string } }>;
  assert.ok(pods.filter((p) => p.status.phase === 'Running' && p.metadata.annotations?.rollout === '2').length >= 2, 'the new pods run (the agent reached a live control plane)');
  const node = JSON.parse(await k(['get', 'node', `n${tag}`, '-o', 'json']));
  assert.is(node.status.conditions.find((c: { type: string }) => c.type === 'Ready').status, 'True', 'the node keeps reporting');
});

test('one etcd member SIGKILLed: kubectl get and apply go on', async () => {
  // The member the surviving control plane prefers (control plane i talks to member i first).
  const survivor = (await leaseHolder())!.pid;
  const i = state.controlPlanePids!.indexOf(survivor);
  process.kill(state.etcdPids![i]!, 'SIGKILL');
  await k(['create', 'configmap', 'after-etcd-loss', '--from-literal=a=1']);
  const cm = JSON.parse(await k(['get', 'configmap', 'after-etcd-loss', '-o', 'json']));
  assert.is(cm.data.a, '1');
  await k(['get', 'deployment', 'web']);
});

test('stop then up: the same objects at the same resourceVersions; a watch from before the stop goes on', async () => {
  const cm0 = JSON.parse(await k(['get', 'configmap', 'after-etcd-loss', '-o', 'json']));
  await k(['label', 'configmap', 'after-etcd-loss', 'changed=yes']);
  const snapshot = async () => {
    // Not Deployments: their status changes when the node's pods start again.
    const items = JSON.parse(await k(['get', 'configmaps,services,serviceaccounts', '-A', '-o', 'json'])).items as Array<{ kind: string; metadata: { namespace: string; name: string; uid: string; resourceVersion: string } }>;
    return items.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name} ${o.metadata.uid} ${o.metadata.resourceVersion}`).sort();
  };
  const before = await snapshot();
  const cm1 = JSON.parse(await k(['get', 'configmap', 'after-etcd-loss', '-o', 'json']));
  const stop = await run(process.execPath, [CLI, 'stop', '--data-dir', dataDir]);
  assert.is(stop.code, 0, stop.stderr);
  assert.match(stop.stdout, /stop: 3 control planes, load balancer, etcd and node sandbox stopped/);
  for (const pid of started) assert.not.ok(await ours(pid), `pid ${pid} stopped`);
  const again = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir]);
  await readState();
  assert.is(again.code, 0, again.stderr + again.stdout);
  assert.equal(await snapshot(), before, 'the same objects, uids and resourceVersions');
  const watched = await k(['get', '--raw', `/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${cm0.metadata.resourceVersion}&timeoutSeconds=2&fieldSelector=metadata.name=after-etcd-loss`]);
  const events = watched.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: { metadata: { resourceVersion: string; labels?: Record<string, string> } } });
  assert.equal(events.map((e) => [e.type, e.object.metadata.resourceVersion]), [['MODIFIED', cm1.metadata.resourceVersion]], 'the change made before the stop, watched from before it');
  await rollout('web', 120);
});

test.run();
