/** Pod networking through the real CNI plugin binaries. See README.md for the contract. */
export * from './types.js';
export { parseNetworkConfig, loadNetworkConfig, configFiles, CONFIG_EXTENSIONS, type LoadedConfig } from './config.js';
export { CniNetwork, cachedAttachmentsIn, chainFor, podIP, podIPs, isNetns, type CniLoadOptions, type CniCacheEntry } from './network.js';
export { ensureDefaultNetwork, defaultNetworkConfig, DEFAULT_BRIDGE, DEFAULT_NETWORK_NAME, DEFAULT_NETWORK_FILE, type DefaultNetworkOptions } from './default-network.js';
export { releaseStaleLeases, releaseStaleAttachments, listLeases, hostLocalLeaseDirs, HOST_LOCAL_DEFAULT_DATA_DIR, type IpamLease, type ReleasedLease } from './leases.js';
export {
  podHostsFile, podResolvConf, podResolvConfText, readNodeResolvConf, podHostnameAndDomain, parseResolvConf,
  type PodHostsOptions, type PodResolvOptions, type PodResolvConf, type ClusterDnsConfig, type PodDnsConfig, type DnsPolicy, type HostAlias,
} from './podfiles.js';
