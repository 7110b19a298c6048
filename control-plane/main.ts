import * as path from 'node:path';
import { Command } from 'commander';
import { InvalidInput } from '../common/errors.js';
import { parseDuration } from '../common/format.js';
import { startControlPlane } from './server.js';
import { validateNodeIpam, type NodeIpamOptions } from './controllers/node-ipam.js';
import { DEFAULT_KUBE_API_BURST, DEFAULT_KUBE_API_QPS } from './controllers/client.js';

export { startControlPlane } from './server.js';

/** A duration flag (1h, 30m, 90s or plain seconds) in whole seconds. */
export function durationSeconds(text: string, flag: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch {
    ms = NaN;
  }
  if (!(ms >= 1000)) throw new InvalidInput(`${flag} ${text} is not a duration of a second or more`, 'write it like 1h, 30m or 90s');
  return Math.round(ms / 1000);
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new InvalidInput(`${flag} ${text} is not a positive whole number`);
  return n;
}

/**
 * `stevedore control-plane --data-dir D [--port P] [--host H] [--kubeconfig F]`: runs until
 * SIGINT/SIGTERM. argv are the arguments after `control-plane`.
 */
export async function runControlPlaneCommand(argv: string[]): Promise<void> {
  if (argv[0] === 'node-credentials') return runNodeCredentialsCommand(argv.slice(1));
  const cmd = new Command('control-plane')
    .description('run the Stevedore control plane (a thin Kubernetes API server) in the foreground')
    .requiredOption('--data-dir <dir>', 'where the database, certificates and tokens live')
    .option('--store <spec>', 'where the objects live: sqlite:PATH (embedded; default sqlite:DATADIR/state.db) or etcd:URL[,URL...] (the client URLs of one etcd cluster)')
    .option('--leader-elect', 'run controllers and the scheduler only while this process holds the Lease kube-system/stevedore-controller-manager (several control planes on one etcd; kube-controller-manager\'s flag)')
    .option('--leader-elect-lease-duration <duration>', 'how long a Lease not renewed keeps other candidates waiting', '15s')
    .option('--leader-elect-renew-deadline <duration>', 'how long the leader tries to renew before it stops leading', '10s')
    .option('--leader-elect-retry-period <duration>', 'how often candidates try to acquire or renew', '2s')
    .option('--etcd-prefix <prefix>', 'the key prefix in etcd for --store etcd:… (kube-apiserver\'s flag)', '/registry')
    .option('--port <port>', 'HTTPS port', '6443')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--also-listen <address...>', 'more addresses to serve on, same port (e.g. the node bridge\'s for nodes in network namespaces of their own); added to the serving certificate\'s SANs when it is first made')
    .option('--kubeconfig <file>', 'write an admin kubeconfig here')
    .option('--log-level <level>', 'pino log level', process.env.STEVEDORE_LOG_LEVEL ?? 'info')
    .option('--event-ttl <duration>', 'how long Events live after their last write (kube-apiserver\'s flag; 1h, 30m, 90s)', '1h')
    .option('--max-events-per-namespace <n>', 'Events kept per namespace; the oldest go first', '5000')
    .option('--max-watches <n>', 'open watches in total', '2000')
    .option('--max-watches-per-client <n>', 'open watches per credential', '250')
    .option('--max-watch-timeout <duration>', 'the longest a watch lasts, whatever timeoutSeconds asks', '1h')
    .option('--horizontal-pod-autoscaler-sync-period <duration>', 'how often each HorizontalPodAutoscaler is evaluated (kube-controller-manager\'s flag)', '15s')
    .option('--kube-api-qps <n>', 'pods the workload controllers create per second, after a burst (kube-controller-manager\'s client rate limit)', String(DEFAULT_KUBE_API_QPS))
    .option('--kube-api-burst <n>', 'pods the workload controllers may create at once', String(DEFAULT_KUBE_API_BURST))
    .option('--node-monitor-grace-period <duration>', 'how long a node may miss its Lease renewals before it is Unknown and tainted unreachable (kube-controller-manager\'s flag)', '40s')
    .option('--default-not-ready-toleration-seconds <n>', 'how long new pods tolerate a not-ready node before eviction (kube-apiserver\'s flag)', '300')
    .option('--default-unreachable-toleration-seconds <n>', 'how long new pods tolerate an unreachable node before eviction (kube-apiserver\'s flag)', '300')
    .option('--service-cluster-ip-range <cidr>', 'where Services\' cluster IPs come from (must not overlap pod CIDRs)', '10.96.0.0/16')
    .option('--allocate-node-cidrs', 'give every Node without spec.podCIDR one from --cluster-cidr (kube-controller-manager\'s flag)')
    .option('--cluster-cidr <cidr>', 'pod addresses of the whole cluster, for --allocate-node-cidrs')
    .option('--node-cidr-mask-size <n>', 'prefix length of each node\'s pod CIDR', '24')
    .option('--service-node-port-range <range>', 'ports NodePort Services get', '30000-32767')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{ allocateNodeCidrs?: boolean; clusterCidr?: string; nodeCidrMaskSize: string; dataDir: string; store?: string; etcdPrefix: string; leaderElect?: boolean; leaderElectLeaseDuration: string; leaderElectRenewDeadline: string; leaderElectRetryPeriod: string; port: string; host: string; alsoListen?: string[]; kubeconfig?: string; logLevel: string; eventTtl: string; maxEventsPerNamespace: string; maxWatches: string; maxWatchesPerClient: string; maxWatchTimeout: string; horizontalPodAutoscalerSyncPeriod: string; kubeApiQps: string; kubeApiBurst: string; nodeMonitorGracePeriod: string; defaultNotReadyTolerationSeconds: string; defaultUnreachableTolerationSeconds: string; serviceClusterIpRange: string; serviceNodePortRange: string }>();
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInput(`--port ${o.port} is not a port number`, 'use a number between 1 and 65535');
  const cp = await startControlPlane({
    dataDir: path.resolve(o.dataDir), store: o.store, etcdPrefix: o.etcdPrefix, leaderElect: leaderElectionOf(o), port, host: o.host, alsoListen: o.alsoListen, kubeconfigPath: o.kubeconfig ? path.resolve(o.kubeconfig) : undefined, logLevel: o.logLevel,
    eventTtlSeconds: durationSeconds(o.eventTtl, '--event-ttl'),
    hpaSyncPeriodSeconds: durationSeconds(o.horizontalPodAutoscalerSyncPeriod, '--horizontal-pod-autoscaler-sync-period'),
    kubeApiQps: positiveInt(o.kubeApiQps, '--kube-api-qps'),
    kubeApiBurst: positiveInt(o.kubeApiBurst, '--kube-api-burst'),
    nodeMonitorGracePeriodSeconds: durationSeconds(o.nodeMonitorGracePeriod, '--node-monitor-grace-period'),
    defaultNotReadyTolerationSeconds: positiveInt(o.defaultNotReadyTolerationSeconds, '--default-not-ready-toleration-seconds'),
    defaultUnreachableTolerationSeconds: positiveInt(o.defaultUnreachableTolerationSeconds, '--default-unreachable-toleration-seconds'),
    maxEventsPerNamespace: positiveInt(o.maxEventsPerNamespace, '--max-events-per-namespace'),
    watchLimits: { maxTotal: positiveInt(o.maxWatches, '--max-watches'), maxPerClient: positiveInt(o.maxWatchesPerClient, '--max-watches-per-client'), maxTimeoutSeconds: durationSeconds(o.maxWatchTimeout, '--max-watch-timeout') },
    serviceClusterIpRange: o.serviceClusterIpRange, serviceNodePortRange: o.serviceNodePortRange,
    allocateNodeCidrs: nodeIpamOf(o),
  });
  process.stderr.write(`control plane listening on ${cp.url}${o.kubeconfig ? `; export KUBECONFIG=${path.resolve(o.kubeconfig)}` : ''}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await cp.close();
}

/** The --leader-elect-* durations, checked so the error names the flags (lease duration > renew deadline > retry period). */
function leaderElectionOf(o: { leaderElect?: boolean; leaderElectLeaseDuration: string; leaderElectRenewDeadline: string; leaderElectRetryPeriod: string }) {
  if (!o.leaderElect) return undefined;
  const leaseDurationSeconds = durationSeconds(o.leaderElectLeaseDuration, '--leader-elect-lease-duration');
  const renewDeadlineSeconds = durationSeconds(o.leaderElectRenewDeadline, '--leader-elect-renew-deadline');
  const retryPeriodSeconds = durationSeconds(o.leaderElectRetryPeriod, '--leader-elect-retry-period');
  if (!(leaseDurationSeconds > renewDeadlineSeconds && renewDeadlineSeconds > retryPeriodSeconds)) {
    throw new InvalidInput(`--leader-elect-lease-duration (${leaseDurationSeconds}s) must be longer than --leader-elect-renew-deadline (${renewDeadlineSeconds}s), which must be longer than --leader-elect-retry-period (${retryPeriodSeconds}s)`, 'e.g. 15s, 10s and 2s (the defaults)');
  }
  return { leaseDurationSeconds, renewDeadlineSeconds, retryPeriodSeconds };
}

/** --allocate-node-cidrs needs --cluster-cidr; checked here so the error names the flags. */
function nodeIpamOf(o: { allocateNodeCidrs?: boolean; clusterCidr?: string; nodeCidrMaskSize: string }): NodeIpamOptions | undefined {
  if (!o.allocateNodeCidrs) {
    if (o.clusterCidr) throw new InvalidInput('--cluster-cidr is only used with --allocate-node-cidrs', 'add --allocate-node-cidrs, or drop --cluster-cidr');
    return undefined;
  }
  if (!o.clusterCidr) throw new InvalidInput('--allocate-node-cidrs needs --cluster-cidr', 'e.g. --cluster-cidr 10.88.0.0/16 (node pod CIDRs are cut from it)');
  return validateNodeIpam({ clusterCidr: o.clusterCidr, nodeCidrMaskSize: Number(o.nodeCidrMaskSize) });
}

/**
 * `stevedore control-plane node-credentials --data-dir D --node-name N --node-ip IP [--node-ip IP2]
 * --server URL --out DIR`: a node's identity from the cluster CA (what `kubeadm join` ends with):
 * DIR/kubeconfig (client certificate CN system:node:N, O system:nodes, embedded), DIR/ca.crt,
 * DIR/kubelet.crt and DIR/kubelet.key (the node API's serving pair, SANs = the addresses and N).
 */
async function runNodeCredentialsCommand(argv: string[]): Promise<void> {
  const cmd = new Command('node-credentials')
    .description("issue a node's client certificate (kubeconfig) and node API serving certificate from the cluster CA")
    .requiredOption('--data-dir <dir>', "the control plane's data directory (holds the CA)")
    .requiredOption('--node-name <name>', 'the node (its certificate says system:node:<name>)')
    .requiredOption('--node-ip <address...>', 'address(es) the control plane reaches the node API at (the Node\'s InternalIP)')
    .requiredOption('--server <url>', 'the control plane URL the node\'s kubeconfig points at')
    .requiredOption('--out <dir>', 'where to write kubeconfig, ca.crt, kubelet.crt and kubelet.key')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{ allocateNodeCidrs?: boolean; clusterCidr?: string; nodeCidrMaskSize: string; dataDir: string; nodeName: string; nodeIp: string[]; server: string; out: string }>();
  try {
    new URL(o.server);
  } catch {
    throw new InvalidInput(`--server ${o.server} is not a URL`, 'pass the control plane URL, e.g. https://10.0.0.1:6443');
  }
  const { issueNodeCredentials, writeNodeCredentials, nodeCredentialFiles } = await import('./pki.js');
  const creds = await issueNodeCredentials(o.dataDir, o.nodeName, o.nodeIp);
  const files = nodeCredentialFiles(path.resolve(o.out));
  await writeNodeCredentials(creds, o.server, files, o.nodeName);
  process.stdout.write(`node ${o.nodeName}: kubeconfig ${files.kubeconfig}, serving certificate ${files.servingCert} (key ${files.servingKey}), CA ${files.caCert}\n` +
    `agent flags: --kubeconfig ${files.kubeconfig} --tls-cert-file ${files.servingCert} --tls-private-key-file ${files.servingKey} --client-ca-file ${files.caCert}\n`);
}
