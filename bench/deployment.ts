/**
 * Deployment scale benchmark (issue 16): on a one-node `stevedore up`
 * cluster, a Deployment scaled 0 → N (time to N Ready, the control plane's
 * CPU and RSS meanwhile), beside its nearest peer in the same run: the same N
 * pods applied one by one with `kubectl apply` (what a user without the
 * controller would do), and the same N pods in one multi-document apply.
 *
 *   bash bench/run.sh --deployment [--pods 100] [--update-results bench/RESULTS.md]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiGet, cpuPercent, readProc, run, upBenchCluster, type Api, type ProcSample } from './cluster-util.js';
import { eachFlag, nowMs, replaceResultsSection, sleep } from './stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BEGIN = '<!-- bench:deployment:begin -->';
const END = '<!-- bench:deployment:end -->';

interface Args { pods: number; timeoutS: number; updateResults?: string }
const args: Args = { pods: 100, timeoutS: 300 };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--pods') args.pods = Number(v());
  else if (k === '--timeout') args.timeoutS = Number(v());
  else if (k === '--update-results') args.updateResults = v();
  else if (k === '--deployment') { /* run.sh's selector */ } else return false;
  return true;
});

const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);

interface Phase { name: string; seconds: number; cpPercent: number; cpPeakRssMiB: number; load: string }

type PodList = { items: Array<{ metadata: { deletionTimestamp?: string }; status?: { conditions?: Array<{ type: string; status: string }> } }> };
const ready = (p: PodList['items'][number]) => !p.metadata.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function countReady(api: Api, selector: string): Promise<{ total: number; ready: number }> {
  const r = await apiGet<PodList>(api, `/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`);
  const items = r.body.items ?? [];
  return { total: items.length, ready: items.filter(ready).length };
}

/** Run `act`, then wait until `want` pods of the selector are Ready, sampling the control plane's CPU and peak RSS. */
async function measure(name: string, api: Api, cpPid: number, clkTck: number, selector: string, want: number, act: () => Promise<void>): Promise<Phase> {
  const before: ProcSample = await readProc(cpPid);
  let peakKiB = before.rssKiB;
  const sampler = setInterval(() => { void readProc(cpPid).then((s) => { peakKiB = Math.max(peakKiB, s.rssKiB); }, () => undefined); }, 200);
  const t0 = nowMs();
  try {
    await act();
    const deadline = t0 + args.timeoutS * 1000;
    for (;;) {
      const c = await countReady(api, selector);
      if (c.ready >= want) break;
      if (nowMs() > deadline) throw new Error(`${name}: ${c.ready}/${want} Ready after ${args.timeoutS} s`);
      await sleep(100);
    }
  } finally {
    clearInterval(sampler);
  }
  const seconds = (nowMs() - t0) / 1000;
  const after = await readProc(cpPid);
  const phase = { name, seconds, cpPercent: cpuPercent(before, after, clkTck), cpPeakRssMiB: Math.max(peakKiB, after.rssKiB) / 1024, load: os.loadavg().map((x) => x.toFixed(2)).join(' ') };
  log(`${name}: ${want} Ready in ${seconds.toFixed(2)} s; control plane ${phase.cpPercent.toFixed(1)} % of a core, peak RSS ${phase.cpPeakRssMiB.toFixed(0)} MiB`);
  return phase;
}

async function waitGone(api: Api, selector: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if ((await countReady(api, selector)).total === 0) return;
    await sleep(200);
  }
  throw new Error(`pods ${selector} still there after 120 s`);
}

const podYaml = (name: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {bench: pods}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, command: [sleep, '3600'], resources: {limits: {cpu: 10m, memory: 16Mi}}}]
`;

async function main(): Promise<void> {
  const clkTck = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const git = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  const startLoad = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const phases: Phase[] = [];
  const cluster = await upBenchCluster('deployment', log);
  const { api, must, controlPlanePid: cpPid } = cluster;
  try {
    await must(['delete', 'pod', 'demo', '--grace-period=1', '--wait=true', '--timeout=120s']);
    const n = args.pods;
    const names = Array.from({ length: n }, (_, i) => `bench-pod-${i}`);
    // 1. The peer: the same pods, one `kubectl apply` each.
    phases.push(await measure(`${n} pods, one kubectl apply each`, api, cpPid, clkTck, 'bench=pods', n, async () => {
      for (const name of names) await must(['apply', '-f', '-'], podYaml(name));
    }));
    await must(['delete', 'pods', '-l', 'bench=pods', '--grace-period=1', '--wait=false']);
    await waitGone(api, 'bench=pods');
    // 2. The same pods in one apply (the API and the node as fast as they go, without kubectl per pod).
    phases.push(await measure(`${n} pods, one multi-document kubectl apply`, api, cpPid, clkTck, 'bench=pods', n, async () => {
      await must(['apply', '-f', '-'], names.map(podYaml).join('---\n'));
    }));
    await must(['delete', 'pods', '-l', 'bench=pods', '--grace-period=1', '--wait=false']);
    await waitGone(api, 'bench=pods');
    // 3. The Deployment, 0 → N.
    await must(['create', 'deployment', 'bench', '--image=busybox', '--replicas=0', '--', 'sleep', '3600']);
    await must(['patch', 'deployment', 'bench', '--type=json', '-p', JSON.stringify([
      { op: 'add', path: '/spec/template/spec/terminationGracePeriodSeconds', value: 1 },
      { op: 'add', path: '/spec/template/spec/containers/0/resources', value: { limits: { cpu: '10m', memory: '16Mi' } } },
    ])]);
    phases.push(await measure(`Deployment scaled 0 → ${n}`, api, cpPid, clkTck, 'app=bench', n, async () => {
      await must(['scale', 'deployment', 'bench', `--replicas=${n}`]);
    }));
    await must(['scale', 'deployment', 'bench', '--replicas=0']);
    await waitGone(api, 'app=bench');
  } finally {
    await cluster.down();
  }
  const peer = phases[0]!;
  const deployment = phases[2]!;
  const rows = phases.map((p) => `| ${p.name} | ${p.seconds.toFixed(2)} | ${(p.seconds / peer.seconds).toFixed(2)}x | ${p.cpPercent.toFixed(1)} | ${p.cpPeakRssMiB.toFixed(0)} | ${p.load} |`);
  const body = `${BEGIN}
Run at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} on commit ${git}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), load average at the start ${startLoad}.
One node (\`stevedore up\`, stage1 namespaces), busybox pods with \`sleep 3600\`, ${args.pods} of them; time from the first request to all Ready (polled every 100 ms).

| phase | seconds to all Ready | vs one by one | control plane CPU (% of a core) | control plane peak RSS (MiB) | load average after |
| --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Goal (issue 16): all ${args.pods} Ready in under 15 s, control plane RSS under 150 MiB: ${deployment.seconds < 15 ? 'met' : 'missed'} (${deployment.seconds.toFixed(1)} s), ${deployment.cpPeakRssMiB < 150 ? 'met' : 'missed'} (${deployment.cpPeakRssMiB.toFixed(0)} MiB).
${END}`;
  process.stdout.write(`${body}\n`);
  if (args.updateResults) await replaceResultsSection(args.updateResults, BEGIN, END, body, '# Deployment scale-up (0 → 100)');
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
