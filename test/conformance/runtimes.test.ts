/**
 * Runtime conformance: every row of behaviours.ts against every runtime,
 * through the ContainerRuntime interface only, and a table of behaviour ×
 * runtime printed (docs/conformance.md holds the last one). Columns here:
 * rkt/namespaces, rkt/fly, docker and rkt/kvm (TCG: a VM per pod). Rows
 * run one after another on every column but kvm, where independent rows run
 * side by side (KVM_PARALLEL at once) so the VMs' boots overlap; a row that
 * must run alone (it reopens the runtime) waits for the others.
 *
 * The runtimes run inside one node sandbox (rkt's pod namespaces and
 * dockerd's processes are only visible there), so this file runs itself
 * inside it (STEVEDORE_CONFORMANCE_INNER); the outer part owns and removes
 * the sandbox, the local registry, one CNI network per runtime (unique
 * bridges, random 10.244.N.0/24 subnets), our nat chains and the temp dir.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultNetworkConfig } from '../../cni/index.js';
import { DEFAULT_IMAGE_LIMITS } from '../../runtime-api/image-limits.js';
import type { ContainerRuntime, PodNetworkOptions } from '../../runtime-api/index.js';
import { buildBusyboxImage } from '../../runtime-rkt/image/demo-image.js';
import { execInSandbox } from '../../sandbox/sandbox.js';
import { tempDir } from '../helpers/images.js';
import { natChainsOfNetwork, readSysctl, removeNatChains, run, writeSysctl } from '../helpers/netns.js';
import { skopeoPush, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { withSandbox, type TestSandbox } from '../helpers/sandbox.js';
import { BEHAVIOURS, NotProvided, type Subject } from './behaviours.js';

interface NetworkPlan { name: string; bridge: string; subnetPrefix: string; confDir: string; cacheDir: string }
interface InnerConfig { workDir: string; image: string; registryHost: string; networks: Record<string, NetworkPlan> }

const RUNTIMES = ['rkt/namespaces', 'rkt/fly', 'docker', 'rkt/kvm'] as const;
/** The runtime handler each column runs its pods with. */
const HANDLER: Record<(typeof RUNTIMES)[number], string> = { 'rkt/namespaces': 'namespaces', 'rkt/fly': 'fly', docker: 'namespaces', 'rkt/kvm': 'kvm' };
/** How many rows run at once per column: kvm's rows wait mostly on VM boots (TCG), so they overlap. */
const PARALLEL: Record<(typeof RUNTIMES)[number], number> = { 'rkt/namespaces': 1, 'rkt/fly': 1, docker: 1, 'rkt/kvm': 3 };
/** What each column cannot provide by design, and why (the rows say n/a with it). */
const GAPS: Record<(typeof RUNTIMES)[number], Subject['gaps']> = {
  'rkt/namespaces': {},
  'rkt/fly': {},
  docker: {},
  'rkt/kvm': {
    oomKilled: 'stage1 kvm: memory limits size the VM (their sum + 96 MiB of guest RAM), not a cgroup per container; an OOM kill in the guest is not reported as OOMKilled',
    execStreamsApart: 'stage1 kvm: the guest\'s exec port carries stdout and stderr merged (stage1/kvm/exec-client.ts)',
    containerUsage: 'stage1 kvm: per-container usage is not available (an app\'s unit on the node holds only its proxy; the guest\'s usage is not split per container); the pod\'s is its VM unit\'s',
  },
};
/** Columns of the issue's table this file does not run, and why (never a silent skip). */
const NOT_RUN: Record<string, string> = {};
/** STEVEDORE_CONFORMANCE_RUNTIMES=rkt/kvm,docker runs only those columns (while working on one); the others are listed as not chosen. */
const CHOSEN = process.env.STEVEDORE_CONFORMANCE_RUNTIMES?.split(',');
for (const r of RUNTIMES) if (CHOSEN && !CHOSEN.includes(r)) NOT_RUN[r] = 'not chosen by STEVEDORE_CONFORMANCE_RUNTIMES';
const COLUMNS = RUNTIMES.filter((r) => !(r in NOT_RUN));
/** STEVEDORE_CONFORMANCE_ROWS=stats,exec runs only the rows whose name contains one of these (while working on them); the others say so. */
const ROWS = process.env.STEVEDORE_CONFORMANCE_ROWS?.split(',');
const rowChosen = (b: { name: string }) => !ROWS || ROWS.some((r) => b.name.includes(r));

async function openSubject(name: (typeof RUNTIMES)[number], cfg: InnerConfig): Promise<{ rt: ContainerRuntime; close(): Promise<void> }> {
  const net = cfg.networks[name]!;
  const network: PodNetworkOptions = { confDir: net.confDir, cacheDir: net.cacheDir };
  // Short: a unix socket path (rkt's attach.sock under pods/run/<uuid>/apps/<app>/) must fit in 108 bytes.
  const dataDir = path.join(cfg.workDir, { 'rkt/namespaces': 'ns', 'rkt/fly': 'fly', docker: 'dk', 'rkt/kvm': 'kvm' }[name]);
  if (name === 'docker') {
    const { openDockerRuntime, stopEngine, engineOptions } = await import('../../runtime-docker/index.js');
    const rt = await openDockerRuntime({ dataDir, network });
    return { rt, async close() { await rt.close(); await stopEngine(engineOptions({ dataDir })); } };
  }
  const { openRktRuntime } = await import('../../runtime-rkt/container-runtime.js');
  // kvm: TCG outright (these machines' /dev/kvm cannot run stock guests; probing it costs a 10 s timeout).
  const rt = await openRktRuntime({ dataDir, network, imageLimits: DEFAULT_IMAGE_LIMITS, defaultHandler: HANDLER[name], ...(name === 'rkt/kvm' ? { kvmAccel: 'tcg' as const } : {}) });
  return { rt, close: () => rt.close() };
}

/** Inside the sandbox: every behaviour on every runtime; prints the table; exit 1 if a row failed. */
async function inner(cfg: InnerConfig): Promise<void> {
  const results = new Map<string, Map<string, string>>();
  let failed = false;
  const columnSeconds: Record<string, number> = {};
  for (const name of COLUMNS) {
    const columnStart = Date.now();
    const opened = await openSubject(name, cfg).catch((err: Error) => err);
    for (const b of BEHAVIOURS) results.set(b.name, results.get(b.name) ?? new Map<string, string>());
    if (opened instanceof Error) {
      for (const b of BEHAVIOURS) results.get(b.name)!.set(name, `FAIL: the runtime did not open: ${opened.message}`);
      failed = true;
      continue;
    }
    const pulled = await opened.rt.pullImage(cfg.image, { insecureRegistries: [cfg.registryHost] }).then(() => undefined, (err: Error) => err);
    if (pulled) {
      for (const b of BEHAVIOURS) results.get(b.name)!.set(name, `FAIL: the test image did not pull: ${pulled.message}`);
      failed = true;
      await opened.close();
      continue;
    }
    for (const b of BEHAVIOURS.filter((x) => !rowChosen(x))) results.get(b.name)!.set(name, 'not run: not chosen by STEVEDORE_CONFORMANCE_ROWS');
    const current = { rt: opened.rt, close: opened.close };
    const runRow = async (b: (typeof BEHAVIOURS)[number]): Promise<void> => {
      const row = results.get(b.name)!;
      const subject: Subject = {
        name, rt: current.rt, handler: HANDLER[name], image: cfg.image, subnetPrefix: cfg.networks[name]!.subnetPrefix, started: [], gaps: GAPS[name],
        async reopen() {
          // Only the runtime object goes (an agent restart): the engine, units and containers stay.
          await current.rt.close();
          const again = await openSubject(name, cfg);
          Object.assign(current, again);
          subject.rt = again.rt;
        },
      };
      const t0 = Date.now();
      try {
        await b.run(subject);
        row.set(name, `ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (err) {
        if (err instanceof NotProvided) row.set(name, `n/a: ${err.message}`);
        else {
          row.set(name, `FAIL: ${(err as Error).message}`);
          failed = true;
        }
      }
      for (const uuid of subject.started) await subject.rt.removePod(uuid).catch(() => undefined);
    };
    // Rows that share the runtime run PARALLEL at once; a row that reopens the runtime runs alone, last.
    const shared = BEHAVIOURS.filter((b) => !b.alone && rowChosen(b));
    let next = 0;
    await Promise.all(Array.from({ length: PARALLEL[name] }, async () => {
      while (next < shared.length) await runRow(shared[next++]!);
    }));
    for (const b of BEHAVIOURS.filter((x) => x.alone && rowChosen(x))) await runRow(b);
    await current.close();
    columnSeconds[name] = (Date.now() - columnStart) / 1000;
  }
  const header = ['behaviour', ...COLUMNS, ...Object.keys(NOT_RUN)];
  const out = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const [behaviour, row] of results) {
    out.push(`| ${[behaviour, ...COLUMNS.map((r) => row.get(r) ?? 'FAIL: not run'), ...Object.keys(NOT_RUN).map((r) => `not run (${r})`)].join(' | ').replace(/\n/g, ' ')} |`);
  }
  for (const [r, why] of Object.entries(NOT_RUN)) out.push('', `${r}: ${why}`);
  out.push('', `column wall time: ${COLUMNS.map((r) => `${r} ${columnSeconds[r]?.toFixed(0) ?? '?'} s`).join(', ')}`);
  process.stdout.write(`${out.join('\n')}\n`);
  process.exitCode = failed ? 1 : 0;
}

const innerConfig = process.env.STEVEDORE_CONFORMANCE_INNER;
if (innerConfig) {
  await inner(JSON.parse(innerConfig) as InnerConfig);
} else {
  const T = suite('runtime conformance: behaviour × runtime');
  let sandbox: TestSandbox | undefined;
  let registry: TestRegistry | undefined;
  let cfg: InnerConfig | undefined;
  let ipForward = '';

  T.before(async () => {
    const workDir = await tempDir('conformance');
    ipForward = await readSysctl('net.ipv4.ip_forward');
    const routes = (await run('ip', ['-4', 'route', 'show'])).stdout;
    const networks: Record<string, NetworkPlan> = {};
    for (const [i, r] of RUNTIMES.entries()) {
      const rand = randomBytes(3).toString('hex');
      const third = 100 + ((parseInt(rand.slice(0, 2), 16) + i * 35) % 140); // distinct per column (35 apart mod 140)
      if (routes.includes(`10.244.${third}.`)) throw new Error(`subnet 10.244.${third}.0/24 is in use on this host`);
      const plan: NetworkPlan = { name: `sdc-${rand}`, bridge: `sdc${rand}`, subnetPrefix: `10.244.${third}.`, confDir: path.join(workDir, 'cni', r.replace('/', '-'), 'net.d'), cacheDir: path.join(workDir, 'cni', r.replace('/', '-'), 'results') };
      await fs.mkdir(plan.confDir, { recursive: true });
      await fs.writeFile(path.join(plan.confDir, '10-test.conflist'), JSON.stringify(defaultNetworkConfig({
        podCidr: `10.244.${third}.0/24`, bridge: plan.bridge, name: plan.name, ipamDataDir: path.join(workDir, 'cni', r.replace('/', '-'), 'networks'),
      })));
      networks[r] = plan;
    }
    sandbox = await withSandbox();
    registry = await startRegistry(workDir);
    const layout = path.join(workDir, 'busybox-layout');
    await buildBusyboxImage(layout, { name: 'busybox', tag: '1' });
    const image = `${registry.host}/conformance/busybox:1`;
    await skopeoPush(`oci:${layout}:1`, image, { format: 'v2s2' });
    cfg = { workDir, image, registryHost: registry.host, networks };
  });

  T.after(async () => {
    await sandbox?.stop();
    await registry?.stop();
    for (const plan of Object.values(cfg?.networks ?? {})) {
      await run('ip', ['link', 'del', plan.bridge], { allowFail: true });
      const ours = await natChainsOfNetwork(plan.name);
      if (ours.length) await removeNatChains(new RegExp(`^(${ours.join('|')})$`));
    }
    if (ipForward) await writeSysctl('net.ipv4.ip_forward', ipForward);
    if (cfg?.workDir) await fs.rm(cfg.workDir, { recursive: true, force: true });
  });

  T('every behaviour holds on every runtime', async () => {
    const self = fileURLToPath(import.meta.url);
    const r = await execInSandbox(sandbox!.info.name, [process.execPath, '--enable-source-maps', self], {
      stdio: 'pipe', stateRoot: sandbox!.stateRoot, env: {
        STEVEDORE_CONFORMANCE_INNER: JSON.stringify(cfg),
        // The sandbox does not inherit our environment: what picks columns and kvm's assets is passed on.
        ...Object.fromEntries(['STEVEDORE_CONFORMANCE_RUNTIMES', 'STEVEDORE_CONFORMANCE_ROWS', 'STEVEDORE_KVM_ASSETS'].filter((k) => process.env[k]).map((k) => [k, process.env[k]!])),
      },
    });
    process.stdout.write(`\n${r.stdout ?? ''}\n`);
    if (r.exitCode !== 0) process.stderr.write(r.stderr ?? '');
    assert.is(r.exitCode, 0, 'a behaviour failed on a runtime (see the table)');
    assert.ok(!/FAIL/.test(r.stdout ?? ''));
  });

  T.run();
}
