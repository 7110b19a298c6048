/**
 * Pure logic of hollow nodes (runtime-hollow/, cli/hollow-nodes.ts) and of the scale bench's
 * reading of /metrics (control-plane/request-metrics.ts, bench/scale.ts): no process, no network.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HollowRuntime, IpPool, createdStatus, imageId, startedStatus, stoppedStatus } from '../runtime-hollow/index.js';
import { UserError, HandlerNotOffered, type Pod } from '../runtime-api/index.js';
import { planHollowNodes, parseStartDelay } from '../cli/hollow-nodes.js';
import { RequestMetrics, requestLabels } from '../control-plane/request-metrics.js';
import { diffHistograms, histogramQuantile, parseDurationBuckets } from '../bench/metrics-text.js';
import { EventRecorder, MAX_QUEUED_EVENTS } from '../agent/events.js';
import { createLogger } from '../common/log.js';

const pod = (over: Partial<Pod['spec']> = {}): Pod => ({
  metadata: { name: 'web-0', namespace: 'default', uid: 'u-1', labels: { app: 'web' }, annotations: { a: 'b' } },
  spec: { containers: [{ name: 'c', image: 'busybox' }], ...over },
});

test('IpPool hands out addresses of the CIDR, never network, gateway or broadcast, and refuses when full', () => {
  const pool = new IpPool('10.200.7.0/30');
  assert.is(pool.capacity, 1);
  assert.is(pool.allocate(), '10.200.7.2');
  assert.throws(() => pool.allocate(), (e: unknown) => e instanceof UserError && /no address left/.test((e as Error).message));
  pool.release('10.200.7.2');
  assert.is(pool.allocate(), '10.200.7.2');
  const big = new IpPool('10.200.3.0/24');
  const got = Array.from({ length: 253 }, () => big.allocate());
  assert.is(new Set(got).size, 253);
  assert.ok(!got.includes('10.200.3.0') && !got.includes('10.200.3.1') && !got.includes('10.200.3.255'));
  assert.ok(got.every((ip) => ip.startsWith('10.200.3.')));
});

test('IpPool refuses what is not an IPv4 CIDR, naming it', () => {
  for (const bad of ['10.200.0.0', '10.200.0.0/31', '300.1.1.0/24', 'fd00::/64']) {
    assert.throws(() => new IpPool(bad), (e: unknown) => e instanceof UserError && (e as Error).message.includes(JSON.stringify(bad)));
  }
});

test('a created pod waits in ContainerCreating; init containers are done; started, every app runs with the pod IP', () => {
  const p = pod({ initContainers: [{ name: 'init', image: 'busybox' }, { name: 'side', image: 'busybox', restartPolicy: 'Always' }] });
  const created = createdStatus(p, 'uuid-1', 'namespaces', 1000);
  assert.is(created.state, 'prepared');
  assert.equal(created.apps.map((a) => [a.name, a.state, a.reason]), [['init', 'exited', 'Completed'], ['side', 'waiting', 'ContainerCreating'], ['c', 'waiting', 'ContainerCreating']]);
  assert.is(created.apps[0]!.exitCode, 0);
  assert.is(created.uid, 'u-1');
  assert.is(created.apps[2]!.image.id, imageId('busybox'));
  const started = startedStatus(created, 2000, '10.200.1.2');
  assert.is(started.state, 'running');
  assert.equal(started.podIPs, ['10.200.1.2']);
  assert.equal(started.apps.map((a) => a.state), ['exited', 'running', 'running']);
  assert.is(started.apps[2]!.startedAt, 2000);
  const stopped = stoppedStatus(started, 3000);
  assert.is(stopped.state, 'exited');
  assert.ok(stopped.apps.every((a) => a.state === 'exited' && a.exitCode === 0));
});

test('a host-network pod (hostNetwork or the fly handler) gets no IP of its own', () => {
  assert.is(createdStatus(pod({ hostNetwork: true }), 'u', 'namespaces', 0).hostNetwork, true);
  assert.is(createdStatus(pod(), 'u', 'fly', 0).hostNetwork, true);
});

test('HollowRuntime: a pod runs after the start delay with an address of the pod CIDR, is stopped and removed, and announces each change', async () => {
  const rt = new HollowRuntime({ podCidr: '10.200.5.0/24', startDelayMs: 20 });
  let changes = 0;
  rt.onChange(() => changes++);
  const id = await rt.runPod(pod(), { handler: 'namespaces' });
  assert.is((await rt.listPods())[0]!.state, 'prepared');
  await new Promise((r) => setTimeout(r, 60));
  const [running] = await rt.listPods();
  assert.is(running!.state, 'running');
  assert.ok(running!.podIPs![0]!.startsWith('10.200.5.'));
  assert.is((await rt.findImage('anything:1'))?.local, true);
  assert.equal((await rt.containerUsage())[0]!.containers.map((c) => c.name), ['c']);
  await rt.stopPod(id);
  assert.is((await rt.listPods())[0]!.state, 'exited');
  await rt.removePod(id);
  assert.equal(await rt.listPods(), []);
  assert.is(changes, 4);
  await rt.close();
});

test('HollowRuntime refuses exec, attach, port-forward and commands with a UserError that says why, and handlers it lacks', async () => {
  const rt = new HollowRuntime({ podCidr: '10.200.5.0/24', startDelayMs: 0 });
  const id = await rt.runPod(pod(), {});
  for (const call of [() => rt.exec(id, 'c', ['true'], { stdin: false, tty: false }), () => rt.checkExec(id, 'c', { tty: false }), () => rt.checkAttach(id, 'c', { tty: false }), () => rt.openPortForward(id), () => rt.runInContainer(id, 'c', ['true'], 1000)]) {
    await call().then(() => assert.unreachable('should refuse'), (e: unknown) => {
      assert.instance(e, UserError);
      assert.match((e as Error).message, /hollow node/);
    });
  }
  await rt.runPod(pod(), { handler: 'gvisor' }).then(() => assert.unreachable('should refuse'), (e: unknown) => assert.instance(e, HandlerNotOffered));
  let empty = true;
  for await (const _ of rt.logs()) empty = false;
  assert.ok(empty);
  await rt.close();
});

test('planHollowNodes names nodes and ports, and refuses bad counts, prefixes and port bases', () => {
  assert.equal(planHollowNodes({ count: 3, namePrefix: 'hollow', nodeApiPortBase: 20000 }), [{ name: 'hollow-1', port: 20001 }, { name: 'hollow-2', port: 20002 }, { name: 'hollow-3', port: 20003 }]);
  assert.throws(() => planHollowNodes({ count: 0, namePrefix: 'hollow', nodeApiPortBase: 20000 }), /--count 0/);
  assert.throws(() => planHollowNodes({ count: 2, namePrefix: 'Hollow_', nodeApiPortBase: 20000 }), /--name-prefix/);
  assert.throws(() => planHollowNodes({ count: 100, namePrefix: 'h', nodeApiPortBase: 65500 }), /--node-api-port-base/);
  assert.is(parseStartDelay('50ms'), 50);
  assert.is(parseStartDelay('0'), 0);
  assert.throws(() => parseStartDelay('soon'), /--start-delay soon/);
});

test('requestLabels reads verb, resource, subresource and scope as kube-apiserver\'s RequestInfo; watches and streams are long-running', () => {
  const l = (m: string, u: string, ct = '') => { const x = requestLabels(m, new URL(u, 'https://h'), ct); return [x.verb, x.group, x.resource, x.subresource, x.scope, x.longRunning]; };
  assert.equal(l('GET', '/api/v1/namespaces/default/pods'), ['LIST', '', 'pods', '', 'namespace', false]);
  assert.equal(l('GET', '/api/v1/pods?watch=true'), ['WATCH', '', 'pods', '', 'cluster', true]);
  assert.equal(l('GET', '/api/v1/watch/namespaces/default/pods'), ['WATCH', '', 'pods', '', 'namespace', true]);
  assert.equal(l('GET', '/api/v1/namespaces/default/pods/p'), ['GET', '', 'pods', '', 'resource', false]);
  assert.equal(l('PATCH', '/api/v1/namespaces/default/pods/p/status'), ['PATCH', '', 'pods', 'status', 'resource', false]);
  assert.equal(l('PATCH', '/apis/apps/v1/namespaces/default/deployments/d', 'application/apply-patch+yaml'), ['APPLY', 'apps', 'deployments', '', 'resource', false]);
  assert.equal(l('DELETE', '/api/v1/namespaces/default/pods'), ['DELETECOLLECTION', '', 'pods', '', 'namespace', false]);
  assert.equal(l('POST', '/api/v1/namespaces/default/pods/p/exec'), ['POST', '', 'pods', 'exec', 'resource', true]);
  assert.equal(l('GET', '/api/v1/namespaces/default/pods/p/log?follow=true'), ['GET', '', 'pods', 'log', 'resource', true]);
  assert.equal(l('GET', '/api/v1/namespaces/kube-system'), ['GET', '', 'namespaces', '', 'resource', false]);
  assert.equal(l('GET', '/openapi/v3'), ['GET', '', '', '', '', false]);
});

test('RequestMetrics renders counters and kube-apiserver\'s buckets; the bench reads quantiles back from the difference of two scrapes', () => {
  const m = new RequestMetrics();
  const pods = requestLabels('GET', new URL('https://h/api/v1/namespaces/default/pods/p'));
  const before = m.render();
  for (let i = 0; i < 98; i++) m.observe(pods, 200, 0.003);
  m.observe(pods, 404, 0.3);
  m.observe(pods, 200, 0.7);
  m.observe(requestLabels('GET', new URL('https://h/api/v1/pods?watch=1')), 200, 30);
  const text = m.render();
  assert.match(text, /^apiserver_request_total\{verb="GET",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="200"\} 99$/m);
  assert.match(text, /apiserver_request_total\{verb="WATCH".*code="200"\} 1/);
  assert.not.match(text, /apiserver_request_duration_seconds_bucket\{verb="WATCH"/);
  assert.match(text, /apiserver_request_duration_seconds_bucket\{verb="GET".*,le="0.005"\} 98/);
  assert.match(text, /apiserver_request_duration_seconds_bucket\{verb="GET".*,le="\+Inf"\} 100/);
  const byVerb = diffHistograms(parseDurationBuckets(text, (l) => l.verb), parseDurationBuckets(before, (l) => l.verb));
  const get = byVerb.get('GET')!;
  assert.ok(histogramQuantile(0.5, get) <= 0.005);
  const p99 = histogramQuantile(0.99, get);
  assert.ok(p99 > 0.2 && p99 <= 0.4, `p99 ${p99}`);
  assert.ok(Number.isNaN(histogramQuantile(0.5, new Map([[Infinity, 0]]))));
});

test('the agent sends events one at a time, in order, in the background; a failed one does not stop the rest; a full queue drops', async () => {
  let inFlight = 0, most = 0;
  const sent: string[] = [];
  const waiters: Array<() => void> = [];
  const sink = async (namespace: string, body: Record<string, unknown>) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise<void>((r) => waiters.push(r));
    inFlight--;
    if (body.reason === 'Bad') throw new Error('refused');
    sent.push(`${namespace}/${body.reason}`);
  };
  const rec = new EventRecorder(sink, 'node-1', createLogger('events-test', 'silent'));
  const p = { metadata: { name: 'web-0', namespace: 'team', uid: 'u' } };
  for (const reason of ['Pulled', 'Bad', 'Created', 'Started']) rec.emit(p, 'Normal', reason, 'm');
  assert.is(rec.pending, 4, 'emit returns at once; nothing is sent synchronously');
  while (rec.pending) {
    await new Promise((r) => setImmediate(r));
    waiters.shift()?.();
  }
  assert.equal(sent, ['team/Pulled', 'team/Created', 'team/Started']);
  assert.is(most, 1, 'never more than one event call in flight');
  // A sink that never answers: the queue stops growing at its bound.
  const stuck = new EventRecorder(() => new Promise(() => {}), 'node-1', createLogger('events-test', 'silent'));
  for (let i = 0; i < MAX_QUEUED_EVENTS + 50; i++) stuck.emit(p, 'Normal', 'Pulled', String(i));
  assert.is(stuck.pending, MAX_QUEUED_EVENTS + 1, 'one in flight, the bound queued, the rest dropped');
});

test.run();
