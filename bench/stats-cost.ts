/**
 * Stats collection cost benchmark (issue 20), on a one-node `stevedore up`
 * cluster with 100 running busybox pods (stage1 namespaces): the agent's CPU
 * over a window with its stats collection at the default interval (10 s) and
 * the control plane's metrics API asked every 15 s (what `kubectl top` and an
 * HPA cause: each ask scrapes the node's /stats/summary), beside the same
 * window with collection at one sample a day (`--stats-interval-seconds
 * 86400`: none in the window) and nobody asking. They alternate (rounds, the
 * order rotated every round); the agent is restarted with the other interval
 * between windows, and a window starts after the restart settles. The
 * agent's CPU is its unit's cgroup's (cgroup2 cpu.stat): the agent and every
 * process it starts. The difference sits near the noise of a shared machine,
 * so a third window magnifies it: stats every second (the same asking),
 * whose excess over "off" is ten samples per 10 s, giving the CPU of one
 * sample and the projection to the default interval.
 *
 *   bash bench/run.sh --stats-cost [--pods 100] [--window 60] [--rounds 2] [--settle 25] [--update-results bench/RESULTS.md]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiGet, run, upBenchCluster, type BenchCluster } from './cluster-util.js';
import { eachFlag, median, nowMs, replaceResultsSection, sleep } from './stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BEGIN = '<!-- bench:stats-cost:begin -->';
const END = '<!-- bench:stats-cost:end -->';
/** The agent's default --stats-interval-seconds, and what stands for "off": one sample at start, none in any window. */
const DEFAULT_INTERVAL_S = 10;
const OFF_INTERVAL_S = 86_400;
/** The magnifying window's interval: ten samples where the default takes one. */
const FAST_INTERVAL_S = 1;
/** metrics-server's default resolution: how often the metrics API is asked in the "on" windows. */
const SCRAPE_EVERY_MS = 15_000;

interface Args { pods: number; windowS: number; rounds: number; settleS: number; updateResults?: string }
const args: Args = { pods: 100, windowS: 60, rounds: 2, settleS: 25 };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--pods') args.pods = Number(v());
  else if (k === '--window') args.windowS = Number(v());
  else if (k === '--rounds') args.rounds = Number(v());
  else if (k === '--settle') args.settleS = Number(v());
  else if (k === '--update-results') args.updateResults = v();
  else if (k === '--stats-cost') { /* run.sh's selector */ } else return false;
  return true;
});

const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

type KPod = { metadata: { deletionTimestamp?: string }; status?: { conditions?: Array<{ type: string; status: string }> } };
const isReady = (p: KPod) => !p.metadata.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function waitFor(what: string, timeoutS: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = nowMs() + timeoutS * 1000;
  while (!(await check())) {
    if (nowMs() > deadline) throw new Error(`timed out after ${timeoutS} s waiting for ${what}`);
    await sleep(500);
  }
}

async function onNodeMust(c: BenchCluster, script: string): Promise<string> {
  const r = await c.onNode(['sh', '-c', script]);
  if (r.code !== 0) throw new Error(`on the node: ${script}: ${r.stderr}`);
  return r.stdout.trim();
}

/** The CPU time the agent's unit cgroup has counted, ns (hybrid hosts keep cgroup2 at unified/). */
async function agentCpuNs(c: BenchCluster): Promise<number> {
  const usec = await onNodeMust(c, 'g=$(systemctl show -p ControlGroup --value stevedore-agent.service); awk \'/^usage_usec/ {print $2}\' $(ls /sys/fs/cgroup/unified$g/cpu.stat /sys/fs/cgroup$g/cpu.stat 2>/dev/null | head -1)');
  const n = Number(usec);
  if (!usec || !Number.isFinite(n)) throw new Error(`cannot read the agent's cgroup CPU time: ${JSON.stringify(usec)}`);
  return n * 1000;
}

/** Restart the agent with another stats interval (its config file, as `agent install` wrote it) and wait for its node API to answer. */
async function restartAgentWith(c: BenchCluster, configPath: string, intervalS: number): Promise<void> {
  await onNodeMust(c, `sed -i 's/^statsIntervalSeconds: .*/statsIntervalSeconds: ${intervalS}/' ${configPath} && grep -qx 'statsIntervalSeconds: ${intervalS}' ${configPath} && systemctl restart stevedore-agent.service`);
  // The control plane reaches the node API through its proxy: logs of a pod answer once the agent serves again.
  await waitFor('the restarted agent to be active', 60, async () => (await c.onNode(['systemctl', 'is-active', 'stevedore-agent.service'])).stdout.trim() === 'active');
}

async function main(): Promise<void> {
  const git = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  const startLoad = load();
  const c = await upBenchCluster('stats-cost', log);
  const lines: string[] = [];
  try {
    await c.must(['delete', 'pod', 'demo', '--grace-period=1', '--wait=true', '--timeout=120s']);
    const configPath = /--config\s+(\S+)/.exec(await onNodeMust(c, 'systemctl show -p ExecStart --value stevedore-agent.service'))?.[1];
    if (!configPath) throw new Error('cannot find the agent\'s --config in its unit');
    await c.must(['apply', '-f', '-'], `apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: ${args.pods}
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sleep, '36000']
        resources: {limits: {cpu: 10m, memory: 16Mi}}
`);
    await waitFor(`${args.pods} pods Ready`, 600, async () => {
      const r = await apiGet<{ items: KPod[] }>(c.api, '/api/v1/namespaces/default/pods?labelSelector=app%3Didle');
      return (r.body.items ?? []).filter(isReady).length === args.pods;
    });
    log(`${args.pods} pods Ready (load ${load()})`);

    type Kind = 'on' | 'off' | 'fast';
    const INTERVAL: Record<Kind, number> = { on: DEFAULT_INTERVAL_S, off: OFF_INTERVAL_S, fast: FAST_INTERVAL_S };
    const window = async (kind: Kind): Promise<{ percent: number; scrapes: number; podsInTop: number }> => {
      const on = kind !== 'off';
      await restartAgentWith(c, configPath, INTERVAL[kind]);
      await sleep(args.settleS * 1000); // past the restart's re-adoption and first sample
      let scrapes = 0;
      let podsInTop = 0;
      let stop = false;
      const scraper = on ? (async () => {
        while (!stop) {
          const [pods] = await Promise.all([
            apiGet<{ items?: unknown[] }>(c.api, '/apis/metrics.k8s.io/v1beta1/namespaces/default/pods'),
            apiGet<unknown>(c.api, '/apis/metrics.k8s.io/v1beta1/nodes'),
          ]);
          podsInTop = pods.body.items?.length ?? 0;
          scrapes++;
          const until = nowMs() + SCRAPE_EVERY_MS;
          while (!stop && nowMs() < until) await sleep(250);
        }
      })() : Promise.resolve();
      const cpu0 = await agentCpuNs(c);
      const t0 = nowMs();
      await sleep(args.windowS * 1000);
      const percent = ((await agentCpuNs(c)) - cpu0) / 1e6 / (nowMs() - t0) * 100;
      stop = true;
      await scraper;
      log(`collection ${on ? `every ${INTERVAL[kind]} s, metrics API asked ${scrapes} times (${podsInTop} pods in it)` : 'off'}: agent ${percent.toFixed(3)} % of a core (load ${load()})`);
      return { percent, scrapes, podsInTop };
    };

    const on: number[] = [];
    const off: number[] = [];
    const fast: number[] = [];
    const diffs: number[] = [];
    const fastDiffs: number[] = [];
    let podsInTop = 0;
    // Each round runs the three windows in another order (rotated), so a trend of the machine's load falls on each in turn.
    const orders: Kind[][] = [['on', 'off', 'fast'], ['off', 'fast', 'on'], ['fast', 'on', 'off']];
    for (let i = 0; i < args.rounds; i++) {
      const round: Record<Kind, number> = { on: 0, off: 0, fast: 0 };
      for (const kind of orders[i % orders.length]!) {
        const r = await window(kind);
        round[kind] = r.percent;
        if (kind === 'on') podsInTop = r.podsInTop;
      }
      on.push(round.on);
      off.push(round.off);
      fast.push(round.fast);
      diffs.push(round.on - round.off);
      fastDiffs.push(round.fast - round.off);
    }
    if (podsInTop < args.pods) throw new Error(`the metrics API listed ${podsInTop} of ${args.pods} pods: the collection did not cover them all`);
    const cost = median(diffs);
    // fast − off: 1/FAST_INTERVAL_S samples a second and the same asking; x % of a core is 10·x ms of CPU a second.
    const msPerSample = median(fastDiffs) * 10 * FAST_INTERVAL_S;
    const projected = (msPerSample / (DEFAULT_INTERVAL_S * 1000)) * 100;
    const endLoad = load();
    log(`stats collection costs ${cost.toFixed(3)} % of a core at ${args.pods} pods (median of ${args.rounds} rounds; on ${on.map((x) => x.toFixed(3)).join(', ')}; off ${off.map((x) => x.toFixed(3)).join(', ')}; every ${FAST_INTERVAL_S} s ${fast.map((x) => x.toFixed(3)).join(', ')}: ${msPerSample.toFixed(2)} ms CPU per sample, ${projected.toFixed(3)} % at ${DEFAULT_INTERVAL_S} s)`);
    lines.push(
      `Run at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} on commit ${git}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), load average at the start ${startLoad}, at the end ${endLoad}.`,
      '',
      '| measure | ours | peer | difference | goal |',
      '| --- | --- | --- | --- | --- |',
      `| agent CPU at ${args.pods} running pods (% of one core, its unit's cgroup, ${args.windowS} s windows, median of ${args.rounds} rounds, the windows' order rotated) | ${median(on).toFixed(3)} with stats every ${DEFAULT_INTERVAL_S} s and the metrics API asked every ${SCRAPE_EVERY_MS / 1000} s | ${median(off).toFixed(3)} with stats off (one sample a day) and no one asking | ${cost.toFixed(3)} | < 1 %: ${cost < 1 ? 'met' : 'missed'} |`,
      `| the same, magnified: stats every ${FAST_INTERVAL_S} s (same asking) | ${median(fast).toFixed(3)} | ${median(off).toFixed(3)} off | ${median(fastDiffs).toFixed(3)}: ${msPerSample.toFixed(2)} ms CPU per sample of ${args.pods} pods, ${projected.toFixed(3)} % at ${DEFAULT_INTERVAL_S} s | < 1 %: ${projected < 1 ? 'met' : 'missed'} |`,
    );
  } finally {
    await c.down();
  }
  const body = `${BEGIN}\n${lines.join('\n')}\n${END}`;
  process.stdout.write(`${body}\n`);
  if (args.updateResults) await replaceResultsSection(args.updateResults, BEGIN, END, body, '# Stats collection cost at 100 pods (issue 20)');
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
