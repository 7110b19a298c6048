import type { Command } from 'commander';
import type { AgentConfig } from './config.js';
import type { RuntimeFactories } from './runtime.js';

const loadAgentConfig = async (flags: Parameters<typeof import('./config.js').loadAgentConfig>[0]) => (await import('./config.js')).loadAgentConfig(flags);

type AgentFlags = Partial<AgentConfig> & { config?: string };

function agentOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'agent config file (YAML; flags override it)')
    .option('--container-runtime <name>', 'rkt (default), docker, or hollow (pods only pretend to run: scale tests)')
    .option('--docker-endpoint <socket>', 'docker: the engine to use, unix:///PATH (e.g. unix:///var/run/docker.sock); default: the agent runs the node\'s own dockerd (socket under <data dir>/docker/engine)')
    .option('--kubeconfig <file>', 'kubeconfig of the control plane to register with')
    .option('--node-name <name>', 'this node\'s name (default: hostname)')
    .option('--rkt-stage1-image <name>', 'default stage1: fly, namespaces (default) or kvm')
    .option('--stage1-policy <file>', 'node stage1 and host-access policy (YAML: forbid, require minimums, allowHostAccess per namespace or labels); without one, fly, hostNetwork, hostPID, hostIPC and privileged are refused for every pod')
    .option('--kvm-accel <mode>', 'kvm pods: auto (default: hardware KVM if a boot probe at start passes, else TCG emulation), kvm (refuse VM pods without it) or tcg')
    .option('--node-ip <address>', 'address the control plane reaches this node at', undefined)
    .option('--port <port>', 'node API port (default 10250)')
    .option('--tls-cert-file <file>', 'node API serving certificate from the cluster CA (default: a self-signed one the control plane will not trust)')
    .option('--tls-private-key-file <file>', 'key of --tls-cert-file')
    .option('--client-ca-file <file>', 'CA whose client certificates the node API accepts (the cluster CA); without it only /healthz is served')
    .option('--node-api-allowed-client <cn...>', 'client certificate CNs the node API serves (default kube-apiserver-kubelet-client)')
    .option('--node-api-token-file <file>', 'retired: replaced by --client-ca-file (the agent refuses to start with it)')
    .option('--sync-period-seconds <n>', 'seconds between full reconcile passes (default 2)')
    .option('--heartbeat-seconds <n>', 'seconds between lease renewals (default 10)')
    .option('--stats-interval-seconds <n>', 'seconds between samples of container and node CPU and memory usage, the window `kubectl top` reports (default 10)')
    .option('--system-reserved <list>', 'resources kept back from pods, e.g. cpu=500m,memory=1Gi (kubelet\'s flag): the Node\'s allocatable is its capacity less these')
    .option('--insecure-registry <host[:port]...>', 'registries to pull from over plain HTTP')
    .option('--cni-bridge <name>', 'bridge of the default CNI network (default stevedore0)')
    .option('--pod-cidr <cidr>', 'this node\'s pod CIDR, for the default CNI network (default 10.88.0.0/16)')
    .option('--cni-conf-dir <dir>', 'CNI network configs (default <data dir>/cni/net.d; real nodes: /etc/cni/net.d)')
    .option('--cni-bin-dir <dir...>', 'CNI plugin directories (default /usr/lib/cni /opt/cni/bin)')
    .option('--volume-plugin-dir <dir>', 'FlexVolume drivers, <vendor>~<driver>/<driver> (default <data dir>/volume-plugins; the kubelet\'s: /usr/libexec/kubernetes/kubelet-plugins/volume/exec)')
    .option('--image-max-layer-size <size>', 'refuse image layers larger than this uncompressed (default 64Gi)')
    .option('--image-max-image-size <size>', 'refuse images whose layers are larger than this together, uncompressed (default 128Gi)')
    .option('--image-max-layer-entries <n>', 'refuse image layers with more entries than this (default 1048576)')
    .option('--proxy-mode <mode>', 'the node\'s service proxy: nftables (default) or none')
    .option('--proxy-table <name>', 'the nftables table the service proxy owns (default stevedore-proxy)')
    .option('--pod-cidr-from-node', 'take the pod CIDR from this Node\'s spec.podCIDR, which the control plane allocates (control-plane --allocate-node-cidrs), instead of --pod-cidr; waits for it at start')
    .option('--route-pod-cidrs', 'route every other node\'s pod CIDR through its InternalIP (host-gw, as flannel\'s host-gw); only on a node with a network namespace of its own (stevedore up --nodes N)')
    .option('--cluster-cidr <cidr>', 'pod addresses of the whole cluster: service traffic from elsewhere is masqueraded (default: --pod-cidr)')
    .option('--cluster-dns <address...>', 'cluster DNS address(es) for pods\' resolv.conf (kubelet\'s flag); this node serves the first one (see --cluster-dns-port)')
    .option('--cluster-domain <domain>', 'the cluster\'s DNS domain (default cluster.local)')
    .option('--cluster-dns-port <port>', 'port of this node\'s cluster DNS server, on all addresses; the service proxy redirects --cluster-dns:53 to it (default 10053)')
    .option('--image-max-tar-header-size <size>', 'refuse tar extension headers (PAX, GNU long names) larger than this (default 1Mi, at most 4Mi)')
    .option('--streaming-connection-idle-timeout <duration>', 'close exec/attach/port-forward streams idle this long (default 4h)')
    .option('--max-streams <n>', 'exec/attach/port-forward streams open at once on this node (default 64)');
}

function flagsToConfig(flags: Record<string, unknown>, dataDir: string, dbusAddress?: string): AgentFlags {
  return {
    config: flags.config as string | undefined,
    containerRuntime: flags.containerRuntime as AgentConfig['containerRuntime'],
    dockerEndpoint: flags.dockerEndpoint as string | undefined,
    kubeconfig: flags.kubeconfig as string,
    nodeName: flags.nodeName as string,
    rktStage1Image: flags.rktStage1Image as AgentConfig['rktStage1Image'],
    kvmAccel: flags.kvmAccel as AgentConfig['kvmAccel'],
    nodeIP: flags.nodeIp as string,
    port: flags.port === undefined ? undefined : Number(flags.port),
    tlsCertFile: flags.tlsCertFile as string | undefined,
    tlsPrivateKeyFile: flags.tlsPrivateKeyFile as string | undefined,
    clientCaFile: flags.clientCaFile as string | undefined,
    nodeApiAllowedClients: flags.nodeApiAllowedClient as string[] | undefined,
    nodeApiTokenFile: flags.nodeApiTokenFile as string | undefined,
    syncPeriodSeconds: flags.syncPeriodSeconds === undefined ? undefined : Number(flags.syncPeriodSeconds),
    heartbeatSeconds: flags.heartbeatSeconds === undefined ? undefined : Number(flags.heartbeatSeconds),
    statsIntervalSeconds: flags.statsIntervalSeconds === undefined ? undefined : Number(flags.statsIntervalSeconds),
    systemReserved: flags.systemReserved as string | undefined,
    insecureRegistries: flags.insecureRegistry as string[] | undefined,
    podCidr: flags.podCidr as string | undefined,
    cniBridge: flags.cniBridge as string | undefined,
    cniConfDir: flags.cniConfDir as string | undefined,
    cniBinDirs: flags.cniBinDir as string[] | undefined,
    volumePluginDir: flags.volumePluginDir as string | undefined,
    stage1Policy: flags.stage1Policy as string | undefined,
    imageMaxLayerSize: flags.imageMaxLayerSize as string | undefined,
    imageMaxImageSize: flags.imageMaxImageSize as string | undefined,
    imageMaxLayerEntries: flags.imageMaxLayerEntries as string | undefined,
    imageMaxTarHeaderSize: flags.imageMaxTarHeaderSize as string | undefined,
    proxyMode: flags.proxyMode as AgentConfig['proxyMode'] | undefined,
    proxyTable: flags.proxyTable as string | undefined,
    clusterCidr: flags.clusterCidr as string | undefined,
    routePodCidrs: flags.routePodCidrs === true ? true : undefined,
    podCidrFromNode: flags.podCidrFromNode === true ? true : undefined,
    clusterDNS: flags.clusterDns as string[] | undefined,
    clusterDomain: flags.clusterDomain as string | undefined,
    clusterDnsPort: flags.clusterDnsPort === undefined ? undefined : Number(flags.clusterDnsPort),
    streamingConnectionIdleTimeout: flags.streamingConnectionIdleTimeout as string | undefined,
    maxStreams: flags.maxStreams === undefined ? undefined : Number(flags.maxStreams),
    dataDir: flags.config ? undefined : dataDir,
    dbusAddress,
  };
}

const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

export function registerAgentCommands(program: Command, globals: () => { dir: string; dbusAddress?: string; dirGiven: boolean; kvmAccel?: string }, runtimes: RuntimeFactories): void {
  const agent = agentOptions(program.command('agent').description('run the node agent (normally as the stevedore-agent systemd service)'))
    .action(async (flags: Record<string, unknown>) => {
      const g = globals();
      const cfg = await loadAgentConfig({ ...flagsToConfig({ kvmAccel: g.kvmAccel, ...defined(flags) }, g.dir, g.dbusAddress), ...(g.dirGiven ? { dataDir: g.dir } : {}) });
      const { runAgent } = await import('./agent.js');
      await runAgent(cfg, runtimes);
    });
  agentOptions(agent.command('install').description('write the agent config and systemd unit, enable it (and start it with --now)'))
    .option('--now', 'start the agent too')
    .option('--config-path <file>', 'where to write the agent config', '/etc/stevedore/agent.yaml')
    .option('--unit-dir <dir>', 'where to write the unit', '/etc/systemd/system')
    .action(async (own: Record<string, unknown>, cmd: Command) => {
      // Commander hands flags it also knows on `agent` to the parent: merge both.
      const flags = { ...cmd.parent!.opts(), ...Object.fromEntries(Object.entries(own).filter(([, v]) => v !== undefined)) };
      const g = globals();
      const cfg = await loadAgentConfig({ ...flagsToConfig({ kvmAccel: g.kvmAccel, ...defined(flags) }, g.dir, g.dbusAddress), dataDir: g.dir });
      const { installAgent } = await import('./install.js');
      await installAgent(cfg, { configPath: flags.configPath as string, unitDir: flags.unitDir as string, now: flags.now === true });
      process.stdout.write(`installed stevedore-agent.service (config ${flags.configPath})${flags.now ? ' and started it' : ''}\n`);
    });
}
