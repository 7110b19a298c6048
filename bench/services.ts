/**
 * Services bench (issue 17): the node's service proxy and cluster DNS.
 *
 * Proxy: in a network namespace of its own (nothing touches the host's ruleset), N Services
 * with 10 endpoints each are programmed into the table (the first, full sync); then one
 * endpoint change at a time (an endpoint turns unready, then ready again) is timed from the
 * call until `nft` returned (the rule is in the kernel); then a full resync as a restarted
 * agent does it: a new proxy (nothing cached) reads the table back by names and rewrites it
 * whole in one transaction, timed end to end, with the CPU nft used for it (user + sys,
 * the kernel's work included: a number the machine's load does not inflate).
 * N = 10, 1 000, 5 000.
 *
 * DNS: our server (agent/cluster-dns.ts, in a child process of its own) and dnsmasq
 * (Debian's, `--addn-hosts` with the same names), both on loopback, driven by Debian's
 * `dnsperf` (a C load generator, the same for both), alternating, twice: throughput with C
 * queries in flight for D seconds; then latency at a fixed offered rate (R queries/s, below
 * either server's capacity: a closed loop at saturation only measures its queue, latency =
 * C / throughput), p50/p99/max from dnsperf's per-query times, and each server's CPU per
 * query over that run (from /proc). Random names among 1 000 Service names.
 *
 *   node dist/bench/services.js [--sizes 10,1000,5000] [--changes 20] [--endpoint-nodes 1] [--dns-seconds 5] [--dns-concurrency 32] [--dns-rate 10000]
 *                               [--update-results bench/RESULTS.md]
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
import { replaceResultsSection } from './stats.js';

const BEGIN = '<!-- bench:services:begin -->';
const END = '<!-- bench:services:end -->';

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

/** CPU seconds (user + sys) of this process's children that have exited and been waited for: the nft runs. */
async function childCpu(): Promise<number> {
  const stat = await fs.readFile('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / TICKS; // cutime, cstime (fields 16, 17)
}
/** Total CPU seconds (user + sys) a process has used. */
async function processCpu(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS; // utime, stime (fields 14, 15)
}
const TICKS = 100; // USER_HZ on Linux

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;

/**
 * Endpoints are spread over this many nodes (`--endpoint-nodes`, default 1: all on the node the proxy runs on,
 * the worst case for its hairpin set, which holds this node's endpoints only; 500 puts ~100 of the 50 000 here,
 * a full node).
 */
const ENDPOINT_NODES = Number(arg('endpoint-nodes', '1'));

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
    endpoints: Array.from({ length: 10 }, (_, j) => ({ addresses: [`10.${100 + Math.floor(i / 250)}.${i % 250}.${j + 1}`], conditions: { ready: ready(j) }, nodeName: (i * 10 + j) % ENDPOINT_NODES === 0 ? 'n' : `n${(i * 10 + j) % ENDPOINT_NODES}` })),
  };
}

async function proxyBench(sizes: number[], changes: number): Promise<string[]> {
  const ns = `bsvc-${randomBytes(3).toString('hex')}`;
  const lines: string[] = ['| Services (10 endpoints each) | first full sync | one change → in the kernel: p50 / p95 / max | full resync by a restarted proxy (read back + rewrite) | its CPU: proxy / nft (user + sys) | nft lines of a change |', '|---|---|---|---|---|---|'];
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
      // A restarted agent: a new proxy, nothing cached, the same data, the table as the last one left it.
      const restarted = new ServiceRules({ table, nodeName: 'n', clusterCidr: '10.100.0.0/14', nft: ['ip', 'netns', 'exec', ns, 'nft'] }, log);
      for (const [k, v] of rules.services) restarted.setService(k, v);
      for (const [k, v] of rules.slices) restarted.setSlice(k, v);
      const cpu0 = await childCpu();
      const own0 = process.cpuUsage();
      t = performance.now();
      await restarted.sync();
      const full = performance.now() - t;
      const own = process.cpuUsage(own0);
      const fullCpu = (await childCpu()) - cpu0;
      lines.push(`| ${n.toLocaleString('en')} | ${ms(first)} | ${ms(pct(times, 50))} / ${ms(pct(times, 95))} / ${ms(Math.max(...times))} | ${ms(full)} | ${ms((own.user + own.system) / 1000)} / ${ms(fullCpu * 1000)} | ${changeLines} |`);
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

/** One small Node query (is the server answering yet?). */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => { sock.close(); resolve(false); }, 300);
    sock.on('message', (m) => { clearTimeout(timer); sock.close(); resolve((m[3]! & 0x0f) === 0 && m.readUInt16BE(6) > 0); });
    sock.send(dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: names[0]! }] }), port, '127.0.0.1');
  });
}

async function waitAnswer(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await probe(port)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no DNS answers on 127.0.0.1:${port}`);
}

interface Perf { qps: number; lost: number; latencies: number[] }

/** dnsperf against 127.0.0.1:port; `verbose` collects every query's latency (seconds → ms). */
async function dnsperf(port: number, queries: string, args: string[], verbose: boolean): Promise<Perf> {
  const r = await run('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-c', '1', ...args, ...(verbose ? ['-v'] : [])]);
  const qps = /Queries per second:\s+([\d.]+)/.exec(r.out);
  if (r.code !== 0 || !qps) throw new Error(`dnsperf failed (${r.code}): ${r.out.slice(-500)}`);
  const latencies: number[] = [];
  if (verbose) for (const m of r.out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)) latencies.push(Number(m[1]) * 1000);
  return { qps: Number(qps[1]), lost: Number(/Queries lost:\s+(\d+)/.exec(r.out)?.[1] ?? 0), latencies };
}

async function dnsBench(seconds: number, concurrency: number, rate: number): Promise<string[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-dns-bench-'));
  const children: ChildProcess[] = [];
  try {
    const ourPort = await freeUdpPort();
    const ours = spawn(process.execPath, [fileURLToPath(import.meta.url), 'dns-server', String(ourPort)], { stdio: 'inherit' });
    children.push(ours);
    const hosts = path.join(dir, 'hosts');
    await fs.writeFile(hosts, names.map((n, i) => `10.96.${Math.floor(i / 250)}.${(i % 250) + 1} ${n}\n`).join(''));
    // dnsperf's input: every name once, in a random order (it loops over the file).
    const queries = path.join(dir, 'queries');
    await fs.writeFile(queries, [...names].sort(() => Math.random() - 0.5).map((n) => `${n} A\n`).join(''));
    const theirPort = await freeUdpPort();
    const dnsmasq = spawn('dnsmasq', ['--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hosts}`, '--listen-address=127.0.0.1', '--bind-interfaces', `--port=${theirPort}`, '--cache-size=10000', '--user=root', `--pid-file=${path.join(dir, 'dnsmasq.pid')}`], { stdio: 'inherit' });
    children.push(dnsmasq);
    await waitAnswer(ourPort);
    await waitAnswer(theirPort);
    const servers = [['stevedore cluster DNS (agent/cluster-dns.ts)', ourPort, ours.pid!], ['dnsmasq 2.90 (hosts file)', theirPort, dnsmasq.pid!]] as const;
    // Warm-up: every name asked once of each, then a second of load (JIT, caches).
    for (const [, port] of servers) await dnsperf(port, queries, ['-l', '1', '-q', String(concurrency)], false);
    const lines = [
      `| server (${NAMES.toLocaleString('en')} names, UDP on loopback, dnsperf) | queries/s (${concurrency} in flight, ${seconds} s) | at ${rate.toLocaleString('en')} queries/s: p50 / p99 / max | server CPU per query | lost |`,
      '|---|---|---|---|---|',
    ];
    for (const round of [1, 2]) {
      for (const [label, port, pid] of servers) {
        const thr = await dnsperf(port, queries, ['-l', String(seconds), '-q', String(concurrency)], false);
        const cpu0 = await processCpu(pid);
        const lat = await dnsperf(port, queries, ['-l', String(seconds), '-q', String(concurrency), '-Q', String(rate)], true);
        const cpu = (await processCpu(pid)) - cpu0;
        const perQuery = lat.latencies.length ? (cpu * 1e6) / lat.latencies.length : NaN;
        const f = (x: number) => `${x.toFixed(3)} ms`;
        lines.push(`| ${round > 1 ? `${label.split(' (')[0]} (again)` : label} | ${Math.round(thr.qps).toLocaleString('en')} | ${f(pct(lat.latencies, 50))} / ${f(pct(lat.latencies, 99))} / ${f(Math.max(...lat.latencies))} | ${perQuery.toFixed(1)} µs | ${thr.lost + lat.lost} |`);
        process.stderr.write(`${lines[lines.length - 1]}\n`);
      }
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
  const changes = Number(arg('changes', '20')), seconds = Number(arg('dns-seconds', '5')), concurrency = Number(arg('dns-concurrency', '32')), rate = Number(arg('dns-rate', '10000'));
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
  const startLoad = load();
  const proxy = await proxyBench(sizes, changes);
  const proxyLoad = load();
  const dns = await dnsBench(seconds, concurrency, rate);
  const cmd = `node dist/bench/services.js --sizes ${sizes.join(',')} --changes ${changes} --endpoint-nodes ${ENDPOINT_NODES} --dns-seconds ${seconds} --dns-concurrency ${concurrency} --dns-rate ${rate}`;
  const text = [
    `Run at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}, ${os.cpus().length} cores; load average at the start ${startLoad}, after the proxy part ${proxyLoad}, at the end ${load()}; \`${cmd}\`.`,
    '', ...proxy, '', ...dns,
  ].join('\n');
  process.stdout.write(`${text}\n`);
  const file = process.argv.indexOf('--update-results') >= 0 ? arg('update-results', 'bench/RESULTS.md') : undefined;
  if (file) await replaceResultsSection(file, BEGIN, END, `${BEGIN}\n${text}\n${END}`, '# Services: the node\'s service proxy and cluster DNS (issue 17)');
}
