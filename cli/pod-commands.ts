import * as fs from 'node:fs/promises';
import type { Command } from 'commander';
import { InvalidInput, UserError } from '../common/errors.js';
import { age, parseDuration, table } from '../common/format.js';
import { parseStage1Name } from '../stage1/contract.js';
import type { PodStatus } from '../runtime-rkt/status.js';
import type { RktRuntime } from '../runtime-rkt/runtime.js';

type WithRuntime = <T>(fn: (rt: RktRuntime) => Promise<T>) => Promise<T>;
/** The node's docker pods, read through the neutral runtime interface (never starts an engine). */
type WithDockerPods = <T>(endpoint: string | undefined, fn: (listPods: () => Promise<PodStatus[]>) => Promise<T>) => Promise<T>;
type RuntimeChoice = { containerRuntime?: string; dockerEndpoint?: string };

/** rkt (the default) or docker, for the commands that read pods; a docker-only flag on rkt is refused. */
function runtimeChoice(opts: RuntimeChoice): 'rkt' | 'docker' {
  const name = opts.containerRuntime ?? 'rkt';
  if (name !== 'rkt' && name !== 'docker') throw new InvalidInput(`--container-runtime=${name}: choose rkt or docker`);
  if (opts.dockerEndpoint && name !== 'docker') throw new InvalidInput('--docker-endpoint is for --container-runtime=docker', 'add --container-runtime=docker, or drop --docker-endpoint');
  return name;
}

/** A pod by UUID or unique prefix among `pods` (what rkt's pod store does for its own pods). */
function podByPrefix(pods: PodStatus[], ref: string): PodStatus {
  const matches = pods.filter((p) => p.uuid.startsWith(ref));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw new InvalidInput(`pod prefix "${ref}" is ambiguous: it matches ${matches.map((p) => p.uuid).join(', ')}`);
  throw new UserError(`no pod "${ref}" on this node's docker engine`, { hint: '`stevedore pod list --container-runtime=docker` shows the pods' });
}
type Output = { output?: string };

function print(opts: Output, json: unknown, text: () => string): void {
  process.stdout.write(opts.output === 'json' ? JSON.stringify(json, null, 2) + '\n' : text());
}

function appSummary(p: PodStatus): string {
  return p.apps.map((a) => `${a.name}:${a.state}${a.exitCode !== undefined ? `(${a.exitCode})` : ''}`).join(',');
}

function restarts(p: PodStatus): string {
  return String(p.apps.reduce((n, a) => n + a.restartCount, 0));
}

/** `pod list|status -o json` keep the `stage1` field scripts read (rkt's runtime handler is its stage1). */
const withStage1 = (p: PodStatus) => ({ ...p, stage1: p.handler });

export function registerPodCommands(program: Command, withRuntime: WithRuntime, withDockerPods?: WithDockerPods): void {
  const pod = program.command('pod').description('run and inspect pods');

  pod.command('run')
    .description('prepare and start a pod from a manifest (a Kubernetes Pod); prints its UUID')
    .requiredOption('-f, --file <file>', 'pod manifest (YAML or JSON); - for stdin')
    .option('--stage1 <name>', 'isolation: fly, namespaces or kvm (default: the node default)')
    .action(async (opts: { file: string; stage1?: string }) => {
      const text = opts.file === '-' ? await readStdin() : await fs.readFile(opts.file, 'utf8').catch((err) => {
        throw new InvalidInput(`cannot read pod manifest ${opts.file}: ${(err as Error).message}`);
      });
      const { parsePodManifest } = await import('../runtime-api/pod-spec.js');
      const manifest = parsePodManifest(text, { strict: true, source: opts.file });
      const stage1 = opts.stage1 ? parseStage1Name(opts.stage1) : undefined;
      const uuid = await withRuntime(async (rt) => {
        await rt.reconcile();
        return rt.runPod(manifest, { stage1 });
      });
      process.stdout.write(`${uuid}\n`);
    });

  pod.command('list').alias('ls')
    .description('list the pods on this node')
    .option('-o, --output <format>', 'json for scripts')
    .option('--container-runtime <name>', 'the node\'s runtime: rkt (default) or docker (its engine\'s pods)')
    .option('--docker-endpoint <socket>', 'docker: the engine, unix:///PATH (default: the node\'s own under <dir>/docker/engine)')
    .action(async (opts: Output & RuntimeChoice) => {
      const pods = runtimeChoice(opts) === 'docker'
        ? await withDockerPods!(opts.dockerEndpoint, (listPods) => listPods())
        : await withRuntime(async (rt) => { await rt.reconcile(); return rt.listPods(); });
      pods.sort((a, b) => (a.createdAt ?? 0) - (b.createdAt ?? 0));
      print(opts, pods.map(withStage1), () => table(['UUID', 'NAME', 'STAGE1', 'STATE', 'RESTARTS', 'AGE', 'APPS'],
        pods.map((p) => [p.uuid, `${p.namespace ?? '-'}/${p.name ?? '-'}`, p.handler ?? '-', p.state, restarts(p), age(p.createdAt), appSummary(p)])));
    });

  pod.command('status')
    .argument('<uuid>', 'pod UUID or unique prefix')
    .description('show one pod with the state of each app')
    .option('-o, --output <format>', 'json for scripts')
    .option('--container-runtime <name>', 'the node\'s runtime: rkt (default) or docker (its engine\'s pods)')
    .option('--docker-endpoint <socket>', 'docker: the engine, unix:///PATH (default: the node\'s own under <dir>/docker/engine)')
    .action(async (uuid: string, opts: Output & RuntimeChoice) => {
      const p = runtimeChoice(opts) === 'docker'
        ? await withDockerPods!(opts.dockerEndpoint, async (listPods) => podByPrefix(await listPods(), uuid))
        : await withRuntime((rt) => rt.podStatus(uuid));
      print(opts, withStage1(p), () => [
        `uuid=${p.uuid}`, `name=${p.namespace ?? '-'}/${p.name ?? '-'}`, `stage1=${p.handler ?? '-'}`, `state=${p.state}`,
        `created=${p.createdAt ? new Date(p.createdAt).toISOString() : '-'}`, `started=${p.startedAt ? new Date(p.startedAt).toISOString() : '-'}`,
        ...(p.podIPs ? [`ips=${p.podIPs.join(',')}`] : []),
        ...(p.vm ? [`vm=accel:${p.vm.accel} memory:${p.vm.memoryMiB}Mi cpus:${p.vm.cpus} kernel:${p.vm.kernel}`, `vm-accel-reason=${p.vm.accelReason}`] : []),
        ...p.apps.map((a) => `app=${a.name} state=${a.state}${a.reason ? ` reason=${a.reason}` : ''}${a.exitCode !== undefined ? ` exit=${a.exitCode}` : ''} restarts=${a.restartCount}${a.mainPid ? ` pid=${a.mainPid}` : ''} image=${a.image.name}`),
      ].join('\n') + '\n');
    });

  pod.command('logs')
    .argument('<uuid>', 'pod UUID or unique prefix')
    .description("print a pod's output from the journal")
    .option('-c, --container <name>', 'only this container')
    .option('-f, --follow', 'keep printing new lines')
    .option('--tail <n>', 'only the last N lines', (v) => { const n = Number(v); if (!Number.isInteger(n) || n < 0) throw new InvalidInput('--tail takes a number of lines'); return n; })
    .option('--since <duration>', 'only lines newer than this (e.g. 10s, 5m)')
    .option('--timestamps', 'prefix each line with its RFC 3339 time')
    .option('-p, --previous', "the previous run of the container (after a restart)")
    .action(async (uuid: string, opts: { container?: string; follow?: boolean; tail?: number; since?: string; timestamps?: boolean; previous?: boolean }) => {
      const { status } = await withRuntime(async (rt) => ({ status: await rt.podStatus(uuid) }));
      if (opts.container && !status.apps.some((a) => a.name === opts.container)) {
        throw new UserError(`pod ${status.uuid} has no container "${opts.container}"`, { hint: `its containers: ${status.apps.map((a) => a.name).join(', ')}` });
      }
      let invocation: string | undefined;
      if (opts.previous) {
        const app = status.apps.find((a) => a.name === (opts.container ?? status.apps[0]?.name));
        invocation = app?.lastTermination?.invocation;
        if (!invocation) throw new UserError(`container "${app?.name}" has no previous run`);
      }
      const { formatTimestamp, readLogs } = await import('../runtime-rkt/logs.js');
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      const multi = !opts.container && status.apps.length > 1;
      for await (const line of readLogs({
        podUuid: status.uuid, container: opts.container, tail: opts.tail, follow: opts.follow, invocation,
        sinceMs: opts.since ? Date.now() - parseDuration(opts.since) : undefined, signal: controller.signal,
      })) {
        const prefix = `${opts.timestamps ? formatTimestamp(line.timeUs) + ' ' : ''}${multi ? `[${line.container}] ` : ''}`;
        process.stdout.write(`${prefix}${line.message}\n`);
      }
    });

  pod.command('stop')
    .argument('<uuid...>', 'pod UUIDs or unique prefixes')
    .description('stop a pod: SIGTERM, then SIGKILL after its grace period')
    .option('--grace-period <seconds>', 'override the pod\'s terminationGracePeriodSeconds', Number)
    .action(async (uuids: string[], opts: { gracePeriod?: number }) => {
      await withRuntime(async (rt) => {
        for (const uuid of uuids) {
          const s = await rt.stopPod(uuid, { gracePeriodSeconds: opts.gracePeriod });
          process.stdout.write(`${s.uuid}\n`);
        }
      });
    });

  pod.command('rm')
    .argument('<uuid...>', 'pod UUIDs or unique prefixes')
    .description('remove pods and everything they hold on the node')
    .option('--force', 'stop running pods first')
    .action(async (uuids: string[], opts: { force?: boolean }) => {
      await withRuntime(async (rt) => {
        for (const uuid of uuids) {
          await rt.removePod(uuid, { force: opts.force });
          process.stdout.write(`${uuid}\n`);
        }
      });
    });

  pod.command('enter')
    .argument('<uuid>', 'pod UUID or unique prefix')
    .argument('[command...]', 'command to run (default: sh)')
    .description('run a command inside a running container of a pod (the same path as kubectl exec)')
    .option('-c, --container <name>', 'container (default: the first)')
    .option('-t, --tty', 'run it on a terminal (default: when stdin is one)')
    .option('-T, --no-tty', 'no terminal even when stdin is one')
    .action(async (uuid: string, command: string[], opts: { container?: string; tty?: boolean }) => {
      const tty = opts.tty ?? process.stdin.isTTY === true;
      const code = await withRuntime(async (rt) => {
        const size = () => ({ cols: process.stdout.columns ?? 80, rows: process.stdout.rows ?? 24 });
        const exec = await rt.exec(uuid, opts.container, command.length ? command : ['sh'], { stdin: true, tty, ...(tty ? { size: size() } : {}) });
        const rawMode = tty && process.stdin.isTTY;
        if (rawMode) process.stdin.setRawMode(true);
        const onResize = () => exec.resize(size());
        process.stdout.on('resize', onResize);
        process.stdin.pipe(exec.stdin!);
        exec.stdout.pipe(process.stdout, { end: false });
        exec.stderr?.pipe(process.stderr, { end: false });
        const outputDone = Promise.all([exec.stdout, exec.stderr].filter((s) => s !== undefined).map((s) => new Promise((r) => s.once('close', r))));
        const { code } = await exec.exit;
        await outputDone;
        process.stdout.off('resize', onResize);
        process.stdin.unpipe(exec.stdin!);
        if (rawMode) process.stdin.setRawMode(false);
        process.stdin.pause();
        return code;
      });
      process.exitCode = code;
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
