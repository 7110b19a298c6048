/**
 * Autoscaling benchmark (issue 20), on `stevedore up --nodes 1 --max-nodes 2`
 * with half-cpu nodes and the cluster autoscaler's default scan interval
 * (10 s), examples/autoscaling/php-apache.yaml under an HPA
 * (--cpu-percent=50 --min=1 --max=10):
 *   1. from the start of load (a busybox wget loop) to the HPA's decision
 *      (spec.replicas > 1) and to the first new replica Ready;
 *   2. from a pod Pending (PodScheduled=False, Unschedulable) to the cluster
 *      autoscaler's TriggeredScaleUp and to the new node Ready (and its pod
 *      Running). If the HPA's replicas all fit on node-1, the Deployment is
 *      scaled past it by hand (the HPA deleted first) to make one.
 * Polled every 200 ms.
 *
 *   bash bench/run.sh --autoscaling [--update-results bench/RESULTS.md]
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, run } from './cluster-util.js';
import { eachFlag, nowMs, replaceResultsSection, sleep } from './stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'bin', 'stevedore.js');
const BEGIN = '<!-- bench:autoscaling:begin -->';
const END = '<!-- bench:autoscaling:end -->';

const args: { updateResults?: string; timeoutS: number } = { timeoutS: 240 };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--update-results') args.updateResults = v();
  else if (k === '--timeout') args.timeoutS = Number(v());
  else if (k === '--autoscaling') { /* run.sh's selector */ } else return false;
  return true;
});
const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);

type KList = { items: Array<{ metadata: { name: string; deletionTimestamp?: string }; spec?: { nodeName?: string; replicas?: number }; status?: { phase?: string; conditions?: Array<{ type: string; status: string; reason?: string }> }; reason?: string; involvedObject?: { name: string } }> };

async function main(): Promise<void> {
  const git = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
  const startLoad = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-bench-as-');
  const tag = String(process.pid % 10000);
  const env = { KUBECONFIG: path.join(dataDir, 'kubeconfig') };
  const k = async (a: string[], input?: string) => {
    const r = await run('kubectl', a, env, input);
    if (r.code !== 0) throw new Error(`kubectl ${a.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const json = async (a: string[]) => JSON.parse(await k([...a, '-o', 'json'])) as KList;
  const until = async <T>(what: string, check: () => Promise<T | undefined>): Promise<T> => {
    const deadline = nowMs() + args.timeoutS * 1000;
    for (;;) {
      const v = await check().catch(() => undefined);
      if (v !== undefined) return v;
      if (nowMs() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  };
  const ready = (p: KList['items'][number]) => !p.metadata.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  log('stevedore up --nodes 1 --max-nodes 2');
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--nodes', '1', '--max-nodes', '2', '--node-allocatable', 'cpu=500m,memory=1Gi',
    '--port', String(await freePort()), '--sandbox-name', `bas${tag}`, '--node-bridge', `stvdbas${tag}`, '--node-network', `10.245.${10 + (process.pid % 200)}.0/24`,
    '--pod-cidr', '10.240.0.0/16', '--service-cidr', `10.${40 + (process.pid % 15)}.7.0/24`]);
  const rows: string[] = [];
  let decisionS = NaN, replicaS = NaN, triggerS = NaN, nodeS = NaN, podS = NaN;
  let how = '';
  try {
    if (up.code !== 0) throw new Error(`stevedore up failed:\n${up.stderr}\n${up.stdout}`);
    await k(['apply', '-f', path.join(REPO, 'examples', 'autoscaling', 'php-apache.yaml')]);
    await k(['rollout', 'status', 'deployment/php-apache', '--timeout=120s']);
    await k(['autoscale', 'deployment', 'php-apache', '--cpu-percent=50', '--min=1', '--max=10']);
    // The HPA has its first measurement (as in the walkthrough, where load starts on an HPA showing 0 %).
    await until('the HPA to measure php-apache', async () => (/cpu: \d+%/.test(await k(['get', 'hpa', 'php-apache'])) ? true : undefined));
    log('load starts');
    const t0 = nowMs();
    await k(['run', 'load-generator', '--image=busybox', '--restart=Never', '--', '/bin/sh', '-c', 'while sleep 0.01; do wget -q -O- http://php-apache; done']);
    const tDecision = await until('the HPA to raise php-apache', async () => (Number((await k(['get', 'deployment', 'php-apache', '-o', 'jsonpath={.spec.replicas}'])).trim()) > 1 ? nowMs() : undefined));
    decisionS = (tDecision - t0) / 1000;
    log(`HPA decision after ${decisionS.toFixed(1)} s`);
    const tReplica = await until('a second php-apache replica Ready', async () => ((await json(['get', 'pods', '-l', 'run=php-apache'])).items.filter(ready).length > 1 ? nowMs() : undefined));
    replicaS = (tReplica - t0) / 1000;
    log(`first new replica Ready after ${replicaS.toFixed(1)} s`);
    // 2. A pod Pending for lack of cpu → TriggeredScaleUp → node-2 Ready.
    const pendingPod = async () => (await json(['get', 'pods', '-l', 'run=php-apache'])).items.find((p) => !p.spec?.nodeName && (p.status?.conditions ?? []).some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable'))?.metadata.name;
    let pending: string | undefined;
    for (const end = nowMs() + 60_000; nowMs() < end && !pending;) {
      pending = await pendingPod().catch(() => undefined);
      if (!pending) {
        const nodes = await json(['get', 'nodes']);
        if (nodes.items.length > 1) break;
        await sleep(200);
      }
    }
    const nodesNow = (await json(['get', 'nodes'])).items.length;
    if (!pending && nodesNow === 1) {
      how = 'the HPA\'s replicas fit on node-1: the HPA deleted and php-apache scaled to 3 by hand';
      await k(['delete', 'hpa', 'php-apache']);
      await k(['scale', 'deployment', 'php-apache', '--replicas=3']);
    } else {
      how = 'the HPA\'s own replicas went Pending';
    }
    const tPending = pending ? nowMs() : await until('a php-apache pod Pending', async () => ((await pendingPod()) ? nowMs() : undefined));
    pending ??= await pendingPod();
    log(`pod ${pending} Pending (${how})`);
    const tTrigger = await until('TriggeredScaleUp', async () => ((await json(['get', 'events', '--field-selector', 'reason=TriggeredScaleUp'])).items.length ? nowMs() : undefined));
    const tNode = await until('node-2 Ready', async () => ((await json(['get', 'nodes'])).items.some((n) => n.metadata.name === 'node-2' && (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')) ? nowMs() : undefined));
    const tPod = await until('a php-apache pod Running on node-2', async () => ((await json(['get', 'pods', '-l', 'run=php-apache'])).items.some((p) => p.spec?.nodeName === 'node-2' && ready(p)) ? nowMs() : undefined));
    triggerS = (tTrigger - tPending) / 1000;
    nodeS = (tNode - tTrigger) / 1000;
    podS = (tPod - tPending) / 1000;
    log(`Pending → TriggeredScaleUp ${triggerS.toFixed(1)} s, → node-2 Ready ${nodeS.toFixed(1)} s more, Pending → pod Running on node-2 ${podS.toFixed(1)} s`);
  } finally {
    log('stevedore down');
    const down = await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
    if (down.code !== 0) log(`warning: down failed: ${down.stderr}`);
    await fs.rm(dataDir, { recursive: true, force: true });
  }
  rows.push(`| start of load → HPA decision (spec.replicas > 1) | ${decisionS.toFixed(1)} |`);
  rows.push(`| start of load → first new replica Ready | ${replicaS.toFixed(1)} |`);
  rows.push(`| pod Pending (Unschedulable) → TriggeredScaleUp | ${triggerS.toFixed(1)} |`);
  rows.push(`| TriggeredScaleUp → new node Ready | ${nodeS.toFixed(1)} |`);
  rows.push(`| pod Pending → pod Ready on the new node | ${podS.toFixed(1)} |`);
  const body = `${BEGIN}
Run at ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} on commit ${git}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), load average at the start ${startLoad}, after ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}.
\`stevedore up --nodes 1 --max-nodes 2 --node-allocatable cpu=500m,memory=1Gi\` (the cluster autoscaler's default 10 s scan interval), examples/autoscaling/php-apache.yaml, \`kubectl autoscale … --cpu-percent=50 --min=1 --max=10\` (the HPA's 15 s sync, the agents' 10 s stats), one busybox wget loop; ${how}. Polled every 200 ms.

| step | seconds |
| --- | --- |
${rows.join('\n')}

Goal (issue 20): scale-up decision within 30 s of the load: ${decisionS <= 30 ? 'met' : 'missed'} (${decisionS.toFixed(1)} s); a new node Ready within 15 s of the decision: ${nodeS <= 15 ? 'met' : 'missed'} (${nodeS.toFixed(1)} s).
${END}`;
  process.stdout.write(`${body}\n`);
  if (args.updateResults) await replaceResultsSection(args.updateResults, BEGIN, END, body, '# Autoscaling: HPA and cluster autoscaler (issue 20)');
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
