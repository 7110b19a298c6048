/**
 * Stage1 selection and the node's stage1 policy (agent/stage1-policy.ts):
 * pure logic, so plain unit tests; the agent applying it to real pods is in
 * test/cluster-e2e.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chooseStage1, EMPTY_POLICY, parseStage1Policy, STAGE1_OVERRIDE, type PodFacts } from '../agent/stage1-policy.js';
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

test('no request: the node default', () => {
  assert.equal(chooseStage1(pod(), 'namespaces', EMPTY_POLICY), { stage1: 'namespaces', requested: false });
  assert.equal(chooseStage1(pod(), 'fly', EMPTY_POLICY), { stage1: 'fly', requested: false });
});

test('the annotation and runtimeClassName pick a stage1; both must agree', () => {
  assert.equal(chooseStage1(pod({ annotations: { [STAGE1_OVERRIDE]: 'kvm' } }), 'namespaces', EMPTY_POLICY), { stage1: 'kvm', requested: true });
  assert.equal(chooseStage1(pod({ runtimeClassName: 'secure' }), 'namespaces', EMPTY_POLICY, 'kvm'), { stage1: 'kvm', requested: true });
  assert.equal(chooseStage1(pod({ runtimeClassName: 'fly', annotations: { [STAGE1_OVERRIDE]: 'fly' } }), 'namespaces', EMPTY_POLICY, 'fly'), { stage1: 'fly', requested: true });
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
  const forbidden = chooseStage1(pod({ annotations: { [STAGE1_OVERRIDE]: 'fly' } }), 'namespaces', policy);
  assert.ok('rejected' in forbidden && forbidden.rejected.message === 'stage1 fly is forbidden on this node by its stage1 policy');
  assert.equal(chooseStage1(pod({ namespace: 'untrusted', runtimeClassName: 'kvm' }), 'namespaces', policy, 'kvm'), { stage1: 'kvm', requested: true });
});

test('policy: a pod that asks for nothing is raised to what the policy requires', () => {
  assert.equal(chooseStage1(pod({ namespace: 'untrusted' }), 'namespaces', policy), { stage1: 'kvm', requested: false, raisedBy: 'namespace untrusted' });
  assert.equal(chooseStage1(pod(), 'fly', policy), { stage1: 'namespaces', requested: false, raisedBy: 'forbidden stage1s' });
  assert.equal(chooseStage1(pod({ labels: { tier: 'web' } }), 'fly', policy), { stage1: 'namespaces', requested: false, raisedBy: 'labels tier=web' });
  assert.equal(chooseStage1(pod({ labels: { tier: 'db' } }), 'namespaces', policy), { stage1: 'namespaces', requested: false });
});

test('policy files: strict, every mistake named', () => {
  assert.equal(parseStage1Policy('', 'empty'), EMPTY_POLICY);
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
