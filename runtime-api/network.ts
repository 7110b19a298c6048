/** The pod network a runtime attaches pods to: the same CNI networks for every runtime, so pod IPs, hostPorts and Services behave alike. */

/** Where the pod network comes from: a CNI config dir (the operator's or the agent's default network). */
export interface PodNetworkOptions {
  /** CNI network configs (real nodes: /etc/cni/net.d) */
  confDir: string;
  /** plugin search path (default /usr/lib/cni, /opt/cni/bin) */
  binDirs?: string[];
  /** CNI result cache; must survive restarts of the runtime (e.g. <dataDir>/cni/results) */
  cacheDir: string;
  /** network to use; default: the first config file in lexical order */
  networkName?: string;
}

