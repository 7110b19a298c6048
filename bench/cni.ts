/**
 * CNI benchmark:
 *  1. ADD+DEL per pod through our runner (CniNetwork.add/del, in-process as
 *     the runtime calls it: cache writes, chain, prevResult, runtimeConfig)
 *     beside the same plugin chain (loopback → bridge+host-local → portmap with
 *     a hostPort) invoked bare from a bash loop (plugins piped their config,
 *     prevResult spliced in with bash string operations, no jq);
 *  2. pod start (RktRuntime.runPod, namespaces stage1, returned = every unit
 *     started) with the default network (bridge+host-local+portmap) vs without
 *     (loopback only), and pod removal likewise.
 * Variants alternate in chunks so load from other processes spreads over both.
 *
 *   node dist/bench/cni.js [--samples N] [--warmup N] [--update-results FILE]
 *
 * The host part boots a node sandbox and runs `inner` inside it (the runtime
 * mounts overlayfs in the sandbox's mount namespace; the sandbox shares the
 * host's network namespace, so the bridge and /24 are random and removed at the end).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachFlag, nowMs, replaceResultsSection, summarize, fmtMs, fmtRatio, type Summary } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DIST = new URL('../', import.meta.url);
const IMAGE = 'localhost/busybox:latest';
const BIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];

interface Args { samples: number; warmup: number; updateResults?: string; work?: string; runId?: string; out?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 50, warmup: 3 };
  eachFlag(argv, (k, v) => {
    if (k === '--samples') a.samples = Number(v());
    else if (k === '--warmup') a.warmup = Number(v());
    else if (k === '--update-results') a.updateResults = v();
    else if (k === '--work') a.work = v();
    else if (k === '--run-id') a.runId = v();
    else if (k === '--out') a.out = v();
    else return false;
    return true;
  });
  if (!Number.isInteger(a.samples) || a.samples < 1) throw new Error('--samples takes a positive integer');
  if (!Number.isInteger(a.warmup) || a.warmup < 0) throw new Error('--warmup takes a number >= 0');
  return a;
}

function run(cmd: string, args: string[], opts: { input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: String(err) }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// inner: runs inside the sandbox

/**
 * The bare chain, as a person would script it: one plugin process per step,
 * the previous result spliced into the next config. Prints the ADD+DEL time
 * of each netns given (ns, from `date +%s%N`).
 */
const BARE_SCRIPT = String.raw`#!/bin/bash
set -euo pipefail
# usage: bare.sh NAME BRIDGE SUBNET IPAM_DIR PORT_BASE ID_PREFIX NETNS...
name=$1 bridge=$2 subnet=$3 ipamdir=$4 port=$5 prefix=$6; shift 6
export CNI_PATH=/usr/lib/cni:/opt/cni/bin CNI_IFNAME=eth0
lo='{"cniVersion":"1.0.0","name":"'$name'","type":"loopback"}'
br='{"cniVersion":"1.0.0","name":"'$name'","type":"bridge","bridge":"'$bridge'","isGateway":true,"ipMasq":false,"hairpinMode":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"'$subnet'"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'$ipamdir'"}}'
with_prev() { printf '%s,"prevResult":%s}' "${"$"}{1%\}}" "$2"; }
i=0
for ns in "$@"; do
  id=$prefix-$i
  pm='{"cniVersion":"1.0.0","name":"'$name'","type":"portmap","capabilities":{"portMappings":true},"snat":true,"runtimeConfig":{"portMappings":[{"hostPort":'$((port + i))',"containerPort":8080,"protocol":"tcp"}]}}'
  export CNI_CONTAINERID=$id CNI_NETNS=$ns CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=$id;K8S_POD_INFRA_CONTAINER_ID=$id"
  t0=$(date +%s%N)
  r=$(CNI_COMMAND=ADD /usr/lib/cni/loopback <<<"$lo")
  r=$(CNI_COMMAND=ADD /usr/lib/cni/bridge <<<"$(with_prev "$br" "$r")")
  r=$(CNI_COMMAND=ADD /usr/lib/cni/portmap <<<"$(with_prev "$pm" "$r")")
  CNI_COMMAND=DEL /usr/lib/cni/portmap <<<"$(with_prev "$pm" "$r")"
  CNI_COMMAND=DEL /usr/lib/cni/bridge <<<"$(with_prev "$br" "$r")"
  CNI_COMMAND=DEL /usr/lib/cni/loopback <<<"$(with_prev "$lo" "$r")"
  t1=$(date +%s%N)
  echo $((t1 - t0))
  i=$((i + 1))
done
`;

interface InnerResult {
  runner: number[];
  bare: number[];
  startNet: number[];
  startPort: number[];
  startNone: number[];
  rmNet: number[];
  rmPort: number[];
  rmNone: number[];
  bridge: string;
  subnet: string;
}

async function inner(args: Args): Promise<void> {
  const work = args.work!;
  const runId = args.runId!;
  const { CniNetwork, defaultNetworkConfig } = await import(new URL('cni/index.js', DIST).href) as typeof import('../cni/index.js');
  const { RktRuntime } = await import(new URL('runtime-rkt/runtime.js', DIST).href) as typeof import('../runtime-rkt/runtime.js');
  const { buildBusyboxImage } = await import(new URL('runtime-rkt/image/demo-image.js', DIST).href) as typeof import('../runtime-rkt/image/demo-image.js');

  const third = 10 + (parseInt(runId.slice(0, 2), 16) % 200);
  const subnet = `10.242.${third}.0/24`;
  const routes = await must('ip', ['-4', 'route', 'show']);
  if (routes.includes(`10.242.${third}.`)) throw new Error(`subnet ${subnet} is in use on this host; run again`);
  const bridge = `sdb${runId.slice(0, 8)}`;
  const name = `bench-${runId}`;
  const ipamDir = path.join(work, 'ipam');
  const portBase = 30_000 + (parseInt(runId.slice(2, 6), 16) % 20_000);
  const n = args.samples + args.warmup;
  const result: InnerResult = { runner: [], bare: [], startNet: [], startPort: [], startNone: [], rmNet: [], rmPort: [], rmNone: [], bridge, subnet };

  // --- 1. ADD+DEL: runner vs bare -----------------------------------------
  const base = defaultNetworkConfig({ podCidr: subnet, bridge, name, ipamDataDir: ipamDir });
  const chain = { ...base, plugins: [{ type: 'loopback' }, ...base.plugins] };
  const network = CniNetwork.fromConfig(chain, { binDirs: BIN_DIRS, cacheDir: path.join(work, 'cache') });
  const nsDir = path.join(work, 'netns');
  await fs.mkdir(nsDir, { recursive: true });
  const script = path.join(work, 'bare.sh');
  await fs.writeFile(script, BARE_SCRIPT, { mode: 0o755 });
  const newNetns = async (id: string) => {
    const file = path.join(nsDir, id);
    await fs.writeFile(file, '');
    await must('unshare', [`--net=${file}`, 'true']);
    return file;
  };
  const dropNetns = async (file: string) => {
    await run('umount', [file]);
    await fs.rm(file, { force: true });
  };
  const CHUNK = 10;
  process.stderr.write(`bench: CNI ADD+DEL, ${n} per variant (${args.warmup} warm-up), chunks of ${CHUNK}\n`);
  for (let done = 0; done < n; done += CHUNK) {
    const k = Math.min(CHUNK, n - done);
    // runner
    for (let i = 0; i < k; i++) {
      const id = `r${done + i}`;
      const ns = await newNetns(id);
      const t0 = nowMs();
      await network.add({ containerId: `${name}-${id}`, netnsPath: ns, podNamespace: 'bench', podName: id, portMappings: [{ hostPort: portBase + done + i, containerPort: 8080, protocol: 'TCP' }] });
      await network.del({ containerId: `${name}-${id}`, netnsPath: ns });
      result.runner.push(nowMs() - t0);
      await dropNetns(ns);
    }
    // bare, from a shell loop over fresh namespaces
    const nss = await Promise.all(Array.from({ length: k }, (_, i) => newNetns(`b${done + i}`)));
    const r = await run('bash', [script, name, bridge, subnet, ipamDir, String(portBase + 10_000 + done), `${name}-b${done}`, ...nss]);
    if (r.code !== 0) throw new Error(`bare CNI loop failed: ${r.stderr.trim()}`);
    result.bare.push(...r.stdout.trim().split('\n').map((l) => Number(l) / 1e6));
    for (const ns of nss) await dropNetns(ns);
  }
  const leftover = (await fs.readdir(path.join(ipamDir, name)).catch(() => [] as string[])).filter((f) => /^\d/.test(f));
  if (leftover.length) throw new Error(`leases left after ADD+DEL: ${leftover.join(' ')}`);

  // --- 2. pod start with and without the network ---------------------------
  const dataDir = path.join(work, 'data');
  const confDir = path.join(work, 'net.d');
  await fs.mkdir(confDir, { recursive: true });
  await fs.writeFile(path.join(confDir, '10-bench.conflist'), JSON.stringify(base));
  const rtNet = await RktRuntime.open({ dataDir, network: { confDir, cacheDir: path.join(work, 'pod-cache'), binDirs: BIN_DIRS } });
  const rtNone = await RktRuntime.open({ dataDir, network: 'none' });
  await buildBusyboxImage(path.join(work, 'layout'), { name: 'busybox', tag: 'latest' });
  await rtNet.images.importPath(path.join(work, 'layout'), { name: IMAGE });
  await rtNet.systemd();
  await rtNone.systemd();
  type PodVariant = 'net' | 'port' | 'none';
  const pod = (i: number, v: PodVariant) => ({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: `p${i}-${v}`, namespace: `bench-${runId}` },
    spec: {
      restartPolicy: 'Never' as const, terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: IMAGE, command: ['sleep', '30'], ...(v === 'port' ? { ports: [{ containerPort: 8080, hostPort: portBase + 15_000 + i }] } : {}) }],
    },
  });
  const variants: PodVariant[] = ['net', 'port', 'none'];
  process.stderr.write(`bench: pod start with/without network, ${n} each\n`);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < variants.length; j++) {
      const v = variants[(i + j) % variants.length]!;
      const rt = v === 'none' ? rtNone : rtNet;
      const t0 = nowMs();
      const uuid = await rt.runPod(pod(i, v), { stage1: 'namespaces' });
      const t1 = nowMs();
      const ips = (await rt.podStatus(uuid)).podIPs ?? [];
      if ((v === 'none') !== (ips.length === 0)) throw new Error(`pod ${v}: unexpected pod IPs ${JSON.stringify(ips)}`);
      const t2 = nowMs();
      await rt.removePod(uuid, { force: true });
      const t3 = nowMs();
      ({ net: result.startNet, port: result.startPort, none: result.startNone })[v].push(t1 - t0);
      ({ net: result.rmNet, port: result.rmPort, none: result.rmNone })[v].push(t3 - t2);
    }
  }
  await rtNet.close();
  await rtNone.close();
  // warm-up samples go
  for (const k of ['runner', 'bare', 'startNet', 'startPort', 'startNone', 'rmNet', 'rmPort', 'rmNone'] as const) result[k] = result[k].slice(args.warmup);
  await fs.writeFile(args.out!, JSON.stringify(result));
}

// ---------------------------------------------------------------------------
// host: orchestrates

async function machineInfo(): Promise<Record<string, string>> {
  const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const head = await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  const dirty = await run('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']);
  const plugins = await run('dpkg-query', ['-W', '-f', '${Version}', 'containernetworking-plugins']);
  return {
    nproc: String(os.availableParallelism?.() ?? os.cpus().length),
    model: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? '?',
    kernel: os.release(),
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    tree: head.code === 0 ? `${head.stdout.trim()}${dirty.stdout.trim() ? ' + uncommitted changes' : ''}` : 'unknown',
    plugins: plugins.code === 0 ? `containernetworking-plugins ${plugins.stdout.trim()} (Debian)` : 'containernetworking-plugins (version unknown)',
  };
}

function report(r: InnerResult, args: Args, m: Record<string, string>): string {
  const s = (v: number[]) => summarize(v);
  const row = (label: string, x: Summary, peer: Summary | undefined, peerName: string) =>
    `| ${label} | ${x.n} | ${fmtMs(x.median)} ms | ${fmtMs(x.p90)} ms | ${fmtMs(x.p99)} ms | ${fmtMs(x.min)} ms | ${peer ? `${fmtRatio(x.median, peer.median)} (median), ${fmtRatio(x.p99, peer.p99)} (p99) ${peerName}` : '-'} |`;
  const runner = s(r.runner), bare = s(r.bare), net = s(r.startNet), port = s(r.startPort), none = s(r.startNone), rmNet = s(r.rmNet), rmPort = s(r.rmPort), rmNone = s(r.rmNone);
  const lines = [
    `machine: ${m.nproc} CPUs, ${m.model}, kernel ${m.kernel}, node ${m.node}, ${m.date} (load avg at end: ${m.loadavg}); code: ${m.tree}; plugins: ${m.plugins}`,
    `samples: ${args.samples} per variant after ${args.warmup} warm-up; variants alternate (CNI in chunks of 10, pods one by one)`,
    '',
    '| variant | n | median | p90 | p99 (=max for n<100) | min | ratio |',
    '|---|---|---|---|---|---|---|',
    row('CNI ADD+DEL, our runner (loopback, bridge+host-local, portmap with a hostPort)', runner, bare, 'vs bare'),
    row('CNI ADD+DEL, same chain bare from a bash loop', bare, undefined, ''),
    row('pod start (runPod, namespaces) with the network', net, none, 'vs without'),
    row('pod start with the network and a hostPort (portmap rules)', port, none, 'vs without'),
    row('pod start without network (loopback only)', none, undefined, ''),
    row('pod removal with the network (CNI DEL)', rmNet, rmNone, 'vs without'),
    row('pod removal with the network and a hostPort', rmPort, rmNone, 'vs without'),
    row('pod removal without network', rmNone, undefined, ''),
    '',
    `CNI runner overhead: median ${fmtMs(runner.median - bare.median)} ms per ADD+DEL (${fmtRatio(runner.median, bare.median)}); networking adds ${fmtMs(net.median - none.median)} ms to a pod start (median, ${fmtRatio(net.median, none.median)}; ${fmtMs(port.median - none.median)} ms with a hostPort), ${fmtMs(rmNet.median - rmNone.median)} ms to a removal`,
  ];
  return lines.join('\n');
}

const BEGIN = '<!-- bench:cni:begin -->';
const END = '<!-- bench:cni:end -->';

async function updateResults(file: string, text: string, m: Record<string, string>, args: Args): Promise<void> {
  const body = [BEGIN, `_Generated by \`bash bench/run.sh --cni --samples ${args.samples} --warmup ${args.warmup}\` on ${m.date}._`, '', text.replace(/^machine: /, 'Machine: '), END].join('\n');
  await replaceResultsSection(file, BEGIN, END, body, '# CNI benchmark results (issue 5: ADD+DEL per pod, pod start with vs without networking)');
}

async function host(args: Args): Promise<void> {
  const { startSandbox, stopSandbox, execInSandbox } = await import(new URL('sandbox/sandbox.js', DIST).href) as typeof import('../sandbox/sandbox.js');
  const runId = randomBytes(4).toString('hex');
  const work = `/var/tmp/stevedore-bench-cni-${runId}`;
  const sandboxName = `bench-cni-${runId}`;
  await fs.mkdir(work, { recursive: true });
  const ipForward = (await fs.readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
  let started = false;
  let bridge: string | undefined;
  const cleanups: string[] = [];
  try {
    process.stderr.write(`bench: booting sandbox ${sandboxName}\n`);
    await startSandbox({ name: sandboxName });
    started = true;
    const out = path.join(work, 'inner.json');
    bridge = `sdb${runId.slice(0, 8)}`;
    const r = await execInSandbox(sandboxName, [process.execPath, fileURLToPath(import.meta.url), 'inner', '--work', work, '--run-id', runId, '--out', out,
      '--samples', String(args.samples), '--warmup', String(args.warmup)], { stdio: 'inherit', cwd: REPO });
    if (r.exitCode !== 0) throw new Error(`the benchmark inside the sandbox failed (exit ${r.exitCode})`);
    const result = JSON.parse(await fs.readFile(out, 'utf8')) as InnerResult;
    const m = await machineInfo();
    const text = report(result, args, m);
    process.stdout.write(`\n${text}\n`);
    if (args.updateResults) await updateResults(args.updateResults, text, m, args);
  } finally {
    if (started) await stopSandbox(sandboxName).catch((e) => cleanups.push(`stopSandbox: ${(e as Error).message}`));
    // The bridge outlives its last attachment (CNI leaves it); bridge's isGateway turned ip_forward on.
    if (bridge) await run('ip', ['link', 'del', bridge]);
    await fs.writeFile('/proc/sys/net/ipv4/ip_forward', ipForward).catch(() => undefined);
    await fs.rm(work, { recursive: true, force: true }).catch((e) => cleanups.push(`rm ${work}: ${(e as Error).message}`));
    if (cleanups.length) process.stderr.write(`bench: cleanup: ${cleanups.join('; ')}\n`);
  }
}

const argv = process.argv.slice(2);
if (argv[0] === 'inner') await inner(parseArgs(argv.slice(1)));
else await host(parseArgs(argv));
