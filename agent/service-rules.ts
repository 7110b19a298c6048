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
 * - `pick-cluster-ip-<N>`, the chain of every Service port with N Ready
 *   endpoints (the map's verdict for its address): traffic not from the
 *   cluster CIDR is marked for masquerade, `numgen random mod N` picks one of
 *   the N endpoints (uniform random choice, as kube-proxy) into the
 *   connection's mark, and `dnat-cluster-ip` translates with one lookup in the
 *   `cluster-ip-endpoints` map (cluster IP . protocol . port . choice →
 *   endpoint address . port). What differs between Services is only in map
 *   elements, so the table has a handful of chains whatever the number of
 *   Services: what keeps a full rewrite of 5 000 Services well under a second
 *   (a chain per endpoint took the kernel half a minute; a map per Service, or
 *   one map bound by a rule per Service, seconds; a chain per Service, with
 *   the elements, about one second of nft's CPU).
 * - `pick-nodeport-<N>` (node ports, externalTrafficPolicy Cluster): marks for
 *   masquerade and picks among all endpoints; `pick-nodeport-local-<N>`
 *   (Local): among this node's only, source kept (none here: dropped); then
 *   `dnat-nodeport` translates through `nodeport-endpoints` (protocol . node
 *   port . choice).
 * - With sessionAffinity ClientIP a Service port keeps kube-proxy's shape: a
 *   `sep-<hash>` chain per endpoint that records the client in its affinity set
 *   `aff-<hash>` (dynamic, timeoutSeconds) and DNATs, and `svc-<hash>` (and
 *   `ext-<hash>` for its node port) sends a client found in one of those sets
 *   back to that endpoint.
 * - nat postrouting masquerades a pod DNATed to itself (hairpin: the pair
 *   address . address is in `hairpin`; only endpoints of this node, or of no
 *   node, can be the client), then whatever was marked (bit 0x4000).
 * - A Service port without a Ready endpoint is in `no-endpoint-services` /
 *   `no-endpoint-nodeports`; new connections to it are rejected (ICMP port
 *   unreachable for UDP, a TCP reset for TCP: "connection refused" at once instead
 *   of a hang), as kube-proxy.
 * Only Ready endpoints are used (terminating ones are drained: their open
 * connections keep their conntrack entry, new ones go elsewhere).
 * The connection mark (ct mark) of new connections to a Service holds the choice.
 *
 * The wanted state is built per Service (a fragment), and a fragment is reused
 * while its Service and EndpointSlice objects are the same objects: a change
 * to one Service costs that Service, not the whole set.
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

/** What one Service (or the fixed part of the table) puts into the kernel. */
export interface Fragment {
  /** name → rule lines (without `add rule ip T name`). */
  chains: Map<string, string[]>;
  /** affinity sets: name → declaration body. */
  sets: Map<string, string>;
  /** set/map name → element key → value (`''` for plain sets). */
  elements: Map<string, Map<string, string>>;
  /** Endpoint addresses that may be clients on this node (for the hairpin set, shared by every Service). */
  endpointIps: string[];
  /** Shared chains (`pick-…`) its map elements jump to. */
  uses: string[];
}

/** What the kernel should hold. */
export interface ProxyState {
  fixed: Fragment;
  /** The shared `pick-…` chains some Service uses (chains only). */
  shared: Fragment;
  /** by `namespace/name` of the Service */
  services: Map<string, Fragment>;
}

/** Base chains: name → hook declaration. */
const BASE_CHAINS: Record<string, string> = {
  'nat-prerouting': '{ type nat hook prerouting priority -100 ; policy accept ; }',
  'nat-output': '{ type nat hook output priority -100 ; policy accept ; }',
  'nat-postrouting': '{ type nat hook postrouting priority 100 ; policy accept ; }',
  // Before DNAT (dstnat is -100): a Service without endpoints still has its own address here.
  'filter-input': '{ type filter hook input priority -110 ; policy accept ; }',
  'filter-forward': '{ type filter hook forward priority -110 ; policy accept ; }',
  'filter-output': '{ type filter hook output priority -110 ; policy accept ; }',
};

/** The table's own sets and maps, declared with explicit types (re-declaring an existing one is then a no-op). */
const FIXED_SETS: Record<string, { kind: 'set' | 'map'; decl: string }> = {
  'service-ips': { kind: 'map', decl: '{ type ipv4_addr . inet_proto . inet_service : verdict ; }' },
  'service-nodeports': { kind: 'map', decl: '{ type inet_proto . inet_service : verdict ; }' },
  'cluster-ip-endpoints': { kind: 'map', decl: '{ type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service ; }' },
  'nodeport-endpoints': { kind: 'map', decl: '{ type inet_proto . inet_service . mark : ipv4_addr . inet_service ; }' },
  'no-endpoint-services': { kind: 'set', decl: '{ type ipv4_addr . inet_proto . inet_service ; }' },
  'no-endpoint-nodeports': { kind: 'set', decl: '{ type inet_proto . inet_service ; }' },
  hairpin: { kind: 'set', decl: '{ type ipv4_addr . ipv4_addr ; }' },
};
const kindOf = (set: string) => FIXED_SETS[set]?.kind ?? 'set';

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** local: on this node; hairpin: may be a client on this node (on this node, or on none we know). */
interface Endpoint { ip: string; port: number; local: boolean; hairpin: boolean }

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
        seen.set(`${ip}:${port.port}`, { ip, port: port.port, local: e.nodeName === nodeName, hairpin: !e.nodeName || e.nodeName === nodeName });
      }
    }
  }
  return [...seen.values()].sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
}

const emptyFragment = (): Fragment => ({ chains: new Map(), sets: new Map(), elements: new Map(), endpointIps: [], uses: [] });
const addElement = (f: Fragment, set: string, key: string, value = '') => {
  (f.elements.get(set) ?? f.elements.set(set, new Map()).get(set)!).set(key, value);
};

/** The base chains and their rules (the same for every Service set). */
export function fixedFragment(opts: ProxyOptions): Fragment {
  const f = emptyFragment();
  f.chains.set('nat-prerouting', ['jump services']);
  f.chains.set('nat-output', ['jump services']);
  f.chains.set('nat-postrouting', ['jump masquerading']);
  // TCP gets a reset (an ICMP error from a forwarding hook did not reach the client here); UDP port unreachable.
  const refuse = (match: string) => [`ct state new meta l4proto tcp ${match} reject with tcp reset`, `ct state new meta l4proto udp ${match} reject`];
  const toService = 'ip daddr . meta l4proto . th dport @no-endpoint-services';
  const toNodePort = 'fib daddr type local meta l4proto . th dport @no-endpoint-nodeports';
  f.chains.set('filter-input', [...refuse(toService), ...refuse(toNodePort)]);
  f.chains.set('filter-forward', refuse(toService));
  f.chains.set('filter-output', [...refuse(toService), ...refuse(toNodePort)]);
  f.chains.set('services', [
    // The cluster DNS address is answered on this node (its Service, kube-dns, has no endpoints of its own).
    ...(opts.clusterDns ? ['udp', 'tcp'].map((p) => `ip daddr ${opts.clusterDns!.ip} ${p} dport 53 redirect to :${opts.clusterDns!.port}`) : []),
    'ip daddr . meta l4proto . th dport vmap @service-ips',
    'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports',
  ]);
  f.chains.set('dnat-cluster-ip', ['tcp', 'udp'].map((p) => `meta l4proto ${p} dnat to ip daddr . meta l4proto . th dport . ct mark map @cluster-ip-endpoints`));
  f.chains.set('dnat-nodeport', ['tcp', 'udp'].map((p) => `meta l4proto ${p} dnat to meta l4proto . th dport . ct mark map @nodeport-endpoints`));
  f.chains.set('masquerading', [
    'ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random',
    `meta mark & ${MASQUERADE_MARK} == 0 return`,
    `meta mark set meta mark ^ ${MASQUERADE_MARK}`,
    'masquerade fully-random',
  ]);
  return f;
}

const MARK = `meta mark set meta mark | ${MASQUERADE_MARK}`;

/** The shared chains: `pick-cluster-ip-N`, `pick-nodeport-N`, `pick-nodeport-local-N` (see the top of this file). */
const PICK = /^pick-(cluster-ip|nodeport|nodeport-local)-([1-9][0-9]*)$/;
function sharedChainRules(name: string, opts: ProxyOptions): string[] {
  const m = PICK.exec(name);
  if (!m) throw new Error(`not a shared chain: ${name}`);
  const n = m[2];
  if (m[1] === 'cluster-ip') return [opts.clusterCidr ? `ip saddr != ${opts.clusterCidr} ${MARK}` : MARK, `ct mark set numgen random mod ${n} goto dnat-cluster-ip`];
  const choose = `ct mark set numgen random mod ${n} goto dnat-nodeport`;
  return m[1] === 'nodeport' ? [MARK, choose] : [choose];
}

/** What one Service puts into the kernel. */
export function serviceFragment(svc: ServiceLike, slices: EndpointSliceLike[], opts: ProxyOptions): Fragment {
  const f = emptyFragment();
  const spec = svc.spec ?? {};
  const clusterIP = spec.clusterIP;
  if (!clusterIP || !IPV4.test(clusterIP) || spec.type === 'ExternalName') return f; // headless: DNS only
  if (clusterIP === opts.clusterDns?.ip) return f;
  const svcKey = `${svc.metadata?.namespace}/${svc.metadata?.name}`;
  const affinity = spec.sessionAffinity === 'ClientIP' ? spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800 : 0;
  const ips = new Set<string>();
  for (const p of spec.ports ?? []) {
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP') continue;
    const proto = protocol.toLowerCase();
    const portKey = `${svcKey}:${p.name ?? ''}/${protocol}`;
    const id = hash(portKey);
    const all = endpointsFor(slices, p.name ?? '', protocol, opts.nodeName);
    const ipKey = `${clusterIP} . ${proto} . ${p.port}`;
    const nodePort = p.nodePort && (spec.type === 'NodePort' || spec.type === 'LoadBalancer') ? `${proto} . ${p.nodePort}` : undefined;
    if (all.length === 0) {
      addElement(f, 'no-endpoint-services', ipKey);
      if (nodePort) addElement(f, 'no-endpoint-nodeports', nodePort);
      continue;
    }
    for (const e of all) if (e.hairpin) ips.add(e.ip);
    const svcChain = `svc-${id}`;
    const internal = spec.internalTrafficPolicy === 'Local' ? all.filter((e) => e.local) : all;
    const ext = `ext-${id}`;
    const external = spec.externalTrafficPolicy === 'Local' ? all.filter((e) => e.local) : all;

    if (affinity) {
      addElement(f, 'service-ips', ipKey, `goto ${svcChain}`);
      if (nodePort) addElement(f, 'service-nodeports', nodePort, `goto ${ext}`);
      // kube-proxy's shape: a chain per endpoint, which records the client in its affinity set.
      const sepOf = (e: Endpoint) => {
        const name = `sep-${hash(`${portKey}>${e.ip}:${e.port}`)}`;
        const set = `aff-${name.slice(4)}`;
        f.sets.set(set, `{ type ipv4_addr ; flags dynamic,timeout ; timeout ${affinity}s ; }`);
        f.chains.set(name, [`update @${set} { ip saddr }`, `meta l4proto ${proto} dnat to ${e.ip}:${e.port}`]);
        return name;
      };
      const pick = (eps: Endpoint[]): string[] => {
        if (!eps.length) return ['drop'];
        const seps = eps.map(sepOf);
        const rules = seps.map((s) => `ip saddr @aff-${s.slice(4)} goto ${s}`);
        rules.push(seps.length === 1 ? `goto ${seps[0]}` : `numgen random mod ${seps.length} vmap { ${seps.map((s, i) => `${i} : goto ${s}`).join(' , ')} }`);
        return rules;
      };
      f.chains.set(svcChain, [opts.clusterCidr ? `ip saddr != ${opts.clusterCidr} ${MARK}` : MARK, ...pick(internal)]);
      if (nodePort) f.chains.set(ext, spec.externalTrafficPolicy === 'Local' ? pick(external) : [MARK, `goto ${svcChain}`]);
      continue;
    }
    // Everything of this port is in map elements; the chain it jumps to is shared by every port with as many endpoints.
    const use = (chain: string) => { if (!f.uses.includes(chain)) f.uses.push(chain); return `goto ${chain}`; };
    internal.forEach((e, i) => addElement(f, 'cluster-ip-endpoints', `${ipKey} . ${i}`, `${e.ip} . ${e.port}`));
    addElement(f, 'service-ips', ipKey, internal.length ? use(`pick-cluster-ip-${internal.length}`) : 'drop');
    if (nodePort) {
      external.forEach((e, i) => addElement(f, 'nodeport-endpoints', `${nodePort} . ${i}`, `${e.ip} . ${e.port}`));
      const local = spec.externalTrafficPolicy === 'Local';
      addElement(f, 'service-nodeports', nodePort, external.length ? use(`pick-nodeport${local ? '-local' : ''}-${external.length}`) : 'drop');
    }
  }
  f.endpointIps = [...ips];
  return f;
}

/** A fragment remembered with the objects it was made from. */
interface Cached { svc: ServiceLike; slices: EndpointSliceLike[]; fragment: Fragment }
export type FragmentCache = Map<string, Cached>;

const sameRefs = (a: unknown[], b: unknown[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * The state wanted for these Services and EndpointSlices (keyed `namespace/name`). With a
 * cache, a Service whose objects are the very same as last time keeps its fragment.
 */
export function desiredState(services: Map<string, ServiceLike> | ServiceLike[], slices: Map<string, EndpointSliceLike> | EndpointSliceLike[], opts: ProxyOptions, cache?: FragmentCache, fixed = fixedFragment(opts)): ProxyState {
  const svcList = Array.isArray(services) ? services : [...services.values()];
  const slicesBySvc = new Map<string, EndpointSliceLike[]>();
  for (const s of Array.isArray(slices) ? slices : slices.values()) {
    const svc = s.metadata?.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const key = `${s.metadata?.namespace}/${svc}`;
    (slicesBySvc.get(key) ?? slicesBySvc.set(key, []).get(key)!).push(s);
  }
  const out = new Map<string, Fragment>();
  const seen = new Set<string>();
  for (const svc of svcList) {
    const key = `${svc.metadata?.namespace}/${svc.metadata?.name}`;
    seen.add(key);
    const mine = slicesBySvc.get(key) ?? [];
    const hit = cache?.get(key);
    let fragment: Fragment;
    if (hit && hit.svc === svc && sameRefs(hit.slices, mine)) fragment = hit.fragment;
    else {
      fragment = serviceFragment(svc, mine, opts);
      cache?.set(key, { svc, slices: mine, fragment });
    }
    out.set(key, fragment);
  }
  if (cache) for (const k of cache.keys()) if (!seen.has(k)) cache.delete(k);
  const shared = emptyFragment();
  for (const f of out.values()) for (const name of f.uses) if (!shared.chains.has(name)) shared.chains.set(name, sharedChainRules(name, opts));
  return { fixed, shared, services: out };
}

/**
 * How many Service ports have each endpoint address: the hairpin set holds an address while
 * one does. Kept by its owner between transactions (updated by `transaction`, rebuilt by a
 * full one), so a change costs the Services that changed, not a pass over every endpoint.
 */
export type HairpinCounts = Map<string, number>;

/** What the kernel holds: exactly a state we wrote, or only the names read back from it. */
export type KnownState = { state: ProxyState } | { names: { chains: Set<string>; sets: Set<string> } };

export const emptyKnown = (): KnownState => ({ names: { chains: new Set(), sets: new Set() } });

const same = (a: string[] | undefined, b: string[]) => !!a && a.length === b.length && a.every((x, i) => x === b[i]);
const fmt = (k: string, v: string) => (v ? `${k} : ${v}` : k);
/** Element lists in chunks (one `add element` of 50 000 entries is fine for nft, but keeps lines sane). */
const ELEMENTS_PER_LINE = 2000;
function elementLines(verb: 'add' | 'delete', T: string, set: string, items: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < items.length; i += ELEMENTS_PER_LINE) out.push(`${verb} element ${T} ${set} { ${items.slice(i, i + ELEMENTS_PER_LINE).join(' , ')} }`);
  return out;
}

/**
 * One `nft -f` transaction from `known` to `want`. Read back from the kernel (names only):
 * every wanted chain is flushed and refilled, every map flushed and refilled, chains and
 * sets nothing wants are flushed, then deleted. Known exactly: only Services whose fragment
 * changed are written (new and changed chains, element deletes and adds, chains and sets
 * gone). `hairpin` is updated to what the transaction leaves in the kernel (rebuild it with
 * a full transaction if applying it fails). Empty when nothing changes.
 */
export function transaction(table: string, known: KnownState, want: ProxyState, hairpin: HairpinCounts = new Map()): string {
  const T = `ip ${table}`;
  const head: string[] = [];
  const body: string[] = [];
  const tail: string[] = [];
  if ('names' in known) {
    // Written straight from the fragments into one list of pieces joined once: a full rewrite of 5 000
    // Services is ~100 000 elements, and every intermediate string (a formatted element, a joined line)
    // was garbage the collector had to copy first.
    const { chains: knownChains, sets: knownSets } = known.names;
    const fragments = [want.fixed, want.shared, ...want.services.values()];
    const elements = new Map<string, Array<Map<string, string>>>(Object.keys(FIXED_SETS).map((name) => [name, []]));
    const wantedChains = new Set<string>();
    const wantedSets = new Set<string>();
    const pairs: string[] = [];
    hairpin.clear();
    head.push(`add table ${T}`);
    for (const [name, s] of Object.entries(FIXED_SETS)) head.push(`add ${s.kind} ${T} ${name} ${s.decl}`);
    for (const f of fragments) {
      for (const [name, decl] of f.sets) if (!wantedSets.has(name)) { wantedSets.add(name); head.push(`add set ${T} ${name} ${decl}`); }
      for (const [name, rules] of f.chains) {
        if (wantedChains.has(name)) continue;
        wantedChains.add(name);
        const base = BASE_CHAINS[name];
        if (!knownChains.has(name) || base) head.push(`add chain ${T} ${name}${base ? ` ${base}` : ''}`);
        if (knownChains.has(name)) body.push(`flush chain ${T} ${name}`);
        for (const r of rules) body.push(`add rule ${T} ${name} ${r}`);
      }
      for (const [set, els] of f.elements) (elements.get(set) ?? elements.set(set, []).get(set)!).push(els);
      for (const ip of f.endpointIps) {
        const n = (hairpin.get(ip) ?? 0) + 1;
        hairpin.set(ip, n);
        if (n === 1) pairs.push(ip);
      }
    }
    const parts: string[] = [];
    for (const line of head) parts.push(line, '\n');
    for (const line of body) parts.push(line, '\n');
    for (const [name, maps] of elements) {
      if (knownSets.has(name)) parts.push(`flush ${kindOf(name)} ${T} ${name}\n`);
      const open = `add element ${T} ${name} { `;
      let inLine = 0;
      const item = (k: string, v: string, k2?: string) => {
        parts.push(inLine === 0 ? open : ' , ', k);
        if (k2 !== undefined) parts.push(' . ', k2);
        if (v) parts.push(' : ', v);
        if (++inLine === ELEMENTS_PER_LINE) { parts.push(' }\n'); inLine = 0; }
      };
      for (const els of maps) for (const [k, v] of els) item(k, v);
      if (name === 'hairpin') for (const ip of pairs) item(ip, '', ip);
      if (inLine) parts.push(' }\n');
    }
    const staleChains = [...knownChains].filter((c) => !wantedChains.has(c));
    for (const c of staleChains) parts.push(`flush chain ${T} ${c}\n`);
    for (const c of staleChains) parts.push(`delete chain ${T} ${c}\n`);
    for (const s of knownSets) if (!wantedSets.has(s) && !FIXED_SETS[s]) parts.push(`delete set ${T} ${s}\n`);
    return parts.join('');
  }
  const was = known.state;
  const deletes = new Map<string, string[]>();
  const adds = new Map<string, string[]>();
  const push = (m: Map<string, string[]>, set: string, item: string) => (m.get(set) ?? m.set(set, []).get(set)!).push(item);
  const staleChains: string[] = [];
  const diff = (before: Fragment | undefined, after: Fragment | undefined) => {
    const b = before ?? emptyFragment(), a = after ?? emptyFragment();
    for (const [name, decl] of a.sets) if (b.sets.get(name) !== decl) head.push(`add set ${T} ${name} ${decl}`);
    for (const [name, rules] of a.chains) {
      if (!b.chains.has(name)) head.push(`add chain ${T} ${name}`);
      else if (same(b.chains.get(name), rules)) continue;
      else body.push(`flush chain ${T} ${name}`);
      for (const r of rules) body.push(`add rule ${T} ${name} ${r}`);
    }
    for (const [set, els] of b.elements) {
      const now = a.elements.get(set);
      for (const [k, v] of els) if (now?.get(k) !== v) push(deletes, set, k);
    }
    for (const [set, els] of a.elements) {
      const then = b.elements.get(set);
      for (const [k, v] of els) if (then?.get(k) !== v) push(adds, set, fmt(k, v));
    }
    for (const name of b.chains.keys()) if (!a.chains.has(name)) staleChains.push(name);
    for (const name of b.sets.keys()) if (!a.sets.has(name)) tail.push(`delete set ${T} ${name}`);
    for (const ip of b.endpointIps) {
      const n = (hairpin.get(ip) ?? 1) - 1;
      if (n > 0) hairpin.set(ip, n);
      else { hairpin.delete(ip); push(deletes, 'hairpin', `${ip} . ${ip}`); }
    }
    for (const ip of a.endpointIps) {
      const n = (hairpin.get(ip) ?? 0) + 1;
      hairpin.set(ip, n);
      if (n === 1) push(adds, 'hairpin', `${ip} . ${ip}`);
    }
  };
  if (was.fixed !== want.fixed) diff(was.fixed, want.fixed);
  diff(was.shared, want.shared);
  for (const [key, f] of want.services) if (was.services.get(key) !== f) diff(was.services.get(key), f);
  for (const [key, f] of was.services) if (!want.services.has(key)) diff(f, undefined);
  for (const [set, items] of deletes) body.push(...elementLines('delete', T, set, items));
  for (const [set, items] of adds) body.push(...elementLines('add', T, set, items));
  const out = [...head, ...body, ...staleChains.map((c) => `flush chain ${T} ${c}`), ...staleChains.map((c) => `delete chain ${T} ${c}`), ...tail];
  return out.length ? out.join('\n') + '\n' : '';
}
