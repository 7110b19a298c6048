/**
 * Docker node benchmark (issue 18): `kubectl apply` → Running and → first
 * log line through the real agent on a `stevedore up --container-runtime=docker`
 * node and on an rkt node (stage1 namespaces), beside a plain `docker run` of
 * the same image on the docker node's own engine, in one run (rounds, the
 * order rotated each round).
 *
 *   node dist/bench/docker-node.js [--samples 15] [--warmup 2] [--base /path/to/other/built/checkout] [--update-results bench/RESULTS.md]
 *
 * See bench/README.md ("bench: docker node").
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { freePort, PodWatch, upBenchCluster, type BenchCluster } from './cluster-util.js';
import { eachFlag, fmtMs, fmtRatio, median, nowMs, replaceResultsSection, sleep, summarize, type Summary } from './stats.js';

const LABEL = 'bench=docker-node';
const IMAGE = 'busybox';
const RUNNING_TIMEOUT_MS = 60_000;

interface Args { samples: number; warmup: number; updateResults?: string; base?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 15, warmup: 2 };
  eachFlag(argv, (k, v) => {
    const n = () => { const x = Number(v()); if (!Number.isInteger(x) || x < 0) throw new Error(`${k} needs a non-negative integer`); return x; };
    if (k === '--samples') a.samples = n();
    else if (k === '--warmup') a.warmup = n();
    else if (k === '--update-results') a.updateResults = v();
    else if (k === '--base') a.base = v();
    else if (k === '--docker-node') { /* run.sh's selector */ }
    else return false;
    return true;
  });
  if (a.samples < 1) throw new Error('--samples must be >= 1');
  return a;
}

const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);

type Variant = 'docker-agent' | 'docker-agent-base' | 'rkt-agent' | 'rkt-agent-base' | 'docker-run';
const LABELS: Record<Variant, string> = {
  'docker-agent': 'our agent, docker node (runtime-docker)',
  'docker-agent-base': 'the base\'s agent, docker node (--base)',
  'rkt-agent': 'our agent, rkt node (stage1 namespaces)',
  'rkt-agent-base': 'the base\'s agent, rkt node (--base)',
  'docker-run': '`docker run` on the docker node\'s engine',
};

/** One round's client start times (ms), clientStart(). */
interface ClientStarts { kubectl: number; docker: number }

interface Sample { variant: Variant; round: number; warmup: boolean; createdMs?: number; runningMs?: number; firstLineMs: number }

function podYaml(name: string): string {
  return [
    'apiVersion: v1', 'kind: Pod',
    `metadata: {name: ${name}, labels: {bench: docker-node}}`,
    'spec:',
    '  restartPolicy: Never',
    '  terminationGracePeriodSeconds: 1',
    `  containers: [{name: main, image: ${IMAGE}, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo ready; sleep 3600']}]`,
    '',
  ].join('\n');
}

/** RFC 3339 with nanoseconds (kubectl logs --timestamps) → ms since the epoch, sub-ms kept. */
function stampMs(stamp: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(stamp);
  if (!m) throw new Error(`not a timestamp: ${stamp}`);
  return Date.parse(`${m[1]}${m[3]}`) + Number(`0.${m[2] ?? '0'}`) * 1000;
}

/**
 * One pod through the cluster: t0 just before spawning `kubectl apply`,
 * Running = the watch saw phase Running with the container ready, first line
 * = the line's timestamp as the node's runtime recorded it (`kubectl logs
 * --timestamps`, read once the pod runs: the engine's json-file stamp on
 * docker, journald's on rkt), the same machine clock as t0.
 */
async function throughAgent(c: BenchCluster, watch: PodWatch, name: string): Promise<{ createdMs: number; runningMs: number; firstLineMs: number }> {
  const t0 = nowMs();
  await c.must(['apply', '-f', '-'], podYaml(name));
  await watch.waitFor(() => watch.pods.get(name)?.running !== undefined, RUNNING_TIMEOUT_MS, `${name} Running`);
  const runningMs = watch.pods.get(name)!.running! - t0;
  // kubectl's own start, the create and the watch's delivery: the part of the path before any node sees the pod.
  const createdMs = watch.pods.get(name)!.added! - t0;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await c.kubectl(['logs', '--timestamps', name]);
    const line = r.stdout.split('\n').find((l) => l.endsWith(' ready'));
    if (line) return { createdMs, runningMs, firstLineMs: stampMs(line.slice(0, line.indexOf(' '))) - t0 };
    if (Date.now() > deadline) throw new Error(`no "ready" line from ${name} within 15 s: ${r.stderr.trim()}`);
    await sleep(100);
  }
}

/** `docker run` of the same image on the node's engine, from the host's client (the engine's unix socket is a path on the host's filesystem). */
async function dockerRun(socket: string): Promise<number> {
  const t0 = nowMs();
  let line: number | undefined;
  const child = spawn('/usr/bin/docker', ['run', '--rm', '--network', 'none', `localhost/${IMAGE}:latest`, 'echo', 'ready'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: os.tmpdir(), DOCKER_HOST: `unix://${socket}` }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (l) => { if (l === 'ready' && line === undefined) line = nowMs() - t0; });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  if (code !== 0 || line === undefined) throw new Error(`docker run failed (${code}): ${stderr.trim()}`);
  return line;
}

/**
 * A client's own start: spawn to exit of a command of it that contacts nothing (`kubectl version
 * --client`, `docker --version`). kubectl and the docker client are the two ends' first cost, and
 * neither is the node's: the end-to-end goal is also reported with each client's own start taken out.
 */
async function clientStart(cmd: string, argv: string[], env: Record<string, string>): Promise<number> {
  const t0 = nowMs();
  const child = spawn(cmd, argv, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? os.tmpdir(), ...env }, stdio: 'ignore' });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  if (code !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${code}`);
  return nowMs() - t0;
}

/** `up` flags that keep two clusters on one host apart: bridge, pod and service CIDRs, DNS port. */
async function apartArgs(runtime: 'rkt' | 'docker'): Promise<string[]> {
  const bridge = `sdb${randomBytes(3).toString('hex')}`;
  return [
    '--container-runtime', runtime, '--bridge', bridge,
    '--pod-cidr', `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`,
    '--service-cidr', `10.${100 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`,
    '--dns-port', String(await freePort()),
  ];
}

async function main(args: Args): Promise<void> {
  const clusters: BenchCluster[] = [];
  const watches: PodWatch[] = [];
  const loadStart = os.loadavg();
  try {
    const docker = await upBenchCluster('dnode-docker', log, await apartArgs('docker'));
    clusters.push(docker);
    const rkt = await upBenchCluster('dnode-rkt', log, await apartArgs('rkt'));
    clusters.push(rkt);
    // The demo pod `up` makes would only add load: gone (not just deleting: its grace period is 30 s) before the first round.
    for (const c of clusters) await c.kubectl(['delete', 'pod', 'demo', '--grace-period=1', '--timeout=60s']);
    // --base REPO: two more clusters, a docker node and an rkt node run by another built checkout, measured in the same rounds.
    const nodes = new Map<Exclude<Variant, 'docker-run'>, { cluster: BenchCluster; watch: PodWatch }>([['docker-agent', { cluster: docker, watch: new PodWatch(docker.api, 'default', LABEL) }], ['rkt-agent', { cluster: rkt, watch: new PodWatch(rkt.api, 'default', LABEL) }]]);
    if (args.base) {
      for (const [variant, runtime] of [['docker-agent-base', 'docker'], ['rkt-agent-base', 'rkt']] as const) {
        const cluster = await upBenchCluster(`dnbase-${runtime}`, log, await apartArgs(runtime), args.base);
        clusters.push(cluster);
        await cluster.kubectl(['delete', 'pod', 'demo', '--grace-period=1', '--timeout=60s']);
        nodes.set(variant, { cluster, watch: new PodWatch(cluster.api, 'default', LABEL) });
      }
    }
    for (const { watch } of nodes.values()) {
      watches.push(watch);
      await watch.start();
    }
    const socket = path.join(docker.dataDir, 'node', 'docker', 'engine', 'docker.sock');
    const variants: Variant[] = [...nodes.keys(), 'docker-run'];
    const samples: Sample[] = [];
    const starts: ClientStarts[] = [];
    const rounds = args.warmup + args.samples;
    log(`${rounds} rounds (${args.warmup} warm-up) x ${variants.join(', ')}`);
    for (let round = 0; round < rounds; round++) {
      for (const v of variants.map((_, i) => variants[(i + round) % variants.length]!)) {
        const warmup = round < args.warmup;
        if (v === 'docker-run') samples.push({ variant: v, round, warmup, firstLineMs: await dockerRun(socket) });
        else {
          const { cluster: c, watch: w } = nodes.get(v)!;
          const name = `dn-${round}-${v}`;
          samples.push({ variant: v, round, warmup, ...(await throughAgent(c, w, name)) });
          // Not timed. Gone (the runtime's pod removed: the agent deletes the object last) before the next sample, as
          // `docker run --rm` has removed its container when it returns: a pod still stopping would load the next samples.
          await c.kubectl(['delete', 'pod', name, '--grace-period=1', '--wait=false']);
          await w.waitFor(() => w.pods.get(name)?.deleted !== undefined, RUNNING_TIMEOUT_MS, `${name} gone`);
        }
        await sleep(200);
      }
      const kubectlStart = await clientStart('kubectl', ['version', '--client'], { KUBECONFIG: path.join(docker.dataDir, 'kubeconfig') });
      const dockerStart = await clientStart('/usr/bin/docker', ['--version'], { DOCKER_HOST: `unix://${socket}` });
      if (round >= args.warmup) starts.push({ kubectl: kubectlStart, docker: dockerStart });
      if ((round + 1) % 5 === 0) log(`round ${round + 1}/${rounds}`);
    }
    const text = report(samples, starts, args, loadStart);
    process.stdout.write(`\n${text}\n`);
    if (args.updateResults) {
      const begin = '<!-- bench:docker-node:begin -->';
      const end = '<!-- bench:docker-node:end -->';
      await replaceResultsSection(args.updateResults, begin, end, [begin, `_Generated by \`bash bench/run.sh --docker-node --samples ${args.samples} --warmup ${args.warmup}${args.base ? ' --base BASE_CHECKOUT' : ''}\`._`, '', text, end].join('\n'), '## Docker node: kubectl apply → first line on docker and rkt beside docker run (issue 18)');
    }
  } finally {
    for (const w of watches) w.stop();
    for (const c of clusters) await c.down().catch((err: Error) => log(`down: ${err.message}`));
  }
}

function report(samples: Sample[], starts: ClientStarts[], args: Args, loadStart: number[]): string {
  const by = (v: Variant, f: 'createdMs' | 'runningMs' | 'firstLineMs') => samples.filter((s) => s.variant === v && !s.warmup).map((s) => s[f]).filter((x): x is number => x !== undefined);
  const line: Partial<Record<Variant, Summary>> = {};
  // Pod start → first line through the agent: from the moment the pod exists in the API (the watch saw it;
  // a node's agent sees it through the same watch) to the node's stamp of the first line.
  const podStartToFirstLine = (v: Variant): number | undefined => {
    const spans = samples.filter((s) => s.variant === v && !s.warmup && s.createdMs !== undefined).map((s) => s.firstLineMs - s.createdMs!);
    return spans.length ? median(spans) : undefined;
  };
  const measured = (Object.keys(LABELS) as Variant[]).filter((v) => by(v, 'firstLineMs').length);
  for (const v of measured) line[v] = summarize(by(v, 'firstLineMs'));
  const dockerRun = line['docker-run']!;
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const out = [
    `machine: ${os.availableParallelism?.() ?? os.cpus().length} CPUs, kernel ${os.release()}, node ${process.version}, ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; load avg at start ${load(loadStart)}, at end ${load(os.loadavg())}`,
    `samples: ${args.samples} per variant after ${args.warmup} warm-up rounds, variants interleaved (order rotated each round); two one-node clusters (\`stevedore up\`, docker and rkt) side by side`,
    '',
    '| variant | n | apply → pod created (median) | apply → Running (median) | first line (median) | p90 | max | min | vs docker run (median) | pod created → first line (median) | that vs docker run |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const v of measured) {
    const s = line[v]!;
    const running = by(v, 'runningMs');
    const created = by(v, 'createdMs');
    const start = podStartToFirstLine(v);
    out.push(`| ${LABELS[v]} | ${s.n} | ${created.length ? `${fmtMs(median(created))} ms` : '-'} | ${running.length ? `${fmtMs(median(running))} ms` : '-'} | ${fmtMs(s.median)} ms | ${fmtMs(s.p90)} ms | ${fmtMs(s.max)} ms | ${fmtMs(s.min)} ms | ${fmtRatio(s.median, dockerRun.median)} | ${start !== undefined ? `${fmtMs(start)} ms` : '-'} | ${start !== undefined ? fmtRatio(start, dockerRun.median) : '-'} |`);
  }
  for (const [ours, theirs, node] of [['docker-agent', 'docker-agent-base', 'docker'], ['rkt-agent', 'rkt-agent-base', 'rkt']] as const) {
    if (!line[theirs]) continue;
    // Per round, ours minus the base's (the two ran back to back, under the same load).
    const pairs = samples.filter((s) => s.variant === ours && !s.warmup).flatMap((s) => {
      const b = samples.find((x) => x.variant === theirs && x.round === s.round);
      return b ? [[s, b] as const] : [];
    });
    const diffs = pairs.map(([s, b]) => s.firstLineMs - b.firstLineMs);
    // The node's part alone: pod created (the watch saw it) → first line, without the control plane's share.
    const nodeDiffs = pairs.map(([s, b]) => (s.firstLineMs - (s.createdMs ?? 0)) - (b.firstLineMs - (b.createdMs ?? 0)));
    out.push('', `paired (same round), this checkout's ${node} node minus the base's: first line median ${fmtMs(median(diffs))} ms over ${diffs.length} rounds (${diffs.filter((x) => x < 0).length} faster); pod created → first line (the node's part) ${fmtMs(podStartToFirstLine(ours)!)} ms vs ${fmtMs(podStartToFirstLine(theirs)!)} ms, paired median ${fmtMs(median(nodeDiffs))} ms (${nodeDiffs.filter((x) => x < 0).length} faster)`);
  }

  const d = line['docker-agent']!;
  const r = line['rkt-agent']!;
  out.push('');
  out.push('t0: just before spawning `kubectl apply -f -` (our rows) or `docker run --rm --network none localhost/busybox:latest echo ready` (the client on the host, DOCKER_HOST = the node\'s engine socket). First line: the line\'s timestamp as the node recorded it (`kubectl logs --timestamps`: the engine\'s stamp on docker, journald\'s on rkt); docker run: its client printed it. Running: the watch saw phase Running with the container ready. Pod created: the watch saw the pod (kubectl\'s own start, the create, the watch\'s delivery: the part before any node has it).');
  out.push('');
  const goals = (docker: number, rkt: number, run = dockerRun.median) => `our agent adds < 20% to docker run's median on docker — ${docker < run * 1.2 ? 'MET' : 'MISSED'} (${fmtMs(docker)} ms vs ${fmtMs(run)} ms, ${fmtRatio(docker, run)}); rkt/namespaces ≥ 3x faster than docker run — ${rkt * 3 <= run ? 'MET' : 'MISSED'} (${fmtMs(rkt)} ms, ${fmtRatio(rkt, run)})`;
  out.push(`goal (issue 18), end to end (kubectl apply → first line): ${goals(d.median, r.median)}`);
  if (starts.length) {
    const kubectlStart = median(starts.map((x) => x.kubectl));
    const dockerStart = median(starts.map((x) => x.docker));
    out.push('');
    out.push(`clients' own start (spawn → exit, median of ${starts.length}, one each per round): \`kubectl version --client\` ${fmtMs(kubectlStart)} ms, \`docker --version\` ${fmtMs(dockerStart)} ms`);
    out.push(`goal (issue 18), end to end without each client's own start (our rows minus kubectl's, docker run minus the docker client's): ${goals(d.median - kubectlStart, r.median - kubectlStart, dockerRun.median - dockerStart)}`);
  }
  out.push('');
  out.push(`goal (issue 18), pod start → first line through our agent (pod created → first line): ${goals(podStartToFirstLine('docker-agent')!, podStartToFirstLine('rkt-agent')!)}`);
  return out.join('\n');
}

await main(parseArgs(process.argv.slice(2)));
