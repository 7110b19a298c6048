import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as https from 'node:https';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { startTestControlPlane, registerNode, waitFor, type TestCP } from './helpers/control-plane.js';
import { runControlPlaneCommand } from '../control-plane/main.js';

let t: TestCP;
const podYaml = (name: string, opts: { command?: string; image?: string; extra?: string; nodeSelector?: string; cpu?: string } = {}) => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {app: ${name}, tier: test}
spec:
${opts.nodeSelector ? `  nodeSelector: {${opts.nodeSelector}}\n` : ''}  containers:
  - name: main
    image: ${opts.image ?? 'localhost/busybox:latest'}
    command: ["sh", "-c", "${opts.command ?? 'sleep 1000'}"]
${opts.extra ?? ''}${opts.cpu ? `    resources: {requests: {cpu: "${opts.cpu}"}}\n` : ''}  - name: side
    image: localhost/busybox:1.0
`;

test.before(async () => {
  t = await startTestControlPlane();
});
test.after(async () => {
  await t?.close();
});

test('admin kubeconfig, tokens and discovery drive the real kubectl', async () => {
  assert.type(runControlPlaneCommand, 'function');
  const kc = fs.readFileSync(t.kubeconfig, 'utf8');
  assert.ok(kc.includes(`server: ${t.cp.url}`) && kc.includes('certificate-authority-data:') && kc.includes(`token: ${t.cp.adminToken}`));
  assert.is(fs.statSync(t.kubeconfig).mode & 0o777, 0o600);
  for (const f of ['admin.token', 'pki/ca.key', 'pki/apiserver.key', 'pki/apiserver-kubelet-client.key']) assert.is(fs.statSync(path.join(t.dataDir, f)).mode & 0o777, 0o600, f);
  for (const f of ['node.token', 'kubelet-client.token']) assert.not.ok(fs.existsSync(path.join(t.dataDir, f)), `${f} is retired`);
  const unauth = await t.api('GET', '/api/v1/pods', undefined, { token: 'wrong' });
  assert.is(unauth.status, 401);
  const ns = await t.kubectl(['get', 'namespaces']);
  assert.is(ns.exitCode, 0, ns.stderr);
  for (const n of ['default', 'kube-system', 'kube-node-lease']) assert.match(ns.stdout, new RegExp(`^${n}\\s+Active`, 'm'));
  // kubectl create namespace posts protobuf (its typed client does not fall back to JSON).
  const created = await t.kubectl(['create', 'namespace', 'team-a']);
  assert.is(created.exitCode, 0, created.stderr);
  assert.match(created.stdout, /namespace\/team-a created/);
  assert.match((await t.kubectl(['get', 'namespace', 'team-a'])).stdout, /^team-a\s+Active/m);
  const again = await t.kubectl(['create', 'namespace', 'team-a']);
  assert.match(again.stderr, /AlreadyExists|already exists/);
  const rc = await t.kubectl(['get', 'runtimeclasses']);
  assert.is(rc.exitCode, 0, rc.stderr);
  assert.match(rc.stdout, /^NAME\s+HANDLER\s+AGE/);
  for (const n of ['kvm', 'namespaces', 'fly']) assert.match(rc.stdout, new RegExp(`^${n}\\s+${n}\\s`, 'm'));
  const ver = await t.kubectl(['version', '-o', 'json']);
  assert.is(JSON.parse(ver.stdout).serverVersion.minor, '32');
  const res = await t.kubectl(['api-resources']);
  assert.is(res.exitCode, 0, res.stderr);
  assert.match(res.stdout, /leases\s+coordination\.k8s\.io\/v1\s+true\s+Lease/);
});

test('kubectl apply creates, twice is unchanged, changed command is Forbidden, changed image is allowed', async () => {
  const a1 = await t.kubectl(['apply', '-f', '-'], podYaml('web'));
  assert.is(a1.exitCode, 0, a1.stderr);
  assert.match(a1.stdout, 'pod/web created');
  const pod = JSON.parse((await t.kubectl(['get', 'pod', 'web', '-o', 'json'])).stdout);
  assert.is(pod.spec.restartPolicy, 'Always');
  assert.is(pod.spec.terminationGracePeriodSeconds, 30);
  assert.is(pod.spec.dnsPolicy, 'ClusterFirst');
  assert.is(pod.spec.containers[0].imagePullPolicy, 'Always');
  assert.is(pod.spec.containers[1].imagePullPolicy, 'IfNotPresent');
  assert.is(pod.spec.containers[0].terminationMessagePath, '/dev/termination-log');
  assert.is(pod.status.phase, 'Pending');
  assert.ok(pod.metadata.uid && pod.metadata.creationTimestamp && pod.metadata.resourceVersion);
  const a2 = await t.kubectl(['apply', '-f', '-'], podYaml('web'));
  assert.is(a2.exitCode, 0, a2.stderr);
  assert.match(a2.stdout, 'pod/web unchanged');
  const after = JSON.parse((await t.kubectl(['get', 'pod', 'web', '-o', 'json'])).stdout);
  assert.is(after.metadata.resourceVersion, pod.metadata.resourceVersion);
  const a3 = await t.kubectl(['apply', '-f', '-'], podYaml('web', { command: 'sleep 2000' }));
  assert.is.not(a3.exitCode, 0);
  assert.match(a3.stderr, 'The Pod "web" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`');
  const a4 = await t.kubectl(['apply', '-f', '-'], podYaml('web', { image: 'localhost/busybox:2.0' }));
  assert.is(a4.exitCode, 0, a4.stderr);
  assert.match(a4.stdout, 'pod/web configured');
  const img = await t.kubectl(['get', 'pod', 'web', '-o', 'jsonpath={.spec.containers[0].image}']);
  assert.is(img.stdout, 'localhost/busybox:2.0');
  const patched = await t.kubectl(['patch', 'pod', 'web', '--type=merge', '-p', '{"metadata":{"labels":{"extra":"yes"}}}']);
  assert.is(patched.exitCode, 0, patched.stderr);
  const sel = await t.kubectl(['get', 'pods', '-l', 'extra=yes,tier in (test,prod),!missing', '-o', 'name']);
  assert.is(sel.stdout.trim(), 'pod/web');
  const none = await t.kubectl(['get', 'pods', '-l', 'extra!=yes', '-o', 'name']);
  assert.is(none.stdout.trim(), '');
  const jp = await t.kubectl(['patch', 'pod', 'web', '--type=json', '-p', '[{"op":"remove","path":"/metadata/labels/extra"}]']);
  assert.is(jp.exitCode, 0, jp.stderr);
  assert.is((await t.kubectl(['get', 'pods', '-l', 'extra', '-o', 'name'])).stdout.trim(), '');
});

test('garbage in: unknown field, invalid YAML, missing image, 1 MB annotation, huge body; nothing stored', async () => {
  const rvBefore = t.cp.store.currentRv;
  const unk = await t.kubectl(['apply', '-f', '-'], podYaml('bad1', { extra: '    bogusField: 1\n' }));
  assert.is.not(unk.exitCode, 0);
  assert.match(unk.stderr, 'strict decoding error: unknown field "spec.containers[0].bogusField"');
  const yaml = await t.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad2\n spec: [\n');
  assert.is.not(yaml.exitCode, 0);
  assert.match(yaml.stderr, /error/i);
  const noImage = await t.kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Pod\nmetadata: {name: bad3}\nspec:\n  containers: [{name: c}]\n');
  assert.is.not(noImage.exitCode, 0);
  assert.match(noImage.stderr, 'The Pod "bad3" is invalid: spec.containers[0].image: Required value');
  const big = 'x'.repeat(1024 * 1024);
  const ann = await t.kubectl(['apply', '-f', '-'], podYaml('bad4').replace('  labels:', `  annotations: {big: "${big}"}\n  labels:`));
  assert.is.not(ann.exitCode, 0);
  assert.match(ann.stderr, 'metadata.annotations: Too long: must have at most 262144 bytes');
  const huge = await t.api('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'bad5', annotations: { a: 'y'.repeat(4 * 1024 * 1024) } } });
  assert.is(huge.status, 413);
  assert.is(huge.body.kind, 'Status');
  const get = await t.kubectl(['get', 'pods', '-o', 'name']);
  assert.not.match(get.stdout, /bad/);
  assert.is(t.cp.store.currentRv, rvBefore, 'no write happened');
  const api = await t.api('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'web' }, spec: { containers: [{ name: 'a', image: 'b' }] } });
  assert.is(api.status, 409);
  assert.is(api.body.reason, 'AlreadyExists');
});

test('scheduler binds to a Ready node honouring nodeSelector and cpu; kubectl get -o wide and describe show it', async () => {
  await registerNode(t, 'node-a', { cpu: '1', labels: { disk: 'hdd' } });
  await registerNode(t, 'node-b', { cpu: '2', labels: { disk: 'ssd' } });
  const nodes = await t.kubectl(['get', 'nodes', '-o', 'wide']);
  assert.is(nodes.exitCode, 0, nodes.stderr);
  assert.match(nodes.stdout, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+INTERNAL-IP\s+EXTERNAL-IP\s+OS-IMAGE\s+KERNEL-VERSION\s+CONTAINER-RUNTIME/);
  assert.match(nodes.stdout, /^node-a\s+Ready\s+<none>\s+\S+\s+v1\.32\.0-stevedore\s+127\.0\.0\.1\s+<none>\s+Debian\s+6\.1\s+rkt:\/\/1\.30\.0/m);
  // web was created before any node existed: now it gets scheduled.
  await waitFor('web bound', async () => JSON.parse((await t.kubectl(['get', 'pod', 'web', '-o', 'json'])).stdout).spec.nodeName);
  const a = await t.kubectl(['apply', '-f', '-'], podYaml('ssd-pod', { nodeSelector: 'disk: ssd' }));
  assert.is(a.exitCode, 0, a.stderr);
  const bound = await waitFor('ssd-pod bound', async () => JSON.parse((await t.kubectl(['get', 'pod', 'ssd-pod', '-o', 'json'])).stdout).spec.nodeName);
  assert.is(bound, 'node-b');
  const wide = await t.kubectl(['get', 'pods', '-o', 'wide']);
  assert.match(wide.stdout, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES/);
  assert.match(wide.stdout, /^ssd-pod\s+0\/2\s+Pending\s+0\s+\S+\s+<none>\s+node-b\s+<none>\s+<none>/m);
  const desc = await t.kubectl(['describe', 'pod', 'ssd-pod']);
  assert.is(desc.exitCode, 0, desc.stderr);
  assert.match(desc.stdout, /Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default\/ssd-pod to node-b/);
  assert.match(desc.stdout, /PodScheduled\s+True/);
  // Nothing matches: Unschedulable + FailedScheduling.
  await t.kubectl(['apply', '-f', '-'], podYaml('nvme-pod', { nodeSelector: 'disk: nvme' }));
  const cond = await waitFor('nvme-pod unschedulable', async () => {
    const p = JSON.parse((await t.kubectl(['get', 'pod', 'nvme-pod', '-o', 'json'])).stdout);
    return (p.status.conditions ?? []).find((c: any) => c.type === 'PodScheduled' && c.status === 'False');
  });
  assert.is(cond.reason, 'Unschedulable');
  assert.match(cond.message, "2 node(s) didn't match Pod's node affinity/selector");
  const ev = await t.kubectl(['get', 'events', '--field-selector', 'involvedObject.name=nvme-pod,reason=FailedScheduling', '-o', 'name']);
  assert.ok(ev.stdout.trim().length > 0, 'FailedScheduling event recorded');
  // Too much cpu for node-a (1 cpu, already used) while selector forces node-a.
  await t.kubectl(['apply', '-f', '-'], podYaml('big-cpu', { nodeSelector: 'disk: hdd', cpu: '1500m' }));
  const c2 = await waitFor('big-cpu unschedulable', async () => {
    const p = JSON.parse((await t.kubectl(['get', 'pod', 'big-cpu', '-o', 'json'])).stdout);
    return (p.status.conditions ?? []).find((c: any) => c.type === 'PodScheduled' && c.status === 'False');
  });
  assert.match(c2.message, 'Insufficient cpu');
  // Preset nodeName is kept as is.
  await t.kubectl(['apply', '-f', '-'], podYaml('pinned').replace('spec:\n', 'spec:\n  nodeName: node-a\n'));
  await new Promise((r) => setTimeout(r, 300));
  assert.is((await t.kubectl(['get', 'pod', 'pinned', '-o', 'jsonpath={.spec.nodeName}'])).stdout, 'node-a');
  for (const p of ['nvme-pod', 'big-cpu']) await t.kubectl(['delete', 'pod', p, '--wait=false']);
});

test('agent-style status patch shows Running; pod watch with spec.nodeName field selector', async () => {
  const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const running = (name: string, restarts: number) => ({ name, ready: true, restartCount: restarts, image: 'x', imageID: '', started: true, state: { running: { startedAt: ts } }, ...(restarts ? { lastState: { terminated: { exitCode: 1, reason: 'Error', finishedAt: ts } } } : {}) });
  const patch = { status: { phase: 'Running', podIP: '10.88.0.5', hostIP: '127.0.0.1', startTime: ts, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }], containerStatuses: [running('main', 2), running('side', 0)] } };
  // as the agent of node-b does it: with node-b's certificate
  const nodeB = await t.nodeCert('node-b');
  const r = await t.api('PATCH', '/api/v1/namespaces/default/pods/ssd-pod/status', patch, { contentType: 'application/strategic-merge-patch+json', cert: nodeB });
  assert.is(r.status, 200, r.text);
  assert.ok(r.body.status.conditions.some((c: any) => c.type === 'PodScheduled'), 'conditions merge by type');
  const wide = await t.kubectl(['get', 'pod', 'ssd-pod', '-o', 'wide']);
  assert.match(wide.stdout, /^ssd-pod\s+2\/2\s+Running\s+2 \(\S+ ago\)\s+\S+\s+10\.88\.0\.5\s+node-b/m);
  const crash = { status: { containerStatuses: [{ ...running('main', 3), ready: false, state: { waiting: { reason: 'CrashLoopBackOff' } } }, running('side', 0)] } };
  await t.api('PATCH', '/api/v1/namespaces/default/pods/ssd-pod/status', crash, { contentType: 'application/merge-patch+json', cert: nodeB });
  assert.match((await t.kubectl(['get', 'pod', 'ssd-pod'])).stdout, /ssd-pod\s+1\/2\s+CrashLoopBackOff\s+3/);
  // the agent's watch: pods on node-b only
  const list = await t.api('GET', '/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-b', undefined, { cert: nodeB });
  assert.equal(list.body.items.map((p: any) => p.metadata.name), ['ssd-pod']);
  const statusOnlySpec = await t.api('PATCH', '/api/v1/namespaces/default/pods/ssd-pod/status', { spec: { nodeName: 'node-a' } }, { contentType: 'application/merge-patch+json', cert: nodeB });
  assert.is(statusOnlySpec.body.spec.nodeName, 'node-b', 'status subresource ignores spec');
  const stale = await t.api('PUT', '/api/v1/namespaces/default/pods/ssd-pod', { ...list.body.items[0], metadata: { ...list.body.items[0].metadata, resourceVersion: '1' } });
  assert.is(stale.status, 409);
  assert.is(stale.body.reason, 'Conflict');
});

test('kubectl logs goes through the proxy to the node, verified both ways with certificates from the cluster CA', async () => {
  const seen: { url: string; auth: string; client: string }[] = [];
  const creds = await t.nodeCredentials('node-logs');
  const fake = https.createServer({ cert: creds.servingCertPem, key: creds.servingKeyPem, ca: creds.caCertPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    seen.push({ url: req.url ?? '', auth: String(req.headers.authorization), client: String((req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN) });
    const u = new URL(req.url ?? '/', 'https://x');
    if (!u.pathname.startsWith('/containerLogs/default/logpod/')) { res.writeHead(404); res.end('no such container'); return; }
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    if (u.searchParams.get('follow') === 'true') {
      let i = 0;
      const iv = setInterval(() => { res.write(`tick ${i++}\n`); if (i === 3) { clearInterval(iv); res.end(); } }, 100);
      return;
    }
    res.end(`${u.pathname.split('/').pop()} line1\nline2\n`);
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  try {
    const port = (fake.address() as AddressInfo).port;
    await registerNode(t, 'node-logs', { kubeletPort: port, labels: { disk: 'logs' } });
    await t.kubectl(['apply', '-f', '-'], podYaml('logpod', { nodeSelector: 'disk: logs' }));
    await waitFor('logpod bound', async () => (await t.kubectl(['get', 'pod', 'logpod', '-o', 'jsonpath={.spec.nodeName}'])).stdout === 'node-logs');
    const l = await t.kubectl(['logs', 'logpod', '-c', 'side', '--tail=5', '--timestamps']);
    assert.is(l.exitCode, 0, l.stderr);
    assert.is(l.stdout, 'side line1\nline2');
    const last = seen[seen.length - 1]!;
    assert.is(last.client, 'kube-apiserver-kubelet-client');
    assert.is(last.auth, 'undefined', 'no bearer token goes to nodes');
    assert.match(last.url, /^\/containerLogs\/default\/logpod\/side\?/);
    assert.match(last.url, 'tailLines=5');
    assert.match(last.url, 'timestamps=true');
    const f = await t.kubectl(['logs', 'logpod', '-c', 'main', '-f']);
    assert.is(f.stdout, 'tick 0\ntick 1\ntick 2');
    const bad = await t.kubectl(['logs', 'logpod', '-c', 'nope']);
    assert.is.not(bad.exitCode, 0);
    assert.match(bad.stderr, 'container nope is not valid for pod logpod');
  } finally {
    await new Promise<void>((r) => { fake.close(() => r()); fake.closeAllConnections(); });
  }
  const down = await t.kubectl(['logs', 'logpod', '-c', 'main']);
  assert.is.not(down.exitCode, 0);
  assert.match(down.stderr, /is the stevedore agent on node node-logs running and reachable/);
});

test('kubectl delete of a bound pod leaves it Terminating until the node deletes it with grace 0', async () => {
  const d = await t.kubectl(['delete', 'pod', 'ssd-pod', '--wait=false']);
  assert.is(d.exitCode, 0, d.stderr);
  const p = JSON.parse((await t.kubectl(['get', 'pod', 'ssd-pod', '-o', 'json'])).stdout);
  assert.ok(p.metadata.deletionTimestamp);
  assert.is(p.metadata.deletionGracePeriodSeconds, 30);
  // set status Running so the printer would otherwise say Running
  assert.match((await t.kubectl(['get', 'pod', 'ssd-pod'])).stdout, /ssd-pod\s+\S+\s+Terminating/);
  const gone = await t.api('DELETE', '/api/v1/namespaces/default/pods/ssd-pod', { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0, preconditions: { uid: p.metadata.uid } }, { cert: await t.nodeCert('node-b') });
  assert.is(gone.status, 200, gone.text);
  assert.is(gone.body.metadata.name, 'ssd-pod');
  const g = await t.kubectl(['get', 'pod', 'ssd-pod']);
  assert.is.not(g.exitCode, 0);
  assert.match(g.stderr, 'pods "ssd-pod" not found');
  // an unbound pod goes at once, and kubectl delete waits for it
  await t.api('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'unbound' }, spec: { schedulerName: 'nobody', containers: [{ name: 'a', image: 'b' }] } });
  const d2 = await t.kubectl(['delete', 'pod', 'unbound']);
  assert.is(d2.exitCode, 0, d2.stderr);
  assert.match(d2.stdout, 'pod "unbound" deleted');
});

test('watch resumes from a resourceVersion, and answers 410 Expired for a compacted one', async () => {
  const list = await t.api('GET', '/api/v1/namespaces/default/pods');
  const rv = Number(list.body.metadata.resourceVersion);
  await t.api('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'w1', labels: { w: 'yes' } }, spec: { schedulerName: 'nobody', containers: [{ name: 'a', image: 'b' }] } });
  await t.api('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'w2' }, spec: { schedulerName: 'nobody', containers: [{ name: 'a', image: 'b' }] } });
  const events = await new Promise<any[]>((resolve, reject) => {
    const req = https.request(new URL(`/api/v1/namespaces/default/pods?watch=true&resourceVersion=${rv}&labelSelector=w%3Dyes&allowWatchBookmarks=true&timeoutSeconds=1`, t.cp.url), { ca: t.cp.caCertPem, headers: { Authorization: `Bearer ${t.cp.adminToken}` } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED w1']);
  assert.ok(Number(events[0].object.metadata.resourceVersion) > rv);
  t.cp.store.compact(t.cp.store.currentRv - 1);
  const old = await t.api('GET', `/api/v1/namespaces/default/pods?watch=true&resourceVersion=${rv}`);
  const ev = JSON.parse(old.text.trim());
  assert.is(ev.type, 'ERROR');
  assert.is(ev.object.code, 410);
  assert.is(ev.object.reason, 'Expired');
  // kubectl get -w with Table output streams changes
  const w = t.kubectl(['get', 'pods', '-w', '--request-timeout=3s', '-l', 'w=yes']);
  await new Promise((r) => setTimeout(r, 1000));
  await t.kubectl(['label', 'pod', 'w1', 'more=1']);
  const out = await w;
  assert.match(out.stdout, /^NAME\s+READY\s+STATUS/);
  assert.ok(out.stdout.split('\n').filter((l) => l.startsWith('w1 ')).length >= 2, out.stdout);
});

test('node lease expiry turns Ready Unknown; restart keeps objects and resourceVersions', async () => {
  const t2 = await startTestControlPlane({ nodeMonitorGracePeriodSeconds: 1 });
  try {
    await registerNode(t2, 'stale');
    const node = await waitFor('node Unknown', async () => {
      const n = await t2.api('GET', '/api/v1/nodes/stale');
      return n.body.status.conditions.find((c: any) => c.type === 'Ready').status === 'Unknown' && n.body;
    }, 5000);
    assert.is(node.status.conditions[0].reason, 'NodeStatusUnknown');
    assert.match((await t2.kubectl(['get', 'nodes'])).stdout, /stale\s+NotReady/);
    await t2.kubectl(['apply', '-f', '-'], podYaml('survivor'));
    const before = JSON.parse((await t2.kubectl(['get', 'pod', 'survivor', '-o', 'json'])).stdout);
    const rvBefore = t2.cp.store.currentRv;
    await t2.restart();
    const after = JSON.parse((await t2.kubectl(['get', 'pod', 'survivor', '-o', 'json'])).stdout);
    assert.is(after.metadata.resourceVersion, before.metadata.resourceVersion);
    assert.is(after.metadata.uid, before.metadata.uid);
    assert.is(t2.cp.store.currentRv, rvBefore);
    const l = await t2.api('GET', '/api/v1/pods');
    assert.is(l.body.metadata.resourceVersion, String(rvBefore));
    await t2.kubectl(['label', 'pod', 'survivor', 'x=y']);
    assert.ok(t2.cp.store.currentRv > rvBefore, 'resourceVersion keeps increasing after restart');
  } finally {
    await t2.close();
  }
});

test.run();
