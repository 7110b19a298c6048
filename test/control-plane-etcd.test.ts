import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { CLI } from '../cli/up.js';
import { KUBECTL, waitFor } from './helpers/control-plane.js';
import { startTestEtcd, freePort, type TestEtcd } from './helpers/etcd.js';

// `stevedore control-plane --store etcd:URL` as a process, driven by the real kubectl; restarted by its PID.
let etcd: TestEtcd;
let dataDir: string;
let port: number;
let cp: ChildProcess | undefined;
const kubeconfig = () => path.join(dataDir, 'kubeconfig');

async function startCp(): Promise<void> {
  const logFd = await fs.open(path.join(dataDir, 'control-plane.log'), 'a');
  const child = spawn(process.execPath, [CLI, 'control-plane', '--data-dir', dataDir, '--port', String(port), '--kubeconfig', kubeconfig(), '--store', `etcd:${etcd.url}`],
    { stdio: ['ignore', logFd.fd, logFd.fd], env: { ...process.env, STEVEDORE_LOG_LEVEL: 'info' } });
  await logFd.close();
  cp = child;
  await waitFor('the control plane on etcd', async () => {
    if (child.exitCode !== null) throw new Error(`control plane exited: ${await fs.readFile(path.join(dataDir, 'control-plane.log'), 'utf8')}`);
    const r = await kubectl(['get', '--raw', '/version']).catch(() => undefined);
    return r?.exitCode === 0;
  }, 30_000);
}

async function stopCp(): Promise<void> {
  const child = cp;
  cp = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
}

async function kubectl(args: string[], input?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(KUBECTL, args, { env: { KUBECONFIG: kubeconfig(), HOME: dataDir }, reject: false, input, timeout: 60_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
async function k(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input);
  if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

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
  dataDir = await fs.mkdtemp('/var/tmp/stevedore-cp-etcd-test-');
  port = await freePort();
});
test.after(async () => {
  await stopCp();
  await etcd?.stop();
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
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

test.run();
