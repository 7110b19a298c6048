import { Command, CommanderError } from 'commander';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs/promises';
import { InvalidInput, UserError } from '../common/errors.js';
import { age, humanBytes, parseDuration, table } from '../common/format.js';
import type { RktRuntime } from '../runtime-rkt/runtime.js';
import type { ImageStore } from '../runtime-rkt/image/store.js';
import { parseStage1Name } from '../stage1/contract.js';
import { registerPodCommands } from './pod-commands.js';
import { IMAGE_LIMIT_OPTIONS, type ImageLimitFlags } from './image-limit-flags.js';
import { registerSandboxCommands } from './sandbox-commands.js';
import { registerAgentCommands } from '../agent/command.js';
import type { RuntimeOpenOptions } from '../runtime-api/runtime.js';
import type { PodStatus } from '../runtime-api/status.js';
import { registerApiServiceCommand } from '../api-service/command.js';
import { registerDashboardCommand } from '../dashboard/command.js';

export const DEFAULT_DATA_DIR = '/var/lib/stevedore';

interface GlobalOptions { dir: string; dbusAddress?: string; stage1: string; kvmAccel: string; cniConfDir?: string; cniCacheDir?: string; cniBinDir?: string }

const program = new Command('stevedore')
  .description('Stevedore: pods as systemd units, rkt-style')
  .version(process.env.npm_package_version ?? '0.1.0')
  .option('--dir <path>', 'data directory (pods, images)', process.env.STEVEDORE_DATA_DIR ?? DEFAULT_DATA_DIR)
  .option('--dbus-address <address>', "D-Bus address of the node's systemd (default: the system bus)", process.env.STEVEDORE_DBUS_ADDRESS)
  .option('--stage1 <name>', 'default stage1 for pods that do not choose one', process.env.STEVEDORE_STAGE1 ?? 'namespaces')
  .option('--kvm-accel <mode>', 'kvm pods: auto (hardware KVM if a boot probe passes, else TCG emulation), kvm (refuse VM pods without hardware KVM) or tcg', process.env.STEVEDORE_KVM_ACCEL ?? 'auto')
  .option('--cni-conf-dir <dir>', 'CNI network configs for pod networking (default <dir>/cni/net.d, where the agent writes its default network; pods get a network only if it holds a config)')
  .option('--cni-cache-dir <dir>', 'CNI result cache (default <dir>/cni/results)')
  .option('--cni-bin-dir <dirs>', 'CNI plugin directories, colon-separated like CNI_PATH (default /usr/lib/cni:/opt/cni/bin)')
  .showHelpAfterError()
  .exitOverride();

async function withRuntime<T>(fn: (rt: RktRuntime) => Promise<T>): Promise<T> {
  const g = program.opts<GlobalOptions>();
  // Loaded here, not at start-up: commands that need no runtime start faster.
  const { RktRuntime } = await import('../runtime-rkt/runtime.js');
  const { hasNetworkConfig } = await import('../runtime-rkt/network.js');
  const dataDir = path.resolve(g.dir);
  // Same defaults as the agent's, so the CLI can take apart the pods the agent made.
  const confDir = path.resolve(g.cniConfDir ?? path.join(dataDir, 'cni', 'net.d'));
  const network = g.cniConfDir || (await hasNetworkConfig(confDir))
    ? { confDir, cacheDir: path.resolve(g.cniCacheDir ?? path.join(dataDir, 'cni', 'results')), binDirs: g.cniBinDir?.split(':').filter(Boolean) }
    : 'none' as const;
  const { parseKvmAccelMode } = await import('../stage1/kvm/accel.js');
  const rt = await RktRuntime.open({ dataDir, dbusAddress: g.dbusAddress, defaultStage1: parseStage1Name(g.stage1), network, kvmAccel: parseKvmAccelMode(g.kvmAccel) });
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}

/** For commands that need only the image store: the runtime's modules (D-Bus, CNI, stage1s) stay unloaded, ~200 ms less start-up. */
async function withImageStore<T>(fn: (images: ImageStore) => Promise<T>): Promise<T> {
  const dataDir = path.resolve(program.opts<GlobalOptions>().dir);
  const [{ ImageStore }, { imageStoreDir }] = await Promise.all([import('../runtime-rkt/image/store.js'), import('../runtime-rkt/data-dir.js')]);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o711 }); // as RktRuntime.open makes it
  return fn(new ImageStore(imageStoreDir(dataDir)));
}

/** `pod list|status --container-runtime=docker`: the node's docker pods through the runtime interface, nothing started or changed. */
async function withDockerPods<T>(endpoint: string | undefined, fn: (listPods: () => Promise<PodStatus[]>) => Promise<T>): Promise<T> {
  const { connectDockerRuntime } = await import('../runtime-docker/index.js');
  const rt = await connectDockerRuntime({ dataDir: path.resolve(program.opts<GlobalOptions>().dir), dockerEndpoint: endpoint });
  try {
    return await fn(() => rt.listPods());
  } finally {
    await rt.close();
  }
}

registerPodCommands(program, withRuntime, withDockerPods);
const stage1Cmd = program.command('stage1').description('stage1 assets');
stage1Cmd.command('build-kvm')
  .description('build the kvm stage1\'s guest kernel and initramfs from Debian packages (apt-get download)')
  .option('--out <dir>', 'where to put them (default $STEVEDORE_KVM_ASSETS or /var/cache/stevedore/stage1-kvm)')
  .option('--if-missing', 'do nothing when they are already built')
  .action(async (opts: { out?: string; ifMissing?: boolean }) => {
    const { buildKvmAssets, kvmAssetsDir, loadKvmAssets } = await import('../stage1/kvm/assets.js');
    const out = path.resolve(opts.out ?? kvmAssetsDir());
    if (opts.ifMissing && (await loadKvmAssets(out).then(() => true, () => false))) {
      process.stdout.write(`${out}: already built\n`);
      return;
    }
    const assets = await buildKvmAssets(out, (m) => process.stderr.write(`${m}\n`));
    process.stdout.write(`${JSON.stringify({ dir: assets.dir, ...assets.info }, null, 2)}\n`);
  });
stage1Cmd.command('probe-kvm')
  .description('boot a probe VM with hardware KVM and say whether kvm pods would get it (--kvm-accel=auto)')
  .action(async () => {
    const { kvmProbe } = await import('../stage1/kvm/accel.js');
    const { loadKvmAssets } = await import('../stage1/kvm/assets.js');
    const r = await kvmProbe(await loadKvmAssets(), { fresh: true });
    process.stdout.write(`${r.kvm ? 'kvm' : 'tcg'}: ${r.reason}\n`);
  });
registerSandboxCommands(program);
/** The runtimes the agent can drive (--container-runtime), each loaded only when chosen. */
const CONTAINER_RUNTIMES = {
  rkt: async (opts: RuntimeOpenOptions) => (await import('../runtime-rkt/container-runtime.js')).openRktRuntime(opts),
  docker: async (opts: RuntimeOpenOptions) => (await import('../runtime-docker/index.js')).openDockerRuntime(opts),
  // Pods only pretend to run (kubemark's hollow kubelet): scale tests, many nodes on one machine.
  hollow: async (opts: RuntimeOpenOptions) => (await import('../runtime-hollow/index.js')).hollowRuntimeFactory()(opts),
};
registerAgentCommands(program, () => {
  const g = program.opts<GlobalOptions>();
  // --kvm-accel is also a global option: Commander may hand it to the program rather than to `agent`.
  const kvmAccel = program.getOptionValueSource('kvmAccel') !== 'default' ? g.kvmAccel : undefined;
  return { dir: path.resolve(g.dir), dbusAddress: g.dbusAddress, dirGiven: program.getOptionValueSource('dir') !== 'default', kvmAccel };
}, CONTAINER_RUNTIMES);
registerApiServiceCommand(program);
registerDashboardCommand(program);
program.command('up')
  .description('start a local cluster (control plane + one node, or N with --nodes N, + demo pod) and print how to use kubectl')
  .option('--data-dir <dir>', 'where everything lives (the admin kubeconfig is <dir>/kubeconfig)', '.stevedore')
  .option('--port <port>', 'control plane port', '6443')
  .option('--node-name <name>', 'node name (default: this host\'s name)')
  .option('--rkt-stage1-image <name>', 'default stage1 of the node', 'namespaces')
  .option('--node-api-port <port>', 'port of the node API (kubelet\'s 10250)', '10250')
  .option('--api-service-port <port>', 'also serve the read-only gRPC api-service on 127.0.0.1:PORT (no client authentication there: every local user can read pods and logs); by default only its unix socket, for root and group stevedore')
  .option('--sandbox-name <name>', 'name of the node sandbox, where PID 1 is not systemd', 'stevedore')
  .option('--pod-cidr <cidr>', 'the node\'s pod CIDR (pods get IPs from it)', '10.88.0.0/16')
  .option('--bridge <name>', 'the pod network\'s bridge on this host', 'stevedore0')
  .option('--service-cidr <cidr>', 'where Services\' cluster IPs come from (must not overlap --pod-cidr); its tenth address is the cluster DNS', '10.96.0.0/16')
  .option('--dns-port <port>', 'port of the node\'s cluster DNS server (pods reach it at the cluster DNS address, port 53)', '10053')
  .option('--stage1-policy <file>', 'the node\'s stage1 and host-access policy (YAML; see agent/README.md); default: one that opens fly, hostNetwork, hostPID, hostIPC and privileged to kube-system only')
  .option('--container-runtime <name>', 'the node\'s runtime: rkt (systemd units) or docker (a Docker Engine the node starts)', 'rkt')
  .option('--nodes <n>', 'how many nodes; above 1 each is a node sandbox in a network namespace of its own named node-1…node-N (docs/multi-node.md); --pod-cidr is then the cluster CIDR (a /16, node-i gets x.y.i.0/24)', '1')
  .option('--node-bridge <name>', 'with --nodes: the host bridge the nodes are on', 'stvd-nodes')
  .option('--node-network <cidr>', 'with --nodes: the nodes\' /24 (.1 is the bridge, node-i is .(10+i))', '10.250.0.0/24')
  .option('--node-monitor-grace-period <duration>', 'with --nodes: the control plane\'s (kube-controller-manager\'s) flag, e.g. 10s for failure drills')
  .option('--default-unreachable-toleration-seconds <n>', 'with --nodes: the control plane\'s (kube-apiserver\'s) flag')
  .option('--default-not-ready-toleration-seconds <n>', 'with --nodes: the control plane\'s (kube-apiserver\'s) flag')
  .option('--store <kind>', 'where the control plane keeps objects: sqlite (embedded, in the data dir) or etcd (one etcd member that up starts, data in <dir>/etcd; docs/etcd.md)', 'sqlite')
  .option('--etcd-port <port>', 'with --store etcd: etcd\'s client port on 127.0.0.1 (its peer port is the next one)', '2379')
  .option('--control-planes <n>', 'how many control planes: 1, or 3 with --store etcd (a 3-member etcd cluster, three control planes with leader election, kubectl through a load balancer on --port; docs/etcd.md)', '1')
  .option('--control-plane-ports <list>', 'with --control-planes 3: the control planes\' own ports, comma-separated (default: --port + 1, + 2, + 3)')
  .option('--max-nodes <n>', 'run the cluster autoscaler (docs/autoscaling.md): add nodes up to this many for pods that do not fit (with --nodes 1 too: its node is then a node sandbox)')
  .option('--min-nodes <n>', 'with --max-nodes: never scale down below this many (default: the --nodes value)')
  .option('--node-allocatable <list>', 'with --nodes/--max-nodes: each node\'s allocatable, e.g. cpu=1,memory=2Gi (the agents\' --system-reserved is the rest of the host)')
  .option('--scale-down-unneeded-time <duration>', 'with --max-nodes: how long a node stays under the utilization threshold before it goes (cluster-autoscaler\'s flag)', '10m')
  .option('--scale-down-delay-after-add <duration>', 'with --max-nodes: no scale-down this long after a scale-up (cluster-autoscaler\'s flag)', '10m')
  .option('--scale-down-utilization-threshold <ratio>', 'with --max-nodes: a node whose pods request less than this share of its cpu and memory is unneeded', '0.5')
  .option('--scan-interval <duration>', 'with --max-nodes: how often the cluster autoscaler looks (cluster-autoscaler\'s flag)', '10s')
  .action(async (opts: { controlPlanes: string; controlPlanePorts?: string; store: string; etcdPort: string; dataDir: string; port: string; nodeName?: string; rktStage1Image: string; nodeApiPort: string; apiServicePort?: string; sandboxName: string; podCidr: string; bridge: string; serviceCidr: string; dnsPort: string; stage1Policy?: string; nodes: string; nodeBridge: string; nodeNetwork: string; nodeMonitorGracePeriod?: string; defaultUnreachableTolerationSeconds?: string; defaultNotReadyTolerationSeconds?: string; containerRuntime: string; maxNodes?: string; minNodes?: string; nodeAllocatable?: string; scaleDownUnneededTime: string; scaleDownDelayAfterAdd: string; scaleDownUtilizationThreshold: string; scanInterval: string }) => {
    if (opts.containerRuntime !== 'rkt' && opts.containerRuntime !== 'docker') throw new InvalidInput(`--container-runtime=${opts.containerRuntime}: choose rkt or docker`);
    // A cluster that `stop` stopped comes back as it was made: its own options, not this command's defaults.
    const { restartStopped } = await import('./up.js');
    if (await restartStopped(path.resolve(opts.dataDir))) return;
    if (opts.containerRuntime === 'docker' && opts.apiServicePort) throw new UserError('--api-service-port: a docker node has no api-service (it serves rkt\'s v1alpha API, rkt\'s pods only)', { hint: 'drop --api-service-port; `stevedore pod list --container-runtime=docker` on the node lists its pods' });
    const nodes = Number(opts.nodes);
    if (opts.store !== 'sqlite' && opts.store !== 'etcd') throw new InvalidInput(`--store ${opts.store}: choose sqlite or etcd`, 'up starts the etcd itself; to use an etcd of your own, run `stevedore control-plane --store etcd:URL`');
    const etcdPort = Number(opts.etcdPort);
    if (!Number.isInteger(etcdPort) || etcdPort < 1 || etcdPort > 65534) throw new InvalidInput(`--etcd-port ${opts.etcdPort} is not a port number`, 'use a number between 1 and 65534 (the next port is etcd\'s peer port)');
    const store = opts.store === 'etcd' ? { kind: 'etcd' as const, etcdPort } : { kind: 'sqlite' as const };
    const { parseControlPlanes } = await import('./up-ha.js');
    const controlPlanes = parseControlPlanes(opts.controlPlanes, opts.controlPlanePorts, opts.store, Number(opts.port));
    if (opts.minNodes !== undefined && opts.maxNodes === undefined) throw new UserError('--min-nodes goes with --max-nodes', { hint: 'pass --max-nodes M to run the cluster autoscaler' });
    if (opts.nodeAllocatable && nodes === 1 && opts.maxNodes === undefined) throw new UserError('--node-allocatable is for node sandboxes (--nodes N or --max-nodes M)', { hint: 'add --nodes 2 or --max-nodes 2' });
    if (nodes !== 1 || opts.maxNodes !== undefined) {
      if (opts.containerRuntime !== 'rkt') throw new UserError('--nodes with --container-runtime=docker is not supported yet', { hint: 'use --nodes with the rkt runtime, or one docker node' });
      if (opts.nodeName || opts.apiServicePort) throw new UserError('--node-name and --api-service-port are for one node', { hint: 'with --nodes N the nodes are node-1…node-N and each api-service serves its own unix socket' });
      const { upNodes } = await import('./up-nodes.js');
      await upNodes({
        dataDir: path.resolve(opts.dataDir), port: Number(opts.port), nodeApiPort: Number(opts.nodeApiPort), nodeName: 'node-1',
        stage1: parseStage1Name(opts.rktStage1Image), sandboxName: opts.sandboxName, podCidr: opts.podCidr, bridge: opts.bridge, serviceCidr: opts.serviceCidr, dnsPort: Number(opts.dnsPort),
        stage1Policy: opts.stage1Policy ? path.resolve(opts.stage1Policy) : undefined,
        nodes, nodeBridge: opts.nodeBridge, nodeNetwork: opts.nodeNetwork, nodeMonitorGracePeriod: opts.nodeMonitorGracePeriod,
        defaultUnreachableTolerationSeconds: opts.defaultUnreachableTolerationSeconds === undefined ? undefined : Number(opts.defaultUnreachableTolerationSeconds),
        defaultNotReadyTolerationSeconds: opts.defaultNotReadyTolerationSeconds === undefined ? undefined : Number(opts.defaultNotReadyTolerationSeconds),
        store, controlPlanes,
        nodeAllocatable: opts.nodeAllocatable,
        autoscaler: opts.maxNodes === undefined ? undefined : {
          maxNodes: Number(opts.maxNodes), minNodes: opts.minNodes === undefined ? nodes : Number(opts.minNodes),
          scaleDownUnneededTime: opts.scaleDownUnneededTime, scaleDownDelayAfterAdd: opts.scaleDownDelayAfterAdd,
          scaleDownUtilizationThreshold: Number(opts.scaleDownUtilizationThreshold), scanInterval: opts.scanInterval,
        },
      });
      return;
    }
    const { up, defaultNodeName } = await import('./up.js');
    await up({
      dataDir: path.resolve(opts.dataDir), port: Number(opts.port), nodeApiPort: Number(opts.nodeApiPort), apiServicePort: opts.apiServicePort ? Number(opts.apiServicePort) : undefined, nodeName: opts.nodeName ?? defaultNodeName(),
      stage1: parseStage1Name(opts.rktStage1Image), sandboxName: opts.sandboxName, podCidr: opts.podCidr, bridge: opts.bridge, serviceCidr: opts.serviceCidr, dnsPort: Number(opts.dnsPort),
      stage1Policy: opts.stage1Policy ? path.resolve(opts.stage1Policy) : undefined, containerRuntime: opts.containerRuntime as 'rkt' | 'docker', store, controlPlanes,
    });
  });
program.command('api-lb')
  .description('the TCP load balancer `up --control-planes 3` starts in front of the control planes (kubectl\'s one address): each connection to the first healthy backend')
  .requiredOption('--listen <host:port>', 'where to listen')
  .requiredOption('--backend <host:port...>', 'the control planes, in order of preference')
  .requiredOption('--ca <file>', 'the cluster CA, to check the control planes\' /readyz')
  .action(async (opts: { listen: string; backend: string[]; ca: string }) => {
    const { runApiLoadBalancer, parseHostPort } = await import('./api-lb.js');
    await runApiLoadBalancer({ listen: parseHostPort(opts.listen, '--listen'), backends: opts.backend.map((b) => parseHostPort(b, '--backend')), caFile: opts.ca });
  });
program.command('cluster-autoscaler')
  .description('the cluster autoscaler of a `stevedore up --nodes N --max-nodes M` cluster (`up` starts it; docs/autoscaling.md): adds nodes for pods that do not fit, removes idle ones')
  .option('--data-dir <dir>', 'the directory `up` used', '.stevedore')
  .requiredOption('--max-nodes <n>', 'the node group\'s maximum size')
  .option('--min-nodes <n>', 'the node group\'s minimum size', '1')
  .option('--scale-down-unneeded-time <duration>', 'how long a node is unneeded before it goes', '10m')
  .option('--scale-down-delay-after-add <duration>', 'no scale-down this long after a scale-up', '10m')
  .option('--scale-down-utilization-threshold <ratio>', 'requested share of a node\'s cpu and memory under which it is unneeded', '0.5')
  .option('--scan-interval <duration>', 'how often to look', '10s')
  .action(async (opts: { dataDir: string; maxNodes: string; minNodes: string; scaleDownUnneededTime: string; scaleDownDelayAfterAdd: string; scaleDownUtilizationThreshold: string; scanInterval: string }) => {
    const { parseDuration } = await import('../common/format.js');
    const { runClusterAutoscaler } = await import('./cluster-autoscaler.js');
    const threshold = Number(opts.scaleDownUtilizationThreshold);
    if (!(threshold > 0 && threshold <= 1)) throw new InvalidInput(`--scale-down-utilization-threshold ${opts.scaleDownUtilizationThreshold} is not in (0, 1]`, 'the default is 0.5');
    await runClusterAutoscaler({
      dataDir: path.resolve(opts.dataDir), min: Number(opts.minNodes), max: Number(opts.maxNodes), utilizationThreshold: threshold,
      unneededMs: parseDuration(opts.scaleDownUnneededTime), delayAfterAddMs: parseDuration(opts.scaleDownDelayAfterAdd), scanIntervalMs: Math.max(500, parseDuration(opts.scanInterval)),
    });
  });
program.command('hollow-nodes')
  .description('run N hollow nodes in this one process (hollow-1…hollow-N: the real agent over a runtime that only pretends to run pods, as kubemark), each with its own node identity; until SIGTERM/Ctrl-C')
  .requiredOption('--count <n>', 'how many nodes')
  .requiredOption('--server <url>', 'the control plane URL the nodes register with, e.g. https://127.0.0.1:6443')
  .option('--control-plane-dir <dir>', 'the control plane\'s --data-dir, whose cluster CA issues each node\'s certificates (for `stevedore up`: <data dir>/control-plane)', '.stevedore/control-plane')
  .option('--data-dir <dir>', 'where each node\'s credentials and agent data go (<dir>/hollow-i); kept, so a restart reuses the identities', '.stevedore-hollow')
  .option('--name-prefix <prefix>', 'node names are <prefix>-1…<prefix>-N', 'hollow')
  .option('--node-api-port-base <port>', 'node i serves its node API on 127.0.0.1:(base+i)', '20000')
  .option('--start-delay <duration>', 'how long a pod takes to "start" on a hollow node', '50ms')
  .option('--heartbeat-seconds <n>', 'seconds between Lease renewals of each node (the agent\'s default: 10)')
  .option('--sync-period-seconds <n>', 'seconds between full pod sync passes of each node (the agent\'s default: 2)')
  .action(async (opts: { count: string; server: string; controlPlaneDir: string; dataDir: string; namePrefix: string; nodeApiPortBase: string; startDelay: string; heartbeatSeconds?: string; syncPeriodSeconds?: string }) => {
    const { hollowNodes, parseStartDelay } = await import('./hollow-nodes.js');
    await hollowNodes({
      count: Number(opts.count), server: opts.server, controlPlaneDir: path.resolve(opts.controlPlaneDir), dataDir: path.resolve(opts.dataDir), namePrefix: opts.namePrefix,
      nodeApiPortBase: Number(opts.nodeApiPortBase), startDelayMs: parseStartDelay(opts.startDelay),
      heartbeatSeconds: opts.heartbeatSeconds === undefined ? undefined : Number(opts.heartbeatSeconds),
      syncPeriodSeconds: opts.syncPeriodSeconds === undefined ? undefined : Number(opts.syncPeriodSeconds),
    });
  });
program.command('node')
  .description('a node of `stevedore up --nodes N`: stop or start its agent (a failure drill; its pods keep running), add one more, or drain and remove one')
  .argument('<action>', 'stop, start, add or remove')
  .argument('<name>', 'the node, e.g. node-2')
  .option('--data-dir <dir>', 'the directory `up` used', '.stevedore')
  .action(async (action: string, name: string, opts: { dataDir: string }) => {
    if (action !== 'stop' && action !== 'start' && action !== 'add' && action !== 'remove') throw new UserError(`unknown node action ${JSON.stringify(action)}`, { hint: 'use `stevedore node stop|start|add|remove NAME`' });
    const { nodeCommand } = await import('./up-nodes.js');
    await nodeCommand(path.resolve(opts.dataDir), action, name);
  });
program.command('stop')
  .description('stop a cluster of `stevedore up` and keep its data (objects, certificates, images, volumes); the next `up` brings the same cluster back')
  .option('--data-dir <dir>', 'the directory `up` used', '.stevedore')
  .action(async (opts: { dataDir: string }) => {
    const { down } = await import('./up.js');
    await down({ dataDir: path.resolve(opts.dataDir), keepData: true });
  });
program.command('down')
  .description('stop and remove everything `stevedore up` made')
  .option('--data-dir <dir>', 'the directory `up` used', '.stevedore')
  .action(async (opts: { dataDir: string }) => {
    const { down } = await import('./up.js');
    await down({ dataDir: path.resolve(opts.dataDir) });
  });
program.command('kubeconfig')
  .description('issue a client certificate for a user from the cluster CA and print a kubeconfig for it (RBAC decides what the user may do)')
  .requiredOption('--user <name>', 'the user name (the certificate\'s CN)')
  .option('--group <group...>', 'groups the user is in (the certificate\'s O); repeat for several')
  .option('--data-dir <dir>', 'the directory `up` used (or a control plane\'s --data-dir)', '.stevedore')
  .option('--days <n>', 'how long the certificate is valid', '365')
  .action(async (opts: { user: string; group?: string[]; dataDir: string; days: string }) => {
    const { userKubeconfig } = await import('../control-plane/pki.js');
    const dataDir = path.resolve(opts.dataDir);
    const days = Number(opts.days);
    if (!Number.isInteger(days) || days < 1) throw new UserError(`--days ${opts.days} is not a positive whole number`, { hint: 'pass e.g. --days 30' });
    // `up` keeps the control plane's data in <dir>/control-plane; a bare control plane in <dir> itself.
    const upLayout = await fs.access(path.join(dataDir, 'control-plane', 'pki', 'ca.key')).then(() => true, () => false);
    const pkiDir = upLayout ? path.join(dataDir, 'control-plane', 'pki') : path.join(dataDir, 'pki');
    process.stdout.write(await userKubeconfig(pkiDir, path.join(dataDir, 'kubeconfig'), opts.user, opts.group ?? [], days));
  });
program.command('control-plane')
  .description('run the thin control plane (a Kubernetes API subset): --data-dir D [--port 6443] [--kubeconfig F]')
  .allowUnknownOption()
  .helpOption(false)
  .argument('[args...]')
  .action(async (args: string[]) => {
    const { runControlPlaneCommand } = await import('../control-plane/main.js');
    await runControlPlaneCommand(args);
  });

const image = program.command('image').description('manage the image store');
const importCmd = image.command('import')
  .argument('<source>', 'OCI image layout (directory or tar) or docker-archive tar (docker save), optionally gzip\'d')
  .option('--name <ref>', 'name for an image the archive does not name')
  .description('import images into the store; prints their IDs');
for (const [flag, description] of IMAGE_LIMIT_OPTIONS) importCmd.option(flag, description);
importCmd
  .action(async (source: string, opts: { name?: string } & ImageLimitFlags) => {
    const { imageLimitsFromFlags } = await import('./image-pull.js');
    const limits = imageLimitsFromFlags(opts);
    const records = await withImageStore((images) => images.importPath(path.resolve(source), { name: opts.name, limits }));
    for (const r of records) process.stdout.write(`${r.id} ${r.names.join(',')}\n`);
  });
image.command('import-demo')
  .option('--name <name>', 'image name', 'busybox')
  .description("build the built-in demo image (the node's busybox-static) and import it as localhost/<name>:latest")
  .action(async (opts: { name: string }) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-demo-'));
    try {
      const { buildBusyboxImage } = await import('../runtime-rkt/image/demo-image.js');
      await buildBusyboxImage(dir, { name: opts.name, tag: 'latest' });
      const records = await withImageStore((images) => images.importPath(dir, { name: `localhost/${opts.name}:latest` }));
      for (const r of records) process.stdout.write(`${r.id} ${r.names.join(',')}\n`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
const pullCmd = image.command('pull')
  .argument('<ref>', 'image reference, e.g. registry.example.com/team/app:1.4 or …@sha256:…')
  .option('--insecure-registry <host[:port]...>', 'registries allowed over plain HTTP (loopback registries always are)')
  .option('--authfile <file>', 'docker-style credentials (default $REGISTRY_AUTH_FILE or ~/.docker/config.json)')
  .description('pull an image from an OCI/Docker registry into the store, with per-layer progress');
for (const [flag, description] of IMAGE_LIMIT_OPTIONS) pullCmd.option(flag, description);
pullCmd
  .action(async (ref: string, opts: { insecureRegistry?: string[]; authfile?: string } & ImageLimitFlags) => {
    const { pullCommandAction, imageLimitsFromFlags } = await import('./image-pull.js');
    const limits = imageLimitsFromFlags(opts);
    await withImageStore((images) => pullCommandAction(images, ref, { insecure: opts.insecureRegistry, authFile: opts.authfile, limits }));
  });
image.command('gc')
  .option('--high <percent>', 'start removing when the image filesystem is this full', '85')
  .option('--low <percent>', 'remove down to this', '80')
  .option('--min-age <duration>', 'also remove unused images not used for this long (e.g. 7d)')
  .option('--container-runtime <name>', 'the node\'s runtime: rkt (default: its image store) or docker (the engine\'s images)')
  .option('--docker-endpoint <socket>', 'docker: the engine, unix:///PATH (default: the node\'s own under <dir>/docker/engine)')
  .description('remove images no pod uses, least recently used first, when the disk is fuller than --high')
  .action(async (opts: { high: string; low: string; minAge?: string; containerRuntime?: string; dockerEndpoint?: string }) => {
    const { gcCommandAction } = await import('./image-pull.js');
    if (opts.containerRuntime !== undefined && opts.containerRuntime !== 'rkt' && opts.containerRuntime !== 'docker') throw new InvalidInput(`--container-runtime=${opts.containerRuntime}: choose rkt or docker`);
    if (opts.dockerEndpoint && opts.containerRuntime !== 'docker') throw new InvalidInput('--docker-endpoint is for --container-runtime=docker', 'add --container-runtime=docker, or drop --docker-endpoint');
    if (opts.containerRuntime === 'docker') {
      // The engine's images: what its containers use is kept by the GC itself (runtime-docker/image-gc.ts).
      const { connectDockerRuntime } = await import('../runtime-docker/index.js');
      const rt = await connectDockerRuntime({ dataDir: path.resolve(program.opts<GlobalOptions>().dir), dockerEndpoint: opts.dockerEndpoint });
      try {
        await gcCommandAction({ gc: (o) => rt.imageGc(o) }, new Set(), { highPercent: opts.high, lowPercent: opts.low, minAge: opts.minAge });
      } finally {
        await rt.close();
      }
      return;
    }
    await withRuntime(async (rt) => {
      const inUse = new Set((await rt.listPods()).flatMap((p) => p.apps.map((a) => a.image.id)));
      await gcCommandAction(rt.images, inUse, { highPercent: opts.high, lowPercent: opts.low, minAge: opts.minAge });
    });
  });
image.command('list').alias('ls')
  .option('-o, --output <format>', 'json for scripts')
  .description('list images in the store')
  .action(async (opts: { output?: string }) => {
    const images = await withImageStore((store) => store.list());
    if (opts.output === 'json') process.stdout.write(JSON.stringify(images, null, 2) + '\n');
    else process.stdout.write(table(['ID', 'NAME', 'SIZE', 'IMPORTED'], images.map((i) => [i.id.slice(7, 19), i.names.join(',') || '<none>', humanBytes(i.size), age(i.importedAt)])));
  });
image.command('rm')
  .argument('<refs...>', 'image names or IDs')
  .description('remove images no pod uses')
  .action(async (refs: string[]) => {
    await withRuntime(async (rt) => {
      const used = new Set((await rt.listPods()).flatMap((p) => p.apps.map((a) => a.image.id)));
      for (const ref of refs) {
        const img = await rt.images.resolve(ref);
        if (!img) throw new UserError(`no image "${ref}" in the store`, { hint: '`stevedore image list` shows the images' });
        if (used.has(img.id)) throw new UserError(`image ${ref} is used by a pod on this node`, { hint: 'remove the pods that use it first (`stevedore pod list`)' });
        const removed = await rt.images.remove(img.id);
        process.stdout.write(`${removed.id}\n`);
      }
    });
  });

program.command('gc')
  .description('remove exited pods older than the grace period, aborted prepares, orphaned units and IP leases of pods that are gone')
  .option('--grace-period <duration>', 'how long exited pods are kept', '30m')
  .option('--lease-grace-period <duration>', 'leave CNI leases younger than this alone (their pod may be starting in another process)', '60s')
  .action(async (opts: { gracePeriod: string; leaseGracePeriod: string }) => {
    const result = await withRuntime((rt) => rt.gc({ exitedGracePeriodMs: parseDuration(opts.gracePeriod), leaseGraceMs: parseDuration(opts.leaseGracePeriod) }));
    for (const uuid of result.removedPods) process.stdout.write(`removed pod ${uuid}\n`);
    for (const unit of result.orphanUnits) process.stdout.write(`stopped orphaned unit ${unit}\n`);
    for (const lease of result.releasedLeases) process.stdout.write(`released IP lease of ${lease}\n`);
  });

// `stevedore pod logs … | head` closes our stdout early; that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof UserError) {
    process.stderr.write(`error: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ''}`);
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
