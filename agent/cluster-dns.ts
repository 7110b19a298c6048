/**
 * Cluster DNS, served by the agent on every node (CoreDNS's kubernetes plugin,
 * the records of the DNS specification for Kubernetes), from the Services and
 * EndpointSlices the node's service proxy already keeps: no second watch, no
 * network hop to a central server, and answers keep coming while the control
 * plane is away. Pods reach it at the `--cluster-dns` address, which the proxy
 * table redirects to this server's port on the node.
 *
 * Answers (TTL 5 s, authoritative) under the cluster domain (cluster.local):
 * - `SVC.NS.svc.DOMAIN` A: the cluster IP; headless: each ready endpoint (all of them
 *   with publishNotReadyAddresses); ExternalName: a CNAME;
 * - `HOST.SVC.NS.svc.DOMAIN` A: the endpoint with that hostname (a pod's
 *   hostname + subdomain, StatefulSet pods), or whose address dashed is HOST;
 * - `_PORT._PROTO.SVC.NS.svc.DOMAIN` SRV for named ports (headless: one per
 *   endpoint, its A record in the additional section);
 * - PTR for cluster IPs and endpoint addresses;
 * - a name that does not exist: NXDOMAIN with the zone's SOA; a name that exists
 *   without records of that type (AAAA: services are IPv4): NOERROR with the SOA.
 * Every other name (and reverse names we do not know) is forwarded to the node's
 * resolvers (its resolv.conf; systemd-resolved's stub replaced by its upstreams).
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as fs from 'node:fs';
import dnsPacket from 'dns-packet';
import type { Answer, Packet, Question } from 'dns-packet';
import type { Logger } from '../common/log.js';
import type { EndpointSliceLike, ServiceLike } from './service-rules.js';

const TTL = 5;
const FLAG_AA = 1 << 10;
const FLAG_RD = 1 << 8;
const FLAG_RA = 1 << 7;
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

type ServiceRecord = ServiceLike & { spec?: ServiceLike['spec'] & { externalName?: string; publishNotReadyAddresses?: boolean } };
type SliceRecord = EndpointSliceLike & { endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean | null }; hostname?: string; nodeName?: string }> | null };

interface Name { a: string[]; cname?: string; srv: Array<{ priority: number; weight: number; port: number; target: string }>; ptr: string[] }

const dashed = (ip: string) => ip.replace(/\./g, '-');
const reverse = (ip: string) => `${ip.split('.').reverse().join('.')}.in-addr.arpa`;

/** Every name the cluster domain has, built once per change of the data. */
export class ClusterDnsIndex {
  readonly names = new Map<string, Name>();
  constructor(readonly domain: string, services: Iterable<ServiceRecord>, slices: Iterable<SliceRecord>) {
    const bySvc = new Map<string, SliceRecord[]>();
    for (const s of slices) {
      const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
      if (!svc || s.addressType !== 'IPv4') continue;
      const k = `${s.metadata?.namespace}/${svc}`;
      (bySvc.get(k) ?? bySvc.set(k, []).get(k)!).push(s);
    }
    this.touch(`svc.${domain}`);
    for (const svc of services) {
      const ns = svc.metadata?.namespace, name = svc.metadata?.name;
      if (!ns || !name) continue;
      const spec = svc.spec ?? {};
      const base = `${name}.${ns}.svc.${domain}`;
      this.touch(`${ns}.svc.${domain}`);
      const rec = this.touch(base);
      if (spec.type === 'ExternalName') {
        if (spec.externalName) rec.cname = spec.externalName.replace(/\.$/, '').toLowerCase();
        continue;
      }
      const headless = spec.clusterIP === 'None';
      if (!headless) {
        if (spec.clusterIP && IPV4.test(spec.clusterIP)) {
          rec.a.push(spec.clusterIP);
          this.touch(reverse(spec.clusterIP)).ptr.push(base);
        }
        for (const p of spec.ports ?? []) {
          if (!p.name) continue;
          this.touch(`_${p.name}._${(p.protocol ?? 'TCP').toLowerCase()}.${base}`).srv.push({ priority: 0, weight: 100, port: p.port ?? 0, target: base });
        }
      }
      const publishNotReady = spec.publishNotReadyAddresses === true;
      for (const slice of bySvc.get(`${ns}/${name}`) ?? []) {
        for (const e of slice.endpoints ?? []) {
          if (!publishNotReady && e.conditions?.ready === false) continue;
          for (const ip of e.addresses ?? []) {
            if (!IPV4.test(ip)) continue;
            const host = `${e.hostname ?? dashed(ip)}.${base}`;
            this.touch(reverse(ip)).ptr.push(host);
            if (!headless) continue;
            if (!rec.a.includes(ip)) rec.a.push(ip);
            const h = this.touch(host);
            if (!h.a.includes(ip)) h.a.push(ip);
            for (const p of slice.ports ?? []) {
              if (!p.name || !p.port) continue;
              this.touch(`_${p.name}._${(p.protocol ?? 'TCP').toLowerCase()}.${base}`).srv.push({ priority: 0, weight: 100, port: p.port, target: host });
            }
          }
        }
      }
    }
  }

  private touch(name: string): Name {
    let n = this.names.get(name);
    if (!n) this.names.set(name, (n = { a: [], srv: [], ptr: [] }));
    return n;
  }

  /** Whether this server answers for the name (the cluster domain, or a reverse name it knows). */
  authoritativeFor(qname: string): boolean {
    return qname === this.domain || qname.endsWith(`.${this.domain}`) || (qname.endsWith('.in-addr.arpa') && this.names.has(qname));
  }

  soa(): Answer {
    return { type: 'SOA', name: this.domain, ttl: TTL, data: { mname: `ns.dns.${this.domain}`, rname: `hostmaster.${this.domain}`, serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: TTL } } as Answer;
  }

  /** Answers for one question of ours: rcode, answers, additionals. */
  answer(q: Question): { rcode: number; answers: Answer[]; additionals: Answer[] } {
    const qname = q.name.toLowerCase().replace(/\.$/, '');
    const n = this.names.get(qname);
    const answers: Answer[] = [];
    const additionals: Answer[] = [];
    if (!n && qname !== this.domain) return { rcode: RCODE.NXDOMAIN, answers, additionals };
    if (!n) return { rcode: RCODE.NOERROR, answers, additionals };
    const any = (q.type as string) === 'ANY';
    if (n.cname) answers.push({ type: 'CNAME', name: q.name, ttl: TTL, data: n.cname } as Answer);
    if (q.type === 'A' || any) for (const ip of n.a) answers.push({ type: 'A', name: q.name, ttl: TTL, data: ip } as Answer);
    if (q.type === 'SRV' || any) {
      for (const s of n.srv) {
        answers.push({ type: 'SRV', name: q.name, ttl: TTL, data: s } as Answer);
        for (const ip of this.names.get(s.target)?.a ?? []) additionals.push({ type: 'A', name: s.target, ttl: TTL, data: ip } as Answer);
      }
    }
    if (q.type === 'PTR' || any) for (const t of n.ptr) answers.push({ type: 'PTR', name: q.name, ttl: TTL, data: t } as Answer);
    return { rcode: RCODE.NOERROR, answers, additionals };
  }
}

/** The node's resolvers, as the kubelet reads them (systemd-resolved's 127.0.0.53 stub means its upstream list). */
export function nodeNameservers(): string[] {
  let text = '';
  try { text = fs.readFileSync('/etc/resolv.conf', 'utf8'); } catch { return []; }
  if (/^\s*nameserver\s+127\.0\.0\.53\b/m.test(text)) {
    try { text = fs.readFileSync('/run/systemd/resolve/resolv.conf', 'utf8'); } catch { /* keep the stub */ }
  }
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]!);
}

export interface ClusterDnsOptions {
  domain: string;
  /** Address and port to listen on (UDP and TCP). */
  host: string;
  port: number;
  /** Resolvers for names outside the cluster domain, `ADDRESS` or `IPv4:PORT` (default: the node's). */
  upstreams?: string[];
  /** The data: called when `invalidate()` says it changed. */
  data: () => { services: Iterable<ServiceRecord>; slices: Iterable<SliceRecord> };
}

export class ClusterDns {
  private index: ClusterDnsIndex | undefined;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly upstreams: string[];
  /** Queries answered (metrics, tests). */
  queries = 0;

  constructor(private readonly opts: ClusterDnsOptions, private readonly log: Logger) {
    this.upstreams = (opts.upstreams ?? nodeNameservers()).filter((s) => s !== opts.host);
  }

  /**
   * Encoded answers by query (every byte but the id): a repeated question costs a copy, not a
   * decode and an encode. Only answers of our own (not forwarded ones); emptied on every change.
   */
  private readonly answered = new Map<string, Buffer>();

  /** The Services or EndpointSlices changed: the index is rebuilt at the next query. */
  invalidate(): void {
    this.index = undefined;
    this.answered.clear();
  }

  private current(): ClusterDnsIndex {
    if (!this.index) {
      const d = this.opts.data();
      this.index = new ClusterDnsIndex(this.opts.domain, d.services, d.slices);
    }
    return this.index;
  }

  async start(): Promise<void> {
    // A larger receive buffer: a burst of queries waits in the kernel while a slow moment (a GC, an index
    // rebuild) passes, instead of being dropped (and retried by the client seconds later).
    // Replies go to the address a query came from, always an IP literal: no resolver step (Node's default
    // lookup defers every send by a tick to "resolve" it).
    const udp = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20, lookup: (address, _family, callback) => (callback as (err: null, address: string, family: number) => void)(null, address, 4) });
    udp.on('message', (msg, rinfo) => {
      // The common case, a question answered before, is answered right here: no promise, no decode.
      const cached = this.cachedReply(msg);
      if (cached) { udp.send(cached, rinfo.port, rinfo.address); return; }
      void this.handle(msg).then((reply) => { if (reply) udp.send(reply, rinfo.port, rinfo.address); }, (err) => this.log.warn({ err: String(err) }, 'cluster DNS query failed'));
    });
    await new Promise<void>((resolve, reject) => { udp.once('error', reject); udp.bind(this.opts.port, this.opts.host, () => { udp.off('error', reject); resolve(); }); });
    udp.on('error', (err) => this.log.warn({ err: String(err) }, 'cluster DNS socket error'));
    this.udp = udp;
    const tcp = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          void this.handle(msg).then((reply) => {
            if (!reply) return;
            const len = Buffer.alloc(2);
            len.writeUInt16BE(reply.length);
            sock.write(Buffer.concat([len, reply]));
          }, () => sock.destroy());
        }
      });
      sock.on('error', () => undefined);
      sock.setTimeout(10_000, () => sock.destroy());
    });
    await new Promise<void>((resolve, reject) => { tcp.once('error', reject); tcp.listen(this.opts.port, this.opts.host, () => { tcp.off('error', reject); resolve(); }); });
    this.tcp = tcp;
    this.log.info({ address: `${this.opts.host}:${this.opts.port}`, domain: this.opts.domain, upstreams: this.upstreams }, 'cluster DNS listening');
  }

  async close(): Promise<void> {
    this.udp?.close();
    await new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r()));
  }

  /** The reply to a question answered before (its encoded answer with this query's id), if any. */
  private cachedReply(msg: Buffer): Buffer | undefined {
    if (msg.length <= 12 || msg.length >= 512 || this.answered.size === 0) return undefined;
    const hit = this.answered.get(msg.toString('latin1', 2));
    if (!hit) return undefined;
    this.queries++;
    const reply = Buffer.allocUnsafe(hit.length);
    hit.copy(reply, 2, 2);
    reply[0] = msg[0]!;
    reply[1] = msg[1]!;
    return reply;
  }

  /** One query in, one reply out (undefined: not a query worth answering). */
  async handle(msg: Buffer): Promise<Buffer | undefined> {
    const cached = this.cachedReply(msg);
    if (cached) return cached;
    const key = msg.length > 12 && msg.length < 512 ? msg.toString('latin1', 2) : undefined;
    let query: Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return undefined;
    }
    if (query.type !== 'query') return undefined;
    this.queries++;
    const rd = (query.flags ?? 0) & FLAG_RD;
    const q = query.questions?.[0];
    const reply = (rcode: number, answers: Answer[] = [], authorities: Answer[] = [], additionals: Answer[] = [], aa = true) => dnsPacket.encode({
      type: 'response', id: query.id, flags: (aa ? FLAG_AA : 0) | rd | FLAG_RA | rcode, questions: query.questions, answers, authorities, additionals,
    });
    if (!q || (query.questions?.length ?? 0) !== 1) return reply(RCODE.NOTIMP, [], [], [], false);
    const index = this.current();
    const qname = q.name.toLowerCase().replace(/\.$/, '');
    if (!index.authoritativeFor(qname)) return this.forward(msg, query, () => reply(RCODE.SERVFAIL, [], [], [], false));
    const r = index.answer(q);
    const out = reply(r.rcode, r.answers, r.answers.length ? [] : [index.soa()], r.additionals);
    if (key !== undefined) {
      if (this.answered.size >= 10_000) this.answered.clear();
      this.answered.set(key, out);
    }
    return out;
  }

  private forward(msg: Buffer, query: Packet, servfail: () => Buffer): Promise<Buffer> {
    const tryServer = (i: number): Promise<Buffer> => {
      const upstream = this.upstreams[i];
      if (!upstream) return Promise.resolve(servfail());
      // "ADDRESS" or "IPv4:PORT" (tests run a resolver of their own on a high port)
      const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d+)$/.exec(upstream);
      const server = m ? m[1]! : upstream;
      const port = m ? Number(m[2]) : 53;
      return new Promise<Buffer>((resolve) => {
        const sock = dgram.createSocket(server.includes(':') ? 'udp6' : 'udp4');
        const done = (b: Buffer | undefined) => {
          clearTimeout(timer);
          sock.close();
          resolve(b ?? tryServer(i + 1));
        };
        const timer = setTimeout(() => done(undefined), 2000);
        sock.on('message', (m) => { if (m.length >= 2 && m.readUInt16BE(0) === query.id) done(m); });
        sock.on('error', () => done(undefined));
        sock.send(msg, port, server);
      });
    };
    return tryServer(0);
  }
}
