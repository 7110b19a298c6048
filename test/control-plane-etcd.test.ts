import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { CLI } from '../cli/up.js';
import { KUBECTL, waitFor } from './helpers/control-plane.js';
import { startTestEtcd, freePort, type TestEtcd } from './helpers/etcd.js';

// `stevedore control-plane --store etcd:URL` as processes, driven by the real kubectl; stopped and killed by their PIDs.
let etcd: TestEtcd;
let root: string;
const running = new Set<CliControlPlane>();

interface Run { exitCode: number; stdout: string; stderr: string }

class CliControlPlane {
  child: ChildProcess | undefined;
  port = 0;
  constructor(readonly dataDir: string, readonly extra: string[] = []) {}
  get kubeconfig(): string { return path.join(this.dataDir, 'kubeconfig'); }
  get logFile(): string { return path.join(this.dataDir, 'control-plane.log'); }
  get pid(): number { return this.child!.pid!; }

  async start(): Promise<void> {
    await fs.mkdir(this.dataDir, { recursive: true });
    if (!this.port) this.port = await freePort();
    const logFd = await fs.open(this.logFile, 'a');
    const child = spawn(process.execPath, [CLI, 'control-plane', '--data-dir', this.dataDir, '--port', String(this.port), '--kubeconfig', this.kubeconfig, '--store', `etcd:${etcd.url}`, ...this.extra],
      { stdio: ['ignore', logFd.fd, logFd.fd], env: { ...process.env, STEVEDORE_LOG_LEVEL: 'info' } });
    await logFd.close();
    this.child = child;
    running.add(this);
    await waitFor('the control plane on etcd', async () => {
      if (child.exitCode !== null) throw new Error(`control plane exited: ${await fs.readFile(this.logFile, 'utf8')}`);
      const r = await this.kubectl(['get', '--raw', '/version']).catch(() => undefined);
      return r?.exitCode === 0;
    }, 30_000);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    running.delete(this);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }

  async kubectl(args: string[], input?: string): Promise<Run> {
    const r = await execa(KUBECTL, args, { env: { KUBECONFIG: this.kubeconfig, HOME: this.dataDir }, reject: false, input, timeout: 60_000 });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  async k(args: string[], input?: string): Promise<string> {
    const r = await this.kubectl(args, input);
    if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }
}

let cp: CliControlPlane;
const k = (args: string[], input?: string) => cp.k(args, input);
const kubectl = (args: string[], input?: string) => cp.kubectl(args, input);
const startCp = () => cp.start();
const stopCp = () => cp.stop();

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: main, image: localhost/busybox:latest, command: [sleep, "1000"]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {color: blue}
`;

/** name → resourceVersion of every object kubectl lists. */
async function versions(kinds: string): Promise<Record<string, string>> {
  const items = JSON.parse(await k(['get', kinds, '-o', 'json'])).items as Array<{ kind: string; metadata: { name: string; resourceVersion: string; uid: string } }>;
  return Object.fromEntries(items.map((i) => [`${i.kind}/${i.metadata.name}`, `${i.metadata.resourceVersion} ${i.metadata.uid}`]));
}

test.before(async () => {
  etcd = await startTestEtcd();
  root = await fs.mkdtemp('/var/tmp/stevedore-cp-etcd-test-');
  cp = new CliControlPlane(path.join(root, 'one'));
});
test.after(async () => {
  for (const c of [...running]) await c.stop('SIGKILL');
  await etcd?.stop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

test('control-plane --store etcd: kubectl apply, get, watch; objects and resourceVersions survive a restart', async () => {
  await startCp();
  await k(['apply', '-f', '-'], deployment);
  await waitFor('the Deployment\'s 2 pods', async () => JSON.parse(await k(['get', 'pods', '-l', 'app=web', '-o', 'json'])).items.length === 2, 30_000);
  const cm = JSON.parse(await k(['get', 'configmap', 'settings', '-o', 'json']));
  // The object's resourceVersion is its etcd mod_revision, under kube-apiserver's key layout.
  const etcdctl = await execa('/usr/bin/etcdctl', ['--endpoints', etcd.url, 'get', '/registry/configmaps/default/settings', '-w', 'json'], { env: { ETCDCTL_API: '3' } });
  assert.is(String(JSON.parse(etcdctl.stdout).kvs[0].mod_revision), cm.metadata.resourceVersion);

  // kubectl get pods -w sees a change made while it watches.
  const watch = kubectl(['get', 'pods', '-w', '--request-timeout=4s', '-l', 'app=web']);
  await new Promise((r) => setTimeout(r, 1500));
  await k(['scale', 'deployment', 'web', '--replicas=3']);
  const out = (await watch).stdout;
  const names = new Set(out.split('\n').slice(1).map((l) => l.split(/\s+/)[0]).filter(Boolean));
  assert.is(names.size, 3, `the watch saw the third pod appear:\n${out}`);

  await waitFor('3 pods', async () => JSON.parse(await k(['get', 'pods', '-l', 'app=web', '-o', 'json'])).items.length === 3, 30_000);
  // Settle: the controllers stop writing once the pods and the Deployment's status are there.
  let before = await versions('deployments,replicasets,pods,configmaps');
  await waitFor('the objects to settle', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const now = await versions('deployments,replicasets,pods,configmaps');
    const same = JSON.stringify(now) === JSON.stringify(before);
    before = now;
    return same;
  }, 30_000);
  const listRv = JSON.parse(await k(['get', 'configmaps', '-o', 'json'])).metadata.resourceVersion;

  await stopCp();
  await startCp();
  assert.equal(await versions('configmaps'), Object.fromEntries(Object.entries(before).filter(([key]) => key.startsWith('ConfigMap/'))));
  const after = await versions('deployments,replicasets,pods,configmaps');
  assert.equal(after, before, 'the same objects, uids and resourceVersions after the restart');
  assert.ok(Number(JSON.parse(await k(['get', 'configmaps', '-o', 'json'])).metadata.resourceVersion) >= Number(listRv));
  await k(['label', 'configmap', 'settings', 'after=restart']);
  const relabeled = JSON.parse(await k(['get', 'configmap', 'settings', '-o', 'json']));
  assert.ok(Number(relabeled.metadata.resourceVersion) > Number(cm.metadata.resourceVersion), 'resourceVersions keep increasing');
});

test('two control planes on one etcd with --leader-elect: one runs the controllers; SIGKILL it and the other takes over', async () => {
  const election = ['--etcd-prefix', '/ha', '--leader-elect', '--leader-elect-lease-duration', '4s', '--leader-elect-renew-deadline', '3s', '--leader-elect-retry-period', '1s'];
  const both = [new CliControlPlane(path.join(root, 'ha-a'), election), new CliControlPlane(path.join(root, 'ha-b'), election)];
  // Started together on an empty prefix: both seed the defaults at once, and both campaign.
  await Promise.all(both.map((c) => c.start()));
  const holder = async (via: CliControlPlane) => {
    const r = await via.kubectl(['get', 'lease', '-n', 'kube-system', 'stevedore-controller-manager', '-o', 'json']);
    return r.exitCode === 0 ? JSON.parse(r.stdout).spec as { holderIdentity: string; leaseTransitions: number } : undefined;
  };
  const leader = await waitFor('one of them to lead', async () => {
    const h = await holder(both[0]!);
    return both.find((c) => h?.holderIdentity.includes(`_${c.pid}_`));
  }, 10_000);
  const follower = both.find((c) => c !== leader)!;
  // The follower serves the API (its mirror follows etcd) but does not lead while the leader renews.
  await new Promise((r) => setTimeout(r, 3000));
  assert.ok((await holder(follower))!.holderIdentity.includes(`_${leader.pid}_`), 'the leader still leads');
  assert.match(await fs.readFile(leader.logFile, 'utf8'), /became leader/);
  assert.not.match(await fs.readFile(follower.logFile, 'utf8'), /became leader/);
  // Written through the follower, reconciled by the leader's controllers.
  await follower.k(['apply', '-f', '-'], deployment);
  await waitFor('the leader to make 2 pods', async () => JSON.parse(await follower.k(['get', 'pods', '-l', 'app=web', '-o', 'json'])).items.length === 2, 30_000);

  await leader.stop('SIGKILL');
  const took = await waitFor('the follower to take over', async () => {
    const h = await holder(follower);
    return h?.holderIdentity.includes(`_${follower.pid}_`) ? h : undefined;
  }, 20_000);
  assert.ok(took.leaseTransitions >= 1);
  assert.match(await fs.readFile(follower.logFile, 'utf8'), /became leader/);
  await follower.k(['scale', 'deployment', 'web', '--replicas=3']);
  await waitFor('the new leader to make the third pod', async () => JSON.parse(await follower.k(['get', 'pods', '-l', 'app=web', '-o', 'json'])).items.length === 3, 30_000);
  await follower.stop();
});

test.run();
