import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import { parse } from 'yaml';
import { InvalidInput } from '../common/errors.js';
import { parseDuration } from '../common/format.js';
import { cpuMillis, memoryBytes } from '../common/quantity.js';
import { ISOLATION_HANDLERS as STAGE1_NAMES, KVM_ACCEL_MODES, type IsolationHandler as Stage1Name, type KvmAccelMode } from '../runtime-api/handlers.js';
import { parseByteSize, parseCount, resolveLimits, type ImageLimits } from '../runtime-api/image-limits.js';

/** Everything the agent can be told, by flag or by config file (flags win). */
export interface AgentConfig {
  /** hollow: pods only pretend to run (runtime-hollow/, the hollow-nodes command's scale tests). */
  containerRuntime: 'rkt' | 'docker' | 'hollow';
  kubeconfig: string;
  nodeName: string;
  /** Default stage1 for pods that do not pick one (kubelet's --rkt-stage1-image). */
  rktStage1Image: Stage1Name;
  /** kvm pods: auto (hardware KVM if the boot probe at start passes, else TCG), kvm (refuse without it), tcg. */
  kvmAccel: KvmAccelMode;
  dataDir: string;
  dbusAddress?: string;
  /** Address the control plane reaches this node's API at (Node InternalIP). */
  nodeIP: string;
  /** Port of the node API (kubelet's 10250). */
  port: number;
  /** Node API serving certificate and key (kubelet's --tls-cert-file/--tls-private-key-file); unset: a self-signed one the control plane will not trust. */
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  /** CA whose client certificates the node API accepts (kubelet's --client-ca-file); unset: every request but /healthz is refused. */
  clientCaFile?: string;
  /** Client certificate CNs the node API serves (default: the control plane's, kube-apiserver-kubelet-client). */
  nodeApiAllowedClients: string[];
  /** Retired: the node API no longer takes bearer tokens. Kept so a config naming it gets a clear error. */
  nodeApiTokenFile?: string;
  /** Seconds between full reconcile passes (events trigger passes in between). */
  syncPeriodSeconds: number;
  /** Seconds between Lease renewals. */
  heartbeatSeconds: number;
  /** Seconds between samples of container and node usage (cAdvisor's housekeeping interval): the window of `kubectl top`. */
  statsIntervalSeconds: number;
  maxPods: number;
  /** Resources kept back from pods (kubelet's --system-reserved, `cpu=500m,memory=1Gi`): the Node's allocatable is its capacity less these. */
  systemReserved?: string;
  /** Registries the agent may pull from over plain HTTP (loopback ones always may). */
  insecureRegistries: string[];
  /** This node's pod CIDR (Node spec.podCIDR): the default network's host-local range. */
  podCidr: string;
  /** CNI network configs; default <dataDir>/cni/net.d (a local node). Real nodes: /etc/cni/net.d. */
  cniConfDir?: string;
  /** CNI plugin dirs; default /usr/lib/cni, /opt/cni/bin. */
  cniBinDirs?: string[];
  /** Bridge of the default CNI network the agent writes when the conf dir has none. */
  cniBridge: string;
  /** FlexVolume drivers (kubelet's --volume-plugin-dir); default <dataDir>/volume-plugins. */
  volumePluginDir?: string;
  /** Node stage1 policy file (agent/stage1-policy.ts): forbidden stage1s, minimums per namespace or labels. */
  stage1Policy?: string;
  /** Image pull caps (runtime-api/image-limits.ts): bytes or quantities (`64Gi`); unset means the default. */
  imageMaxLayerSize?: number | string;
  imageMaxImageSize?: number | string;
  imageMaxLayerEntries?: number | string;
  imageMaxTarHeaderSize?: number | string;
  /** The node's service proxy: nftables (default; agent/service-proxy.ts) or none (another proxy does it). */
  proxyMode: 'nftables' | 'none';
  /** The nftables table the proxy owns (`table ip <name>`). */
  proxyTable: string;
  /** Pod addresses of the whole cluster (kube-proxy's --cluster-cidr); default: this node's pod CIDR. */
  clusterCidr?: string;
  /** Route every other Node's spec.podCIDR via its InternalIP in this node's netns (host-gw, agent/node-routes.ts); only for nodes with a netns of their own. */
  routePodCidrs?: boolean;
  /** Take the pod CIDR from this Node's spec.podCIDR, as the control plane's node IPAM allocates it (--allocate-node-cidrs), instead of --pod-cidr. */
  podCidrFromNode?: boolean;
  /** Cluster DNS address(es) pods get in resolv.conf (kubelet's --cluster-dns); unset: ClusterFirst falls back to Default, as the kubelet. */
  clusterDNS: string[];
  /** The cluster's DNS domain (kubelet's --cluster-domain). */
  clusterDomain: string;
  /** Port this node's cluster DNS server listens on (all addresses); the proxy redirects the first --cluster-dns address:53 there. */
  clusterDnsPort: number;
  /** exec/attach/port-forward streams with no traffic this long are closed (kubelet's streamingConnectionIdleTimeout; a duration, default 4h). */
  streamingConnectionIdleTimeout?: string;
  /** exec/attach/port-forward streams open at once on this node; one more is answered 429 (default 64). */
  maxStreams?: number;
  /**
   * Docker: the engine's socket (the kubelet's --docker-endpoint), unix:///PATH or /PATH. Unset: the
   * agent runs the node's own dockerd (its socket under <dataDir>/docker/engine), as `stevedore up` does.
   */
  dockerEndpoint?: string;
}

const KEYS: Array<keyof AgentConfig> = ['containerRuntime', 'kubeconfig', 'nodeName', 'rktStage1Image', 'kvmAccel', 'dataDir', 'dbusAddress', 'nodeIP', 'port', 'tlsCertFile', 'tlsPrivateKeyFile', 'clientCaFile', 'nodeApiAllowedClients', 'nodeApiTokenFile', 'syncPeriodSeconds', 'heartbeatSeconds', 'statsIntervalSeconds', 'maxPods', 'systemReserved', 'insecureRegistries', 'podCidr', 'cniConfDir', 'cniBinDirs', 'cniBridge', 'volumePluginDir', 'stage1Policy', 'imageMaxLayerSize', 'imageMaxImageSize', 'imageMaxLayerEntries', 'imageMaxTarHeaderSize', 'proxyMode', 'proxyTable', 'clusterCidr', 'routePodCidrs', 'podCidrFromNode', 'clusterDNS', 'clusterDomain', 'clusterDnsPort', 'streamingConnectionIdleTimeout', 'maxStreams', 'dockerEndpoint'];

export function defaultConfig(): Omit<AgentConfig, 'kubeconfig'> {
  return {
    containerRuntime: 'rkt', nodeName: os.hostname().toLowerCase(), rktStage1Image: 'namespaces', kvmAccel: 'auto', dataDir: '/var/lib/stevedore',
    nodeIP: '127.0.0.1', port: 10250, nodeApiAllowedClients: ['kube-apiserver-kubelet-client'], syncPeriodSeconds: 2, heartbeatSeconds: 10, statsIntervalSeconds: 10, maxPods: 110, insecureRegistries: [],
    podCidr: '10.88.0.0/16',
    cniBridge: 'stevedore0',
    proxyMode: 'nftables',
    proxyTable: 'stevedore-proxy',
    clusterDNS: [],
    clusterDomain: 'cluster.local',
    clusterDnsPort: 10053,
  };
}

/** Merge defaults, the config file (YAML/JSON, keys as in AgentConfig) and flags; check the result. */
export async function loadAgentConfig(flags: Partial<AgentConfig> & { config?: string }): Promise<AgentConfig> {
  let fromFile: Partial<AgentConfig> = {};
  if (flags.config) {
    const text = await fs.readFile(flags.config, 'utf8').catch((err) => { throw new InvalidInput(`cannot read agent config ${flags.config}: ${(err as Error).message}`); });
    const parsed = parse(text) as Record<string, unknown> | null;
    if (parsed === null || typeof parsed !== 'object') throw new InvalidInput(`agent config ${flags.config} must be a YAML mapping`);
    const unknown = Object.keys(parsed).filter((k) => !KEYS.includes(k as keyof AgentConfig));
    if (unknown.length) throw new InvalidInput(`agent config ${flags.config}: unknown field(s) ${unknown.join(', ')}`, `known fields: ${KEYS.join(', ')}`);
    fromFile = parsed as Partial<AgentConfig>;
  }
  const defined = Object.fromEntries(Object.entries(flags).filter(([k, v]) => v !== undefined && k !== 'config'));
  const cfg = { ...defaultConfig(), ...fromFile, ...defined } as AgentConfig;
  if (cfg.nodeApiTokenFile !== undefined) {
    throw new InvalidInput('--node-api-token-file (nodeApiTokenFile) was replaced by --client-ca-file: the node API no longer accepts bearer tokens, only the control plane\'s client certificate from the cluster CA',
      'drop --node-api-token-file and pass --client-ca-file <cluster ca.crt> with --tls-cert-file/--tls-private-key-file (`stevedore control-plane node-credentials` writes all three)');
  }
  if ((cfg.tlsCertFile === undefined) !== (cfg.tlsPrivateKeyFile === undefined)) throw new InvalidInput('--tls-cert-file and --tls-private-key-file go together', 'pass both, or neither');
  if (!Array.isArray(cfg.nodeApiAllowedClients) || !cfg.nodeApiAllowedClients.length || cfg.nodeApiAllowedClients.some((c) => typeof c !== 'string' || !c)) {
    throw new InvalidInput('nodeApiAllowedClients must be a non-empty list of certificate common names', 'the default is [kube-apiserver-kubelet-client], the control plane\'s identity');
  }
  if (!cfg.kubeconfig) throw new InvalidInput('the agent needs --kubeconfig (the control plane to register with)');
  if (cfg.containerRuntime !== 'rkt' && cfg.containerRuntime !== 'docker' && cfg.containerRuntime !== 'hollow') throw new InvalidInput(`--container-runtime=${cfg.containerRuntime}: supported runtimes are rkt, docker and hollow`);
  if (!STAGE1_NAMES.includes(cfg.rktStage1Image)) throw new InvalidInput(`--rkt-stage1-image=${cfg.rktStage1Image}: choose one of ${STAGE1_NAMES.join(', ')}`);
  if (!KVM_ACCEL_MODES.includes(cfg.kvmAccel)) throw new InvalidInput(`unknown --kvm-accel "${cfg.kvmAccel}"`, `choose one of: ${KVM_ACCEL_MODES.join(', ')}`);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(cfg.nodeName)) throw new InvalidInput(`node name "${cfg.nodeName}" is not a valid DNS subdomain`, 'pass --node-name');
  for (const k of ['port', 'syncPeriodSeconds', 'heartbeatSeconds', 'statsIntervalSeconds', 'maxPods', 'clusterDnsPort'] as const) {
    cfg[k] = Number(cfg[k]);
    if (!Number.isFinite(cfg[k]) || cfg[k] < 0) throw new InvalidInput(`${k} must be a non-negative number`);
  }
  if (cfg.statsIntervalSeconds < 1) throw new InvalidInput(`statsIntervalSeconds must be at least 1 (got ${cfg.statsIntervalSeconds})`);
  imageLimitsOf(cfg); // refuse a bad cap at start, not at the first pull
  if (!Array.isArray(cfg.clusterDNS) || cfg.clusterDNS.some((a) => typeof a !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(a))) throw new InvalidInput(`--cluster-dns=${cfg.clusterDNS}: give IPv4 addresses`, 'e.g. --cluster-dns 10.96.0.10 (the kube-dns Service\'s cluster IP)');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(cfg.clusterDomain)) throw new InvalidInput(`--cluster-domain=${cfg.clusterDomain} is not a DNS domain`, 'e.g. cluster.local');
  if (cfg.proxyMode !== 'nftables' && cfg.proxyMode !== 'none') throw new InvalidInput(`--proxy-mode=${cfg.proxyMode}: choose nftables or none`);
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(cfg.proxyTable)) throw new InvalidInput(`--proxy-table=${cfg.proxyTable} is not a usable nftables table name`, 'use letters, digits, - and _ (e.g. stevedore-proxy)');
  if (cfg.clusterCidr !== undefined && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cfg.clusterCidr)) throw new InvalidInput(`--cluster-cidr=${cfg.clusterCidr} is not an IPv4 CIDR`, 'e.g. 10.88.0.0/16 (every node\'s pod CIDR inside it)');
  streamingLimitsOf(cfg);
  systemReservedOf(cfg);
  if (cfg.dockerEndpoint !== undefined) {
    if (cfg.containerRuntime !== 'docker') throw new InvalidInput(`--docker-endpoint is for --container-runtime=docker (this node runs ${cfg.containerRuntime})`, 'drop --docker-endpoint, or add --container-runtime=docker');
    if (typeof cfg.dockerEndpoint !== 'string' || !/^(unix:\/\/)?\/\S+$/.test(cfg.dockerEndpoint)) {
      throw new InvalidInput(`--docker-endpoint=${String(cfg.dockerEndpoint)}: only a unix socket is supported`, 'e.g. unix:///var/run/docker.sock (tcp:// engines are refused: their API is root on the node without TLS)');
    }
  }
  return cfg;
}

/** The image caps the config sets (the rest stay at their defaults), checked. */
export function imageLimitsOf(cfg: Pick<AgentConfig, 'imageMaxLayerSize' | 'imageMaxImageSize' | 'imageMaxLayerEntries' | 'imageMaxTarHeaderSize'>): ImageLimits {
  const set: Partial<ImageLimits> = {};
  if (cfg.imageMaxLayerSize !== undefined) set.maxLayerBytes = parseByteSize(cfg.imageMaxLayerSize, 'imageMaxLayerSize');
  if (cfg.imageMaxImageSize !== undefined) set.maxImageBytes = parseByteSize(cfg.imageMaxImageSize, 'imageMaxImageSize');
  if (cfg.imageMaxLayerEntries !== undefined) set.maxLayerEntries = parseCount(cfg.imageMaxLayerEntries, 'imageMaxLayerEntries');
  if (cfg.imageMaxTarHeaderSize !== undefined) set.maxTarHeaderBytes = parseByteSize(cfg.imageMaxTarHeaderSize, 'imageMaxTarHeaderSize');
  return resolveLimits(set);
}

/** The node API's stream limits (agent/streaming.ts) the config sets, checked. */
export function streamingLimitsOf(cfg: Pick<AgentConfig, 'streamingConnectionIdleTimeout' | 'maxStreams'>): { idleTimeoutMs?: number; maxStreams?: number } {
  const out: { idleTimeoutMs?: number; maxStreams?: number } = {};
  if (cfg.streamingConnectionIdleTimeout !== undefined) {
    out.idleTimeoutMs = parseDuration(String(cfg.streamingConnectionIdleTimeout));
    if (out.idleTimeoutMs <= 0) throw new InvalidInput('streamingConnectionIdleTimeout must be longer than 0', 'the default is 4h, as the kubelet\'s');
  }
  if (cfg.maxStreams !== undefined) {
    out.maxStreams = Number(cfg.maxStreams);
    if (!Number.isInteger(out.maxStreams) || out.maxStreams < 1) throw new InvalidInput(`maxStreams must be a whole number of at least 1, not ${JSON.stringify(cfg.maxStreams)}`, 'the default is 64');
  }
  return out;
}

/** --system-reserved (`cpu=500m,memory=1Gi`, the kubelet's form) in numbers; unset: nothing reserved. */
export function systemReservedOf(cfg: Pick<AgentConfig, 'systemReserved'>): { cpuMillis: number; memoryBytes: number } {
  const out = { cpuMillis: 0, memoryBytes: 0 };
  if (cfg.systemReserved === undefined || cfg.systemReserved === '') return out;
  for (const pair of String(cfg.systemReserved).split(',')) {
    const [key, value] = pair.split('=').map((x) => x.trim());
    const bad = () => new InvalidInput(`--system-reserved=${cfg.systemReserved}: ${JSON.stringify(pair)} is not cpu=QUANTITY or memory=QUANTITY`, 'e.g. --system-reserved cpu=500m,memory=1Gi (the kubelet\'s form)');
    if (!value) throw bad();
    try {
      if (key === 'cpu') out.cpuMillis = cpuMillis(value, 'system-reserved cpu');
      else if (key === 'memory') out.memoryBytes = memoryBytes(value, 'system-reserved memory');
      else throw bad();
    } catch {
      throw bad();
    }
  }
  return out;
}
