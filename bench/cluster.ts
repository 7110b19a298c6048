/**
 * Cluster benchmark (issue 3, Performance): a private `stevedore up`, the real
 * kubectl, and one raw pod watch.
 *
 *   node dist/bench/cluster.js [--sequential 50] [--burst 50] [--warmup 2] [--direct-every 2]
 *        [--cpu-window 60] [--baseline-window 20] [--settle 10] [--no-profile] [--update-results bench/RESULTS.md]
 *
 * Measures `kubectl apply` → pod Running+Ready as seen by the watch (one by
 * one, then a burst of N in one multi-document `kubectl apply -f`), the
 * agent's RSS and CPU with sequential+burst pods running, the control plane's
 * RSS, the floor (`stevedore pod run` of the same pod inside the node
 * sandbox), and where the agent spends its CPU. Tears everything down in a
 * finally block and checks nothing is left. See bench/README.md.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execInSandbox, getSandbox } from '../sandbox/sandbox.js';
import { isAlive } from '../sandbox/proc.js';
import {
  agentMetrics, apiFromKubeconfig, cpuPercent, freePort, hostPidInNamespace, PodWatch, readProc, run, summarizeProfile,
  type ProcSample, type ProfileSummary, type Run,
} from './cluster-util.js';
import { eachFlag, fmtMs, replaceResultsSection, fmtRatio, median, nowMs, sleep, summarize, type Summary } from './stats.js';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CLI = path.join(REPO, 'bin', 'stevedore.js');
const PROBE = path.join(REPO, 'dist', 'bench', 'cluster-probe.js');
const LABEL = 'bench=cluster';
const NODE_NAME = 'bench-node';

interface Args {
  sequential: number; burst: number; warmup: number; directEvery: number; cpuWindow: number; baselineWindow: number; settle: number;
  profile: boolean; updateResults?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { sequential: 50, burst: 50, warmup: 2, directEvery: 2, cpuWindow: 60, baselineWindow: 20, settle: 10, profile: true };
  eachFlag(argv, (k, v) => {
    const n = () => { const x = Number(v()); if (!Number.isFinite(x) || x < 0) throw new Error(`${k} needs a non-negative number`); return x; };
    if (k === '--sequential') a.sequential = n();
    else if (k === '--burst') a.burst = n();
    else if (k === '--warmup') a.warmup = n();
    else if (k === '--direct-every') a.directEvery = n();
    else if (k === '--cpu-window') a.cpuWindow = n();
    else if (k === '--baseline-window') a.baselineWindow = n();
    else if (k === '--settle') a.settle = n();
    else if (k === '--no-profile') a.profile = false;
    else if (k === '--update-results') a.updateResults = v();
    else if (k === '--cluster') { /* run.sh's selector */ }
    else return false;
    return true;
  });
  return a;
}

const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] bench: ${msg}\n`);

function podYaml(name: string): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {bench: cluster}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo up; sleep 3600']
`;
}

/** The same pod for `stevedore pod run` (runtime manifest = a Kubernetes Pod). */
function directPodJson(name: string): string {
  return JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'bench-direct' },
    spec: { restartPolicy: 'Always', containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', 'echo up; sleep 3600'] }] },
  });
}

interface LoadPoint { phase: string; at: string; load: [number, number, number] }

interface Result {
  machine: Record<string, string>;
  args: Args;
  sequential: Array<{ name: string; ms: number; applyMs: number; addedMs?: number; boundMs?: number; agentStartedMs?: number; runningMs: number }>;
  sequentialFailures: string[];
  direct: number[];
  nsenterMs: number[];
  burst?: { method: string; allRunningMs: number; applyMs: number; latencies: number[]; agentStartedMs: number[]; failures: number };
  memory: Record<string, { agentRssMiB?: number; agentAnonMiB?: number; agentFileMiB?: number; controlPlaneRssMiB?: number; pods?: number; agentHeapUsedMiB?: number; agentHeapTotalMiB?: number; agentExternalMiB?: number; agentPasses?: number }>;
  moduleRss: Array<{ what: string; rssMiB: number; heapUsedMiB: number; anonMiB: number; fileMiB: number }>;
  steady?: { pods: number; windowS: number; agentCpuPct: number; agentRssMiB: { mean: number; max: number }; agentHwmMiB: number; controlPlaneCpuPct: number; controlPlaneRssMiB: number; sandboxSystemdCpuPct: number };
  baseline?: { pods: number; windowS: number; agentCpuPct: number; agentRssMiB: number; controlPlaneCpuPct: number; sandboxSystemdCpuPct: number };
  probe?: Record<string, { pods: number; apps: number; wallMs: Summary; cpuMs: Summary }>;
  profile?: ProfileSummary & { pods: number; cpuPct: number; restartToRunningS?: number };
  deletion?: { ms: number; pods: number };
  journal?: { lines: number; warnings: number; errors: number; samples: string[]; byKind: Record<string, number>; byPhase: Record<string, number> };
  marks: Array<[string, number]>;
  load: LoadPoint[];
  teardown: string[];
}

async function machineInfo(): Promise<Record<string, string>> {
  const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const osRelease = await fs.readFile('/etc/os-release', 'utf8').catch(() => '');
  const kubectl = await run('kubectl', ['version', '--client', '-o', 'json']);
  const sd = await run('systemctl', ['--version']);
  const git = await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  const dirty = await run('git', ['-C', REPO, 'status', '--porcelain']);
  return {
    nproc: String(os.availableParallelism?.() ?? os.cpus().length),
    model: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? '?',
    kernel: os.release(),
    os: /PRETTY_NAME="([^"]*)"/.exec(osRelease)?.[1] ?? '?',
    memTotal: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    kubectl: (() => { try { return (JSON.parse(kubectl.stdout) as { clientVersion: { gitVersion: string } }).clientVersion.gitVersion; } catch { return '?'; } })(),
    systemd: sd.stdout.split('\n')[0] ?? '?',
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    tree: `${git.stdout.trim()}${dirty.stdout.trim() ? ' + uncommitted changes' : ''}`,
  };
}

async function main(args: Args): Promise<void> {
  const result: Result = { machine: await machineInfo(), args, sequential: [], sequentialFailures: [], direct: [], nsenterMs: [], memory: {}, moduleRss: [], load: [], teardown: [], marks: [] };
  const mark = (phase: string) => result.marks.push([phase, Date.now()]);
  const loadPoint = (phase: string) => result.load.push({ phase, at: new Date().toISOString(), load: os.loadavg().map((x) => Number(x.toFixed(2))) as [number, number, number] });
  loadPoint('start');
  const clkTck = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;

  // What a fresh node process costs in RSS once it has loaded what the agent loads (after a full GC).
  for (const [what, imports] of [
    ['bare node', []],
    ['+ @kubernetes/client-node', ['@kubernetes/client-node']],
    ['+ dist/runtime-rkt/runtime.js (dbus-next, execa, pino, yaml, tar-stream …)', ['./dist/runtime-rkt/runtime.js']],
    ['+ dist/agent/agent.js (everything the agent imports)', ['./dist/agent/agent.js']],
  ] as Array<[string, string[]]>) {
    const code = imports.map((m) => `await import(${JSON.stringify(m)});`).join('') + String.raw`globalThis.gc(); const st = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8'); const k = (x) => Number(new RegExp('^' + x + ':\\s+(\\d+)', 'm').exec(st)[1]) / 1024; console.log(JSON.stringify({ rss: k('VmRSS'), anon: k('RssAnon'), file: k('RssFile'), heap: process.memoryUsage().heapUsed / 2 ** 20 }));`;
    const r = await new Promise<Run>((resolve) => {
      const c = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = ''; let stderr = '';
      c.stdout.on('data', (d) => { stdout += d; });
      c.stderr.on('data', (d) => { stderr += d; });
      c.on('close', (x) => resolve({ code: x ?? 1, stdout, stderr }));
    });
    if (r.code !== 0) { log(`warning: module RSS probe ${what}: ${r.stderr.trim()}`); continue; }
    const v = JSON.parse(r.stdout) as { rss: number; anon: number; file: number; heap: number };
    result.moduleRss.push({ what, rssMiB: v.rss, heapUsedMiB: v.heap, anonMiB: v.anon, fileMiB: v.file });
  }

  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-bench-cluster-');
  const work = path.join(dataDir, 'bench');
  const port = await freePort();
  const nodePort = await freePort();
  const sandbox = `bench-${process.pid}`;
  const kubeconfig = path.join(dataDir, 'kubeconfig');
  const nodeDir = path.join(dataDir, 'node');
  const kubectl = (a: string[], input?: string): Promise<Run> => run('kubectl', a, { KUBECONFIG: kubeconfig }, input);
  const inSandbox = async (argv: string[]): Promise<Run> => {
    const r = await execInSandbox(sandbox, argv, { stdio: 'pipe' });
    return { code: r.exitCode, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };
  const probeAt = async (key: string) => {
    const probe = await inSandbox([process.execPath, PROBE, nodeDir, '20']);
    if (probe.code === 0) (result.probe ??= {})[key] = JSON.parse(probe.stdout) as NonNullable<Result['probe']>[string];
    else {
      const err = /^\w*Error: .*$/m.exec(probe.stderr)?.[0] ?? probe.stderr.trim().split('\n').slice(-3).join(' ');
      (result.probe ??= {})[key] = { error: err } as unknown as NonNullable<Result['probe']>[string];
      log(`probe at ${key} failed: ${err}`);
    }
  };
  let watch: PodWatch | undefined;
  let upStarted = false;
  let cpPid: number | undefined;
  let sandboxPid: number | undefined;
  let agentPid: number | undefined;
  let failure: unknown;

  try {
    // ---- the cluster
    log(`stevedore up --data-dir ${dataDir} --port ${port} --node-api-port ${nodePort} --node-name ${NODE_NAME} --sandbox-name ${sandbox}`);
    upStarted = true;
    const tUp = nowMs();
    const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--port', String(port), '--node-api-port', String(nodePort), '--node-name', NODE_NAME, '--sandbox-name', sandbox]);
    if (up.code !== 0) throw new Error(`stevedore up failed:\n${up.stderr}\n${up.stdout}`);
    log(`up in ${((nowMs() - tUp) / 1000).toFixed(1)} s`);
    await fs.mkdir(work, { recursive: true });
    cpPid = (JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8')) as { controlPlanePid: number }).controlPlanePid;
    const info = await getSandbox(sandbox);
    if (!info) throw new Error(`sandbox ${sandbox} not found after up`);
    sandboxPid = info.pid;
    const findAgent = async (): Promise<number> => {
      let nsPid = 0;
      for (let i = 0; i < 60 && !nsPid; i++) {
        if (i) await sleep(500);
        nsPid = Number((await inSandbox(['systemctl', 'show', '-p', 'MainPID', '--value', 'stevedore-agent'])).stdout.trim());
      }
      if (!nsPid) {
        const st = await inSandbox(['sh', '-c', 'systemctl status --no-pager stevedore-agent; journalctl -u stevedore-agent -n 30 --no-pager']);
        throw new Error(`the agent is not running (MainPID 0):\n${st.stdout}${st.stderr}`);
      }
      const hostPid = await hostPidInNamespace(info.pid, nsPid);
      if (!hostPid) throw new Error(`no host pid for agent pid ${nsPid} in the sandbox`);
      return hostPid;
    };
    agentPid = await findAgent();
    log(`control plane pid ${cpPid}, sandbox systemd pid ${info.pid}, agent pid ${agentPid} (host)`);
    const cpPki = path.join(dataDir, 'control-plane', 'pki');
    const nodeApiClient = { ca: await fs.readFile(path.join(cpPki, 'ca.crt'), 'utf8'), cert: await fs.readFile(path.join(cpPki, 'apiserver-kubelet-client.crt'), 'utf8'), key: await fs.readFile(path.join(cpPki, 'apiserver-kubelet-client.key'), 'utf8') };
    const memPoint = async (phase: string, pods: number) => {
      const [a, c, m] = await Promise.all([readProc(agentPid!).catch(() => undefined), readProc(cpPid!).catch(() => undefined), agentMetrics(nodePort, nodeApiClient).catch(() => undefined)]);
      result.memory[phase] = {
        pods, agentRssMiB: a && a.rssKiB / 1024, agentAnonMiB: a && a.anonKiB / 1024, agentFileMiB: a && a.fileKiB / 1024, controlPlaneRssMiB: c && c.rssKiB / 1024,
        agentHeapUsedMiB: m && m.nodejs_heap_size_used_bytes! / 2 ** 20, agentHeapTotalMiB: m && m.nodejs_heap_size_total_bytes! / 2 ** 20,
        agentExternalMiB: m && m.nodejs_external_memory_bytes! / 2 ** 20, agentPasses: m?.stevedore_agent_sync_passes_total,
      };
    };
    await memPoint('after up (demo pod)', 1);

    // ---- the watch, before the first apply; the demo pod out of the way
    const api = await apiFromKubeconfig(kubeconfig);
    watch = new PodWatch(api, 'default', LABEL);
    await watch.start();
    const del = await kubectl(['delete', 'pod', 'demo', '--grace-period=1', '--wait=true', '--timeout=120s']);
    if (del.code !== 0) log(`warning: deleting the demo pod: ${del.stderr.trim()}`);

    const applyOne = async (name: string) => {
      const file = path.join(work, `${name}.yaml`);
      await fs.writeFile(file, podYaml(name));
      const t0 = nowMs();
      const r = await kubectl(['apply', '-f', file]);
      const applyMs = nowMs() - t0;
      if (r.code !== 0) throw new Error(`kubectl apply ${name}: ${r.stderr}`);
      await watch!.waitFor(() => watch!.pods.get(name)?.running !== undefined, 60_000, `${name} Running`);
      const p = watch!.pods.get(name)!;
      return { name, t0, ms: p.running! - t0, applyMs, addedMs: p.added! - t0, boundMs: p.bound === undefined ? undefined : p.bound - t0, runningMs: p.running! - t0 };
    };
    const deleteAndWait = async (names: string[], timeoutMs: number) => {
      const t0 = nowMs();
      const r = await kubectl(['delete', 'pod', ...names, '--grace-period=1', '--wait=false']);
      if (r.code !== 0) throw new Error(`kubectl delete: ${r.stderr}`);
      await watch!.waitFor(() => names.every((n) => watch!.pods.get(n)?.deleted !== undefined), timeoutMs, `${names.length} pods deleted`);
      return nowMs() - t0;
    };

    // ---- the floor: `stevedore pod run` inside the sandbox
    for (let i = 0; i < 5; i++) {
      const t0 = nowMs();
      await inSandbox(['true']);
      result.nsenterMs.push(nowMs() - t0);
    }
    let directN = 0;
    const direct = async () => {
      const name = `direct-${directN++}`;
      const file = path.join(work, `${name}.json`);
      await fs.writeFile(file, directPodJson(name));
      const t0 = nowMs();
      const r = await inSandbox([process.execPath, CLI, '--dir', nodeDir, 'pod', 'run', '-f', file, '--stage1', 'namespaces']);
      const ms = nowMs() - t0;
      if (r.code !== 0) throw new Error(`pod run (direct): ${r.stderr}`);
      result.direct.push(ms);
      const rm = await inSandbox([process.execPath, CLI, '--dir', nodeDir, 'pod', 'rm', '--force', r.stdout.trim()]);
      if (rm.code !== 0) log(`warning: pod rm ${r.stdout.trim()}: ${rm.stderr.trim()}`);
    };

    // ---- warm-up (not counted), then the agent at rest
    const warm: string[] = [];
    for (let i = 0; i < args.warmup; i++) {
      const s = await applyOne(`warm-${i}`);
      warm.push(s.name);
      log(`warm-up ${s.name}: ${fmtMs(s.ms)} ms`);
    }
    if (args.directEvery) await direct(); // warm the CLI path too (page cache); not counted
    result.direct.length = 0;
    if (warm.length) await deleteAndWait(warm, 120_000);
    if (args.baselineWindow) {
      await sleep(3000);
      const [a0, c0, s0] = await Promise.all([readProc(agentPid), readProc(cpPid), readProc(info.pid)]);
      await sleep(args.baselineWindow * 1000);
      const [a1, c1, s1] = await Promise.all([readProc(agentPid), readProc(cpPid), readProc(info.pid)]);
      result.baseline = { pods: 0, windowS: args.baselineWindow, agentCpuPct: cpuPercent(a0, a1, clkTck), agentRssMiB: a1.rssKiB / 1024, controlPlaneCpuPct: cpuPercent(c0, c1, clkTck), sandboxSystemdCpuPct: cpuPercent(s0, s1, clkTck) };
      log(`baseline (0 pods): agent ${result.baseline.agentCpuPct.toFixed(1)} % CPU, ${result.baseline.agentRssMiB.toFixed(0)} MiB`);
    }
    await memPoint('0 pods (warm)', 0);
    loadPoint('before sequential');
    mark('sequential');

    // ---- 1a. one by one
    const seqT0: Record<string, number> = {};
    for (let i = 0; i < args.sequential; i++) {
      const name = `seq-${i}`;
      try {
        const s = await applyOne(name);
        seqT0[name] = s.t0;
        result.sequential.push({ name, ms: s.ms, applyMs: s.applyMs, addedMs: s.addedMs, boundMs: s.boundMs, runningMs: s.runningMs });
        if ((i + 1) % 10 === 0) log(`sequential ${i + 1}/${args.sequential}: last ${fmtMs(s.ms)} ms, median so far ${fmtMs(median(result.sequential.map((x) => x.ms)))} ms`);
      } catch (err) {
        result.sequentialFailures.push(`${name}: ${(err as Error).message}`);
        log(`${name} failed: ${(err as Error).message}`);
      }
      if (args.directEvery && i % args.directEvery === 0) await direct();
    }
    await memPoint(`${args.sequential} pods`, args.sequential);
    loadPoint('after sequential');
    mark('probe');
    await probeAt(`${args.sequential} pods`);
    mark('burst');

    // ---- 1b. burst: one multi-document file, one `kubectl apply -f`
    let burstT0 = 0;
    const burstNames = Array.from({ length: args.burst }, (_, i) => `burst-${i}`);
    if (args.burst) {
      const file = path.join(work, 'burst.yaml');
      await fs.writeFile(file, burstNames.map(podYaml).join('---\n'));
      await sleep(2000);
      burstT0 = nowMs();
      const r = await kubectl(['apply', '-f', file]);
      const applyMs = nowMs() - burstT0;
      if (r.code !== 0) throw new Error(`kubectl apply burst: ${r.stderr}`);
      let failures = 0;
      await watch.waitFor(() => burstNames.every((n) => watch!.pods.get(n)?.running !== undefined), 300_000, 'burst Running').catch((err) => {
        log(`burst: ${(err as Error).message}`);
        failures = burstNames.filter((n) => watch!.pods.get(n)?.running === undefined).length;
      });
      const lat = burstNames.map((n) => watch!.pods.get(n)?.running).filter((x): x is number => x !== undefined).map((t) => t - burstT0);
      result.burst = { method: `one \`kubectl apply -f\` of a ${args.burst}-document YAML file`, allRunningMs: failures ? NaN : Math.max(...lat), applyMs, latencies: lat, agentStartedMs: [], failures };
      log(`burst: all ${args.burst} Running after ${fmtMs(result.burst.allRunningMs)} ms (kubectl apply returned after ${fmtMs(applyMs)} ms)`);
    }
    const total = args.sequential + args.burst;
    loadPoint('after burst');
    mark('settle + steady window');

    // ---- 2. steady state with all pods running
    await sleep(args.settle * 1000);
    agentPid = await findAgent(); // the same unless systemd restarted it (watchdog, crash): say so
    await memPoint(`${total} pods`, total);
    {
      const samples: ProcSample[] = [];
      const [c0, s0] = await Promise.all([readProc(cpPid), readProc(info.pid)]);
      const tEnd = nowMs() + args.cpuWindow * 1000;
      do {
        samples.push(await readProc(agentPid));
        await sleep(1000);
      } while (nowMs() < tEnd);
      samples.push(await readProc(agentPid));
      const [c1, s1] = await Promise.all([readProc(cpPid), readProc(info.pid)]);
      const rss = samples.map((s) => s.rssKiB / 1024);
      result.steady = {
        pods: total, windowS: (samples.at(-1)!.at - samples[0]!.at) / 1000,
        agentCpuPct: cpuPercent(samples[0]!, samples.at(-1)!, clkTck),
        agentRssMiB: { mean: rss.reduce((a, b) => a + b, 0) / rss.length, max: Math.max(...rss) },
        agentHwmMiB: samples.at(-1)!.hwmKiB / 1024,
        controlPlaneCpuPct: cpuPercent(c0, c1, clkTck), controlPlaneRssMiB: c1.rssKiB / 1024,
        sandboxSystemdCpuPct: cpuPercent(s0, s1, clkTck),
      };
      log(`steady (${total} pods, ${result.steady.windowS.toFixed(0)} s): agent ${result.steady.agentCpuPct.toFixed(1)} % CPU, RSS mean ${result.steady.agentRssMiB.mean.toFixed(0)} / max ${result.steady.agentRssMiB.max.toFixed(0)} MiB; control plane ${result.steady.controlPlaneRssMiB.toFixed(0)} MiB`);
    }
    loadPoint('after steady window');

    // ---- what one sync pass costs at this many pods (the agent's listPods, in a separate process)
    mark('probe');
    await probeAt(`${total} pods`);

    // ---- where the agent's CPU goes: restart it once with --cpu-prof (a runtime drop-in), profile steady state
    if (args.profile) {
      mark('profile (agent restarted twice)');
      const profDir = path.join(work, 'cpu-prof');
      await fs.mkdir(profDir, { recursive: true });
      // --cpu-prof is not allowed in NODE_OPTIONS: override ExecStart (same command line as agentUnitFile, plus the profiler flags).
      const dropIn = '/run/systemd/system/stevedore-agent.service.d';
      const conf = path.join(work, 'bench-cpu-prof.conf');
      const unit = (await inSandbox(['cat', '/etc/systemd/system/stevedore-agent.service'])).stdout;
      const execStart = /^ExecStart=(\S+) (.*)$/m.exec(unit);
      if (!execStart) throw new Error(`no ExecStart in the agent unit:\n${unit}`);
      await fs.writeFile(conf, `[Service]\nExecStart=\nExecStart=${execStart[1]} --cpu-prof --cpu-prof-dir=${profDir} ${execStart[2]}\n`);
      const rs = await inSandbox(['sh', '-c', `mkdir -p ${dropIn} && cp ${conf} ${dropIn}/bench-cpu-prof.conf && systemctl daemon-reload && systemctl restart stevedore-agent`]);
      if (rs.code !== 0) throw new Error(`restarting the agent with --cpu-prof: ${rs.stderr}`);
      const tRestart = nowMs();
      const profPid = await findAgent();
      const a0 = await readProc(profPid);
      await sleep((args.cpuWindow + 5) * 1000);
      const a1 = await readProc(profPid);
      await inSandbox(['sh', '-c', `systemctl stop stevedore-agent; rm -f ${dropIn}/bench-cpu-prof.conf; systemctl daemon-reload; systemctl start stevedore-agent`]);
      agentPid = await findAgent();
      const files = (await fs.readdir(profDir)).filter((f) => f.endsWith('.cpuprofile'));
      const biggest = (await Promise.all(files.map(async (f) => ({ f, size: (await fs.stat(path.join(profDir, f))).size })))).sort((a, b) => b.size - a.size)[0];
      if (biggest) {
        const prof = JSON.parse(await fs.readFile(path.join(profDir, biggest.f), 'utf8'));
        result.profile = {
          ...summarizeProfile(prof, args.cpuWindow, 2, ['pass', 'listPods', 'readPodStatus', 'appStatus', 'unitProperties', 'reportStatus', 'podStatusFor', 'readExitRecords', 'readJsonIfExists', 'readTimestampMs']),
          pods: total, cpuPct: cpuPercent(a0, a1, clkTck),
        };
        await fs.copyFile(path.join(profDir, biggest.f), path.join(REPO, 'bench', '.last-cluster-agent.cpuprofile')).catch(() => undefined);
        log(`profile: ${result.profile.busyMs.toFixed(0)} ms busy of ${result.profile.sampledMs.toFixed(0)} ms sampled; agent ${result.profile.cpuPct.toFixed(1)} % CPU (restarted at ${fmtMs(tRestart)})`);
      } else log(`warning: no cpu profile written in ${profDir}`);
      // all pods still Running after two agent restarts?
      await sleep(3000);
    }

    // ---- delete everything this run made, timed
    mark('deletion');
    {
      const names = [...result.sequential.map((s) => s.name), ...burstNames].filter((n) => watch!.pods.get(n)?.deleted === undefined);
      const t0 = nowMs();
      const r = await kubectl(['delete', 'pods', '-l', LABEL, '--grace-period=1', '--wait=false']);
      if (r.code !== 0) throw new Error(`kubectl delete -l ${LABEL}: ${r.stderr}`);
      await watch.waitFor(() => names.every((n) => watch!.pods.get(n)?.deleted !== undefined), 600_000, 'all pods deleted');
      result.deletion = { ms: nowMs() - t0, pods: names.length };
      log(`deleted ${names.length} pods in ${fmtMs(result.deletion.ms)} ms`);
    }
    loadPoint('end');

    // ---- the agent's journal: when each pod was started (runPod resolved), warnings
    const j = await run('journalctl', ['-D', info.journalDir, '-u', 'stevedore-agent', '-o', 'cat', '--no-pager']);
    const lines = j.stdout.split('\n').filter(Boolean);
    const started = new Map<string, number>();
    let warnings = 0;
    let errors = 0;
    const odd: string[] = [];
    const byKind: Record<string, number> = {};
    const byPhase: Record<string, number> = {};
    for (const l of lines) {
      try {
        const e = JSON.parse(l) as { level: number; time: number; msg: string; pod?: string };
        if (e.msg === 'pod started' && e.pod?.startsWith('default/')) started.set(e.pod.slice(8), e.time);
        if (e.level >= 40) {
          if (e.level >= 50) errors++; else warnings++;
          if (odd.length < 8) odd.push(l.slice(0, 300));
          const kind = `${e.msg}: ${String((e as { err?: string }).err ?? (e as { message?: string }).message ?? '').slice(0, 90)}`;
          byKind[kind] = (byKind[kind] ?? 0) + 1;
          const ph = [...result.marks].reverse().find(([, t]) => t <= e.time)?.[0] ?? 'before sequential';
          byPhase[ph] = (byPhase[ph] ?? 0) + 1;
        }
      } catch { /* systemd's own lines */ }
    }
    result.journal = { lines: lines.length, warnings, errors, samples: odd, byKind, byPhase };
    for (const s of result.sequential) { const t = started.get(s.name); if (t !== undefined) s.agentStartedMs = t - seqT0[s.name]!; }
    if (result.burst) result.burst.agentStartedMs = burstNames.map((n) => started.get(n)).filter((x): x is number => x !== undefined).map((t) => t - burstT0);
  } catch (err) {
    failure = err;
    log(`FAILED: ${(err as Error).stack ?? err}`);
  } finally {
    watch?.stop();
    if (upStarted) {
      if (!failure) { /* pods already deleted above */ } else {
        const r = await kubectl(['delete', 'pods', '--all', '--grace-period=1', '--wait=true', '--timeout=60s']);
        result.teardown.push(`after failure: kubectl delete pods --all → exit ${r.code}`);
      }
      const down = await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
      result.teardown.push(`stevedore down → exit ${down.code}${down.code ? `: ${down.stderr.trim()}` : ''}`);
      const sb = await getSandbox(sandbox).catch(() => undefined);
      const stateDirGone = await fs.access(`/run/stevedore/sandboxes/${sandbox}`).then(() => false, () => true);
      result.teardown.push(`sandbox ${sandbox}: ${sb ? 'STILL RUNNING' : 'gone'}${stateDirGone ? '' : ' (state dir still there)'}`);
      if (sandboxPid) result.teardown.push(`sandbox systemd pid ${sandboxPid}: ${(await isAlive(sandboxPid)) ? 'STILL ALIVE' : 'gone'}`);
      if (cpPid) result.teardown.push(`control plane pid ${cpPid}: ${(await isAlive(cpPid)) ? 'STILL ALIVE' : 'gone'}`);
      if (agentPid) result.teardown.push(`agent pid ${agentPid}: ${(await isAlive(agentPid)) ? 'STILL ALIVE' : 'gone'}`);
      const dirGone = await fs.access(dataDir).then(() => false, () => true);
      result.teardown.push(`data dir ${dataDir}: ${dirGone ? 'removed' : 'STILL THERE'}`);
      for (const t of result.teardown) log(`teardown: ${t}`);
    }
  }

  const text = report(result);
  process.stdout.write(`${text}\n`);
  await fs.writeFile(path.join(REPO, 'bench', '.last-cluster-run.json'), JSON.stringify(result, null, 1)).catch(() => undefined);
  if (args.updateResults && !failure) await updateResults(args.updateResults, text, result);
  if (failure) process.exitCode = 1;
}

// ---------------------------------------------------------------------------
// report

const ms = (v: number | undefined) => `${fmtMs(v)} ms`;
const mib = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : `${v.toFixed(1)} MiB`);

function report(r: Result): string {
  const L: string[] = [];
  const m = r.machine;
  const loads = r.load.map((l) => l.load[0]);
  L.push(`Machine: ${m.nproc} × ${m.model} (nproc ${m.nproc}), ${m.memTotal} RAM, kernel ${m.kernel}, ${m.os}, Node ${m.node}, kubectl ${m.kubectl}, ${m.systemd} (in a node sandbox); run started ${m.date}; code ${m.tree}.`);
  L.push(`Load average (1 min) during the run: ${r.load.map((l) => `${l.phase} ${l.load[0]}`).join(', ')} (min ${Math.min(...loads)}, max ${Math.max(...loads)} on ${m.nproc} CPUs).`);
  L.push('');
  const seq = summarize(r.sequential.map((s) => s.ms));
  const dir = r.direct.length ? summarize(r.direct) : undefined;
  const ns = median(r.nsenterMs);
  const b = r.burst;
  const bs = b && b.latencies.length ? summarize(b.latencies) : undefined;
  L.push('| measurement | n | median | p90 | p99 (nearest rank) | max | vs direct `pod run` (median) | goal |');
  L.push('|---|---|---|---|---|---|---|---|');
  L.push(`| apply → Running, one by one | ${seq.n} | ${ms(seq.median)} | ${ms(seq.p90)} | ${ms(seq.p99)} | ${ms(seq.max)} | ${fmtRatio(seq.median, dir?.median)} (p99 ${fmtRatio(seq.p99, dir?.p99)}) | p99 < 1 s: **${seq.p99 < 1000 ? 'MET' : 'MISSED'}** |`);
  if (b && bs) {
    L.push(`| burst of ${b.latencies.length + b.failures}: each pod apply → Running | ${bs.n} | ${ms(bs.median)} | ${ms(bs.p90)} | ${ms(bs.p99)} | ${ms(bs.max)} | ${fmtRatio(bs.median, dir?.median)} | |`);
    L.push(`| burst of ${b.latencies.length + b.failures}: **all Running** | 1 | ${ms(b.allRunningMs)} | | | | ${fmtRatio(b.allRunningMs, dir ? dir.median * (b.latencies.length + b.failures) : undefined)} of ${b.latencies.length + b.failures} × direct median | all < 10 s: **${b.allRunningMs < 10_000 ? 'MET' : 'MISSED'}** |`);
  }
  if (dir) L.push(`| floor: \`stevedore pod run\` (CLI in the sandbox, interleaved with the one-by-one pods) | ${dir.n} | ${ms(dir.median)} | ${ms(dir.p90)} | ${ms(dir.p99)} | ${ms(dir.max)} | 1.00x | |`);
  L.push(`| (sandbox exec overhead: \`true\` via nsenter, included in the floor) | ${r.nsenterMs.length} | ${ms(ns)} | | | | | |`);
  L.push('');
  if (r.sequential.length >= 20) {
    const first = r.sequential.slice(0, 10).map((x) => x.ms);
    const last = r.sequential.slice(-10).map((x) => x.ms);
    L.push(`One by one, the latency grows with the number of pods already running: median of pods 1–10 ${ms(median(first))}, of pods ${r.sequential.length - 9}–${r.sequential.length} ${ms(median(last))} (max ${ms(Math.max(...last))}).`);
  }
  if (b) L.push(`Burst method: ${b.method}; kubectl apply itself returned after ${ms(b.applyMs)}.${b.failures ? ` ${b.failures} pods never became Running.` : ''}`);
  if (r.sequentialFailures.length) L.push(`One-by-one failures: ${r.sequentialFailures.join('; ')}`);
  // Breakdown of the one-by-one path
  const part = (f: (s: Result['sequential'][number]) => number | undefined) => median(r.sequential.map(f).filter((x): x is number => x !== undefined));
  L.push('');
  L.push('Where the one-by-one time goes (medians, ms after t0 = just before spawning `kubectl apply`):');
  L.push('');
  L.push('| step | at (median) |');
  L.push('|---|---|');
  L.push(`| watch sees ADDED (kubectl start + discovery + POST) | ${ms(part((s) => s.addedMs))} |`);
  L.push(`| watch sees spec.nodeName (scheduler bound it) | ${ms(part((s) => s.boundMs))} |`);
  L.push(`| \`kubectl apply\` process exited | ${ms(part((s) => s.applyMs))} |`);
  L.push(`| agent logged "pod started" (runPod resolved; journal \`time\`) | ${ms(part((s) => s.agentStartedMs))} |`);
  L.push(`| watch sees Running + Ready | ${ms(part((s) => s.runningMs))} |`);
  if (b && b.agentStartedMs.length) {
    const a = summarize(b.agentStartedMs);
    L.push('');
    const total = b.latencies.length + b.failures;
    const others = a.n < total ? ' (the others\' start() did not complete normally — see the errors below)' : '';
    L.push(`Burst, agent side: "pod started" logged for ${a.n} of ${total} pods${others}; first at ${ms(a.min)}, last at ${ms(a.max)} after t0; last Running seen at ${ms(b.allRunningMs)}.`);
  }
  L.push('');
  L.push('Memory and CPU (RSS = VmRSS from /proc; CPU = utime+stime delta, % of one core):');
  L.push('');
  L.push('| when | pods | agent RSS | of which anon / file-backed | agent V8 heap used / reserved, external (its /metrics) | sync passes so far | control plane RSS |');
  L.push('|---|---|---|---|---|---|---|');
  for (const [k, v] of Object.entries(r.memory)) {
    L.push(`| ${k} | ${v.pods} | ${mib(v.agentRssMiB)} | ${mib(v.agentAnonMiB)} / ${mib(v.agentFileMiB)} | ${mib(v.agentHeapUsedMiB)} / ${mib(v.agentHeapTotalMiB)}, ${mib(v.agentExternalMiB)} | ${v.agentPasses ?? '—'} | ${mib(v.controlPlaneRssMiB)} |`);
  }
  if (r.moduleRss.length) {
    L.push('');
    L.push('A fresh `node` that only imports what the agent imports (then a full GC), same binary, on the host:');
    L.push('');
    L.push('| process | RSS | anon / file-backed | V8 heap used |');
    L.push('|---|---|---|---|');
    for (const x of r.moduleRss) L.push(`| ${x.what} | ${mib(x.rssMiB)} | ${mib(x.anonMiB)} / ${mib(x.fileMiB)} | ${mib(x.heapUsedMiB)} |`);
  }
  L.push('');
  if (r.baseline) L.push(`Idle baseline (0 bench pods, ${r.baseline.windowS} s): agent ${r.baseline.agentCpuPct.toFixed(1)} % CPU, control plane ${r.baseline.controlPlaneCpuPct.toFixed(1)} %, sandbox systemd ${r.baseline.sandboxSystemdCpuPct.toFixed(1)} %.`);
  const s = r.steady;
  if (s) {
    L.push(`Steady state (${s.pods} pods Running, ${s.windowS.toFixed(0)} s window): **agent ${s.agentCpuPct.toFixed(1)} % CPU, RSS mean ${mib(s.agentRssMiB.mean)} / max ${mib(s.agentRssMiB.max)}** (VmHWM ${mib(s.agentHwmMiB)}); control plane ${s.controlPlaneCpuPct.toFixed(1)} % CPU, RSS ${mib(s.controlPlaneRssMiB)}; the sandbox's systemd (answering the agent's D-Bus calls) ${s.sandboxSystemdCpuPct.toFixed(1)} % CPU.`);
    L.push(`Goal agent RSS < 150 MiB at ${s.pods} pods: **${s.agentRssMiB.max < 150 ? 'MET' : 'MISSED'}** (max ${mib(s.agentRssMiB.max)}; the kubelet's soak limit is 300 MiB).`);
  }
  if (r.probe) for (const [k, p] of Object.entries(r.probe)) {
    if ((p as unknown as { error?: string }).error) { L.push(`One \`listPods()\` at ${k}, in a separate process in the sandbox: **failed**: \`${(p as unknown as { error: string }).error}\`.`); continue; }
    L.push(`One \`listPods()\` (what every agent sync pass starts with) at ${k} (${p.pods} runtime pods, ${p.apps} apps), in a separate process in the sandbox, ${p.wallMs.n} rounds: wall median ${ms(p.wallMs.median)} (max ${ms(p.wallMs.max)}), CPU median ${ms(p.cpuMs.median)}.`);
  }
  if (r.profile) {
    const p = r.profile;
    L.push('');
    L.push(`Agent CPU profile (agent restarted with \`--cpu-prof\` via a runtime drop-in, ${p.pods} pods, last ${p.windowS} s before stop): ${p.busyMs.toFixed(0)} ms busy of ${p.sampledMs.toFixed(0)} ms sampled (${(p.busyMs / p.sampledMs * 100).toFixed(1)} %; /proc said ${p.cpuPct.toFixed(1)} % incl. startup/GC threads).`);
    L.push('');
    L.push('| self time by module | ms | share of busy |');
    L.push('|---|---|---|');
    for (const [k, v] of p.byModule) L.push(`| ${k} | ${v.toFixed(0)} | ${(v / p.busyMs * 100).toFixed(1)} % |`);
    L.push('');
    L.push('| self time by function | ms |');
    L.push('|---|---|');
    for (const [k, v] of p.byFunction) L.push(`| \`${k}\` | ${v.toFixed(0)} |`);
    if (p.inclusive.length) {
      L.push('');
      L.push(`Inclusive (synchronous part only; async continuations are separate stacks): ${p.inclusive.map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')}.`);
    }
  }
  if (r.deletion) L.push(`\nDeleting all ${r.deletion.pods} pods (\`kubectl delete pods -l ${LABEL} --grace-period=1\`) until the watch saw every DELETED: ${ms(r.deletion.ms)}.`);
  if (r.journal) {
    L.push(`Agent journal: ${r.journal.lines} lines, ${r.journal.warnings} warnings, ${r.journal.errors} errors.`);
    if (Object.keys(r.journal.byKind).length) {
      L.push('');
      L.push('| agent warning/error (msg: err) | count |');
      L.push('|---|---|');
      for (const [k, v] of Object.entries(r.journal.byKind).sort((a, b) => b[1] - a[1])) L.push(`| \`${k}\` | ${v} |`);
      L.push('');
      L.push(`By phase: ${Object.entries(r.journal.byPhase).map(([k, v]) => `${k} ${v}`).join(', ')}.`);
    }
  }
  L.push('');
  L.push(`Teardown: ${r.teardown.join('; ')}.`);
  return L.join('\n');
}

const BEGIN = '<!-- bench:cluster:begin -->';
const END = '<!-- bench:cluster:end -->';

async function updateResults(file: string, text: string, r: Result): Promise<void> {
  const a = r.args;
  const cmd = `bash bench/run.sh --cluster --sequential ${a.sequential} --burst ${a.burst} --cpu-window ${a.cpuWindow}${a.profile ? '' : ' --no-profile'} --update-results ${file}`;
  const body = [BEGIN, `_Generated by \`${cmd}\` on ${r.machine.date}._`, '', text, END].join('\n');
  await replaceResultsSection(file, BEGIN, END, body);
}

await main(parseArgs(process.argv.slice(2)));
