/**
 * Services, Endpoints and EndpointSlices at the API with the real kubectl: a control plane
 * alone, pods given IPs and readiness by /status writes (as an agent would), the controllers
 * keeping Endpoints and EndpointSlices in step, the cluster IP and node port allocators
 * (across a restart), validation, and what a node identity may read.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { registerNode, startTestControlPlane, waitFor, type TestCP } from './helpers/control-plane.js';

type KObj = Record<string, any>;

const api = suite('services: the API and the endpoint controllers with the real kubectl');
let t: TestCP;
api.before(async () => {
  t = await startTestControlPlane({ serviceClusterIpRange: '10.96.0.0/24', serviceNodePortRange: '30000-30009' });
  await registerNode(t, 'node-a');
});
api.after(async () => { await t?.close(); });

const k = (args: string[], input?: string) => t.k(args, input);
const kFails = async (args: string[], input?: string): Promise<string> => {
  const r = await t.kubectl(args, input);
  assert.is.not(r.exitCode, 0, `kubectl ${args.join(' ')} should fail`);
  return r.stderr;
};
const getJson = async (args: string[]) => JSON.parse(await k([...args, '-o', 'json'])) as KObj;

/** A pod bound to node-a, then given an IP and readiness through /status, as the node's agent would. */
async function runningPod(name: string, labels: Record<string, string>, ip: string, ready: boolean, ports: KObj[] = [{ name: 'http', containerPort: 8080 }], extra: KObj = {}): Promise<void> {
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels }, spec: { nodeName: 'node-a', containers: [{ name: 'main', image: 'busybox', ports }], ...extra } };
  const created = await t.api('POST', '/api/v1/namespaces/default/pods', pod);
  assert.is(created.status, 201, created.text);
  await setReady(name, ip, ready);
}

async function setReady(name: string, ip: string, ready: boolean): Promise<void> {
  const cur = (await t.api('GET', `/api/v1/namespaces/default/pods/${name}`)).body;
  cur.status = { ...cur.status, phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] };
  const r = await t.api('PUT', `/api/v1/namespaces/default/pods/${name}/status`, cur);
  assert.is(r.status, 200, r.text);
}

const slicesOf = async (svc: string): Promise<KObj[]> => (await getJson(['get', 'endpointslices', '-l', `kubernetes.io/service-name=${svc}`])).items;

api('kubectl create service clusterip (protobuf): a cluster IP from the range, defaults and columns as kube', async () => {
  assert.match(await k(['create', 'service', 'clusterip', 'web', '--tcp=80:8080']), 'service/web created');
  const svc = await getJson(['get', 'svc', 'web']);
  assert.match(svc.spec.clusterIP, /^10\.96\.0\.\d+$/);
  assert.equal(svc.spec.clusterIPs, [svc.spec.clusterIP]);
  assert.is(svc.spec.type, 'ClusterIP');
  assert.is(svc.spec.sessionAffinity, 'None');
  assert.is(svc.spec.internalTrafficPolicy, 'Cluster');
  assert.equal(svc.spec.ipFamilies, ['IPv4']);
  assert.equal(svc.spec.ports, [{ name: '80-8080', protocol: 'TCP', port: 80, targetPort: 8080 }]);
  assert.equal(svc.spec.selector, { app: 'web' });
  const table = await k(['get', 'svc', 'web']);
  assert.match(table, /^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE$/m);
  assert.match(table, new RegExp(`^web\\s+ClusterIP\\s+${svc.spec.clusterIP.replace(/\./g, '\\.')}\\s+<none>\\s+80/TCP\\s+\\d+s$`, 'm'));
  assert.match(await k(['get', 'svc', 'web', '-o', 'wide']), /SELECTOR\n.*app=web$/m);
});

api('Endpoints and EndpointSlices follow the selected pods: ready, not ready, terminating, named ports', async () => {
  await runningPod('web-1', { app: 'web' }, '10.88.0.11', true);
  await runningPod('web-2', { app: 'web' }, '10.88.0.12', false);
  await runningPod('other', { app: 'other' }, '10.88.0.13', true);
  const ep = await waitFor('Endpoints with both pods', async () => {
    const e = (await t.api('GET', '/api/v1/namespaces/default/endpoints/web')).body;
    return e?.subsets?.[0]?.notReadyAddresses ? e : undefined;
  });
  assert.equal(ep.subsets, [{
    addresses: [{ ip: '10.88.0.11', nodeName: 'node-a', targetRef: { kind: 'Pod', namespace: 'default', name: 'web-1', uid: ep.subsets[0].addresses[0].targetRef.uid } }],
    notReadyAddresses: [{ ip: '10.88.0.12', nodeName: 'node-a', targetRef: { kind: 'Pod', namespace: 'default', name: 'web-2', uid: ep.subsets[0].notReadyAddresses[0].targetRef.uid } }],
    ports: [{ name: '80-8080', port: 8080, protocol: 'TCP' }],
  }]);
  assert.is(ep.metadata.labels['endpointslice.kubernetes.io/skip-mirror'], 'true');
  assert.match(await k(['get', 'endpoints', 'web']), /^web\s+10\.88\.0\.11:8080\s+\d+s$/m);
  const slices = await waitFor('one slice with both pods', async () => { const s = await slicesOf('web'); return s.length === 1 && s[0]!.endpoints?.length === 2 && s; });
  const s = slices[0]!;
  assert.match(s.metadata.name, /^web-[a-z0-9]{5}$/);
  assert.is(s.addressType, 'IPv4');
  assert.is(s.metadata.labels['endpointslice.kubernetes.io/managed-by'], 'endpointslice-controller.k8s.io');
  assert.is(s.metadata.ownerReferences[0].kind, 'Service');
  assert.equal(s.ports, [{ name: '80-8080', port: 8080, protocol: 'TCP' }]);
  assert.equal(s.endpoints.map((e: KObj) => [e.addresses[0], e.conditions]), [
    ['10.88.0.11', { ready: true, serving: true, terminating: false }],
    ['10.88.0.12', { ready: false, serving: false, terminating: false }],
  ]);
  assert.match(await k(['get', 'endpointslices']), /^web-[a-z0-9]{5}\s+IPv4\s+8080\s+10\.88\.0\.11,10\.88\.0\.12\s+\d+s$/m);

  // web-2 turns Ready: it moves to addresses.
  await setReady('web-2', '10.88.0.12', true);
  await waitFor('both ready', async () => {
    const e = (await t.api('GET', '/api/v1/namespaces/default/endpoints/web')).body;
    return e.subsets?.[0]?.addresses?.length === 2 && !e.subsets[0].notReadyAddresses;
  });
  // web-1 is being deleted (a bound pod stays Terminating until its node confirms): out of Endpoints, terminating in the slice.
  await k(['delete', 'pod', 'web-1', '--wait=false']);
  await waitFor('web-1 terminating', async () => {
    const e = (await t.api('GET', '/api/v1/namespaces/default/endpoints/web')).body;
    const sl = (await slicesOf('web'))[0]!;
    const one = sl.endpoints.find((x: KObj) => x.addresses[0] === '10.88.0.11');
    return e.subsets[0].addresses.length === 1 && one && same(one.conditions, { ready: false, serving: true, terminating: true });
  });
});

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

api('a named targetPort resolves per pod; pods without the port are left out of it; hostname/subdomain on a headless service', async () => {
  await k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: named}
spec:
  clusterIP: None
  selector: {app: named}
  ports:
  - {name: web, port: 80, targetPort: http}
`);
  const svc = await getJson(['get', 'svc', 'named']);
  assert.is(svc.spec.clusterIP, 'None');
  assert.match(await k(['get', 'svc', 'named']), /^named\s+ClusterIP\s+None\s+<none>\s+80\/TCP/m);
  await runningPod('named-a', { app: 'named' }, '10.88.0.21', true, [{ name: 'http', containerPort: 8081 }], { hostname: 'named-a', subdomain: 'named' });
  await runningPod('named-b', { app: 'named' }, '10.88.0.22', true, [{ name: 'http', containerPort: 9090 }]);
  await runningPod('named-c', { app: 'named' }, '10.88.0.23', true, [{ name: 'metrics', containerPort: 9100 }]);
  const ep = await waitFor('two subsets', async () => {
    const e = (await t.api('GET', '/api/v1/namespaces/default/endpoints/named')).body;
    return e?.subsets?.length === 2 && e;
  });
  const byPort = Object.fromEntries(ep.subsets.map((s: KObj) => [s.ports[0].port, s.addresses.map((a: KObj) => [a.ip, a.hostname])]));
  assert.equal(byPort, { 8081: [['10.88.0.21', 'named-a']], 9090: [['10.88.0.22', undefined]] });
  assert.is(ep.metadata.labels['service.kubernetes.io/headless'], '');
  const slices = await waitFor('two slices', async () => { const s = await slicesOf('named'); return s.length === 2 && s; });
  assert.equal(slices.map((s: KObj) => s.ports[0].port).sort(), [8081, 9090]);
});

api('NodePort: ports from the range, a taken or out-of-range port refused; sessionAffinity ClientIP defaults', async () => {
  assert.match(await k(['create', 'service', 'nodeport', 'np', '--tcp=80:8080', '--node-port=30005']), 'service/np created');
  const svc = await getJson(['get', 'svc', 'np']);
  assert.is(svc.spec.ports[0].nodePort, 30005);
  assert.is(svc.spec.externalTrafficPolicy, 'Cluster');
  assert.match(await k(['get', 'svc', 'np']), /^np\s+NodePort\s+10\.96\.0\.\d+\s+<none>\s+80:30005\/TCP/m);
  let err = await kFails(['create', 'service', 'nodeport', 'np2', '--tcp=80:8080', '--node-port=30005']);
  assert.match(err, /spec\.ports\[0\]\.nodePort: Invalid value: 30005: provided port is already allocated/);
  err = await kFails(['create', 'service', 'nodeport', 'np3', '--tcp=80:8080', '--node-port=31000']);
  assert.match(err, /provided port is not in the valid range\. The range of valid ports is 30000-30009/);
  await k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector: {app: web}
  ports: [{port: 81, targetPort: 8080}]
`);
  const sticky = await getJson(['get', 'svc', 'sticky']);
  assert.is(sticky.spec.sessionAffinityConfig.clientIP.timeoutSeconds, 10800);
  assert.ok(sticky.spec.ports[0].nodePort >= 30000 && sticky.spec.ports[0].nodePort <= 30009);
  // a re-apply without the allocated fields keeps them (no new IP, no new node port)
  await k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector: {app: web, tier: x}
  ports: [{port: 81, targetPort: 8080}]
`);
  const again = await getJson(['get', 'svc', 'sticky']);
  assert.is(again.spec.clusterIP, sticky.spec.clusterIP);
  assert.is(again.spec.ports[0].nodePort, sticky.spec.ports[0].nodePort);
  // the cluster IP cannot change
  err = await kFails(['patch', 'svc', 'sticky', '--type=merge', '-p', '{"spec":{"clusterIP":"10.96.0.200","clusterIPs":["10.96.0.200"]}}']);
  assert.match(err, /spec\.clusterIPs\[0\]: Invalid value: "10\.96\.0\.200": field is immutable/);
});

api('kubectl create service loadbalancer and externalname', async () => {
  assert.match(await k(['create', 'service', 'loadbalancer', 'lb', '--tcp=443:8443']), 'service/lb created');
  assert.match(await k(['get', 'svc', 'lb']), /^lb\s+LoadBalancer\s+10\.96\.0\.\d+\s+<pending>\s+443:300\d\d\/TCP/m);
  assert.match(await k(['create', 'service', 'externalname', 'ext', '--external-name=example.org']), 'service/ext created');
  const ext = await getJson(['get', 'svc', 'ext']);
  assert.is(ext.spec.clusterIP, undefined);
  assert.match(await k(['get', 'svc', 'ext']), /^ext\s+ExternalName\s+<none>\s+example\.org\s+<none>/m);
  await k(['delete', 'svc', 'lb', 'ext']);
});

api('validation: cluster IP out of range or taken, bad ports, unimplemented fields named', async () => {
  const web = await getJson(['get', 'svc', 'web']);
  const svc = (spec: string) => `apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n${spec}`;
  let err = await kFails(['apply', '-f', '-'], svc('  clusterIP: 10.0.0.5\n  ports: [{port: 80}]\n'));
  assert.match(err, /failed to allocate IP 10\.0\.0\.5: the provided IP \(10\.0\.0\.5\) is not in the valid range\. The range of valid IPs is 10\.96\.0\.0\/24/);
  err = await kFails(['apply', '-f', '-'], svc(`  clusterIP: ${web.spec.clusterIP}\n  ports: [{port: 80}]\n`));
  assert.match(err, /provided IP is already allocated/);
  err = await kFails(['apply', '-f', '-'], svc('  ports: [{port: 0}, {port: 80, protocol: XTP}]\n'));
  assert.match(err, /spec\.ports\[0\]\.port: Invalid value: 0: must be between 1 and 65535, inclusive/);
  assert.match(err, /spec\.ports\[1\]\.protocol: Unsupported value: "XTP"/);
  assert.match(err, /spec\.ports\[0\]\.name: Required value/);
  err = await kFails(['apply', '-f', '-'], svc('  externalIPs: [1.2.3.4]\n  ports: [{port: 80}]\n'));
  assert.match(err, /spec\.externalIPs: Forbidden: externalIPs is not implemented/);
  err = await kFails(['apply', '-f', '-'], svc('  ports: [{port: 80, targetPort: Not_A_Name}]\n'));
  assert.match(err, /spec\.ports\[0\]\.targetPort: Invalid value: "Not_A_Name"/);
  assert.is((await t.kubectl(['get', 'svc', 'bad'])).exitCode, 1);
});

api('kubectl expose deployment: a Service with its selector and ports', async () => {
  await k(['create', 'deployment', 'exp', '--image=busybox', '--port=8080']);
  assert.match(await k(['expose', 'deployment', 'exp', '--port=80', '--target-port=8080']), 'service/exp exposed');
  const svc = await getJson(['get', 'svc', 'exp']);
  assert.equal(svc.spec.selector, { app: 'exp' });
  assert.equal(svc.spec.ports.map((p: KObj) => [p.port, p.targetPort]), [[80, 8080]]);
});

api('cluster IPs are never handed out twice, also after a restart; a full range says so', async () => {
  const before = (await getJson(['get', 'svc'])).items.map((s: KObj) => s.spec.clusterIP).filter((ip: string) => ip !== 'None');
  await t.restart();
  const made: string[] = [];
  for (let i = 0; ; i++) {
    const r = await t.api('POST', '/api/v1/namespaces/default/services', { metadata: { name: `fill-${i}` }, spec: { ports: [{ port: 80 }] } });
    if (r.status !== 201) {
      assert.is(r.status, 422, r.text);
      assert.match(r.body.message, /failed to allocate a serviceIP: range is full \(10\.96\.0\.0\/24\)/);
      break;
    }
    made.push(r.body.spec.clusterIP);
    assert.ok(i < 300, 'the /24 must fill up');
  }
  const all = [...before, ...made];
  assert.is(new Set(all).size, all.length, 'no IP twice');
  assert.is(all.length, 254, 'every usable address of the /24 was given');
  // a deleted Service's address can be had again
  await k(['delete', 'svc', 'fill-0']);
  const r = await t.api('POST', '/api/v1/namespaces/default/services', { metadata: { name: 'again' }, spec: { ports: [{ port: 80 }] } });
  assert.is(r.status, 201, r.text);
  assert.is(r.body.spec.clusterIP, made[0]);
});

api('a Service without a selector: hand-written Endpoints are mirrored into EndpointSlices, and removed with them', async () => {
  await k(['delete', 'svc', 'fill-1']); // the /24 was filled above
  await k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: outside}
spec:
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: outside, labels: {team: db}}
subsets:
- addresses: [{ip: 192.0.2.10}]
  notReadyAddresses: [{ip: 192.0.2.11}]
  ports: [{name: pg, port: 5432}]
`);
  const sl = await waitFor('a mirrored slice', async () => { const s = await slicesOf('outside'); return s.length === 1 && s[0]; });
  assert.is(sl.metadata.labels['endpointslice.kubernetes.io/managed-by'], 'endpointslicemirroring-controller.k8s.io');
  assert.is(sl.metadata.labels.team, 'db');
  assert.is(sl.metadata.ownerReferences[0].kind, 'Endpoints');
  assert.equal(sl.ports, [{ name: 'pg', port: 5432, protocol: 'TCP' }]);
  assert.equal(sl.endpoints.map((e: KObj) => [e.addresses[0], e.conditions.ready]), [['192.0.2.10', true], ['192.0.2.11', false]]);
  // the endpoints controller leaves hand-written Endpoints alone
  const ep = (await t.api('GET', '/api/v1/namespaces/default/endpoints/outside')).body;
  assert.is(ep.metadata.labels['endpointslice.kubernetes.io/skip-mirror'], undefined);
  await k(['delete', 'endpoints', 'outside']);
  await waitFor('the mirror gone', async () => (await slicesOf('outside')).length === 0);
  await k(['delete', 'svc', 'outside']);
});

api('deleting a Service deletes its Endpoints and EndpointSlices', async () => {
  await k(['delete', 'svc', 'web']);
  await waitFor('endpoints and slices gone', async () => {
    const e = await t.api('GET', '/api/v1/namespaces/default/endpoints/web');
    return e.status === 404 && (await slicesOf('web')).length === 0;
  });
});

api('a node may list and watch Services, Endpoints and EndpointSlices, and not write them', async () => {
  const cert = await t.nodeCert('node-a');
  for (const path of ['/api/v1/services', '/api/v1/endpoints', '/apis/discovery.k8s.io/v1/endpointslices', '/api/v1/services?watch=true&timeoutSeconds=1']) {
    const r = await t.api('GET', path, undefined, { cert });
    assert.is(r.status, 200, `${path}: ${r.text}`);
  }
  const w = await t.api('POST', '/api/v1/namespaces/default/services', { metadata: { name: 'evil' }, spec: { ports: [{ port: 80 }] } }, { cert });
  assert.is(w.status, 403);
  assert.match(w.body.message, /User "system:node:node-a" cannot create resource "services"/);
});

api.run();
