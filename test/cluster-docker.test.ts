/**
 * `stevedore up --container-runtime=docker` end to end: kubectl → control
 * plane → agent → runtime-docker → the node's dockerd (a unit of the node
 * sandbox's systemd). The node reports docker://20.10…; kubectl
 * apply/get/logs/exec/delete behave as on rkt; the agent killed with SIGKILL
 * re-adopts the pods without restarting them. `down` (useCluster's after
 * hook) removes everything and checks nothing is left.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';

const T = suite('cluster on docker: up --container-runtime=docker');
const getCluster = useCluster(T, { containerRuntime: 'docker' });

interface K8sPod {
  status: {
    phase: string; podIP?: string;
    containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; containerID?: string; state: { running?: { startedAt: string }; waiting?: { reason: string } }; lastState: { terminated?: { exitCode: number; reason: string } } }>;
  };
}

async function getPod(c: TestCluster, name: string): Promise<K8sPod | undefined> {
  const r = await c.kubectl(['get', 'pod', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as K8sPod) : undefined;
}

const running = (c: TestCluster, name: string) => eventually(`${name} Running and ready`, async () => {
  const p = await getPod(c, name);
  return p?.status.phase === 'Running' && p.status.containerStatuses?.every((s) => s.ready) ? p : undefined;
}, 60_000);

T('the node reports the engine; the demo pod runs on it with a pod IP, logs and exec', async () => {
  const c = getCluster();
  const version = (await c.k(['get', 'node', c.nodeName, '-o', 'jsonpath={.status.nodeInfo.containerRuntimeVersion}'])).trim();
  assert.match(version, /^docker:\/\/20\.10\./);
  const demo = await running(c, 'demo');
  assert.ok(demo.status.podIP?.startsWith(c.podCidr.split('.').slice(0, 3).join('.') + '.'), `pod IP ${demo.status.podIP} in ${c.podCidr}`);
  assert.ok(demo.status.containerStatuses?.every((s) => s.containerID?.startsWith('docker://')));
  await eventually('a greeting', async () => (await c.k(['logs', 'demo', '-c', 'greeter'])).includes('hello from stevedore') || undefined);
  assert.is((await c.k(['exec', 'demo', '-c', 'clock', '--', 'cat', '/etc/hostname'])).trim(), 'demo');
  const failed = await c.kubectl(['exec', 'demo', '-c', 'clock', '--', 'sh', '-c', 'exit 4']);
  assert.is(failed.code, 4);
});

T('a crashing container: CrashLoopBackOff, its last state and --previous logs; delete removes it', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo oops; sleep 0.5; exit 3']
`);
  const p = await eventually('restarted with a last state', async () => {
    const x = await getPod(c, 'crash');
    const s = x?.status.containerStatuses?.[0];
    return s && s.restartCount >= 1 && s.lastState.terminated ? s : undefined;
  }, 60_000);
  assert.equal([p.lastState.terminated?.exitCode, p.lastState.terminated?.reason], [3, 'Error']);
  const previous = await eventually('previous logs', async () => {
    const r = await c.kubectl(['logs', 'crash', '--previous']);
    return r.code === 0 ? r.stdout : undefined;
  });
  assert.is(previous.trim(), 'oops');
  await c.k(['delete', 'pod', 'crash', '--wait=true', '--timeout=60s']);
  const left = await c.node(['sh', '-c', `DOCKER_HOST=unix://${c.dataDir}/node/docker/engine/docker.sock docker ps -a --format '{{.Names}}'`]);
  assert.not.match(left.stdout, /_crash_/);
});

T('a pod with an init container: Initialized, then Running', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: with-init}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: w, emptyDir: {}}]
  initContainers:
  - {name: prepare, image: busybox, command: [sh, -c, 'echo prepared > /w/state'], volumeMounts: [{name: w, mountPath: /w}]}
  containers:
  - {name: app, image: busybox, command: [sh, -c, 'cat /w/state; sleep 3600'], volumeMounts: [{name: w, mountPath: /w}]}
`);
  await running(c, 'with-init');
  const init = JSON.parse(await c.k(['get', 'pod', 'with-init', '-o', 'jsonpath={.status.initContainerStatuses[0].state}'])) as { terminated?: { exitCode: number; reason: string } };
  assert.equal([init.terminated?.exitCode, init.terminated?.reason], [0, 'Completed']);
  assert.is((await c.k(['logs', 'with-init', '-c', 'app'])).trim(), 'prepared');
  await c.k(['delete', 'pod', 'with-init', '--wait=true', '--timeout=60s']);
});

T('the agent killed with SIGKILL re-adopts the pod without restarting it', async () => {
  const c = getCluster();
  const before = await running(c, 'demo');
  assert.is((await c.node(['systemctl', 'kill', '-s', 'KILL', 'stevedore-agent.service'])).code, 0);
  await new Promise((r) => setTimeout(r, 3000));
  await eventually('the agent back', async () => (await c.node(['systemctl', 'is-active', 'stevedore-agent.service'])).stdout.trim() === 'active' || undefined, 30_000);
  await new Promise((r) => setTimeout(r, 5000));
  const after = await running(c, 'demo');
  assert.equal(after.status.containerStatuses?.map((s) => [s.containerID, s.state.running?.startedAt, s.restartCount]),
    before.status.containerStatuses?.map((s) => [s.containerID, s.state.running?.startedAt, s.restartCount]));
});

T.run();
