import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { atomicWrite, readdirOrEmpty, replaceFileSync } from '../common/fsutil.js';
import { mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { crashPoint } from '../common/failpoint.js';
import { loadNetworkConfig } from './config.js';
import { execPlugin, findPlugin } from './exec.js';
import {
  CniError, DEFAULT_BIN_DIRS, DEFAULT_CONF_DIR,
  type Attachment, type CniCommand, type CniNetworkConfig, type CniPluginConf, type CniResult, type DetachRequest, type PortMapping,
} from './types.js';

export interface CniLoadOptions {
  /** where network configs live (default /etc/cni/net.d) */
  confDir?: string;
  /** plugin search path (default /usr/lib/cni, /opt/cni/bin); also passed as CNI_PATH */
  binDirs?: readonly string[];
  /** result cache, one JSON file per attachment (like libcni's /var/lib/cni/results); must survive agent restarts */
  cacheDir: string;
  /** pick the network by name instead of the first config file in lexical order */
  networkName?: string;
  /** per plugin invocation (default 60 s) */
  timeoutMs?: number;
}

/** What the cache holds per attachment: everything DEL needs after a restart, exactly as ADD used it. */
export interface CniCacheEntry {
  kind: 'stevedoreCniCacheV1';
  networkName: string;
  containerId: string;
  ifName: string;
  netnsPath: string;
  cniArgs: Array<[string, string]>;
  capabilityArgs: { portMappings?: PortMapping[] };
  /** the full network config as ADD ran it */
  config: CniNetworkConfig;
  /** null while ADD is in flight (or if it crashed half way): DEL then runs without prevResult */
  result: CniResult | null;
  startedAt: string;
}

const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const IFNAME_RE = /^[^\s/:]{1,15}$/;
const ARG_VALUE_RE = /^[^;=\s]*$/;
const NSFS_MAGIC = 0x6e736673;

/** True when `p` is a network namespace handle (an nsfs bind mount or /proc/PID/ns/net). */
export async function isNetns(p: string): Promise<boolean> {
  try {
    // Synchronous, as every lookup of ADD before the first plugin (exec.ts findPlugin).
    const st = statfsSync(p);
    return Number(st.type) === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** The pod's addresses (no prefix length) from an ADD result: the container-side interface's IPs first. */
export function podIPs(result: CniResult | null | undefined): string[] {
  const ips = result?.ips ?? [];
  const ifaces = result?.interfaces ?? [];
  const inSandbox = ips.filter((ip) => ip.interface !== undefined && ifaces[ip.interface]?.sandbox);
  const chosen = inSandbox.length > 0 ? inSandbox : ips;
  return [...new Set(chosen.map((ip) => ip.address.split('/')[0]!))];
}

/** The primary pod IP (first IPv4, else first address) for status.podIP; undefined if the result has none. */
export function podIP(result: CniResult | null | undefined): string | undefined {
  const all = podIPs(result);
  return all.find((a) => !a.includes(':')) ?? all[0];
}

function versionAtLeast(v: string, min: string): boolean {
  const a = v.split('.').map(Number);
  const b = min.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}


/**
 * One CNI network (a conflist) and the plugins that implement it. ADD/CHECK/DEL
 * follow the CNI 1.0 spec (0.3.x/0.4.0 configs work too); every ADD is cached
 * on disk before the first plugin runs, so DEL after a crash or restart uses the
 * exact config, arguments and result ADD had.
 */
export class CniNetwork {
  private constructor(
    readonly config: CniNetworkConfig,
    /** the config file it came from (undefined for fromConfig) */
    readonly file: string | undefined,
    readonly binDirs: readonly string[],
    readonly cacheDir: string,
    private readonly timeoutMs: number,
  ) {}

  static async load(opts: CniLoadOptions): Promise<CniNetwork> {
    const { file, config } = await loadNetworkConfig(opts.confDir ?? DEFAULT_CONF_DIR, opts.networkName);
    return new CniNetwork(config, file, opts.binDirs ?? DEFAULT_BIN_DIRS, opts.cacheDir, opts.timeoutMs ?? 60_000);
  }

  /** A network from a config object already parsed (see parseNetworkConfig). */
  static fromConfig(config: CniNetworkConfig, opts: Omit<CniLoadOptions, 'confDir' | 'networkName'>): CniNetwork {
    return new CniNetwork(config, undefined, opts.binDirs ?? DEFAULT_BIN_DIRS, opts.cacheDir, opts.timeoutMs ?? 60_000);
  }

  get name(): string {
    return this.config.name;
  }

  /** Cache file of one attachment. */
  cacheFile(containerId: string, ifName = 'eth0'): string {
    return path.join(this.cacheDir, `${this.name}-${containerId}-${ifName}.json`);
  }

  /**
   * Attach: run ADD through the chain. On failure everything already added is
   * torn down again before the error is thrown. Refuses (CNIAlreadyAttached) if
   * the attachment has a completed ADD; an interrupted one is DELeted first.
   */
  async add(att: Attachment): Promise<CniResult> {
    const ifName = this.validate(att, 'ADD');
    if (!(await isNetns(att.netnsPath))) {
      throw new CniError({ network: this.name, command: 'ADD', reason: 'CNINetnsMissing', message: `CNI ADD for ${att.containerId}: ${att.netnsPath} is not a network namespace` });
    }
    const previous = await this.cached(att.containerId, ifName);
    if (previous?.result) {
      // A second ADD would fail half way and its rollback would tear down the working attachment.
      throw new CniError({ network: this.name, command: 'ADD', reason: 'CNIAlreadyAttached', message: `CNI ADD: ${att.containerId}/${ifName} is already attached to network "${this.name}"`, hint: 'DEL it first' });
    }
    // An ADD interrupted by a crash: undo whatever it did before starting over.
    if (previous) await this.del({ containerId: att.containerId, ifName });
    // Every plugin of the network is found first, those this ADD skips too: a broken install fails every pod alike.
    const found = await Promise.all(this.config.plugins.map(async (p) => [p, await findPlugin(this.name, p.type, this.binDirs, 'ADD')] as const));
    const config = chainFor(this.config, att);
    const binaries = found.filter(([p]) => config.plugins.includes(p)).map(([, binary]) => binary);
    const entry: CniCacheEntry = {
      kind: 'stevedoreCniCacheV1', networkName: this.name, containerId: att.containerId, ifName, netnsPath: att.cachedNetnsPath ?? att.netnsPath,
      cniArgs: cniArgsOf(att), capabilityArgs: capabilityArgsOf(att), config, result: null, startedAt: new Date().toISOString(),
    };
    mkdirSync(this.cacheDir, { recursive: true, mode: 0o700 });
    const cacheFile = this.cacheFile(att.containerId, ifName);
    // Written and synced before any plugin runs: a crash mid-ADD, a power loss too, leaves a record GC can DEL from.
    await atomicWrite(cacheFile, JSON.stringify(entry, null, 2) + '\n', 0o600);
    let prev: CniResult | undefined;
    // The plugins are given the caller's path, the cache keeps the lasting one.
    const running = { ...entry, netnsPath: att.netnsPath };
    try {
      for (const [i, plugin] of config.plugins.entries()) {
        const out = await execPlugin(binaries[i]!, this.invocation('ADD', plugin, running, prev));
        if (out !== undefined) prev = out as CniResult;
        // Tests kill the process here to leave an ADD half done (cache entry with result null).
        crashPoint(`cni:add:${plugin.type}`);
      }
      if (!prev) throw new CniError({ network: this.name, command: 'ADD', message: `CNI ADD of network "${this.name}" returned no result` });
    } catch (err) {
      try {
        await this.runDel(entry, prev ?? null, att.netnsPath);
        await fs.rm(cacheFile, { force: true });
      } catch {
        // the cache entry stays: GC (releaseStaleLeases / del) retries the teardown
      }
      throw err;
    }
    entry.result = prev;
    // Replaced atomically without fsync: the result is for DEL and CHECK while the node is up. After a power loss
    // the namespace it describes is gone, and a DEL without it (or without the entry: cached()) still releases.
    replaceFileSync(cacheFile, JSON.stringify(entry, null, 2) + '\n', 0o600);
    return prev;
  }

  /**
   * CHECK the attachment against its cached ADD result. A no-op for configs
   * older than 0.4.0 (no CHECK in those versions) and with disableCheck.
   */
  async check(att: Attachment): Promise<void> {
    const ifName = this.validate(att, 'CHECK');
    const entry = await this.cached(att.containerId, ifName);
    if (!entry?.result) {
      throw new CniError({ network: this.name, command: 'CHECK', reason: 'CNINotAttached', message: `CNI CHECK: no completed ADD of ${att.containerId}/${ifName} in network "${this.name}" (cache ${this.cacheDir})` });
    }
    const config = entry.config;
    if (!versionAtLeast(config.cniVersion, '0.4.0') || config.disableCheck) return;
    const binaries = await Promise.all(config.plugins.map((p) => findPlugin(this.name, p.type, this.binDirs, 'CHECK')));
    const e = { ...entry, netnsPath: att.netnsPath };
    for (const [i, plugin] of config.plugins.entries()) {
      await execPlugin(binaries[i]!, this.invocation('CHECK', plugin, e, entry.result));
    }
  }

  /**
   * Detach: DEL through the chain in reverse, with the cached config and result
   * of ADD when there is one (else with the current config). Idempotent; a
   * namespace that is gone is fine (CNI_NETNS is then left empty). The cache
   * entry goes only once every plugin succeeded, so a failed DEL can be retried.
   */
  async del(att: DetachRequest): Promise<void> {
    const ifName = this.validate(att, 'DEL');
    const entry = (await this.cached(att.containerId, ifName)) ?? {
      kind: 'stevedoreCniCacheV1', networkName: this.name, containerId: att.containerId, ifName, netnsPath: att.netnsPath ?? '',
      cniArgs: cniArgsOf(att), capabilityArgs: capabilityArgsOf(att), config: this.config, result: null, startedAt: new Date().toISOString(),
    } satisfies CniCacheEntry;
    const nsPath = att.netnsPath ?? entry.netnsPath;
    await this.runDel(entry, entry.result, (await isNetns(nsPath)) ? nsPath : '');
    await this.forget(att.containerId, ifName);
  }

  /**
   * Drop an attachment's cache entry, and the temporary file a writer killed inside atomicWrite
   * left beside it (killed in the first write, that file is all there is).
   */
  async forget(containerId: string, ifName = 'eth0'): Promise<void> {
    const cacheFile = this.cacheFile(containerId, ifName);
    await fs.rm(cacheFile, { force: true });
    const tmpPrefix = `.${path.basename(cacheFile)}.`;
    for (const n of await readdirOrEmpty(this.cacheDir)) {
      if (n.startsWith(tmpPrefix) && n.endsWith('.tmp')) await fs.rm(path.join(this.cacheDir, n), { force: true });
    }
  }

  /**
   * Point a cached attachment at another path of the same namespace (the one
   * ADD was given was only valid while its caller held it open): the path a
   * later DEL without one, GC's say, enters.
   */
  async recordNetnsPath(containerId: string, ifName: string, netnsPath: string): Promise<void> {
    const entry = await this.cached(containerId, ifName);
    if (entry) await atomicWrite(this.cacheFile(containerId, ifName), JSON.stringify({ ...entry, netnsPath }, null, 2) + '\n', 0o600);
  }

  /** Every cached attachment of this network (completed or interrupted ADDs): what GC compares with live pods. */
  async cachedAttachments(): Promise<CniCacheEntry[]> {
    return (await cachedAttachmentsIn(this.cacheDir)).filter((e) => e.networkName === this.name);
  }

  /** The cached ADD of one attachment, if any (a torn entry, left by a power loss, is none: see add()). */
  async cached(containerId: string, ifName = 'eth0'): Promise<CniCacheEntry | undefined> {
    let text: string;
    try {
      text = readFileSync(this.cacheFile(containerId, ifName), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const e = JSON.parse(text) as CniCacheEntry;
      return e.kind === 'stevedoreCniCacheV1' ? e : undefined;
    } catch {
      return undefined;
    }
  }

  private async runDel(entry: CniCacheEntry, result: CniResult | null, netnsPath: string): Promise<void> {
    const config = entry.config;
    const binaries = await Promise.all(config.plugins.map((p) => findPlugin(this.name, p.type, this.binDirs, 'DEL')));
    const e = { ...entry, netnsPath };
    for (let i = config.plugins.length - 1; i >= 0; i--) {
      await execPlugin(binaries[i]!, this.invocation('DEL', config.plugins[i]!, e, result ?? undefined));
    }
  }

  private validate(att: DetachRequest, command: CniCommand): string {
    const bad = (msg: string): never => {
      throw new CniError({ network: this.name, command, reason: 'CNIInvalidArgs', message: `CNI: ${msg}` });
    };
    if (!CONTAINER_ID_RE.test(att.containerId)) bad(`container id ${JSON.stringify(att.containerId)} must match ${CONTAINER_ID_RE.source}`);
    const ifName = att.ifName ?? 'eth0';
    if (!IFNAME_RE.test(ifName)) bad(`interface name ${JSON.stringify(ifName)} is not valid`);
    for (const [k, v] of Object.entries({ podNamespace: att.podNamespace, podName: att.podName, podUid: att.podUid })) {
      if (v !== undefined && !ARG_VALUE_RE.test(v)) bad(`${k} ${JSON.stringify(v)} cannot go into CNI_ARGS`);
    }
    for (const pm of att.portMappings ?? []) {
      if (!Number.isInteger(pm.hostPort) || pm.hostPort < 1 || pm.hostPort > 65535) bad(`hostPort ${pm.hostPort} out of range`);
      if (!Number.isInteger(pm.containerPort) || pm.containerPort < 1 || pm.containerPort > 65535) bad(`containerPort ${pm.containerPort} out of range`);
    }
    return ifName;
  }

  private invocation(command: CniCommand, plugin: CniPluginConf, entry: CniCacheEntry, prevResult: CniResult | undefined) {
    const conf: Record<string, unknown> = { ...plugin, name: entry.config.name, cniVersion: entry.config.cniVersion };
    // prevResult: ADD passes the previous plugin's result; CHECK and DEL the cached final one (0.4.0+ only).
    delete conf.prevResult;
    if (prevResult && (command === 'ADD' || versionAtLeast(entry.config.cniVersion, '0.4.0'))) conf.prevResult = prevResult;
    const runtimeConfig: Record<string, unknown> = typeof plugin.runtimeConfig === 'object' && plugin.runtimeConfig !== null ? { ...(plugin.runtimeConfig as object) } : {};
    for (const [cap, enabled] of Object.entries(plugin.capabilities ?? {})) {
      const value = (entry.capabilityArgs as Record<string, unknown>)[cap];
      if (enabled && value !== undefined) runtimeConfig[cap] = value;
    }
    if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
    return {
      network: this.name, plugin: plugin.type, command, binDirs: this.binDirs, timeoutMs: this.timeoutMs,
      stdin: JSON.stringify(conf),
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: entry.containerId,
        CNI_NETNS: entry.netnsPath,
        CNI_IFNAME: entry.ifName,
        CNI_ARGS: entry.cniArgs.map(([k, v]) => `${k}=${v}`).join(';'),
        CNI_PATH: this.binDirs.join(':'),
      },
    };
  }
}

/**
 * The chain ADD runs for one attachment: the network's, less `portmap` when neither the pod nor the plugin's own
 * config maps a port. portmap (containernetworking/plugins) hands its prevResult back unchanged from such an ADD and
 * does nothing on its DEL and CHECK; not running it saves a process on every start and removal of such a pod (~4 ms
 * of a start, bench/RESULTS.md). The cache keeps the chain as run, so DEL and CHECK run exactly what ADD ran.
 */
export function chainFor(config: CniNetworkConfig, att: Pick<Attachment, 'portMappings'>): CniNetworkConfig {
  if (att.portMappings?.length) return config;
  const mapsPorts = (p: CniPluginConf) => p.type !== 'portmap' || ((p.runtimeConfig as { portMappings?: unknown[] } | undefined)?.portMappings?.length ?? 0) > 0;
  const plugins = config.plugins.filter(mapsPorts);
  return plugins.length === config.plugins.length || plugins.length === 0 ? config : { ...config, plugins };
}

/** Every cached attachment in a cache dir, of any network (each entry carries the config it was ADDed with). */
export async function cachedAttachmentsIn(cacheDir: string): Promise<CniCacheEntry[]> {
  const names = await readdirOrEmpty(cacheDir);
  const out: CniCacheEntry[] = [];
  for (const n of names) {
    if (n.startsWith('.') || !n.endsWith('.json')) continue;
    try {
      const e = JSON.parse(await fs.readFile(path.join(cacheDir, n), 'utf8')) as CniCacheEntry;
      // Only files named as ours for that entry: a foreign file must not make us DEL anything.
      if (e.kind === 'stevedoreCniCacheV1' && n === `${e.networkName}-${e.containerId}-${e.ifName}.json`) out.push(e);
    } catch {
      // a torn or foreign file: not ours to interpret
    }
  }
  return out;
}

function cniArgsOf(att: DetachRequest): Array<[string, string]> {
  // IgnoreUnknown=1: plugins with typed args (host-local's IP=…) reject keys they do not know otherwise.
  const args: Array<[string, string]> = [['IgnoreUnknown', '1']];
  if (att.podNamespace !== undefined) args.push(['K8S_POD_NAMESPACE', att.podNamespace]);
  if (att.podName !== undefined) args.push(['K8S_POD_NAME', att.podName]);
  args.push(['K8S_POD_INFRA_CONTAINER_ID', att.containerId]);
  if (att.podUid !== undefined) args.push(['K8S_POD_UID', att.podUid]);
  return args;
}

function capabilityArgsOf(att: DetachRequest): CniCacheEntry['capabilityArgs'] {
  if (!att.portMappings?.length) return {};
  return {
    portMappings: att.portMappings.map((pm) => ({
      hostPort: pm.hostPort, containerPort: pm.containerPort, protocol: (pm.protocol || 'tcp').toLowerCase(),
      ...(pm.hostIP ? { hostIP: pm.hostIP } : {}),
    })),
  };
}
