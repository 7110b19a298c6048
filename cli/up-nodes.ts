/**
 * `stevedore up --nodes N` (N > 1): a local cluster of N nodes on one host.
 *
 * Topology (defaults):
 *   host: the control plane on 127.0.0.1:PORT (admin kubeconfig) and on the
 *         node bridge's address 10.250.0.1:PORT (the nodes' kubeconfigs);
 *         bridge `stvd-nodes` 10.250.0.1/24.
 *   node-i: a node sandbox (sandbox/) in a network namespace of its own
 *         (/run/netns/<sandbox>), eth0 10.250.0.(10+i)/24, default route via
 *         10.250.0.1; its own agent (--node-ip 10.250.0.(10+i), a /24 pod
 *         CIDR of 10.88.0.0/16 that the control plane's node IPAM gives its
 *         Node, CNI bridge and service proxy table inside its netns),
 *         its own api-service; routes to the other nodes' pod CIDRs via their
 *         addresses (agent --route-pod-cidrs, host-gw).
 * `stevedore down` stops every node sandbox (its netns takes the pods'
 * bridge, routes and nft tables along), the bridge and the control plane.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import * as os from 'node:os';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidInput, UserError } from '../common/errors.js';
import { atomicWriteJson, readJsonIfExists } from '../common/fsutil.js';
import { issueNodeCredentials, writeNodeCredentials } from '../control-plane/pki.js';
import { isAlive } from '../sandbox/proc.js';
import { execInSandbox, getSandbox, startSandbox, stopSandbox } from '../sandbox/sandbox.js';
import { ensureBridge, removeBridgeIfUnused } from '../sandbox/network.js';
import { validateNodeIpam } from '../control-plane/controllers/node-ipam.js';
import { cpuMillis, memoryBytes } from '../common/quantity.js';
import { parseDuration } from '../common/format.js';
import { reservedFor } from './cluster-autoscaler-logic.js';
import type { HaState } from './up-ha.js';
import { CLI, apiGet, controlPlanesWord, applyDemoPod, createKubeDnsService, dataDirFlag, onNode, startControlPlaneProcess, startStore, stevedore, stopControlPlane, waitFor, type UpOptions } from './up.js';

export interface MultiNodeOptions extends UpOptions {
  nodes: number;
  /** The host bridge the nodes' eth0 peers are on. */
  nodeBridge: string;
  /** The nodes' /24: .1 is the bridge (and the control plane's address for the nodes), .(10+i) node-i. */
  nodeNetwork: string;
  /** Control plane flags for failure drills (kube-controller-manager's / kube-apiserver's). */
  nodeMonitorGracePeriod?: string;
  defaultUnreachableTolerationSeconds?: number;
  defaultNotReadyTolerationSeconds?: number;
  /** Each node's allocatable (`cpu=1,memory=2Gi`): the agents run with --system-reserved = capacity less this. */
  nodeAllocatable?: string;
  /** The cluster autoscaler's node group (cluster-autoscaler.ts): started when maxNodes is above the nodes. */
  autoscaler?: { minNodes: number; maxNodes: number; scaleDownUnneededTime: string; scaleDownDelayAfterAdd: string; scaleDownUtilizationThreshold: number; scanInterval: string };
}

export interface NodeRecord { name: string; sandbox: string; address: string; dir: string }

/** up.json of a multi-node cluster: UpState's fields plus the nodes. */
export interface MultiNodeState extends HaState { etcdPid?: number; controlPlanePid: number; nodeName: string; port: number; startedAt: number; serviceCidr: string; nodes: NodeRecord[]; nodeBridge: string; settings?: NodeSettings; options?: MultiNodeOptions; stoppedAt?: number }

const MAX_NODES = 200;

/** 10.250.0.0/24 → ['10.250.0', ...]; only /24 networks (one octet for the nodes). */
function networkBase(cidr: string, what: string, prefix: number): number[] {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  if (!m || octets.some((o) => o > 255) || Number(m[5]) !== prefix) {
    throw new InvalidInput(`${what} ${cidr} is not an IPv4 /${prefix}`, prefix === 24 ? 'e.g. 10.250.0.0/24' : 'e.g. 10.88.0.0/16: node-i gets 10.88.i.0/24');
  }
  return octets;
}

/** Names and addresses of node-1…node-N (pure: unit-tested); their pod CIDRs come from the control plane. */
export function planNodes(opts: { nodes: number; nodeNetwork: string; podCidr: string; sandboxName: string; dataDir: string }): { gateway: string; nodes: NodeRecord[] } {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > MAX_NODES) throw new InvalidInput(`--nodes ${opts.nodes} is not a number of nodes`, `use 1-${MAX_NODES}`);
  const net = networkBase(opts.nodeNetwork, '--node-network', 24);
  try {
    validateNodeIpam({ clusterCidr: opts.podCidr, nodeCidrMaskSize: 24 });
  } catch {
    throw new InvalidInput(`--pod-cidr ${opts.podCidr} cannot hold a /24 per node`, 'with --nodes it is the cluster CIDR, e.g. 10.88.0.0/16');
  }
  const nodes: NodeRecord[] = [];
  for (let i = 1; i <= opts.nodes; i++) {
    const name = `node-${i}`;
    nodes.push({ name, sandbox: `${opts.sandboxName}-${name}`, address: `${net[0]}.${net[1]}.${net[2]}.${10 + i}`, dir: path.join(opts.dataDir, 'nodes', name) });
  }
  return { gateway: `${net[0]}.${net[1]}.${net[2]}.1`, nodes };
}

/** What `node add` needs to make one more node like the others (kept in up.json). */
export interface NodeSettings {
  gateway: string; nodeNetwork: string; stage1: string; stage1Policy: string; bridge: string; nodeApiPort: number; podCidr: string;
  dnsIp: string; dnsPort: number; sandboxPrefix: string;
  /** The agents' --system-reserved (from `up --node-allocatable`), if any. */
  systemReserved?: string;
}
interface NodeContext { dataDir: string; state: MultiNodeState; settings: NodeSettings; url: string; ca: string; adminToken: string }

/** The control plane URLs a node's kubeconfig lists: one, or each of `up --control-planes 3`'s on the bridge address. */
function nodeServers(state: MultiNodeState, gateway: string): string[] {
  const ha = state.options?.controlPlanes;
  return ha ? ha.ports.map((p) => `https://${gateway}:${p}`) : [`https://${gateway}:${state.port}`];
}

/** One node: its credentials, its sandbox (own netns), its agent and api-service. */
async function startNode(ctx: NodeContext, n: NodeRecord): Promise<void> {
  const { settings: st, state } = ctx;
  const cpDir = path.join(ctx.dataDir, 'control-plane');
  await fs.mkdir(n.dir, { recursive: true, mode: 0o711 });
  const files = { kubeconfig: path.join(n.dir, 'kubeconfig'), caCert: path.join(n.dir, 'pki', 'ca.crt'), servingCert: path.join(n.dir, 'pki', 'kubelet.crt'), servingKey: path.join(n.dir, 'pki', 'kubelet.key') };
  const servers = nodeServers(state, st.gateway);
  await writeNodeCredentials(await issueNodeCredentials(cpDir, n.name, [n.address]), servers[0]!, files, n.name, servers.length > 1 ? servers : undefined);
  if (!(await getSandbox(n.sandbox))) await startSandbox({ name: n.sandbox, network: { bridge: state.nodeBridge, address: n.address, gateway: st.gateway } });
  const data = path.join(n.dir, 'data');
  await onNode(n.sandbox, stevedore('--dir', data, 'image', 'import-demo'));
  await onNode(n.sandbox, stevedore('--dir', data, 'agent', 'install', '--now', '--kubeconfig', files.kubeconfig, '--node-name', n.name,
    '--rkt-stage1-image', st.stage1, '--pod-cidr-from-node', '--cni-bridge', st.bridge, '--port', String(st.nodeApiPort), '--node-ip', n.address,
    '--tls-cert-file', files.servingCert, '--tls-private-key-file', files.servingKey, '--client-ca-file', files.caCert, '--config-path', path.join(n.dir, 'agent.yaml'),
    '--stage1-policy', st.stage1Policy, '--cluster-cidr', st.podCidr, '--route-pod-cidrs',
    '--cluster-dns', st.dnsIp, '--cluster-domain', 'cluster.local', '--cluster-dns-port', String(st.dnsPort),
    ...(st.systemReserved ? ['--system-reserved', st.systemReserved] : [])));
  await onNode(n.sandbox, stevedore('--dir', data, 'api-service', 'install', '--now'));
  process.stdout.write(`node ${n.name}: sandbox ${n.sandbox}, ${n.address}\n`);
}

async function waitNodeReady(ctx: NodeContext, n: NodeRecord): Promise<void> {
  const podCidr = await waitFor(`node ${n.name} to be Ready`, 90_000, async () => {
    const [code, node] = await apiGet(`${ctx.url}/api/v1/nodes/${n.name}`, ctx.ca, ctx.adminToken);
    const view = node as { spec?: { podCIDR?: string }; status?: { conditions?: Array<{ type: string; status: string }> } };
    const ready = view.status?.conditions?.find((c) => c.type === 'Ready');
    return code === 200 && ready?.status === 'True' ? view.spec?.podCIDR ?? '' : undefined;
  }, `see \`stevedore sandbox exec --name ${n.sandbox} -- journalctl -u stevedore-agent\``);
  process.stdout.write(`node ${n.name} Ready (pods ${podCidr})\n`);
}

export async function upNodes(opts: MultiNodeOptions): Promise<void> {
  if (opts.nodeAllocatable) systemReservedForAllocatable(opts.nodeAllocatable); // a bad value fails before anything starts
  if (opts.autoscaler) checkNodeGroup(opts.nodes, opts.autoscaler);
  const statePath = path.join(opts.dataDir, 'up.json');
  const existing = await readJsonIfExists<MultiNodeState>(statePath);
  const planned = planNodes(opts);
  const gateway = planned.gateway;
  // After `stop`, the same nodes come back, those `node add` made included.
  const nodes = existing?.stoppedAt ? existing.nodes : planned.nodes;
  if (existing && !existing.stoppedAt && (await isAlive(existing.controlPlanePid))) {
    process.stdout.write(`already up (control plane pid ${existing.controlPlanePid}).\nexport KUBECONFIG=${path.join(opts.dataDir, 'kubeconfig')}\n`);
    return;
  }
  const cpDir = path.join(opts.dataDir, 'control-plane');
  const kubeconfig = path.join(opts.dataDir, 'kubeconfig');
  await fs.mkdir(cpDir, { recursive: true, mode: 0o700 });
  // The api-service user of each node must reach its node's data dir below: searchable, not listable.
  await fs.chmod(opts.dataDir, ((await fs.stat(opts.dataDir)).mode & 0o7777) | 0o001);
  await fs.mkdir(path.join(opts.dataDir, 'nodes'), { recursive: true, mode: 0o711 });
  const { loadStage1Policy, DEFAULT_UP_POLICY } = await import('../agent/stage1-policy.js');
  if (opts.stage1Policy) await loadStage1Policy(opts.stage1Policy);
  let stage1Policy = opts.stage1Policy;
  if (!stage1Policy) {
    stage1Policy = path.join(opts.dataDir, 'stage1-policy.yaml');
    await fs.writeFile(stage1Policy, DEFAULT_UP_POLICY);
  }

  // 1. The node bridge first: the control plane listens on its address too.
  await ensureBridge(opts.nodeBridge, gateway);
  const serviceCidr = opts.serviceCidr ?? '10.96.0.0/16';
  // Node IPAM: each Node gets a /24 of the cluster CIDR (--pod-cidr), its agent takes it from there.
  const cpArgs = ['--also-listen', gateway, '--service-cluster-ip-range', serviceCidr,
    '--allocate-node-cidrs', '--cluster-cidr', opts.podCidr, '--node-cidr-mask-size', '24'];
  if (opts.nodeMonitorGracePeriod) cpArgs.push('--node-monitor-grace-period', opts.nodeMonitorGracePeriod);
  if (opts.defaultUnreachableTolerationSeconds !== undefined) cpArgs.push('--default-unreachable-toleration-seconds', String(opts.defaultUnreachableTolerationSeconds));
  if (opts.defaultNotReadyTolerationSeconds !== undefined) cpArgs.push('--default-not-ready-toleration-seconds', String(opts.defaultNotReadyTolerationSeconds));
  let state!: MultiNodeState;
  let started: { url: string; ca: string; adminToken: string };
  if (opts.controlPlanes) {
    const { startHaControlPlanes } = await import('./up-ha.js');
    if (opts.store?.kind !== 'etcd') throw new UserError('--control-planes 3 needs --store etcd', { hint: 'add --store etcd' });
    started = await startHaControlPlanes({
      dataDir: opts.dataDir, cpDir, kubeconfig, port: opts.port, etcdPort: opts.store.etcdPort, ha: opts.controlPlanes, args: cpArgs,
      hint: `(on 127.0.0.1 and ${gateway})`, earlier: existing ?? undefined,
      async record(ps) {
        state = { ...ps, controlPlanePid: ps.controlPlanePids?.[0] ?? 0, nodeName: nodes[0]!.name, port: opts.port, startedAt: Date.now(), serviceCidr, nodes, nodeBridge: opts.nodeBridge, options: opts };
        await atomicWriteJson(statePath, state);
      },
    });
  } else {
    const { etcdPid, storeArgs } = await startStore(opts.store, path.join(opts.dataDir, 'etcd'), existing?.etcdPid);
    cpArgs.push(...storeArgs);
    started = await startControlPlaneProcess({
      dir: cpDir, kubeconfig, port: opts.port, args: cpArgs, hint: `is port ${opts.port} free on 127.0.0.1 and ${gateway}?`,
      async started(pid) {
        state = { ...(etcdPid ? { etcdPid } : {}), controlPlanePid: pid, nodeName: nodes[0]!.name, port: opts.port, startedAt: Date.now(), serviceCidr, nodes, nodeBridge: opts.nodeBridge, options: opts };
        await atomicWriteJson(statePath, state);
      },
    });
  }
  const { url, ca, adminToken } = started;
  process.stdout.write(`control plane up at ${url} (nodes reach it at ${nodeServers(state, gateway).join(', ')})\n`);
  const dnsIp = await createKubeDnsService(url, ca, adminToken, serviceCidr);

  // 2. The nodes, side by side: each a sandbox in its own netns with its own identity, agent and api-service.
  state.settings = {
    gateway, nodeNetwork: opts.nodeNetwork, stage1: opts.stage1, stage1Policy, bridge: opts.bridge, nodeApiPort: opts.nodeApiPort, podCidr: opts.podCidr,
    dnsIp, dnsPort: opts.dnsPort ?? 10053, sandboxPrefix: opts.sandboxName,
    ...(opts.nodeAllocatable ? { systemReserved: systemReservedForAllocatable(opts.nodeAllocatable) } : {}),
  };
  await atomicWriteJson(statePath, state);
  const ctx: NodeContext = { dataDir: opts.dataDir, state, settings: state.settings, url, ca, adminToken };
  await Promise.all(nodes.map((n) => startNode(ctx, n)));
  for (const n of nodes) await waitNodeReady(ctx, n);
  process.stdout.write(`${nodes.length} nodes Ready\n`);

  // A group that can neither grow nor shrink (min = max) needs no autoscaler.
  if (opts.autoscaler && opts.autoscaler.maxNodes > opts.autoscaler.minNodes) await startAutoscalerProcess(opts.dataDir, opts.autoscaler);

  if (!existing?.stoppedAt) await applyDemoPod(path.join(opts.dataDir, 'demo-pod.yaml'), kubeconfig);
  process.stdout.write(`
Stevedore is up: ${nodes.length} nodes (${nodes.map((n) => `${n.name} ${n.address}`).join(', ')}) on bridge ${opts.nodeBridge} (${gateway}),
pod network ${opts.podCidr} (a /24 per node from the control plane, routed node to node), runtime rkt, stage1 ${opts.stage1}.

  export KUBECONFIG=${kubeconfig}
  kubectl get nodes -o wide${opts.autoscaler && opts.autoscaler.maxNodes > opts.autoscaler.minNodes ? `
  kubectl -n kube-system get configmap cluster-autoscaler-status -o jsonpath='{.data.status}'   # the cluster autoscaler (${opts.autoscaler.minNodes}..${opts.autoscaler.maxNodes} nodes)` : ''}
  stevedore node stop node-2 --data-dir ${opts.dataDir}    # a failure drill; node start brings it back

Stop it, keeping its data, with: npx stevedore stop${dataDirFlag(opts.dataDir)} (then up brings it back)
Tear it all down with: npx stevedore down${dataDirFlag(opts.dataDir)}
`);
}

/** Stops a node's agent and api-service and removes every pod it ran; its sandbox stays. Best effort: warns. */
async function tearDownNode(n: NodeRecord, warn: (err: unknown) => string): Promise<void> {
  if (!(await getSandbox(n.sandbox))) return;
  const data = path.join(n.dir, 'data');
  const quietly = (argv: string[]) => onNode(n.sandbox, argv).catch(warn);
  // The agent first (it would restart pods), then every pod it ran; the netns takes bridge, routes and nft tables.
  await quietly(['sh', '-c', 'for u in stevedore-agent.service stevedore-api-service.service; do systemctl disable --now $u; rm -f /etc/systemd/system/$u; done; systemctl daemon-reload']);
  const pods = JSON.parse((await quietly(stevedore('--dir', data, 'pod', 'list', '-o', 'json'))) || '[]') as Array<{ uuid: string }>;
  if (pods.length) await quietly(stevedore('--dir', data, 'pod', 'rm', '--force', ...pods.map((x) => x.uuid)));
  await quietly(stevedore('--dir', data, 'gc', '--grace-period', '0s'));
}

/** `down` (keepData false) or `stop` (keepData true: the data dir stays, see up.ts's down). */
export async function downNodes(dataDir: string, state: MultiNodeState, keepData: boolean): Promise<void> {
  const warn = (err: unknown) => { process.stderr.write(`warning: ${(err as Error).message}\n`); return ''; };
  // The cluster autoscaler first: it must not add or remove a node while they go.
  await stopAutoscalerProcess(dataDir).catch(warn);
  // It may have added nodes since `state` was read.
  state = (await readJsonIfExists<MultiNodeState>(path.join(dataDir, 'up.json'))) ?? state;
  await Promise.all(state.nodes.map((n) => tearDownNode(n, warn)));
  for (const n of state.nodes) await stopSandbox(n.sandbox).catch(warn);
  await removeBridgeIfUnused(state.nodeBridge).catch(warn);
  if (!state.stoppedAt) await (await import('./up-ha.js')).stopHaProcesses(state);
  await stopControlPlane(state);
  if (state.etcdPid && !state.stoppedAt) await (await import('./etcd-process.js')).stopEtcdProcess(state.etcdPid);
  if (keepData) {
    await atomicWriteJson(path.join(dataDir, 'up.json'), { ...state, stoppedAt: Date.now() });
    process.stdout.write(`stop: ${controlPlanesWord(state)}${state.etcdPid || state.etcdPids ? ', etcd' : ''} and ${state.nodes.length} node sandboxes stopped, pods ended; the cluster's data stays in ${dataDir}: \`stevedore up${dataDirFlag(dataDir)}\` brings it back\n`);
    return;
  }
  await fs.rm(dataDir, { recursive: true, force: true });
  process.stdout.write(`down: ${controlPlanesWord(state)}${state.etcdPid || state.etcdPids ? ', etcd' : ''}, ${state.nodes.length} node sandboxes (netns, veths), bridge ${state.nodeBridge} and ${dataDir} removed\n`);
}

function kubectl(dataDir: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('kubectl', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: path.join(dataDir, 'kubeconfig') } });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', (err) => resolve({ code: 127, out: String(err) }));
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** `stevedore node add NAME`: one more node like the others, at the lowest free address of the node network. */
async function addNode(dataDir: string, state: MultiNodeState, name: string): Promise<void> {
  if (!/^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$/.test(name)) throw new InvalidInput(`invalid node name ${JSON.stringify(name)}`, 'use lower-case letters, digits and dashes (at most 42), e.g. node-4');
  if (state.nodes.some((n) => n.name === name)) throw new UserError(`node ${name} is already in this cluster`, { hint: 'pick another name, or `stevedore node remove` it first' });
  const st = state.settings;
  if (!st) throw new UserError('this cluster was made before `node add` existed', { hint: 'bring it down and up again' });
  const net = st.gateway.split('.').slice(0, 3).join('.');
  const taken = new Set(state.nodes.map((n) => n.address));
  let i = 1;
  while (taken.has(`${net}.${10 + i}`)) i++;
  if (10 + i > 254) throw new UserError(`no address left in ${st.nodeNetwork}`, { hint: 'remove a node first' });
  const node: NodeRecord = { name, sandbox: `${st.sandboxPrefix}-${name}`, address: `${net}.${10 + i}`, dir: path.join(dataDir, 'nodes', name) };
  // Recorded first: a half-made node is still found (and removed) by `node remove` and `down`.
  state.nodes.push(node);
  await atomicWriteJson(path.join(dataDir, 'up.json'), state);
  const url = `https://127.0.0.1:${state.port}`;
  const ca = await fs.readFile(path.join(dataDir, 'control-plane', 'pki', 'ca.crt'), 'utf8');
  const adminToken = (await fs.readFile(path.join(dataDir, 'control-plane', 'admin.token'), 'utf8')).trim();
  const ctx: NodeContext = { dataDir, state, settings: st, url, ca, adminToken };
  await startNode(ctx, node);
  await waitNodeReady(ctx, node);
}

/** Adds node NAME (the cluster autoscaler's scale-up); resolves once it is Ready. */
export async function addNodeToCluster(dataDir: string, state: MultiNodeState, name: string): Promise<void> {
  await addNode(dataDir, state, name);
}

/** Drains and removes node NAME (the cluster autoscaler's scale-down), with the state read afresh. */
export async function removeNodeFromCluster(dataDir: string, state: MultiNodeState, name: string): Promise<void> {
  const node = state.nodes.find((n) => n.name === name);
  if (!node) throw new UserError(`no node ${name} in this cluster`);
  await removeNode(dataDir, state, node);
}

/** `stevedore node remove NAME`: drain it (the Eviction API: PodDisruptionBudgets hold), take it apart, delete the Node. */
async function removeNode(dataDir: string, state: MultiNodeState, node: NodeRecord): Promise<void> {
  const exists = await kubectl(dataDir, ['get', 'node', node.name, '-o', 'name']);
  if (exists.code === 0) {
    const drain = await kubectl(dataDir, ['drain', node.name, '--ignore-daemonsets', '--delete-emptydir-data', '--force', '--timeout=120s']);
    if (drain.code !== 0) throw new UserError(`cannot drain node ${node.name}: ${drain.out.trim().split('\n').slice(-3).join(' ')}`, { hint: 'a PodDisruptionBudget may hold its pods: scale up or relax the budget, then retry (the node is cordoned meanwhile; `kubectl uncordon` undoes that)' });
  }
  const warn = (err: unknown) => { process.stderr.write(`warning: ${(err as Error).message}\n`); return ''; };
  await tearDownNode(node, warn);
  await stopSandbox(node.sandbox);
  const del = await kubectl(dataDir, ['delete', 'node', node.name, '--ignore-not-found']);
  if (del.code !== 0) throw new UserError(`cannot delete Node ${node.name}: ${del.out.trim()}`, { hint: 'retry `stevedore node remove`; its sandbox is already gone' });
  state.nodes = state.nodes.filter((n) => n !== node);
  await atomicWriteJson(path.join(dataDir, 'up.json'), state);
  await fs.rm(node.dir, { recursive: true, force: true });
}

/**
 * `stevedore node stop|start|add|remove NAME` on a cluster of `up --nodes N`: stop or start that node's
 * agent (its pods keep running; the node goes NotReady: a failure drill), add one more node, or drain
 * and remove one.
 */
export async function nodeCommand(dataDir: string, action: 'stop' | 'start' | 'add' | 'remove', name: string): Promise<void> {
  const state = await readJsonIfExists<MultiNodeState>(path.join(dataDir, 'up.json'));
  if (!state?.nodes) throw new UserError(`no multi-node cluster in ${dataDir}`, { hint: 'start one with `stevedore up --nodes N`, or pass its --data-dir' });
  if (action === 'add') {
    await addNode(dataDir, state, name);
    process.stdout.write(`node ${name} added\n`);
    return;
  }
  const node = state.nodes.find((n) => n.name === name);
  if (!node) throw new UserError(`no node ${name} in this cluster`, { hint: `its nodes: ${state.nodes.map((n) => n.name).join(', ')}` });
  if (action === 'remove') {
    await removeNode(dataDir, state, node);
    process.stdout.write(`node ${name} drained and removed\n`);
    return;
  }
  const r = await execInSandbox(node.sandbox, ['systemctl', action, 'stevedore-agent.service'], { stdio: 'pipe' });
  if (r.exitCode !== 0) throw new UserError(`systemctl ${action} stevedore-agent on ${name} failed: ${(r.stderr ?? '').trim()}`, { hint: `is its sandbox ${node.sandbox} running (stevedore sandbox list)?` });
  process.stdout.write(`node ${name}: agent ${action === 'stop' ? 'stopped (the node turns NotReady after the grace period)' : 'started'}\n`);
}

/** `--node-allocatable cpu=1,memory=2Gi` → the agents' --system-reserved on this host (the node sandboxes see its cpus and memory). */
export function systemReservedForAllocatable(spec: string): string {
  const wanted: { cpuMillis?: number; memoryBytes?: number } = {};
  const bad = () => new InvalidInput(`--node-allocatable ${spec} is not cpu=QUANTITY,memory=QUANTITY`, 'e.g. --node-allocatable cpu=1,memory=2Gi');
  for (const pair of spec.split(',')) {
    const [key, value] = pair.split('=').map((x) => x.trim());
    if (!value) throw bad();
    try {
      if (key === 'cpu') wanted.cpuMillis = cpuMillis(value, 'cpu');
      else if (key === 'memory') wanted.memoryBytes = memoryBytes(value, 'memory');
      else throw bad();
    } catch { throw bad(); }
  }
  const host = { cpuMillis: os.cpus().length * 1000, memoryBytes: os.totalmem() };
  if ((wanted.cpuMillis ?? 0) > host.cpuMillis || (wanted.memoryBytes ?? 0) > host.memoryBytes) {
    throw new InvalidInput(`--node-allocatable ${spec} is more than this host has (${os.cpus().length} cpus, ${Math.floor(host.memoryBytes / 2 ** 20)}Mi)`, 'ask for at most what the host has: the nodes share it');
  }
  return reservedFor(wanted, host);
}

function checkNodeGroup(nodes: number, a: NonNullable<MultiNodeOptions['autoscaler']>): void {
  if (!Number.isInteger(a.maxNodes) || a.maxNodes < nodes || a.maxNodes > MAX_NODES) throw new InvalidInput(`--max-nodes ${a.maxNodes} is below --nodes ${nodes} or not a number of nodes`, `use ${nodes}-${MAX_NODES}`);
  if (!Number.isInteger(a.minNodes) || a.minNodes < 1 || a.minNodes > nodes) throw new InvalidInput(`--min-nodes ${a.minNodes} must be between 1 and --nodes ${nodes}`, 'the default is the --nodes value');
  if (!(a.scaleDownUtilizationThreshold > 0 && a.scaleDownUtilizationThreshold <= 1)) throw new InvalidInput(`--scale-down-utilization-threshold ${a.scaleDownUtilizationThreshold} is not in (0, 1]`, 'the default is 0.5');
  for (const [flag, v] of [['--scale-down-unneeded-time', a.scaleDownUnneededTime], ['--scale-down-delay-after-add', a.scaleDownDelayAfterAdd], ['--scan-interval', a.scanInterval]] as const) {
    try { parseDuration(v); } catch { throw new InvalidInput(`${flag} ${v} is not a duration`, 'e.g. 20s, 10m'); }
  }
}

const autoscalerPidFile = (dataDir: string) => path.join(dataDir, 'cluster-autoscaler.pid');

/** The cluster autoscaler as a detached process (it outlives `up`), logging to cluster-autoscaler.log; `down` stops it. */
async function startAutoscalerProcess(dataDir: string, a: NonNullable<MultiNodeOptions['autoscaler']>): Promise<void> {
  const logFd = openSync(path.join(dataDir, 'cluster-autoscaler.log'), 'a');
  const child = spawn(process.execPath, [CLI, 'cluster-autoscaler', '--data-dir', dataDir, '--min-nodes', String(a.minNodes), '--max-nodes', String(a.maxNodes),
    '--scale-down-unneeded-time', a.scaleDownUnneededTime, '--scale-down-delay-after-add', a.scaleDownDelayAfterAdd,
    '--scale-down-utilization-threshold', String(a.scaleDownUtilizationThreshold), '--scan-interval', a.scanInterval],
  { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  await fs.writeFile(autoscalerPidFile(dataDir), `${child.pid}\n`);
  process.stdout.write(`cluster autoscaler: node group ${a.minNodes}..${a.maxNodes} nodes (pid ${child.pid}, log ${path.join(dataDir, 'cluster-autoscaler.log')})\n`);
}

async function stopAutoscalerProcess(dataDir: string): Promise<void> {
  const pid = Number((await fs.readFile(autoscalerPidFile(dataDir), 'utf8').catch(() => '')).trim());
  if (!pid || !(await isAlive(pid))) return;
  process.kill(pid, 'SIGTERM');
  // It finishes the node it is adding or removing first (node add waits up to 90 s for Ready).
  for (let i = 0; i < 1200 && (await isAlive(pid)); i++) await new Promise((r) => setTimeout(r, 100));
  if (await isAlive(pid)) process.kill(pid, 'SIGKILL');
}
