/**
 * Stage1 selection and the node's stage1 policy (agent/stage1-policy.ts):
 * pure logic, so plain unit tests; the agent applying it to real pods is in
 * test/cluster-e2e.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chooseStage1, DEFAULT_UP_POLICY, EMPTY_POLICY, HOST_ACCESS, hostAccessAsked, hostAccessRefusal, parseStage1Policy, STAGE1_OVERRIDE, type PodFacts } from '../agent/stage1-policy.js';
import { podStatusFor } from '../agent/pod-status.js';

const pod = (over: Partial<PodFacts> = {}): PodFacts => ({ namespace: 'default', labels: {}, annotations: {}, ...over });
const policy = parseStage1Policy(`
forbid: [fly]
require:
  - stage1: kvm
    namespaces: [untrusted]
  - stage1: namespaces
    matchLabels: {tier: web}
`, 'test');

// Opens fly to kube-system and to pods labelled trusted=yes (as kube-system pods are in most clusters).
const openFly = parseStage1Policy('allowHostAccess:\n  - {namespaces: [kube-system], allow: [fly]}\n  - {matchLabels: {trusted: "yes"}, allow: [fly]}\n', 'open.yaml');

test('no request: the node default, but never fly where the policy does not open it', () => {
  assert.equal(chooseStage1(pod(), 'namespaces', EMPTY_POLICY), { stage1: 'namespaces', requested: false });
  assert.equal(chooseStage1(pod(), 'fly', EMPTY_POLICY), { stage1: 'namespaces', requested: false, raisedBy: 'fly not opened by allowHostAccess' });
  assert.equal(chooseStage1(pod({ namespace: 'kube-system' }), 'fly', openFly), { stage1: 'fly', requested: false });
});

test('the annotation and runtimeClassName pick a stage1; both must agree', () => {
  assert.equal(chooseStage1(pod({ annotations: { [STAGE1_OVERRIDE]: 'kvm' } }), 'namespaces', EMPTY_POLICY), { stage1: 'kvm', requested: true });
  assert.equal(chooseStage1(pod({ runtimeClassName: 'secure' }), 'namespaces', EMPTY_POLICY, 'kvm'), { stage1: 'kvm', requested: true });
  assert.equal(chooseStage1(pod({ namespace: 'kube-system', runtimeClassName: 'fly', annotations: { [STAGE1_OVERRIDE]: 'fly' } }), 'namespaces', openFly, 'fly'), { stage1: 'fly', requested: true });
  const both = chooseStage1(pod({ runtimeClassName: 'kvm', annotations: { [STAGE1_OVERRIDE]: 'fly' } }), 'namespaces', EMPTY_POLICY, 'kvm');
  assert.ok('rejected' in both && both.rejected.reason === 'InvalidStage1' && /two stage1s: fly .* and kvm/.test(both.rejected.message));
});

test('unknown names and missing RuntimeClasses are refused with the reason', () => {
  const bad = chooseStage1(pod({ annotations: { [STAGE1_OVERRIDE]: 'coreos.com/rkt/stage1-kvm' } }), 'namespaces', EMPTY_POLICY);
  assert.ok('rejected' in bad && bad.rejected.reason === 'InvalidStage1' && bad.rejected.message.includes('choose one of fly, namespaces, kvm'));
  const missing = chooseStage1(pod({ runtimeClassName: 'gvisor' }), 'namespaces', EMPTY_POLICY, null);
  assert.ok('rejected' in missing && missing.rejected.reason === 'RuntimeClassNotFound' && missing.rejected.message.includes('"gvisor" not found'));
  const handler = chooseStage1(pod({ runtimeClassName: 'gvisor' }), 'namespaces', EMPTY_POLICY, 'runsc');
  assert.ok('rejected' in handler && handler.rejected.reason === 'InvalidStage1' && handler.rejected.message.includes('handler "runsc"'));
});

test('policy: a request weaker than the minimum, or forbidden, is rejected', () => {
  const weak = chooseStage1(pod({ namespace: 'untrusted', annotations: { [STAGE1_OVERRIDE]: 'namespaces' } }), 'namespaces', policy);
  assert.ok('rejected' in weak);
  if ('rejected' in weak) {
    assert.is(weak.rejected.reason, 'Stage1NotAllowed');
    assert.is(weak.rejected.message, 'stage1 namespaces is weaker than the kvm this node\'s stage1 policy requires for namespace untrusted');
  }
  const forbidden = chooseStage1(pod({ annotations: { [STAGE1_OVERRIDE]: 'kvm' } }), 'namespaces', parseStage1Policy('forbid: [kvm]', 'p'));
  assert.ok('rejected' in forbidden && forbidden.rejected.message === 'stage1 kvm is forbidden on this node by its stage1 policy');
  assert.equal(chooseStage1(pod({ namespace: 'untrusted', runtimeClassName: 'kvm' }), 'namespaces', policy, 'kvm'), { stage1: 'kvm', requested: true });
});

test('policy: a pod that asks for nothing is raised to what the policy requires', () => {
  assert.equal(chooseStage1(pod({ namespace: 'untrusted' }), 'namespaces', policy), { stage1: 'kvm', requested: false, raisedBy: 'namespace untrusted' });
  assert.equal(chooseStage1(pod(), 'fly', policy), { stage1: 'namespaces', requested: false, raisedBy: 'forbidden stage1s' });
  assert.equal(chooseStage1(pod({ labels: { tier: 'web' } }), 'fly', policy), { stage1: 'namespaces', requested: false, raisedBy: 'labels tier=web' });
  assert.equal(chooseStage1(pod({ labels: { tier: 'db' } }), 'namespaces', policy), { stage1: 'namespaces', requested: false });
});

test('fly fails closed: refused unless the policy opens it to the pod, naming the policy', () => {
  const flyIn = (p: PodFacts, pol = EMPTY_POLICY) => chooseStage1(p, 'namespaces', pol);
  const none = flyIn(pod({ annotations: { [STAGE1_OVERRIDE]: 'fly' } }));
  assert.ok('rejected' in none);
  if ('rejected' in none) {
    assert.is(none.rejected.reason, 'Stage1NotAllowed');
    assert.is(none.rejected.message, 'stage1 fly runs the pod as root on the node: this node has no stage1 policy (--stage1-policy), so fly is open to no pod (an allowHostAccess rule opens it; agent/README.md)');
  }
  const byClass = chooseStage1(pod({ runtimeClassName: 'fly' }), 'namespaces', openFly, 'fly');
  assert.ok('rejected' in byClass && byClass.rejected.reason === 'Stage1NotAllowed'
    && byClass.rejected.message.includes('this node\'s stage1 policy open.yaml does not open fly to pods in namespace default'), JSON.stringify(byClass));
  assert.equal(flyIn(pod({ namespace: 'kube-system', annotations: { [STAGE1_OVERRIDE]: 'fly' } }), openFly), { stage1: 'fly', requested: true });
  assert.equal(flyIn(pod({ labels: { trusted: 'yes' }, annotations: { [STAGE1_OVERRIDE]: 'fly' } }), openFly), { stage1: 'fly', requested: true });
  assert.ok('rejected' in flyIn(pod({ labels: { trusted: 'no' }, annotations: { [STAGE1_OVERRIDE]: 'fly' } }), openFly));
  // A minimum still wins over an opened fly.
  const both = parseStage1Policy('require: [{stage1: namespaces, namespaces: [kube-system]}]\nallowHostAccess: [{namespaces: [kube-system], allow: [fly]}]\n', 'p');
  const weak = flyIn(pod({ namespace: 'kube-system', annotations: { [STAGE1_OVERRIDE]: 'fly' } }), both);
  assert.ok('rejected' in weak && /weaker than the namespaces/.test(weak.rejected.message));
});

test('host access: hostNetwork, hostPID, hostIPC and privileged are refused unless opened, naming the field', () => {
  const spec = { hostNetwork: true, hostPID: false, containers: [{ securityContext: { privileged: false } }, { securityContext: { privileged: true } }, {}] };
  const asked = hostAccessAsked(spec);
  assert.equal(asked, [{ what: 'hostNetwork', field: 'spec.hostNetwork' }, { what: 'privileged', field: 'spec.containers[1].securityContext.privileged' }]);
  assert.equal(hostAccessAsked({ containers: [{}] }), []);
  assert.equal(hostAccessAsked({ hostPID: true, hostIPC: true }).map((a) => a.what), ['hostPID', 'hostIPC']);

  const refused = hostAccessRefusal(pod(), asked, EMPTY_POLICY);
  assert.is(refused?.reason, 'HostAccessNotAllowed');
  assert.is(refused?.message, 'spec.hostNetwork: hostNetwork reaches into the node; spec.containers[1].securityContext.privileged: privileged reaches into the node: '
    + 'this node has no stage1 policy (--stage1-policy), so hostNetwork is open to no pod (an allowHostAccess rule opens it; agent/README.md); '
    + 'this node has no stage1 policy (--stage1-policy), so privileged is open to no pod (an allowHostAccess rule opens it; agent/README.md)');
  const netOnly = parseStage1Policy('allowHostAccess:\n  - namespaces: [infra]\n    allow: [hostNetwork]\n', 'net.yaml');
  assert.is(hostAccessRefusal(pod({ namespace: 'infra' }), asked.slice(0, 1), netOnly), undefined);
  const partly = hostAccessRefusal(pod({ namespace: 'infra' }), asked, netOnly);
  assert.is(partly?.message, 'spec.containers[1].securityContext.privileged: privileged reaches into the node: this node\'s stage1 policy net.yaml does not open privileged to pods in namespace infra (add it to an allowHostAccess rule that matches the pod; agent/README.md)');
  assert.ok(hostAccessRefusal(pod({ namespace: 'other' }), asked.slice(0, 1), netOnly));
});

test('hostPath volumes are host access: the pod\'s own are gated, naming the volume', () => {
  const spec = { containers: [{}], volumes: [{ name: 'data', emptyDir: {} }, { name: 'node-root', hostPath: { path: '/' } }] };
  const asked = hostAccessAsked(spec);
  assert.equal(asked, [{ what: 'hostPath', field: 'spec.volumes[1].hostPath' }]);
  assert.match(hostAccessRefusal(pod(), asked, EMPTY_POLICY)?.message ?? '', /^spec\.volumes\[1\]\.hostPath: hostPath reaches into the node: this node has no stage1 policy/);
  const opened = parseStage1Policy('allowHostAccess:\n  - namespaces: [logging]\n    allow: [hostPath]\n', 'p');
  assert.is(hostAccessRefusal(pod({ namespace: 'logging' }), asked, opened), undefined);
  assert.ok(hostAccessRefusal(pod({ namespace: 'default' }), asked, opened));
  assert.equal(hostAccessAsked({ containers: [{}], volumes: [{ name: 'c', configMap: { name: 'x' } } as { hostPath?: unknown }] }), [], 'sources the agent prepares are not host access');
});

test('the policy `up` writes opens every kind of host access to kube-system, and to nothing else', () => {
  const up = parseStage1Policy(DEFAULT_UP_POLICY, 'up');
  assert.equal(up.allowHostAccess, [{ namespaces: ['kube-system'], allow: [...HOST_ACCESS] }]);
  const all = hostAccessAsked({ hostNetwork: true, hostPID: true, hostIPC: true, containers: [{ securityContext: { privileged: true } }], volumes: [{ hostPath: { path: '/var/log' } }] });
  assert.is(hostAccessRefusal(pod({ namespace: 'kube-system' }), all, up), undefined);
  assert.equal(chooseStage1(pod({ namespace: 'kube-system', runtimeClassName: 'fly' }), 'namespaces', up, 'fly'), { stage1: 'fly', requested: true });
  for (const ns of ['default', 'kube-public', 'kube-node-lease']) {
    assert.is(hostAccessRefusal(pod({ namespace: ns }), all, up)?.reason, 'HostAccessNotAllowed');
    const fly = chooseStage1(pod({ namespace: ns, runtimeClassName: 'fly' }), 'namespaces', up, 'fly');
    assert.ok('rejected' in fly && fly.rejected.reason === 'Stage1NotAllowed');
  }
});

test('policy files: strict, every mistake named', () => {
  assert.equal(parseStage1Policy('', 'empty'), { ...EMPTY_POLICY, source: 'empty' });
  assert.throws(() => parseStage1Policy('allowHostAccess:\n  - {allow: [fly]}\n', 'p'), /allowHostAccess\[0\] must name the pods it opens host access to/);
  assert.throws(() => parseStage1Policy('allowHostAccess:\n  - {namespaces: [a], allow: [root]}\n', 'p'), /allowHostAccess\[0\]\.allow\[0\]: "root" is not a kind of host access \(choose from fly, hostNetwork, hostPID, hostIPC, privileged, hostPath\)/);
  assert.throws(() => parseStage1Policy('allowHostAccess:\n  - {namespaces: [a], allow: []}\n', 'p'), /allowHostAccess\[0\]\.allow must be a non-empty list/);
  assert.throws(() => parseStage1Policy('allowHostAccess:\n  - {namespaces: [a], allows: [fly]}\n', 'p'), /allowHostAccess\[0\]: unknown field\(s\) allows/);
  assert.throws(() => parseStage1Policy('allowHostAccess:\n  - {matchLabels: {}, allow: [fly]}\n', 'p'), /matchLabels must map label keys/);
  assert.throws(() => parseStage1Policy('allowHostAccess: {namespaces: [a]}\n', 'p'), /allowHostAccess must be a list of rules/);
  assert.throws(() => parseStage1Policy('forbid: [fly]\nallowHostAccess:\n  - {namespaces: [a], allow: [fly]}\n', 'p'), /allowHostAccess\[0\]\.allow opens fly, which forbid forbids/);
  assert.throws(() => parseStage1Policy('forbid: [fly]\nrequires: []\n', 'p.yaml'), /stage1 policy p\.yaml: unknown field\(s\) requires/);
  assert.throws(() => parseStage1Policy('forbid: [docker]\n', 'p'), /forbid\[0\]: "docker" is not a stage1/);
  assert.throws(() => parseStage1Policy('require:\n  - {stage1: kvm, namespace: [x]}\n', 'p'), /require\[0\]: unknown field\(s\) namespace/);
  assert.throws(() => parseStage1Policy('require:\n  - {stage1: kvm, namespaces: []}\n', 'p'), /namespaces must be a non-empty list/);
  assert.throws(() => parseStage1Policy('require:\n  - {stage1: kvm, matchLabels: {a: 1}}\n', 'p'), /matchLabels must map label keys to string values/);
  assert.throws(() => parseStage1Policy('forbid: [fly, namespaces, kvm]\n', 'p'), /forbids every stage1/);
  assert.throws(() => parseStage1Policy('forbid: [fly\n', 'p'), /not YAML/);
});

test('a rejected pod is Failed with the reason and message (kubelet admission)', () => {
  const k8sPod = { metadata: { name: 'p', uid: 'u' }, spec: { containers: [{ name: 'a', image: 'busybox' }] } };
  const s = podStatusFor(k8sPod, { runtimeName: 'rkt', hostIP: '127.0.0.1', waiting: { reason: 'Stage1NotAllowed', message: 'stage1 fly is forbidden', rejected: true } });
  assert.is(s.phase, 'Failed');
  assert.is(s.reason, 'Stage1NotAllowed');
  assert.is(s.message, 'stage1 fly is forbidden');
  const w = podStatusFor(k8sPod, { runtimeName: 'rkt', hostIP: '127.0.0.1', waiting: { reason: 'ErrImagePull', message: 'x' } });
  assert.is(w.phase, 'Pending');
});

test.run();
