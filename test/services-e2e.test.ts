/**
 * Services on a real node (`stevedore up`, the real kubectl, real pods): two busybox httpd
 * pods behind a ClusterIP Service answer a client pod's requests; a deleted backend stops
 * getting them; NodePort answers on the node's address; session affinity keeps one backend;
 * the agent SIGKILLed leaves the rules working and, restarted, writes the same table (no
 * duplicate rule); `down` leaves no rule of ours (checked by the cluster helper too).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';
import { run } from './helpers/cluster.js';

type KObj = Record<string, any>;
const e2e = suite('services on a real node: ClusterIP, NodePort, affinity, agent crash');
const cluster = useCluster(e2e);

const web = (replicas: number) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        ports: [{name: http, containerPort: 8080}]
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
`;

/** A client pod that fetches URL every 200 ms and logs each answer (or FAIL); busybox wget -T segfaults (Debian 1.35), hence timeout. */
const client = (name: string, url: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: loop
    image: busybox
    command: [sh, -c, 'while true; do echo "got $(timeout 3 wget -q -O - ${url} 2>/dev/null || echo FAIL)"; sleep 0.2; done']
`;

const nftTable = async () => {
  const c = cluster();
  const r = await run('nft', ['list', 'table', 'ip', c.proxyTable]);
  return r.code === 0 ? r.stdout : '';
};
/** Answers in a client's log after line `from`. */
async function answers(pod: string, from = 0): Promise<string[]> {
  const out = await cluster().k(['logs', pod]);
  return out.split('\n').filter((l) => l.startsWith('got ')).slice(from).map((l) => l.slice(4).trim());
}
const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});
/** The node's address on the pod network (the bridge's gateway): NodePorts answer there. */
const gateway = () => cluster().podCidr.replace(/\.0\/24$/, '.1');

let backends: string[] = [];

e2e('two httpd pods behind a ClusterIP Service: a client pod reaches both', async () => {
  const c = cluster();
  await c.k(['apply', '-f', '-'], web(2));
  assert.match(await c.k(['expose', 'deployment', 'web', '--port=80', '--target-port=http']), 'service/web exposed');
  const svc = JSON.parse(await c.k(['get', 'svc', 'web', '-o', 'json'])) as KObj;
  const ip: string = svc.spec.clusterIP;
  assert.ok(ip.startsWith(c.serviceCidr.replace(/0\/24$/, '')), `cluster IP ${ip} from ${c.serviceCidr}`);
  backends = await eventually('two Ready backends in the Endpoints', async () => {
    const ep = JSON.parse(await c.k(['get', 'endpoints', 'web', '-o', 'json'])) as KObj;
    const addrs = (ep.subsets ?? []).flatMap((s: KObj) => s.addresses ?? []);
    return addrs.length === 2 ? addrs.map((a: KObj) => a.targetRef.name).sort() : undefined;
  }, 120_000);
  await c.k(['apply', '-f', '-'], client('client', `http://${ip}/`));
  const seen = await eventually('answers from both backends', async () => {
    const a = count(await answers('client'));
    return backends.every((b) => (a[b] ?? 0) > 0) ? a : undefined;
  }, 120_000);
  assert.ok(Object.keys(seen).every((k) => backends.includes(k) || k === 'FAIL'), JSON.stringify(seen));
  // The rules are in our table, found with one map lookup per packet (to the chain shared by Service ports of two endpoints).
  const table = await nftTable();
  assert.match(table, new RegExp(`${ip.replace(/\./g, '\\.')} \\. tcp \\. 80 : goto pick-cluster-ip-2`));
});

e2e('a backend that goes away leaves the Endpoints and stops getting traffic', async () => {
  const c = cluster();
  await c.k(['scale', 'deployment', 'web', '--replicas=1']);
  const left = await eventually('one endpoint', async () => {
    const ep = JSON.parse(await c.k(['get', 'endpoints', 'web', '-o', 'json'])) as KObj;
    const addrs = (ep.subsets ?? []).flatMap((s: KObj) => s.addresses ?? []);
    return addrs.length === 1 ? addrs[0].targetRef.name as string : undefined;
  }, 60_000);
  await new Promise((r) => setTimeout(r, 1500)); // the node's proxy follows the EndpointSlice
  const from = (await answers('client')).length;
  await eventually('ten more answers', async () => ((await answers('client', from)).length >= 10 ? true : undefined), 30_000);
  const after = count(await answers('client', from));
  assert.equal(Object.keys(after), [left], JSON.stringify(after));
  await c.k(['scale', 'deployment', 'web', '--replicas=2']);
});

e2e('NodePort answers on the node\'s address; sessionAffinity ClientIP keeps one backend', async () => {
  const c = cluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
`);
  const svc = JSON.parse(await c.k(['get', 'svc', 'web-np', '-o', 'json'])) as KObj;
  const nodePort: number = svc.spec.ports[0].nodePort;
  await eventually('two endpoints again', async () => {
    const ep = JSON.parse(await c.k(['get', 'endpoints', 'web-np', '-o', 'json'])) as KObj;
    return (ep.subsets ?? []).flatMap((s: KObj) => s.addresses ?? []).length === 2 ? true : undefined;
  }, 120_000);
  const url = `http://${gateway()}:${nodePort}/`;
  const first = await eventually('the NodePort answers', async () => {
    const r = await run('curl', ['-s', '--max-time', '2', url]);
    return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
  }, 30_000);
  for (let i = 0; i < 8; i++) {
    const r = await run('curl', ['-s', '--max-time', '2', url]);
    assert.is(r.stdout.trim(), first, 'the same backend every time (ClientIP affinity)');
  }
});

const peer = (name: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: peer}}
spec:
  hostname: ${name}
  subdomain: peers
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    ports: [{name: http, containerPort: 8080}]
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
`;

e2e('a pod whose readiness probe fails leaves the Endpoints and stops getting traffic, and comes back when it passes again', async () => {
  const c = cluster();
  // /www/ready exists for 0–25 s, is gone for 25–50 s, back after; the probe reads it over HTTP every second
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: flappy, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    ports: [{name: http, containerPort: 8080}]
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && touch /www/ready && (sleep 25; rm /www/ready; sleep 25; touch /www/ready) & exec httpd -f -p 8080 -h /www']
    readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 1}
`);
  const endpointNames = async () => {
    const ep = JSON.parse(await c.k(['get', 'endpoints', 'web', '-o', 'json'])) as KObj;
    return (ep.subsets ?? []).flatMap((sub: KObj) => sub.addresses ?? []).map((a: KObj) => a.targetRef.name as string);
  };
  await eventually('flappy Ready and in the Endpoints', async () => ((await endpointNames()).includes('flappy') ? true : undefined), 60_000);
  await eventually('flappy out of the Endpoints once its probe fails', async () => ((await endpointNames()).includes('flappy') ? undefined : true), 60_000);
  const pod = JSON.parse(await c.k(['get', 'pod', 'flappy', '-o', 'json'])) as KObj;
  assert.is(pod.status.conditions.find((x: KObj) => x.type === 'Ready').status, 'False');
  await new Promise((r) => setTimeout(r, 1500)); // the proxy follows the EndpointSlice
  const from = (await answers('client')).length;
  await eventually('ten answers while flappy is not Ready', async () => ((await answers('client', from)).length >= 10 ? true : undefined), 30_000);
  assert.not.ok(Object.keys(count(await answers('client', from))).includes('flappy'), 'no traffic to a pod that is not Ready');
  await eventually('flappy back in the Endpoints', async () => ((await endpointNames()).includes('flappy') ? true : undefined), 60_000);
  await c.k(['delete', 'pod', 'flappy', '--wait=true']);
});

e2e('a StatefulSet behind a headless Service: each pod reaches its peers by their stable DNS names', async () => {
  const c = cluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: ring}
spec:
  clusterIP: None
  selector: {app: ring}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ring}
spec:
  serviceName: ring
  replicas: 2
  selector: {matchLabels: {app: ring}}
  template:
    metadata: {labels: {app: ring}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: node
        image: busybox
        ports: [{name: http, containerPort: 8080}]
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && httpd -p 8080 -h /www; while true; do echo "peer $(timeout 3 wget -q -O - http://ring-0.ring.default.svc.cluster.local:8080/ 2>/dev/null || echo FAIL) $(timeout 3 wget -q -O - http://ring-1.ring:8080/ 2>/dev/null || echo FAIL)"; sleep 1; done']
`);
  const rollout = await c.kubectl(['rollout', 'status', 'sts/ring', '--timeout=120s']);
  assert.is(rollout.code, 0, rollout.stderr);
  for (const name of ['ring-0', 'ring-1']) {
    await eventually(`${name} to reach both peers by name`, async () => ((await c.k(['logs', name])).includes('peer ring-0 ring-1') ? true : undefined), 60_000);
  }
  await c.k(['delete', 'sts', 'ring']);
  await c.k(['delete', 'svc', 'ring']);
});

e2e('cluster DNS: a Service by name from a pod, a headless Service per pod, hostname.subdomain, SRV, outside names', async () => {
  const c = cluster();
  await c.k(['apply', '-f', '-'], peer('peer-0'));
  await c.k(['apply', '-f', '-'], peer('peer-1'));
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: {name: peers}
spec:
  clusterIP: None
  selector: {app: peer}
  ports: [{name: http, port: 8080, targetPort: http}]
`);
  const ips = await eventually('both peers Ready', async () => {
    const ep = JSON.parse(await c.k(['get', 'endpoints', 'peers', '-o', 'json'])) as KObj;
    const addrs = (ep.subsets ?? []).flatMap((s: KObj) => s.addresses ?? []);
    return addrs.length === 2 ? Object.fromEntries(addrs.map((a: KObj) => [a.hostname, a.ip])) as Record<string, string> : undefined;
  }, 120_000);
  const script = [
    'cat /etc/resolv.conf',
    'echo "web=$(timeout 5 wget -q -O - http://web.default.svc.cluster.local/)"',
    'echo "short=$(timeout 5 wget -q -O - http://web/)"',
    'echo "peer0=$(timeout 5 wget -q -O - http://peer-0.peers.default.svc.cluster.local:8080/)"',
    'nslookup peers.default.svc.cluster.local 2>&1 | sed "s/^/headless: /"',
    'nslookup -type=SRV _http._tcp.peers.default.svc.cluster.local 2>&1 | sed "s/^/srv: /"',
    'nslookup nope.default.svc.cluster.local 2>&1 | sed "s/^/nx: /"',
    'echo done; sleep 3600',
  ].join('; ');
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: dns-client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, '${script.replace(/'/g, "''")}']
`);
  const log = await eventually('the DNS client done', async () => {
    const r = await c.kubectl(['logs', 'dns-client']);
    return r.code === 0 && r.stdout.includes('\ndone') ? r.stdout : undefined;
  }, 120_000);
  const dnsIp = c.serviceCidr.replace(/0\/24$/, '10');
  assert.match(log, new RegExp(`^nameserver ${dnsIp.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(log, /^search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/m);
  assert.match(log, /^options ndots:5$/m);
  assert.match(log, /^web=web-/m);
  assert.match(log, /^short=web-/m);
  assert.match(log, /^peer0=peer-0$/m);
  for (const ip of Object.values(ips)) assert.match(log, new RegExp(`^headless: Address: ${ip.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(log, /^srv: .*_http\._tcp\.peers\.default\.svc\.cluster\.local\s+service = 0 100 8080 peer-0\.peers\.default\.svc\.cluster\.local/m);
  assert.match(log, /^nx: .*NXDOMAIN/m);
  // the kube-dns Service holds the address
  assert.match(await c.k(['get', 'svc', '-n', 'kube-system', 'kube-dns']), new RegExp(`kube-dns\\s+ClusterIP\\s+${dnsIp.replace(/\./g, '\\.')}\\s+<none>\\s+53/UDP,53/TCP`));
});

e2e('the agent SIGKILLed: service traffic keeps flowing; restarted, the same rules (no duplicate)', async () => {
  const c = cluster();
  const before = await nftTable();
  const pid = (await c.node(['systemctl', 'show', '-p', 'MainPID', '--value', 'stevedore-agent'])).stdout.trim();
  assert.match(pid, /^[1-9]\d*$/);
  const ip = (JSON.parse(await c.k(['get', 'svc', 'web', '-o', 'json'])) as KObj).spec.clusterIP as string;
  await c.node(['systemctl', 'kill', '-s', 'SIGKILL', 'stevedore-agent']);
  // The node API (and so kubectl logs) is down with the agent: ask from the host, through the same table.
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const r = await run('curl', ['-s', '--max-time', '2', `http://${ip}/`]);
    assert.is(r.code, 0, `request ${i} to ${ip} while the agent is down: ${r.stderr}`);
    seen.add(r.stdout.trim());
  }
  assert.ok([...seen].every((b) => backends.length === 0 || /^web-/.test(b)), [...seen].join(','));
  await eventually('a new agent', async () => {
    const now = (await c.node(['systemctl', 'show', '-p', 'MainPID', '--value', 'stevedore-agent'])).stdout.trim();
    return now !== pid && now !== '0' ? true : undefined;
  }, 60_000);
  // Elements are listed in the kernel's hash order: compare them as sets.
  const strip = (s: string) => s.replace(/ expires [0-9hms.]+/g, '')
    .replace(/elements = \{([^}]*)\}/g, (_m, inner: string) => `elements = { ${inner.split(',').map((x) => x.trim()).sort().join(', ')} }`);
  await eventually('the same table after the restart', async () => (strip(await nftTable()) === strip(before) ? true : undefined), 30_000)
    .catch(async (err) => { throw new Error(`${(err as Error).message}\nbefore:\n${before}\nafter:\n${await nftTable()}`); });
});

// useCluster's after() runs `stevedore down`, which must delete our table: a table left is reported as a failure.
e2e.run();
