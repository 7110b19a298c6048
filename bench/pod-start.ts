/**
 * Pod start benchmark: time from "pod run" to the first output line of the
 * pod's container, for stage1 fly and namespaces, in-process (RktRuntime.runPod,
 * as the agent calls it) and end to end through the CLI (`stevedore pod run -f`),
 * beside a bare StartTransientUnit floor and `docker run` of the same image.
 *
 *   node dist/bench/pod-start.js [--samples N] [--warmup N] [--no-docker] [--no-profile] [--update-results FILE]
 *
 * The host part (this file's main) builds the demo image, starts a Docker
 * Engine by hand if it can, boots a node sandbox (a real systemd), and runs
 * the measuring part (`inner`) inside the sandbox's namespaces, where the
 * runtime can mount overlayfs and the system bus is the sandbox's. See
 * bench/README.md for what each number means.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { eachFlag, nowMs, replaceResultsSection, sleep, summarize, fmtMs, fmtRatio, median, type Summary } from './stats.js';
import { Tracer, instrumentRuntime, renderTimeline, type Span } from './trace.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DIST = new URL('../', import.meta.url);
const CLI = path.join(REPO, 'bin', 'stevedore.js');
const IMAGE = 'localhost/busybox:latest';
const POD_COMMAND = ['sh', '-c', 'echo ready; sleep 30'];
const LINE_TIMEOUT_MS = 15_000;

type Variant = 'bare' | 'fly-inproc' | 'ns-inproc' | 'fly-cli' | 'ns-cli' | 'docker-rt' | 'docker';
const LABELS: Record<Variant, string> = {
  bare: 'bare unit (floor)',
  'fly-inproc': 'fly in-process',
  'ns-inproc': 'namespaces in-process',
  'fly-cli': 'fly CLI',
  'ns-cli': 'namespaces CLI',
  'docker-rt': 'runtime-docker in-process (same engine)',
  docker: 'docker run',
};

interface Sample {
  variant: Variant;
  round: number;
  warmup: boolean;
  /** t0 → journald's __REALTIME_TIMESTAMP of the first line (docker: the client printed it) */
  firstLineMs: number;
  /** t0 → our journal follower parsed the line */
  seenMs?: number;
  /** t0 → runPod resolved / the CLI (or docker client) exited */
  returnMs?: number;
}

interface InnerResult {
  samples: Sample[];
  method: string;
  docker?: { version: string };
  profile?: Record<string, string>;
}

interface Args {
  samples: number;
  warmup: number;
  docker: boolean;
  profile: boolean;
  updateResults?: string;
  work?: string;
  dockerHost?: string;
  dockerVersion?: string;
  out?: string;
  runId?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 30, warmup: 3, docker: true, profile: true };
  eachFlag(argv, (k, v) => {
    if (k === '--samples') a.samples = Number(v());
    else if (k === '--warmup') a.warmup = Number(v());
    else if (k === '--no-docker') a.docker = false;
    else if (k === '--no-profile') a.profile = false;
    else if (k === '--update-results') a.updateResults = v();
    else if (k === '--work') a.work = v();
    else if (k === '--docker-host') a.dockerHost = v();
    else if (k === '--docker-version') a.dockerVersion = v();
    else if (k === '--out') a.out = v();
    else if (k === '--run-id') a.runId = v();
    else return false;
    return true;
  });
  if (!(a.samples >= 1) || !(a.warmup >= 0)) throw new Error('--samples must be >= 1 and --warmup >= 0');
  return a;
}

// ---------------------------------------------------------------------------
// inner: runs inside the sandbox

interface JournalHit { journalMs: number; seenMs: number }

/**
 * One `journalctl -f -o json` for the whole run, started before the first
 * sample, matching this run's pods (STEVEDORE_POD_NAMESPACE) and bare units
 * (STEVEDORE_BENCH_RUN); lines are routed to waiters by pod name / sample key.
 */
class JournalFollower {
  private readonly waiters = new Map<string, (hit: JournalHit) => void>();
  private readonly early = new Map<string, JournalHit>();
  private readonly child;
  readonly ready: Promise<void>;

  constructor(runId: string, namespace: string, sinceMs: number) {
    this.child = spawn('journalctl', [
      '--follow', '--output=json', '--no-pager', `--since=@${(sinceMs / 1000).toFixed(3)}`,
      '--output-fields=MESSAGE,_TRANSPORT,STEVEDORE_POD_NAME,STEVEDORE_BENCH_SAMPLE',
      `STEVEDORE_POD_NAMESPACE=${namespace}`, '+', `STEVEDORE_BENCH_RUN=${runId}`,
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    let markReady: () => void = () => undefined;
    this.ready = new Promise((resolve) => (markReady = resolve));
    const lines = createInterface({ input: this.child.stdout });
    lines.on('line', (line) => {
      const seen = nowMs();
      let e: Record<string, unknown>;
      try { e = JSON.parse(line) as Record<string, unknown>; } catch { return; }
      if (e._TRANSPORT !== 'stdout') return;
      const key = typeof e.STEVEDORE_BENCH_SAMPLE === 'string' ? e.STEVEDORE_BENCH_SAMPLE : typeof e.STEVEDORE_POD_NAME === 'string' ? e.STEVEDORE_POD_NAME : undefined;
      if (key === 'bench-follower-ready') markReady();
      if (!key || e.MESSAGE !== 'ready') return;
      const hit = { journalMs: Number(BigInt(String(e.__REALTIME_TIMESTAMP))) / 1000, seenMs: seen };
      const w = this.waiters.get(key);
      if (w) { this.waiters.delete(key); w(hit); } else this.early.set(key, hit);
    });
  }

  wait(key: string, timeoutMs = LINE_TIMEOUT_MS): Promise<JournalHit> {
    const early = this.early.get(key);
    if (early) { this.early.delete(key); return Promise.resolve(early); }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiters.delete(key); reject(new Error(`no "ready" line from ${key} within ${timeoutMs} ms`)); }, timeoutMs);
      this.waiters.set(key, (hit) => { clearTimeout(timer); resolve(hit); });
    });
  }

  close(): void {
    this.child.kill();
  }
}

function podSpec(name: string, namespace: string) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      restartPolicy: 'Never' as const,
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: IMAGE, command: POD_COMMAND }],
    },
  };
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    // A child that exits before reading its stdin (EPIPE) must not crash the benchmark: its exit code says what happened.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.stdin ?? '');
  });
}

async function inner(args: Args): Promise<void> {
  const work = args.work!;
  const runId = args.runId!;
  const namespace = `bench-${runId}`;
  const dataDir = path.join(work, 'data');
  const { RktRuntime } = await import(new URL('runtime-rkt/runtime.js', DIST).href) as typeof import('../runtime-rkt/runtime.js');
  const { SystemdClient, prop } = await import(new URL('common/systemd.js', DIST).href) as typeof import('../common/systemd.js');
  const { validatePod } = await import(new URL('runtime-api/pod-spec.js', DIST).href) as typeof import('../runtime-api/pod-spec.js');

  const rt = await RktRuntime.open({ dataDir });
  await rt.images.importPath(path.join(work, 'layout'), { name: IMAGE });
  const systemd = await SystemdClient.connect();
  await systemd.subscribe();
  const follower = new JournalFollower(runId, namespace, nowMs() - 1000);
  const manifests = path.join(work, 'manifests');
  await fs.mkdir(manifests, { recursive: true });

  const dockerEnv = args.dockerHost
    ? { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, DOCKER_HOST: args.dockerHost, DOCKER_CONFIG: path.join(work, 'docker-client') }
    : undefined;

  async function bareUnit(key: string): Promise<{ t0: number; returnMs?: number }> {
    const unit = `stevedore-bench-${runId}-${key}.service`;
    const t0 = nowMs();
    const job = await systemd.startTransientUnit(unit, [
      prop.str('Description', `stevedore bench ${key}`),
      prop.exec('ExecStart', [{ path: '/bin/sh', argv: ['/bin/sh', '-c', 'echo ready'] }]),
      prop.logFields({ STEVEDORE_BENCH_RUN: runId, STEVEDORE_BENCH_SAMPLE: key }),
    ]);
    await systemd.waitForJob(job);
    return { t0, returnMs: nowMs() - t0 };
  }

  // Make sure the follower is live before anything is timed.
  await bareUnit('bench-follower-ready');
  await Promise.race([follower.ready, sleep(10_000).then(() => { throw new Error('journal follower saw nothing within 10 s'); })]);

  const variants: Variant[] = ['bare', 'fly-inproc', 'ns-inproc', 'fly-cli', 'ns-cli'];
  if (dockerEnv) variants.push('docker-rt', 'docker');
  // Our docker runtime on the same engine as `docker run` (no pod network on either: --network none there).
  const dockerRt = args.dockerHost
    ? await (await import(new URL('runtime-docker/index.js', DIST).href) as typeof import('../runtime-docker/index.js')).openDockerRuntime({ dataDir: path.join(work, 'docker-rt'), dockerEndpoint: args.dockerHost })
    : undefined;
  const samples: Sample[] = [];
  const rounds = args.warmup + args.samples;

  async function one(variant: Variant, round: number): Promise<Sample> {
    const key = `s${round}-${variant}`;
    const lineP = variant === 'docker' || variant === 'docker-rt' ? undefined : follower.wait(key);
    lineP?.catch(() => undefined);
    let t0 = 0;
    let returnMs: number | undefined;
    let uuid: string | undefined;
    let dockerLine: number | undefined;
    let seenMs: number | undefined;
    let dockerRtUuid: string | undefined;
    if (variant === 'docker-rt') {
      const pod = validatePod(podSpec(key, namespace), { strict: true });
      t0 = nowMs();
      dockerRtUuid = await dockerRt!.runPod(pod, {});
      returnMs = nowMs() - t0;
      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), LINE_TIMEOUT_MS);
      try {
        for await (const line of dockerRt!.logs({ podUuid: dockerRtUuid, follow: true, signal: stop.signal })) {
          // The engine's time stamp of the line (when the container wrote it), as journald's for the rkt rows.
          dockerLine = Number(line.timeUs) / 1000 - t0;
          seenMs = nowMs() - t0;
          break;
        }
      } finally {
        clearTimeout(timer);
        stop.abort();
        await dockerRt!.removePod(dockerRtUuid);
      }
      if (dockerLine === undefined) throw new Error('runtime-docker: no first line');
      return { variant, round, warmup: round < args.warmup, firstLineMs: dockerLine, seenMs, returnMs };
    }
    if (variant === 'bare') {
      ({ t0, returnMs } = await bareUnit(key));
    } else if (variant === 'fly-inproc' || variant === 'ns-inproc') {
      const pod = validatePod(podSpec(key, namespace), { strict: true });
      t0 = nowMs();
      uuid = await rt.runPod(pod, { stage1: variant === 'fly-inproc' ? 'fly' : 'namespaces' });
      returnMs = nowMs() - t0;
    } else if (variant === 'fly-cli' || variant === 'ns-cli') {
      const file = path.join(manifests, `${key}.json`);
      await fs.writeFile(file, JSON.stringify(podSpec(key, namespace)));
      t0 = nowMs();
      const r = await run(process.execPath, [CLI, '--dir', dataDir, 'pod', 'run', '-f', file, '--stage1', variant === 'fly-cli' ? 'fly' : 'namespaces']);
      returnMs = nowMs() - t0;
      if (r.code !== 0) throw new Error(`stevedore pod run failed (${r.code}): ${r.stderr.trim()}`);
      uuid = r.stdout.trim();
    } else {
      t0 = nowMs();
      const child = spawn('/usr/bin/docker', ['run', '--rm', '--network', 'none', IMAGE, 'echo', 'ready'], { env: dockerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      createInterface({ input: child.stdout }).on('line', (l) => { if (l === 'ready' && dockerLine === undefined) dockerLine = nowMs() - t0; });
      const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
      returnMs = nowMs() - t0;
      if (code !== 0 || dockerLine === undefined) throw new Error(`docker run failed (${code}): ${stderr.trim()}`);
    }
    try {
      if (lineP) {
        const hit = await lineP;
        return { variant, round, warmup: round < args.warmup, firstLineMs: hit.journalMs - t0, seenMs: hit.seenMs - t0, returnMs };
      }
      return { variant, round, warmup: round < args.warmup, firstLineMs: dockerLine!, returnMs };
    } finally {
      if (uuid) await rt.removePod(uuid, { force: true });
    }
  }

  process.stderr.write(`bench: ${rounds} rounds (${args.warmup} warm-up) x ${variants.join(', ')}\n`);
  for (let round = 0; round < rounds; round++) {
    // Rotate the order every round so no variant always follows the same one.
    const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
    for (const v of order) {
      samples.push(await one(v, round));
      await sleep(30);
    }
    if ((round + 1) % 5 === 0) process.stderr.write(`bench: round ${round + 1}/${rounds}\n`);
  }

  const profile = args.profile ? await profileRuns(rt, namespace, follower, dataDir, manifests, validatePod) : undefined;
  follower.close();
  systemd.close();
  const leftovers = await rt.gc({ exitedGracePeriodMs: 0 });
  if (leftovers.removedPods.length || leftovers.orphanUnits.length) process.stderr.write(`bench: gc cleaned ${JSON.stringify(leftovers)}\n`);
  await rt.close();
  await dockerRt?.close();
  const result: InnerResult = {
    samples,
    method: 'one `journalctl --follow --output=json` started before the first sample (matching this run\'s STEVEDORE_POD_NAMESPACE / STEVEDORE_BENCH_RUN); first line time = the entry\'s __REALTIME_TIMESTAMP (when journald received it) minus t0',
    ...(args.dockerVersion ? { docker: { version: args.dockerVersion } } : {}),
    ...(profile ? { profile } : {}),
  };
  await fs.writeFile(args.out!, JSON.stringify(result, null, 2));
}

/** Where the time goes: traced in-process and CLI runs of a namespaces pod, plus the CLI's fixed costs. */
async function profileRuns(
  rt: import('../runtime-rkt/runtime.js').RktRuntime, namespace: string, follower: JournalFollower, dataDir: string, manifests: string,
  validatePod: typeof import('../runtime-api/pod-spec.js').validatePod,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const N = 7;
  process.stderr.write('bench: profiling\n');

  // 1. Node and module loading, each in a fresh process.
  const timeProc = async (args: string[], n = 10): Promise<number> => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = nowMs();
      const r = await run(process.execPath, args);
      if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
      times.push(nowMs() - t0);
    }
    return median(times);
  };
  const importCost = async (spec: string): Promise<number> => {
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await run(process.execPath, ['--input-type=module', '-e', `const t=performance.now(); await import(${JSON.stringify(spec)}); process.stdout.write(String(performance.now()-t))`], { env: { ...process.env } });
      times.push(Number(r.stdout));
    }
    return median(times);
  };
  const rows: string[] = [];
  rows.push(`node -e 0 (bare node start+exit)                    ${fmtMs(await timeProc(['-e', '0']))} ms`);
  rows.push(`node bin/stevedore.js --version (all CLI modules)   ${fmtMs(await timeProc([CLI, '--version']))} ms`);
  const nm = (m: string) => new URL(`../../node_modules/${m}`, import.meta.url).href;
  for (const [name, spec] of [
    ['execa', 'execa'], ['dbus-next', 'dbus-next'], ['yaml', 'yaml'], ['pino', 'pino'], ['commander', 'commander'], ['tar-stream', 'tar-stream'],
    ['dist/common/systemd.js', new URL('common/systemd.js', DIST).href],
    ['dist/runtime-rkt/runtime.js', new URL('runtime-rkt/runtime.js', DIST).href],
    ['dist/cli/pod-commands.js', new URL('cli/pod-commands.js', DIST).href],
    ['dist/sandbox/sandbox.js', new URL('sandbox/sandbox.js', DIST).href],
  ] as const) {
    const resolved = spec.startsWith('file:') ? spec : await import.meta.resolve?.(spec) ?? nm(spec);
    rows.push(`import ${name.padEnd(30)} (alone, fresh node)  ${fmtMs(await importCost(resolved))} ms`);
  }
  // Marginal cost of each static import of dist/cli/main.js, in its order, in one fresh node (median of 5).
  const marginal = new Map<string, number[]>();
  for (let i = 0; i < 5; i++) {
    const traceFile = path.join(manifests, `imports-${i}.json`);
    const r = await run(process.execPath, ['--import', new URL('bench/cli-trace.js', DIST).href, '-e', '0'], { env: { ...process.env, STEVEDORE_BENCH_TRACE: traceFile } });
    if (r.code !== 0) throw new Error(`import trace failed: ${r.stderr}`);
    const trace = JSON.parse(await fs.readFile(traceFile, 'utf8')) as { spans: Span[] };
    for (const s of trace.spans) if (s.name.startsWith('import ') || s.name.startsWith('load ')) marginal.set(s.name, [...(marginal.get(s.name) ?? []), s.end - s.start]);
  }
  rows.push('', 'marginal cost of each static import of dist/cli/main.js, in order, one fresh node (median of 5):');
  for (const [name, times] of marginal) rows.push(`  ${fmtMs(median(times)).padStart(6)} ms  ${name}`);
  out.cliFixedCosts = rows.join('\n');

  // 2. In-process namespaces and fly pods, traced.
  const tracer = new Tracer();
  await instrumentRuntime(tracer, DIST.href);
  for (const stage1 of ['namespaces', 'fly'] as const) {
    const runs: Array<{ total: number; text: string }> = [];
    for (let i = 0; i < N; i++) {
      const key = `prof-${stage1}-${i}`;
      const lineP = follower.wait(key);
      lineP.catch(() => undefined);
      const pod = validatePod(podSpec(key, namespace), { strict: true });
      tracer.reset();
      const t0 = nowMs();
      const uuid = await rt.runPod(pod, { stage1 });
      const hit = await lineP;
      const spans = tracer.spans.filter((s) => s.start >= t0);
      runs.push({ total: hit.journalMs - t0, text: renderTimeline(spans, t0, [{ name: 'first line in journald', at: hit.journalMs }]) });
      await rt.removePod(uuid, { force: true });
      await sleep(30);
    }
    runs.sort((a, b) => a.total - b.total);
    const mid = runs[Math.floor(runs.length / 2)]!;
    out[`inproc-${stage1}`] = `median-latency run of ${N} (first line at ${fmtMs(mid.total)} ms):\n${mid.text}`;
  }

  // 3. The CLI, traced with --import cli-trace.js.
  const cliRuns: Array<{ total: number; text: string }> = [];
  for (let i = 0; i < N; i++) {
    const key = `prof-cli-${i}`;
    const file = path.join(manifests, `${key}.json`);
    await fs.writeFile(file, JSON.stringify(podSpec(key, namespace)));
    const traceFile = path.join(manifests, `${key}.trace.json`);
    const lineP = follower.wait(key);
    lineP.catch(() => undefined);
    const t0 = nowMs();
    const r = await run(process.execPath, ['--import', new URL('bench/cli-trace.js', DIST).href, CLI, '--dir', dataDir, 'pod', 'run', '-f', file, '--stage1', 'namespaces'], {
      env: { ...process.env, STEVEDORE_BENCH_TRACE: traceFile },
    });
    const exited = nowMs();
    if (r.code !== 0) throw new Error(`traced CLI failed: ${r.stderr}`);
    const hit = await lineP;
    const trace = JSON.parse(await fs.readFile(traceFile, 'utf8')) as { processStart: number; hookStart: number; exit: number; spans: Span[] };
    const spans: Span[] = [
      { name: 'spawn → node process clock starts (fork/exec, node binary load)', start: t0, end: trace.processStart },
      { name: 'node bootstrap → first user module runs', start: trace.processStart, end: trace.hookStart },
      ...trace.spans,
      { name: 'process.exit → parent sees exit', start: trace.exit, end: exited },
    ];
    cliRuns.push({ total: hit.journalMs - t0, text: renderTimeline(spans, t0, [{ name: 'first line in journald', at: hit.journalMs }, { name: 'CLI exited', at: exited }]) });
    await rt.removePod(r.stdout.trim(), { force: true });
    await sleep(30);
  }
  cliRuns.sort((a, b) => a.total - b.total);
  const midCli = cliRuns[Math.floor(cliRuns.length / 2)]!;
  out['cli-namespaces'] = `median-latency run of ${N} traced CLI runs (first line at ${fmtMs(midCli.total)} ms; the trace hook adds a little):\n${midCli.text}`;
  return out;
}

// ---------------------------------------------------------------------------
// host: orchestrates

async function machineInfo(): Promise<Record<string, string>> {
  const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return {
    nproc: String(os.availableParallelism?.() ?? os.cpus().length),
    model: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? '?',
    kernel: os.release(),
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    loadavg: load,
    tree: await treeState(),
  };
}

function report(result: InnerResult, args: Args, machine: Record<string, string>, dockerNote: string): string {
  const by = (v: Variant, field: 'firstLineMs' | 'returnMs' | 'seenMs') =>
    result.samples.filter((s) => s.variant === v && !s.warmup).map((s) => s[field]).filter((x): x is number => x !== undefined);
  const sum: Partial<Record<Variant, Summary>> = {};
  for (const v of Object.keys(LABELS) as Variant[]) {
    const vals = by(v, 'firstLineMs');
    if (vals.length) sum[v] = summarize(vals);
  }
  const bare = sum.bare;
  const docker = sum.docker;
  const lines: string[] = [];
  lines.push(`machine: ${machine.nproc} CPUs, ${machine.model}, kernel ${machine.kernel}, node ${machine.node}, ${machine.date} (load avg at end: ${machine.loadavg}); code: ${machine.tree}`);
  lines.push(`samples: ${args.samples} per variant after ${args.warmup} warm-up rounds, variants interleaved (order rotated each round)`);
  lines.push(`first line measured by: ${result.method}`);
  lines.push('');
  lines.push('| variant | n | median | p90 | p99 (=max for n<100) | min | vs bare unit (median) | vs docker (median) | call returned (median) | follower saw it (median) |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const v of Object.keys(LABELS) as Variant[]) {
    const s = sum[v];
    if (!s) continue;
    lines.push(`| ${LABELS[v]} | ${s.n} | ${fmtMs(s.median)} ms | ${fmtMs(s.p90)} ms | ${fmtMs(s.p99)} ms | ${fmtMs(s.min)} ms | ${fmtRatio(s.median, bare?.median)} | ${fmtRatio(s.median, docker?.median)} | ${fmtMs(median(by(v, 'returnMs')))} ms | ${v === 'docker' ? '-' : `${fmtMs(median(by(v, 'seenMs')))} ms`} |`);
  }
  if (!docker) lines.push(`\ndocker: not available (${dockerNote})`);
  else lines.push(`\ndocker: Engine ${result.docker?.version ?? '?'} started by hand for this run (${dockerNote}); first line = \`docker run\` client printed it`);
  lines.push('');
  for (const v of Object.keys(LABELS) as Variant[]) {
    const s = sum[v];
    if (!s) continue;
    lines.push(`${LABELS[v]}: median ${fmtMs(s.median)} ms p99 ${fmtMs(s.p99)} ms (${fmtRatio(s.median, bare?.median)} bare unit, ${fmtRatio(s.median, docker?.median)} docker)`);
  }
  const ns = sum['ns-inproc'];
  const nsCli = sum['ns-cli'];
  const dockerRt = sum['docker-rt'];
  if (dockerRt && docker) {
    lines.push('');
    // Two clocks for our row: the engine's stamp of the line, and when our runtime's log stream (what
    // `kubectl logs -f` reads through the agent) delivered it; docker run's is when its client printed it.
    const seen = median(by('docker-rt', 'seenMs'));
    lines.push(`goal (issue 18): runtime-docker adds < 20% to docker run's median — ${dockerRt.median < docker.median * 1.2 && seen < docker.median * 1.2 ? 'MET' : 'MISSED'} (line stamped at ${fmtMs(dockerRt.median)} ms, ${fmtRatio(dockerRt.median, docker.median)}; through our log stream at ${fmtMs(seen)} ms, ${fmtRatio(seen, docker.median)}; docker run ${fmtMs(docker.median)} ms); rkt/namespaces ≥ 3x faster than docker run — ${ns && ns.median * 3 <= docker.median ? 'MET' : 'MISSED'} (${fmtMs(ns?.median)} ms, ${fmtRatio(ns?.median, docker.median)})`);
  }
  lines.push('');
  lines.push(`goal (issue 2): namespaces p99 < 150 ms — in-process ${ns ? (ns.p99 < 150 ? 'MET' : 'MISSED') : '?'} (${fmtMs(ns?.p99)} ms), CLI ${nsCli ? (nsCli.p99 < 150 ? 'MET' : 'MISSED') : '?'} (${fmtMs(nsCli?.p99)} ms)`);
  return lines.join('\n');
}

async function host(args: Args): Promise<void> {
  const { startSandbox, stopSandbox, execInSandbox, getSandbox } = await import(new URL('sandbox/sandbox.js', DIST).href) as typeof import('../sandbox/sandbox.js');
  const { buildBusyboxImage } = await import(new URL('runtime-rkt/image/demo-image.js', DIST).href) as typeof import('../runtime-rkt/image/demo-image.js');
  const { startDocker, stopDocker, ociLayoutToDockerArchive } = await import('./docker.js');
  const runId = randomBytes(4).toString('hex');
  const work = `/var/tmp/stevedore-bench-${runId}`;
  const sandboxName = `bench-${runId}`;
  await fs.mkdir(path.join(work, 'layout'), { recursive: true });
  let dockerSt: Awaited<ReturnType<typeof startDocker>> | undefined;
  let dockerNote = 'skipped (--no-docker)';
  let sandboxStarted = false;
  const cleanups: string[] = [];
  try {
    await buildBusyboxImage(path.join(work, 'layout'), { name: 'busybox', tag: 'latest' });
    // Others may rebuild dist/ while we measure: run the inner part and the CLI from a private copy.
    const snapshot = await snapshotTree(path.join(work, 'tree'));
    process.stderr.write(`bench: booting sandbox ${sandboxName}\n`);
    await startSandbox({ name: sandboxName });
    sandboxStarted = true;
    if (args.docker) {
      process.stderr.write('bench: starting a Docker Engine by hand\n');
      // Inside the sandbox, as a node's engine: runtime-docker in there sees its containers' processes.
      const sandbox = await getSandbox(sandboxName);
      dockerSt = await startDocker(path.join(work, 'docker'), runId, sandbox ? { inSandbox: sandbox } : {});
      if (dockerSt.engine && !dockerSt.reason) {
        const archive = path.join(work, 'busybox-docker-archive.tar');
        await ociLayoutToDockerArchive(path.join(work, 'layout'), archive, IMAGE);
        const r = await run(dockerSt.engine.client, ['load', '-i', archive], { env: dockerSt.engine.env });
        if (r.code !== 0) dockerSt.reason = `docker load failed: ${r.stderr.trim()}`;
        else dockerNote = `dockerd ${DOCKER_FLAGS_NOTE}; image loaded from a docker-archive converted from our OCI layout`;
      }
      if (dockerSt.reason) dockerNote = dockerSt.reason;
    }
    const out = path.join(work, 'inner.json');
    const innerArgs = [
      process.execPath, path.join(snapshot, 'dist', 'bench', 'pod-start.js'), 'inner', '--work', work, '--run-id', runId, '--out', out,
      '--samples', String(args.samples), '--warmup', String(args.warmup), ...(args.profile ? [] : ['--no-profile']),
      ...(dockerSt?.engine && !dockerSt.reason ? ['--docker-host', dockerSt.engine.host, '--docker-version', dockerSt.engine.version] : []),
    ];
    const r = await execInSandbox(sandboxName, innerArgs, { stdio: 'inherit', cwd: snapshot, env: process.env.STEVEDORE_LOG_LEVEL ? { STEVEDORE_LOG_LEVEL: process.env.STEVEDORE_LOG_LEVEL } : {} });
    if (r.exitCode !== 0) throw new Error(`the benchmark inside the sandbox failed (exit ${r.exitCode})`);
    const result = JSON.parse(await fs.readFile(out, 'utf8')) as InnerResult;
    const machine = await machineInfo();
    const text = report(result, args, machine, dockerNote);
    process.stdout.write(`\n${text}\n`);
    if (result.profile) {
      process.stdout.write('\n--- where the time goes ---\n');
      for (const [k, v] of Object.entries(result.profile)) process.stdout.write(`\n[${k}]\n${v}\n`);
    }
    await fs.writeFile(path.join(REPO, 'bench', '.last-run.json'), JSON.stringify({ machine, args, dockerNote, ...result }, null, 2)).catch(() => undefined);
    if (args.updateResults) await updateResults(args.updateResults, text, result.profile, machine, args);
  } finally {
    // dockerd first: it lives in the sandbox, whose end would SIGKILL it.
    if (dockerSt) cleanups.push(...(await stopDocker(dockerSt).catch((e) => [`stopDocker: ${(e as Error).message}`])));
    if (sandboxStarted) await stopSandbox(sandboxName).catch((e) => cleanups.push(`stopSandbox: ${(e as Error).message}`));
    await fs.rm(work, { recursive: true, force: true }).catch((e) => cleanups.push(`rm ${work}: ${(e as Error).message}`));
    if (cleanups.length) process.stderr.write(`bench: cleanup: ${cleanups.join('; ')}\n`);
  }
}

/**
 * A private copy of the built tree (dist/, bin/, package.json, sandbox/boot.sh, native addons;
 * node_modules linked), checked by loading the whole CLI once: a concurrent
 * `tsc` in the shared work tree cannot change the code under measurement.
 */
async function snapshotTree(dest: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    await fs.rm(dest, { recursive: true, force: true });
    await fs.mkdir(dest, { recursive: true });
    for (const p of ['dist', 'bin', 'package.json', path.join('sandbox', 'boot.sh'), path.join('native', 'build', 'Release')]) {
      await fs.cp(path.join(REPO, p), path.join(dest, p), { recursive: true }).catch((err) => { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; });
    }
    await fs.symlink(path.join(REPO, 'node_modules'), path.join(dest, 'node_modules'));
    const r = await run(process.execPath, [path.join(dest, 'bin', 'stevedore.js'), '--version']);
    if (r.code === 0) return dest;
    if (attempt >= 5) throw new Error(`the built CLI does not load (is dist/ being rebuilt?): ${r.stderr.trim()}`);
    await sleep(3000);
  }
}

async function treeState(): Promise<string> {
  const head = await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).catch(() => undefined);
  const dirty = await run('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']).catch(() => undefined);
  return head?.code === 0 ? `${head.stdout.trim()}${dirty?.stdout.trim() ? ' + uncommitted changes' : ''}` : 'unknown';
}

const DOCKER_FLAGS_NOTE = 'inside the sandbox (its mount, PID and cgroup namespaces) with a netns of its own (unshare --net), --iptables=false --ip-forward=false --bridge=none, overlay2, cgroupfs, data/exec root under /var/tmp';

const BEGIN = '<!-- bench:pod-start:begin -->';
const END = '<!-- bench:pod-start:end -->';

/** Replace the generated section of RESULTS.md (between the markers); the hand-written analysis around it stays. */
async function updateResults(file: string, text: string, profile: Record<string, string> | undefined, machine: Record<string, string>, args: Args): Promise<void> {
  const body = [
    BEGIN,
    `_Generated by \`bash bench/run.sh --samples ${args.samples} --warmup ${args.warmup}${args.docker ? '' : ' --no-docker'}\` on ${machine.date}._`,
    '',
    text.replace(/^machine: /, 'Machine: '),
    '',
    ...(profile ? ['<details><summary>raw profile of this run</summary>', '', ...Object.entries(profile).flatMap(([k, v]) => [`**${k}**`, '', '```', v, '```', '']), '</details>'] : []),
    END,
  ].join('\n');
  await replaceResultsSection(file, BEGIN, END, body);
}

const argv = process.argv.slice(2);
if (argv[0] === 'inner') await inner(parseArgs(argv.slice(1)));
else await host(parseArgs(argv));
