/**
 * Runtime conformance: every row of behaviours.ts against every runtime,
 * through the ContainerRuntime interface only, and a table of behaviour ×
 * runtime printed (docs/conformance.md holds the last one). Columns here:
 * rkt/namespaces, rkt/fly and docker; rkt/kvm is listed with the reason it
 * is not run by this file yet.
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

const RUNTIMES = ['rkt/namespaces', 'rkt/fly', 'docker'] as const;
/** The runtime handler each column runs its pods with. */
const HANDLER: Record<(typeof RUNTIMES)[number], string> = { 'rkt/namespaces': 'namespaces', 'rkt/fly': 'fly', docker: 'namespaces' };
/** Columns of the issue's table this file does not run yet, and why (never a silent skip). */
const NOT_RUN: Record<string, string> = {
  'rkt/kvm': 'not run here yet: a TCG VM per pod takes ~10 s to boot; its rows belong in a suite with a longer budget',
};

async function openSubject(name: (typeof RUNTIMES)[number], cfg: InnerConfig): Promise<{ rt: ContainerRuntime; close(): Promise<void> }> {
  const net = cfg.networks[name]!;
  const network: PodNetworkOptions = { confDir: net.confDir, cacheDir: net.cacheDir };
  const dataDir = path.join(cfg.workDir, name.replace('/', '-'));
  if (name === 'docker') {
    const { openDockerRuntime, stopEngine, engineOptions } = await import('../../runtime-docker/index.js');
    const rt = await openDockerRuntime({ dataDir, network });
    return { rt, async close() { await rt.close(); await stopEngine(engineOptions({ dataDir })); } };
  }
  const { openRktRuntime } = await import('../../runtime-rkt/container-runtime.js');
  const rt = await openRktRuntime({ dataDir, network, imageLimits: DEFAULT_IMAGE_LIMITS, defaultHandler: HANDLER[name] });
  return { rt, close: () => rt.close() };
}

/** Inside the sandbox: every behaviour on every runtime; prints the table; exit 1 if a row failed. */
async function inner(cfg: InnerConfig): Promise<void> {
  const results = new Map<string, Map<string, string>>();
  let failed = false;
  for (const name of RUNTIMES) {
    let opened = await openSubject(name, cfg).catch((err: Error) => err);
    for (const b of BEHAVIOURS) {
      const row = results.get(b.name) ?? new Map<string, string>();
      results.set(b.name, row);
      if (opened instanceof Error) {
        row.set(name, `FAIL: the runtime did not open: ${opened.message}`);
        failed = true;
        continue;
      }
      const subject: Subject = {
        name, rt: opened.rt, handler: HANDLER[name], image: cfg.image, subnetPrefix: cfg.networks[name]!.subnetPrefix, started: [],
        async reopen() {
          // Only the runtime object goes (an agent restart): the engine, units and containers stay.
          await (opened as { rt: ContainerRuntime }).rt.close();
          const again = await openSubject(name, cfg);
          opened = again;
          subject.rt = again.rt;
        },
      };
      if (b === BEHAVIOURS[0]) await opened.rt.pullImage(cfg.image, { insecureRegistries: [cfg.registryHost] });
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
    }
    if (!(opened instanceof Error)) await opened.close();
  }
  const header = ['behaviour', ...RUNTIMES, ...Object.keys(NOT_RUN)];
  const out = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const [behaviour, row] of results) {
    out.push(`| ${[behaviour, ...RUNTIMES.map((r) => row.get(r) ?? 'FAIL: not run'), ...Object.keys(NOT_RUN).map((r) => `not run (${r})`)].join(' | ').replace(/\n/g, ' ')} |`);
  }
  for (const [r, why] of Object.entries(NOT_RUN)) out.push('', `${r}: ${why}`);
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
      const third = 100 + ((parseInt(rand.slice(0, 2), 16) + i * 70) % 140);
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
      stdio: 'pipe', stateRoot: sandbox!.stateRoot, env: { STEVEDORE_CONFORMANCE_INNER: JSON.stringify(cfg) },
    });
    process.stdout.write(`\n${r.stdout ?? ''}\n`);
    if (r.exitCode !== 0) process.stderr.write(r.stderr ?? '');
    assert.is(r.exitCode, 0, 'a behaviour failed on a runtime (see the table)');
    assert.ok(!/FAIL/.test(r.stdout ?? ''));
  });

  T.run();
}
