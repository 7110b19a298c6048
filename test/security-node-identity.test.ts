/**
 * Issue 13, holes 4 and 5: every node has its own identity and may touch only what is its own;
 * the control plane and the node API trust each other only through the cluster CA.
 * Against the real control plane, the real kubectl and openssl, and the agent's real node API.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { execa } from 'execa';
import { startTestControlPlane, registerNode, type TestCP, type ClientCert } from './helpers/control-plane.js';
import { CLI } from './helpers/node.js';
import { startNodeApi } from '../agent/node-api.js';
import { loadAgentConfig } from '../agent/config.js';
import { createLogger } from '../common/log.js';
import type { PodSync } from '../agent/pod-sync.js';
import type { ContainerRuntime } from '../agent/runtime.js';
import { kubeClients } from '../agent/kube.js';

let t: TestCP;
let nodeA: ClientCert;
let nodeB: ClientCert;
let scratch: string;

const pod = (name: string, node: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' },
  spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }], ...spec },
});
const dockerConfig = Buffer.from(JSON.stringify({ auths: { 'registry.example': { auth: Buffer.from('u:p').toString('base64') } } })).toString('base64');
const secret = (name: string) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig } });
const merge = { contentType: 'application/merge-patch+json' };

/** A self-signed certificate (no cluster CA behind it) with the given subject and SANs. */
async function selfSigned(name: string, subj: string, san: string, usage: 'serverAuth' | 'clientAuth'): Promise<{ cert: string; key: string }> {
  const key = path.join(scratch, `${name}.key`);
  const cert = path.join(scratch, `${name}.crt`);
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', subj, '-addext', `subjectAltName=${san}`, '-addext', `extendedKeyUsage=${usage}`]);
  return { cert: await fs.readFile(cert, 'utf8'), key: await fs.readFile(key, 'utf8') };
}

test.before(async () => {
  t = await startTestControlPlane();
  scratch = await fs.mkdtemp('/var/tmp/stevedore-identity-test-');
  await registerNode(t, 'node-a');
  await registerNode(t, 'node-b');
  nodeA = await t.nodeCert('node-a');
  nodeB = await t.nodeCert('node-b');
});
test.after(async () => {
  await t?.close();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

test('node A cannot change node B, its Lease or its status; it can change its own', async () => {
  const other = await t.api('PATCH', '/api/v1/nodes/node-b', { metadata: { labels: { pwned: 'yes' } } }, { ...merge, cert: nodeA });
  assert.is(other.status, 403, other.text);
  assert.is(other.body.reason, 'Forbidden');
  assert.is(other.body.message, 'nodes "node-b" is forbidden: User "system:node:node-a" cannot patch resource "nodes" in API group "" at the cluster scope');
  const status = await t.api('PATCH', '/api/v1/nodes/node-b/status', { status: { conditions: [{ type: 'Ready', status: 'False' }] } }, { ...merge, cert: nodeA });
  assert.is(status.status, 403);
  assert.is(status.body.message, 'nodes "node-b" is forbidden: User "system:node:node-a" cannot patch resource "nodes/status" in API group "" at the cluster scope');
  const del = await t.api('DELETE', '/api/v1/nodes/node-b', undefined, { cert: nodeA });
  assert.is(del.status, 403);
  const lease = await t.api('PATCH', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-b', { spec: { holderIdentity: 'node-a' } }, { ...merge, cert: nodeA });
  assert.is(lease.status, 403);
  assert.is(lease.body.message, 'leases.coordination.k8s.io "node-b" is forbidden: User "system:node:node-a" cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease"');
  const impersonate = await t.api('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-c' } }, { cert: nodeA });
  assert.is(impersonate.status, 403);
  assert.match(impersonate.body.message, 'node "node-a" is not allowed to modify node "node-c"');
  const fakeLease = await t.api('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', { metadata: { name: 'node-c' }, spec: {} }, { cert: nodeA });
  assert.is(fakeLease.status, 403);
  // nothing of node B changed
  const b = await t.api('GET', '/api/v1/nodes/node-b');
  assert.is(b.body.metadata.labels.pwned, undefined);
  assert.is(b.body.status.conditions.find((c: any) => c.type === 'Ready').status, 'True');
  // its own: yes
  const own = await t.api('PATCH', '/api/v1/nodes/node-a', { metadata: { labels: { disk: 'ssd' } } }, { ...merge, cert: nodeA });
  assert.is(own.status, 200, own.text);
  const ownStatus = await t.api('PATCH', '/api/v1/nodes/node-a/status', { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } }, { contentType: 'application/strategic-merge-patch+json', cert: nodeA });
  assert.is(ownStatus.status, 200, ownStatus.text);
  const ownLease = await t.api('PATCH', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a', { spec: { renewTime: new Date().toISOString().replace('Z', '000Z') } }, { ...merge, cert: nodeA });
  assert.is(ownLease.status, 200, ownLease.text);
  // and the reads an agent needs
  for (const p of ['/api/v1/nodes', '/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a', '/api/v1/namespaces', '/apis/node.k8s.io/v1/runtimeclasses/namespaces']) {
    assert.is((await t.api('GET', p, undefined, { cert: nodeA })).status, 200, p);
  }
});

test('node A reads a Secret only when a pod bound to it references it', async () => {
  for (const s of ['a-pull', 'a-env', 'unrelated', 'b-pull']) assert.is((await t.api('POST', '/api/v1/namespaces/default/secrets', secret(s))).status, 201);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('pa', 'node-a', { imagePullSecrets: [{ name: 'a-pull' }] }))).status, 201);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('pa-env', 'node-a', { containers: [{ name: 'main', image: 'busybox', env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'a-env', key: '.dockerconfigjson' } } }] }] }))).status, 201);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('pb', 'node-b', { imagePullSecrets: [{ name: 'b-pull' }] }))).status, 201);
  const mine = await t.api('GET', '/api/v1/namespaces/default/secrets/a-pull', undefined, { cert: nodeA });
  assert.is(mine.status, 200, mine.text);
  assert.is(mine.body.data['.dockerconfigjson'], dockerConfig);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/secrets/a-env', undefined, { cert: nodeA })).status, 200);
  const unrelated = await t.api('GET', '/api/v1/namespaces/default/secrets/unrelated', undefined, { cert: nodeA });
  assert.is(unrelated.status, 403);
  assert.is(unrelated.body.message, 'secrets "unrelated" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node \'node-a\' and this object');
  assert.not.match(unrelated.text, dockerConfig);
  const othersPods = await t.api('GET', '/api/v1/namespaces/default/secrets/b-pull', undefined, { cert: nodeA });
  assert.is(othersPods.status, 403);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/secrets/a-pull', undefined, { cert: nodeB })).status, 403);
  const list = await t.api('GET', '/api/v1/secrets', undefined, { cert: nodeA });
  assert.is(list.status, 403);
  assert.is(list.body.message, 'secrets is forbidden: User "system:node:node-a" cannot list resource "secrets" in API group "" at the cluster scope');
  assert.is((await t.api('GET', '/api/v1/namespaces/default/secrets?watch=true', undefined, { cert: nodeA })).status, 403);
  // the real kubectl with the node's kubeconfig says the same
  const out = path.join(scratch, 'kubectl-node-a');
  const creds = await t.nodeCredentials('node-a');
  const { writeNodeCredentials, nodeCredentialFiles } = await import('../control-plane/pki.js');
  await writeNodeCredentials(creds, t.cp.url, nodeCredentialFiles(out), 'node-a');
  const k = await execa('kubectl', ['get', 'secret', 'unrelated'], { env: { KUBECONFIG: path.join(out, 'kubeconfig'), HOME: scratch }, reject: false });
  assert.is.not(k.exitCode, 0);
  assert.match(k.stderr, 'secrets "unrelated" is forbidden: User "system:node:node-a" cannot get resource "secrets"');
  const ok = await execa('kubectl', ['get', 'secret', 'a-pull', '-o', 'name'], { env: { KUBECONFIG: path.join(out, 'kubeconfig'), HOME: scratch }, reject: false });
  assert.is(ok.exitCode, 0, ok.stderr);
  assert.is(ok.stdout.trim(), 'secret/a-pull');
});

test('node A changes the status of its own pods only, deletes only its own, and cannot create, bind or read logs', async () => {
  const own = await t.api('PATCH', '/api/v1/namespaces/default/pods/pa/status', { status: { phase: 'Running' } }, { ...merge, cert: nodeA });
  assert.is(own.status, 200, own.text);
  assert.is(own.body.status.phase, 'Running');
  const other = await t.api('PATCH', '/api/v1/namespaces/default/pods/pb/status', { status: { phase: 'Failed' } }, { ...merge, cert: nodeA });
  assert.is(other.status, 403);
  assert.is(other.body.message, 'pods "pb" is forbidden: User "system:node:node-a" cannot patch resource "pods/status" in API group "" in the namespace "default": no relationship found between node \'node-a\' and this object');
  assert.is((await t.api('GET', '/api/v1/namespaces/default/pods/pb')).body.status.phase, 'Pending');
  const spec = await t.api('PATCH', '/api/v1/namespaces/default/pods/pa', { metadata: { labels: { x: 'y' } } }, { ...merge, cert: nodeA });
  assert.is(spec.status, 403, 'a node writes pod status, never the pod');
  assert.is((await t.api('DELETE', '/api/v1/namespaces/default/pods/pb', { gracePeriodSeconds: 0 }, { cert: nodeA })).status, 403);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/pods/pb')).status, 200, 'pb is still there');
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('sneaky', 'node-a'), { cert: nodeA })).status, 403);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods/pb/binding', { target: { name: 'node-a' } }, { cert: nodeA })).status, 403);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/pods/pb/log', undefined, { cert: nodeA })).status, 403);
  assert.is((await t.api('POST', '/api/v1/namespaces', { metadata: { name: 'mine' } }, { cert: nodeA })).status, 403);
  // events: about itself and its pods, not about another node's
  const ev = (name: string, about: Record<string, string>) => ({ metadata: { name }, involvedObject: about, reason: 'Test', message: 'm', type: 'Normal' });
  assert.is((await t.api('POST', '/api/v1/namespaces/default/events', ev('e1', { kind: 'Pod', namespace: 'default', name: 'pa' }), { cert: nodeA })).status, 201);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/events', ev('e2', { kind: 'Node', name: 'node-a' }), { cert: nodeA })).status, 201);
  const forged = await t.api('POST', '/api/v1/namespaces/default/events', ev('e3', { kind: 'Node', name: 'node-b' }), { cert: nodeA });
  assert.is(forged.status, 403);
  assert.match(forged.body.message, 'can only create events about itself and pods bound to it');
  assert.is((await t.api('POST', '/api/v1/namespaces/default/events', ev('e4', { kind: 'Pod', namespace: 'default', name: 'pb' }), { cert: nodeA })).status, 403);
  // the agent's cleanup: grace 0 delete of its own pod
  const gone = await t.api('DELETE', '/api/v1/namespaces/default/pods/pa', { gracePeriodSeconds: 0 }, { cert: nodeA });
  assert.is(gone.status, 200, gone.text);
});

test('the shared node token is gone, and identities the CA does not vouch for get nothing', async () => {
  // A data dir from before: its node.token is removed at start and its value opens nothing.
  await fs.writeFile(path.join(t.dataDir, 'node.token'), 'old-shared-node-token\n', { mode: 0o600 });
  await fs.writeFile(path.join(t.dataDir, 'kubelet-client.token'), 'old-kubelet-client-token\n', { mode: 0o600 });
  await t.restart();
  for (const f of ['node.token', 'kubelet-client.token']) assert.is(await fs.access(path.join(t.dataDir, f)).then(() => true, () => false), false, `${f} removed`);
  for (const token of ['old-shared-node-token', 'old-kubelet-client-token']) {
    const r = await t.api('GET', '/api/v1/nodes', undefined, { token });
    assert.is(r.status, 401);
    assert.is(r.body.reason, 'Unauthorized');
  }
  // a self-signed certificate claiming to be node-a: not verified, so not anyone
  const forged = await selfSigned('forged-node-a', '/CN=system:node:node-a/O=system:nodes', 'DNS:node-a', 'clientAuth');
  assert.is((await t.api('GET', '/api/v1/nodes', undefined, { cert: forged })).status, 401);
  // the control plane's own kubelet-client certificate is valid but has no rights at the API
  const pki = path.join(t.dataDir, 'pki');
  const kubeletClient = { cert: await fs.readFile(path.join(pki, 'apiserver-kubelet-client.crt'), 'utf8'), key: await fs.readFile(path.join(pki, 'apiserver-kubelet-client.key'), 'utf8') };
  const r = await t.api('GET', '/api/v1/namespaces/default/pods', undefined, { cert: kubeletClient });
  assert.is(r.status, 403);
  assert.is(r.body.message, 'pods is forbidden: User "kube-apiserver-kubelet-client" cannot list resource "pods" in API group "" in the namespace "default"');
  // a node's serving certificate (serverAuth only) is not a client certificate
  const creds = await t.nodeCredentials('node-a');
  assert.is((await t.api('GET', '/api/v1/nodes', undefined, { cert: { cert: creds.servingCertPem, key: creds.servingKeyPem } })).status, 401);
  // the admin token keeps working, for kubectl
  assert.is((await t.kubectl(['get', 'nodes', 'node-a', '-o', 'name'])).stdout.trim(), 'node/node-a');
});

/** A TLS server posing as a node API: counts connections and every byte received after a handshake. */
async function impostor(cert: { cert: string; key: string }) {
  const seen = { connections: 0, handshakes: 0, bytes: Buffer.alloc(0) };
  const server = tls.createServer({ cert: cert.cert, key: cert.key }, (socket) => {
    seen.handshakes++;
    socket.on('data', (d: Buffer) => { seen.bytes = Buffer.concat([seen.bytes, d]); socket.end('HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsecret\n'); });
    socket.on('error', () => {});
  });
  server.on('connection', () => { seen.connections++; });
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { seen, port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test('the control plane sends no logs or exec request to a node address whose certificate does not match', async () => {
  const creds = await t.nodeCredentials('node-imp');
  const wrongIp = await t.nodeCredentials('node-imp', ['127.0.0.2']);
  const otherNode = await t.nodeCredentials('node-b');
  const cases: Array<[string, { cert: string; key: string }, RegExp]> = [
    ['self-signed certificate', await selfSigned('imp-self', '/CN=system:node:node-imp/O=system:nodes', 'IP:127.0.0.1', 'serverAuth'), /self[- ]signed certificate/],
    ['CA certificate for another address', { cert: wrongIp.servingCertPem, key: wrongIp.servingKeyPem }, /not valid for 127\.0\.0\.1/],
    ['CA certificate of another node at this address', { cert: otherNode.servingCertPem, key: otherNode.servingKeyPem }, /issued to "system:node:node-b", not to node node-imp/],
    ['CA client certificate of this node', { cert: creds.clientCertPem, key: creds.clientKeyPem }, /unsuitable certificate purpose|not for server authentication/],
  ];
  let first = true;
  for (const [what, cert, why] of cases) {
    const imp = await impostor(cert);
    try {
      if (first) {
        await registerNode(t, 'node-imp', { kubeletPort: imp.port });
        assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('imp-pod', 'node-imp'))).status, 201);
        first = false;
      } else {
        const p = await t.api('PATCH', '/api/v1/nodes/node-imp/status', { status: { daemonEndpoints: { kubeletEndpoint: { Port: imp.port } } } }, { ...merge, cert: await t.nodeCert('node-imp') });
        assert.is(p.status, 200, p.text);
      }
      const l = await t.kubectl(['logs', 'imp-pod', '-c', 'main']);
      assert.is.not(l.exitCode, 0, what);
      assert.match(l.stderr, 'failed to verify the serving certificate of node node-imp', what);
      assert.match(l.stderr, why, `${what}: ${l.stderr}`);
      assert.ok(imp.seen.connections >= 1, `${what}: the control plane did try this address`);
      assert.is(imp.seen.bytes.length, 0, `${what}: the impostor got ${JSON.stringify(imp.seen.bytes.toString('latin1'))}`);
      // exec dials the node on its own path (control-plane/node-upgrade.ts): the same verification.
      const dialled = imp.seen.connections;
      const e = await t.kubectl(['exec', 'imp-pod', '-c', 'main', '--', 'true']);
      assert.is.not(e.exitCode, 0, what);
      assert.match(e.stderr, 'failed to verify the serving certificate of node node-imp', `${what}: ${e.stderr}`);
      assert.match(e.stderr, why, `${what}: ${e.stderr}`);
      assert.ok(imp.seen.connections > dialled, `${what}: the control plane did try this address for exec`);
      assert.is(imp.seen.bytes.length, 0, `${what}: the impostor got ${JSON.stringify(imp.seen.bytes.toString('latin1'))}`);
      assert.is((await t.api('GET', '/healthz')).status, 200, 'the control plane keeps answering');
    } finally {
      await imp.close();
    }
  }
});

test('the node API serves only the control plane\'s client certificate', async () => {
  const creds = await t.nodeCredentials('node-api', ['127.0.0.1']);
  const bound = { metadata: { name: 'p', namespace: 'default', uid: 'uid-1' } };
  const sync = { desiredPods: () => [bound], desiredPod: (ns: string, name: string) => (ns === 'default' && name === 'p' ? bound : undefined) } as unknown as PodSync;
  const api = await startNodeApi({ host: '127.0.0.1', port: 0, tls: { cert: creds.servingCertPem, key: creds.servingKeyPem }, clientCa: creds.caCertPem, allowedClients: ['kube-apiserver-kubelet-client'] },
    sync, {} as ContainerRuntime, createLogger('node-api-test', 'silent'));
  const port = (api.address() as AddressInfo).port;
  const pki = path.join(t.dataDir, 'pki');
  const controlPlane = { cert: await fs.readFile(path.join(pki, 'apiserver-kubelet-client.crt'), 'utf8'), key: await fs.readFile(path.join(pki, 'apiserver-kubelet-client.key'), 'utf8') };
  const get = (urlPath: string, client?: { cert: string; key: string }) => new Promise<{ status: number; text: string } | { error: string }>((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path: urlPath, ca: creds.caCertPem, agent: false, ...(client ?? {}) }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', (err) => resolve({ error: err.message }));
  });
  try {
    assert.equal(await get('/healthz'), { status: 200, text: 'ok' });
    const anonymous = await get('/pods');
    assert.is('status' in anonymous && anonymous.status, 401, JSON.stringify(anonymous));
    const cp = await get('/pods', controlPlane);
    assert.ok('status' in cp && cp.status === 200, JSON.stringify(cp));
    assert.match((cp as { text: string }).text, '"uid-1"');
    const node = await get('/pods', { cert: creds.clientCertPem, key: creds.clientKeyPem });
    assert.ok('status' in node && node.status === 403, JSON.stringify(node));
    assert.match((node as { text: string }).text, '"system:node:node-api" may not use this node API');
    const foreign = await get('/pods', await selfSigned('foreign-client', '/CN=kube-apiserver-kubelet-client', 'DNS:x', 'clientAuth'));
    assert.ok('error' in foreign || foreign.status === 401, `a certificate from another CA is refused: ${JSON.stringify(foreign)}`);
    assert.not.ok('status' in foreign && foreign.status === 200);
  } finally {
    await new Promise((r) => { api.close(r); api.closeAllConnections(); });
  }
});

test('the agent refuses the retired --node-api-token-file, naming its replacement', async () => {
  try {
    await loadAgentConfig({ kubeconfig: '/nonexistent', nodeApiTokenFile: '/etc/token' });
    assert.unreachable('should refuse');
  } catch (err) {
    assert.match((err as Error).message, '--node-api-token-file (nodeApiTokenFile) was replaced by --client-ca-file');
  }
  const r = await execa(process.execPath, [CLI, 'agent', '--kubeconfig', '/nonexistent', '--node-api-token-file', '/etc/token'], { reject: false });
  assert.is(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, 'replaced by --client-ca-file');
});

test('control-plane node-credentials writes a node kubeconfig and serving pair from the cluster CA', async () => {
  const out = path.join(scratch, 'creds-cli');
  const r = await execa(process.execPath, [CLI, 'control-plane', 'node-credentials', '--data-dir', t.dataDir, '--node-name', 'node-cli', '--node-ip', '127.0.0.1', '--node-ip', '10.1.2.3', '--server', t.cp.url, '--out', out], { reject: false });
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, '--tls-cert-file');
  const sub = await execa('openssl', ['x509', '-in', path.join(out, 'kubelet.crt'), '-noout', '-subject', '-ext', 'subjectAltName,extendedKeyUsage']);
  assert.match(sub.stdout, /CN ?= ?system:node:node-cli/);
  assert.match(sub.stdout, /O ?= ?system:nodes/);
  assert.match(sub.stdout, 'IP Address:127.0.0.1');
  assert.match(sub.stdout, 'IP Address:10.1.2.3');
  assert.match(sub.stdout, 'DNS:node-cli');
  assert.match(sub.stdout, 'TLS Web Server Authentication');
  assert.is((await fs.stat(path.join(out, 'kubelet.key'))).mode & 0o777, 0o600);
  assert.is((await fs.stat(path.join(out, 'kubeconfig'))).mode & 0o777, 0o600);
  const verify = await execa('openssl', ['verify', '-CAfile', path.join(out, 'ca.crt'), path.join(out, 'kubelet.crt')], { reject: false });
  assert.is(verify.exitCode, 0, verify.stderr);
  const nodes = await execa('kubectl', ['get', 'nodes', '-o', 'name'], { env: { KUBECONFIG: path.join(out, 'kubeconfig'), HOME: scratch }, reject: false });
  assert.is(nodes.exitCode, 0, nodes.stderr);
  assert.match(nodes.stdout, 'node/node-a');
  const noCa = await execa(process.execPath, [CLI, 'control-plane', 'node-credentials', '--data-dir', scratch, '--node-name', 'x', '--node-ip', '127.0.0.1', '--server', t.cp.url, '--out', path.join(scratch, 'nope')], { reject: false });
  assert.is.not(noCa.exitCode, 0);
  assert.match(noCa.stderr, 'no cluster CA in');
});

test('the agent\'s API client (one TLS context for all its connections) still trusts only its CA and sends its own certificate', async () => {
  const kubeconfig = (ca: string) => {
    const b64 = (x: string) => Buffer.from(x).toString('base64');
    return `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "${t.cp.url}", certificate-authority-data: ${b64(ca)} } }]
users: [{ name: u, user: { client-certificate-data: ${b64(nodeA.cert)}, client-key-data: ${b64(nodeA.key)} } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`;
  };
  const good = path.join(scratch, 'agent-good.kubeconfig');
  const bad = path.join(scratch, 'agent-bad.kubeconfig');
  await fs.writeFile(good, kubeconfig(t.cp.caCertPem));
  await fs.writeFile(bad, kubeconfig((await selfSigned('agent-other-ca', '/CN=other-ca', 'DNS:other', 'serverAuth')).cert));
  const ok = kubeClients(good);
  // Several calls at once: more than one connection, all from the shared context, each authenticated by the
  // client certificate (the API answers 401 to a call without one).
  const nodes = await Promise.all(Array.from({ length: 4 }, () => ok.core.readNode({ name: 'node-a' })));
  assert.ok(nodes.every((n) => n.metadata?.name === 'node-a'));
  const refused = await kubeClients(bad).core.readNode({ name: 'node-a' }).then(() => 'answered', (err: Error) => String(err));
  assert.match(refused, /certificate|self[- ]signed|verify/i, `a server outside the kubeconfig's CA is refused: ${refused}`);
});

test.run();

test('a node cannot open exec, attach or port-forward streams, not even into its own pods; nobody can without credentials', async () => {
  const { default: WebSocket } = await import('ws');
  const created = await t.api('POST', '/api/v1/namespaces/default/pods', pod('streamed', 'node-a'));
  assert.is(created.status, 201, created.text);
  const upgrade = (sub: string, auth: { cert?: ClientCert; token?: string }) => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const url = `${t.cp.url.replace(/^https/, 'wss')}/api/v1/namespaces/default/pods/streamed/${sub}?command=true&stdout=true&container=main`;
    const ws = new WebSocket(url, [sub === 'portforward' ? 'SPDY/3.1+portforward.k8s.io' : 'v5.channel.k8s.io'].filter((p) => !p.includes('/')), {
      ca: t.cp.caCertPem, ...(auth.cert ?? {}), ...(auth.token ? { headers: { Authorization: `Bearer ${auth.token}` } } : {}),
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => { ws.terminate(); reject(new Error(`${sub}: upgraded`)); });
    ws.on('error', (err) => { if (!/Unexpected server response/.test(err.message)) reject(err); });
  });
  for (const sub of ['exec', 'attach', 'portforward']) {
    const asNode = await upgrade(sub, { cert: nodeA });
    assert.is(asNode.status, 403, `${sub}: ${asNode.body}`);
    assert.match(JSON.parse(asNode.body).message, new RegExp(`cannot create resource "pods/${sub}"`));
    const anonymous = await upgrade(sub, {});
    assert.is(anonymous.status, 401, `${sub}: ${anonymous.body}`);
  }
  // The admin gets through authorization to the node's address (no agent here: the dial fails, said as such).
  const admin = await upgrade('exec', { token: t.cp.adminToken });
  assert.is(admin.status, 500, admin.body);
  assert.match(JSON.parse(admin.body).message, /node-a/);
});
