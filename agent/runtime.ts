import * as path from 'node:path';
import { ensureDefaultNetwork } from '../cni/index.js';
import type { ContainerRuntime, PodNetworkOptions, RuntimeFactory } from '../runtime-api/index.js';
import { UserError } from '../common/errors.js';
import { imageLimitsOf, type AgentConfig } from './config.js';

export type { ContainerRuntime, ContainerUsage, PodUsage, ExecOptions, ExecProcess, TerminalSize, PortConnection, PortDialOptions, PortForwardTarget } from '../runtime-api/index.js';

/**
 * The runtimes this agent binary can drive, by --container-runtime name. The
 * composition root (cli/) fills it; the agent never imports a runtime.
 */
export type RuntimeFactories = Readonly<Record<string, RuntimeFactory>>;

/**
 * The pod network: the conf dir's network, or else the default one (bridge +
 * host-local on the node's pod CIDR + portmap), written there once. Leases
 * and results live under the data dir, next to the pods they belong to.
 */
async function podNetwork(cfg: AgentConfig): Promise<PodNetworkOptions> {
  const confDir = cfg.cniConfDir ?? path.join(cfg.dataDir, 'cni', 'net.d');
  await ensureDefaultNetwork(confDir, { podCidr: cfg.podCidr, bridge: cfg.cniBridge, ipamDataDir: path.join(cfg.dataDir, 'cni', 'networks') });
  return { confDir, cacheDir: path.join(cfg.dataDir, 'cni', 'results'), binDirs: cfg.cniBinDirs };
}

/** Open the runtime --container-runtime names, with the node's settings. */
export async function openRuntime(cfg: AgentConfig, factories: RuntimeFactories): Promise<ContainerRuntime> {
  const open = factories[cfg.containerRuntime];
  if (!open) {
    throw new UserError(`--container-runtime=${cfg.containerRuntime} is not available in this build`, { hint: `choose one of: ${Object.keys(factories).join(', ')}` });
  }
  return open({
    dataDir: cfg.dataDir, dbusAddress: cfg.dbusAddress, defaultHandler: cfg.rktStage1Image, kvmAccel: cfg.kvmAccel,
    network: await podNetwork(cfg), podCidr: cfg.podCidr, imageLimits: imageLimitsOf(cfg),
    ...(cfg.clusterDNS.length ? { clusterDns: { servers: cfg.clusterDNS, domain: cfg.clusterDomain } } : {}),
    ...(cfg.dockerEndpoint ? { dockerEndpoint: cfg.dockerEndpoint } : {}),
  });
}
