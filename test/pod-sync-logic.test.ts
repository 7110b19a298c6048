/**
 * The agent's sync logic (agent/pod-sync.ts) against a fake runtime and a
 * fake API: which pods it starts, stops, removes, how it reports failures
 * and backs off. Pure logic: the real runtimes are exercised by the
 * runtime, cluster and conformance tests.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { PodSync, MANAGED_BY } from '../agent/pod-sync.js';
import { defaultConfig, type AgentConfig } from '../agent/config.js';
import { EMPTY_POLICY } from '../agent/stage1-policy.js';
import type { EventRecorder } from '../agent/events.js';
import type { KubeClients } from '../agent/kube.js';
import { createLogger } from '../common/log.js';
import { HandlerNotOffered, ImageNotFound, type ContainerRuntime, type Pod, type PodStatus } from '../runtime-api/index.js';

const NODE = 'node-a';

/** A runtime that keeps pods in memory and records every call. */
class FakeRuntime implements ContainerRuntime {
  readonly name = 'fake';
  readonly version = '1';
  readonly handlers = ['namespaces'];
  readonly nodeLabels = {};
  pods: PodStatus[] = [];
  calls: string[] = [];
  /** What the next runPod throws, if anything. */
  failNext: Error | undefined;
  private n = 0;
  async runPod(pod: Pod, opts: { handler?: string }): Promise<string> {
    this.calls.push(`run ${pod.metadata.name} ${opts.handler}`);
    if (this.failNext) { const err = this.failNext; this.failNext = undefined; throw err; }
    const uuid = `pod-${++this.n}`;
    this.pods.push({ uuid, state: 'running', uid: pod.metadata.uid, name: pod.metadata.name, namespace: pod.metadata.namespace, annotations: pod.metadata.annotations, createdAt: Date.now() + this.n, startedAt: Date.now(), handler: opts.handler, podIPs: ['10.1.0.9'],
      apps: pod.spec.containers.map((c) => ({ name: c.name, image: { id: 'sha256:1', name: c.image }, unit: `${uuid}-${c.name}`, state: 'running' as const, restartCount: 0, startedAt: Date.now() })) });
    return uuid;
  }
  async findImage() { return { id: 'sha256:1', local: true }; }
  async pullImage() { this.calls.push('pull'); }
  async listPods() { return this.pods.map((p) => ({ ...p })); }
  async stopPod(id: string, grace?: number) { this.calls.push(`stop ${id} ${grace}`); const p = this.pods.find((x) => x.uuid === id); if (p) p.state = 'exited'; }
  async removePod(id: string) { this.calls.push(`remove ${id}`); this.pods = this.pods.filter((x) => x.uuid !== id); }
  async *logs() { /* none */ }
  async containerUsage() { return []; }
  exec(): never { throw new Error('not used'); }
  attach(): never { throw new Error('not used'); }
  async checkAttach() {}
  openPortForward(): never { throw new Error('not used'); }
  async checkExec() {}
  async gc() {}
  async runInContainer() { return { exitCode: 0, output: '', timedOut: false }; }
  async killContainer() {}
  onChange() {}
  async close() {}
}

/** The API calls the sync makes for plain pods: status patches, deletion, events. */
function fakeApi() {
  const statuses = new Map<string, { phase?: string; containerStatuses?: Array<{ state?: { waiting?: { reason?: string } } }> }>();
  const deleted: Array<{ name: string; uid?: string }> = [];
  const events: string[] = [];
  const kube = {
    core: {
      patchNamespacedPodStatus: async (req: { name: string; body: { status: never } }) => { statuses.set(req.name, req.body.status); return {}; },
      deleteNamespacedPod: async (req: { name: string; body: { preconditions?: { uid?: string } } }) => { deleted.push({ name: req.name, uid: req.body.preconditions?.uid }); return {}; },
    },
    node: { readRuntimeClass: async () => { throw Object.assign(new Error('not found'), { code: 404 }); } },
  } as unknown as KubeClients;
  const recorder = { emit: (_pod: V1Pod, type: string, reason: string) => events.push(`${type} ${reason}`) } as unknown as EventRecorder;
  return { kube, recorder, statuses, deleted, events };
}

function podObject(name: string, extra: Partial<V1Pod['spec']> = {}, meta: Partial<V1Pod['metadata']> = {}): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', uid: `uid-${name}`, ...meta }, spec: { nodeName: NODE, containers: [{ name: 'app', image: 'busybox:1' }], ...extra }, status: { phase: 'Pending' } };
}

function setup() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-sync-'));
  const cfg: AgentConfig = { ...defaultConfig(), kubeconfig: '/dev/null', nodeName: NODE, nodeIP: '127.0.0.1', dataDir };
  const runtime = new FakeRuntime();
  const api = fakeApi();
  const sync = new PodSync(api.kube, runtime, cfg, EMPTY_POLICY, api.recorder, createLogger('test', 'silent'));
  const pass = async () => { sync.trigger(); await sync.idle(); };
  const done = () => { sync.close(); fs.rmSync(dataDir, { recursive: true, force: true }); };
  return { runtime, api, sync, pass, done };
}

test('a pod bound here is started once, with the node default handler, and reported Running', async () => {
  const { runtime, api, sync, pass, done } = setup();
  try {
    sync.observe(podObject('web'));
    await pass();
    await pass();
    assert.equal(runtime.calls.filter((c) => c.startsWith('run')), ['run web namespaces'], 'started once, however many passes');
    assert.is(runtime.pods[0]!.annotations?.[MANAGED_BY], NODE, 'marked as this agent\'s');
    assert.is(api.statuses.get('web')?.phase, 'Running');
    assert.ok(api.events.includes('Normal Started'));
  } finally { done(); }
});

test('a runtime pod of this node whose pod is not bound here any more is stopped and removed', async () => {
  const { runtime, sync, pass, done } = setup();
  try {
    sync.observe(podObject('old'));
    await pass();
    const uuid = runtime.pods[0]!.uuid;
    sync.relisted([]); // deleted while the watch was down
    await pass();
    assert.ok(runtime.calls.includes(`stop ${uuid} undefined`), runtime.calls.join('; '));
    assert.ok(runtime.calls.includes(`remove ${uuid}`));
    assert.equal(runtime.pods, []);
    assert.equal(sync.desiredPods(), [], 'its record is gone with it');
  } finally { done(); }
});

test('runtime pods another agent made are left alone', async () => {
  const { runtime, pass, done } = setup();
  try {
    runtime.pods.push({ uuid: 'foreign', state: 'running', uid: 'u-x', annotations: { [MANAGED_BY]: 'other-node' }, apps: [] });
    await pass();
    assert.equal(runtime.calls, []);
  } finally { done(); }
});

test('a missing image is ErrImagePull, then ImagePullBackOff, with a back-off before the next try', async () => {
  const { runtime, api, sync, pass, done } = setup();
  try {
    sync.observe(podObject('img'));
    runtime.failNext = new ImageNotFound('busybox:1', 'app', 'pull it');
    await pass();
    assert.is(sync.waitingOf('uid-img')?.reason, 'ErrImagePull');
    assert.is(api.statuses.get('img')?.containerStatuses?.[0]?.state?.waiting?.reason, 'ErrImagePull');
    await pass();
    assert.is(runtime.calls.filter((c) => c.startsWith('run')).length, 1, 'no retry inside the back-off');
  } finally { done(); }
});

test('a handler the runtime does not offer is CreateContainerConfigError, not a crash loop of CreateContainerError', async () => {
  const { runtime, sync, pass, done } = setup();
  try {
    sync.observe(podObject('vm'));
    runtime.failNext = new HandlerNotOffered('kvm', 'fake', runtime.handlers);
    await pass();
    assert.is(sync.waitingOf('uid-vm')?.reason, 'CreateContainerConfigError');
  } finally { done(); }
});

test('an unexpected runtime failure is CreateContainerError naming the agent journal', async () => {
  const { runtime, sync, pass, done } = setup();
  try {
    sync.observe(podObject('bug'));
    runtime.failNext = new TypeError('boom');
    await pass();
    const waiting = sync.waitingOf('uid-bug');
    assert.is(waiting?.reason, 'CreateContainerError');
    assert.match(waiting?.message ?? '', /internal error: boom/);
  } finally { done(); }
});

test('a pod field the node does not implement is refused by name before the runtime is asked', async () => {
  const { runtime, sync, pass, done } = setup();
  try {
    sync.observe(podObject('odd', { readinessGates: [{ conditionType: 'example.com/ready' }] }));
    await pass();
    assert.equal(runtime.calls, []);
    assert.is(sync.waitingOf('uid-odd')?.reason, 'CreateContainerConfigError');
    assert.match(sync.waitingOf('uid-odd')?.message ?? '', /readinessGates/);
  } finally { done(); }
});

test('graceful deletion stops with the pod\'s grace period, removes, then deletes the API object with its UID as precondition', async () => {
  const { runtime, api, sync, pass, done } = setup();
  try {
    sync.observe(podObject('bye'));
    await pass();
    const uuid = runtime.pods[0]!.uuid;
    sync.observe(podObject('bye', {}, { deletionTimestamp: new Date(), deletionGracePeriodSeconds: 7 }));
    await pass();
    assert.ok(runtime.calls.includes(`stop ${uuid} 7`), runtime.calls.join('; '));
    assert.ok(runtime.calls.includes(`remove ${uuid}`));
    assert.equal(api.deleted, [{ name: 'bye', uid: 'uid-bye' }]);
    assert.equal(sync.desiredPods(), []);
  } finally { done(); }
});

test('of two runtime pods for one UID (a replaced start), the older is removed', async () => {
  const { runtime, sync, pass, done } = setup();
  try {
    const annotations = { [MANAGED_BY]: NODE };
    runtime.pods.push({ uuid: 'older', state: 'running', uid: 'uid-dup', annotations, createdAt: 1, apps: [] });
    runtime.pods.push({ uuid: 'newer', state: 'running', uid: 'uid-dup', annotations, createdAt: 2, apps: [] });
    sync.observe(podObject('dup'));
    await pass();
    assert.ok(runtime.calls.includes('remove older'), runtime.calls.join('; '));
    assert.not.ok(runtime.calls.includes('remove newer'));
  } finally { done(); }
});

test('a pod whose image changed in the API is replaced', async () => {
  const { runtime, sync, pass, done } = setup();
  try {
    sync.observe(podObject('upd'));
    await pass();
    const first = runtime.pods[0]!.uuid;
    sync.observe(podObject('upd', { containers: [{ name: 'app', image: 'busybox:2' }] }));
    await pass();
    assert.ok(runtime.calls.includes(`remove ${first}`), runtime.calls.join('; '));
    assert.is(runtime.pods.length, 1);
    assert.is(runtime.pods[0]!.apps[0]!.image.name, 'busybox:2');
  } finally { done(); }
});

test('the watch\'s echo of the agent\'s own status asks for no pass; a spec, metadata or someone else\'s status does', async () => {
  const { api, sync, pass, done } = setup();
  try {
    assert.ok(sync.observe(podObject('echo')), 'a new pod is looked at');
    await pass();
    const sent = api.statuses.get('echo');
    assert.is(sent?.phase, 'Running');
    // As the server hands it back: a new resourceVersion and managedFields, the status through JSON with its keys in the stored object's order.
    const reordered = Object.fromEntries(Object.entries(JSON.parse(JSON.stringify(sent)) as Record<string, unknown>).reverse());
    const echoed = (extraMeta: Partial<V1Pod['metadata']> = {}, spec: Partial<V1Pod['spec']> = {}, status: unknown = reordered): V1Pod =>
      ({ ...podObject('echo', spec, { resourceVersion: '7', managedFields: [{ manager: 'stevedore-agent', operation: 'Update', subresource: 'status' }], ...extraMeta }), status: status as V1Pod['status'] });
    assert.not.ok(sync.observe(echoed()), 'our own status coming back');
    assert.is(sync.desiredPod('default', 'echo')?.metadata?.resourceVersion, '7', 'the record still holds the newest version');
    await pass();
    assert.is(api.statuses.get('echo'), sent, 'and no pass patches it again');
    assert.ok(sync.observe(echoed({ labels: { tier: 'web' } })), 'a label changed');
    assert.ok(sync.observe(echoed({ deletionTimestamp: new Date(), deletionGracePeriodSeconds: 30 })), 'deletion began');
    assert.ok(sync.observe(echoed({}, { containers: [{ name: 'app', image: 'busybox:2' }] })), 'the spec changed');
    const notReady = { ...reordered, conditions: [{ type: 'Ready', status: 'False', reason: 'NodeNotReady' }] };
    assert.ok(sync.observe(echoed({}, {}, notReady)), 'a status someone else wrote (the node lifecycle controller) is answered');
    await pass();
    assert.is.not(api.statuses.get('echo'), sent, 'with this agent\'s status again');
    assert.is(api.statuses.get('echo')?.phase, 'Running');
  } finally { done(); }
});

test.run();
