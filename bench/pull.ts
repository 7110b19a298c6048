/**
 * Registry pull benchmark: `ImageStore.pull` (what `stevedore image pull` and
 * the agent run) against `skopeo copy docker://… dir:…` and containerd's
 * `ctr image pull` of the same image from the same loopback docker-registry,
 * in the same run, samples interleaved (order rotating) so machine load hits
 * all alike. Plus the peak RSS of our pull for a small and a large image
 * (memory must be flat in image size).
 *
 *   node dist/bench/pull.js [--samples N] [--mb 100] [--small-mb 25] [--layers 4] [--no-containerd] [--update-results FILE]
 *
 * Images are random bytes (gzip cannot shrink them), several layers each,
 * built with our OCI layout writer and pushed with skopeo. Each sample is a
 * fresh process with an empty store / target directory; both times are
 * spawn-to-exit wall clock (process start included on both sides). Our pull
 * also unpacks every layer and checks its diff_id; skopeo's dir: transport
 * only stores the compressed blobs — the comparison is the user-visible
 * "pull" of each tool. containerd (a throw-away daemon, bench/containerd.ts)
 * does what we do: download, verify the digests and diff_ids, unpack into
 * (overlayfs) snapshots; each of its samples uses a namespace of its own and
 * is removed with `ctr image rm --sync` (containerd's GC drops content and
 * snapshots) outside the timing.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { entry, writeLayerBlob, writeOciLayout, type BuiltLayer } from '../runtime-rkt/image/demo-image.js';
import { startRegistry, skopeoPush, type TestRegistry } from '../test/helpers/registry.js';
import { eachFlag, nowMs, replaceResultsSection, summarize, fmtMs, fmtRatio } from './stats.js';
import { run } from './cluster-util.js';
import { CTR, ctrArgs, startContainerd, stopContainerd, type Containerd } from './containerd.js';

const SELF = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SELF), '..', '..');

interface Args { samples: number; mb: number; smallMb: number; layers: number; containerd: boolean; updateResults?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 5, mb: 100, smallMb: 25, layers: 4, containerd: true };
  eachFlag(argv, (k, v) => {
    if (k === '--samples') a.samples = Number(v());
    else if (k === '--mb') a.mb = Number(v());
    else if (k === '--small-mb') a.smallMb = Number(v());
    else if (k === '--layers') a.layers = Number(v());
    else if (k === '--no-containerd') a.containerd = false;
    else if (k === '--update-results') a.updateResults = v();
    else return false;
    return true;
  });
  for (const [k, n] of Object.entries({ samples: a.samples, mb: a.mb, smallMb: a.smallMb, layers: a.layers })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${k} must be a positive integer`);
  }
  return a;
}

/** A random file of `bytes`, written in 1 MiB chunks (never whole in memory). */
async function randomFile(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  for (let left = bytes; left > 0; left -= 1 << 20) {
    if (!out.write(randomBytes(Math.min(left, 1 << 20)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** An OCI layout of `layers` gzip layers, each holding two random files, `mb` MiB in all. */
async function buildRandomImage(dir: string, mb: number, layers: number, scratch: string): Promise<void> {
  const built: BuiltLayer[] = [];
  const perLayer = Math.floor((mb << 20) / layers);
  for (let i = 0; i < layers; i++) {
    const files = [path.join(scratch, `l${i}-a`), path.join(scratch, `l${i}-b`)];
    await randomFile(files[0]!, Math.floor(perLayer / 2));
    await randomFile(files[1]!, perLayer - Math.floor(perLayer / 2));
    built.push(await writeLayerBlob(dir, [
      entry(`data/${i}/`, { type: 'directory', mode: 0o755 }),
      entry(`data/${i}/a.bin`, { size: Math.floor(perLayer / 2) }, { file: files[0]! }),
      entry(`data/${i}/b.bin`, { size: perLayer - Math.floor(perLayer / 2) }, { file: files[1]! }),
    ]));
    await Promise.all(files.map((f) => fs.rm(f)));
  }
  await writeOciLayout(dir, [{ layers: built, runConfig: { Cmd: ['/bin/true'] } }]);
}

interface Timed { ms: number; maxRssKiB?: number; pullMs?: number; code: number; stderr: string }

function timedSpawn(cmd: string, args: string[]): Promise<Timed> {
  return new Promise((resolve) => {
    const t0 = nowMs();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      const ms = nowMs() - t0;
      const rss = /^maxrss (\d+)$/m.exec(stdout)?.[1];
      const pull = /^pullms ([\d.]+)$/m.exec(stdout)?.[1];
      resolve({ ms, code: code ?? 1, stderr, ...(rss ? { maxRssKiB: Number(rss) } : {}), ...(pull ? { pullMs: Number(pull) } : {}) });
    });
  });
}

/** One of our pulls in a fresh process into a fresh store; prints its peak RSS. */
const ourPull = (ref: string, storeDir: string) => timedSpawn(process.execPath, [path.join(path.dirname(SELF), 'pull-inner.js'), ref, storeDir]);
/** The real CLI, `stevedore --dir D image pull REF` (stdout not a terminal: plain progress lines). */
const cliPull = (ref: string, dataDir: string) => timedSpawn(process.execPath, [path.join(REPO, 'bin', 'stevedore.js'), '--dir', dataDir, 'image', 'pull', ref]);
/** skopeo's peak RSS comes from GNU time (%M, KiB) on its own line. */
const skopeoCopy = (ref: string, target: string) =>
  timedSpawn('/usr/bin/time', ['-f', 'maxrss %M', 'skopeo', '--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `dir:${target}`]).then((t) => {
    const rss = /^maxrss (\d+)$/m.exec(t.stderr)?.[1];
    return rss ? { ...t, maxRssKiB: Number(rss) } : t;
  });

/** containerd's CLI: ctr resolves and downloads into the daemon's content store; the daemon verifies and unpacks. */
const ctrPull = (c: Containerd, namespace: string, ref: string) => timedSpawn(CTR, ctrArgs(c, namespace, 'image', 'pull', '--plain-http', ref));

async function du(dir: string): Promise<number> {
  const r = await run('du', ['-sb', dir]);
  return Number(r.stdout.split(/\s/)[0]);
}

interface Result {
  machine: Record<string, string>;
  args: Args;
  ours: number[];
  /** ImageStore.pull alone, inside the same processes (module loading and process start excluded). */
  oursInProcess: number[];
  skopeo: number[];
  /** `stevedore image pull` as a user runs it (CLI start, runtime open, pull, progress). */
  cli: number[];
  /** `ctr image pull` against the bench's containerd (empty with --no-containerd). */
  ctr: number[];
  /** Largest `du` of containerd's root after a sample's `ctr image rm --sync` (must stay small: GC removed it all). */
  ctrRootMaxBytes?: number;
  rss: Array<{ label: string; mb: number; ours: number[]; skopeo: number[] }>;
  blobBytes: number;
}

async function machineInfo(containerd?: Containerd): Promise<Record<string, string>> {
  const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const skopeo = await run('skopeo', ['--version']);
  const reg = await run('dpkg-query', ['-W', '-f', '${Version}', 'docker-registry']);
  const git = await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  const dirty = await run('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']);
  return {
    nproc: String(os.availableParallelism?.() ?? os.cpus().length),
    model: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? '?',
    kernel: os.release(),
    node: process.version,
    skopeo: skopeo.stdout.trim(),
    registry: `docker-registry ${reg.stdout.trim()}`,
    ...(containerd ? { containerd: `containerd ${containerd.version}` } : {}),
    load: os.loadavg().map((l) => l.toFixed(1)).join(' '),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    tree: `${git.stdout.trim()}${dirty.stdout.trim() ? ' + uncommitted changes' : ''}`,
  };
}

async function host(args: Args): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/pull.ts must run as root (layers are unpacked with their owners)');
  const work = await fs.mkdtemp('/var/tmp/stevedore-bench-pull-');
  let registry: TestRegistry | undefined;
  let containerd: Containerd | undefined;
  try {
    process.stderr.write(`bench: building ${args.mb} MiB and ${args.smallMb} MiB images of random bytes (${args.layers} layers each)\n`);
    const scratch = path.join(work, 'scratch');
    await fs.mkdir(scratch);
    await buildRandomImage(path.join(work, 'big'), args.mb, args.layers, scratch);
    await buildRandomImage(path.join(work, 'small'), args.smallMb, args.layers, scratch);
    registry = await startRegistry(work);
    const big = `${registry.host}/bench/random:${args.mb}m`;
    const small = `${registry.host}/bench/random:${args.smallMb}m`;
    await skopeoPush(`oci:${path.join(work, 'big')}`, big);
    await skopeoPush(`oci:${path.join(work, 'small')}`, small);
    if (args.containerd) {
      containerd = await startContainerd().catch((err: Error) => {
        throw new Error(`${err.message}; or pass --no-containerd to leave out the ctr row`);
      });
      process.stderr.write(`bench: containerd ${containerd.version} pid ${containerd.pid} in ${containerd.dir}\n`);
    }
    const machine = await machineInfo(containerd);
    const result: Result = { machine, args, ours: [], oursInProcess: [], skopeo: [], cli: [], ctr: [], rss: [], blobBytes: 0 };

    let n = 0;
    type Which = 'ours' | 'skopeo' | 'cli' | 'ctr';
    const sample = async (which: Which, ref: string): Promise<Timed> => {
      const i = n++;
      if (which === 'ctr') {
        const ns = `bench${i}`;
        const t = await ctrPull(containerd!, ns, ref);
        if (t.code !== 0) throw new Error(`ctr pull of ${ref} failed (exit ${t.code}): ${t.stderr.slice(-2000)}`);
        const rm = await run(CTR, ctrArgs(containerd!, ns, 'image', 'rm', '--sync', ref));
        if (rm.code !== 0) throw new Error(`ctr image rm ${ref} failed (exit ${rm.code}): ${rm.stderr.slice(-2000)}`);
        const nsRm = await run(CTR, ['-a', containerd!.sock, 'namespaces', 'rm', ns]);
        if (nsRm.code !== 0) process.stderr.write(`bench: ctr namespaces rm ${ns}: ${nsRm.stderr.trim()}\n`);
        const bytes = await du(path.join(containerd!.dir, 'root'));
        result.ctrRootMaxBytes = Math.max(result.ctrRootMaxBytes ?? 0, bytes);
        if (bytes > 16 << 20) process.stderr.write(`bench: warning: containerd's root holds ${(bytes / 2 ** 20).toFixed(1)} MiB after ctr image rm --sync\n`);
        return t;
      }
      const target = path.join(work, `t${i}`);
      const t = which === 'ours' ? await ourPull(ref, path.join(target, 'images')) : which === 'cli' ? await cliPull(ref, target) : await skopeoCopy(ref, target);
      if (t.code !== 0) throw new Error(`${which} pull of ${ref} failed (exit ${t.code}): ${t.stderr.slice(-2000)}`);
      if (which === 'skopeo' && ref === big && result.blobBytes === 0) result.blobBytes = await du(target);
      await fs.rm(target, { recursive: true, force: true });
      return t;
    };
    // Warm-up: page cache for the registry's files, node's module cache on disk, containerd's metadata db.
    await sample('ours', big);
    await sample('skopeo', big);
    if (containerd) await sample('ctr', big);
    const rss = (label: string, mb: number) => {
      let r = result.rss.find((x) => x.label === label);
      if (!r) result.rss.push((r = { label, mb, ours: [], skopeo: [] }));
      return r;
    };
    // The big image's rows rotate each round (ctr among them when containerd runs); the CLI goes first.
    const rotation: Array<'ours' | 'skopeo' | 'ctr'> = containerd ? ['ours', 'skopeo', 'ctr'] : ['ours', 'skopeo'];
    for (let i = 0; i < args.samples; i++) {
      const order = rotation.map((_, k) => rotation[(i + k) % rotation.length]!);
      result.cli.push((await sample('cli', big)).ms);
      for (const which of order) {
        const t = await sample(which, big);
        result[which].push(t.ms);
        if (which === 'ours' && t.pullMs !== undefined) result.oursInProcess.push(t.pullMs);
        if (which !== 'ctr' && t.maxRssKiB) rss('big', args.mb)[which].push(t.maxRssKiB);
        process.stderr.write(`bench: sample ${i + 1}/${args.samples} ${which} ${fmtMs(t.ms)} ms${which === 'ctr' ? '' : `, max RSS ${t.maxRssKiB ?? '?'} KiB`}\n`);
      }
      // The small image only for the RSS table: ours and skopeo.
      for (const which of order) {
        if (which === 'ctr') continue;
        const t = await sample(which, small);
        if (t.maxRssKiB) rss('small', args.smallMb)[which].push(t.maxRssKiB);
      }
    }
    const text = report(result);
    process.stdout.write(`${text}\n`);
    await fs.writeFile(path.join(REPO, 'bench', '.last-pull.json'), JSON.stringify(result, null, 2));
    if (args.updateResults) await updateResults(args.updateResults, text, result);
  } finally {
    if (containerd) {
      const notes = await stopContainerd(containerd);
      for (const note of notes) process.stderr.write(`bench: ${note}\n`);
      process.stderr.write(`bench: containerd pid ${containerd.pid} stopped, ${containerd.dir} removed\n`);
    }
    await registry?.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

function report(r: Result): string {
  const o = summarize(r.ours);
  const i = summarize(r.oursInProcess);
  const c = summarize(r.cli);
  const s = summarize(r.skopeo);
  const k = r.ctr.length ? summarize(r.ctr) : undefined;
  const mbps = (ms: number) => ((r.blobBytes || r.args.mb * 2 ** 20) / 2 ** 20 / (ms / 1000)).toFixed(0);
  const m = r.machine;
  const lines = [
    `machine: ${m.nproc} cpu (${m.model}), kernel ${m.kernel}, node ${m.node}, ${m.skopeo}, ${m.registry}${m.containerd ? `, ${m.containerd}` : ''}, load ${m.load}, tree ${m.tree}, ${m.date}`,
    '',
    `Pull of a ${r.args.mb} MiB image (${r.args.layers} gzip layers of random bytes; ${(r.blobBytes / 2 ** 20).toFixed(1)} MiB of blobs) from docker-registry on 127.0.0.1, ${r.args.samples} interleaved samples each, spawn to exit:`,
    '',
    '| what | median | p90 | min | max | MiB/s (median) | vs skopeo (median) |',
    '|---|---|---|---|---|---|---|',
    `| \`stevedore image pull\` (the CLI: start, open the image store, pull, progress lines) | ${fmtMs(c.median)} ms | ${fmtMs(c.p90)} ms | ${fmtMs(c.min)} ms | ${fmtMs(c.max)} ms | ${mbps(c.median)} | ${fmtRatio(c.median, s.median)} |`,
    `| ImageStore.pull in a process of its own (download, verify, unpack, commit) | ${fmtMs(o.median)} ms | ${fmtMs(o.p90)} ms | ${fmtMs(o.min)} ms | ${fmtMs(o.max)} ms | ${mbps(o.median)} | ${fmtRatio(o.median, s.median)} |`,
    `| ImageStore.pull inside that process (as the agent pulls; no process start) | ${fmtMs(i.median)} ms | ${fmtMs(i.p90)} ms | ${fmtMs(i.min)} ms | ${fmtMs(i.max)} ms | ${mbps(i.median)} | ${fmtRatio(i.median, s.median)} |`,
    `| skopeo copy docker:// → dir: (download and verify only; no unpacking) | ${fmtMs(s.median)} ms | ${fmtMs(s.p90)} ms | ${fmtMs(s.min)} ms | ${fmtMs(s.max)} ms | ${mbps(s.median)} | 1.00x |`,
    ...(k ? [`| ctr image pull (containerd: download, verify, unpack into overlayfs snapshots; daemon already running) | ${fmtMs(k.median)} ms | ${fmtMs(k.p90)} ms | ${fmtMs(k.min)} ms | ${fmtMs(k.max)} ms | ${mbps(k.median)} | ${fmtRatio(k.median, s.median)} |`] : []),
    ...(k ? ['', `vs containerd (also unpacks), ratio of medians: ImageStore.pull in-process ${fmtRatio(i.median, k.median)}, \`stevedore image pull\` CLI ${fmtRatio(c.median, k.median)}.`] : []),
    '',
    'Peak RSS (maxrss of the process; median of the samples):',
    '',
    '| image | stevedore pull | skopeo copy |',
    '|---|---|---|',
    ...r.rss.sort((a, b) => a.mb - b.mb).map((x) => `| ${x.mb} MiB | ${(summarize(x.ours).median / 1024).toFixed(1)} MiB | ${(summarize(x.skopeo).median / 1024).toFixed(1)} MiB |`),
    ...(k ? ['', `containerd has no peak RSS row: the work is split between the ctr client and the long-running daemon. Its root held at most ${((r.ctrRootMaxBytes ?? 0) / 2 ** 20).toFixed(1)} MiB after each \`ctr image rm --sync\`.`] : []),
  ];
  return lines.join('\n');
}

const BEGIN = '<!-- bench:pull:begin -->';
const END = '<!-- bench:pull:end -->';

async function updateResults(file: string, text: string, r: Result): Promise<void> {
  const a = r.args;
  const cmd = `bash bench/run.sh --pull --samples ${a.samples} --mb ${a.mb} --small-mb ${a.smallMb} --layers ${a.layers}${a.containerd ? '' : ' --no-containerd'} --update-results ${file}`;
  const body = [BEGIN, `_Generated by \`${cmd}\` on ${r.machine.date}._`, '', text.replace(/^machine: /, 'Machine: '), END].join('\n');
  await replaceResultsSection(file, BEGIN, END, body);
}

const argv = process.argv.slice(2);
await host(parseArgs(argv));
