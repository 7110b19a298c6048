/**
 * The agent's prober and pod-status logic for init containers, probes,
 * hooks and conditions, against a fake runtime (pure logic), and the probe
 * actions against real servers on loopback (HTTP, TCP, gRPC health). The
 * same behaviour on a real node: test/probes.test.ts.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1Pod } from '@kubernetes/client-node';
import { podStatusFor } from '../agent/pod-status.js';
import { Prober, ProbeCounter, probeTiming } from '../agent/prober.js';
import { resolvePort, runAction } from '../agent/probe-actions.js';
import { deadlineExceeded } from '../agent/pod-sync.js';
import type { ContainerRuntime } from '../agent/runtime.js';
import type { EventRecorder } from '../agent/events.js';
import type { AppStatus, PodStatus } from '../runtime-rkt/status.js';
import { podStatusColumns } from '../control-plane/tables.js';
import { createLogger } from '../common/log.js';
import { hostAccessAsked } from '../agent/stage1-policy.js';

const log = createLogger('test', 'silent');

test('probe thresholds: a result flips after successThreshold successes or failureThreshold failures in a row', () => {
  const c = new ProbeCounter({ successThreshold: 2, failureThreshold: 3 }, false);
  assert.is(c.record(true), false, 'one success of two');
  assert.is(c.failedOut, false);
  assert.is(c.record(false), false);
  assert.is(c.record(true), false);
  assert.is(c.record(true), true, 'two in a row');
  assert.is(c.result, true);
  assert.is(c.record(false), false);
  assert.is(c.record(false), false);
  assert.is(c.record(true), false, 'a success resets the failures');
  for (let i = 0; i < 2; i++) c.record(false);
  assert.is(c.record(false), true, 'three in a row');
  assert.is(c.result, false);
  assert.is(c.failedOut, true);
  const startup = new ProbeCounter({ successThreshold: 1, failureThreshold: 2 }, false);
  startup.record(false);
  assert.is(startup.failedOut, false, 'a startup probe starts false without having failed out');
  assert.equal(probeTiming({}), { initialDelayMs: 0, periodMs: 10_000, timeoutMs: 1000, successThreshold: 1, failureThreshold: 3 }, 'the API server\'s defaults');
});

const app = (name: string, a: Partial<AppStatus>): AppStatus => ({ name, image: { id: 'sha256:1', name: 'busybox' }, unit: 'u', restartCount: 0, state: 'running', ...a });
const rpod = (apps: AppStatus[]): PodStatus => ({ uuid: 'x', state: 'running', podIPs: ['10.1.0.5'], apps });
const initPod = (restartPolicy = 'Always'): V1Pod => ({
  metadata: { name: 'p', uid: 'u', namespace: 'default' },
  spec: {
    restartPolicy,
    initContainers: [{ name: 'one', image: 'busybox' }, { name: 'side', image: 'busybox', restartPolicy: 'Always' }, { name: 'two', image: 'busybox' }],
    containers: [{ name: 'app', image: 'busybox', readinessProbe: { exec: { command: ['true'] } } }],
  },
} as V1Pod);
const opts = { runtimeName: 'rkt', hostIP: '10.0.0.1' };
const cond = (s: { conditions?: Array<{ type: string; status: string; reason?: string; lastTransitionTime?: unknown }> }, type: string) => s.conditions!.find((c) => c.type === type)!;

test('init containers: statuses in order, Pending and Init:N/M while they run, Initialized once done, Failed under Never', () => {
  const pod = initPod();
  const first = podStatusFor(pod, { ...opts, runtimePod: rpod([app('one', {}), app('side', { state: 'waiting', reason: 'PodInitializing' }), app('two', { state: 'waiting', reason: 'PodInitializing' }), app('app', { state: 'waiting', reason: 'PodInitializing' })]) });
  assert.is(first.phase, 'Pending');
  assert.equal(first.initContainerStatuses!.map((s) => s.name), ['one', 'side', 'two']);
  assert.is(first.containerStatuses![0]!.state!.waiting!.reason, 'PodInitializing');
  assert.is(cond(first, 'Initialized').status, 'False');
  assert.is(cond(first, 'Initialized').reason, 'ContainersNotInitialized');
  assert.is(cond(first, 'PodReadyToStartContainers').status, 'True');
  assert.is(podStatusColumns({ metadata: { name: 'p' }, spec: pod.spec, status: first } as never).status, 'Init:0/3');

  const third = podStatusFor(pod, { ...opts, runtimePod: rpod([app('one', { state: 'exited', exitCode: 0, reason: 'Completed', finishedAt: 1 }), app('side', {}), app('two', {}), app('app', { state: 'waiting', reason: 'PodInitializing' })]) });
  assert.is(podStatusColumns({ metadata: { name: 'p' }, spec: pod.spec, status: third } as never).status, 'Init:2/3');
  assert.is(third.initContainerStatuses![0]!.ready, true, 'a completed init container counts as ready');

  const done = podStatusFor(pod, {
    ...opts, probes: () => ({ started: true, ready: false }),
    runtimePod: rpod([app('one', { state: 'exited', exitCode: 0, reason: 'Completed', finishedAt: 1 }), app('side', {}), app('two', { state: 'exited', exitCode: 0, reason: 'Completed', finishedAt: 2 }), app('app', {})]),
  });
  assert.is(done.phase, 'Running');
  assert.is(cond(done, 'Initialized').status, 'True');
  assert.is(cond(done, 'ContainersReady').status, 'False', 'the readiness probe has not passed');
  assert.is(cond(done, 'Ready').status, 'False');
  assert.is(done.containerStatuses![0]!.ready, false);
  assert.is(done.containerStatuses![0]!.started, true);
  assert.is(podStatusColumns({ metadata: { name: 'p' }, spec: pod.spec, status: done } as never).ready, '0/2', 'the sidecar counts, as kubectl counts it');
  const ready = podStatusFor(pod, { ...opts, probes: () => ({ started: true, ready: true }), runtimePod: rpod([app('one', { state: 'exited', exitCode: 0, finishedAt: 1 }), app('side', {}), app('two', { state: 'exited', exitCode: 0, finishedAt: 2 }), app('app', {})]) });
  assert.is(cond(ready, 'Ready').status, 'True');
  assert.equal(podStatusColumns({ metadata: { name: 'p' }, spec: pod.spec, status: ready } as never), { ready: '2/2', status: 'Running', restarts: '0' });

  const failed = podStatusFor(initPod('Never'), { ...opts, runtimePod: { ...rpod([app('one', { state: 'exited', exitCode: 3, reason: 'Error', finishedAt: 1 }), app('side', { state: 'waiting', reason: 'PodInitializing' }), app('two', { state: 'waiting', reason: 'PodInitializing' }), app('app', { state: 'waiting', reason: 'PodInitializing' })]), state: 'exited' } });
  assert.is(failed.phase, 'Failed');
  assert.is(podStatusColumns({ metadata: { name: 'p' }, spec: initPod('Never').spec, status: failed } as never).status, 'Init:Error');
});

test('conditions keep their lastTransitionTime until their status flips', () => {
  const pod = { metadata: { name: 'p', uid: 'u' }, spec: { containers: [{ name: 'app', image: 'busybox' }] } } as V1Pod;
  const before = podStatusFor(pod, { ...opts, runtimePod: rpod([app('app', {})]) });
  const old = '2020-01-01T00:00:00Z' as unknown as Date;
  const previous = { ...before, conditions: before.conditions!.map((c) => ({ ...c, lastTransitionTime: old })) };
  const same = podStatusFor(pod, { ...opts, runtimePod: rpod([app('app', {})]), previous });
  assert.ok(same.conditions!.every((c) => c.lastTransitionTime === old), 'nothing flipped');
  const flipped = podStatusFor(pod, { ...opts, runtimePod: rpod([app('app', {})]), previous, probes: () => ({ started: true, ready: false }) });
  assert.is.not(cond(flipped, 'Ready').lastTransitionTime, old);
  assert.is(cond(flipped, 'Initialized').lastTransitionTime, old);
});

test('a privileged init container asks for host access as a container does (the node policy gates it)', () => {
  assert.equal(hostAccessAsked({ containers: [{}], initContainers: [{}, { securityContext: { privileged: true } }] }), [{ what: 'privileged', field: 'spec.initContainers[1].securityContext.privileged' }]);
});

test('activeDeadlineSeconds counts from the pod\'s startTime', () => {
  const pod = (deadline?: number) => ({ spec: { containers: [], activeDeadlineSeconds: deadline }, status: { startTime: new Date(10_000).toISOString() } }) as unknown as V1Pod;
  assert.is(deadlineExceeded(pod(5), 14_000), false);
  assert.is(deadlineExceeded(pod(5), 15_000), true);
  assert.is(deadlineExceeded(pod(undefined), 1e12), false);
});

/** A runtime that answers exec probes from a script and records kills. */
function fakeRuntime(execResult: () => { exitCode: number; output: string }) {
  const kills: Array<{ container: string; grace: number }> = [];
  const execs: string[][] = [];
  const rt = {
    name: 'fake',
    async runInContainer(_pod: string, _c: string, command: string[]) { execs.push(command); return { ...execResult(), timedOut: false }; },
    async killContainer(_pod: string, container: string, grace: number) { kills.push({ container, grace }); },
  } as unknown as ContainerRuntime;
  return { rt, kills, execs };
}

function fakeEvents() {
  const events: Array<{ type: string; reason: string; message: string }> = [];
  return { events, recorder: { emit: (_p: V1Pod, type: string, reason: string, message: string) => { events.push({ type, reason, message }); } } as unknown as EventRecorder };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('prober: readiness follows an exec probe; a failing liveness probe kills the container with the kubelet\'s events; a new run starts afresh', async () => {
  let ok = false;
  const { rt, kills } = fakeRuntime(() => (ok ? { exitCode: 0, output: '' } : { exitCode: 1, output: 'not yet' }));
  const { events, recorder } = fakeEvents();
  let changes = 0;
  const prober = new Prober(rt, recorder, log, () => { changes++; }, '10.0.0.1');
  const pod = {
    metadata: { name: 'p', uid: 'u', namespace: 'default' },
    spec: { terminationGracePeriodSeconds: 7, containers: [{ name: 'app', image: 'busybox', readinessProbe: { exec: { command: ['cat', '/ready'] }, periodSeconds: 1 } }] },
  } as V1Pod;
  const rp = rpod([app('app', { startedAt: Date.now() })]);
  prober.sync(pod, rp);
  assert.equal(prober.view(pod, 'app'), { started: true, ready: false }, 'not ready before the first success');
  await wait(300);
  assert.is(prober.view(pod, 'app').ready, false);
  assert.ok(events.some((e) => e.reason === 'Unhealthy' && e.message === 'Readiness probe failed: not yet'), JSON.stringify(events));
  ok = true;
  await wait(1200);
  assert.is(prober.view(pod, 'app').ready, true);
  assert.ok(changes > 0, 'the pod sync was told');
  assert.is(kills.length, 0, 'readiness never kills');

  // Liveness: one failure (failureThreshold 1) kills, with the probe's own grace period.
  ok = false;
  const live = { ...pod, metadata: { ...pod.metadata, uid: 'v' }, spec: { ...pod.spec!, containers: [{ name: 'app', image: 'busybox', livenessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 1, terminationGracePeriodSeconds: 3 } }] } } as V1Pod;
  prober.sync(live, rp);
  await wait(400);
  assert.equal(kills, [{ container: 'app', grace: 3 }]);
  assert.ok(events.some((e) => e.type === 'Normal' && e.reason === 'Killing' && e.message === 'Container app failed liveness probe, will be restarted'), JSON.stringify(events));
  await wait(1200);
  assert.is(kills.length, 1, 'a killed run is not probed again');
  // The restarted run gets a fresh worker.
  prober.sync(live, rpod([app('app', { startedAt: Date.now(), restartCount: 1 })]));
  await wait(400);
  assert.is(kills.length, 2);
  prober.close();
});

test('prober: after an agent restart, the run the API status already judged keeps its verdict until the next probe', async () => {
  const { rt } = fakeRuntime(() => ({ exitCode: 0, output: '' }));
  const { recorder } = fakeEvents();
  const prober = new Prober(rt, recorder, log, () => undefined, '10.0.0.1');
  const startedAt = Date.now() - 60_000;
  const spec = { containers: [{ name: 'app', image: 'busybox', readinessProbe: { exec: { command: ['true'] }, periodSeconds: 60, initialDelaySeconds: 120 }, startupProbe: { exec: { command: ['true'] }, initialDelaySeconds: 120 } }] };
  const judged = (restartCount: number) => ({
    metadata: { name: 'p', uid: `r${restartCount}`, namespace: 'default' }, spec,
    status: { containerStatuses: [{ name: 'app', image: 'busybox', imageID: '', ready: true, started: true, restartCount: 0, state: { running: { startedAt: new Date(startedAt).toISOString() } } }] },
  }) as unknown as V1Pod;
  prober.sync(judged(0), rpod([app('app', { startedAt })]));
  assert.equal(prober.view(judged(0), 'app'), { started: true, ready: true }, 'same run: kept');
  prober.sync(judged(1), rpod([app('app', { startedAt, restartCount: 1 })]));
  assert.equal(prober.view(judged(1), 'app'), { started: false, ready: false }, 'another run: judged afresh');
  prober.close();
});

test('prober: liveness and readiness wait for the startup probe; a container that is not running is not probed', async () => {
  let startupOk = false;
  const { rt, execs } = fakeRuntime(() => ({ exitCode: 0, output: '' }));
  const { recorder } = fakeEvents();
  const rt2 = { ...rt, runInContainer: async (p: string, c: string, command: string[]) => { execs.push(command); return { exitCode: command[0] === 'startup' && !startupOk ? 1 : 0, output: '', timedOut: false }; } } as unknown as ContainerRuntime;
  const prober = new Prober(rt2, recorder, log, () => undefined, '10.0.0.1');
  const pod = {
    metadata: { name: 'p', uid: 'w', namespace: 'default' },
    spec: { containers: [{ name: 'app', image: 'busybox', startupProbe: { exec: { command: ['startup'] }, periodSeconds: 1, failureThreshold: 30 }, readinessProbe: { exec: { command: ['ready'] }, periodSeconds: 1 } }] },
  } as V1Pod;
  prober.sync(pod, rpod([app('app', { startedAt: Date.now() })]));
  await wait(1500);
  assert.ok(execs.some((c) => c[0] === 'startup'));
  assert.not.ok(execs.some((c) => c[0] === 'ready'), 'readiness held back');
  assert.equal(prober.view(pod, 'app'), { started: false, ready: false });
  startupOk = true;
  await wait(2200);
  assert.is(prober.view(pod, 'app').started, true);
  assert.is(prober.view(pod, 'app').ready, true);
  const before = execs.length;
  prober.sync(pod, rpod([app('app', { state: 'exited', exitCode: 0 })]));
  await wait(1200);
  assert.is(execs.length, before, 'no probes once it stopped');
  prober.close();
});

test('probe actions: HTTP (scheme, path, headers, port by name, status codes), TCP, with the kubelet\'s messages', async () => {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => { seen.push(req.headers); res.statusCode = req.url === '/healthz' ? 200 : 500; res.end('body'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const target = { runtime: undefined as never, podId: 'x', podIP: '127.0.0.1', container: { name: 'c', ports: [{ name: 'http', containerPort: port }] } };
  assert.equal(await runAction({ httpGet: { path: '/healthz', port: 'http', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } }, target, 1000), { ok: true, message: 'body' });
  assert.is(seen[0]!['x-probe'], 'yes');
  assert.match(String(seen[0]!['user-agent']), /^kube-probe\//);
  assert.equal(await runAction({ httpGet: { path: '/other', port } }, target, 1000), { ok: false, message: 'HTTP probe failed with statuscode: 500' });
  assert.is(resolvePort('nope', target.container), 'port "nope" is not the name of a port of container "c"');
  assert.equal(await runAction({ httpGet: { port: 'nope' } }, target, 1000), { ok: false, message: 'port "nope" is not the name of a port of container "c"' });
  assert.equal(await runAction({ tcpSocket: { port } }, target, 1000), { ok: true, message: '' });
  server.close();
  await new Promise((r) => server.once('close', r));
  const refused = await runAction({ tcpSocket: { port } }, target, 1000);
  assert.equal(refused, { ok: false, message: `dial tcp 127.0.0.1:${port}: connect: connection refused` });
  const httpRefused = await runAction({ httpGet: { port, path: '/' } }, target, 1000);
  assert.is(httpRefused.message, `Get "http://127.0.0.1:${port}/": dial tcp 127.0.0.1:${port}: connect: connection refused`);
  assert.equal(await runAction({ tcpSocket: { port } }, { ...target, podIP: undefined }, 1000), { ok: false, message: 'the pod has no IP (yet) to send the probe to' });
});

test('probe actions: the gRPC health protocol (SERVING, NOT_SERVING, no server)', async () => {
  const grpc = await import('@grpc/grpc-js');
  const statuses: Record<string, number> = { '': 1, db: 2 };
  const server = new grpc.Server();
  server.addService({
    Check: {
      path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
      // HealthCheckRequest: field 1 (service) as a length-delimited string.
      requestDeserialize: (b: Buffer) => ({ service: b.length > 2 ? b.subarray(2).toString() : '' }), requestSerialize: () => Buffer.alloc(0),
      responseSerialize: (n: number) => Buffer.from([0x08, n]), responseDeserialize: (b: Buffer) => b[1] ?? 0,
      originalName: 'check',
    },
  } as never, { Check: (call: { request: { service: string } }, cb: (err: null, res: number) => void) => cb(null, statuses[call.request.service] ?? 3) } as never);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const target = { runtime: undefined as never, podId: 'x', podIP: '127.0.0.1', container: { name: 'c' } };
  assert.equal(await runAction({ grpc: { port } }, target, 2000), { ok: true, message: '' });
  assert.equal(await runAction({ grpc: { port, service: 'db' } }, target, 2000), { ok: false, message: 'service unhealthy (responded with "NOT_SERVING")' });
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  const down = await runAction({ grpc: { port } }, target, 1000);
  assert.is(down.ok, false);
  assert.match(down.message, /timeout: (failed to connect service|health rpc did not complete)/);
});

test.run();
