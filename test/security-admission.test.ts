/**
 * Fail closed at the node's door, with the real kubectl against `stevedore up`
 * run with no --stage1-policy (so `up` writes its default: host access only in
 * kube-system): a field the node does not implement gets
 * CreateContainerConfigError naming it; fly, hostNetwork and privileged in
 * `default` are refused for good; in kube-system they run.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';

const admission = suite('security: the node refuses what it does not implement and host access its policy does not open');
const getCluster = useCluster(admission);

interface K8sPod {
  metadata: { name: string };
  spec: { hostNetwork?: boolean };
  status: { phase?: string; reason?: string; message?: string; podIP?: string; hostIP?: string; containerStatuses?: Array<{ ready: boolean; state: { waiting?: { reason: string; message?: string } } }> };
}

async function getPod(c: TestCluster, name: string, ns: string): Promise<K8sPod | undefined> {
  const r = await c.kubectl(['get', 'pod', name, '-n', ns, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as K8sPod) : undefined;
}

const pod = (name: string, ns: string, specExtra: string, containerExtra = '') => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}}
spec:
${specExtra ? `  ${specExtra}\n` : ''}  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo up; exec sleep 3600']
${containerExtra ? `    ${containerExtra}\n` : ''}`;

async function failed(c: TestCluster, name: string, ns: string): Promise<K8sPod> {
  return eventually(`${ns}/${name} Failed`, async () => {
    const p = await getPod(c, name, ns);
    return p?.status.phase === 'Failed' ? p : undefined;
  }, 60_000);
}

async function running(c: TestCluster, name: string, ns: string): Promise<K8sPod> {
  return eventually(`${ns}/${name} Running`, async () => {
    const p = await getPod(c, name, ns);
    return p?.status.phase === 'Running' && p.status.containerStatuses?.every((s) => s.ready) ? p : undefined;
  }, 60_000);
}

async function warnings(c: TestCluster, name: string, ns: string): Promise<Array<{ reason: string; message: string; count?: number }>> {
  const list = JSON.parse(await c.k(['get', 'events', '-n', ns, '--field-selector', `involvedObject.name=${name},type=Warning`, '-o', 'json'])) as { items: Array<{ reason: string; message: string; count?: number }> };
  return list.items;
}

async function runtimePodNames(c: TestCluster): Promise<string[]> {
  const r = await c.stevedore(['pod', 'list', '-o', 'json']);
  assert.is(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ name?: string }>).map((p) => p.name ?? '');
}

admission('`up` without --stage1-policy writes one that opens host access to kube-system only, and the agent runs with it', async () => {
  const c = getCluster();
  const file = path.join(c.dataDir, 'stage1-policy.yaml');
  const text = await fs.readFile(file, 'utf8');
  assert.match(text, /allowHostAccess:\n {2}- namespaces: \[kube-system\]\n {4}allow: \[fly, hostNetwork, hostPID, hostIPC, privileged, hostPath\]/);
  const unit = await c.node(['systemctl', 'show', '-p', 'ExecStart', '--value', 'stevedore-agent']);
  const config = await fs.readFile(path.join(c.dataDir, 'agent.yaml'), 'utf8').catch(() => '');
  assert.ok(unit.stdout.includes(file) || config.includes(file), `the agent is given ${file}:\n${unit.stdout}\n${config}`);
});

admission('a field the node does not implement: CreateContainerConfigError naming the field, never started', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], pod('probed', 'default', '', 'resizePolicy: [{resourceName: cpu, restartPolicy: RestartContainer}]'));
  const waiting = await eventually('CreateContainerConfigError', async () => {
    const w = (await getPod(c, 'probed', 'default'))?.status.containerStatuses?.[0]?.state.waiting;
    return w?.reason === 'CreateContainerConfigError' ? w : undefined;
  });
  assert.match(waiting.message ?? '', /^spec\.containers\[0\]\.resizePolicy: not supported by this node: in-place resize is not implemented/);
  assert.match(await c.k(['get', 'pod', 'probed']), /probed\s+0\/1\s+CreateContainerConfigError/);
  const events = await warnings(c, 'probed', 'default');
  assert.ok(events.some((e) => e.reason === 'Failed' && e.message.includes('spec.containers[0].resizePolicy')), JSON.stringify(events));
  // An API server's defaults (terminationMessagePath, dnsPolicy, schedulerName, enableServiceLinks, tolerations…) are not refused.
  await c.k(['apply', '-f', '-'], pod('plain', 'default', 'dnsPolicy: ClusterFirst\n  enableServiceLinks: true\n  schedulerName: default-scheduler', 'terminationMessagePath: /dev/termination-log'));
  await running(c, 'plain', 'default');
  assert.ok(!(await runtimePodNames(c)).includes('probed'), 'the refused pod never reached the runtime');
  await c.k(['delete', 'pod', 'probed', 'plain', '--grace-period', '1']);
  // The node's own CLI refuses the same fields (and exits 2: bad input), before it touches anything.
  const file = path.join(c.dataDir, 'refused-pod.yaml');
  await fs.writeFile(file, pod('cli-probed', 'default', 'volumes: [{name: data, nfs: {server: nfs.example, path: /}}]', 'resizePolicy: [{resourceName: memory, restartPolicy: RestartContainer}]'));
  const cli = await c.stevedore(['pod', 'run', '-f', file]);
  assert.is(cli.code, 2, cli.stderr);
  assert.match(cli.stderr, /spec\.volumes\[0\]\.nfs: not supported by this node: this node has no plugin for this volume type/);
  assert.match(cli.stderr, /spec\.containers\[0\]\.resizePolicy: not supported by this node/);
  assert.ok(!(await runtimePodNames(c)).includes('cli-probed'));
});

admission('fly, hostNetwork, privileged and hostPath in default are refused for good; one Warning event each', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], [
    pod('fly', 'default', 'runtimeClassName: fly'),
    pod('fly-annotated', 'default', '').replace('namespace: default}', 'namespace: default, annotations: {rkt.alpha.kubernetes.io/stage1-name-override: fly}}'),
    pod('hostnet', 'default', 'hostNetwork: true'),
    pod('priv', 'default', '', 'securityContext: {privileged: true}'),
    pod('hostpath', 'default', 'volumes: [{name: root, hostPath: {path: /}}]', 'volumeMounts: [{name: root, mountPath: /host}]'),
  ].join('---\n'));
  const policy = path.join(c.dataDir, 'stage1-policy.yaml');
  for (const name of ['fly', 'fly-annotated']) {
    const p = await failed(c, name, 'default');
    assert.is(p.status.reason, 'Stage1NotAllowed');
    assert.is(p.status.message, `stage1 fly runs the pod as root on the node: this node's stage1 policy ${policy} does not open fly to pods in namespace default (add it to an allowHostAccess rule that matches the pod; agent/README.md)`);
  }
  const hostnet = await failed(c, 'hostnet', 'default');
  assert.is(hostnet.status.reason, 'HostAccessNotAllowed');
  assert.match(hostnet.status.message ?? '', /^spec\.hostNetwork: hostNetwork reaches into the node: this node's stage1 policy \S+ does not open hostNetwork to pods in namespace default/);
  const priv = await failed(c, 'priv', 'default');
  assert.is(priv.status.reason, 'HostAccessNotAllowed');
  assert.match(priv.status.message ?? '', /^spec\.containers\[0\]\.securityContext\.privileged: privileged reaches into the node: .*does not open privileged/);
  const hostpath = await failed(c, 'hostpath', 'default');
  assert.is(hostpath.status.reason, 'HostAccessNotAllowed');
  assert.match(hostpath.status.message ?? '', /^spec\.volumes\[0\]\.hostPath: hostPath reaches into the node: .*does not open hostPath/);
  // Refusal is final: a few sync passes later there is still exactly one event each, and nothing ran.
  await new Promise((r) => setTimeout(r, 3000));
  for (const [name, reason] of [['fly', 'Stage1NotAllowed'], ['fly-annotated', 'Stage1NotAllowed'], ['hostnet', 'HostAccessNotAllowed'], ['priv', 'HostAccessNotAllowed'], ['hostpath', 'HostAccessNotAllowed']] as const) {
    const events = await warnings(c, name, 'default');
    assert.equal(events.map((e) => [e.reason, e.count ?? 1]), [[reason, 1]], `${name}: ${JSON.stringify(events)}`);
  }
  const names = await runtimePodNames(c);
  assert.ok(!['fly', 'fly-annotated', 'hostnet', 'priv', 'hostpath'].some((n) => names.includes(n)), `refused pods never reach the runtime: ${names}`);
  assert.match(await c.k(['get', 'pods', '-n', 'default']), /hostnet\s+0\/1\s+HostAccessNotAllowed/);
  await c.k(['delete', 'pod', 'fly', 'fly-annotated', 'hostnet', 'priv', 'hostpath', '--grace-period', '0', '--force']);
});

admission('in kube-system the default policy opens them: a fly pod and a hostNetwork pod run on the node\'s network, a hostPath pod reads the node', async () => {
  const c = getCluster();
  await fs.writeFile(path.join(c.dataDir, 'node-file.txt'), 'from the node\n');
  await c.k(['apply', '-f', '-'], [
    pod('fly', 'kube-system', 'runtimeClassName: fly'),
    pod('hostnet', 'kube-system', 'hostNetwork: true'),
    pod('hostpath', 'kube-system', `volumes: [{name: node, hostPath: {path: ${c.dataDir}, type: Directory}}]`, 'volumeMounts: [{name: node, mountPath: /node, readOnly: true}]')
      .replace("echo up; exec sleep 3600", "cat /node/node-file.txt; exec sleep 3600"),
  ].join('---\n'));
  await running(c, 'hostpath', 'kube-system');
  await eventually('the node file in the pod\'s log', async () => (await c.k(['logs', '-n', 'kube-system', 'hostpath'])) === 'from the node\n');
  const fly = await running(c, 'fly', 'kube-system');
  const hostnet = await running(c, 'hostnet', 'kube-system');
  for (const p of [fly, hostnet]) assert.is(p.status.podIP, p.status.hostIP, `${p.metadata.name} has the node's address`);
  const listed = JSON.parse((await c.stevedore(['pod', 'list', '-o', 'json'])).stdout) as Array<{ name?: string; stage1?: string }>;
  assert.is(listed.find((p) => p.name === 'fly')?.stage1, 'fly');
  assert.is(listed.find((p) => p.name === 'hostnet')?.stage1, 'namespaces');
  await c.k(['delete', 'pod', 'fly', 'hostnet', 'hostpath', '-n', 'kube-system', '--grace-period', '1']);
});

admission('a hostPath of the wrong type: CreateContainerConfigError naming the volume and the path, in the kubelet\'s words', async () => {
  const c = getCluster();
  await fs.writeFile(path.join(c.dataDir, 'a-file'), 'x');
  await c.k(['apply', '-f', '-'], pod('wrongtype', 'kube-system', `volumes: [{name: conf, hostPath: {path: ${c.dataDir}/a-file, type: Directory}}]`, 'volumeMounts: [{name: conf, mountPath: /conf}]'));
  const waiting = await eventually('CreateContainerConfigError', async () => {
    const w = (await getPod(c, 'wrongtype', 'kube-system'))?.status.containerStatuses?.[0]?.state.waiting;
    return w?.reason === 'CreateContainerConfigError' ? w : undefined;
  }, 60_000);
  assert.is(waiting.message, `MountVolume.SetUp failed for volume "conf" : hostPath type check failed: ${c.dataDir}/a-file is not a directory`);
  assert.ok(!(await runtimePodNames(c)).includes('wrongtype'), 'nothing of it is left in the runtime');
  await c.k(['delete', 'pod', 'wrongtype', '-n', 'kube-system', '--grace-period', '0', '--force']);
});

admission.run();
