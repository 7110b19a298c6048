/** Pure logic of RBAC (issue 22): the rule matcher, coverage for escalation checks, aggregation, rule resolution, tokens. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { aggregatedRules, compactString, decide, ruleAllows, ruleCovers, rulesFor, uncoveredRules, type PolicyRule } from '../control-plane/rbac-authorizer.js';
import { reconcileDefault, DEFAULT_CLUSTER_ROLES } from '../control-plane/rbac-bootstrap.js';
import { ServiceAccountTokens } from '../control-plane/serviceaccount-tokens.js';
import type { ObjectReader } from '../control-plane/node-authorizer.js';
import type { KObj } from '../control-plane/store.js';

const req = (verb: string, resource: string, o: { group?: string; subresource?: string; name?: string; namespace?: string } = {}) =>
  ({ verb, resource, group: o.group ?? '', namespace: o.namespace ?? 'default', ...(o.subresource ? { subresource: o.subresource } : {}), ...(o.name ? { name: o.name } : {}) });

test('ruleAllows: verbs, groups, resources, subresources, names and URLs', () => {
  const r: PolicyRule = { verbs: ['get', 'list'], apiGroups: [''], resources: ['pods', 'pods/log'] };
  assert.ok(ruleAllows(req('get', 'pods'), r));
  assert.ok(ruleAllows(req('get', 'pods', { subresource: 'log' }), r));
  assert.not.ok(ruleAllows(req('get', 'pods', { subresource: 'exec' }), r), 'a subresource must be named');
  assert.not.ok(ruleAllows(req('delete', 'pods'), r));
  assert.not.ok(ruleAllows(req('get', 'pods', { group: 'apps' }), r));
  assert.ok(ruleAllows(req('get', 'pods', { subresource: 'status' }), { verbs: ['get'], apiGroups: [''], resources: ['*/status'] }));
  assert.not.ok(ruleAllows(req('get', 'pods'), { verbs: ['get'], apiGroups: [''], resources: ['*/status'] }));
  assert.ok(ruleAllows(req('patch', 'deployments', { group: 'apps', subresource: 'scale' }), { verbs: ['*'], apiGroups: ['*'], resources: ['*'] }));
  const named: PolicyRule = { verbs: ['get'], apiGroups: [''], resources: ['secrets'], resourceNames: ['a'] };
  assert.ok(ruleAllows(req('get', 'secrets', { name: 'a' }), named));
  assert.not.ok(ruleAllows(req('get', 'secrets', { name: 'b' }), named));
  assert.not.ok(ruleAllows(req('list', 'secrets'), { ...named, verbs: ['list'] }), 'a list has no name');
  const urls: PolicyRule = { verbs: ['get'], nonResourceURLs: ['/healthz', '/apis/*'] };
  assert.ok(ruleAllows({ verb: 'get', path: '/healthz' }, urls));
  assert.ok(ruleAllows({ verb: 'get', path: '/apis/apps/v1' }, urls));
  assert.not.ok(ruleAllows({ verb: 'get', path: '/healthz/etcd' }, urls));
  assert.not.ok(ruleAllows({ verb: 'post', path: '/healthz' }, urls));
  assert.not.ok(ruleAllows(req('get', 'pods'), urls), 'URL rules never match resources');
});

test('coverage and the missing rules of an escalation, as kube words them', () => {
  const owned: PolicyRule[] = [{ verbs: ['get', 'list'], apiGroups: [''], resources: ['pods', '*/status'] }, { verbs: ['get'], nonResourceURLs: ['/apis/*'] }];
  assert.ok(ruleCovers(owned[0]!, { verbs: ['get'], apiGroups: [''], resources: ['pods/status'] }));
  assert.ok(ruleCovers(owned[0]!, { verbs: ['get'], apiGroups: [''], resources: ['pods'], resourceNames: ['x'] }));
  assert.not.ok(ruleCovers({ ...owned[0]!, resourceNames: ['x'] }, { verbs: ['get'], apiGroups: [''], resources: ['pods'] }));
  assert.ok(ruleCovers(owned[1]!, { verbs: ['get'], nonResourceURLs: ['/apis/apps'] }));
  const missing = uncoveredRules(owned, [{ verbs: ['get', 'delete', 'watch'], apiGroups: ['', 'apps'], resources: ['pods'] }, { verbs: ['get'], nonResourceURLs: ['/metrics'] }]);
  assert.equal(missing.map(compactString), [
    '{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}',
    '{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "delete" "watch"]}',
    '{NonResourceURLs:["/metrics"], Verbs:["get"]}',
  ]);
  assert.equal(uncoveredRules([{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }], [{ verbs: ['get'], apiGroups: ['x'], resources: ['y'] }]), []);
});

function reader(objs: Record<string, KObj[]>): ObjectReader {
  return {
    get: (resource, ns, name) => (objs[resource] ?? []).find((o) => o.metadata.name === name && (o.metadata.namespace ?? '') === ns),
    list: (resource, ns) => (objs[resource] ?? []).filter((o) => ns === undefined || o.metadata.namespace === ns),
  };
}

test('bindings: users, groups, service accounts (namespace implied), Roles only in their namespace, missing roles as reasons', () => {
  const objects = reader({
    clusterroles: [{ metadata: { name: 'reader' }, rules: [{ verbs: ['get'], apiGroups: [''], resources: ['configmaps'] }] }],
    roles: [{ metadata: { name: 'writer', namespace: 'a' }, rules: [{ verbs: ['create'], apiGroups: [''], resources: ['configmaps'] }] }],
    clusterrolebindings: [{ metadata: { name: 'all-read' }, roleRef: { kind: 'ClusterRole', name: 'reader' }, subjects: [{ kind: 'Group', name: 'readers' }] }],
    rolebindings: [
      { metadata: { name: 'w', namespace: 'a' }, roleRef: { kind: 'Role', name: 'writer' }, subjects: [{ kind: 'ServiceAccount', name: 'bot' }, { kind: 'User', name: 'ann' }] },
      { metadata: { name: 'gone', namespace: 'a' }, roleRef: { kind: 'ClusterRole', name: 'missing' }, subjects: [{ kind: 'User', name: 'ann' }] },
    ],
  });
  const ann = { name: 'ann', groups: ['system:authenticated'] };
  const bot = { name: 'system:serviceaccount:a:bot', groups: ['system:serviceaccounts'] };
  const reader_ = { name: 'rita', groups: ['readers'] };
  assert.equal(decide(ann, req('create', 'configmaps', { namespace: 'a' }), objects), { allowed: true, reason: 'RBAC: allowed by RoleBinding "w/a" of Role "writer" to User "ann"' });
  assert.ok(decide(bot, req('create', 'configmaps', { namespace: 'a' }), objects).allowed);
  assert.not.ok(decide(bot, req('create', 'configmaps', { namespace: 'b' }), objects).allowed);
  assert.equal(decide(reader_, req('get', 'configmaps', { namespace: 'zzz' }), objects), { allowed: true, reason: 'RBAC: allowed by ClusterRoleBinding "all-read" of ClusterRole "reader" to Group "readers"' });
  assert.equal(decide(ann, req('delete', 'configmaps', { namespace: 'a' }), objects), { allowed: false, reason: 'RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found' });
  assert.ok(decide({ name: 'root', groups: ['system:masters'] }, { verb: 'get', path: '/anything' }, objects).allowed);
  const rules = rulesFor(ann, 'a', objects);
  assert.equal(rules.resourceRules, [{ verbs: ['create'], apiGroups: [''], resources: ['configmaps'] }]);
  assert.is(rules.incomplete, true);
  assert.is(rules.evaluationError, 'clusterrole.rbac.authorization.k8s.io "missing" not found');
});

test('aggregation gathers matching roles\' rules once, in name order; reconciliation adds back what is missing', () => {
  const agg = { metadata: { name: 'view' }, aggregationRule: { clusterRoleSelectors: [{ matchLabels: { 'x/agg': 'true' } }] } };
  const all = [
    agg,
    { metadata: { name: 'b', labels: { 'x/agg': 'true' } }, rules: [{ verbs: ['get'], apiGroups: [''], resources: ['b'] }, { verbs: ['get'], apiGroups: [''], resources: ['a'] }] },
    { metadata: { name: 'a', labels: { 'x/agg': 'true' } }, rules: [{ verbs: ['get'], apiGroups: [''], resources: ['a'] }] },
    { metadata: { name: 'c' }, rules: [{ verbs: ['get'], apiGroups: [''], resources: ['c'] }] },
  ];
  assert.equal(aggregatedRules(agg, all).map((r) => r.resources![0]), ['a', 'b']);
  const discovery = DEFAULT_CLUSTER_ROLES.find((r) => r.metadata.name === 'system:discovery')!;
  assert.is(reconcileDefault(structuredClone(discovery), discovery), undefined);
  const trimmed: KObj = { ...structuredClone(discovery), rules: [] };
  assert.equal(reconcileDefault(trimmed, discovery)!.rules, discovery.rules);
  assert.is(reconcileDefault({ ...trimmed, metadata: { ...trimmed.metadata, annotations: { 'rbac.authorization.kubernetes.io/autoupdate': 'false' } } }, discovery), undefined);
});

test('ServiceAccount tokens verify, expire, and die with their ServiceAccount', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-sa-'));
  try {
    const tokens = await ServiceAccountTokens.load(dir);
    assert.is(((await fs.stat(path.join(dir, 'sa.key'))).mode & 0o777), 0o600);
    const sa = { metadata: { name: 'bot', namespace: 'a', uid: 'u1' } };
    const objects = reader({ serviceaccounts: [sa] });
    const now = Date.now();
    const { token } = tokens.issue({ namespace: 'a', serviceAccount: { name: 'bot', uid: 'u1' }, audiences: ['https://kubernetes.default.svc.cluster.local'], expirationSeconds: 600 }, now);
    assert.is(tokens.authenticate(token, objects, now)?.name, 'system:serviceaccount:a:bot');
    assert.is(tokens.authenticate(token, objects, now + 601_000), undefined, 'expired');
    assert.is(tokens.authenticate(token, reader({ serviceaccounts: [{ metadata: { ...sa.metadata, uid: 'u2' } }] }), now), undefined, 'recreated ServiceAccount');
    const other = tokens.issue({ namespace: 'a', serviceAccount: { name: 'bot', uid: 'u1' }, audiences: ['vault'], expirationSeconds: 600 }, now).token;
    assert.is(tokens.authenticate(other, objects, now), undefined, 'another audience');
    const [h, p] = token.split('.');
    const tampered = JSON.parse(Buffer.from(p!, 'base64url').toString());
    tampered.sub = 'system:serviceaccount:a:admin';
    assert.is(tokens.authenticate(`${h}.${Buffer.from(JSON.stringify(tampered)).toString('base64url')}.${token.split('.')[2]}`, objects, now), undefined, 'tampered');
    // The key survives a restart: tokens stay valid.
    assert.is((await ServiceAccountTokens.load(dir)).authenticate(token, objects, now)?.name, 'system:serviceaccount:a:bot');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
