/**
 * Cluster DNS (agent/cluster-dns.ts) over real UDP and TCP sockets on loopback, with the
 * dns-packet library on the client side: Service A records, headless Services (each ready
 * endpoint, publishNotReadyAddresses), hostname.subdomain names, SRV for named ports, PTR,
 * ExternalName CNAMEs, NXDOMAIN and NODATA with the SOA, and forwarding of other names to an
 * upstream resolver (one this test runs on loopback).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, Packet, RecordType } from 'dns-packet';
import { ClusterDns } from '../agent/cluster-dns.js';
import { createLogger } from '../common/log.js';

const t = suite('cluster DNS: records of Services and EndpointSlices, forwarding');
const services = [
  { metadata: { namespace: 'default', name: 'web' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.20', ports: [{ name: 'http', protocol: 'TCP', port: 80 }, { protocol: 'TCP', port: 81 }] } },
  { metadata: { namespace: 'default', name: 'db' }, spec: { type: 'ClusterIP', clusterIP: 'None', ports: [{ name: 'cql', protocol: 'TCP', port: 9042 }] } },
  { metadata: { namespace: 'other', name: 'early' }, spec: { type: 'ClusterIP', clusterIP: 'None', publishNotReadyAddresses: true, ports: [{ name: 'p', protocol: 'TCP', port: 1 }] } },
  { metadata: { namespace: 'default', name: 'ext' }, spec: { type: 'ExternalName', externalName: 'example.org' } },
];
const slice = (ns: string, svc: string, port: [string, number], eps: Array<{ ip: string; ready: boolean; hostname?: string }>) => ({
  metadata: { namespace: ns, labels: { 'kubernetes.io/service-name': svc } }, addressType: 'IPv4', ports: [{ name: port[0], protocol: 'TCP', port: port[1] }],
  endpoints: eps.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready }, ...(e.hostname ? { hostname: e.hostname } : {}) })),
});
const slices = [
  slice('default', 'web', ['http', 8080], [{ ip: '10.88.0.5', ready: true }]),
  slice('default', 'db', ['cql', 9042], [{ ip: '10.88.0.11', ready: true, hostname: 'db-0' }, { ip: '10.88.0.12', ready: true, hostname: 'db-1' }, { ip: '10.88.0.13', ready: false, hostname: 'db-2' }]),
  slice('other', 'early', ['p', 1], [{ ip: '10.88.0.21', ready: false }]),
];

let dns: ClusterDns;
let upstream: dgram.Socket;
let port = 0;
const upstreamQueries: string[] = [];

t.before(async () => {
  upstream = dgram.createSocket('udp4');
  upstream.on('message', (m, r) => {
    const q = dnsPacket.decode(m);
    upstreamQueries.push(q.questions![0]!.name);
    upstream.send(dnsPacket.encode({ type: 'response', id: q.id, flags: 1 << 7, questions: q.questions, answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: '192.0.2.7' }] }), r.port, r.address);
  });
  await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
  port = (probe.address() as net.AddressInfo).port;
  probe.close();
  dns = new ClusterDns({ domain: 'cluster.local', host: '127.0.0.1', port, upstreams: [`127.0.0.1:${(upstream.address() as net.AddressInfo).port}`], data: () => ({ services, slices }) }, createLogger('test', 'silent'));
  await dns.start();
});
t.after(async () => { await dns?.close(); upstream?.close(); });

/** A decoded reply: dns-packet's decoder also sets rcode and the header flags, which its types leave out. */
type Reply = Packet & { rcode?: string; flag_aa?: boolean; answers?: Array<Answer & { ttl?: number }> };

function query(name: string, type: RecordType): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const id = Math.floor(Math.random() * 65535);
    const timer = setTimeout(() => { sock.close(); reject(new Error(`no answer for ${name} ${type}`)); }, 3000);
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      const reply = dnsPacket.decode(m) as Reply;
      if (reply.id !== id) reject(new Error(`reply id ${reply.id} for query id ${id}`));
      else resolve(reply);
    });
    sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), port, '127.0.0.1');
  });
}
const data = (p: Packet, type = 'A') => (p.answers ?? []).filter((a: Answer) => a.type === type).map((a: Answer) => (a as { data: unknown }).data);

t('a Service name answers its cluster IP (authoritative, TTL 5)', async () => {
  const r = await query('web.default.svc.cluster.local', 'A');
  assert.is(r.rcode, 'NOERROR');
  assert.ok(r.flag_aa);
  assert.equal(data(r), ['10.96.0.20']);
  assert.is(r.answers![0]!.ttl, 5);
  // case does not matter, nor a trailing dot
  assert.equal(data(await query('WEB.Default.svc.cluster.local.', 'A')), ['10.96.0.20']);
});

t('a question asked again is answered from the encoded cache with the asker\'s id and the same records', async () => {
  const first = await query('web.default.svc.cluster.local', 'A');
  for (let i = 0; i < 3; i++) {
    const again = await query('web.default.svc.cluster.local', 'A'); // query() rejects a reply whose id is not its own
    assert.equal({ ...again, id: 0 }, { ...first, id: 0 });
  }
});

t('a headless Service answers each Ready endpoint; hostname.subdomain names one pod', async () => {
  assert.equal(data(await query('db.default.svc.cluster.local', 'A')).sort(), ['10.88.0.11', '10.88.0.12']);
  assert.equal(data(await query('db-0.db.default.svc.cluster.local', 'A')), ['10.88.0.11']);
  assert.equal(data(await query('db-1.db.default.svc.cluster.local', 'A')), ['10.88.0.12']);
  const notReady = await query('db-2.db.default.svc.cluster.local', 'A');
  assert.is(notReady.rcode, 'NXDOMAIN');
  // publishNotReadyAddresses: a not-ready pod resolves (a StatefulSet peer finding its seeds before it is ready)
  assert.equal(data(await query('early.other.svc.cluster.local', 'A')), ['10.88.0.21']);
  assert.equal(data(await query('10-88-0-21.early.other.svc.cluster.local', 'A')), ['10.88.0.21']);
});

t('SRV records for named ports: the Service, or each endpoint of a headless one', async () => {
  const r = await query('_http._tcp.web.default.svc.cluster.local', 'SRV');
  assert.equal(data(r, 'SRV'), [{ priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' }]);
  assert.equal(data(r, 'A'), []);
  assert.equal(data(r.additionals ? { answers: r.additionals } as Packet : r), ['10.96.0.20']);
  const h = await query('_cql._tcp.db.default.svc.cluster.local', 'SRV');
  assert.equal(data(h, 'SRV').map((s: any) => `${s.target}:${s.port}`).sort(), ['db-0.db.default.svc.cluster.local:9042', 'db-1.db.default.svc.cluster.local:9042']);
  assert.equal(data({ answers: h.additionals } as Packet).sort(), ['10.88.0.11', '10.88.0.12']);
  assert.is((await query('_x._tcp.web.default.svc.cluster.local', 'SRV')).rcode, 'NXDOMAIN');
});

t('PTR for cluster IPs and endpoint addresses', async () => {
  assert.equal(data(await query('20.0.96.10.in-addr.arpa', 'PTR'), 'PTR'), ['web.default.svc.cluster.local']);
  assert.equal(data(await query('11.0.88.10.in-addr.arpa', 'PTR'), 'PTR'), ['db-0.db.default.svc.cluster.local']);
});

t('ExternalName answers a CNAME', async () => {
  const r = await query('ext.default.svc.cluster.local', 'A');
  assert.equal(data(r, 'CNAME'), ['example.org']);
});

t('a name that does not exist: NXDOMAIN with the SOA; one without that type: NOERROR with the SOA', async () => {
  const nx = await query('nope.default.svc.cluster.local', 'A');
  assert.is(nx.rcode, 'NXDOMAIN');
  assert.is(nx.authorities?.[0]?.type, 'SOA');
  assert.is((nx.authorities![0] as any).data.mname, 'ns.dns.cluster.local');
  const search = await query('example.com.default.svc.cluster.local', 'A');
  assert.is(search.rcode, 'NXDOMAIN', 'a search-path candidate fails fast');
  const nodata = await query('web.default.svc.cluster.local', 'AAAA');
  assert.is(nodata.rcode, 'NOERROR');
  assert.equal(nodata.answers, []);
  assert.is(nodata.authorities?.[0]?.type, 'SOA');
  assert.ok(upstreamQueries.length === 0, 'nothing of the cluster domain went upstream');
});

t('other names are forwarded to the upstream resolver', async () => {
  const r = await query('example.com', 'A');
  assert.equal(data(r), ['192.0.2.7']);
  assert.equal(upstreamQueries, ['example.com']);
  assert.not.ok(r.flag_aa);
});

t('a repeated question is answered from the encoded-answer cache, with its own id; a change empties it', async () => {
  for (let i = 0; i < 3; i++) assert.equal(data(await query('web.default.svc.cluster.local', 'A')), ['10.96.0.20']);
  services[0]!.spec.clusterIP = '10.96.0.21';
  assert.equal(data(await query('web.default.svc.cluster.local', 'A')), ['10.96.0.20'], 'nothing said the data changed');
  dns.invalidate();
  assert.equal(data(await query('web.default.svc.cluster.local', 'A')), ['10.96.0.21']);
  services[0]!.spec.clusterIP = '10.96.0.20';
  dns.invalidate();
});

t('TCP queries are answered too', async () => {
  const reply = await new Promise<Packet>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const msg = dnsPacket.encode({ type: 'query', id: 7, flags: 0, questions: [{ type: 'A', name: 'web.default.svc.cluster.local' }] });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { sock.end(); resolve(dnsPacket.decode(buf.subarray(2))); }
    });
    sock.on('error', reject);
    sock.write(Buffer.concat([len, msg]));
  });
  assert.equal(data(reply), ['10.96.0.20']);
});

t.run();
