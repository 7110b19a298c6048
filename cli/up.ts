import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { API_SERVICE_SOCKET } from '../api-service/install.js';
import { UserError } from '../common/errors.js';
import { readJsonIfExists, atomicWriteJson } from '../common/fsutil.js';
import { issueNodeCredentials, writeNodeCredentials } from '../control-plane/pki.js';
import { isAlive } from '../sandbox/proc.js';
import { execInSandbox, getSandbox, startSandbox, stopSandbox } from '../sandbox/sandbox.js';
import type { HaState } from './up-ha.js';

/**
 * `stevedore up`: a one-node local cluster. The control plane runs as a
 * background process on this host; the node is this host's systemd when PID 1
 * is systemd, or else a node sandbox named "stevedore", where the agent runs
 * as the stevedore-agent systemd service. Everything lives under one data
 * directory (default: .stevedore in the repository), which `down` removes.
 */
export interface UpOptions { dataDir: string; port: number; nodeApiPort: number; apiServicePort?: number; nodeName: string; stage1: string; sandboxName: string; podCidr: string; bridge: string; stage1Policy?: string; serviceCidr?: string; dnsPort?: number; containerRuntime?: 'rkt' | 'docker'; store?: UpStore; controlPlanes?: import('./up-ha.js').HaControlPlanes }

/**
/**
 * Where the control plane keeps its objects: SQLite in its data dir (the default), or an etcd
 * that `up` starts beside it (data in DATADIR/etcd, client URL http://127.0.0.1:etcdPort).
 */
export type UpStore = { kind: 'sqlite' } | { kind: 'etcd'; etcdPort: number };

/**
 * up.json. proxyTable: the node's service proxy table (nftables), which `down` deletes. etcdPid: the
 * etcd of --store etcd. options: what `up` was given, so that `up` after `stop` brings the same
 * cluster back; stoppedAt: set by `stop` (the PIDs are then history, never signalled).
 */
export interface UpState extends HaState { etcdPid?: number; controlPlanePid: number; sandbox?: string; nodeName: string; port: number; startedAt: number; serviceCidr?: string; proxyTable?: string; containerRuntime?: 'rkt' | 'docker'; options?: UpOptions; stoppedAt?: number }

/** One table per local cluster: two clusters on one host (tests) each own theirs. */
export const proxyTableFor = (bridge: string) => (bridge === 'stevedore0' ? 'stevedore-proxy' : `stevedore-proxy-${bridge}`);

export const CLI = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);
export const DEMO_POD = `apiVersion: v1
kind: Pod
metadata:
  name: demo
  labels: {app: demo}
spec:
  containers:
  - name: greeter
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo "hello from stevedore ($i)"; i=$((i+1)); sleep 5; done']
    resources: {limits: {cpu: 100m, memory: 32Mi}}
  - name: clock
    image: busybox
    command: [sh, -c, 'while true; do date; sleep 10; done']
`;

const paths = (dataDir: string) => ({
  state: path.join(dataDir, 'up.json'),
  controlPlane: path.join(dataDir, 'control-plane'),
  etcd: path.join(dataDir, 'etcd'),
  node: path.join(dataDir, 'node'),
  kubeconfig: path.join(dataDir, 'kubeconfig'),
  nodeKubeconfig: path.join(dataDir, 'node-kubeconfig'),
  /** The node's CA copy and node API serving pair (issued with its client certificate). */
  nodePki: path.join(dataDir, 'node-pki'),
  agentConfig: path.join(dataDir, 'agent.yaml'),
  manifests: path.join(dataDir, 'manifests'),
  defaultStage1Policy: path.join(dataDir, 'stage1-policy.yaml'),
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function systemdIsPid1(): Promise<boolean> {
  return (await fs.readFile('/proc/1/comm', 'utf8').catch(() => '')).trim() === 'systemd';
}

/** GET a control plane URL with the admin token; resolves to [status, parsed body]. */
export function apiGet(url: string, ca: string, token: string): Promise<[number, unknown]> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers: { Authorization: `Bearer ${token}` }, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve([res.statusCode ?? 0, JSON.parse(body)]); } catch { resolve([res.statusCode ?? 0, body]); } });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** POST a JSON object with the admin token; resolves to [status, parsed body]. */
export function apiPost(url: string, ca: string, token: string, body: unknown): Promise<[number, unknown]> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = https.request(url, { method: 'POST', ca, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) }, timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => { try { resolve([res.statusCode ?? 0, JSON.parse(text)]); } catch { resolve([res.statusCode ?? 0, text]); } });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(data);
  });
}

/** The cluster DNS address: the service range's tenth address, as kubeadm picks it (10.96.0.10). */
export function clusterDnsAddress(serviceCidr: string): string {
  const base = serviceCidr.split('/')[0]!.split('.').map(Number);
  const n = ((base[0]! << 24) >>> 0) + (base[1]! << 16) + (base[2]! << 8) + base[3]! + 10;
  return [24, 16, 8, 0].map((sh) => (n >>> sh) & 255).join('.');
}

export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, hint: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new UserError(`timed out after ${timeoutMs / 1000} s waiting for ${what}`, { hint });
    await sleep(250);
  }
}

/** Run a command on the node (inside the sandbox, or right here on a systemd host); returns its stdout. */
export async function onNode(sandbox: string | undefined, argv: string[]): Promise<string> {
  const r = sandbox
    // The kvm stage1's assets where the caller says (STEVEDORE_KVM_ASSETS): the sandbox does not inherit the environment.
    ? await execInSandbox(sandbox, argv, { stdio: 'pipe', ...(process.env.STEVEDORE_KVM_ASSETS ? { env: { STEVEDORE_KVM_ASSETS: process.env.STEVEDORE_KVM_ASSETS } } : {}) })
    : await new Promise<{ exitCode: number; stdout: string; stderr: string }>((resolve) => {
      const c = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d) => { stdout += d; });
      c.stderr.on('data', (d) => { stderr += d; });
      c.on('close', (code) => resolve({ exitCode: code ?? 1, stdout, stderr }));
    });
  if (r.exitCode !== 0) throw new UserError(`on the node, \`${argv.slice(1).join(' ')}\` failed: ${(r.stderr ?? '').trim()}`);
  return r.stdout ?? '';
}

export const stevedore = (...args: string[]) => [process.execPath, CLI, ...args];

/**
 * The store of `up`'s control plane: nothing to start for SQLite; for etcd, one
 * etcd member (cli/etcd-process.ts). An etcd left running by an earlier `up`
 * whose control plane died is stopped first (its port is the one wanted, and
 * the new up.json would forget it).
 * Returns the control plane's --store arguments.
 */
export async function startStore(store: UpStore | undefined, etcdDir: string, earlierEtcdPid: number | undefined): Promise<{ etcdPid?: number; storeArgs: string[] }> {
  const { startEtcdProcess, stopEtcdProcess } = await import('./etcd-process.js');
  // Whatever the store now, an etcd of an earlier `up` here would be forgotten by the new up.json.
  await stopEtcdProcess(earlierEtcdPid);
  if (!store || store.kind === 'sqlite') return { storeArgs: [] };
  let etcdPid: number | undefined;
  try {
    const url = await startEtcdProcess({ dir: etcdDir, clientPort: store.etcdPort, async started(pid) { etcdPid = pid; } });
    process.stdout.write(`etcd up at ${url} (data in ${etcdDir})\n`);
    return { etcdPid, storeArgs: ['--store', `etcd:${url}`] };
  } catch (err) {
    await stopEtcdProcess(etcdPid);
    throw err;
  }
}

/**
 * The control plane as a detached process (it outlives this command), logging
 * to control-plane.log in its data dir; `started` gets its PID before the wait,
 * so a failed start is still recorded for `down`. Resolves once /version
 * answers, with the admin credentials to talk to it.
 */
export async function startControlPlaneProcess(o: { dir: string; kubeconfig: string; port: number; args: string[]; started(pid: number): Promise<void>; hint: string; logName?: string }): Promise<{ url: string; ca: string; adminToken: string }> {
  const logFd = openSync(path.join(o.dir, o.logName ?? 'control-plane.log'), 'a');
  const cp = spawn(process.execPath, [CLI, 'control-plane', '--data-dir', o.dir, '--port', String(o.port), '--kubeconfig', o.kubeconfig, ...o.args],
    { detached: true, stdio: ['ignore', logFd, logFd], env: { ...process.env, STEVEDORE_LOG_LEVEL: 'info' } });
  closeSync(logFd);
  cp.unref();
  await o.started(cp.pid!);
  const url = `https://127.0.0.1:${o.port}`;
  const credentials = async () => ({
    ca: await fs.readFile(path.join(o.dir, 'pki', 'ca.crt'), 'utf8'),
    adminToken: (await fs.readFile(path.join(o.dir, 'admin.token'), 'utf8')).trim(),
  });
  await waitFor('the control plane', 60_000, async () => {
    if (!(await isAlive(cp.pid!))) throw new Error('exited');
    await fs.access(o.kubeconfig);
    const { ca, adminToken } = await credentials();
    const [code] = await apiGet(`${url}/version`, ca, adminToken);
    return code === 200 ? true : undefined;
  }, `see ${path.join(o.dir, o.logName ?? 'control-plane.log')}; ${o.hint}`);
  return { url, ...(await credentials()) };
}

/** The kube-dns Service holds the cluster DNS address (so no other Service gets it); each node's agent answers there. */
export async function createKubeDnsService(url: string, ca: string, adminToken: string, serviceCidr: string): Promise<string> {
  const dnsIp = clusterDnsAddress(serviceCidr);
  // A cluster that comes back after `stop` has it already (creating it again would find its IP taken).
  const [getCode, existing] = await apiGet(`${url}/api/v1/namespaces/kube-system/services/kube-dns`, ca, adminToken);
  if (getCode === 200) return (existing as { spec?: { clusterIP?: string } }).spec?.clusterIP ?? dnsIp;
  const [dnsCode, dnsBody] = await apiPost(`${url}/api/v1/namespaces/kube-system/services`, ca, adminToken, {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'kube-dns', labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS' } },
    spec: { clusterIP: dnsIp, ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] },
  });
  if (dnsCode !== 201 && dnsCode !== 409) throw new UserError(`cannot create the kube-dns Service: ${JSON.stringify(dnsBody)}`);
  return dnsIp;
}

export async function up(opts: UpOptions): Promise<void> {
  const p = paths(opts.dataDir);
  const { loadStage1Policy, DEFAULT_UP_POLICY } = await import('../agent/stage1-policy.js');
  // A bad policy file fails here, before anything starts, rather than in the agent's journal.
  if (opts.stage1Policy) await loadStage1Policy(opts.stage1Policy);
  const existing = await readJsonIfExists<UpState>(p.state);
  if (existing && !existing.stoppedAt && (await isAlive(existing.controlPlanePid))) {
    process.stdout.write(`already up (control plane pid ${existing.controlPlanePid}).\nexport KUBECONFIG=${p.kubeconfig}\n`);
    return;
  }
  await fs.mkdir(p.controlPlane, { recursive: true, mode: 0o700 });
  // The api-service runs as its own user, which must reach the node's data
  // dir below this one: searchable (not listable) by others. What is secret
  // in here is closed by its own mode (control-plane/ 0700, kubeconfigs 0600).
  await fs.chmod(opts.dataDir, ((await fs.stat(opts.dataDir)).mode & 0o7777) | 0o001);
  await fs.mkdir(p.manifests, { recursive: true });
  // Without a policy of the user's, the node opens host access (fly, hostNetwork, hostPID, hostIPC,
  // privileged) to kube-system only; the agent itself, given no policy, opens it to no pod at all.
  let stage1Policy = opts.stage1Policy;
  if (!stage1Policy) {
    stage1Policy = p.defaultStage1Policy;
    await fs.writeFile(stage1Policy, DEFAULT_UP_POLICY);
  }

  // 1. The control plane, detached so it outlives this command.
  const serviceCidr = opts.serviceCidr ?? '10.96.0.0/16';
  const proxyTable = proxyTableFor(opts.bridge);
  const containerRuntime = opts.containerRuntime ?? 'rkt';
  let state!: UpState;
  let started: { url: string; ca: string; adminToken: string };
  /** The URLs the node's kubeconfig lists (several with --control-planes 3); the first is its server. */
  let nodeServers: string[];
  if (opts.controlPlanes) {
    const ha = opts.controlPlanes;
    const { startHaControlPlanes, controlPlaneUrls } = await import('./up-ha.js');
    if (opts.store?.kind !== 'etcd') throw new UserError('--control-planes 3 needs --store etcd', { hint: 'add --store etcd' });
    started = await startHaControlPlanes({
      dataDir: opts.dataDir, cpDir: p.controlPlane, kubeconfig: p.kubeconfig, port: opts.port, etcdPort: opts.store.etcdPort, ha,
      args: ['--service-cluster-ip-range', serviceCidr], hint: '', earlier: existing ?? undefined,
      async record(ps) {
        state = { ...ps, controlPlanePid: ps.controlPlanePids?.[0] ?? 0, nodeName: opts.nodeName, port: opts.port, startedAt: Date.now(), serviceCidr, proxyTable, containerRuntime, options: opts };
        await atomicWriteJson(p.state, state);
      },
    });
    nodeServers = controlPlaneUrls(ha, '127.0.0.1');
  } else {
    const { etcdPid, storeArgs } = await startStore(opts.store, p.etcd, existing?.etcdPid);
    started = await startControlPlaneProcess({
      dir: p.controlPlane, kubeconfig: p.kubeconfig, port: opts.port, args: ['--service-cluster-ip-range', serviceCidr, ...storeArgs], hint: `is port ${opts.port} free?`,
      async started(pid) {
        state = { ...(etcdPid ? { etcdPid } : {}), controlPlanePid: pid, nodeName: opts.nodeName, port: opts.port, startedAt: Date.now(), serviceCidr, proxyTable, containerRuntime, options: opts };
        await atomicWriteJson(p.state, state);
      },
    });
    nodeServers = [started.url];
  }
  const { url, ca, adminToken } = started;
  process.stdout.write(`control plane up at ${url}\n`);
  // The node's identity from the cluster CA: a client certificate (system:node:NAME) in its
  // kubeconfig, and a serving certificate for the node API at the address it registers.
  const nodeIP = '127.0.0.1';
  const nodeFiles = { kubeconfig: p.nodeKubeconfig, caCert: path.join(p.nodePki, 'ca.crt'), servingCert: path.join(p.nodePki, 'kubelet.crt'), servingKey: path.join(p.nodePki, 'kubelet.key') };
  await writeNodeCredentials(await issueNodeCredentials(p.controlPlane, opts.nodeName, [nodeIP]), nodeServers[0]!, nodeFiles, opts.nodeName, nodeServers.length > 1 ? nodeServers : undefined);

  const dnsIp = await createKubeDnsService(url, ca, adminToken, serviceCidr);

  // 2. The node: this host's systemd, or a sandbox with a systemd of its own.
  let sandbox: string | undefined;
  if (!(await systemdIsPid1())) {
    sandbox = opts.sandboxName;
    if (!(await getSandbox(sandbox))) await startSandbox({ name: sandbox });
    state.sandbox = sandbox;
    await atomicWriteJson(p.state, state);
    process.stdout.write(`node sandbox "${sandbox}" running (PID 1 here is not systemd)\n`);
  }
  await onNode(sandbox, stevedore('--dir', p.node, 'image', 'import-demo'));
  await onNode(sandbox, stevedore('--dir', p.node, 'agent', 'install', '--now', '--kubeconfig', p.nodeKubeconfig, '--node-name', opts.nodeName,
    '--container-runtime', containerRuntime, '--rkt-stage1-image', opts.stage1, '--pod-cidr', opts.podCidr, '--cni-bridge', opts.bridge, '--port', String(opts.nodeApiPort), '--node-ip', nodeIP,
    '--tls-cert-file', nodeFiles.servingCert, '--tls-private-key-file', nodeFiles.servingKey, '--client-ca-file', nodeFiles.caCert, '--config-path', p.agentConfig,
    '--stage1-policy', stage1Policy, '--proxy-table', proxyTable, '--cluster-cidr', opts.podCidr,
    '--cluster-dns', dnsIp, '--cluster-domain', 'cluster.local', '--cluster-dns-port', String(opts.dnsPort ?? 10053)));
  // Its unix socket only (root and group stevedore), unless a port was asked for: loopback TCP has no client authentication.
  // rkt's v1alpha api-service serves rkt's pods only (api-service/command.ts): a docker node has none.
  if (containerRuntime === 'rkt') await onNode(sandbox, stevedore('--dir', p.node, 'api-service', 'install', '--now', ...(opts.apiServicePort ? ['--listen', `127.0.0.1:${opts.apiServicePort}`] : [])));
  await waitFor(`node ${opts.nodeName} to be Ready`, 60_000, async () => {
    const [code, node] = await apiGet(`${url}/api/v1/nodes/${opts.nodeName}`, ca, adminToken);
    const ready = (node as { status?: { conditions?: Array<{ type: string; status: string }> } }).status?.conditions?.find((c) => c.type === 'Ready');
    return code === 200 && ready?.status === 'True' ? true : undefined;
  }, sandbox ? `see \`stevedore sandbox exec --name ${sandbox} -- journalctl -u stevedore-agent\`` : 'see `journalctl -u stevedore-agent`');
  process.stdout.write(`node ${opts.nodeName} Ready\n`);
  if (containerRuntime === 'docker') {
    // The agent started the node's dockerd; the demo image is built here from the node's busybox, never pulled.
    const { EngineClient, enginePaths, dockerDirs, importDemoImage } = await import('../runtime-docker/index.js');
    const { busyboxEntries } = await import('../runtime-rkt/image/demo-image.js');
    await importDemoImage(new EngineClient(enginePaths(dockerDirs(p.node).engine).socket), await busyboxEntries());
    process.stdout.write('demo image localhost/busybox:latest imported into the node\'s docker engine\n');
  }

  // 3. The demo pod, through the API like any user's; a stopped cluster that comes back has its own pods.
  if (!existing?.stoppedAt) await applyDemoPod(path.join(p.manifests, 'demo-pod.yaml'), p.kubeconfig);
  process.stdout.write(`
Stevedore is up: one node (${opts.nodeName}), runtime ${containerRuntime}${containerRuntime === 'rkt' ? `, stage1 ${opts.stage1}` : ''};
stage1 and host-access policy: ${stage1Policy}${opts.stage1Policy ? '' : ' (fly, hostNetwork, hostPID, hostIPC, privileged, hostPath: kube-system only)'};
${containerRuntime === 'rkt' ? `the read-only api-service (rkt v1alpha gRPC) listens on the node's ${API_SERVICE_SOCKET}${opts.apiServicePort ? ` and on 127.0.0.1:${opts.apiServicePort}` : ''}.` : 'no api-service (it is rkt\'s v1alpha API); `stevedore pod list --container-runtime=docker` on the node lists its pods.'}

  export KUBECONFIG=${p.kubeconfig}
  kubectl get nodes
  kubectl get pods -o wide
  kubectl logs demo -c greeter -f
  kubectl apply -f your-pod.yaml

Stop it, keeping its data, with: npx stevedore stop${dataDirFlag(opts.dataDir)} (then up brings it back)
Tear it all down with: npx stevedore down${dataDirFlag(opts.dataDir)}
`);
}

/**
 * `down`: stop and remove everything `up` made, the data dir included. With keepData (`stop`): the
 * same, except that the data dir stays (the control plane's objects, PKI, images, volumes' data) and
 * up.json records the stop; the pods themselves are removed from the node, as a node shutdown ends
 * them, and the next `up` brings the same cluster back: its agents start the pods bound to them anew.
 */
export async function down(opts: { dataDir: string; keepData?: boolean }): Promise<void> {
  const p = paths(opts.dataDir);
  const state = await readJsonIfExists<UpState>(p.state);
  if (!state) {
    process.stdout.write(`nothing to ${opts.keepData ? 'stop' : 'tear down'} in ${opts.dataDir}\n`);
    return;
  }
  if (opts.keepData && state.stoppedAt) {
    process.stdout.write(`already stopped; \`stevedore up${dataDirFlag(opts.dataDir)}\` brings it back\n`);
    return;
  }
  // `up --nodes N` (N > 1) keeps its nodes in up.json; they go their own way (cli/up-nodes.ts).
  const multi = state as UpState & Partial<import('./up-nodes.js').MultiNodeState>;
  if (multi.nodes && multi.nodeBridge) {
    const { downNodes } = await import('./up-nodes.js');
    return downNodes(opts.dataDir, multi as import('./up-nodes.js').MultiNodeState, opts.keepData ?? false);
  }
  const sandbox = state.sandbox && (await getSandbox(state.sandbox)) ? state.sandbox : undefined;
  if (sandbox || !state.sandbox) {
    // Stop the agent first (it would restart pods), then remove every pod it ran.
    const quietly = (argv: string[]) => onNode(sandbox, argv).catch((err) => { process.stderr.write(`warning: ${(err as Error).message}\n`); return ''; });
    await quietly(['sh', '-c', 'for u in stevedore-agent.service stevedore-api-service.service; do systemctl disable --now $u; rm -f /etc/systemd/system/$u; done; systemctl daemon-reload']);
    if (state.containerRuntime === 'docker') {
      // Every docker pod and the node's dockerd; the engine's mounts live in the node's mount namespace.
      const { teardownDockerNode } = await import('../runtime-docker/index.js');
      const bus = sandbox ? (await getSandbox(sandbox))?.busAddress : undefined;
      await teardownDockerNode({ dataDir: p.node, ...(bus ? { dbusAddress: bus } : {}) }).catch((err) => process.stderr.write(`warning: ${(err as Error).message}\n`));
    }
    const pods = JSON.parse((await quietly(stevedore('--dir', p.node, 'pod', 'list', '-o', 'json'))) || '[]') as Array<{ uuid: string }>;
    if (pods.length) await quietly(stevedore('--dir', p.node, 'pod', 'rm', '--force', ...pods.map((x) => x.uuid)));
    await quietly(stevedore('--dir', p.node, 'gc', '--grace-period', '0s'));
    // The bridge of the agent's default network outlives its last pod (CNI leaves it); it is ours, so it goes.
    const bridge = await defaultNetworkBridge(path.join(p.node, 'cni', 'net.d'));
    if (bridge) await quietly(['ip', 'link', 'del', bridge]);
  }
  // The service proxy's table outlives the agent on purpose (traffic flows while it restarts); down removes it.
  // The node sandbox shares this host's network namespace, so it is deleted from here.
  if (state.proxyTable) {
    const { removeProxyTable } = await import('../agent/service-proxy.js');
    await removeProxyTable(state.proxyTable).catch((err) => process.stderr.write(`warning: ${(err as Error).message}\n`));
  }
  if (state.sandbox) await stopSandbox(state.sandbox);
  // Several control planes: the balancer, them, then the etcd cluster (cli/up-ha.ts).
  if (!state.stoppedAt) await (await import('./up-ha.js')).stopHaProcesses(state);
  await stopControlPlane(state);
  // The store goes after the control plane that writes to it.
  if (state.etcdPid && !state.stoppedAt) await (await import('./etcd-process.js')).stopEtcdProcess(state.etcdPid);
  if (opts.keepData) {
    await atomicWriteJson(p.state, { ...state, stoppedAt: Date.now() });
    process.stdout.write(`stop: ${controlPlanesWord(state)}${state.etcdPid || state.etcdPids ? ', etcd' : ''} and node${state.sandbox ? ' sandbox' : ' agent'} stopped, pods ended; the cluster's data stays in ${opts.dataDir}: \`stevedore up${dataDirFlag(opts.dataDir)}\` brings it back\n`);
    return;
  }
  await fs.rm(opts.dataDir, { recursive: true, force: true });
  process.stdout.write(`down: ${controlPlanesWord(state)}${state.etcdPid || state.etcdPids ? ', etcd' : ''}, node${state.sandbox ? ' sandbox' : ' agent'} and ${opts.dataDir} removed\n`);
}

/**
 * `up` on a data dir that `stop` left: start that cluster again with the options it was made with
 * (one node or many; nodes added since included). False when there is no stopped cluster there.
 */
export async function restartStopped(dataDir: string): Promise<boolean> {
  const state = await readJsonIfExists<UpState & Partial<import('./up-nodes.js').MultiNodeState>>(paths(dataDir).state);
  if (!state?.stoppedAt) return false;
  if (!state.options) throw new UserError(`the stopped cluster in ${dataDir} does not record how it was made`, { hint: `remove it with \`stevedore down${dataDirFlag(dataDir)}\` and run up again` });
  process.stdout.write(`starting the cluster stopped at ${new Date(state.stoppedAt).toISOString()} again, with the options it was made with\n`);
  if (state.nodes) {
    const { upNodes } = await import('./up-nodes.js');
    await upNodes(state.options as import('./up-nodes.js').MultiNodeOptions);
  } else {
    await up(state.options);
  }
  return true;
}

/** SIGTERM, then SIGKILL after 5 s; a stopped cluster's PID is history (it may be another process's by now). */
export async function stopControlPlane(state: { controlPlanePid: number; stoppedAt?: number; controlPlanePids?: number[] }): Promise<void> {
  // Several control planes were stopped by stopHaProcesses, each checked to be ours (the first may have died, its PID reused).
  if (state.controlPlanePids) return;
  if (state.stoppedAt || !(await isAlive(state.controlPlanePid))) return;
  process.kill(state.controlPlanePid, 'SIGTERM');
  for (let i = 0; i < 50 && (await isAlive(state.controlPlanePid)); i++) await sleep(100);
  if (await isAlive(state.controlPlanePid)) process.kill(state.controlPlanePid, 'SIGKILL');
}

/** "control plane", or "3 control planes, load balancer" for `up --control-planes 3`. */
export const controlPlanesWord = (state: HaState) => (state.controlPlanePids && state.controlPlanePids.length > 1 ? `${state.controlPlanePids.length} control planes, load balancer` : 'control plane');

export const dataDirFlag = (dataDir: string) => (dataDir === path.resolve('.stevedore') ? '' : ` --data-dir ${dataDir}`);

export async function applyDemoPod(file: string, kubeconfig: string): Promise<void> {
  await fs.writeFile(file, DEMO_POD);
  const apply = spawn('kubectl', ['apply', '-f', file], { stdio: 'inherit', env: { ...process.env, KUBECONFIG: kubeconfig } });
  const code = await new Promise<number>((resolve) => apply.on('close', (c) => resolve(c ?? 1)));
  if (code !== 0) throw new UserError('kubectl apply of the demo pod failed', { hint: 'is kubectl installed (apt-get install kubernetes-client)?' });
}

/** The bridge of the default network the agent wrote into confDir, if that is the network there. */
async function defaultNetworkBridge(confDir: string): Promise<string | undefined> {
  const { DEFAULT_NETWORK_FILE } = await import('../cni/index.js');
  const conf = await readJsonIfExists<{ plugins?: Array<{ type?: string; bridge?: string }> }>(path.join(confDir, DEFAULT_NETWORK_FILE)).catch(() => undefined);
  return conf?.plugins?.find((pl) => pl.type === 'bridge')?.bridge;
}

export function defaultNodeName(): string {
  return os.hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'stevedore-node';
}
