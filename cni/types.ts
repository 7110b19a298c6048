import { UserError } from '../common/errors.js';

/** CNI spec versions this runner speaks (a conflist's cniVersion must be one of them). */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_BIN_DIRS: readonly string[] = ['/usr/lib/cni', '/opt/cni/bin'];

/** One plugin entry of a network configuration list. */
export interface CniPluginConf {
  type: string;
  /** Runtime capabilities the plugin wants in runtimeConfig, e.g. { portMappings: true }. */
  capabilities?: Record<string, boolean>;
  ipam?: { type?: string; dataDir?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** A network configuration list (a .conf file is normalised into a one-plugin list). */
export interface CniNetworkConfig {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: CniPluginConf[];
  [key: string]: unknown;
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  /** 'tcp' | 'udp' | 'sctp' (lower case on the wire, as the kubelet sends them). */
  protocol: string;
  hostIP?: string;
}

/** What to attach: one interface of one container (pod) in one network namespace. */
export interface Attachment {
  /** CNI_CONTAINERID: the runtime's id for the pod sandbox (the pod UUID). [A-Za-z0-9][A-Za-z0-9_.-]* */
  containerId: string;
  /** CNI_NETNS: path to the pod's network namespace (an nsfs bind mount or /proc/PID/ns/net). */
  netnsPath: string;
  /**
   * The path the cache records for later DELs and CHECKs, when netnsPath is valid only during this
   * ADD (a descriptor the caller holds: /proc/<its pid>/fd/N names something else once it is closed).
   * Default: netnsPath.
   */
  cachedNetnsPath?: string;
  /** CNI_IFNAME, default eth0. */
  ifName?: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  portMappings?: PortMapping[];
}

/** DEL may run when the namespace is already gone (GC after a crash or reboot). */
export type DetachRequest = Omit<Attachment, 'netnsPath'> & { netnsPath?: string };

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  [key: string]: unknown;
}

export interface CniIPConfig {
  /** CIDR notation: 10.244.0.5/24 */
  address: string;
  gateway?: string;
  interface?: number;
  /** present in 0.3.x/0.4.0 results only */
  version?: '4' | '6';
  [key: string]: unknown;
}

/** A plugin's success result (1.0.0 shape; 0.3.x/0.4.0 ones differ only in ips[].version). */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [key: string]: unknown;
}

export type CniCommand = 'ADD' | 'CHECK' | 'DEL' | 'VERSION';

/** The error object a plugin prints on stdout when it fails (spec: "Error" section). */
export interface CniPluginErrorBody {
  cniVersion?: string;
  code?: number;
  msg?: string;
  details?: string;
}

/**
 * A CNI operation failed. `plugin` and `command` say where; `code`, `pluginMsg`
 * and `details` are the plugin's own error JSON when it printed one. The
 * message is meant for pod status/events as is.
 */
export class CniError extends UserError {
  readonly network: string;
  readonly plugin: string | undefined;
  readonly command: CniCommand | 'LOAD';
  readonly code: number | undefined;
  readonly pluginMsg: string | undefined;
  readonly details: string | undefined;
  readonly stderr: string | undefined;
  /** Short CamelCase reason for a pod event/condition. */
  readonly reason: string;
  constructor(args: {
    network: string; plugin?: string; command: CniCommand | 'LOAD'; message: string; code?: number; pluginMsg?: string;
    details?: string; stderr?: string; hint?: string; reason?: string; cause?: unknown;
  }) {
    super(args.message, { hint: args.hint, cause: args.cause });
    this.name = 'CniError';
    this.network = args.network;
    this.plugin = args.plugin;
    this.command = args.command;
    this.code = args.code;
    this.pluginMsg = args.pluginMsg;
    this.details = args.details;
    this.stderr = args.stderr;
    this.reason = args.reason ?? (args.command === 'LOAD' ? 'CNIConfigInvalid' : 'CNIPluginFailed');
  }
}

/** The network config could not be found or is not valid. */
export class CniConfigError extends CniError {
  readonly file: string | undefined;
  constructor(message: string, opts: { file?: string; network?: string; hint?: string; cause?: unknown } = {}) {
    super({ network: opts.network ?? '', command: 'LOAD', message, hint: opts.hint, reason: 'CNIConfigInvalid', cause: opts.cause });
    this.name = 'CniConfigError';
    this.file = opts.file;
  }
}
