/**
 * A whole local cluster for tests: `stevedore up` with its own data dir,
 * ports and sandbox name, the real kubectl against it, and `stevedore down`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Test } from 'uvu';
import { isAlive } from '../../sandbox/proc.js';
import { execInSandbox, getSandbox, stopSandbox } from '../../sandbox/sandbox.js';
import { CLI } from './node.js';

export interface Run { code: number; stdout: string; stderr: string }

export function run(cmd: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    if (input !== undefined) child.stdin!.end(input);
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: String(err) }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/**
 * A base port such that base+1…base+count are all free now, below the kernel's ephemeral range
 * (32768+), where outgoing connections would take them meanwhile: hollow-nodes' node API ports.
 */
export async function freePortRange(count: number): Promise<number> {
  const free = (port: number) => new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = 20000 + Math.floor(Math.random() * (12000 - count));
    let ok = true;
    for (let p = base + 1; p <= base + count && ok; p++) ok = await free(p);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports between 20000 and 32000`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface TestCluster {
  dataDir: string;
  kubeconfig: string;
  sandbox: string;
  nodeName: string;
  port: number;
  apiServicePort: number;
  /** The node's pod CIDR, e.g. 10.213.7.0/24 (unique per test run). */
  podCidr: string;
  /** Where Services' cluster IPs come from, e.g. 10.123.4.0/24 (unique per test run). */
  serviceCidr: string;
  /** The pod network's bridge on the host, and the node's service proxy table (nftables, `table ip NAME`). */
  bridge: string;
  proxyTable: string;
  kubectl(args: string[], input?: string): Promise<Run>;
  /** kubectl that must succeed; returns stdout. */
  k(args: string[], input?: string): Promise<string>;
  /** A command inside the node sandbox. */
  node(argv: string[]): Promise<Run>;
  /** stevedore CLI inside the node sandbox, against the node's data dir. */
  stevedore(args: string[]): Promise<Run>;
  controlPlanePid(): Promise<number>;
  /** Start the control plane again (after a test killed it), as `up` does. */
  restartControlPlane(): Promise<void>;
  spawnKubectl(args: string[]): ChildProcess;
}

export interface ClusterOptions {
  /** The node's stage1 policy (YAML text), handed to `up --stage1-policy`. */
  stage1Policy?: string;
  /** `up --container-runtime` (default rkt). */
  containerRuntime?: 'rkt' | 'docker';
}

export function useCluster<T>(suite: Test<T>, opts: ClusterOptions = {}): () => TestCluster {
  let cluster: TestCluster | undefined;
  // uvu drops what a before hook throws (its runner returns from a finally): it would show only as
  // every test of the suite failed with no message. Say it here first.
  suite.before(() => upCluster().catch((err: Error) => {
    process.stderr.write(`\nuseCluster: the cluster did not come up: ${err.message}\n`);
    throw err;
  }));
  const upCluster = async () => {
    const dataDir = await fs.mkdtemp('/var/tmp/stevedore-e2e-');
    const upArgs: string[] = [];
    if (opts.stage1Policy !== undefined) {
      const file = path.join(dataDir, 'stage1-policy.yaml');
      await fs.writeFile(file, opts.stage1Policy);
      upArgs.push('--stage1-policy', file);
    }
    if (opts.containerRuntime) upArgs.push('--container-runtime', opts.containerRuntime);
    const port = await freePort();
    const nodePort = await freePort();
    // Not for docker: a docker node has no api-service (rkt's v1alpha API), and up refuses the flag there.
    const apiServicePort = await freePort();
    const dnsPort = await freePort();
    const sandbox = `e2e-${process.pid}-${randomBytes(2).toString('hex')}`;
    // Its own bridge and subnet: the test must never touch a cluster (or bridge) it did not make.
    const bridge = `sde${randomBytes(3).toString('hex')}`;
    const podCidr = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`;
    // Cluster IPs of their own too: the service proxy of a cluster on this host programs them in the host's netns.
    const serviceCidr = `10.${100 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`;
    const proxyTable = `stevedore-proxy-${bridge}`;
    const nodeName = 'e2e-node';
    const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--port', String(port), '--node-api-port', String(nodePort), ...(opts.containerRuntime === 'docker' ? [] : ['--api-service-port', String(apiServicePort)]), '--bridge', bridge, '--pod-cidr', podCidr, '--service-cidr', serviceCidr, '--dns-port', String(dnsPort), '--node-name', nodeName, '--sandbox-name', sandbox, ...upArgs]);
    if (up.code !== 0) {
      // What up made before it failed (the control plane, the sandbox, the bridge) goes too: no after hook will.
      const down = await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
      await fs.rm(dataDir, { recursive: true, force: true });
      throw new Error(`stevedore up failed:\n${up.stderr}\n${up.stdout}${down.code !== 0 ? `\n(and down after it: ${down.stderr})` : ''}`);
    }
    const kubeconfig = path.join(dataDir, 'kubeconfig');
    const kubectl = (args: string[], input?: string) => run('kubectl', args, { KUBECONFIG: kubeconfig }, input);
    const statePath = path.join(dataDir, 'up.json');
    cluster = {
      dataDir, kubeconfig, sandbox, nodeName, port, apiServicePort, podCidr, serviceCidr, bridge, proxyTable, kubectl,
      async k(args, input) {
        const r = await kubectl(args, input);
        if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
        return r.stdout;
      },
      async node(argv) {
        const r = await execInSandbox(sandbox, argv, { stdio: 'pipe' });
        return { code: r.exitCode, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
      },
      stevedore(args) { return this.node([process.execPath, CLI, '--dir', path.join(dataDir, 'node'), ...args]); },
      async controlPlanePid() { return (JSON.parse(await fs.readFile(statePath, 'utf8')) as { controlPlanePid: number }).controlPlanePid; },
      async restartControlPlane() {
        const log = await fs.open(path.join(dataDir, 'control-plane', 'control-plane.log'), 'a');
        const child = spawn(process.execPath, [CLI, 'control-plane', '--data-dir', path.join(dataDir, 'control-plane'), '--port', String(port), '--kubeconfig', kubeconfig, '--service-cluster-ip-range', serviceCidr],
          { detached: true, stdio: ['ignore', log.fd, log.fd] });
        child.unref();
        await log.close();
        const state = JSON.parse(await fs.readFile(statePath, 'utf8')) as Record<string, unknown>;
        await fs.writeFile(statePath, JSON.stringify({ ...state, controlPlanePid: child.pid }));
        for (let i = 0; i < 100; i++) {
          if ((await kubectl(['get', '--raw', '/version'])).code === 0) return;
          await new Promise((r) => setTimeout(r, 200));
        }
        throw new Error('control plane did not come back');
      },
      spawnKubectl(args) { return spawn('kubectl', args, { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ['ignore', 'pipe', 'pipe'] }); },
    };
  };
  suite.after(async () => {
    if (!cluster) return;
    const cpPid = await cluster.controlPlanePid().catch(() => undefined);
    const down = await run(process.execPath, [CLI, 'down', '--data-dir', cluster.dataDir]);
    // Whatever `down` did, nothing of the test may outlive it.
    const leftovers: string[] = [];
    if (await getSandbox(cluster.sandbox)) {
      leftovers.push(`sandbox ${cluster.sandbox}`);
      await stopSandbox(cluster.sandbox);
    }
    if (cpPid && (await isAlive(cpPid))) {
      leftovers.push(`control plane pid ${cpPid}`);
      process.kill(cpPid, 'SIGKILL');
    }
    const tables = await run('nft', ['list', 'tables']);
    if (tables.stdout.includes(`table ip ${cluster.proxyTable}\n`)) {
      leftovers.push(`nft table ${cluster.proxyTable}`);
      await run('nft', ['delete', 'table', 'ip', cluster.proxyTable]);
    }
    await fs.rm(cluster.dataDir, { recursive: true, force: true });
    if (down.code !== 0 || leftovers.length) throw new Error(`stevedore down failed (exit ${down.code}: ${down.stderr.trim()}); left behind: ${leftovers.join(', ') || 'nothing'}`);
  });
  return () => {
    if (!cluster) throw new Error('useCluster: only inside tests');
    return cluster;
  };
}
