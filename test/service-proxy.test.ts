/**
 * The node's service proxy rules against the real kernel: nftables inside a network
 * namespace this test makes (a "node" with a bridge, three "pods" on it, busybox httpd
 * in two), never the host's ruleset. ClusterIP to both endpoints, readiness loss, NodePort,
 * hairpin, session affinity, a Service without endpoints refused, a restarted proxy
 * rewriting the same table (no duplicate rule, stale leftovers removed), a SIGKILLed proxy
 * leaving its rules working, and removal.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/netns.js';
import { ServiceRules, applyTransaction, readTable, removeProxyTable } from '../agent/service-proxy.js';
import { desiredState, transaction, type EndpointSliceLike, type ServiceLike } from '../agent/service-rules.js';
import { createLogger } from '../common/log.js';

const id = randomBytes(3).toString('hex');
const NODE = `sp${id}-node`;
const POD = (n: string) => `sp${id}-${n}`;
const TABLE = 'stevedore-proxy';
const SUBNET = '10.251.7';
const NODE_IP = `${SUBNET}.1`;
const IP = { a: `${SUBNET}.11`, b: `${SUBNET}.12`, c: `${SUBNET}.13` };
const nft = ['ip', 'netns', 'exec', NODE, 'nft'];
const log = createLogger('test', 'silent');

const t = suite('service proxy: nftables rules in a network namespace of our own');
const servers: ChildProcess[] = [];
let tmp = '';
const made: string[] = [];

const inNs = (ns: string, argv: string[], allowFail = false) => run('ip', ['netns', 'exec', ns, ...argv], { allowFail, timeoutMs: 15_000 });

t.before(async () => {
  tmp = await fs.mkdtemp('/var/tmp/stevedore-proxy-test-');
  for (const ns of [NODE, POD('a'), POD('b'), POD('c')]) {
    await run('ip', ['netns', 'add', ns]);
    made.push(ns);
    await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
  }
  await inNs(NODE, ['ip', 'link', 'add', 'br0', 'type', 'bridge']);
  await inNs(NODE, ['ip', 'addr', 'add', `${NODE_IP}/24`, 'dev', 'br0']);
  await inNs(NODE, ['ip', 'link', 'set', 'br0', 'up']);
  await inNs(NODE, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  // A real node has a default route; this one only needs one for the service range (its own connections to cluster IPs).
  await inNs(NODE, ['ip', 'route', 'add', '10.96.0.0/16', 'dev', 'br0']);
  for (const [n, ip] of Object.entries(IP)) {
    await inNs(NODE, ['ip', 'link', 'add', `veth-${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', POD(n)]);
    await inNs(NODE, ['ip', 'link', 'set', `veth-${n}`, 'master', 'br0', 'up']);
    // as the CNI bridge plugin's hairpinMode (stevedore's default network sets it): a pod DNATed back to itself
    await inNs(NODE, ['ip', 'link', 'set', `veth-${n}`, 'type', 'bridge_slave', 'hairpin', 'on']);
    await inNs(POD(n), ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await inNs(POD(n), ['ip', 'link', 'set', 'eth0', 'up']);
    await inNs(POD(n), ['ip', 'route', 'add', 'default', 'via', NODE_IP]);
  }
  for (const n of ['a', 'b']) {
    const dir = path.join(tmp, n);
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'index.html'), `pod-${n}\n`);
    const child = spawn('ip', ['netns', 'exec', POD(n), 'busybox', 'httpd', '-f', '-p', '8080', '-h', dir], { stdio: 'ignore' });
    servers.push(child);
  }
  for (const n of ['a', 'b']) await waitUntil(`httpd in pod ${n}`, async () => (await get(POD('c'), `http://${IP[n as 'a' | 'b']}:8080/`)) === `pod-${n}`);
});

t.after(async () => {
  for (const s of servers) if (s.pid) try { process.kill(s.pid, 'SIGKILL'); } catch { /* gone */ }
  for (const ns of made.reverse()) await run('ip', ['netns', 'del', ns], { allowFail: true });
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  const left = (await run('ip', ['netns', 'list'])).stdout;
  assert.not.match(left, `sp${id}-`, 'every netns this test made is gone');
});

async function waitUntil(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The body of GET url from inside netns ns ('' when it fails); `refused` when the connection was refused. */
async function get(ns: string, url: string, timeout = 2): Promise<string> {
  const r = await inNs(ns, ['curl', '-s', '--max-time', String(timeout), url], true);
  if (r.code === 7) return 'refused';
  return r.code === 0 ? r.stdout.trim() : '';
}

async function hits(ns: string, url: string, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const b = await get(ns, url);
    out[b] = (out[b] ?? 0) + 1;
  }
  return out;
}

const svc = (name: string, clusterIP: string, extra: Partial<NonNullable<ServiceLike['spec']>> = {}, ports = [{ name: 'http', protocol: 'TCP', port: 80 }]): ServiceLike =>
  ({ metadata: { namespace: 'default', name }, spec: { type: 'ClusterIP', clusterIP, ports, ...extra } });
const slice = (service: string, eps: Array<[string, boolean]>, port = 8080): EndpointSliceLike => ({
  metadata: { namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
  addressType: 'IPv4',
  ports: [{ name: 'http', protocol: 'TCP', port }],
  endpoints: eps.map(([ip, ready]) => ({ addresses: [ip], conditions: { ready }, nodeName: 'node-a' })),
});

const rules = new ServiceRules({ table: TABLE, nodeName: 'node-a', clusterCidr: `${SUBNET}.0/24`, nft }, log);
const listTable = async () => (await run(nft[0]!, [...nft.slice(1), 'list', 'table', 'ip', TABLE])).stdout;

t('a ClusterIP Service spreads requests over both Ready endpoints', async () => {
  rules.setService('default/web', svc('web', '10.96.0.10'));
  rules.setSlice('default/web-1', slice('web', [[IP.a, true], [IP.b, true]]));
  await rules.sync();
  assert.ok(rules.last!.full, 'the first sync reads the table back and writes it whole');
  const h = await hits(POD('c'), 'http://10.96.0.10/', 30);
  assert.ok(h['pod-a']! > 3 && h['pod-b']! > 3, `both backends answer: ${JSON.stringify(h)}`);
  assert.is((h['pod-a'] ?? 0) + (h['pod-b'] ?? 0), 30, `every request answered: ${JSON.stringify(h)}`);
  // The node itself reaches it too (output hook, masqueraded).
  assert.match(await get(NODE, 'http://10.96.0.10/'), /^pod-[ab]$/);
});

t('an endpoint that stops being Ready gets no new connections; back when Ready again', async () => {
  rules.setSlice('default/web-1', slice('web', [[IP.a, true], [IP.b, false]]));
  await rules.sync();
  assert.not.ok(rules.last!.full, 'a change is written incrementally');
  assert.equal(await hits(POD('c'), 'http://10.96.0.10/', 10), { 'pod-a': 10 });
  rules.setSlice('default/web-1', slice('web', [[IP.a, true], [IP.b, true]]));
  await rules.sync();
  const h = await hits(POD('c'), 'http://10.96.0.10/', 20);
  assert.ok(h['pod-b']! > 0, JSON.stringify(h));
});

t('a pod reaches itself through its Service (hairpin)', async () => {
  rules.setService('default/self', svc('self', '10.96.0.11'));
  rules.setSlice('default/self-1', slice('self', [[IP.a, true]]));
  await rules.sync();
  assert.is(await get(POD('a'), 'http://10.96.0.11/'), 'pod-a');
});

t('NodePort answers on the node address, from pods and from the node', async () => {
  rules.setService('default/np', svc('np', '10.96.0.12', { type: 'NodePort', externalTrafficPolicy: 'Cluster' }, [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 } as never]));
  rules.setSlice('default/np-1', slice('np', [[IP.b, true]]));
  await rules.sync();
  assert.is(await get(POD('c'), `http://${NODE_IP}:30080/`), 'pod-b');
  assert.is(await get(NODE, `http://${NODE_IP}:30080/`), 'pod-b');
  assert.is(await get(POD('c'), 'http://10.96.0.12/'), 'pod-b');
});

t('sessionAffinity ClientIP keeps a client on one backend', async () => {
  rules.setService('default/sticky', svc('sticky', '10.96.0.13', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
  rules.setSlice('default/sticky-1', slice('sticky', [[IP.a, true], [IP.b, true]]));
  await rules.sync();
  const h = await hits(POD('c'), 'http://10.96.0.13/', 12);
  assert.is(Object.keys(h).length, 1, `one backend: ${JSON.stringify(h)}`);
  assert.match(Object.keys(h)[0]!, /^pod-[ab]$/);
});

t('a Service without Ready endpoints refuses connections at once', async () => {
  rules.setService('default/empty', svc('empty', '10.96.0.14'));
  rules.setSlice('default/empty-1', slice('empty', [[IP.a, false]]));
  await rules.sync();
  const started = Date.now();
  assert.is(await get(POD('c'), 'http://10.96.0.14/'), 'refused');
  assert.ok(Date.now() - started < 1500, 'refused, not timed out');
});

t('a deleted Service leaves nothing behind: its chains, map elements and hairpin pairs go', async () => {
  const before = await listTable();
  rules.setService('default/gone', svc('gone', '10.96.0.15', { type: 'NodePort', externalTrafficPolicy: 'Cluster' }, [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30090 } as never]));
  // Three endpoints: no other Service has as many, so the shared chains it jumps to are its alone (and must go with it).
  rules.setSlice('default/gone-1', slice('gone', [['10.251.7.97', true], ['10.251.7.98', true], ['10.251.7.99', true]]));
  await rules.sync();
  let table = await listTable();
  assert.match(table, '10.96.0.15 . tcp . 80 : goto pick-cluster-ip-3');
  assert.match(table, 'tcp . 30090 : goto pick-nodeport-3');
  assert.match(table, '10.251.7.99 . 10.251.7.99');
  const chains = [...table.matchAll(/chain ((?:svc|ext)-[0-9a-f]+|pick-[a-z-]+-\d+) \{/g)].map((m) => m[1]!);
  assert.ok(chains.includes('pick-cluster-ip-3') && chains.includes('pick-nodeport-3'), 'its shared chains are there');
  rules.setService('default/gone', undefined);
  rules.setSlice('default/gone-1', undefined);
  await rules.sync();
  assert.not.ok(rules.last!.full);
  table = await listTable();
  assert.not.match(table, '10.96.0.15');
  assert.not.match(table, '30090');
  assert.not.match(table, '10.251.7.99');
  for (const c of chains) if (!before.includes(c)) assert.not.match(table, c, `chain ${c} deleted`);
});

t('a restarted proxy rewrites the same table: identical rules, no duplicates, stale leftovers gone', async () => {
  const before = await listTable();
  // Leftovers a crashed older proxy could have left: a stale chain and a stale map element.
  await run(nft[0]!, [...nft.slice(1), '-f', '-'], { input: `add chain ip ${TABLE} svc-deadbeefdeadbeef\nadd rule ip ${TABLE} svc-deadbeefdeadbeef drop\nadd element ip ${TABLE} service-ips { 10.96.0.99 . tcp . 80 : goto svc-deadbeefdeadbeef }\n` });
  assert.match(await listTable(), 'svc-deadbeefdeadbeef');
  const restarted = new ServiceRules({ table: TABLE, nodeName: 'node-a', clusterCidr: `${SUBNET}.0/24`, nft }, log);
  for (const [k, s] of [['default/web', svc('web', '10.96.0.10')], ['default/self', svc('self', '10.96.0.11')], ['default/np', svc('np', '10.96.0.12', { type: 'NodePort', externalTrafficPolicy: 'Cluster' }, [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 } as never])], ['default/sticky', svc('sticky', '10.96.0.13', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })], ['default/empty', svc('empty', '10.96.0.14')]] as const) restarted.setService(k, s);
  restarted.setSlice('default/web-1', slice('web', [[IP.a, true], [IP.b, true]]));
  restarted.setSlice('default/self-1', slice('self', [[IP.a, true]]));
  restarted.setSlice('default/np-1', slice('np', [[IP.b, true]]));
  restarted.setSlice('default/sticky-1', slice('sticky', [[IP.a, true], [IP.b, true]]));
  restarted.setSlice('default/empty-1', slice('empty', [[IP.a, false]]));
  await restarted.sync();
  await restarted.sync();
  const after = await listTable();
  // Affinity sets hold client addresses with timeouts: compare without elements' expiry.
  // Elements are listed in the kernel's hash order: compare them as sets.
  const norm = (s: string) => s.replace(/ expires [0-9hms.]+/g, '').replace(/ timeout [0-9hms]+(?= [,}])/g, '')
    .replace(/elements = \{([^}]*)\}/g, (_m, inner: string) => `elements = { ${inner.split(',').map((x) => x.trim()).sort().join(', ')} }`);
  assert.is(norm(after), norm(before));
  assert.not.match(after, 'deadbeef');
  const tx = transaction(TABLE, await readTable(TABLE, { nft }), desiredState([], [], { table: TABLE, nodeName: 'node-a' }));
  assert.match(tx, /delete chain ip stevedore-proxy svc-/, 'a full sync deletes chains nothing wants');
  // a second sync with nothing changed writes nothing
  assert.is(restarted.last!.lines, 0);
});

t('the rules stay and keep working when the proxy process is SIGKILLed', async () => {
  // A child process programs one more Service and is killed: the kernel keeps the table.
  const script = fileURLToPath(new URL('./helpers/service-proxy-child.js', import.meta.url));
  const child = spawn(process.execPath, [script, TABLE, NODE, IP.b], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => { if (String(d).includes('synced')) resolve(); });
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.is(await get(POD('c'), 'http://10.96.0.20/'), 'pod-b');
  assert.match(await get(POD('c'), 'http://10.96.0.10/'), /^pod-[ab]$/);
});

t('removeProxyTable deletes our table and nothing else', async () => {
  await run(nft[0]!, [...nft.slice(1), 'add', 'table', 'ip', 'someone-else']);
  await removeProxyTable(TABLE, { nft });
  await removeProxyTable(TABLE, { nft }); // twice is fine
  const ruleset = (await run(nft[0]!, [...nft.slice(1), 'list', 'ruleset'])).stdout;
  assert.not.match(ruleset, TABLE);
  assert.match(ruleset, 'table ip someone-else');
  assert.not.match(await get(POD('c'), 'http://10.96.0.10/', 1), /pod-/);
  const left = await readTable(TABLE, { nft });
  assert.ok('names' in left && left.names.chains.size === 0 && left.names.sets.size === 0);
});

t('hairpin pairs only for endpoints that can be clients here (this node, or no node); the table keeps a few chains whatever the Service count', () => {
  const services = Array.from({ length: 50 }, (_, i) => svc(`s${i}`, `10.96.1.${i + 1}`));
  const slices = services.map((s, i): EndpointSliceLike => ({
    metadata: { namespace: 'default', labels: { 'kubernetes.io/service-name': s.metadata!.name! } }, addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: [
      { addresses: [`10.88.1.${i + 1}`], conditions: { ready: true }, nodeName: 'node-a' },
      { addresses: [`10.88.2.${i + 1}`], conditions: { ready: true }, nodeName: 'node-b' },
      { addresses: [`10.88.3.${i + 1}`], conditions: { ready: true } },
    ],
  }));
  const tx = transaction(TABLE, { names: { chains: new Set(), sets: new Set() } }, desiredState(services, slices, { table: TABLE, nodeName: 'node-a' }));
  assert.match(tx, '10.88.1.7 . 10.88.1.7');
  assert.match(tx, '10.88.3.7 . 10.88.3.7');
  assert.not.match(tx, '10.88.2.7 . 10.88.2.7', 'an endpoint of another node is never a client of this one');
  assert.match(tx, '10.96.1.7 . tcp . 80 . 2 : 10.88.3.7 . 8080', 'every endpoint is still a DNAT target');
  const chains = [...tx.matchAll(/^add chain ip \S+ (\S+)/gm)].map((m) => m[1]!);
  assert.equal(chains.filter((c) => c.startsWith('pick-')), ['pick-cluster-ip-3'], 'one shared chain for 50 Services of 3 endpoints');
});

t('an nft that refuses a transaction, or cannot start: errors that say which and why', async () => {
  const refused = await applyTransaction(`add table ip ${TABLE}-bad\nadd chain ip ${TABLE}-bad c { this is not nft }\n`, { nft }).then(() => undefined, (err: Error) => err.message);
  assert.match(refused ?? 'applied', /^nft -f - failed \(1\): .*syntax error.*\(transaction starting: add table ip stevedore-proxy-bad/s);
  assert.not.match((await inNs(NODE, ['nft', 'list', 'tables'])).stdout, `${TABLE}-bad`, 'a refused transaction leaves nothing');
  const missing = await readTable(TABLE, { nft: ['/nonexistent/nft'] }).then(() => undefined, (err: Error) => err.message);
  // The three listings run at once: whichever fails first is reported.
  assert.match(missing ?? 'listed', /^nft -j list (chains|sets|maps) ip failed: \/nonexistent\/nft: .*ENOENT/);
});

t.run();
