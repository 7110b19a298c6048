/**
 * Init containers, probes, lifecycle hooks, conditions and
 * activeDeadlineSeconds on a real node (`stevedore up`: control plane,
 * agent, systemd sandbox, crun, CNI), driven by the real kubectl. The logic
 * alone, against a fake runtime: test/prober-logic.test.ts.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually } from './helpers/assert.js';

type KObj = Record<string, any>;

const node = suite('init containers, probes and hooks on a real node');
const getCluster = useCluster(node);

const pod = (c: TestCluster, name: string) => c.k(['get', 'pod', name, '-o', 'json']).then((s) => JSON.parse(s) as KObj);
const cond = (p: KObj, type: string) => (p.status?.conditions ?? []).find((x: KObj) => x.type === type) as KObj | undefined;
const events = async (c: TestCluster, name: string) => (JSON.parse(await c.k(['get', 'events', '--field-selector', `involvedObject.name=${name}`, '-o', 'json'])).items as KObj[]);
const row = async (c: TestCluster, name: string) => (await c.k(['get', 'pod', name, '--no-headers'])).trim().split(/\s+/);
/** Seconds since the node booted, as every container reads it (/proc/uptime: no time namespaces): one clock for all. */
const UPTIME = '$(cut -d" " -f1 /proc/uptime)';

node('init containers run in order, each to completion, before the app; Init:N/M, initContainerStatuses and the conditions follow', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: init-order}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: busybox
    command: [sh, -c, 'echo first-start ${UPTIME}; sleep 8; echo first-end ${UPTIME}']
  - name: flaky
    image: busybox
    # fails its first run, succeeds the next (its rootfs, and so /marker, outlives a restart)
    command: [sh, -c, 'if [ -e /marker ]; then echo flaky-end ${UPTIME}; exit 0; fi; touch /marker; exit 7']
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo app-start ${UPTIME}; exec sleep 3600']
`);
  const during = await eventually('Init:0/2 while the first init container runs', async () => {
    const r = await row(c, 'init-order');
    return r[2] === 'Init:0/2' && r;
  });
  assert.is(during[1], '0/1');
  // The first init container runs for 8 s (a window wide enough for a loaded CI machine to see): its pod's sandbox is there meanwhile.
  const p0 = await eventually('the first init container running', async () => { const x = await pod(c, 'init-order'); return x.status.initContainerStatuses?.[0]?.state?.running && x; });
  assert.equal(p0.status.initContainerStatuses.slice(1).map((s: KObj) => s.state.waiting?.reason), ['PodInitializing'], 'flaky waits for first');
  assert.is(p0.status.phase, 'Pending');
  assert.is(cond(p0, 'Initialized')?.status, 'False');
  assert.is(cond(p0, 'Initialized')?.reason, 'ContainersNotInitialized');
  assert.is(cond(p0, 'PodReadyToStartContainers')?.status, 'True');
  assert.is(p0.status.containerStatuses[0].state.waiting.reason, 'PodInitializing');

  const p = await eventually('the app running', async () => {
    const x = await pod(c, 'init-order');
    return x.status.phase === 'Running' && x.status.containerStatuses[0].state.running && x;
  }, 60_000);
  assert.equal(p.status.initContainerStatuses.map((s: KObj) => [s.name, s.state.terminated?.reason, s.state.terminated?.exitCode, s.ready]), [['first', 'Completed', 0, true], ['flaky', 'Completed', 0, true]]);
  assert.is(p.status.initContainerStatuses[1].restartCount, 1, 'the failed first run of flaky was restarted and counted');
  assert.is(p.status.initContainerStatuses[1].lastState.terminated.exitCode, 7);
  for (const t of ['PodScheduled', 'PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready']) assert.is(cond(p, t)?.status, 'True', t);
  // The order, on one clock: first ended before flaky's success, which came before the app started.
  const at = async (container: string, word: string) => Number(new RegExp(`${word} ([0-9.]+)`).exec(await c.k(['logs', 'init-order', '-c', container]))?.[1]);
  const firstEnd = await at('first', 'first-end');
  const flakyEnd = await at('flaky', 'flaky-end');
  const appStart = await at('app', 'app-start');
  assert.ok(firstEnd > 0 && flakyEnd >= firstEnd && appStart >= flakyEnd, `first-end ${firstEnd}, flaky-end ${flakyEnd}, app-start ${appStart}`);
  assert.is((await row(c, 'init-order'))[2], 'Running');
  await c.k(['delete', 'pod', 'init-order', '--wait=true']);
});

node('a sidecar (init container with restartPolicy Always) starts first, keeps running beside the app, and counts in READY', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: busybox
    restartPolicy: Always
    command: [sh, -c, 'echo proxy-start ${UPTIME}; sleep 2; touch /tmp/up; exec sleep 3600']
    readinessProbe:
      exec: {command: [cat, /tmp/up]}
      periodSeconds: 1
  - {name: after-proxy, image: busybox, command: [sh, -c, 'echo after-proxy ${UPTIME}']}
  containers:
  - {name: app, image: busybox, command: [sh, -c, 'echo app-start ${UPTIME}; exec sleep 3600']}
`);
  const p = await eventually('Ready with the sidecar ready', async () => { const x = await pod(c, 'sidecar'); return cond(x, 'Ready')?.status === 'True' && x; }, 60_000);
  const proxy = p.status.initContainerStatuses[0];
  assert.ok(proxy.state.running && proxy.started && proxy.ready, JSON.stringify(proxy));
  assert.is(p.status.initContainerStatuses[1].state.terminated.reason, 'Completed');
  assert.is(cond(p, 'Initialized')?.status, 'True');
  const r = await row(c, 'sidecar');
  assert.equal([r[1], r[2]], ['2/2', 'Running']);
  const at = async (container: string, word: string) => Number(new RegExp(`${word} ([0-9.]+)`).exec(await c.k(['logs', 'sidecar', '-c', container]))?.[1]);
  const [proxyStart, afterProxy, appStart] = [await at('proxy', 'proxy-start'), await at('after-proxy', 'after-proxy'), await at('app', 'app-start')];
  assert.ok(proxyStart > 0 && afterProxy >= proxyStart && appStart >= afterProxy, `proxy ${proxyStart}, after-proxy ${afterProxy}, app ${appStart}`);
  await c.k(['delete', 'pod', 'sidecar', '--wait=true']);
});

node('with the agent stopped, systemd still runs the init containers in order and then the app', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: init-no-agent}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: slow, image: busybox, command: [sh, -c, 'sleep 10']}
  containers:
  - {name: app, image: busybox, command: [sh, -c, 'exec sleep 3600']}
`);
  // Launched (the init container runs), so the agent is not stopped in the middle of starting the pod.
  await eventually('the init container running', async () => (await pod(c, 'init-no-agent')).status.initContainerStatuses?.[0]?.state?.running !== undefined);
  const stop = await c.node(['systemctl', 'stop', 'stevedore-agent']);
  assert.is(stop.code, 0, stop.stderr);
  try {
    const listed = await eventually('the app running on the node, the agent down', async () => {
      const r = await c.stevedore(['pod', 'list', '-o', 'json']);
      const p = (JSON.parse(r.stdout) as Array<{ name?: string; apps: Array<{ name: string; state: string; exitCode?: number }> }>).find((x) => x.name === 'init-no-agent');
      return p?.apps.find((a) => a.name === 'app')?.state === 'running' && p;
    }, 30_000);
    assert.equal(listed.apps.map((a) => [a.name, a.state, a.exitCode]), [['slow', 'exited', 0], ['app', 'running', undefined]]);
  } finally {
    const start = await c.node(['systemctl', 'start', 'stevedore-agent']);
    assert.is(start.code, 0, start.stderr);
  }
  await eventually('Running once the agent is back', async () => { const x = await pod(c, 'init-no-agent'); return x.status.phase === 'Running' && cond(x, 'Initialized')?.status === 'True'; }, 60_000);
  await c.k(['delete', 'pod', 'init-no-agent', '--wait=true']);
});

node('an init container writes into an emptyDir that the app then reads (and a ConfigMap volume it copies from)', async () => {
  const c = getCluster();
  await c.k(['create', 'configmap', 'seed', '--from-literal=greeting=hello-from-configmap']);
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: init-shares}
spec:
  initContainers:
  - name: fill
    image: busybox
    command: [sh, -c, 'cp /seed/greeting /work/greeting && echo written-by-init >> /work/greeting']
    volumeMounts: [{name: work, mountPath: /work}, {name: seed, mountPath: /seed}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'cat /data/greeting; sleep 3600']
    volumeMounts: [{name: work, mountPath: /data}]
  volumes:
  - {name: work, emptyDir: {}}
  - {name: seed, configMap: {name: seed}}
`);
  const log = await eventually('the app to print what the init container wrote', async () => { const r = await c.kubectl(['logs', 'init-shares', '-c', 'app']); return r.code === 0 && r.stdout.includes('written-by-init') ? r.stdout : undefined; }, 60_000);
  assert.is(log, 'hello-from-configmapwritten-by-init\n', 'the ConfigMap value (no newline of its own), then the init container\'s line');
  await c.k(['delete', 'pod', 'init-shares', '--wait=true']);
  await c.k(['delete', 'configmap', 'seed']);
});

node('a failed init container under restartPolicy Never fails the pod (Init:Error) and the app never starts', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: init-fails}
spec:
  restartPolicy: Never
  initContainers:
  - {name: bad, image: busybox, command: [sh, -c, 'exit 3']}
  containers:
  - {name: app, image: busybox, command: [sh, -c, 'echo app-ran; sleep 3600']}
`);
  const p = await eventually('the pod Failed', async () => { const x = await pod(c, 'init-fails'); return x.status.phase === 'Failed' && x; }, 60_000);
  assert.is(p.status.initContainerStatuses[0].state.terminated.exitCode, 3);
  assert.is(p.status.containerStatuses[0].state.waiting?.reason, 'PodInitializing');
  assert.is((await row(c, 'init-fails'))[2], 'Init:Error');
  assert.not.match((await c.kubectl(['logs', 'init-fails', '-c', 'app'])).stdout, 'app-ran');
  await c.k(['delete', 'pod', 'init-fails', '--wait=true']);
});

node('a readiness probe that passes only once a file appears flips Ready, READY and ContainersReady', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: ready-file}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'sleep 10; touch /tmp/ready; exec sleep 3600']
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 1
`);
  const notReady = await eventually('running, not ready', async () => { const x = await pod(c, 'ready-file'); return x.status.containerStatuses?.[0]?.state?.running && x; });
  assert.is(notReady.status.containerStatuses[0].ready, false);
  assert.is(cond(notReady, 'Ready')?.status, 'False');
  assert.is(cond(notReady, 'ContainersReady')?.status, 'False');
  assert.is((await row(c, 'ready-file'))[1], '0/1');
  const readySince = cond(notReady, 'Ready')?.lastTransitionTime;
  await eventually('a Readiness probe failed event', async () => (await events(c, 'ready-file')).some((e) => e.reason === 'Unhealthy' && /^Readiness probe failed: cat: can't open '\/tmp\/ready': No such file or directory/.test(e.message)));
  const ready = await eventually('Ready', async () => { const x = await pod(c, 'ready-file'); return cond(x, 'Ready')?.status === 'True' && x; }, 30_000);
  assert.is(ready.status.containerStatuses[0].ready, true);
  assert.is(cond(ready, 'ContainersReady')?.status, 'True');
  assert.is.not(cond(ready, 'Ready')?.lastTransitionTime, readySince, 'the transition time moved with the flip');
  assert.is((await row(c, 'ready-file'))[1], '1/1');
  assert.is(ready.status.containerStatuses[0].restartCount, 0, 'readiness never restarts');
  await c.k(['delete', 'pod', 'ready-file', '--wait=true']);
});

node('a failing liveness probe restarts the container with the kubelet\'s events and counts the restart', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: live-fail}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'exec sleep 3600']
    livenessProbe:
      exec: {command: [sh, -c, 'echo sick; exit 1']}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
`);
  const p = await eventually('a restart', async () => { const x = await pod(c, 'live-fail'); return x.status.containerStatuses?.[0]?.restartCount >= 1 && x; }, 60_000);
  assert.ok(p.status.containerStatuses[0].lastState.terminated, 'the killed run is lastState');
  const evs = await events(c, 'live-fail');
  assert.ok(evs.some((e) => e.type === 'Warning' && e.reason === 'Unhealthy' && e.message === 'Liveness probe failed: sick'), JSON.stringify(evs.map((e) => e.message)));
  assert.ok(evs.some((e) => e.type === 'Normal' && e.reason === 'Killing' && e.message === 'Container app failed liveness probe, will be restarted'));
  assert.match((await row(c, 'live-fail'))[3]!, /^[1-9]/, 'RESTARTS counts it');
  await c.k(['delete', 'pod', 'live-fail', '--wait=true']);
});

node('network probes: httpGet by port name with headers passes; a port with no listener and an unknown port name fail with clear events', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: net-probes}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command: [sh, -c, 'mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-Probe, value: stevedore}]}
      periodSeconds: 1
  - name: nolistener
    image: busybox
    command: [sh, -c, 'exec sleep 3600']
    readinessProbe:
      tcpSocket: {port: 1234}
      periodSeconds: 1
  - name: noname
    image: busybox
    command: [sh, -c, 'exec sleep 3600']
    readinessProbe:
      httpGet: {path: /, port: metrics}
      periodSeconds: 1
`);
  const p = await eventually('web ready', async () => { const x = await pod(c, 'net-probes'); return x.status.containerStatuses?.find((s: KObj) => s.name === 'web')?.ready && x; }, 60_000);
  const ip = p.status.podIP as string;
  assert.ok(ip && ip !== p.status.hostIP, 'probes went to the pod\'s own IP');
  const evs = await eventually('both failure events', async () => {
    const e = await events(c, 'net-probes');
    return e.some((x) => x.message === `Readiness probe failed: dial tcp ${ip}:1234: connect: connection refused`) && e.some((x) => x.message === 'Readiness probe failed: port "metrics" is not the name of a port of container "noname"') && e;
  });
  assert.ok(evs.length > 0);
  const after = await pod(c, 'net-probes');
  assert.equal(after.status.containerStatuses.map((s: KObj) => [s.name, s.ready]), [['web', true], ['nolistener', false], ['noname', false]]);
  assert.is(cond(after, 'Ready')?.status, 'False');
  assert.is((await row(c, 'net-probes'))[1], '1/3');
  await c.k(['delete', 'pod', 'net-probes', '--wait=true']);
});

node('postStart runs after the start and preStop before the stop, within the grace period', async () => {
  const c = getCluster();
  // preStop's httpGet reaches this server on the node's loopback (the node sandbox shares the network).
  const hits: Array<{ path: string; at: number; header?: string }> = [];
  const server = http.createServer((req, res) => { hits.push({ path: req.url ?? '', at: Date.now(), header: req.headers['x-hook'] as string }); res.end('ok'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: hooks}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: busybox
    # The app reports what the hook left in its filesystem.
    command: [sh, -c, 'echo main-started; until [ -e /tmp/post ]; do sleep 0.2; done; echo saw-$(cat /tmp/post); while :; do sleep 0.2; done']
    lifecycle:
      postStart:
        exec: {command: [sh, -c, 'echo post-start-ran > /tmp/post']}
      preStop:
        httpGet: {host: 127.0.0.1, port: ${port}, path: /prestop, httpHeaders: [{name: X-Hook, value: pre}]}
`);
    await eventually('the app saw what the postStart hook wrote', async () => /saw-post-start-ran/.test((await c.kubectl(['logs', 'hooks'])).stdout), 60_000);
    assert.match((await c.k(['logs', 'hooks'])), /main-started[\s\S]*saw-post-start-ran/);
    const deleted = Date.now();
    await c.k(['delete', 'pod', 'hooks', '--wait=true']);
    assert.equal(hits.map((h) => [h.path, h.header]), [['/prestop', 'pre']]);
    assert.ok(hits[0]!.at >= deleted, 'preStop ran at the deletion');
  } finally {
    server.close();
  }
});

node('activeDeadlineSeconds stops the pod: Failed, DeadlineExceeded', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 4
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox, command: [sh, -c, 'exec sleep 3600']}
`);
  const p = await eventually('Failed', async () => { const x = await pod(c, 'deadline'); return x.status.phase === 'Failed' && x; }, 60_000);
  assert.is(p.status.reason, 'DeadlineExceeded');
  assert.ok((await events(c, 'deadline')).some((e) => e.reason === 'DeadlineExceeded' && e.message === 'Pod was active on the node longer than the specified deadline'));
  await eventually('the container stopped', async () => { const x = await pod(c, 'deadline'); return x.status.containerStatuses[0].state.terminated !== undefined; });
  await c.k(['delete', 'pod', 'deadline', '--wait=true']);
});

node('termination messages: the file at terminationMessagePath (default and custom), FallbackToLogsOnError from the log', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: messages}
spec:
  restartPolicy: Never
  containers:
  - {name: default-path, image: busybox, command: [sh, -c, 'echo "config missing: /etc/app.conf" > /dev/termination-log; exit 2']}
  - {name: custom-path, image: busybox, terminationMessagePath: /tmp/why, command: [sh, -c, 'printf done > /tmp/why']}
  - {name: from-logs, image: busybox, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, 'echo starting; echo "fatal: no database"; exit 3']}
  - {name: logs-but-ok, image: busybox, terminationMessagePolicy: FallbackToLogsOnError, command: [sh, -c, 'echo fine']}
`);
  const p = await eventually('Failed with every message', async () => {
    const x = await pod(c, 'messages');
    return x.status.phase === 'Failed' && x.status.containerStatuses.find((s: KObj) => s.name === 'from-logs')?.state.terminated?.message && x;
  }, 60_000);
  const msg = (name: string) => p.status.containerStatuses.find((s: KObj) => s.name === name).state.terminated;
  assert.is(msg('default-path').message, 'config missing: /etc/app.conf\n');
  assert.is(msg('default-path').exitCode, 2);
  assert.is(msg('custom-path').message, 'done');
  assert.is(msg('from-logs').message, 'starting\nfatal: no database');
  assert.is(msg('logs-but-ok').message, undefined, 'a successful exit takes no message from its log');
  await c.k(['delete', 'pod', 'messages', '--wait=true']);
});

node('on the fly stage1 (kube-system, where the default policy opens it): an init container, then an exec readiness probe through fly\'s enter path', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: fly-init, namespace: kube-system}
spec:
  runtimeClassName: fly
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: setup, image: busybox, command: [sh, -c, 'sleep 2; echo setup-done ${UPTIME}']}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo app-start ${UPTIME}; sleep 3; touch /tmp/fly-ready; exec sleep 3600']
    readinessProbe:
      exec: {command: [cat, /tmp/fly-ready]}
      periodSeconds: 1
`);
  const p = await eventually('Ready', async () => { const x = JSON.parse(await c.k(['get', 'pod', 'fly-init', '-n', 'kube-system', '-o', 'json'])) as KObj; return cond(x, 'Ready')?.status === 'True' && x; }, 60_000);
  assert.is(p.status.initContainerStatuses[0].state.terminated.reason, 'Completed');
  assert.is(p.status.podIP, p.status.hostIP, 'fly: the node\'s network');
  const at = async (container: string, word: string) => Number(new RegExp(`${word} ([0-9.]+)`).exec(await c.k(['logs', 'fly-init', '-n', 'kube-system', '-c', container]))?.[1]);
  const setupDone = await at('setup', 'setup-done');
  const appStart = await at('app', 'app-start');
  assert.ok(setupDone > 0 && appStart >= setupDone, `setup-done ${setupDone}, app-start ${appStart}`);
  await c.k(['delete', 'pod', 'fly-init', '-n', 'kube-system', '--wait=true']);
});

node('kvm: an init container runs to completion in the VM before the app, which reads what it wrote', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: kvm-init}
spec:
  runtimeClassName: kvm
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: setup, image: busybox, command: [sh, -c, 'echo prepared > /work/state'], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: app, image: busybox, command: [sh, -c, 'cat /work/state; exec sleep 3600'], volumeMounts: [{name: work, mountPath: /work}]}
`);
  const p = await eventually('Ready', async () => { const x = await pod(c, 'kvm-init'); return cond(x, 'Ready')?.status === 'True' && x; }, 120_000);
  assert.is(p.status.initContainerStatuses[0].state.terminated.reason, 'Completed');
  assert.is(await eventually('the app\'s line', async () => (await c.k(['logs', 'kvm-init', '-c', 'app'])).trim() || undefined, 30_000), 'prepared');
  await c.k(['delete', 'pod', 'kvm-init', '--grace-period', '0', '--force']);
});

node.run();
