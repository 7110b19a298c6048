import { createLogger, type Logger } from '../common/log.js';
import { streamingLimitsOf, type AgentConfig } from './config.js';
import { EventRecorder } from './events.js';
import { kubeClients } from './kube.js';
import { startNodeApi } from './node-api.js';
import { NodeHeartbeat } from './node.js';
import { sdNotify, watchdogIntervalMs } from './notify.js';
import { PodSync } from './pod-sync.js';
import { loadStage1Policy } from './stage1-policy.js';
import { openRuntime, type RuntimeFactories } from './runtime.js';
import { StatsCollector } from './stats.js';
import { nodeApiTls } from './tls.js';
import { ServiceProxy } from './service-proxy.js';
import { NodeRoutes, podCidrFromNode } from './node-routes.js';
import { ClusterDns } from './cluster-dns.js';
import { UserError } from '../common/errors.js';

const GC_PERIOD_MS = 60_000;
const VOLUME_REFRESH_MS = 10_000;

/**
 * The node agent: registers the Node, keeps its Lease fresh, syncs pods bound
 * to it into the runtime and reports their status. It owns no pod process:
 * pods are systemd units, so the agent can crash, restart or be upgraded
 * while they run, and re-adopts them on start (they are found by listing).
 */
export async function runAgent(cfg: AgentConfig, runtimes: RuntimeFactories): Promise<void> {
  const agent = await startAgent(cfg, runtimes, { systemd: true });
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve());
  });
  sdNotify('STOPPING=1');
  await agent.stop();
  process.exit(0);
}

/** A running agent; stop() ends its loops and servers and closes its runtime (pods keep running). */
export interface RunningAgent {
  readonly nodeName: string;
  stop(): Promise<void>;
}

/**
 * Start one agent. Everything it holds hangs off this call (no module-level
 * state), so one process can host many: the hollow-nodes command runs N of
 * them side by side. `systemd`: talk to systemd's notify socket (READY, the
 * watchdog), only for the agent that is the process; `log` overrides the
 * logger (hollow nodes share one, quieter).
 */
export async function startAgent(cfg: AgentConfig, runtimes: RuntimeFactories, opts: { systemd?: boolean; log?: Logger } = {}): Promise<RunningAgent> {
  const log = opts.log ?? createLogger('agent', process.env.STEVEDORE_LOG_LEVEL ?? 'info');
  // A policy that cannot be read stops the agent before it starts anything: running pods unchecked is worse.
  const policy = await loadStage1Policy(cfg.stage1Policy);
  const kube = kubeClients(cfg.kubeconfig);
  // The default CNI network is made from the pod CIDR when the runtime opens: the Node's comes first.
  if (cfg.podCidrFromNode) cfg.podCidr = await podCidrFromNode(kube, cfg.nodeName, log);
  const runtime = await openRuntime(cfg, runtimes);
  const events = new EventRecorder(kube, cfg.nodeName, log);
  const sync = new PodSync(kube, runtime, cfg, policy, events, log);
  const heartbeat = new NodeHeartbeat(kube, cfg, runtime, log, policy);
  const tls = await nodeApiTls(cfg, log);
  const stats = new StatsCollector(runtime, cfg.nodeName, cfg.statsIntervalSeconds * 1000, log);
  stats.start();
  const api = await startNodeApi({ host: cfg.nodeIP, port: cfg.port, ...tls, allowedClients: cfg.nodeApiAllowedClients, streaming: streamingLimitsOf(cfg) }, sync, runtime, log, stats);
  // systemd signals every property change of every unit: a burst becomes one pass.
  let debounce: NodeJS.Timeout | undefined;
  runtime.onChange(() => {
    debounce ??= setTimeout(() => { debounce = undefined; sync.trigger(); }, 100);
  });

  const stop = new AbortController();
  const timers: NodeJS.Timeout[] = [];
  let registered = false;
  const beat = async () => {
    try {
      if (!registered) await heartbeat.register();
      else await heartbeat.beat();
      registered = true;
    } catch (err) {
      log.warn({ err: String(err) }, 'cannot reach the control plane; pods keep running, retrying');
    }
  };
  await beat();
  void sync.watchPods(stop.signal);
  // The node's service proxy: its nftables table outlives the agent (traffic flows while it is down).
  // Cluster DNS on this node, from the proxy's data, at --cluster-dns (redirected by the proxy table to its port).
  let dns: ClusterDns | undefined;
  if (cfg.proxyMode === 'nftables') {
    const dnsIp = cfg.clusterDNS[0];
    const proxy = new ServiceProxy(kube, { table: cfg.proxyTable, nodeName: cfg.nodeName, clusterCidr: cfg.clusterCidr ?? cfg.podCidr, ...(dnsIp ? { clusterDns: { ip: dnsIp, port: cfg.clusterDnsPort } } : {}) }, log, () => dns?.invalidate());
    await proxy.checkNft();
    if (dnsIp) {
      dns = new ClusterDns({ domain: cfg.clusterDomain, host: '0.0.0.0', port: cfg.clusterDnsPort, data: () => ({ services: proxy.rules.services.values(), slices: proxy.rules.slices.values() }) }, log);
      await dns.start().catch((err) => {
        throw new UserError(`cannot start the cluster DNS server on port ${cfg.clusterDnsPort}: ${(err as Error).message}`, { hint: 'choose another --cluster-dns-port (something else listens there), or start without --cluster-dns', cause: err });
      });
    }
    void proxy.run(stop.signal);
  }
  // host-gw: other nodes' pod CIDRs via their addresses, in this node's own netns (off on a node sharing the host's).
  if (cfg.routePodCidrs) void new NodeRoutes(kube, cfg.nodeName, log).run(stop.signal);
  timers.push(setInterval(beat, cfg.heartbeatSeconds * 1000));
  timers.push(setInterval(() => sync.trigger(), cfg.syncPeriodSeconds * 1000));
  // ConfigMap/Secret edits reach mounted volumes within this period (the node may only `get` them by name); also cleans volumes of pods gone.
  const refreshVolumes = () => void sync.refreshVolumes().catch((err) => log.warn({ err: String(err) }, 'volume refresh failed'));
  refreshVolumes();
  timers.push(setInterval(refreshVolumes, VOLUME_REFRESH_MS));
  timers.push(setInterval(() => void runtime.gc().catch((err) => log.warn({ err: String(err) }, 'runtime gc failed')), GC_PERIOD_MS));
  const watchdog = opts.systemd ? watchdogIntervalMs() : undefined;
  if (watchdog) {
    // Ping only while sync passes keep completing: a wedged agent gets restarted by systemd.
    timers.push(setInterval(() => { if (Date.now() - sync.lastPassAt < 4 * cfg.syncPeriodSeconds * 1000 + 30_000) sdNotify('WATCHDOG=1'); }, watchdog));
  }
  if (opts.systemd) sdNotify('READY=1');
  log.info({ node: cfg.nodeName, runtime: runtime.name, stage1: cfg.rktStage1Image, stage1Policy: cfg.stage1Policy, port: cfg.port }, 'agent ready');

  return {
    nodeName: cfg.nodeName,
    async stop() {
      log.info({ node: cfg.nodeName }, 'agent stopping; pods keep running');
      stop.abort();
      sync.close();
      for (const t of timers) clearInterval(t);
      clearTimeout(debounce);
      stats.stop();
      await new Promise((r) => api.close(r));
      await dns?.close();
      await runtime.close();
    },
  };
}
