/**
 * Services bench (issue 17): the node's service proxy and cluster DNS.
 *
 * Proxy: in a network namespace of its own (nothing touches the host's ruleset), N Services
 * with 10 endpoints each are programmed into the table (the first, full sync); then one
 * endpoint change at a time (an endpoint turns unready, then ready again) is timed from the
 * call until `nft` returned (the rule is in the kernel), and a full resync (the table read
 * back and rewritten whole, what a restarted agent does) is timed. N = 10, 1 000, 5 000.
 *
 * DNS: our server (agent/cluster-dns.ts, in a child process of its own) and dnsmasq
 * (Debian's, `--addn-hosts` with the same names), both on loopback, one after the other,
 * under the same load: C queries in flight over UDP for D seconds, random names among 1 000
 * Service names; queries per second and p50/p99 latency.
 *
 *   node dist/bench/services.js [--sizes 10,1000,5000] [--changes 20] [--dns-seconds 5] [--dns-concurrency 32]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { ServiceRules } from '../agent/service-proxy.js';
import type { EndpointSliceLike, ServiceLike } from '../agent/service-rules.js';
import { ClusterDns } from '../agent/cluster-dns.js';
import { createLogger } from '../common/log.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const log = createLogger('bench', 'silent');

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { out += d; });
    c.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;

function data(n: number): { services: Array<[string, ServiceLike]>; slices: Array<[string, EndpointSliceLike]> } {
  const services: Array<[string, ServiceLike]> = [];
  const slices: Array<[string, EndpointSliceLike]> = [];
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    services.push([`default/${name}`, { metadata: { namespace: 'default', name }, spec: { type: 'ClusterIP', clusterIP: `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`, ports: [{ name: 'http', protocol: 'TCP', port: 80 }] } }]);
    slices.push([`default/${name}-x`, slice(name, i, () => true)]);
  }
  return { services, slices };
}

function slice(name: string, i: number, ready: (j: number) => boolean): EndpointSliceLike {
  return {
    metadata: { namespace: 'default', labels: { 'kubernetes.io/service-name': name } }, addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: Array.from({ length: 10 }, (_, j) => ({ addresses: [`10.${100 + Math.floor(i / 250)}.${i % 250}.${j + 1}`], conditions: { ready: ready(j) }, nodeName: 'n' })),
  };
}

async function proxyBench(sizes: number[], changes: number): Promise<string[]> {
  const ns = `bsvc-${randomBytes(3).toString('hex')}`;
  const lines: string[] = ['| Services (10 endpoints each) | first full sync | one change → in the kernel: p50 / p95 / max | full resync (read back + rewrite) | nft lines of a change |', '|---|---|---|---|---|'];
  await run('ip', ['netns', 'add', ns]);
  try {
    for (const n of sizes) {
      const table = `bench-${n}`;
      const rules = new ServiceRules({ table, nodeName: 'n', clusterCidr: '10.100.0.0/14', nft: ['ip', 'netns', 'exec', ns, 'nft'] }, log);
      const d = data(n);
      for (const [k, v] of d.services) rules.setService(k, v);
      for (const [k, v] of d.slices) rules.setSlice(k, v);
      let t = performance.now();
      await rules.sync();
      const first = performance.now() - t;
      const times: number[] = [];
      let changeLines = 0;
      for (let c = 0; c < changes; c++) {
        const i = Math.floor(Math.random() * n);
        const down = c % 2 === 0;
        t = performance.now();
        rules.setSlice(`default/svc-${i}-x`, slice(`svc-${i}`, i, (j) => !(down && j === 0)));
        await rules.sync();
        times.push(performance.now() - t);
        changeLines = Math.max(changeLines, rules.last!.lines);
        if (down) rules.setSlice(`default/svc-${i}-x`, slice(`svc-${i}`, i, () => true));
        await rules.sync();
      }
      rules.forceFull();
      t = performance.now();
      await rules.sync();
      const full = performance.now() - t;
      lines.push(`| ${n.toLocaleString('en')} | ${ms(first)} | ${ms(pct(times, 50))} / ${ms(pct(times, 95))} / ${ms(Math.max(...times))} | ${ms(full)} | ${changeLines} |`);
      process.stderr.write(`${lines[lines.length - 1]}\n`);
      await run('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'ip', table]);
    }
  } finally {
    await run('ip', ['netns', 'del', ns]);
  }
  return lines;
}

// ------------------------------------------------------------------ DNS

const NAMES = 1000;
const names = Array.from({ length: NAMES }, (_, i) => `svc-${i}.default.svc.cluster.local`);

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  s.close();
  return port;
}

async function load(port: number, seconds: number, concurrency: number): Promise<{ qps: number; p50: number; p99: number; errors: number }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const pending = new Map<number, number>();
  const lat: number[] = [];
  let errors = 0;
  let nextId = 1;
  const end = performance.now() + seconds * 1000;
  let done: () => void;
  const finished = new Promise<void>((r) => { done = r; });
  const send = () => {
    if (performance.now() > end) {
      if (pending.size === 0) done();
      return;
    }
    const id = nextId = (nextId % 65535) + 1;
    pending.set(id, performance.now());
    sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: names[Math.floor(Math.random() * NAMES)]! }] }), port, '127.0.0.1');
  };
  sock.on('message', (m) => {
    const id = m.readUInt16BE(0);
    const t = pending.get(id);
    if (t === undefined) return;
    pending.delete(id);
    lat.push(performance.now() - t);
    if ((m[3]! & 0x0f) !== 0 || m.readUInt16BE(6) === 0) errors++;
    send();
  });
  // Lost datagrams: count them and keep the window full.
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [id, t] of pending) if (now - t > 1000) { pending.delete(id); errors++; send(); }
  }, 200);
  const started = performance.now();
  for (let i = 0; i < concurrency; i++) send();
  await finished;
  clearInterval(sweeper);
  sock.close();
  const elapsed = (performance.now() - started) / 1000;
  return { qps: lat.length / elapsed, p50: pct(lat, 50), p99: pct(lat, 99), errors };
}

async function waitAnswer(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await load(port, 0.05, 1).catch(() => undefined);
    if (r && r.qps > 0 && r.errors === 0) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no DNS answers on 127.0.0.1:${port}`);
}

async function dnsBench(seconds: number, concurrency: number): Promise<string[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-dns-bench-'));
  const children: ChildProcess[] = [];
  try {
    const ourPort = await freeUdpPort();
    const ours = spawn(process.execPath, [fileURLToPath(import.meta.url), 'dns-server', String(ourPort)], { stdio: 'inherit' });
    children.push(ours);
    const hosts = path.join(dir, 'hosts');
    await fs.writeFile(hosts, names.map((n, i) => `10.96.${Math.floor(i / 250)}.${(i % 250) + 1} ${n}\n`).join(''));
    const theirPort = await freeUdpPort();
    const dnsmasq = spawn('dnsmasq', ['--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hosts}`, '--listen-address=127.0.0.1', '--bind-interfaces', `--port=${theirPort}`, '--cache-size=10000', '--user=root', `--pid-file=${path.join(dir, 'dnsmasq.pid')}`], { stdio: 'inherit' });
    children.push(dnsmasq);
    await waitAnswer(ourPort);
    await waitAnswer(theirPort);
    const lines = [`| server (${NAMES.toLocaleString('en')} names, ${concurrency} queries in flight, ${seconds} s, UDP on loopback) | queries/s | p50 | p99 | errors |`, '|---|---|---|---|---|'];
    for (const [label, port] of [['stevedore cluster DNS (agent/cluster-dns.ts)', ourPort], ['dnsmasq 2.90 (hosts file)', theirPort], ['stevedore cluster DNS (again)', ourPort], ['dnsmasq (again)', theirPort]] as const) {
      const r = await load(port, seconds, concurrency);
      lines.push(`| ${label} | ${Math.round(r.qps).toLocaleString('en')} | ${r.p50.toFixed(3)} ms | ${r.p99.toFixed(3)} ms | ${r.errors} |`);
      process.stderr.write(`${lines[lines.length - 1]}\n`);
    }
    return lines;
  } finally {
    for (const c of children) if (c.pid) try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ }
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function dnsServer(port: number): Promise<void> {
  const d = data(NAMES);
  const dns = new ClusterDns({ domain: 'cluster.local', host: '127.0.0.1', port, upstreams: [], data: () => ({ services: d.services.map(([, s]) => s), slices: d.slices.map(([, s]) => s) }) }, log);
  await dns.start();
  process.on('SIGTERM', () => { void dns.close().then(() => process.exit(0)); });
}

if (process.argv[2] === 'dns-server') {
  await dnsServer(Number(process.argv[3]));
} else {
  const sizes = arg('sizes', '10,1000,5000').split(',').map(Number);
  const proxy = await proxyBench(sizes, Number(arg('changes', '20')));
  const dns = await dnsBench(Number(arg('dns-seconds', '5')), Number(arg('dns-concurrency', '32')));
  process.stdout.write(`${proxy.join('\n')}\n\n${dns.join('\n')}\n`);
}
