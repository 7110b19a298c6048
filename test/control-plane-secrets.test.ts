/**
 * v1 Secrets in the control plane, driven by the real kubectl: create
 * docker-registry / generic / from YAML (dockerconfigjson and dockercfg),
 * get/list (TYPE and DATA columns), watch, update rules, delete; base64 and
 * per-type validation with kube-apiserver's errors, never echoing the values.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestControlPlane, type TestCP } from './helpers/control-plane.js';
import { spawn } from 'node:child_process';
import { KUBECTL } from './helpers/control-plane.js';

let t: TestCP;
test.before(async () => {
  t = await startTestControlPlane();
});
test.after(async () => {
  await t?.close();
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('kubectl create secret docker-registry: stored as kubernetes.io/dockerconfigjson; get, list, describe, delete', async () => {
  const c = await t.kubectl(['create', 'secret', 'docker-registry', 'regcred', '--docker-server=127.0.0.1:5000', '--docker-username=alice', '--docker-password=s3cret', '--docker-email=a@example.com']);
  assert.is(c.exitCode, 0, c.stderr);
  assert.match(c.stdout, 'secret/regcred created');
  const got = JSON.parse((await t.kubectl(['get', 'secret', 'regcred', '-o', 'json'])).stdout);
  assert.is(got.type, 'kubernetes.io/dockerconfigjson');
  assert.is(got.metadata.namespace, 'default');
  const cfg = JSON.parse(Buffer.from(got.data['.dockerconfigjson'], 'base64').toString());
  assert.is(cfg.auths['127.0.0.1:5000'].username, 'alice');
  assert.is(Buffer.from(cfg.auths['127.0.0.1:5000'].auth, 'base64').toString(), 'alice:s3cret');
  const list = await t.kubectl(['get', 'secrets']);
  assert.is(list.exitCode, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+TYPE\s+DATA\s+AGE/);
  assert.match(list.stdout, /^regcred\s+kubernetes\.io\/dockerconfigjson\s+1\s+\d+s/m);
  const describe = await t.kubectl(['describe', 'secret', 'regcred']);
  assert.is(describe.exitCode, 0, describe.stderr);
  assert.match(describe.stdout, /\.dockerconfigjson:\s+\d+ bytes/);
  assert.not.match(describe.stdout, /s3cret/);
  const sel = await t.kubectl(['get', 'secrets', '--field-selector', 'type=kubernetes.io/dockerconfigjson', '-o', 'name']);
  assert.is(sel.stdout.trim(), 'secret/regcred');
  const dup = await t.kubectl(['create', 'secret', 'docker-registry', 'regcred', '--docker-server=x', '--docker-username=u', '--docker-password=p']);
  assert.is.not(dup.exitCode, 0);
  assert.match(dup.stderr, /secrets "regcred" already exists/);
  const del = await t.kubectl(['delete', 'secret', 'regcred']);
  assert.is(del.exitCode, 0, del.stderr);
  const gone = await t.kubectl(['get', 'secret', 'regcred']);
  assert.is.not(gone.exitCode, 0);
  assert.match(gone.stderr, /secrets "regcred" not found/);
});

test('kubectl apply: dockercfg secret and stringData; apply twice is unchanged; generic secret', async () => {
  const dockercfg = JSON.stringify({ '127.0.0.1:5001': { auth: b64('bob:hunter2') } });
  const yaml = `apiVersion: v1
kind: Secret
metadata: {name: legacy}
type: kubernetes.io/dockercfg
data:
  .dockercfg: ${b64(dockercfg)}
`;
  const a = await t.kubectl(['apply', '-f', '-'], yaml);
  assert.is(a.exitCode, 0, a.stderr);
  assert.match(a.stdout, 'secret/legacy created');
  assert.match((await t.kubectl(['apply', '-f', '-'], yaml)).stdout, 'secret/legacy unchanged');
  const s = await t.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Secret\nmetadata: {name: plain}\nstringData: {token: abc}\n');
  assert.is(s.exitCode, 0, s.stderr);
  const plain = JSON.parse((await t.kubectl(['get', 'secret', 'plain', '-o', 'json'])).stdout);
  assert.is(plain.type, 'Opaque', 'type defaults to Opaque');
  assert.equal(plain.data, { token: b64('abc') }, 'stringData folded into data');
  assert.is(plain.stringData, undefined);
  const g = await t.kubectl(['create', 'secret', 'generic', 'gen', '--from-literal=a=1', '--from-literal=b=2']);
  assert.is(g.exitCode, 0, g.stderr);
  assert.match((await t.kubectl(['get', 'secret', 'gen'])).stdout, /^gen\s+Opaque\s+2\s/m);
  await t.kubectl(['delete', 'secret', 'legacy', 'plain', 'gen']);
});

test('bad input: not base64, missing or invalid docker config, type change, immutable; nothing stored; values never echoed', async () => {
  const notB64 = await t.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {k: "not*base64"}\n');
  assert.is.not(notB64.exitCode, 0);
  assert.match(notB64.stderr, /cannot be handled as a Secret: illegal base64 data at input byte 3/);
  const missing = await t.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ntype: kubernetes.io/dockerconfigjson\ndata: {other: YQ==}\n');
  assert.is.not(missing.exitCode, 0);
  assert.match(missing.stderr, /Secret "bad" is invalid: data\[\.dockerconfigjson\]: Required value/);
  const notJson = await t.kubectl(['apply', '-f', '-'], `apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ntype: kubernetes.io/dockercfg\ndata: {.dockercfg: ${b64('hunter2-not-json')}}\n`);
  assert.is.not(notJson.exitCode, 0);
  assert.match(notJson.stderr, /data\[\.dockercfg\]: Invalid value: "<secret contents redacted>"/);
  assert.not.match(notJson.stderr, /hunter2/);
  const badKey = await t.api('POST', '/api/v1/namespaces/default/secrets', { metadata: { name: 'bad' }, data: { 'a/b': 'YQ==' } });
  assert.is(badKey.status, 422);
  assert.match(badKey.body.message, /data\[a\/b\]: Invalid value: "a\/b": a valid config key/);
  assert.is((await t.kubectl(['get', 'secret', 'bad'])).exitCode, 1, 'nothing stored');

  assert.is((await t.kubectl(['create', 'secret', 'generic', 'fixed', '--from-literal=a=1'])).exitCode, 0);
  const retype = await t.api('PATCH', '/api/v1/namespaces/default/secrets/fixed', { type: 'kubernetes.io/basic-auth', data: { username: 'dQ==' } }, { contentType: 'application/merge-patch+json' });
  assert.is(retype.status, 422);
  assert.match(retype.body.message, /type: Invalid value: "kubernetes.io\/basic-auth": field is immutable/);
  const lock = await t.api('PATCH', '/api/v1/namespaces/default/secrets/fixed', { immutable: true }, { contentType: 'application/merge-patch+json' });
  assert.is(lock.status, 200, lock.text);
  const change = await t.api('PATCH', '/api/v1/namespaces/default/secrets/fixed', { data: { a: 'Mg==' } }, { contentType: 'application/merge-patch+json' });
  assert.is(change.status, 422);
  assert.match(change.body.message, /data: Forbidden: field is immutable when `immutable` is set/);
  const after = JSON.parse((await t.kubectl(['get', 'secret', 'fixed', '-o', 'json'])).stdout);
  assert.equal(after.data, { a: b64('1') });
  await t.kubectl(['delete', 'secret', 'fixed']);
});

test('kubectl get secrets --watch sees creation and deletion', async () => {
  const w = spawn(KUBECTL, ['get', 'secrets', '--watch', '-o', 'name'], { env: { ...process.env, KUBECONFIG: t.kubeconfig }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  w.stdout.on('data', (d) => (out += d));
  try {
    await new Promise((r) => setTimeout(r, 1000));
    assert.is((await t.kubectl(['create', 'secret', 'generic', 'watched', '--from-literal=x=y'])).exitCode, 0);
    const deadline = Date.now() + 10_000;
    while (!out.includes('secret/watched') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, 'secret/watched');
    const watched = await t.api('GET', '/api/v1/namespaces/default/secrets?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dwatched');
    assert.match(watched.text, /"type":"ADDED"/);
    assert.is((await t.kubectl(['delete', 'secret', 'watched'])).exitCode, 0);
  } finally {
    w.kill();
  }
});

test.run();
