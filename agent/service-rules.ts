/**
 * The node's service proxy rules (the kube-proxy role, its nftables mode), as
 * data: from Services and EndpointSlices, the chains, maps and sets of one
 * nftables table of ours, and the `nft -f` transaction that takes the kernel
 * from what it has to what is wanted. Pure: no process, no kernel (see
 * service-proxy.ts for that).
 *
 * Packet path (all in `table ip <name>`):
 * - nat prerouting and output jump to `services`, which redirects the cluster DNS
 *   address to this node's DNS server (when given) and looks the destination up
 *   in two verdict maps: `service-ips` (cluster IP . protocol . port) and, for
 *   local addresses but loopback, `service-nodeports` (protocol . port). One map
 *   lookup per packet, whatever the number of Services.
 * - `svc-<hash>` per Service port: traffic not from the cluster CIDR is marked
 *   for masquerade; with sessionAffinity ClientIP a client in an endpoint's
 *   affinity set goes back to it; else `numgen random mod N` picks an endpoint
 *   (uniform random choice, as kube-proxy).
 * - `ext-<hash>` (node ports): marks for masquerade and goes to `svc-<hash>`
 *   (externalTrafficPolicy Cluster), or picks among this node's endpoints only,
 *   source kept (Local; none here: dropped).
 * - `sep-<hash>` per endpoint: a pod reaching itself (hairpin) is masqueraded,
 *   its address goes into the affinity set, then DNAT to the endpoint.
 * - nat postrouting masquerades what was marked (mark bit 0x4000, kube's).
 * - A Service port without a Ready endpoint is in `no-endpoint-services` /
 *   `no-endpoint-nodeports`; new connections to it are rejected (ICMP port
 *   unreachable for UDP, a TCP reset for TCP: "connection refused" at once instead
 *   of a hang), as kube-proxy.
 * Only Ready endpoints are used (terminating ones are drained: their open
 * connections keep their conntrack entry, new ones go elsewhere).
 */
import { createHash } from 'node:crypto';

export const MASQUERADE_MARK = '0x4000';

/** The fields of a v1 Service the proxy reads. */
export interface ServiceLike {
  metadata?: { name?: string; namespace?: string };
  spec?: {
    type?: string; clusterIP?: string; sessionAffinity?: string;
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    internalTrafficPolicy?: string; externalTrafficPolicy?: string;
    ports?: Array<{ name?: string; protocol?: string; port?: number; nodePort?: number }>;
  };
}

/** The fields of a discovery.k8s.io/v1 EndpointSlice the proxy reads. */
export interface EndpointSliceLike {
  metadata?: { namespace?: string; labels?: Record<string, string> };
  addressType?: string;
  ports?: Array<{ name?: string; protocol?: string; port?: number }> | null;
  endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean | null }; nodeName?: string }> | null;
}

export interface ProxyOptions {
  /** Our table (`table ip <name>`). */
  table: string;
  /** This node (for traffic policy Local). */
  nodeName: string;
  /** Pod addresses of the whole cluster: traffic from elsewhere to a cluster IP is masqueraded. Unset: all of it is. */
  clusterCidr?: string;
  /** The cluster DNS address pods use, redirected to this node's DNS server port (agent/cluster-dns.ts). */
  clusterDns?: { ip: string; port: number };
}

/** What the kernel should hold: chains with their rules, sets/maps with their elements. */
export interface ProxyState {
  /** name → rule lines (without `add rule ip T name`); base chains included. */
  chains: Map<string, string[]>;
  /** name → declaration body (`{ type … ; }`). */
  sets: Map<string, string>;
  /** set/map name → element key → value (`''` for plain sets). */
  elements: Map<string, Map<string, string>>;
}

const BASE_CHAINS: Record<string, string> = {
  'nat-prerouting': '{ type nat hook prerouting priority -100 ; policy accept ; }',
  'nat-output': '{ type nat hook output priority -100 ; policy accept ; }',
  'nat-postrouting': '{ type nat hook postrouting priority 100 ; policy accept ; }',
  // Before DNAT (dstnat is -100): a Service without endpoints still has its own address here.
  'filter-input': '{ type filter hook input priority -110 ; policy accept ; }',
  'filter-forward': '{ type filter hook forward priority -110 ; policy accept ; }',
  'filter-output': '{ type filter hook output priority -110 ; policy accept ; }',
};

const FIXED_SETS: Record<string, string> = {
  'service-ips': '{ type ipv4_addr . inet_proto . inet_service ; }',
  'service-nodeports': '{ type inet_proto . inet_service ; }',
  'no-endpoint-services': '{ type ipv4_addr . inet_proto . inet_service ; }',
  'no-endpoint-nodeports': '{ type inet_proto . inet_service ; }',
};
/** Maps of verdicts need `: verdict` in their type. */
const VERDICT_MAPS = new Set(['service-ips', 'service-nodeports']);

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

interface Endpoint { ip: string; port: number; local: boolean }

/** Ready endpoints of one Service port, by port name and protocol, deduplicated. */
function endpointsFor(slices: EndpointSliceLike[], portName: string, protocol: string, nodeName: string): Endpoint[] {
  const seen = new Map<string, Endpoint>();
  for (const s of slices) {
    if (s.addressType !== 'IPv4') continue;
    const port = (s.ports ?? []).find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === protocol);
    if (!port?.port) continue;
    for (const e of s.endpoints ?? []) {
      // kube: a nil ready condition means ready
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses ?? []) {
        if (!IPV4.test(ip)) continue;
        seen.set(`${ip}:${port.port}`, { ip, port: port.port, local: e.nodeName === nodeName });
      }
    }
  }
  return [...seen.values()].sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
}

/** The chains, sets and elements wanted for these Services and EndpointSlices. */
export function desiredState(services: ServiceLike[], slices: EndpointSliceLike[], opts: ProxyOptions): ProxyState {
  const chains = new Map<string, string[]>();
  const sets = new Map<string, string>();
  const elements = new Map<string, Map<string, string>>();
  for (const [name, decl] of Object.entries(FIXED_SETS)) {
    sets.set(name, VERDICT_MAPS.has(name) ? decl.replace(' ; }', ' : verdict ; }') : decl);
    elements.set(name, new Map());
  }
  const el = (set: string) => elements.get(set)!;
  chains.set('nat-prerouting', ['jump services']);
  chains.set('nat-output', ['jump services']);
  chains.set('nat-postrouting', ['jump masquerading']);
  // TCP gets a reset (an ICMP error from a forwarding hook did not reach the client here); UDP port unreachable.
  const refuse = (match: string) => [`ct state new meta l4proto tcp ${match} reject with tcp reset`, `ct state new meta l4proto udp ${match} reject`];
  const toService = 'ip daddr . meta l4proto . th dport @no-endpoint-services';
  const toNodePort = 'fib daddr type local meta l4proto . th dport @no-endpoint-nodeports';
  chains.set('filter-input', [...refuse(toService), ...refuse(toNodePort)]);
  chains.set('filter-forward', refuse(toService));
  chains.set('filter-output', [...refuse(toService), ...refuse(toNodePort)]);
  chains.set('services', [
    // The cluster DNS address is answered on this node (its Service, kube-dns, has no endpoints of its own).
    ...(opts.clusterDns ? ['udp', 'tcp'].map((p) => `ip daddr ${opts.clusterDns!.ip} ${p} dport 53 redirect to :${opts.clusterDns!.port}`) : []),
    'ip daddr . meta l4proto . th dport vmap @service-ips',
    'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports',
  ]);
  chains.set('mark-for-masquerade', [`meta mark set meta mark | ${MASQUERADE_MARK}`]);
  chains.set('masquerading', [`meta mark & ${MASQUERADE_MARK} == 0 return`, `meta mark set meta mark ^ ${MASQUERADE_MARK}`, 'masquerade fully-random']);

  const slicesBySvc = new Map<string, EndpointSliceLike[]>();
  for (const s of slices) {
    const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const key = `${s.metadata?.namespace}/${svc}`;
    (slicesBySvc.get(key) ?? slicesBySvc.set(key, []).get(key)!).push(s);
  }

  for (const svc of services) {
    const spec = svc.spec ?? {};
    const clusterIP = spec.clusterIP;
    if (!clusterIP || !IPV4.test(clusterIP) || spec.type === 'ExternalName') continue; // headless: DNS only
    if (clusterIP === opts.clusterDns?.ip) continue;
    const svcKey = `${svc.metadata?.namespace}/${svc.metadata?.name}`;
    const affinity = spec.sessionAffinity === 'ClientIP' ? spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800 : 0;
    for (const p of spec.ports ?? []) {
      const protocol = p.protocol ?? 'TCP';
      if (protocol !== 'TCP' && protocol !== 'UDP') continue;
      const proto = protocol.toLowerCase();
      const portKey = `${svcKey}:${p.name ?? ''}/${protocol}`;
      const id = hash(portKey);
      const all = endpointsFor(slicesBySvc.get(svcKey) ?? [], p.name ?? '', protocol, opts.nodeName);
      const ipKey = `${clusterIP} . ${proto} . ${p.port}`;
      const nodePort = p.nodePort && (spec.type === 'NodePort' || spec.type === 'LoadBalancer') ? `${proto} . ${p.nodePort}` : undefined;
      if (all.length === 0) {
        el('no-endpoint-services').set(ipKey, '');
        if (nodePort) el('no-endpoint-nodeports').set(nodePort, '');
        continue;
      }
      const sepOf = (e: Endpoint) => {
        const name = `sep-${hash(`${portKey}>${e.ip}:${e.port}`)}`;
        if (!chains.has(name)) {
          const rules = [`ip saddr ${e.ip} jump mark-for-masquerade`];
          if (affinity) {
            const set = `aff-${name.slice(4)}`;
            sets.set(set, `{ type ipv4_addr ; flags dynamic,timeout ; timeout ${affinity}s ; }`);
            rules.push(`update @${set} { ip saddr }`);
          }
          rules.push(`meta l4proto ${proto} dnat to ${e.ip}:${e.port}`);
          chains.set(name, rules);
        }
        return name;
      };
      const pick = (eps: Endpoint[]): string[] => {
        if (!eps.length) return ['drop'];
        const seps = eps.map(sepOf);
        const rules = affinity ? seps.map((s) => `ip saddr @aff-${s.slice(4)} goto ${s}`) : [];
        rules.push(seps.length === 1 ? `goto ${seps[0]}` : `numgen random mod ${seps.length} vmap { ${seps.map((s, i) => `${i} : goto ${s}`).join(' , ')} }`);
        return rules;
      };
      const internal = spec.internalTrafficPolicy === 'Local' ? all.filter((e) => e.local) : all;
      const svcChain = `svc-${id}`;
      chains.set(svcChain, [opts.clusterCidr ? `ip saddr != ${opts.clusterCidr} jump mark-for-masquerade` : 'jump mark-for-masquerade', ...pick(internal)]);
      el('service-ips').set(ipKey, `goto ${svcChain}`);
      if (nodePort) {
        const ext = `ext-${id}`;
        chains.set(ext, spec.externalTrafficPolicy === 'Local' ? pick(all.filter((e) => e.local)) : ['jump mark-for-masquerade', `goto ${svcChain}`]);
        el('service-nodeports').set(nodePort, `goto ${ext}`);
      }
    }
  }
  return { chains, sets, elements };
}

/** What the kernel holds, as far as a transaction needs to know: names only when read back from `nft -j`. */
export interface KnownState {
  chains: Map<string, string[] | undefined>;
  sets: Map<string, string | undefined>;
  /** undefined: unknown (flush and add everything). */
  elements: Map<string, Map<string, string>> | undefined;
}

export const emptyKnown = (): KnownState => ({ chains: new Map(), sets: new Map(), elements: undefined });

const same = (a: string[] | undefined, b: string[]) => !!a && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * One `nft -f` transaction from `known` to `want`. Chains whose rules are unknown or
 * changed are flushed and rewritten; map elements are added and deleted one by one
 * (all flushed and re-added when unknown); chains and sets not wanted any more are
 * flushed, then deleted, after nothing refers to them. Empty when nothing changes.
 */
export function transaction(table: string, known: KnownState, want: ProxyState): string {
  const T = `ip ${table}`;
  const head: string[] = [`add table ${T}`];
  const body: string[] = [];
  for (const [name, decl] of want.sets) if (known.sets.get(name) !== decl) head.push(`add ${decl.includes('verdict') ? 'map' : 'set'} ${T} ${name} ${decl}`);
  for (const name of want.chains.keys()) if (!known.chains.has(name) || (BASE_CHAINS[name] && known.chains.get(name) === undefined)) head.push(`add chain ${T} ${name}${BASE_CHAINS[name] ? ` ${BASE_CHAINS[name]}` : ''}`);
  for (const [name, rules] of want.chains) {
    if (same(known.chains.get(name), rules)) continue;
    if (known.chains.has(name)) body.push(`flush chain ${T} ${name}`);
    for (const r of rules) body.push(`add rule ${T} ${name} ${r}`);
  }
  for (const [set, elems] of want.elements) {
    const kind = VERDICT_MAPS.has(set) ? 'map' : 'set';
    const fmt = (k: string, v: string) => (v ? `${k} : ${v}` : k);
    const have = known.elements?.get(set);
    if (!have) {
      if (known.sets.has(set)) body.push(`flush ${kind} ${T} ${set}`);
      if (elems.size) body.push(`add element ${T} ${set} { ${[...elems].map(([k, v]) => fmt(k, v)).join(' , ')} }`);
      continue;
    }
    const gone = [...have].filter(([k, v]) => elems.get(k) !== v).map(([k]) => k);
    const added = [...elems].filter(([k, v]) => have.get(k) !== v);
    if (gone.length) body.push(`delete element ${T} ${set} { ${gone.join(' , ')} }`);
    if (added.length) body.push(`add element ${T} ${set} { ${added.map(([k, v]) => fmt(k, v)).join(' , ')} }`);
  }
  const staleChains = [...known.chains.keys()].filter((c) => !want.chains.has(c));
  for (const c of staleChains) body.push(`flush chain ${T} ${c}`);
  for (const c of staleChains) body.push(`delete chain ${T} ${c}`);
  for (const s of known.sets.keys()) if (!want.sets.has(s)) body.push(`delete ${VERDICT_MAPS.has(s) ? 'map' : 'set'} ${T} ${s}`);
  const declaresOnlyKnown = head.length === 1 && known.chains.size > 0;
  if (!body.length && declaresOnlyKnown) return '';
  return [...head, ...body].join('\n') + '\n';
}

/** After a transaction succeeded, the kernel holds exactly `want`. */
export function knownFrom(want: ProxyState): KnownState {
  return {
    chains: new Map([...want.chains].map(([k, v]) => [k, [...v]])),
    sets: new Map(want.sets),
    elements: new Map([...want.elements].map(([k, v]) => [k, new Map(v)])),
  };
}
