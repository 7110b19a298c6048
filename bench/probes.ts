/**
 * Pod spec benchmark (issue 14), on a one-node `stevedore up` cluster:
 *   1. pod start with three volumes (a configMap, a secret and an emptyDir)
 *      beside the same pod without them, alternating, apply → Ready;
 *   2. 100 pods each with an exec readiness probe every 10 s: the agent's CPU
 *      (its own and its reaped children's: the probe processes it starts, through
 *      stevedore-enter on the namespaces stage1) over a window, beside the same
 *      pods without probes, and beside bare `crun exec ID true` calls run in the
 *      node, per call.
 *
 *   bash bench/run.sh --probes [--samples 15] [--pods 100] [--window 60] [--update-results bench/RESULTS.md]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiGet, run, upBenchCluster, type BenchCluster } from './cluster-util.js';
import { eachFlag, fmtMs, median, nowMs, replaceResultsSection, sleep } from './stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BEGIN = '<!-- bench:probes:begin -->';
const END = '<!-- bench:probes:end -->';

interface Args { samples: number; pods: number; windowS: number; updateResults?: string }
const args: Args = { samples: 15, pods: 100, windowS: 60 };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--samples') args.samples = Number(v());
  else if (k === '--pods') args.pods = Number(v());
  else if (k === '--window') args.windowS = Number(v());
  else if (k === '--update-results') args.updateResults = v();
  else if (k === '--probes') { /* run.sh's selector */ } else return false;
  return true;
});

const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);

type KPod = { metadata: { deletionTimestamp?: string }; spec?: { containers?: Array<{ readinessProbe?: unknown }> }; status?: { conditions?: Array<{ type: string; status: string }>; containerStatuses?: Array<{ containerID?: string }> } };
const isReady = (p: KPod) => !p.metadata.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function readyCount(c: BenchCluster, selector: string): Promise<{ total: number; ready: number; items: KPod[] }> {
  const r = await apiGet<{ items: KPod[] }>(c.api, `/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`);
  const items = r.body.items ?? [];
  return { total: items.length, ready: items.filter(isReady).length, items };
}

async function waitFor(what: string, timeoutS: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = nowMs() + timeoutS * 1000;
  while (!(await check())) {
    if (nowMs() > deadline) throw new Error(`timed out after ${timeoutS} s waiting for ${what}`);
    await sleep(50);
  }
}

const pod = (name: string, volumes: boolean) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {bench: volumes}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
${volumes ? `    volumeMounts:
    - {name: config, mountPath: /etc/config}
    - {name: secret, mountPath: /etc/secret}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: config, configMap: {name: bench-config}}
  - {name: secret, secret: {secretName: bench-secret}}
  - {name: scratch, emptyDir: {}}
` : ''}`;

/**
 * The agent's CPU so far, in ns: its own time, and that of the children it
 * has reaped (every probe's process), from /proc/PID/stat in the node.
 */
async function agentCpuNs(c: BenchCluster): Promise<{ self: number; children: number }> {
  const r = await c.onNode(['sh', '-c', 'cat /proc/$(systemctl show -p MainPID --value stevedore-agent.service)/stat; getconf CLK_TCK']);
  const [stat, tck] = r.stdout.trim().split('\n');
  const fields = (stat ?? '').slice((stat ?? '').lastIndexOf(')') + 2).split(' ').map(Number);
  // After the command name: state is field 3, utime/stime/cutime/cstime fields 14–17.
  const toNs = (ticks: number) => (ticks / Number(tck || 100)) * 1e9;
  const self = (fields[11] ?? NaN) + (fields[12] ?? NaN);
  const children = (fields[13] ?? NaN) + (fields[14] ?? NaN);
  if (!Number.isFinite(self + children)) throw new Error(`cannot read the agent's CPU time: ${r.stdout} ${r.stderr}`);
  return { self: toNs(self), children: toNs(children) };
}

async function main(): Promise<void> {
  const git = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  const startLoad = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const c = await upBenchCluster('probes', log);
  const lines: string[] = [];
  try {
    await c.must(['delete', 'pod', 'demo', '--grace-period=1', '--wait=true', '--timeout=120s']);
    // ---- 1. pod start with and without three volumes, alternating
    await c.must(['create', 'configmap', 'bench-config', '--from-literal=a=1', '--from-literal=b=2']);
    await c.must(['create', 'secret', 'generic', 'bench-secret', '--from-literal=password=s3cret']);
    const times: Record<'plain' | 'volumes', number[]> = { plain: [], volumes: [] };
    for (let i = 0; i < args.samples + 1; i++) {
      for (const kind of (i % 2 ? ['volumes', 'plain'] : ['plain', 'volumes']) as Array<'plain' | 'volumes'>) {
        const name = `${kind}-${i}`;
        const t0 = nowMs();
        await c.must(['apply', '-f', '-'], pod(name, kind === 'volumes'));
        await waitFor(`${name} Ready`, 120, async () => isReady((await apiGet<KPod>(c.api, `/api/v1/namespaces/default/pods/${name}`)).body));
        if (i > 0) times[kind].push(nowMs() - t0); // the first round warms up
        await c.must(['delete', 'pod', name, '--grace-period=1', '--wait=false']);
      }
    }
    await waitFor('the volume pods gone', 120, async () => (await readyCount(c, 'bench=volumes')).total === 0);
    const plain = median(times.plain);
    const withVolumes = median(times.volumes);
    log(`apply → Ready: plain ${fmtMs(plain)} ms, with 3 volumes ${fmtMs(withVolumes)} ms (${(withVolumes / plain).toFixed(2)}x)`);

    // ---- 2. 100 pods, first without probes (the agent's own share at this many pods), then each with an exec readiness probe every 10 s
    const deployment = (probe: boolean) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: probed}
spec:
  replicas: ${args.pods}
  selector: {matchLabels: {app: probed}}
  template:
    metadata: {labels: {app: probed}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sleep, '3600']
        resources: {limits: {cpu: 10m, memory: 16Mi}}
${probe ? "        readinessProbe: {exec: {command: ['true']}, periodSeconds: 10}\n" : ''}`;
    const window = async (what: string): Promise<{ percent: number; selfPercent: number; childrenPercent: number }> => {
      await sleep(10_000); // past the start burst
      const cpu0 = await agentCpuNs(c);
      const t0 = nowMs();
      await sleep(args.windowS * 1000);
      const cpu1 = await agentCpuNs(c);
      const ms = nowMs() - t0;
      const selfPercent = (cpu1.self - cpu0.self) / 1e6 / ms * 100;
      const childrenPercent = (cpu1.children - cpu0.children) / 1e6 / ms * 100;
      log(`${what}: agent ${(selfPercent + childrenPercent).toFixed(2)} % of a core (its process ${selfPercent.toFixed(2)} %, its children ${childrenPercent.toFixed(2)} %; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')})`);
      return { percent: selfPercent + childrenPercent, selfPercent, childrenPercent };
    };
    const settled = async (probed: boolean) => waitFor(`${args.pods} pods Ready`, 300, async () => {
      const r = await readyCount(c, 'app=probed');
      return r.total === args.pods && r.ready === args.pods && r.items.every((p) => probed === Boolean(p.spec?.containers?.[0]?.readinessProbe));
    });
    await c.must(['apply', '-f', '-'], deployment(false));
    await settled(false);
    const baseline = await window(`${args.pods} pods without probes`);
    const baselinePercent = baseline.percent;
    await c.must(['apply', '-f', '-'], deployment(true));
    await settled(true);
    const probed = await window(`${args.pods} pods probed every 10 s`);
    const agentPercent = probed.percent;
    const probesInWindow = args.pods * (args.windowS / 10);
    const agentMsPerProbe = ((agentPercent - baselinePercent) / 100) * args.windowS * 1000 / probesInWindow;
    log(`probes add ${(agentPercent - baselinePercent).toFixed(2)} % of a core: ${fmtMs(agentMsPerProbe)} ms CPU per probe`);
    // The same probe bare: crun exec of one of these containers, inside the node, its CPU from the shell's children times.
    const some = (await readyCount(c, 'app=probed')).items[0]!;
    const [uuid, app] = some.status!.containerStatuses![0]!.containerID!.replace('rkt://', '').split(':');
    const crunId = `stevedore-${uuid!.replace(/-/g, '')}-${app}`;
    const calls = 50;
    // Bare calls, each way in, alternating in rounds (the machine's load moves): crun exec, and the helper probes use.
    const timesOf = async (script: string) => {
      const r = await c.onNode(['bash', '-c', `a=$(date +%s%N); ${script}; b=$(date +%s%N); echo $(( (b-a)/1000 )); times`]);
      if (r.code !== 0) throw new Error(`${script}: ${r.stderr}`);
      const [wallUs, , childTimes] = r.stdout.trim().split('\n');
      const seconds = (childTimes ?? '').trim().split(/\s+/).map((t) => { const m = /(\d+)m([\d.]+)s/.exec(t); return m ? Number(m[1]) * 60 + Number(m[2]) : 0; });
      return { cpuMs: ((seconds[0] ?? 0) + (seconds[1] ?? 0)) * 1000 / calls, wallMs: Number(wallUs) / 1000 / calls };
    };
    const helper = path.join(REPO, 'native', 'build', 'Release', 'stevedore-enter');
    const pidOf = `$(sed -n 's/^ *"pid": \\([0-9]*\\),/\\1/p' /run/crun/${crunId}/status)`;
    const bundle = `$(sed -n 's/^ *"bundle": "\\(.*\\)",/\\1/p' /run/crun/${crunId}/status)`;
    const crunRuns: Array<{ cpuMs: number; wallMs: number }> = [];
    const helperRuns: Array<{ cpuMs: number; wallMs: number }> = [];
    for (let round = 0; round < 3; round++) {
      crunRuns.push(await timesOf(`for i in $(seq ${calls}); do crun exec ${crunId} true || exit 1; done`));
      helperRuns.push(await timesOf(`p=${pidOf}; s=$(cut -d' ' -f22 /proc/$p/stat); for i in $(seq ${calls}); do ${helper} ${bundle}/enter.spec $p $s true || exit 1; done`));
    }
    const bareCpuMs = median(crunRuns.map((r) => r.cpuMs));
    const bareWallMs = median(crunRuns.map((r) => r.wallMs));
    const helperCpuMs = median(helperRuns.map((r) => r.cpuMs));
    log(`bare crun exec: ${fmtMs(bareWallMs)} ms wall, ${fmtMs(bareCpuMs)} ms CPU per call; bare stevedore-enter: ${fmtMs(helperCpuMs)} ms CPU per call`);
    await c.must(['delete', 'deployment', 'probed', '--wait=false']);

    lines.push(
      `Run at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} on commit ${git}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), load average at the start ${startLoad}, at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}.`,
      '',
      '| measure | ours | peer | ratio | goal |',
      '| --- | --- | --- | --- | --- |',
      `| apply → Ready, median of ${args.samples} (ms) | ${fmtMs(withVolumes)} with configMap + secret + emptyDir | ${fmtMs(plain)} without volumes | ${(withVolumes / plain).toFixed(2)}x | ≤ 1.3x: ${withVolumes / plain <= 1.3 ? 'met' : 'missed'} |`,
      `| CPU for ${args.pods} pods with an exec readiness probe every 10 s (% of one core, the agent incl. its probe processes, ${args.windowS} s window) | ${agentPercent.toFixed(2)} (its process ${probed.selfPercent.toFixed(2)}, probe processes ${probed.childrenPercent.toFixed(2)}) | ${baselinePercent.toFixed(2)} for the same pods without probes | – | < 5 %: ${agentPercent < 5 ? 'met' : 'missed'} |`,
      `| CPU per probe (ms: what the probes add, over the probes run) | ${fmtMs(agentMsPerProbe)} | ${fmtMs(bareCpuMs)} per bare \`crun exec ID true\` (${fmtMs(bareWallMs)} ms wall), median of 3 rounds of ${calls} | ${(agentMsPerProbe / bareCpuMs).toFixed(2)}x | ≤ 2x: ${agentMsPerProbe / bareCpuMs <= 2 ? 'met' : 'missed'} |`,
      '',
      `Probes enter through \`stevedore-enter\` (native/enter.c): ${fmtMs(helperCpuMs)} ms CPU per bare call, beside ${fmtMs(bareCpuMs)} ms for \`crun exec\`, in the same rounds. At ${args.pods / 10} probes a second, bare \`crun exec\` calls alone would cost ${((args.pods * bareCpuMs) / 100).toFixed(1)} % of a core here.`,
    );
  } finally {
    await c.down();
  }
  const body = `${BEGIN}\n${lines.join('\n')}\n${END}`;
  process.stdout.write(`${body}\n`);
  if (args.updateResults) await replaceResultsSection(args.updateResults, BEGIN, END, body, '# Pod spec: volumes at start, exec probes at 100 pods (issue 14)');
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
