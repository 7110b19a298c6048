/** Pure logic of volumes: $(VAR) expansion for subPathExpr, descending paths, Memory emptyDir sizes, PV node affinity. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tmpfsSize } from '../runtime-rkt/volumes.js';
import { expandVars } from '../common/var-expansion.js';

const expandWith = (input: string, env: ReadonlyMap<string, string>) => expandVars(input, (name) => env.get(name));
import { localDescendingPathProblem, type Pod } from '../runtime-api/pod-spec.js';
import { nodeAffinityMatches } from '../control-plane/controllers/persistent-volume.js';

test('$(VAR) expands as the kubelet expands it: $$ escapes, unknown names stay, an unclosed reference stays', () => {
  const env = new Map([['POD', 'web-0'], ['EMPTY', '']]);
  assert.is(expandWith('data/$(POD)', env), 'data/web-0');
  assert.is(expandWith('$(POD)-$(POD)', env), 'web-0-web-0');
  assert.is(expandWith('$$(POD)', env), '$(POD)');
  assert.is(expandWith('$(NOPE)/x', env), '$(NOPE)/x');
  assert.is(expandWith('a$(EMPTY)b', env), 'ab');
  assert.is(expandWith('cost $5 $(POD', env), 'cost $5 $(POD');
  assert.is(expandWith('end$', env), 'end$');
});

test('a subPath must descend: no absolute path, no .. element (CVE-2017-1002101)', () => {
  assert.is(localDescendingPathProblem('a/b'), undefined);
  assert.is(localDescendingPathProblem('..data/x'), undefined, 'a name that starts with two dots is a name');
  assert.is(localDescendingPathProblem('/etc'), 'must be a relative path');
  assert.is(localDescendingPathProblem('a/../../etc'), "must not contain '..'");
  assert.is(localDescendingPathProblem('..'), "must not contain '..'");
});

test('a Memory emptyDir is min(sizeLimit, the pod\'s memory limit), whichever are known', () => {
  const pod = (limits: Array<string | undefined>): Pod => ({ metadata: { name: 'p' }, spec: { containers: limits.map((m, i) => ({ name: `c${i}`, image: 'i', ...(m ? { resources: { limits: { memory: m } } } : {}) })) } });
  const vol = (sizeLimit?: string) => ({ name: 'v', emptyDir: { medium: 'Memory' as const, ...(sizeLimit ? { sizeLimit } : {}) } });
  assert.is(tmpfsSize(pod([undefined]), vol(), 0), undefined, 'nothing known: the tmpfs default');
  assert.is(tmpfsSize(pod(['64Mi', '32Mi']), vol(), 0), 96 * 2 ** 20);
  assert.is(tmpfsSize(pod(['64Mi', undefined]), vol('8Mi'), 0), 8 * 2 ** 20, 'one container without a limit: the pod has none');
  assert.is(tmpfsSize(pod(['16Mi']), vol('1Gi'), 0), 16 * 2 ** 20);
});

test('PV node affinity: terms are ORed, expressions ANDed, with In, NotIn, Exists, DoesNotExist', () => {
  const node = { metadata: { name: 'n1', labels: { 'kubernetes.io/hostname': 'n1', zone: 'a' } } };
  const pv = (terms: unknown[]) => ({ spec: { nodeAffinity: { required: { nodeSelectorTerms: terms } } } });
  assert.ok(nodeAffinityMatches({ spec: {} }, node));
  assert.ok(nodeAffinityMatches(pv([{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['n1'] }] }]), node));
  assert.not.ok(nodeAffinityMatches(pv([{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['n2'] }] }]), node));
  assert.ok(nodeAffinityMatches(pv([{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['n2'] }] }, { matchExpressions: [{ key: 'zone', operator: 'Exists' }] }]), node));
  assert.not.ok(nodeAffinityMatches(pv([{ matchExpressions: [{ key: 'zone', operator: 'Exists' }, { key: 'disk', operator: 'Exists' }] }]), node));
  assert.ok(nodeAffinityMatches(pv([{ matchExpressions: [{ key: 'disk', operator: 'DoesNotExist' }, { key: 'zone', operator: 'NotIn', values: ['b'] }] }]), node));
  assert.not.ok(nodeAffinityMatches(pv([{}]), node), 'an empty term matches no node');
  assert.ok(nodeAffinityMatches(pv([{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }]), node));
});

test.run();
