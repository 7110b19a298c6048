import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpuMillis, memoryBytes } from '../common/quantity.js';
import { parsePodManifest, validatePod } from '../runtime-api/pod-spec.js';
import { argvFor, envFor } from '../runtime-rkt/prepare.js';
import { terminationOf } from '../runtime-rkt/status.js';
import { unitNames } from '../stage1/contract.js';
import { podStatusFor } from '../agent/pod-status.js';
import { nanoCores, nodeCpuUsageNs, nodeMemory, resourceMetrics, StatsCollector, type Summary } from '../agent/stats.js';
import type { ContainerRuntime, PodUsage } from '../agent/runtime.js';
import type { Logger } from '../common/log.js';
import type { ImageRecord } from '../runtime-rkt/image/types.js';
import type { PodStatus } from '../runtime-rkt/status.js';

test('quantities: cpu in millicores, memory in bytes, Kubernetes notation', () => {
  assert.is(cpuMillis('200m', 'x'), 200);
  assert.is(cpuMillis('0.5', 'x'), 500);
  assert.is(cpuMillis(2, 'x'), 2000);
  assert.is(cpuMillis('1.0001', 'x'), 1001, 'rounded up');
  assert.is(memoryBytes('64Mi', 'x'), 64 * 2 ** 20);
  assert.is(memoryBytes('1G', 'x'), 1e9);
  assert.is(memoryBytes('129e6', 'x'), 129e6);
  assert.is(memoryBytes('128974848', 'x'), 128974848);
  assert.throws(() => memoryBytes('lots', 'spec.x'), /spec\.x: "lots" is not a valid quantity/);
  assert.throws(() => cpuMillis('1.5.5', 'x'), /not a valid quantity/);
});

const minimal = 'metadata: {name: web}\nspec:\n  containers:\n  - {name: main, image: busybox}\n';

test('manifest: a minimal pod parses; every problem is listed at once', () => {
  const pod = parsePodManifest(minimal);
  assert.is(pod.metadata.name, 'web');
  try {
    parsePodManifest('metadata: {name: Bad_Name}\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - {name: main, image: busybox, extra: 1}\n  - {name: main, image: ""}\n');
    assert.unreachable();
  } catch (err) {
    const msg = (err as Error).message;
    assert.match(msg, /metadata\.name: Invalid value: "Bad_Name"/);
    assert.match(msg, /spec\.restartPolicy: unsupported value "Sometimes"/);
    assert.match(msg, /spec\.containers\[0\]\.extra: unknown field "extra"/);
    assert.match(msg, /spec\.containers\[1\]\.image: Required value/);
    assert.match(msg, /spec\.containers\[1\]\.name: Duplicate value: "main"/);
    assert.is((err as { exitCode: number }).exitCode, 2);
  }
});

test('manifest: lenient mode (API objects) accepts the metadata the API server adds; fields the node does not implement are refused in both modes', () => {
  const apiPod = { metadata: { name: 'p', creationTimestamp: 'x', managedFields: [] }, spec: { containers: [{ name: 'c', image: 'i', terminationMessagePath: '/dev/termination-log' }], schedulerName: 'default', tolerations: [] }, status: { phase: 'Pending' } };
  assert.is(validatePod(apiPod, { strict: false }).metadata.name, 'p');
  assert.throws(() => validatePod(apiPod, { strict: true }), /metadata\.managedFields: unknown field/);
  assert.throws(() => validatePod({ ...apiPod, spec: { containers: [{ name: 'c', image: 'i' }], resourceClaims: [{ name: 'gpu' }] } }, { strict: false }), /spec\.resourceClaims: not supported by this node: dynamic resource allocation/);
});

test('manifest: oversized input, YAML bombs and duplicate keys are refused', () => {
  assert.throws(() => parsePodManifest('x'.repeat(1024 * 1024 + 1)), /larger than 1048576 bytes/);
  assert.throws(() => parsePodManifest('metadata: {name: a}\nmetadata: {name: b}\n'), /not valid YAML/);
  const bomb = ['a: &a [x,x,x,x,x,x,x,x,x,x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`)].join('\n');
  assert.throws(() => parsePodManifest(bomb));
  assert.throws(() => parsePodManifest('metadata:\n  annotations: {big: "' + 'x'.repeat(300 * 1024) + '"}\n  name: a\nspec: {containers: [{name: a, image: b}]}'), /metadata\.annotations: Too long/);
});

const image = (config: ImageRecord['config']): ImageRecord => ({ id: 'sha256:x', names: [], format: 'oci', manifestDigest: '', configDigest: '', layers: [], config, os: 'linux', architecture: 'amd64', size: 0, importedAt: 0 });

test('command/args follow Kubernetes: command replaces Entrypoint, args replaces Cmd', () => {
  const img = image({ Entrypoint: ['/entry'], Cmd: ['default-arg'] });
  assert.equal(argvFor({ name: 'a', image: 'i' }, img), ['/entry', 'default-arg']);
  assert.equal(argvFor({ name: 'a', image: 'i', args: ['x'] }, img), ['/entry', 'x']);
  assert.equal(argvFor({ name: 'a', image: 'i', command: ['/bin/sh'] }, img), ['/bin/sh'], 'a command alone drops Cmd');
  assert.equal(argvFor({ name: 'a', image: 'i', command: ['/bin/sh'], args: ['-c', 'true'] }, img), ['/bin/sh', '-c', 'true']);
  assert.equal(argvFor({ name: 'a', image: 'i' }, image({})), []);
});

test('env: image first, pod on top, PATH defaulted, HOSTNAME set', () => {
  const env = new Map(envFor({ name: 'a', image: 'i', env: [{ name: 'B', value: 'pod' }, { name: 'C' }] }, image({ Env: ['A=img', 'B=img', 'PATH=/x'] }), 'host-1'));
  assert.is(env.get('A'), 'img');
  assert.is(env.get('B'), 'pod');
  assert.is(env.get('C'), '');
  assert.is(env.get('PATH'), '/x');
  assert.is(env.get('HOSTNAME'), 'host-1');
  assert.is(new Map(envFor({ name: 'a', image: 'i' }, image({}), 'h')).get('PATH'), '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
});

test('unit names round-trip and reject what is not ours', () => {
  const uuid = '3f2a1b4c-5d6e-4f70-8192-a3b4c5d6e7f8';
  assert.is(unitNames.app(uuid, 'web-1'), 'stevedore-3f2a1b4c5d6e4f708192a3b4c5d6e7f8-web-1.service');
  assert.equal(unitNames.parse(unitNames.app(uuid, 'web-1')), { uuid, app: 'web-1' });
  assert.equal(unitNames.parse(unitNames.slice(uuid)), { uuid });
  assert.is(unitNames.parse('stevedore-sandbox.target'), undefined);
  assert.is(unitNames.parse('stevedore-agent.service'), undefined);
  assert.is(unitNames.parse('nginx.service'), undefined);
});

test('exit records become Kubernetes terminations (exit codes, signals, OOMKilled)', () => {
  const rec = (code: string, status: string, oomKills = 0) => ({ at: 1.7e18, invocation: 'i', result: '', code, status, oomKills });
  assert.equal(terminationOf(rec('exited', '0')), { exitCode: 0, signal: undefined, reason: 'Completed', finishedAt: 1.7e12, invocation: 'i' });
  assert.is(terminationOf(rec('exited', '3')).reason, 'Error');
  assert.is(terminationOf(rec('killed', 'TERM')).exitCode, 143);
  assert.is(terminationOf(rec('killed', 'KILL')).signal, 9);
  assert.is(terminationOf(rec('exited', '137', 1)).reason, 'OOMKilled');
  assert.is(terminationOf(rec('exited', '0', 1)).reason, 'OOMKilled', 'like the CRI: any OOM kill in the container');
});

const k8sPod = (restartPolicy: string) => ({ metadata: { name: 'p', uid: 'u' }, spec: { restartPolicy, containers: [{ name: 'a', image: 'busybox' }, { name: 'b', image: 'busybox' }] } });
const runtimePod = (apps: Array<Partial<PodStatus['apps'][number]>>): PodStatus => ({
  uuid: 'x', state: 'running', apps: apps.map((a, i) => ({ name: i ? 'b' : 'a', image: { id: 'sha256:1', name: 'busybox' }, unit: 'u', restartCount: 0, state: 'running', ...a })) as PodStatus['apps'],
});

test('pod phase and container states follow Kubernetes rules', () => {
  const opts = { runtimeName: 'rkt', hostIP: '10.0.0.1' };
  assert.is(podStatusFor(k8sPod('Always') as never, opts).phase, 'Pending');
  assert.is(podStatusFor(k8sPod('Always') as never, { ...opts, waiting: { reason: 'ErrImagePull', message: 'm' } }).containerStatuses![0]!.state!.waiting!.reason, 'ErrImagePull');
  const run = podStatusFor(k8sPod('Always') as never, { ...opts, runtimePod: runtimePod([{}, {}]) });
  assert.is(run.phase, 'Running');
  assert.is(run.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
  assert.is(run.containerStatuses![0]!.containerID, 'rkt://x:a');
  const exited = (codes: number[]) => runtimePod(codes.map((c) => ({ state: 'exited', exitCode: c, reason: c ? 'Error' : 'Completed', finishedAt: 1 })));
  assert.is(podStatusFor(k8sPod('Never') as never, { ...opts, runtimePod: exited([0, 0]) }).phase, 'Succeeded');
  assert.is(podStatusFor(k8sPod('Never') as never, { ...opts, runtimePod: exited([0, 3]) }).phase, 'Failed');
  assert.is(podStatusFor(k8sPod('OnFailure') as never, { ...opts, runtimePod: exited([0, 0]) }).phase, 'Succeeded');
  const half = podStatusFor(k8sPod('Never') as never, { ...opts, runtimePod: runtimePod([{}, { state: 'exited', exitCode: 3, reason: 'Error', finishedAt: 1 }]) });
  assert.is(half.phase, 'Running');
  assert.is(half.containerStatuses![1]!.state!.terminated!.exitCode, 3);
  assert.is(half.conditions!.find((c) => c.type === 'Ready')!.status, 'False');
  // A failed init container under Never: the pod is Failed and its app, never started, waits in
  // PodInitializing even if the runtime reports its unstarted unit as exited once the pod stopped.
  const withInit = { metadata: { name: 'p', uid: 'u' }, spec: { restartPolicy: 'Never', initContainers: [{ name: 'a', image: 'busybox' }], containers: [{ name: 'b', image: 'busybox' }] } };
  const initFailed = podStatusFor(withInit as never, { ...opts, runtimePod: { ...runtimePod([{ state: 'exited', exitCode: 3, reason: 'Error', finishedAt: 1, startedAt: 1 }, { state: 'exited', exitCode: 0, reason: 'Completed', finishedAt: 2 }]), state: 'exited' } });
  assert.is(initFailed.phase, 'Failed');
  assert.is(initFailed.initContainerStatuses![0]!.state!.terminated!.exitCode, 3);
  assert.equal(initFailed.containerStatuses![0]!.state, { waiting: { reason: 'PodInitializing' } });
});

test('stats: rates from two samples, /proc/stat and /proc/meminfo, Prometheus text with escaped labels', () => {
  assert.is(nanoCores(undefined, { at: 1000, usageNs: 5e9 }), undefined, 'no rate from one sample');
  assert.is(nanoCores({ at: 1000, usageNs: 1e9 }, { at: 11_000, usageNs: 4e9 }), 300_000_000, '3 s of CPU in 10 s is 0.3 cores');
  assert.is(nanoCores({ at: 1000, usageNs: 9e9 }, { at: 2000, usageNs: 1e9 }), undefined, 'a counter that went back (a new cgroup) is no rate');
  assert.is(nodeCpuUsageNs('cpu  100 20 30 1000 50 5 5 0 0 0\ncpu0 1 2 3\n'), 1.6e9, 'user+nice+system+irq+softirq+steal ticks, not idle or iowait');
  const mem = nodeMemory('MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\nAnonPages: 100 kB\n');
  assert.equal(mem, { usageBytes: 800 * 1024, workingSetBytes: 400 * 1024, availableBytes: 600 * 1024, rssBytes: 100 * 1024 });
  const time = '2026-12-04T10:00:00Z';
  const usage = { time, usageCoreNanoSeconds: 2.5e9, usageNanoCores: 1e8 };
  const memory = { time, usageBytes: 10, workingSetBytes: 8, rssBytes: 4 };
  const summary: Summary = {
    node: { nodeName: 'n', startTime: time, cpu: usage, memory },
    pods: [{ podRef: { name: 'p"x', namespace: 'ns\\a', uid: 'u' }, containers: [{ name: 'c', startTime: time, cpu: usage, memory }], cpu: usage, memory }],
  };
  const text = resourceMetrics(summary);
  assert.match(text, `container_cpu_usage_seconds_total{container="c",namespace="ns\\\\a",pod="p\\"x"} 2.5 ${Date.parse(time)}`);
  assert.match(text, /^# TYPE container_memory_working_set_bytes gauge$/m);
  assert.match(text, /^node_cpu_usage_seconds_total 2\.5 \d+$/m);
  assert.match(text, /^scrape_error 0$/m);
});

test('stats: a VM pod (sandbox usage, containers without numbers) is counted as a whole; its containers carry only their start', async () => {
  let cpuNs = 1e9;
  const vmPod = (): PodUsage => ({
    uuid: 'u1', uid: 'uid1', name: 'vm', namespace: 'default', startedAt: 1000,
    containers: [{ name: 'a', startedAt: 2000, usageUnknown: true, cpuUsageNs: 0, memoryUsageBytes: 0, workingSetBytes: 0, rssBytes: 0 }],
    sandbox: { cpuUsageNs: cpuNs, memoryUsageBytes: 300e6, workingSetBytes: 200e6, rssBytes: 150e6 },
  });
  const runtime = { containerUsage: async () => [vmPod()] } as unknown as ContainerRuntime;
  const quiet = { warn() { /* not expected */ } } as unknown as Logger;
  const stats = new StatsCollector(runtime, 'n', 3_600_000, quiet);
  const first = await stats.summary();
  assert.is(first.pods[0]!.cpu.usageCoreNanoSeconds, 1e9, 'the pod\'s CPU is its sandbox\'s');
  assert.is(first.pods[0]!.memory.workingSetBytes, 200e6);
  assert.equal(first.pods[0]!.containers, [{ name: 'a', startTime: new Date(2000).toISOString().replace(/\.\d+Z$/, 'Z') }], 'no numbers for a container the node cannot see into');
  const text = resourceMetrics(first);
  assert.match(text, /^pod_cpu_usage_seconds_total\{namespace="default",pod="vm"\} 1 \d+$/m);
  assert.match(text, /^pod_memory_working_set_bytes\{namespace="default",pod="vm"\} 200000000 \d+$/m);
  assert.match(text, /^container_start_time_seconds\{container="a",namespace="default",pod="vm"\} 2 \d+$/m);
  assert.not.match(text, /container_cpu_usage_seconds_total\{/);
  stats.stop();
});

test.run();
