/**
 * /etc/hosts and /etc/resolv.conf for a pod, as the kubelet forms them
 * (pkg/kubelet/kubelet_pods.go managedHostsFileContent, pkg/kubelet/network/dns).
 */

export interface HostAlias {
  ip: string;
  hostnames: string[];
}

const HOSTNAME_MAX = 63;

/** The pod's hostname and domain: spec.hostname or the pod name (cut to 63), and <subdomain>.<ns>.svc.<clusterDomain> when spec.subdomain is set. */
export function podHostnameAndDomain(opts: { podName: string; hostname?: string; subdomain?: string; namespace: string; clusterDomain?: string }): { hostname: string; domain?: string } {
  let hostname = opts.hostname || opts.podName;
  if (hostname.length > HOSTNAME_MAX) hostname = hostname.slice(0, HOSTNAME_MAX).replace(/[-.]+$/, '');
  const domain = opts.subdomain ? `${opts.subdomain}.${opts.namespace}.svc.${opts.clusterDomain ?? 'cluster.local'}` : undefined;
  return domain ? { hostname, domain } : { hostname };
}

export interface PodHostsOptions {
  /** the pod's hostname (see podHostnameAndDomain) */
  hostname: string;
  subdomain?: string;
  namespace: string;
  clusterDomain?: string;
  /** the pod's IPs, primary first */
  podIPs: string[];
  hostAliases?: HostAlias[];
  /** hostNetwork pods: the node's /etc/hosts text; the kubelet uses it in place of the managed content */
  nodeHosts?: string;
}

function aliases(hostAliases: HostAlias[] | undefined): string {
  if (!hostAliases?.length) return '';
  return '\n# Entries added by HostAliases.\n' + hostAliases.map((a) => `${a.ip}\t${a.hostnames.join('\t')}\n`).join('');
}

/** The pod's /etc/hosts, byte for byte what the kubelet writes. */
export function podHostsFile(opts: PodHostsOptions): string {
  if (opts.nodeHosts !== undefined) {
    const base = opts.nodeHosts.endsWith('\n') || opts.nodeHosts === '' ? opts.nodeHosts : opts.nodeHosts + '\n';
    return '# Kubernetes-managed hosts file (host network).\n' + base + aliases(opts.hostAliases);
  }
  let out = '# Kubernetes-managed hosts file.\n'
    + '127.0.0.1\tlocalhost\n'
    + '::1\tlocalhost ip6-localhost ip6-loopback\n'
    + 'fe00::0\tip6-localnet\n'
    + 'fe00::0\tip6-mcastprefix\n'
    + 'fe00::1\tip6-allnodes\n'
    + 'fe00::2\tip6-allrouters\n';
  const domain = opts.subdomain ? `${opts.subdomain}.${opts.namespace}.svc.${opts.clusterDomain ?? 'cluster.local'}` : undefined;
  for (const ip of opts.podIPs) out += domain ? `${ip}\t${opts.hostname}.${domain}\t${opts.hostname}\n` : `${ip}\t${opts.hostname}\n`;
  return out + aliases(opts.hostAliases);
}

export type DnsPolicy = 'ClusterFirst' | 'ClusterFirstWithHostNet' | 'Default' | 'None';

export interface PodDnsConfig {
  nameservers?: string[];
  searches?: string[];
  options?: Array<{ name: string; value?: string }>;
}

export interface PodResolvOptions {
  /** spec.dnsPolicy; Kubernetes' default is ClusterFirst */
  dnsPolicy?: DnsPolicy;
  /** spec.dnsConfig, merged on top of what the policy gives */
  dnsConfig?: PodDnsConfig;
  /** text of the node's resolv.conf (the kubelet's --resolv-conf); undefined = none configured (then 127.0.0.1, search .) */
  nodeResolvConf?: string;
  /** cluster DNS server IPs (the kubelet's --cluster-dns); none = ClusterFirst falls back to Default */
  clusterDNS?: string[];
  namespace: string;
  clusterDomain?: string;
  hostNetwork?: boolean;
}

export interface PodResolvConf {
  content: string;
  nameservers: string[];
  searches: string[];
  options: string[];
  /** kubelet-style events to report on the pod (MissingClusterDNS, DNSConfigForming) */
  warnings: Array<{ reason: string; message: string }>;
}

export const MAX_DNS_NAMESERVERS = 3;
export const MAX_DNS_SEARCH_PATHS = 32;
export const MAX_DNS_SEARCH_LIST_CHARS = 2048;

/** nameservers, searches and options of a resolv.conf text, parsed the way the kubelet does. */
export function parseResolvConf(text: string): { nameservers: string[]; searches: string[]; options: string[] } {
  const nameservers: string[] = [];
  let searches: string[] = [];
  const options: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const fields = line.split(/\s+/).filter(Boolean);
    if (fields.length === 0) continue;
    if (fields[0] === 'nameserver' && fields[1]) nameservers.push(fields[1]);
    // the last search line wins, as in the resolver; "." and trailing dots are normalised away
    if (fields[0] === 'search') searches = fields.slice(1).filter((s) => s !== '.').map((s) => s.replace(/\.$/, ''));
    if (fields[0] === 'options') options.push(...fields.slice(1));
  }
  return { nameservers, searches, options };
}

const uniq = (xs: string[]) => [...new Set(xs)];

/** Pod options override node ones by name ("ndots:2" replaces "ndots:5"). */
function mergeOptions(base: string[], pod: Array<{ name: string; value?: string }>): string[] {
  const m = new Map<string, string>();
  for (const o of base) {
    const [name, ...rest] = o.split(':');
    m.set(name!, rest.length ? `${name}:${rest.join(':')}` : name!);
  }
  for (const o of pod) m.set(o.name, o.value !== undefined && o.value !== '' ? `${o.name}:${o.value}` : o.name);
  return [...m.values()];
}

/** The pod's /etc/resolv.conf per Kubernetes' dnsPolicy rules. */
export function podResolvConf(opts: PodResolvOptions): PodResolvConf {
  const warnings: PodResolvConf['warnings'] = [];
  const clusterDomain = opts.clusterDomain ?? 'cluster.local';
  const policy = opts.dnsPolicy ?? 'ClusterFirst';
  let type: 'none' | 'cluster' | 'host';
  if (policy === 'None') type = 'none';
  else if (policy === 'ClusterFirstWithHostNet') type = 'cluster';
  else if (policy === 'ClusterFirst') type = opts.hostNetwork ? 'host' : 'cluster';
  else type = 'host';

  const host = opts.nodeResolvConf !== undefined ? parseResolvConf(opts.nodeResolvConf) : { nameservers: [], searches: [], options: [] };
  let nameservers = [...host.nameservers];
  let searches = [...host.searches];
  let options = [...host.options];

  if (type === 'cluster' && !(opts.clusterDNS?.length)) {
    warnings.push({ reason: 'MissingClusterDNS', message: `kubelet does not have ClusterDNS IP configured and cannot create Pod using "${policy}" policy. Falling back to "Default" policy.` });
    type = 'host';
  }
  if (type === 'none') {
    nameservers = []; searches = []; options = [];
  } else if (type === 'cluster') {
    nameservers = [...opts.clusterDNS!];
    searches = uniq([`${opts.namespace}.svc.${clusterDomain}`, `svc.${clusterDomain}`, clusterDomain, ...host.searches]);
    options = ['ndots:5'];
  } else if (opts.nodeResolvConf === undefined) {
    // No resolv.conf configured: point at the local machine, search nothing (the kubelet's behaviour).
    nameservers = ['127.0.0.1'];
    searches = ['.'];
  }
  if (opts.dnsConfig) {
    nameservers = uniq([...nameservers, ...(opts.dnsConfig.nameservers ?? [])]);
    searches = uniq([...searches, ...(opts.dnsConfig.searches ?? [])]);
    options = mergeOptions(options, opts.dnsConfig.options ?? []);
  }
  if (nameservers.length > MAX_DNS_NAMESERVERS) {
    warnings.push({ reason: 'DNSConfigForming', message: `Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: ${nameservers.slice(0, MAX_DNS_NAMESERVERS).join(' ')}` });
    nameservers = nameservers.slice(0, MAX_DNS_NAMESERVERS);
  }
  if (searches.length > MAX_DNS_SEARCH_PATHS || searches.join(' ').length > MAX_DNS_SEARCH_LIST_CHARS) {
    let kept = searches.slice(0, MAX_DNS_SEARCH_PATHS);
    while (kept.join(' ').length > MAX_DNS_SEARCH_LIST_CHARS) kept = kept.slice(0, -1);
    warnings.push({ reason: 'DNSConfigForming', message: `Search Line limits were exceeded, some search paths have been omitted, the applied search line is: ${kept.join(' ')}` });
    searches = kept;
  }
  let content = '';
  if (searches.length) content += `search ${searches.join(' ')}\n`;
  for (const ns of nameservers) content += `nameserver ${ns}\n`;
  if (options.length) content += `options ${options.join(' ')}\n`;
  return { content, nameservers, searches, options, warnings };
}

/** The node's resolv.conf as the kubelet picks it: systemd-resolved's stub points at 127.0.0.53, useless in a pod netns. */
export async function readNodeResolvConf(): Promise<string | undefined> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => undefined);
  if (text !== undefined && /^\s*nameserver\s+127\.0\.0\.53\b/m.test(text)) return readFile('/run/systemd/resolve/resolv.conf', 'utf8').catch(() => text);
  return text;
}

/** The node's cluster DNS (the kubelet's --cluster-dns and --cluster-domain). */
export interface ClusterDnsConfig { servers: string[]; domain: string }

/** A pod's /etc/resolv.conf text per dnsPolicy/dnsConfig and the node's; without cluster DNS, ClusterFirst means the node's servers (the kubelet's fallback). */
export async function podResolvConfText(pod: Pick<PodResolvOptions, 'dnsPolicy' | 'dnsConfig' | 'namespace' | 'hostNetwork'>, clusterDns?: ClusterDnsConfig): Promise<string> {
  return podResolvConf({
    ...pod, nodeResolvConf: await readNodeResolvConf(),
    ...(clusterDns?.servers.length ? { clusterDNS: clusterDns.servers, clusterDomain: clusterDns.domain } : {}),
  }).content;
}
