/**
 * Scale benchmark (issue 19): a control plane, 100 hollow nodes in one
 * process (`stevedore hollow-nodes`: the real agent over a runtime that only
 * pretends to run pods, as kubemark), then a 1000-replica StatefulSet with
 * podManagementPolicy Parallel. Measures the time to all Running, pod startup
 * latency (watch-observed create → Running), API call latency by verb from
 * the control plane's /metrics (apiserver_request_duration_seconds, the
 * difference over the run), and the control plane's CPU seconds and peak RSS
 * (/proc of its PID).
 *
 *   bash bench/run.sh --scale [--nodes 100] [--replicas 1000] [--store sqlite:PATH|etcd:URL] [--start-delay 50ms]
 *                     [--profile] [--update-results bench/RESULTS.md]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiFromKubeconfig, apiGet, freePort, freePortRange, PodWatch, readProc, run, summarizeProfile, type Api, type ProcSample } from './cluster-util.js';
import { eachFlag, nowMs, percentile, replaceResultsSection, sleep } from './stats.js';
import { callCounts, diffHistograms, histogramQuantile, parseDurationBuckets } from './metrics-text.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'bin', 'stevedore.js');

interface Args { nodes: number; replicas: number; store?: string; startDelay: string; timeoutS: number; profile: boolean; updateResults?: string }
const args: Args = { nodes: 100, replicas: 1000, startDelay: '50ms', timeoutS: 600, profile: false };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--nodes') args.nodes = Number(v());
  else if (k === '--replicas') args.replicas = Number(v());
  else if (k === '--store') args.store = v();
  else if (k === '--start-delay') args.startDelay = v();
  else if (k === '--timeout') args.timeoutS = Number(v());
  else if (k === '--profile') args.profile = true;
  else if (k === '--update-results') args.updateResults = v();
  else if (k === '--scale') { /* run.sh's selector */ } else return false;
  return true;
});

const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);

// ---------------------------------------------------------------------------
// /metrics: the SLO's classes

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'APPLY', 'DELETE', 'DELETECOLLECTION']);

/** The SLO's classes: mutating calls, single-object reads, lists by scope; and each verb on its own. */
function sloClass(l: Record<string, string>): string | undefined {
  if (!l.resource) return undefined; // discovery and other non-resource paths
  if (MUTATING.has(l.verb!)) return 'mutating';
  if (l.verb === 'GET') return 'read: single object';
  if (l.verb === 'LIST') return `read: list (${l.scope} scope)`;
  return undefined;
}

async function scrape(api: Api): Promise<string> {
  // A control plane still busy with the burst may take more than apiGet's 10 s: three tries.
  const r = await apiGet<string>(api, '/metrics').catch(() => sleep(1000).then(() => apiGet<string>(api, '/metrics'))).catch(() => sleep(5000).then(() => apiGet<string>(api, '/metrics')));
  if (r.code !== 200) throw new Error(`/metrics: HTTP ${r.code}: ${String(r.body).slice(0, 200)}`);
  return String(r.body);
}

// ---------------------------------------------------------------------------

interface NodeList { items: Array<{ metadata: { name: string }; status?: { conditions?: Array<{ type: string; status: string }> } }> }

async function readyNodes(api: Api): Promise<number> {
  const r = await apiGet<NodeList>(api, '/api/v1/nodes');
  return (r.body.items ?? []).filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
}

function statefulSetYaml(replicas: number): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ring}
spec: {clusterIP: None, selector: {app: ring}, ports: [{port: 9042, name: cql}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ring}
spec:
  serviceName: ring
  replicas: ${replicas}
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: ring}}
  template:
    metadata: {labels: {app: ring}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: cassandra, image: busybox, command: [sleep, '3600'], ports: [{containerPort: 9042, name: cql}]}]
`;
}

function startProcess(argv: string[], logFile: string, env: Record<string, string> = {}): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, argv, { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  closeSync(fd);
  return child;
}

async function stopProcess(child: ChildProcess | undefined, what: string): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => { log(`${what} did not stop after SIGTERM; SIGKILL`); child.kill('SIGKILL'); }, 20_000);
  await exited;
  clearTimeout(timer);
}

interface Result {
  nodesReadyS: number;
  allRunningS: number;
  startup: { p50: number; p99: number; max: number };
  /** Watch-observed created → bound to a node (the scheduler), and bound → Running (the node). */
  toBound: { p50: number; p99: number };
  boundToRunning: { p50: number; p99: number };
  /** From the first pod the watch saw created to the last: how fast the StatefulSet controller made them. */
  createdSpreadS: number;
  byVerb: Array<{ key: string; count: number; p50: number; p99: number }>;
  byClass: Array<{ key: string; count: number; p50: number; p99: number }>;
  calls: Array<[string, number]>;
  cp: { cpuS: number; peakRssMiB: number; hwmMiB: number; idleRssMiB: number };
  hollow: { cpuS: number; peakRssMiB: number };
  profile?: ReturnType<typeof summarizeProfile>;
  hollowProfile?: ReturnType<typeof summarizeProfile>;
}

async function main(): Promise<void> {
  const clkTck = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const git = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  const startLoad = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const work = await fs.mkdtemp('/var/tmp/stevedore-bench-scale-');
  const cpDir = path.join(work, 'control-plane');
  const kubeconfig = path.join(work, 'kubeconfig');
  const port = await freePort();
  const profDir = path.join(work, 'cpu-prof');
  let cp: ChildProcess | undefined;
  let hollow: ChildProcess | undefined;
  let result: Result | undefined;
  let phaseEnd = 0;
  try {
    // 1. The control plane, alone in its process, giving each Node a /24 of 10.200.0.0/16.
    const cpArgs = [...(args.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), CLI, 'control-plane', '--data-dir', cpDir, '--port', String(port), '--kubeconfig', kubeconfig,
      '--allocate-node-cidrs', '--cluster-cidr', '10.200.0.0/16', '--node-cidr-mask-size', '24', ...(args.store ? ['--store', args.store] : [])];
    await fs.mkdir(cpDir, { recursive: true, mode: 0o700 });
    cp = startProcess(cpArgs, path.join(work, 'control-plane.log'));
    log(`control plane pid ${cp.pid} on port ${port}${args.store ? `, store ${args.store}` : ' (default store)'}`);
    let api: Api | undefined;
    for (let i = 0; i < 300 && !api; i++) {
      if (cp.exitCode !== null) throw new Error(`the control plane exited (${cp.exitCode}): ${(await fs.readFile(path.join(work, 'control-plane.log'), 'utf8')).slice(-2000)}`);
      try {
        const a = await apiFromKubeconfig(kubeconfig);
        if ((await apiGet(a, '/version')).code === 200) api = a;
      } catch { /* not yet */ }
      if (!api) await sleep(200);
    }
    if (!api) throw new Error('the control plane did not answer within 60 s');
    const cpPid = cp.pid!;

    // 2. The hollow nodes, one process.
    const t0 = nowMs();
    const portBase = await freePortRange(args.nodes);
    hollow = startProcess([...(args.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}-hollow`] : []), CLI, 'hollow-nodes', '--count', String(args.nodes), '--server', api.server, '--control-plane-dir', cpDir,
      '--data-dir', path.join(work, 'hollow'), '--node-api-port-base', String(portBase), '--start-delay', args.startDelay], path.join(work, 'hollow-nodes.log'));
    log(`hollow-nodes pid ${hollow.pid}: ${args.nodes} nodes`);
    for (;;) {
      if (hollow.exitCode !== null) throw new Error(`hollow-nodes exited (${hollow.exitCode}): ${(await fs.readFile(path.join(work, 'hollow-nodes.log'), 'utf8')).slice(-2000)}`);
      const n = await readyNodes(api);
      if (n >= args.nodes) break;
      if (nowMs() - t0 > 300_000) throw new Error(`${n}/${args.nodes} nodes Ready after 300 s`);
      await sleep(500);
    }
    const nodesReadyS = (nowMs() - t0) / 1000;
    log(`${args.nodes} nodes Ready in ${nodesReadyS.toFixed(1)} s`);
    await sleep(3000); // let registration traffic settle before the measured phase
    const hollowPid = hollow.pid!;

    // 3. The StatefulSet, watched from before it exists.
    const watch = new PodWatch(api, 'default', 'app=ring');
    await watch.start();
    const metricsBefore = await scrape(api);
    const cpBefore: ProcSample = await readProc(cpPid);
    const hollowBefore: ProcSample = await readProc(hollowPid);
    let cpPeak = cpBefore.rssKiB;
    let hollowPeak = hollowBefore.rssKiB;
    const sampler = setInterval(() => {
      void readProc(cpPid).then((s) => { cpPeak = Math.max(cpPeak, s.rssKiB); }, () => undefined);
      void readProc(hollowPid).then((s) => { hollowPeak = Math.max(hollowPeak, s.rssKiB); }, () => undefined);
    }, 200);
    const tCreate = nowMs();
    let lastLog = 0;
    try {
      const applied = await run('kubectl', ['apply', '-f', '-'], { KUBECONFIG: kubeconfig }, statefulSetYaml(args.replicas));
      if (applied.code !== 0) throw new Error(`kubectl apply: ${applied.stderr}`);
      const running = () => [...watch.pods.values()].filter((p) => p.running !== undefined).length;
      await watch.waitFor(() => {
        const n = running();
        if (nowMs() - lastLog > 5000) { lastLog = nowMs(); log(`${n}/${args.replicas} Running after ${((nowMs() - tCreate) / 1000).toFixed(1)} s`); }
        return n >= args.replicas;
      }, args.timeoutS * 1000, `${args.replicas} pods Running`);
    } finally {
      clearInterval(sampler);
    }
    const tAll = nowMs();
    phaseEnd = tAll;
    const metricsAfter = await scrape(api);
    const cpAfter = await readProc(cpPid);
    const hollowAfter = await readProc(hollowPid);
    watch.stop();
    const allRunningS = (tAll - tCreate) / 1000;
    log(`${args.replicas} Running in ${allRunningS.toFixed(1)} s`);

    const done = [...watch.pods.values()].filter((p) => p.running !== undefined && p.added !== undefined);
    const startups = done.map((p) => p.running! - p.added!);
    const toBound = done.filter((p) => p.bound !== undefined).map((p) => p.bound! - p.added!);
    const boundToRunning = done.filter((p) => p.bound !== undefined).map((p) => p.running! - p.bound!);
    const firstCreated = Math.min(...done.map((p) => p.added!));
    const quantiles = (key: (l: Record<string, string>) => string | undefined) => {
      const d = diffHistograms(parseDurationBuckets(metricsAfter, key), parseDurationBuckets(metricsBefore, key));
      return [...d].map(([k, b]) => ({ key: k, count: Math.max(...b.values()), p50: histogramQuantile(0.5, b), p99: histogramQuantile(0.99, b) }))
        .filter((x) => x.count > 0).sort((a, b) => b.count - a.count);
    };
    result = {
      nodesReadyS, allRunningS,
      startup: { p50: percentile(startups, 50), p99: percentile(startups, 99), max: Math.max(...startups) },
      toBound: { p50: percentile(toBound, 50), p99: percentile(toBound, 99) },
      boundToRunning: { p50: percentile(boundToRunning, 50), p99: percentile(boundToRunning, 99) },
      createdSpreadS: (Math.max(...done.map((p) => p.added!)) - firstCreated) / 1000,
      byVerb: quantiles((l) => (l.resource ? l.verb : undefined)),
      byClass: quantiles(sloClass),
      calls: callCounts(metricsAfter, metricsBefore),
      cp: { cpuS: (cpAfter.ticks - cpBefore.ticks) / clkTck, peakRssMiB: Math.max(cpPeak, cpAfter.rssKiB) / 1024, hwmMiB: cpAfter.hwmKiB / 1024, idleRssMiB: cpBefore.rssKiB / 1024 },
      hollow: { cpuS: (hollowAfter.ticks - hollowBefore.ticks) / clkTck, peakRssMiB: Math.max(hollowPeak, hollowAfter.rssKiB) / 1024 },
    };
  } finally {
    await stopProcess(hollow, 'hollow-nodes');
    await stopProcess(cp, 'the control plane');
    const tailS = (nowMs() - phaseEnd) / 1000;
    if (result && args.profile) {
      const file = (await fs.readdir(profDir).catch(() => [] as string[])).find((f) => f.endsWith('.cpuprofile'));
      if (file) {
        const prof = JSON.parse(await fs.readFile(path.join(profDir, file), 'utf8')) as Parameters<typeof summarizeProfile>[0];
        const windowS = Math.ceil(result.allRunningS) + 2;
        result.profile = summarizeProfile(prof, windowS, tailS, ['handle', 'dispatch', 'list', 'watch', 'create', 'update', 'patch', 'reconcile', 'schedule', 'scheduleOne', 'sync', 'fanOut', 'notify']);
      }
      // The hollow nodes' process too: pod startup includes its own queueing.
      const hollowFile = (await fs.readdir(`${profDir}-hollow`).catch(() => [] as string[])).find((f) => f.endsWith('.cpuprofile'));
      if (hollowFile) {
        const prof = JSON.parse(await fs.readFile(path.join(`${profDir}-hollow`, hollowFile), 'utf8')) as Parameters<typeof summarizeProfile>[0];
        result.hollowProfile = summarizeProfile(prof, Math.ceil(result.allRunningS) + 2, tailS, ['sync', 'syncPod', 'reportStatus', 'emit', 'watch']);
      }
    }
    if (process.env.BENCH_KEEP) log(`kept ${work}`);
    else await fs.rm(work, { recursive: true, force: true });
  }
  report(result!, git, startLoad);
}

function report(r: Result, git: string, startLoad: string): void {
  const store = args.store ? args.store.split(':')[0]! : 'sqlite';
  const BEGIN = `<!-- bench:scale-${store}:begin -->`;
  const END = `<!-- bench:scale-${store}:end -->`;
  const ms = (s: number) => (Number.isNaN(s) ? '-' : (s * 1000).toFixed(s < 0.1 ? 1 : 0));
  const cls = (k: string) => r.byClass.find((c) => c.key === k);
  const mutating = cls('mutating');
  const reads = cls('read: single object');
  const met = (ok: boolean) => (ok ? 'met' : 'missed');
  const goals = [
    `mutating calls p99 ${ms(mutating?.p99 ?? NaN)} ms (goal < 500 ms): ${met((mutating?.p99 ?? Infinity) < 0.5)}`,
    `single-object reads p99 ${ms(reads?.p99 ?? NaN)} ms (goal < 500 ms): ${met((reads?.p99 ?? Infinity) < 0.5)}`,
    `pod startup p99 ${(r.startup.p99 / 1000).toFixed(2)} s (goal < 2.5 s): ${met(r.startup.p99 < 2500)}`,
    `all ${args.replicas} Running in ${r.allRunningS.toFixed(1)} s (goal < 60 s): ${met(r.allRunningS < 60)}`,
  ];
  const prof = r.profile ? `

Where the control plane's CPU went (V8 profile over the ${r.profile.windowS} s of the StatefulSet phase; self time by module, ms):
${r.profile.byModule.slice(0, 10).map(([m, v]) => `${m} ${v.toFixed(0)}`).join('; ')}.
Top functions (self ms): ${r.profile.byFunction.slice(0, 10).map(([f, v]) => `${f} ${v.toFixed(0)}`).join('; ')}.` : '';
  const hollowProf = r.hollowProfile ? `
Where the hollow-nodes process's CPU went (same window; self ms by module): ${r.hollowProfile.byModule.slice(0, 10).map(([m, v]) => `${m} ${v.toFixed(0)}`).join('; ')}.
Top functions (self ms): ${r.hollowProfile.byFunction.slice(0, 12).map(([f, v]) => `${f} ${v.toFixed(0)}`).join('; ')}.` : '';
  const body = `${BEGIN}
Run at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} on commit ${git}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), load average at the start ${startLoad}, after ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}.
Store: ${args.store ?? 'sqlite (the default, embedded)'}. ${args.nodes} hollow nodes in one \`stevedore hollow-nodes\` process (pod start delay ${args.startDelay}), Ready ${r.nodesReadyS.toFixed(1)} s after it started;
then one StatefulSet of ${args.replicas} replicas, \`podManagementPolicy: Parallel\`, created with \`kubectl apply\`.

| measure | value |
| --- | --- |
| time from the apply to all ${args.replicas} Running | ${r.allRunningS.toFixed(1)} s |
| pod startup latency p50 / p99 / max (watch saw it created → watch saw it Running) | ${(r.startup.p50 / 1000).toFixed(2)} / ${(r.startup.p99 / 1000).toFixed(2)} / ${(r.startup.max / 1000).toFixed(2)} s |
| of which created → bound (scheduler) p50 / p99; bound → Running (node) p50 / p99 | ${(r.toBound.p50 / 1000).toFixed(2)} / ${(r.toBound.p99 / 1000).toFixed(2)} s; ${(r.boundToRunning.p50 / 1000).toFixed(2)} / ${(r.boundToRunning.p99 / 1000).toFixed(2)} s |
| first to last pod created (the StatefulSet controller) | ${r.createdSpreadS.toFixed(1)} s |
| control plane CPU during the phase | ${r.cp.cpuS.toFixed(1)} s (${((r.cp.cpuS / r.allRunningS) * 100).toFixed(0)} % of a core) |
| control plane RSS: before / peak in the phase / VmHWM | ${r.cp.idleRssMiB.toFixed(0)} / ${r.cp.peakRssMiB.toFixed(0)} / ${r.cp.hwmMiB.toFixed(0)} MiB |
| hollow-nodes process (${args.nodes} agents): CPU / peak RSS | ${r.hollow.cpuS.toFixed(1)} s / ${r.hollow.peakRssMiB.toFixed(0)} MiB |

API call latency during the phase (server side, \`apiserver_request_duration_seconds\` from /metrics, the difference over the phase; WATCH left out as the SLO does; quantiles interpolated in kube-apiserver's buckets as \`histogram_quantile\` does):

| class / verb | calls | p50 (ms) | p99 (ms) |
| --- | --- | --- | --- |
${[...r.byClass, ...r.byVerb].map((c) => `| ${c.key} | ${c.count} | ${ms(c.p50)} | ${ms(c.p99)} |`).join('\n')}

Calls during the phase by verb, resource and code (\`apiserver_request_total\`): ${r.calls.slice(0, 12).map(([k, v]) => `${k}: ${v}`).join('; ')}.

Goals (issue 19): ${goals.join('; ')}.${prof}${hollowProf}
${END}`;
  process.stdout.write(`${body}\n`);
  if (args.updateResults) void replaceResultsSection(args.updateResults, BEGIN, END, body, `# Scale: 100 hollow nodes, a 1000-replica StatefulSet (${store})`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
