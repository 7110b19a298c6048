/**
 * RBAC and identities (issue 22) against a real control plane with the real kubectl: a user from
 * `stevedore kubeconfig --user dev --group devs` bound to `edit` in team-a, kube-apiserver's 403s,
 * `kubectl auth can-i` (and --list, whoami), escalation prevention, ServiceAccount tokens from
 * `kubectl create token`, and ClusterRole aggregation.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { KUBECTL, startTestControlPlane, waitFor, type TestCP } from './helpers/control-plane.js';

const CLI = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);

let t: TestCP;
let devKubeconfig: string;

/** kubectl with another kubeconfig (or a token), never failing the test by itself. */
async function kubectlAs(kubeconfig: string, args: string[], input?: string) {
  const r = await execa(KUBECTL, args, { env: { KUBECONFIG: kubeconfig, HOME: t.dataDir }, reject: false, input, timeout: 60_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const pod = (name: string, ns: string) => JSON.stringify({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns },
  spec: { containers: [{ name: 'main', image: 'localhost/busybox:latest', command: ['sleep', '1000'] }] },
});

test.before(async () => {
  t = await startTestControlPlane();
  await t.k(['create', 'namespace', 'team-a']);
  const r = await execa(process.execPath, [CLI, 'kubeconfig', '--data-dir', t.dataDir, '--user', 'dev', '--group', 'devs'], { reject: false });
  assert.is(r.exitCode, 0, r.stderr);
  devKubeconfig = path.join(t.dataDir, 'dev.kubeconfig');
  await fs.writeFile(devKubeconfig, r.stdout, { mode: 0o600 });
});
test.after(async () => {
  await t?.close();
});

test('stevedore kubeconfig issues a certificate for the user and groups, for the same server and CA', async () => {
  const cfg = await fs.readFile(devKubeconfig, 'utf8');
  assert.match(cfg, `server: ${t.cp.url}`);
  assert.match(cfg, `certificate-authority-data: ${Buffer.from(t.cp.caCertPem).toString('base64')}`);
  const who = await kubectlAs(devKubeconfig, ['auth', 'whoami', '-o', 'json']);
  assert.is(who.exitCode, 0, who.stderr);
  const info = JSON.parse(who.stdout).status.userInfo;
  assert.is(info.username, 'dev');
  assert.equal(info.groups, ['devs', 'system:authenticated']);
  // A user name is required, and a node's name is refused (nodes get theirs from node-credentials).
  const bad = await execa(process.execPath, [CLI, 'kubeconfig', '--data-dir', t.dataDir, '--user', 'system:node:x'], { reject: false });
  assert.is.not(bad.exitCode, 0);
  assert.match(bad.stderr, 'node-credentials');
});

test('an unbound user may discover the API but not read or write anything', async () => {
  const ns = await kubectlAs(devKubeconfig, ['api-resources', '--api-group=rbac.authorization.k8s.io', '-o', 'name']);
  assert.is(ns.exitCode, 0, ns.stderr);
  assert.match(ns.stdout, 'clusterroles.rbac.authorization.k8s.io');
  const list = await kubectlAs(devKubeconfig, ['get', 'pods', '-n', 'team-a']);
  assert.is(list.exitCode, 1);
  assert.match(list.stderr, 'pods is forbidden: User "dev" cannot list resource "pods" in API group "" in the namespace "team-a"');
});

test('dev bound to edit in team-a creates pods there, and kube-apiserver\'s 403 elsewhere', async () => {
  await t.k(['create', 'rolebinding', 'dev-edit', '--clusterrole=edit', '--group=devs', '-n', 'team-a']);
  const created = await kubectlAs(devKubeconfig, ['apply', '-f', '-'], pod('web', 'team-a'));
  assert.is(created.exitCode, 0, created.stderr);
  assert.match((await kubectlAs(devKubeconfig, ['get', 'pods', '-n', 'team-a', '-o', 'name'])).stdout, 'pod/web');
  await t.k(['create', 'secret', 'generic', 'root-creds', '-n', 'kube-system', '--from-literal=k=v']);
  const secrets = await kubectlAs(devKubeconfig, ['get', 'secrets', '-n', 'kube-system']);
  assert.is(secrets.exitCode, 1);
  assert.match(secrets.stderr, 'Error from server (Forbidden): secrets is forbidden: User "dev" cannot list resource "secrets" in API group "" in the namespace "kube-system"');
  // The same through the API: the Status as kube-apiserver returns it, named, cluster-scoped and subresource variants.
  const cert = await devCert();
  const named = await t.api('GET', '/api/v1/namespaces/kube-system/secrets/root-creds', undefined, { cert });
  assert.is(named.status, 403);
  assert.is(named.body.message, 'secrets "root-creds" is forbidden: User "dev" cannot get resource "secrets" in API group "" in the namespace "kube-system"');
  assert.equal(named.body.details, { name: 'root-creds', group: '', kind: 'secrets' });
  assert.is(named.body.reason, 'Forbidden');
  const nodes = await t.api('GET', '/api/v1/nodes', undefined, { cert });
  assert.is(nodes.body.message, 'nodes is forbidden: User "dev" cannot list resource "nodes" in API group "" at the cluster scope');
  const status = await t.api('PATCH', '/api/v1/namespaces/team-a/pods/web/status', { status: { phase: 'Running' } }, { cert, contentType: 'application/merge-patch+json' });
  assert.is(status.status, 403);
  assert.is(status.body.message, 'pods "web" is forbidden: User "dev" cannot patch resource "pods/status" in API group "" in the namespace "team-a"');
  const crb = await t.api('GET', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', undefined, { cert });
  assert.is(crb.body.message, 'clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "dev" cannot list resource "clusterrolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope');
  // Secrets in its own namespace are edit's.
  assert.is((await kubectlAs(devKubeconfig, ['create', 'secret', 'generic', 'mine', '-n', 'team-a', '--from-literal=a=b'])).exitCode, 0);
});

async function devCert() {
  const cfg = await fs.readFile(devKubeconfig, 'utf8');
  const field = (k: string) => Buffer.from(new RegExp(`${k}: (\\S+)`).exec(cfg)![1]!, 'base64').toString('utf8');
  return { cert: field('client-certificate-data'), key: field('client-key-data') };
}

test('kubectl auth can-i answers for the user, with exit code 1 for no', async () => {
  const yes = await kubectlAs(devKubeconfig, ['auth', 'can-i', 'create', 'pods', '-n', 'team-a']);
  assert.is(yes.exitCode, 0, yes.stderr);
  assert.is(yes.stdout.trim(), 'yes');
  const no = await kubectlAs(devKubeconfig, ['auth', 'can-i', 'get', 'secrets', '-n', 'kube-system']);
  assert.is(no.exitCode, 1);
  assert.is(no.stdout.trim(), 'no');
  assert.is((await kubectlAs(devKubeconfig, ['auth', 'can-i', 'create', 'pods/exec', '-n', 'team-a'])).stdout.trim(), 'yes');
  assert.is((await kubectlAs(devKubeconfig, ['auth', 'can-i', 'create', 'rolebindings', '-n', 'team-a'])).stdout.trim(), 'no');
  assert.is((await kubectlAs(devKubeconfig, ['auth', 'can-i', 'get', '/apis'])).stdout.trim(), 'yes');
  // The admin may do anything.
  assert.is((await t.kubectl(['auth', 'can-i', '*', '*', '--all-namespaces'])).stdout.trim(), 'yes');
  // The reason RBAC gives, through the API.
  const ssar = await t.api('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { namespace: 'team-a', verb: 'delete', resource: 'pods' } } }, { cert: await devCert() });
  assert.is(ssar.status, 201, ssar.text);
  assert.is(ssar.body.status.allowed, true);
  assert.is(ssar.body.status.reason, 'RBAC: allowed by RoleBinding "dev-edit/team-a" of ClusterRole "edit" to Group "devs"');
  // SubjectAccessReview: the admin asks about dev.
  const sar = await t.api('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', { apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', spec: { user: 'dev', groups: ['devs'], resourceAttributes: { namespace: 'team-a', verb: 'create', resource: 'deployments', group: 'apps' } } });
  assert.is(sar.body.status.allowed, true, sar.text);
  const devSar = await t.api('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', sar.body, { cert: await devCert() });
  assert.is(devSar.status, 403);
});

test('impersonation: kubectl --as asks as someone else, if the asker may impersonate them', async () => {
  const yes = await t.kubectl(['auth', 'can-i', 'create', 'pods', '-n', 'team-a', '--as', 'dev', '--as-group', 'devs']);
  assert.is(yes.stdout.trim(), 'yes', yes.stderr);
  const no = await t.kubectl(['auth', 'can-i', 'get', 'secrets', '-n', 'kube-system', '--as', 'dev']);
  assert.is(no.exitCode, 1);
  assert.is(no.stdout.trim(), 'no');
  assert.is((await t.kubectl(['auth', 'can-i', 'create', 'pods', '-n', 'team-a', '--as', 'dev'])).stdout.trim(), 'no', 'without the group: no binding');
  const whoami = JSON.parse(await t.k(['auth', 'whoami', '--as', 'dev', '--as-group', 'devs', '-o', 'json']));
  assert.equal(whoami.status.userInfo.groups, ['devs', 'system:authenticated']);
  const escalate = await kubectlAs(devKubeconfig, ['get', 'pods', '-n', 'team-a', '--as', 'admin']);
  assert.is(escalate.exitCode, 1);
  assert.match(escalate.stderr, 'users "admin" is forbidden: User "dev" cannot impersonate resource "users" in API group "" at the cluster scope');
  // edit may impersonate the namespace's ServiceAccounts, which get only their own rights.
  const asSa = await kubectlAs(devKubeconfig, ['get', 'pods', '-n', 'team-a', '--as', 'system:serviceaccount:team-a:default']);
  assert.is(asSa.exitCode, 1);
  assert.match(asSa.stderr, 'pods is forbidden: User "system:serviceaccount:team-a:default" cannot list resource "pods" in API group "" in the namespace "team-a"');
});

test('resourceNames: one object by name, including a list or watch of just it', async () => {
  await t.k(['create', 'namespace', 'team-b']);
  await t.k(['create', 'configmap', 'cfg', '-n', 'team-b', '--from-literal=a=b']);
  await t.k(['create', 'configmap', 'other', '-n', 'team-b', '--from-literal=a=b']);
  await t.k(['create', 'role', 'one-cm', '-n', 'team-b', '--verb=get,list,watch', '--resource=configmaps', '--resource-name=cfg']);
  await t.k(['create', 'rolebinding', 'dev-one-cm', '-n', 'team-b', '--role=one-cm', '--user=dev']);
  assert.is((await kubectlAs(devKubeconfig, ['get', 'cm', 'cfg', '-n', 'team-b'])).exitCode, 0);
  const other = await kubectlAs(devKubeconfig, ['get', 'cm', 'other', '-n', 'team-b']);
  assert.match(other.stderr, 'configmaps "other" is forbidden: User "dev" cannot get resource "configmaps" in API group "" in the namespace "team-b"');
  assert.match((await kubectlAs(devKubeconfig, ['get', 'cm', '-n', 'team-b'])).stderr, 'configmaps is forbidden: User "dev" cannot list resource "configmaps"');
  const cert = await devCert();
  assert.is((await t.api('GET', '/api/v1/namespaces/team-b/configmaps?fieldSelector=metadata.name%3Dcfg', undefined, { cert })).status, 200);
  assert.is((await t.api('GET', '/api/v1/namespaces/team-b/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dcfg', undefined, { cert })).status, 200);
  assert.is((await t.api('GET', '/api/v1/namespaces/team-b/configmaps?fieldSelector=metadata.name%3Dother', undefined, { cert })).status, 403);
  // A ClusterRoleBinding (kubectl's typed client sends it in protobuf) grants in every namespace.
  assert.is((await kubectlAs(devKubeconfig, ['auth', 'can-i', 'list', 'pods', '-n', 'kube-system'])).stdout.trim(), 'no');
  await t.k(['create', 'clusterrolebinding', 'dev-view', '--clusterrole=view', '--user=dev']);
  assert.is((await kubectlAs(devKubeconfig, ['auth', 'can-i', 'list', 'pods', '-n', 'kube-system'])).stdout.trim(), 'yes');
  assert.is((await kubectlAs(devKubeconfig, ['auth', 'can-i', 'list', 'secrets', '-n', 'kube-system'])).stdout.trim(), 'no');
  await t.k(['delete', 'clusterrolebinding', 'dev-view']);
});

test('kubectl auth can-i --list lists the rules in the namespace', async () => {
  const r = await kubectlAs(devKubeconfig, ['auth', 'can-i', '--list', '-n', 'team-a']);
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /Resources\s+Non-Resource URLs\s+Resource Names\s+Verbs/);
  assert.match(r.stdout, /pods\s+\[\]\s+\[\]\s+\[create delete deletecollection patch update get list watch\]|pods\s+\[\]\s+\[\]\s+\[.*create.*\]/);
  assert.match(r.stdout, /selfsubjectaccessreviews\.authorization\.k8s\.io\s+\[\]\s+\[\]\s+\[create\]/);
  assert.match(r.stdout, /\[\/apis\/\*\]\s+\[\]\s+\[get\]/);
  const other = await kubectlAs(devKubeconfig, ['auth', 'can-i', '--list', '-n', 'kube-system']);
  assert.not.match(other.stdout, /^pods\s/m);
});

test('escalation: a Role or binding grants only what the requester holds, unless it may escalate or bind', async () => {
  await t.k(['create', 'rolebinding', 'dev-admin', '--clusterrole=admin', '--user=dev', '-n', 'team-a']);
  // admin in team-a may write Roles there, but not with rights dev lacks (nodes are cluster-scoped; dev has none).
  const role = (name: string, rules: object[]) => JSON.stringify({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name, namespace: 'team-a' }, rules });
  const ok = await kubectlAs(devKubeconfig, ['apply', '-f', '-'], role('pod-reader', [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }]));
  assert.is(ok.exitCode, 0, ok.stderr);
  const esc = await kubectlAs(devKubeconfig, ['apply', '-f', '-'], role('too-much', [{ apiGroups: [''], resources: ['pods', 'nodes'], verbs: ['get', 'escalate'] }]));
  assert.is(esc.exitCode, 1);
  assert.match(esc.stderr, 'roles.rbac.authorization.k8s.io "too-much" is forbidden: user "dev" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get" "escalate"]}\n{APIGroups:[""], Resources:["pods"], Verbs:["escalate"]}');
  // A binding to cluster-admin is refused (dev does not hold its rights and may not bind it)…
  const bind = await kubectlAs(devKubeconfig, ['create', 'rolebinding', 'grab', '--clusterrole=cluster-admin', '--user=dev', '-n', 'team-a']);
  assert.is(bind.exitCode, 1);
  assert.match(bind.stderr, 'rolebindings.rbac.authorization.k8s.io "grab" is forbidden: user "dev" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:');
  // …to view it is fine (dev holds all of view's rights in team-a), and with `bind` on cluster-admin it is too.
  assert.is((await kubectlAs(devKubeconfig, ['create', 'rolebinding', 'friend-view', '--clusterrole=view', '--user=friend', '-n', 'team-a'])).exitCode, 0);
  await t.k(['create', 'clusterrole', 'bind-admin', '--verb=bind', '--resource=clusterroles', '--resource-name=cluster-admin']);
  await t.k(['create', 'rolebinding', 'dev-bind', '--clusterrole=bind-admin', '--user=dev', '-n', 'team-a']);
  const bound = await kubectlAs(devKubeconfig, ['create', 'rolebinding', 'grab', '--clusterrole=cluster-admin', '--user=dev2', '-n', 'team-a']);
  assert.is(bound.exitCode, 0, bound.stderr);
  // roleRef is immutable.
  const moved = await t.api('PATCH', '/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/friend-view', { roleRef: { name: 'edit' } }, { contentType: 'application/merge-patch+json' });
  assert.is(moved.status, 422);
  assert.match(moved.body.message, 'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef');
  await t.k(['delete', 'rolebinding', 'dev-admin', 'dev-bind', 'grab', '-n', 'team-a']);
  // A binding to a role that does not exist names it in the reason of later refusals.
  await t.k(['create', 'rolebinding', 'dangling', '--role=nope', '--user=dev', '-n', 'team-a']);
  const forbiddenWithReason = await t.api('DELETE', '/api/v1/namespaces/team-a', undefined, { cert: await devCert() });
  assert.is(forbiddenWithReason.status, 403);
  assert.is(forbiddenWithReason.body.message, 'namespaces "team-a" is forbidden: User "dev" cannot delete resource "namespaces" in API group "" in the namespace "team-a": RBAC: role.rbac.authorization.k8s.io "nope" not found');
  await t.k(['delete', 'rolebinding', 'dangling', '-n', 'team-a']);
});

test('a ServiceAccount token from kubectl create token authenticates as the ServiceAccount', async () => {
  // The default ServiceAccount appears in every namespace.
  await waitFor('default service account in team-a', async () => (await t.kubectl(['get', 'sa', 'default', '-n', 'team-a'])).exitCode === 0);
  await t.k(['create', 'serviceaccount', 'robot', '-n', 'team-a']);
  const sa = JSON.parse(await t.k(['get', 'sa', 'robot', '-n', 'team-a', '-o', 'json']));
  const token = (await t.k(['create', 'token', 'robot', '-n', 'team-a', '--duration=15m'])).trim();
  const [, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8'));
  assert.is(claims.sub, 'system:serviceaccount:team-a:robot');
  assert.is(claims['kubernetes.io'].serviceaccount.uid, sa.metadata.uid);
  assert.is(claims.exp - claims.iat, 900);
  const who = await t.api('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }, { token });
  assert.is(who.status, 201, who.text);
  assert.is(who.body.status.userInfo.username, 'system:serviceaccount:team-a:robot');
  assert.equal(who.body.status.userInfo.groups, ['system:serviceaccounts', 'system:serviceaccounts:team-a', 'system:authenticated']);
  // Not bound to anything yet: 403 for pods; a RoleBinding to the ServiceAccount (namespace implied) lets it read them.
  const before = await t.api('GET', '/api/v1/namespaces/team-a/pods', undefined, { token });
  assert.is(before.status, 403);
  assert.is(before.body.message, 'pods is forbidden: User "system:serviceaccount:team-a:robot" cannot list resource "pods" in API group "" in the namespace "team-a"');
  await t.k(['create', 'rolebinding', 'robot-view', '--clusterrole=view', '--serviceaccount=team-a:robot', '-n', 'team-a']);
  const after = await t.api('GET', '/api/v1/namespaces/team-a/pods', undefined, { token });
  assert.is(after.status, 200, after.text);
  // kubectl with the token.
  const cfg = (await fs.readFile(t.kubeconfig, 'utf8')).replace(/token: \S+/, `token: ${token}`);
  const robotConfig = path.join(t.dataDir, 'robot.kubeconfig');
  await fs.writeFile(robotConfig, cfg, { mode: 0o600 });
  assert.is((await kubectlAs(robotConfig, ['auth', 'can-i', 'list', 'pods', '-n', 'team-a'])).stdout.trim(), 'yes');
  assert.is((await kubectlAs(robotConfig, ['auth', 'can-i', 'create', 'pods', '-n', 'team-a'])).stdout.trim(), 'no');
  // A token bound to a pod dies with the pod; too short a duration is refused; a forged one is refused.
  const podBound = await t.api('POST', '/api/v1/namespaces/team-a/serviceaccounts/default/token', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'web' }, expirationSeconds: 600 } });
  assert.is(podBound.status, 201, podBound.text);
  const podToken = podBound.body.status.token;
  assert.is((await t.api('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { kind: 'SelfSubjectReview', apiVersion: 'authentication.k8s.io/v1' }, { token: podToken })).body.status.userInfo.extra['authentication.kubernetes.io/pod-name'][0], 'web');
  await t.k(['delete', 'pod', 'web', '-n', 'team-a', '--grace-period=0', '--force']);
  assert.is((await t.api('GET', '/api/v1/namespaces/team-a/pods', undefined, { token: podToken })).status, 401);
  const short = await t.api('POST', '/api/v1/namespaces/team-a/serviceaccounts/robot/token', { spec: { expirationSeconds: 60 } });
  assert.is(short.status, 422);
  assert.match(short.body.message, 'spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes');
  const forged = `${token.split('.').slice(0, 2).join('.')}.${Buffer.alloc(64).toString('base64url')}`;
  assert.is((await t.api('GET', '/api/v1/namespaces/team-a/pods', undefined, { token: forged })).status, 401);
  // Deleting the ServiceAccount ends its tokens.
  await t.k(['delete', 'sa', 'robot', '-n', 'team-a']);
  assert.is((await t.api('GET', '/api/v1/namespaces/team-a/pods', undefined, { token })).status, 401);
  // The issuer's keys, for anyone who verifies the tokens elsewhere.
  const jwks = await t.api('GET', '/openid/v1/jwks');
  assert.is(jwks.body.keys[0].alg, 'ES256');
});

test('aggregation: a ClusterRole labelled aggregate-to-view shows up in view (and edit, admin)', async () => {
  const extra = JSON.stringify({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole',
    metadata: { name: 'widgets-reader', labels: { 'rbac.authorization.k8s.io/aggregate-to-view': 'true' } },
    rules: [{ apiGroups: ['example.com'], resources: ['widgets'], verbs: ['get', 'list', 'watch'] }],
  });
  await t.k(['apply', '-f', '-'], extra);
  for (const role of ['view', 'edit', 'admin']) {
    await waitFor(`widgets in ${role}`, async () => JSON.parse(await t.k(['get', 'clusterrole', role, '-o', 'json'])).rules.some((r: any) => (r.resources ?? []).includes('widgets')));
  }
  await t.k(['delete', 'clusterrole', 'widgets-reader']);
  await waitFor('widgets gone from view', async () => !JSON.parse(await t.k(['get', 'clusterrole', 'view', '-o', 'json'])).rules.some((r: any) => (r.resources ?? []).includes('widgets')));
  // Tables as kubectl prints them.
  const bindings = await t.k(['get', 'rolebindings', '-n', 'team-a', '-o', 'wide']);
  assert.match(bindings, /NAME\s+ROLE\s+AGE\s+USERS\s+GROUPS\s+SERVICEACCOUNTS/);
  assert.match(bindings, /dev-edit\s+ClusterRole\/edit\s+\S+\s+devs/);
  assert.match(await t.k(['get', 'clusterroles']), /NAME\s+CREATED AT\n(.*\n)*cluster-admin\s+\d{4}-\d\d-\d\dT/);
  assert.match(await t.k(['get', 'sa', '-n', 'team-a']), /NAME\s+SECRETS\s+AGE\ndefault\s+0\s+/);
});

test('the default roles are made again at restart; a node works through the Node authorizer and asks only for its pods\' tokens', async () => {
  await t.k(['delete', 'clusterrolebinding', 'system:discovery']);
  await t.restart();
  assert.is((await t.kubectl(['get', 'clusterrolebinding', 'system:discovery'])).exitCode, 0);
  const cert = await t.nodeCert('node-a');
  assert.is((await t.api('GET', '/api/v1/pods', undefined, { cert })).status, 200);
  const sec = await t.api('GET', '/api/v1/namespaces/kube-system/secrets/root-creds', undefined, { cert });
  assert.is(sec.body.message, 'secrets "root-creds" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "kube-system": no relationship found between node \'node-a\' and this object');
  // A node may ask for tokens of its own pods' ServiceAccounts, bound to those pods (projected token volumes), nothing else.
  const bound = (name: string, node: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'team-a' }, spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] } });
  for (const [name, node] of [['on-a', 'node-a'], ['on-b', 'node-b']]) assert.is((await t.api('POST', '/api/v1/namespaces/team-a/pods', bound(name!, node!))).status, 201);
  const ask = (ref?: object) => t.api('POST', '/api/v1/namespaces/team-a/serviceaccounts/default/token', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: ref ? { boundObjectRef: ref } : {} }, { cert });
  const ok = await ask({ kind: 'Pod', apiVersion: 'v1', name: 'on-a' });
  assert.is(ok.status, 201, ok.text);
  assert.is(JSON.parse(Buffer.from(ok.body.status.token.split('.')[1], 'base64url').toString())['kubernetes.io'].pod.name, 'on-a');
  assert.is((await ask()).body.message, 'serviceaccounts "default" is forbidden: node requested token not bound to a pod');
  assert.is((await ask({ kind: 'Pod', apiVersion: 'v1', name: 'on-b' })).body.message, 'serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node');
  const otherSa = await t.api('POST', '/api/v1/namespaces/team-a/serviceaccounts/robot2/token', { spec: { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'on-a' } } }, { cert });
  assert.is(otherSa.status, 403);
  assert.is(otherSa.body.message, 'serviceaccounts "robot2" is forbidden: User "system:node:node-a" cannot create resource "serviceaccounts/token" in API group "" in the namespace "team-a": no relationship found between node \'node-a\' and this object');
});

test.run();
