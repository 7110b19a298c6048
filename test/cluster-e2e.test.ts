import * as fs from 'node:fs/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { apiClient } from './helpers/api-client.js';
import { run, useCluster, type TestCluster } from './helpers/cluster.js';
import { CLI, eventually } from './helpers/node.js';
import { isAlive } from '../sandbox/proc.js';
import { getSandbox } from '../sandbox/sandbox.js';

const e2e = suite('cluster: kubectl → control plane → agent → systemd → journald');
// Pods in namespace "secure" must run under kvm at least (the stage1 test below). fly is closed
// unless a policy opens it (test/security-admission.test.ts): this one opens it to default, where
// the stage1 test runs fly beside the others, and to secure, so that the minimum is what refuses it there.
const getCluster = useCluster(e2e, { stage1Policy: 'require:\n  - stage1: kvm\n    namespaces: [secure]\nallowHostAccess:\n  - namespaces: [default, secure]\n    allow: [fly]\n' });

interface K8sPod {
  metadata: { uid: string; resourceVersion: string };
  status: { phase: string; containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; containerID?: string; state: { running?: unknown; waiting?: { reason: string; message?: string }; terminated?: { exitCode: number; reason: string } } }> };
}

async function getPod(c: TestCluster, name: string): Promise<K8sPod | undefined> {
  const r = await c.kubectl(['get', 'pod', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as K8sPod) : undefined;
}

async function running(c: TestCluster, name: string): Promise<K8sPod> {
  return eventually(`${name} Running and ready`, async () => {
    const p = await getPod(c, name);
    return p?.status.phase === 'Running' && p.status.containerStatuses?.every((s) => s.ready) ? p : undefined;
  }, 60_000);
}

/** MainPIDs of a pod's app units, read from the node's systemd. */
async function unitPids(c: TestCluster, pod: K8sPod): Promise<number[]> {
  const pids: number[] = [];
  for (const s of pod.status.containerStatuses ?? []) {
    const [uuid, app] = s.containerID!.replace('rkt://', '').split(':');
    const r = await c.node(['systemctl', 'show', '-p', 'MainPID', '--value', `stevedore-${uuid!.replace(/-/g, '')}-${app}.service`]);
    pids.push(Number(r.stdout.trim()));
  }
  return pids;
}

const TWO = `apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: counter
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo "count $i"; i=$((i+1)); sleep 0.5; done']
  - name: quiet
    image: busybox
    command: [sh, -c, 'echo quiet-start; trap "" TERM; while true; do sleep 1; done']
`;

e2e('the node is Ready and says what it runs', async () => {
  const c = getCluster();
  const nodes = JSON.parse(await c.k(['get', 'nodes', '-o', 'json'])) as { items: Array<{ metadata: { name: string }; spec: { podCIDR?: string }; status: { conditions: Array<{ type: string; status: string }>; nodeInfo: { containerRuntimeVersion: string } } }> };
  assert.is(nodes.items.length, 1);
  const [node] = nodes.items;
  assert.is(node!.metadata.name, c.nodeName);
  assert.is(node!.status.conditions.find((x) => x.type === 'Ready')?.status, 'True');
  assert.match(node!.status.nodeInfo.containerRuntimeVersion, /^rkt:\/\//);
  assert.is(node!.spec.podCIDR, c.podCidr, '`up` gives the node a pod CIDR');
  assert.match(await c.k(['get', 'nodes']), new RegExp(`${c.nodeName}\\s+Ready`));
  // `up` made a demo pod.
  await running(c, 'demo');
});

e2e('`up` runs the read-only api-service as its own unit; it sees the demo pod', async () => {
  const c = getCluster();
  assert.is((await c.node(['systemctl', 'is-active', 'stevedore-api-service.service'])).stdout.trim(), 'active');
  const demo = await running(c, 'demo');
  const uuid = demo.status.containerStatuses![0]!.containerID!.replace('rkt://', '').split(':')[0]!;
  const client = apiClient(`127.0.0.1:${c.apiServicePort}`);
  try {
    // The unit is active as soon as its process runs; it listens a moment later.
    const info = await eventually('the api-service to answer', () => client.call<{ info: { api_version: string } }>('GetInfo', {}, 2000));
    assert.match(info.info.api_version, /^\d+\.\d+\.\d+/);
    const pods = await client.call('ListPods', { filters: [{ ids: [uuid] }], detail: true });
    assert.is(pods.pods.length, 1);
    assert.is(pods.pods[0].state, 'POD_STATE_RUNNING');
    assert.equal(pods.pods[0].apps.map((a: { name: string }) => a.name).sort(), ['clock', 'greeter']);
  } finally {
    client.close();
  }
});

e2e('a two-container pod: apply, get -o wide, logs -c/--tail/-f, describe', async () => {
  const c = getCluster();
  assert.match(await c.k(['apply', '-f', '-'], TWO), /pod\/two created/);
  await running(c, 'two');
  const wide = await c.k(['get', 'pods', 'two', '-o', 'wide']);
  const prefix = c.podCidr.split('.').slice(0, 3).join('\\.');
  assert.match(wide, new RegExp(`two\\s+2/2\\s+Running\\s+0\\s+\\S+\\s+${prefix}\\.\\d+\\s+${c.nodeName}`), 'a namespaces pod has its own IP from the node\'s pod CIDR');
  await eventually('a few counts', async () => ((await c.k(['logs', 'two', '-c', 'counter'])).includes('count 3') ? true : undefined));
  const counter = await c.k(['logs', 'two', '-c', 'counter']);
  assert.match(counter, /^count 0\ncount 1\ncount 2\n/);
  assert.not.match(counter, /quiet-start/);
  assert.is(await c.k(['logs', 'two', '-c', 'quiet']), 'quiet-start\n');
  const tail = await c.k(['logs', 'two', '-c', 'counter', '--tail', '2']);
  assert.is(tail.trim().split('\n').length, 2);
  assert.match(await c.k(['logs', 'two', '-c', 'quiet', '--timestamps']), /^\d{4}-\d\d-\d\dT[\d:.]+Z quiet-start$/m);
  // -f keeps delivering lines that did not exist when it started.
  const follow = c.spawnKubectl(['logs', '-f', 'two', '-c', 'counter', '--tail', '1']);
  const seen = await new Promise<number[]>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { follow.kill(); reject(new Error(`follow stalled: ${out}`)); }, 20_000);
    follow.stdout!.on('data', (d) => {
      out += d;
      const counts = [...out.matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
      if (counts.length >= 4) { clearTimeout(timer); follow.kill(); resolve(counts); }
    });
  });
  assert.ok(seen.every((n, i) => i === 0 || n === seen[i - 1]! + 1), `consecutive lines while following: ${seen}`);
  const describe = await c.k(['describe', 'pod', 'two']);
  for (const reason of ['Scheduled', 'Pulled', 'Created', 'Started']) assert.match(describe, new RegExp(`Normal\\s+${reason}\\s`), `${reason} event`);
});

e2e('restart counts and logs --previous; restartPolicy Never exit 3 is Failed', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "run-$(cat /proc/sys/kernel/random/uuid)"; sleep 1; exit 1']
`);
  const restarted = await eventually('a restart', async () => {
    const p = await getPod(c, 'flaky');
    return (p?.status.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? p : undefined;
  }, 60_000);
  assert.ok(restarted.status.containerStatuses![0]!.restartCount >= 1);
  const previous = await c.k(['logs', 'flaky', '--previous']);
  assert.match(previous, /^run-[0-9a-f-]+\n$/, 'exactly the previous run\'s line');
  assert.match(await c.k(['get', 'pod', 'flaky']), /flaky\s+\d\/1\s+\S+\s+[1-9]/);
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: fails}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo bye; exit 3']
`);
  const failed = await eventually('Failed', async () => {
    const p = await getPod(c, 'fails');
    return p?.status.phase === 'Failed' ? p : undefined;
  });
  assert.is(failed.status.containerStatuses![0]!.state.terminated?.exitCode, 3);
  assert.match(await c.k(['get', 'pod', 'fails']), /fails\s+0\/1\s+Error\s+0/);
  await c.k(['delete', 'pod', 'flaky', 'fails', '--grace-period', '1']);
});

e2e('apply is idempotent; spec changes behave as in Kubernetes', async () => {
  const c = getCluster();
  const before = (await getPod(c, 'two'))!;
  assert.match(await c.k(['apply', '-f', '-'], TWO), /pod\/two unchanged/);
  assert.is((await getPod(c, 'two'))!.metadata.resourceVersion, before.metadata.resourceVersion);
  const changedCommand = await c.kubectl(['apply', '-f', '-'], TWO.replace("echo quiet-start", "echo changed"));
  assert.is.not(changedCommand.code, 0);
  assert.match(changedCommand.stderr, /Forbidden: pod updates may not change fields other than/);
  // An image change is allowed: the agent replaces the pod's containers.
  const other = await c.stevedore(['image', 'import-demo', '--name', 'other']);
  assert.is(other.code, 0, other.stderr);
  assert.match(await c.k(['apply', '-f', '-'], TWO.replace(/image: busybox/g, 'image: localhost/other:latest')), /pod\/two configured/);
  const replaced = await eventually('new image running', async () => {
    const p = await getPod(c, 'two');
    const ids = p?.status.containerStatuses?.map((s) => s.containerID) ?? [];
    return p && p.status.containerStatuses?.every((s) => s.ready) && !ids.some((id) => before.status.containerStatuses!.some((b) => b.containerID === id)) ? p : undefined;
  }, 60_000);
  assert.is(replaced.status.phase, 'Running');
});

e2e('kill -9 the agent: pods keep running untouched and are re-adopted', async () => {
  const c = getCluster();
  const pod = await running(c, 'two');
  const pids = await unitPids(c, pod);
  assert.ok(pids.every((p) => p > 0), `pids ${pids}`);
  const agentPid = Number((await c.node(['systemctl', 'show', '-p', 'MainPID', '--value', 'stevedore-agent'])).stdout.trim());
  await c.node(['kill', '-9', String(agentPid)]);
  // The read-only api-service is its own unit: it answers while the agent is
  // dead (systemd restarts the agent only after RestartSec=2).
  const client = apiClient(`127.0.0.1:${c.apiServicePort}`);
  try {
    const uuid = pod.status.containerStatuses![0]!.containerID!.replace('rkt://', '').split(':')[0]!;
    const seen = await client.call<{ pods: Array<{ state: string }> }>('ListPods', { filters: [{ ids: [uuid] }] });
    assert.equal(seen.pods.map((p) => p.state), ['POD_STATE_RUNNING'], 'the api-service sees the pod with the agent down');
  } finally {
    client.close();
  }
  await eventually('the agent restarted by systemd', async () => {
    const r = await c.node(['systemctl', 'show', '-p', 'MainPID,ActiveState', '--value', 'stevedore-agent']);
    const [pid, state] = r.stdout.trim().split('\n');
    return Number(pid) !== agentPid && Number(pid) > 0 && state === 'active' ? true : undefined;
  });
  await new Promise((r) => setTimeout(r, 3000));
  const after = await running(c, 'two');
  assert.equal(await unitPids(c, after), pids, 'same processes');
  assert.equal(after.status.containerStatuses!.map((s) => s.restartCount), pod.status.containerStatuses!.map((s) => s.restartCount));
  assert.equal(after.status.containerStatuses!.map((s) => s.containerID), pod.status.containerStatuses!.map((s) => s.containerID));
});

e2e('the control plane dies: pods keep running, status catches up, objects and resourceVersions survive a restart', async () => {
  const c = getCluster();
  const pod = await running(c, 'two');
  const pids = await unitPids(c, pod);
  const podsBefore = JSON.parse(await c.k(['get', 'pods', '-o', 'json'])) as { items: K8sPod[] };
  process.kill(await c.controlPlanePid(), 'SIGKILL');
  // While it is down, a container crashes and is restarted by systemd alone.
  await c.node(['kill', '-9', String(pids[0])]);
  await new Promise((r) => setTimeout(r, 2500));
  const stillThere = await c.node(['systemctl', 'is-active', `stevedore-${pod.status.containerStatuses![1]!.containerID!.replace('rkt://', '').split(':')[0]!.replace(/-/g, '')}-quiet.service`]);
  assert.is(stillThere.stdout.trim(), 'active');
  await c.restartControlPlane();
  const podsAfter = JSON.parse(await c.k(['get', 'pods', '-o', 'json'])) as { items: K8sPod[] };
  for (const b of podsBefore.items) {
    const a = podsAfter.items.find((x) => x.metadata.uid === b.metadata.uid);
    assert.ok(a, `pod ${b.metadata.uid} survived the restart`);
    assert.ok(Number(a!.metadata.resourceVersion) >= Number(b.metadata.resourceVersion));
  }
  const caughtUp = await eventually('the restart reported', async () => {
    const p = await getPod(c, 'two');
    return (p?.status.containerStatuses?.find((s) => s.name === 'counter')?.restartCount ?? 0) >= 1 ? p : undefined;
  }, 60_000);
  assert.ok(caughtUp);
  assert.match(await c.k(['get', 'nodes']), /Ready/);
});

e2e('kubectl delete stops the units within the grace period and the pod disappears', async () => {
  const c = getCluster();
  const pod = await running(c, 'two');
  const hex = pod.status.containerStatuses![0]!.containerID!.replace('rkt://', '').split(':')[0]!.replace(/-/g, '');
  const started = Date.now();
  await c.k(['delete', 'pod', 'two', '--wait=true']);
  const took = Date.now() - started;
  assert.ok(took < 15_000, `deleted in ${took} ms (grace 3 s)`);
  assert.is(await getPod(c, 'two'), undefined);
  const units = await c.node(['systemctl', 'list-units', '--all', '--plain', '--no-legend', `stevedore-${hex}*`]);
  assert.is(units.stdout.trim(), '', 'no units left');
  const events = await c.k(['get', 'events', '--field-selector', 'involvedObject.name=two']);
  assert.match(events, /Killing/);
});

e2e('kubectl top pods|nodes: a CPU-capped busy loop near the usage its cgroup counts', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: burn, labels: {app: burn}}
spec:
  containers:
  - name: loop
    image: busybox
    command: [sh, -c, 'while :; do :; done']
    resources: {limits: {cpu: 300m, memory: 64Mi}}
`);
  const pod = await running(c, 'burn');
  const [uuid, app] = pod.status.containerStatuses![0]!.containerID!.replace('rkt://', '').split(':');
  const unit = `stevedore-${uuid!.replace(/-/g, '')}-${app}.service`;
  const cgroup = (await c.node(['systemctl', 'show', '-p', 'ControlGroup', '--value', unit])).stdout.trim();
  // the CPU time the kernel counted for the unit's cgroup: cgroup2's cpu.stat (hybrid hosts mount it at unified/)
  const cpuNs = async () => Number((await c.node(['sh', '-c', `awk '/^usage_usec/ {print $2 * 1000}' $(ls /sys/fs/cgroup/unified${cgroup}/cpu.stat /sys/fs/cgroup${cgroup}/cpu.stat 2>/dev/null | head -1)`])).stdout.trim());
  const top = await eventually('kubectl top to have a rate for burn (two samples)', async () => {
    const r = await c.kubectl(['top', 'pod', 'burn', '--no-headers']);
    return r.code === 0 ? r.stdout : undefined;
  }, 60_000);
  assert.match(top, /^burn\s+\d+m\s+\d+Mi\s*$/m, top);
  const t0 = process.hrtime.bigint();
  const u0 = await cpuNs();
  await new Promise((r) => setTimeout(r, 10_000));
  const u1 = await cpuNs();
  const measuredMilli = ((u1 - u0) / Number(process.hrtime.bigint() - t0)) * 1000;
  const shown = Number(/^burn\s+(\d+)m/m.exec(await c.k(['top', 'pod', 'burn', '--no-headers']))![1]);
  assert.ok(measuredMilli > 50, `the loop ran: ${measuredMilli} m`);
  assert.ok(Math.abs(shown - measuredMilli) <= 0.2 * measuredMilli, `kubectl top says ${shown}m, the cgroup counted ${measuredMilli.toFixed(0)}m`);
  const containers = await c.k(['top', 'pod', '-l', 'app=burn', '--containers']);
  assert.match(containers, /^POD\s+NAME\s+CPU\(cores\)\s+MEMORY\(bytes\)\s*\nburn\s+loop\s+\d+m\s+\d+Mi/m, containers);
  const nodes = await c.k(['top', 'node']);
  assert.match(nodes, new RegExp(`^${c.nodeName}\\s+\\d+m\\s+\\d+%\\s+\\d+Mi\\s+\\d+%`, 'm'), nodes);
  const missing = await c.kubectl(['top', 'pod', 'no-such-pod']);
  assert.is.not(missing.code, 0);
  assert.match(missing.stderr, /podmetrics.metrics.k8s.io "default\/no-such-pod" not found/);
  await c.k(['delete', 'pod', 'burn', '--grace-period=0', '--force']);
});

e2e('HorizontalPodAutoscaler: kubectl autoscale raises a Deployment under CPU load and lowers it when the load stops', async () => {
  const c = getCluster();
  // each pod burns CPU for 40 s after it starts, then idles: load that ends by itself
  await c.k(['apply', '-f', '-'], `apiVersion: apps/v1
kind: Deployment
metadata: {name: hog}
spec:
  replicas: 1
  selector: {matchLabels: {app: hog}}
  template:
    metadata: {labels: {app: hog}}
    spec:
      containers:
      - name: burn
        image: busybox
        command: [sh, -c, 'end=$(( $(date +%s) + 40 )); while [ $(date +%s) -lt $end ]; do :; done; exec sleep 3600']
        resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
`);
  // kubectl autoscale posts an autoscaling/v1 object in protobuf; it is kept as v2
  assert.match(await c.k(['autoscale', 'deployment', 'hog', '--cpu-percent=50', '--min=1', '--max=3']), 'horizontalpodautoscaler.autoscaling/hog autoscaled');
  await c.k(['patch', 'hpa', 'hog', '--type=merge', '-p', '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}']);
  const hpa = JSON.parse(await c.k(['get', 'hpa', 'hog', '-o', 'json']));
  assert.is(hpa.apiVersion, 'autoscaling/v2');
  assert.equal(hpa.spec.metrics, [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 50 } } }]);
  await eventually('the HPA to raise hog', async () => (JSON.parse(await c.k(['get', 'deploy', 'hog', '-o', 'json'])).spec.replicas > 1 ? true : undefined), 120_000);
  const table = await c.k(['get', 'hpa', 'hog']);
  assert.match(table, /^NAME\s+REFERENCE\s+TARGETS\s+MINPODS\s+MAXPODS\s+REPLICAS\s+AGE\nhog\s+Deployment\/hog\s+cpu: \d+%\/50%\s+1\s+3\s+\d\s+\S+$/m, table);
  assert.match(await c.k(['get', 'events', '--field-selector', 'involvedObject.name=hog,involvedObject.kind=HorizontalPodAutoscaler']), /SuccessfulRescale\s+horizontalpodautoscaler\/hog\s+New size: [23]; reason: cpu resource utilization \(percentage of request\) above target/);
  await eventually('the HPA to lower hog once every pod idles', async () => (JSON.parse(await c.k(['get', 'deploy', 'hog', '-o', 'json'])).spec.replicas === 1 ? true : undefined), 180_000);
  assert.match(await c.k(['get', 'events', '--field-selector', 'involvedObject.name=hog,involvedObject.kind=HorizontalPodAutoscaler']), /New size: 1; reason: All metrics below target/);
  const status = JSON.parse(await c.k(['get', 'hpa', 'hog', '-o', 'json'])).status;
  assert.ok(status.conditions.some((x: { type: string; status: string }) => x.type === 'ScalingActive' && x.status === 'True'), JSON.stringify(status));
  await c.k(['delete', 'hpa', 'hog']);
  await c.k(['delete', 'deploy', 'hog']);
});

e2e('garbage in gets a kubectl-printable error and nothing else changes', async () => {
  const c = getCluster();
  const before = await c.k(['get', 'pods', '-o', 'name']);
  const badYaml = await c.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata: {name: x\n');
  assert.is.not(badYaml.code, 0);
  assert.match(badYaml.stderr, /error/i);
  const unknown = await c.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: busybox, bogus: 1}\n');
  assert.is.not(unknown.code, 0);
  assert.match(unknown.stderr, /unknown field "spec.containers\[0\].bogus"/);
  const big = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  annotations: {huge: "${'x'.repeat(1024 * 1024)}"}\nspec:\n  containers:\n  - {name: a, image: busybox}\n`;
  const file = `${c.dataDir}/big.yaml`;
  await fs.writeFile(file, big);
  const tooBig = await c.kubectl(['apply', '-f', file]);
  assert.is.not(tooBig.code, 0);
  assert.match(tooBig.stderr, /Too long|too large/i);
  assert.is(await c.k(['get', 'pods', '-o', 'name']), before);
  // A missing image is accepted by the API (as in Kubernetes) and reported by the node.
  // Its registry is a closed port on loopback: the pull fails at once and no traffic leaves the machine.
  await c.k(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata: {name: noimage}\nspec:\n  containers:\n  - {name: a, image: "127.0.0.1:1/none:1"}\n');
  const waiting = await eventually('ErrImagePull', async () => {
    const w = (await getPod(c, 'noimage'))?.status.containerStatuses?.[0]?.state.waiting;
    return w && /ErrImagePull|ImagePullBackOff/.test(w.reason) ? w : undefined;
  });
  assert.match(waiting.message ?? '', /Failed to pull image "127\.0\.0\.1:1\/none:1": .*cannot reach registry 127\.0\.0\.1:1/);
  const events = await c.k(['get', 'events', '--field-selector', 'involvedObject.name=noimage']);
  assert.match(events, /Pulling image "127\.0\.0\.1:1\/none:1"/);
  assert.match(events, /Failed to pull image/);
  await c.k(['delete', 'pod', 'noimage', '--grace-period', '0', '--force']);
});

e2e('stage1 per pod by annotation and runtimeClassName, kvm beside namespaces; the node policy rejects a weaker one', async () => {
  const c = getCluster();
  const pod = (name: string, extra: string, ns = 'default') => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}${extra.startsWith('annotations') ? `, ${extra}` : ''}}
spec:
  ${extra.startsWith('runtimeClassName') ? `${extra}\n  ` : ''}containers:
  - {name: main, image: busybox, command: [sh, -c, 'echo "up on $(uname -r)"; exec sleep 3600']}
`;
  // The same manifest under each stage1, side by side on one node.
  const byName = ['by-default', 'by-annotation', 'by-class', 'vm-by-class', 'vm-by-annotation'];
  await c.k(['apply', '-f', '-'], [
    pod('by-default', ''),
    pod('by-annotation', 'annotations: {rkt.alpha.kubernetes.io/stage1-name-override: fly}'),
    pod('by-class', 'runtimeClassName: fly'),
    pod('vm-by-class', 'runtimeClassName: kvm'),
    pod('vm-by-annotation', 'annotations: {rkt.alpha.kubernetes.io/stage1-name-override: kvm}'),
  ].join('---\n'));
  for (const name of byName) await running(c, name);
  const listed = JSON.parse((await c.stevedore(['pod', 'list', '-o', 'json'])).stdout) as Array<{ name?: string; stage1?: string }>;
  const stage1Of = (name: string) => listed.find((p) => p.name === name)?.stage1;
  assert.equal(byName.map(stage1Of), ['namespaces', 'fly', 'fly', 'kvm', 'kvm']);
  // A VM pod runs the guest kernel, and says how it is accelerated (TCG here: no usable hardware KVM).
  const hostKernel = (await c.node(['uname', '-r'])).stdout.trim();
  const vmLine = await eventually('vm log line', async () => (await c.kubectl(['logs', 'vm-by-class'])).stdout.trim() || undefined);
  assert.match(vmLine, /^up on \S+$/);
  assert.is.not(vmLine, `up on ${hostKernel}`, 'the VM pod sees its own kernel');
  assert.is((await c.k(['logs', 'by-default'])).trim(), `up on ${hostKernel}`);
  const accel = await c.k(['get', 'pod', 'vm-by-class', '-o', 'jsonpath={.status.conditions[?(@.type=="stevedore.io/VMAcceleration")].reason}']);
  assert.is(accel, 'TCG');
  assert.is(await c.k(['get', 'node', c.nodeName, '-o', 'jsonpath={.metadata.labels.stevedore\\.io/kvm-accel}']), 'tcg');

  // "secure" requires kvm: asking for fly there is refused for good, with the reason in status and events;
  // asking for nothing gets kvm.
  await c.k(['create', 'namespace', 'secure']);
  await c.k(['apply', '-f', '-'], [
    pod('weak', 'annotations: {rkt.alpha.kubernetes.io/stage1-name-override: fly}', 'secure'),
    pod('unasked', '', 'secure'),
  ].join('---\n'));
  const refused = await eventually('weak Failed', async () => {
    const r = await c.kubectl(['get', 'pod', 'weak', '-n', 'secure', '-o', 'json']);
    const p = r.code === 0 ? JSON.parse(r.stdout) as { status: { phase: string; reason?: string; message?: string } } : undefined;
    return p?.status.phase === 'Failed' ? p : undefined;
  });
  assert.is(refused.status.reason, 'Stage1NotAllowed');
  assert.is(refused.status.message, 'stage1 fly is weaker than the kvm this node\'s stage1 policy requires for namespace secure');
  assert.match(await c.k(['get', 'events', '-n', 'secure', '--field-selector', 'involvedObject.name=weak']), /Warning\s+Stage1NotAllowed\s+pod\/weak\s+stage1 fly is weaker/);
  await eventually('unasked Running', async () => {
    const r = await c.kubectl(['get', 'pod', 'unasked', '-n', 'secure', '-o', 'jsonpath={.status.phase}']);
    return r.stdout === 'Running' ? r.stdout : undefined;
  }, 60_000);
  // A RuntimeClass that does not exist is refused too.
  await c.k(['apply', '-f', '-'], pod('noclass', 'runtimeClassName: gvisor'));
  const noclass = await eventually('noclass Failed', async () => {
    const r = await c.kubectl(['get', 'pod', 'noclass', '-o', 'jsonpath={.status.phase}/{.status.reason}']);
    return r.stdout === 'Failed/RuntimeClassNotFound' ? r.stdout : undefined;
  });
  assert.is(noclass, 'Failed/RuntimeClassNotFound');
  const after = JSON.parse((await c.stevedore(['pod', 'list', '-o', 'json'])).stdout) as Array<{ name?: string; stage1?: string }>;
  assert.ok(!after.some((p) => p.name === 'weak' || p.name === 'noclass'), 'refused pods never reach the runtime');
  assert.is(after.find((p) => p.name === 'unasked')?.stage1, 'kvm', 'a pod that asked for nothing is raised to the policy\'s minimum');
  await c.k(['delete', 'pod', ...byName, 'noclass', '--grace-period', '1']);
  await c.k(['delete', 'pod', 'weak', 'unasked', '-n', 'secure', '--grace-period', '1']);
});

// Last: it stops and restarts the whole cluster.
e2e('stop keeps the cluster (objects, resourceVersions, certificates) and up brings the same one back, its pods started anew', async () => {
  const c = getCluster();
  await c.k(['create', 'configmap', 'keep-me', '--from-literal=k=v']);
  const kept = JSON.parse(await c.k(['get', 'configmap', 'keep-me', '-o', 'json'])) as { metadata: { uid: string; resourceVersion: string } };
  const demo = await running(c, 'demo');
  const cpPid = await c.controlPlanePid();
  const stop = await run(process.execPath, [CLI, 'stop', '--data-dir', c.dataDir]);
  assert.is(stop.code, 0, stop.stderr);
  assert.not.ok(await isAlive(cpPid), 'the control plane stopped');
  assert.not.ok(await getSandbox(c.sandbox), 'the node sandbox stopped');
  assert.not.match((await run('nft', ['list', 'tables'])).stdout, `table ip ${c.proxyTable}\n`, 'the service proxy table is gone');
  const again = await run(process.execPath, [CLI, 'stop', '--data-dir', c.dataDir]);
  assert.match(again.stdout, /already stopped/);
  await fs.access(c.kubeconfig);
  // No flags: a stopped cluster comes back with the options it was made with (ports, bridge, policy, sandbox name).
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', c.dataDir]);
  assert.is(up.code, 0, `${up.stderr}\n${up.stdout}`);
  assert.match(up.stdout, /starting the cluster stopped at/);
  const after = JSON.parse(await c.k(['get', 'configmap', 'keep-me', '-o', 'json'])) as { metadata: { uid: string; resourceVersion: string } };
  assert.equal(after.metadata, { ...after.metadata, uid: kept.metadata.uid, resourceVersion: kept.metadata.resourceVersion });
  const back = await running(c, 'demo');
  assert.is(back.metadata.uid, demo.metadata.uid, 'the same pod object, started again on the node');
  assert.ok(await getSandbox(c.sandbox), 'the node sandbox is back under its name');
});

e2e.run();
