/**
 * examples/autoscaling/README.md run as written: every command of its `sh`
 * blocks, in order, with the real kubectl. The steps below must list the
 * same commands (a README edited without this test fails here); each says
 * what its output must show before the walkthrough goes on (a `--watch` is
 * polled without --watch until it shows what the README says it will).
 * Only the cluster's names and addresses are this run's own (flags added to
 * `up` and `down`), so that nothing else on the host is touched.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CLI } from './helpers/node.js';
import { freePort, run, type Run } from './helpers/cluster.js';
import { tearDownMultiNode } from './helpers/multi-node.js';

const ROOT = path.resolve(path.dirname(CLI), '..');
const README = path.join(ROOT, 'examples', 'autoscaling', 'README.md');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tag = randomBytes(2).toString('hex');
const sandboxPrefix = `as${tag}`;
const nodeBridge = `stvdas${tag}`;
const octet = 10 + Math.floor(Math.random() * 200);
const isolation = async () => ['--port', String(await freePort()), '--sandbox-name', sandboxPrefix, '--node-bridge', nodeBridge, '--node-network', `10.248.${octet}.0/24`,
  '--pod-cidr', `10.${242 + Math.floor(Math.random() * 4)}.0.0/16`, '--service-cidr', `10.${60 + Math.floor(Math.random() * 30)}.${Math.floor(Math.random() * 250)}.0/24`];
let dataDir = '';
let loadGenerator: ChildProcess | undefined;
const timings: Record<string, number> = {};

const env = () => ({ KUBECONFIG: path.join(dataDir, 'kubeconfig') });
const sh = (cmd: string): Promise<Run> => new Promise((resolve) => {
  const child = spawn('sh', ['-c', cmd], { cwd: ROOT, env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
});
async function until(what: string, cmd: string, ok: (out: string) => boolean, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const r = await sh(cmd);
    last = r.stdout + r.stderr;
    if (r.code === 0 && ok(r.stdout)) return r.stdout;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; \`${cmd}\` last said:\n${last}`);
    await sleep(2000);
  }
}
const replicas = async () => Number((await sh('kubectl get deployment php-apache -o jsonpath={.spec.replicas}')).stdout);
const stopLoad = async () => {
  if (loadGenerator?.pid && loadGenerator.exitCode === null) process.kill(-loadGenerator.pid, 'SIGINT');
  loadGenerator = undefined;
  await sh('kubectl delete pod load-generator --ignore-not-found --wait=false');
};

type Step = { cmd: string; act?: (cmd: string) => Promise<void> };
const hpaRow = /^php-apache\s+Deployment\/php-apache\s+cpu: (\d+|<unknown>)%?\/50%\s+1\s+10\s+(\d+)\s/m;
let watchedHpa = 0;
const STEPS: Step[] = [
  { cmd: 'npx stevedore up --nodes 1 --max-nodes 2 --node-allocatable cpu=500m,memory=1Gi --scale-down-unneeded-time 30s --scale-down-delay-after-add 30s', act: async (cmd) => {
    const r = await run(process.execPath, [CLI, ...cmd.split(/\s+/).slice(2), '--data-dir', dataDir, ...(await isolation())]);
    assert.is(r.code, 0, `up failed:\n${r.stderr}\n${r.stdout}`);
  } },
  { cmd: 'export KUBECONFIG=$PWD/.stevedore/kubeconfig' /* the test's data dir's kubeconfig: env() */ },
  { cmd: 'kubectl get nodes', act: async (cmd) => { assert.match(await until('node-1 Ready', cmd, (o) => /^node-1\s+Ready/m.test(o), 30_000), 'node-1'); } },
  { cmd: 'kubectl apply -f examples/autoscaling/php-apache.yaml' },
  { cmd: 'kubectl rollout status deployment/php-apache --timeout=120s' },
  { cmd: 'kubectl autoscale deployment php-apache --cpu-percent=50 --min=1 --max=10' },
  { cmd: 'kubectl patch hpa php-apache --type=merge --patch-file examples/autoscaling/hpa-behavior.yaml' },
  { cmd: 'kubectl get hpa php-apache', act: async (cmd) => { assert.match(await until('the HPA row', cmd, (o) => hpaRow.test(o), 10_000), 'Deployment/php-apache'); } },
  { cmd: 'kubectl run -i --tty load-generator --rm --image=busybox --restart=Never -- /bin/sh -c "while sleep 0.01; do wget -q -O- http://php-apache; done"', act: async (cmd) => {
    // The second terminal: in the background, its own process group (Ctrl+C is SIGINT to it).
    loadGenerator = spawn('sh', ['-c', cmd], { cwd: ROOT, env: { ...process.env, ...env() }, stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    timings.loadStarted = Date.now();
  } },
  { cmd: 'kubectl get hpa php-apache --watch', act: async (cmd) => {
    const plain = cmd.replace(' --watch', '');
    if (watchedHpa++ === 0) {
      await until('the HPA to raise php-apache', plain, (o) => Number(hpaRow.exec(o)?.[2] ?? 0) > 1, 150_000);
      timings.scaledUp = Date.now();
      const events = (await sh('kubectl get events --field-selector involvedObject.name=php-apache,involvedObject.kind=HorizontalPodAutoscaler')).stdout;
      assert.match(events, /SuccessfulRescale\s+horizontalpodautoscaler\/php-apache\s+New size: \d+; reason: cpu resource utilization \(percentage of request\) above target/);
    } else {
      await stopLoad();
      await until('the HPA to bring php-apache back to 1', plain, (o) => hpaRow.exec(o)?.[2] === '1', 150_000);
      assert.is(await replicas(), 1);
    }
  } },
  { cmd: 'kubectl get pods -l run=php-apache -o wide', act: async (cmd) => {
    await until('a php-apache pod Pending', cmd, (o) => /\sPending\s/.test(o), 60_000);
  } },
  { cmd: 'kubectl get events --field-selector reason=TriggeredScaleUp', act: async (cmd) => {
    const out = await until('TriggeredScaleUp', cmd, (o) => o.includes('TriggeredScaleUp'), 60_000);
    timings.triggered = Date.now();
    assert.match(out, /TriggeredScaleUp\s+pod\/php-apache-\S+\s+pod triggered scale-up: \[\{stevedore-nodes 1->2 \(max: 2\)\}\]/);
  } },
  { cmd: 'kubectl get nodes', act: async (cmd) => {
    await until('node-2 Ready', cmd, (o) => /^node-2\s+Ready/m.test(o), 120_000);
    timings.nodeReady = Date.now();
    // A replica runs on node-2.
    await until('a php-apache pod Running on node-2', 'kubectl get pods -l run=php-apache -o wide', (o) => /\sRunning\s.*\snode-2\s/.test(o), 90_000);
  } },
  { cmd: 'kubectl -n kube-system get configmap cluster-autoscaler-status -o jsonpath=\'{.data.status}\'', act: async (cmd) => {
    const out = (await sh(cmd)).stdout;
    assert.match(out, /name: stevedore-nodes/);
    assert.match(out, /maxSize: 2/);
  } },
  { cmd: 'kubectl get hpa php-apache --watch' },
  { cmd: 'kubectl get nodes --watch', act: async (cmd) => {
    await until('node-2 removed', cmd.replace(' --watch', ''), (o) => !/^node-2\s/m.test(o), 150_000);
  } },
  { cmd: 'kubectl delete hpa php-apache' },
  { cmd: 'kubectl delete -f examples/autoscaling/php-apache.yaml' },
  { cmd: 'npx stevedore down', act: async () => {
    const r = await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
    assert.is(r.code, 0, r.stderr);
  } },
];
// The second `kubectl get hpa php-apache --watch` acts as the first one's twin.
STEPS[STEPS.map((s) => s.cmd).lastIndexOf('kubectl get hpa php-apache --watch')]!.act = STEPS.find((s) => s.cmd === 'kubectl get hpa php-apache --watch')!.act;

/** The commands of the README's ```sh blocks, one a line. */
export function readmeCommands(markdown: string): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) out.push(...m[1]!.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
  return out;
}

test.before(async () => {
  dataDir = await fs.mkdtemp('/var/tmp/stevedore-as-');
});

test.after(async () => {
  await stopLoad().catch(() => undefined);
  const state = JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8').catch(() => '{}')) as { controlPlanePid?: number };
  const autoscalerPid = Number((await fs.readFile(path.join(dataDir, 'cluster-autoscaler.pid'), 'utf8').catch(() => '0')).trim());
  await tearDownMultiNode({ dataDir, sandboxPrefix, nodes: ['node-1', 'node-2', 'node-3'], nodeBridge, processes: [['cluster autoscaler', autoscalerPid], ['control plane', state.controlPlanePid]] });
});

test('the README lists the steps this test runs, in order', async () => {
  assert.equal(readmeCommands(await fs.readFile(README, 'utf8')), STEPS.map((s) => s.cmd));
});

test('the walkthrough as written: the HPA raises php-apache under load, a Pending pod brings node-2, the load stopped both go back', async () => {
  for (const step of STEPS) {
    if (step.act) await step.act(step.cmd);
    else if (!step.cmd.startsWith('export ')) {
      const r = await sh(step.cmd);
      assert.is(r.code, 0, `\`${step.cmd}\` failed:\n${r.stderr}`);
    }
  }
  process.stdout.write(`\nload → HPA scale-up ${((timings.scaledUp! - timings.loadStarted!) / 1000).toFixed(1)} s; TriggeredScaleUp seen → node-2 Ready ${((timings.nodeReady! - timings.triggered!) / 1000).toFixed(1)} s\n`);
});

test.run();
