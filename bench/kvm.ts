/**
 * VM pod benchmark (stage1 kvm, issue 6): launch → first output line of a
 * one-container VM pod (RktRuntime.runPod in-process, as the agent calls it;
 * first line = journald's timestamp of the app's "ready"), beside the floor:
 * a bare qemu boot of the same kernel + initrd, launch → the guest init's
 * probe marker (same machine type, accel, RAM; no pod devices). Also the host
 * memory of each VM pod while it runs: qemu's and the app proxy's RSS/PSS
 * against the guest's RAM.
 *
 *   node dist/bench/kvm.js [--samples N] [--warmup N] [--update-results bench/RESULTS.md]
 *
 * The host part boots a node sandbox (a real systemd) and runs the measuring
 * part (`inner`) inside it. Needs root and built assets (`stevedore stage1 build-kvm`).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { eachFlag, fmtMs, fmtRatio, median, nowMs, replaceResultsSection, sleep, summarize } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DIST = new URL('../', import.meta.url);
const IMAGE = 'localhost/busybox:latest';
const LINE_TIMEOUT_MS = 120_000;

interface Args { samples: number; warmup: number; updateResults?: string; work?: string; out?: string }
interface Sample { variant: 'bare' | 'pod'; round: number; warmup: boolean; firstLineMs: number; returnMs?: number; mem?: Mem }
/** RSS: all resident pages; anon: the process's own (what each more pod adds: file pages such as the vmlinux image qemu maps are page cache shared by every VM). */
interface Mem { guestMiB: number; qemuRssMiB: number; qemuAnonMiB: number; proxyRssMiB: number; proxyAnonMiB: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 12, warmup: 2 };
  eachFlag(argv, (k, v) => {
    if (k === '--samples') a.samples = Number(v());
    else if (k === '--warmup') a.warmup = Number(v());
    else if (k === '--update-results') a.updateResults = v();
    else if (k === '--work') a.work = v();
    else if (k === '--out') a.out = v();
    else return false;
    return true;
  });
  return a;
}

async function smaps(pid: number): Promise<{ rss: number; anon: number; pss: number }> {
  const text = await fs.readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('Rss') / 1024, anon: kb('Anonymous') / 1024, pss: kb('Pss') / 1024 };
}

/** MemAvailable of the machine, MiB. */
async function memAvailableMiB(): Promise<number> {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(await fs.readFile('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024;
}

/** Several VM pods running at once: what each costs the machine when shared pages are shared (PSS, MemAvailable). */
interface Fleet { pods: number; guestMiB: number; pssPerPodMiB: number; memAvailableDropPerPodMiB: number }
const FLEET_PODS = 4;

// ---- inner: inside the sandbox --------------------------------------------
async function inner(args: Args): Promise<void> {
  const work = args.work!;
  const { RktRuntime } = await import(new URL('runtime-rkt/runtime.js', DIST).href) as typeof import('../runtime-rkt/runtime.js');
  const { validatePod } = await import(new URL('runtime-api/pod-spec.js', DIST).href) as typeof import('../runtime-api/pod-spec.js');
  const { loadKvmAssets } = await import(new URL('stage1/kvm/assets.js', DIST).href) as typeof import('../stage1/kvm/assets.js');
  const { qemuArgv, guestMemoryMiB } = await import(new URL('stage1/kvm/vm.js', DIST).href) as typeof import('../stage1/kvm/vm.js');
  const { unitNames } = await import(new URL('stage1/contract.js', DIST).href) as typeof import('../stage1/contract.js');
  const rt = await RktRuntime.open({ dataDir: path.join(work, 'data'), kvmAccel: 'tcg' });
  await rt.images.importPath(path.join(work, 'layout'), { name: IMAGE });
  const systemd = await rt.systemd();
  const assets = await loadKvmAssets();
  const guestMiB = guestMemoryMiB([{ limits: {} } as never]);
  const cpuinfo = await fs.readFile('/proc/cpuinfo', 'utf8');
  const tscKhz = Math.round(Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1] ?? 0) * 1000) || undefined;

  async function bare(): Promise<number> {
    const argv = qemuArgv({ vmlinux: assets.vmlinux, initrd: assets.initrd, accel: 'tcg', memoryMiB: guestMiB, cpus: 1, tscKhz, probe: true });
    const t0 = nowMs();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const seen = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bare boot: no marker')), LINE_TIMEOUT_MS);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('STEVEDORE-PROBE-OK')) { clearTimeout(timer); resolve(nowMs() - t0); }
      });
    });
    await new Promise((r) => child.on('close', r));
    return seen;
  }

  async function pod(key: string): Promise<Omit<Sample, 'variant' | 'round' | 'warmup'>> {
    const spec = validatePod({ metadata: { name: key, namespace: 'bench-kvm' }, spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: IMAGE, command: ['sh', '-c', 'echo ready; sleep 30'] }] } }, { strict: true });
    const t0 = Date.now();
    const t0Precise = nowMs();
    const uuid = await rt.runPod(spec, { stage1: 'kvm' });
    const returnMs = nowMs() - t0Precise;
    try {
      const deadline = Date.now() + LINE_TIMEOUT_MS;
      let firstLineMs: number | undefined;
      while (firstLineMs === undefined) {
        const r = await execa('journalctl', ['-o', 'json', '--output-fields=__REALTIME_TIMESTAMP,MESSAGE', `STEVEDORE_POD_UUID=${uuid}`, '_TRANSPORT=stdout', '-n', '1'], { reject: false });
        const line = r.stdout.split('\n').find(Boolean);
        if (line) firstLineMs = Number(BigInt((JSON.parse(line) as { __REALTIME_TIMESTAMP: string }).__REALTIME_TIMESTAMP) / 1000n) - t0;
        else if (Date.now() > deadline) throw new Error(`pod ${uuid}: no output within ${LINE_TIMEOUT_MS} ms`);
        else await sleep(100);
      }
      // Host memory of the running pod: qemu (the VM unit's main process) and the app's proxy.
      const mainPid = async (unit: string) => Number((await systemd.unitProperties(unit, 'Service')).MainPID ?? 0);
      const qemu = await smaps(await mainPid(unitNames.pod(uuid)));
      const proxy = await smaps(await mainPid(unitNames.app(uuid, 'app')));
      return { firstLineMs, returnMs, mem: { guestMiB, qemuRssMiB: qemu.rss, qemuAnonMiB: qemu.anon, proxyRssMiB: proxy.rss, proxyAnonMiB: proxy.anon } };
    } finally {
      await rt.removePod(uuid, { force: true });
    }
  }

  const samples: Sample[] = [];
  for (let round = 0; round < args.warmup + args.samples; round++) {
    const warmup = round < args.warmup;
    // Alternate the order so load from others on the machine spreads over both.
    const order: Array<'bare' | 'pod'> = round % 2 ? ['pod', 'bare'] : ['bare', 'pod'];
    for (const variant of order) {
      const s: Sample = variant === 'bare' ? { variant, round, warmup, firstLineMs: await bare() } : { variant, round, warmup, ...(await pod(`kvm-${round}`)) };
      samples.push(s);
      process.stderr.write(`bench: round ${round}${warmup ? ' (warm-up)' : ''} ${variant}: ${fmtMs(s.firstLineMs)} ms\n`);
    }
  }
  // The fleet: FLEET_PODS VM pods side by side, each past its first line, then their proportional memory and the machine's drop.
  const before = await memAvailableMiB();
  const uuids: string[] = [];
  let fleet: Fleet | undefined;
  try {
    for (let i = 0; i < FLEET_PODS; i++) {
      const spec = validatePod({ metadata: { name: `fleet-${i}`, namespace: 'bench-kvm' }, spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: IMAGE, command: ['sh', '-c', 'echo ready; sleep 120'] }] } }, { strict: true });
      uuids.push(await rt.runPod(spec, { stage1: 'kvm' }));
    }
    await sleep(3000); // past the guests' boot-time allocations
    let pss = 0;
    for (const uuid of uuids) {
      const mainPid = async (unit: string) => Number((await systemd.unitProperties(unit, 'Service')).MainPID ?? 0);
      pss += (await smaps(await mainPid(unitNames.pod(uuid)))).pss + (await smaps(await mainPid(unitNames.app(uuid, 'app')))).pss;
    }
    fleet = { pods: FLEET_PODS, guestMiB, pssPerPodMiB: pss / FLEET_PODS, memAvailableDropPerPodMiB: (before - (await memAvailableMiB())) / FLEET_PODS };
    process.stderr.write(`bench: fleet of ${FLEET_PODS}: PSS ${fleet.pssPerPodMiB.toFixed(0)} MiB/pod, MemAvailable -${fleet.memAvailableDropPerPodMiB.toFixed(0)} MiB/pod\n`);
  } finally {
    for (const uuid of uuids) await rt.removePod(uuid, { force: true });
  }
  await rt.close();
  await fs.writeFile(args.out!, JSON.stringify({ samples, assets: assets.info, fleet }));
}

// ---- host ------------------------------------------------------------------
function report(samples: Sample[], assets: { kernelPackage: string }, fleet: Fleet | undefined, args: Args, machine: string, load: string): string {
  const measured = samples.filter((s) => !s.warmup);
  const bare = summarize(measured.filter((s) => s.variant === 'bare').map((s) => s.firstLineMs));
  const pod = summarize(measured.filter((s) => s.variant === 'pod').map((s) => s.firstLineMs));
  const ret = summarize(measured.filter((s) => s.variant === 'pod').map((s) => s.returnMs!));
  const mems = measured.map((s) => s.mem).filter((m): m is Mem => !!m);
  const m = (f: (x: Mem) => number) => median(mems.map(f));
  const guest = mems[0]?.guestMiB ?? 0;
  const total = m((x) => x.qemuRssMiB + x.proxyRssMiB);
  const anon = m((x) => x.qemuAnonMiB + x.proxyAnonMiB);
  const ratio = pod.median / bare.median;
  return [
    `Machine: ${machine}; load average at start ${load}; guest ${assets.kernelPackage}, microvm, TCG, ${guest} MiB, 1 vCPU.`,
    `${args.samples} samples per variant after ${args.warmup} warm-up rounds, order alternating each round.`,
    '',
    '| variant | median | p99 | ratio to bare boot (median) |',
    '|---|---|---|---|',
    `| bare qemu boot → init marker (floor) | ${fmtMs(bare.median)} ms | ${fmtMs(bare.p99)} ms | 1.00x |`,
    `| VM pod: runPod → first line in journald | ${fmtMs(pod.median)} ms | ${fmtMs(pod.p99)} ms | ${fmtRatio(pod.median, bare.median)} |`,
    `| (runPod returned: units started) | ${fmtMs(ret.median)} ms | ${fmtMs(ret.p99)} ms | |`,
    '',
    `Host memory per running VM pod (median): qemu RSS ${m((x) => x.qemuRssMiB).toFixed(0)} MiB (anonymous ${m((x) => x.qemuAnonMiB).toFixed(0)}), app proxy RSS ${m((x) => x.proxyRssMiB).toFixed(0)} MiB (anonymous ${m((x) => x.proxyAnonMiB).toFixed(0)}); total RSS ${total.toFixed(0)} MiB = ${(total / guest).toFixed(2)}x, anonymous (what each more pod adds) ${anon.toFixed(0)} MiB = ${(anon / guest).toFixed(2)}x the guest's ${guest} MiB RAM.`,
    '',
    ...(fleet ? [`${fleet.pods} VM pods running side by side (file pages of qemu, its libraries, the kernel image and node shared among them): PSS ${fleet.pssPerPodMiB.toFixed(0)} MiB per pod = ${(fleet.pssPerPodMiB / fleet.guestMiB).toFixed(2)}x the guest's RAM; the machine's MemAvailable dropped ${fleet.memAvailableDropPerPodMiB.toFixed(0)} MiB per pod = ${(fleet.memAvailableDropPerPodMiB / fleet.guestMiB).toFixed(2)}x.`] : []),
    '',
    `Goals: launch within 1.3x of the bare boot — ${ratio <= 1.3 ? 'MET' : 'MISSED'} (${ratio.toFixed(2)}x); host memory under 1.2x guest RAM — one pod alone by RSS ${total / guest < 1.2 ? 'MET' : 'MISSED'} (${(total / guest).toFixed(2)}x), by anonymous memory ${anon / guest < 1.2 ? 'MET' : 'MISSED'} (${(anon / guest).toFixed(2)}x)${fleet ? `, per pod of ${fleet.pods} by PSS ${fleet.pssPerPodMiB / fleet.guestMiB < 1.2 ? 'MET' : 'MISSED'} (${(fleet.pssPerPodMiB / fleet.guestMiB).toFixed(2)}x), by MemAvailable ${fleet.memAvailableDropPerPodMiB / fleet.guestMiB < 1.2 ? 'MET' : 'MISSED'} (${(fleet.memAvailableDropPerPodMiB / fleet.guestMiB).toFixed(2)}x)` : ''}.`,
  ].join('\n');
}

const BEGIN = '<!-- bench:kvm:begin -->';
const END = '<!-- bench:kvm:end -->';

async function host(args: Args): Promise<void> {
  const { startSandbox, stopSandbox, execInSandbox } = await import(new URL('sandbox/sandbox.js', DIST).href) as typeof import('../sandbox/sandbox.js');
  const { buildBusyboxImage } = await import(new URL('runtime-rkt/image/demo-image.js', DIST).href) as typeof import('../runtime-rkt/image/demo-image.js');
  const runId = randomBytes(4).toString('hex');
  const work = `/var/tmp/stevedore-bench-kvm-${runId}`;
  const sandboxName = `bench-kvm-${runId}`;
  let started = false;
  try {
    await fs.mkdir(path.join(work, 'layout'), { recursive: true });
    await buildBusyboxImage(path.join(work, 'layout'), { name: 'busybox', tag: 'latest' });
    const load = (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    process.stderr.write(`bench: booting sandbox ${sandboxName}\n`);
    await startSandbox({ name: sandboxName });
    started = true;
    const out = path.join(work, 'inner.json');
    const r = await execInSandbox(sandboxName, [process.execPath, fileURLToPath(import.meta.url), 'inner', '--work', work, '--out', out, '--samples', String(args.samples), '--warmup', String(args.warmup)], { stdio: 'inherit', cwd: REPO,
      // The assets the caller chose (the sandbox does not inherit its environment).
      ...(process.env.STEVEDORE_KVM_ASSETS ? { env: { STEVEDORE_KVM_ASSETS: process.env.STEVEDORE_KVM_ASSETS } } : {}) });
    if (r.exitCode !== 0) throw new Error(`the benchmark inside the sandbox failed (exit ${r.exitCode})`);
    const result = JSON.parse(await fs.readFile(out, 'utf8')) as { samples: Sample[]; assets: { kernelPackage: string }; fleet?: Fleet };
    const cpu = /^model name\s*:\s*(.*)$/m.exec(await fs.readFile('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
    const machine = `${os.cpus().length} × ${cpu}, kernel ${os.release()}, ${new Date().toISOString().slice(0, 16)}Z`;
    const text = report(result.samples, result.assets, result.fleet, args, machine, load);
    process.stdout.write(`\n${text}\n`);
    if (args.updateResults) {
      const body = `${BEGIN}\n_Generated by \`bash bench/run.sh --kvm --samples ${args.samples} --warmup ${args.warmup}\`._\n\n${text}\n${END}`;
      await replaceResultsSection(args.updateResults, BEGIN, END, body, '# stage1 kvm: VM pod launch and memory (issue 6)');
    }
  } finally {
    if (started) await stopSandbox(sandboxName).catch((e) => process.stderr.write(`bench: stopSandbox: ${(e as Error).message}\n`));
    await fs.rm(work, { recursive: true, force: true });
  }
}

const argv = process.argv.slice(2);
if (argv[0] === 'inner') await inner(parseArgs(argv.slice(1)));
else await host(parseArgs(argv));
