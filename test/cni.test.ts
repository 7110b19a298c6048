/**
 * cni/ against the real plugins of containernetworking-plugins (/usr/lib/cni).
 * Everything lives in namespaces, a bridge and a pod CIDR this file makes;
 * traffic only flows between the host and those namespaces. Needs root.
 * Other tests may run on the machine at the same time: the network name is
 * unique per run (so are portmap's per-pod chains, named after network +
 * container id), and firewall and interface checks look only at what names
 * this run's subnets, network and chains, or hangs off its bridges.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  CniConfigError, CniError, CniNetwork, chainFor, defaultNetworkConfig, ensureDefaultNetwork, listLeases, podIP, podIPs, releaseStaleAttachments, releaseStaleLeases,
  type Attachment, type CniResult,
} from '../cni/index.js';
import {
  Cleanup, bridgePorts, createNetns, dropEmptyNftTable, firewallLinesNaming, firewallSnapshot, hostLinks, inNetns, natChainsOfNetwork,
  newLinksOf, nftTables, portmapChain, readSysctl, removeNatChains, removeNetns, startServer, tcpRead, writeSysctl,
} from './helpers/netns.js';
import { eventually } from './helpers/assert.js';

const PLUGIN_DIR = '/usr/lib/cni';
const rand = randomBytes(3).toString('hex');
const BRIDGE = `sdt${rand}`;
const BRIDGE2 = `sdt${rand}b`;
// A /24 in 10.244.0.0/16 for this run only (checked against host routes in before()).
const third = 100 + (parseInt(rand.slice(0, 2), 16) % 140);
const POD_CIDR = `10.244.${third}.0/24`;
const POD_CIDR2 = `10.244.${third + 1}.0/24`;
/** The default network's name in this run (the default, "stevedore", would give every concurrent run the same portmap chains). */
const NET = `sdt-${rand}`;
/** Container ids this run attached (their portmap chains are portmapChain(NET, id)). */
const usedIds = new Set<string>(['rec1', 'rec2', 'rec3', 'crashed']);
/** Firewall lines of this run: naming its subnets, its network or its pods' chains. */
const ourFirewall = () => firewallLinesNaming([`10.244.${third}.`, `10.244.${third + 1}.`, NET, ...[...usedIds].map((id) => portmapChain(NET, id))]);

const canRun = process.getuid?.() === 0 && (await fs.access(path.join(PLUGIN_DIR, 'bridge')).then(() => true, () => false));

interface Ctx {
  root: string;
  confDir: string;
  cacheDir: string;
  ipamDir: string;
  nsDir: string;
  binDir: string;
  cleanup: Cleanup;
  ipForward: string;
  firewallBefore: string[];
  linksBefore: string[];
  nftBefore: string[];
  hadHostportChains: boolean;
}
const ctx = {} as Ctx;
const T = suite<Ctx>('cni', ctx);

let nsCounter = 0;
async function netns(): Promise<string> {
  const file = path.join(ctx.nsDir, `pod${nsCounter++}`);
  await createNetns(file);
  ctx.cleanup.push(`netns ${file}`, () => removeNetns(file));
  return file;
}

const load = (extra: Partial<Parameters<typeof CniNetwork.load>[0]> = {}) =>
  CniNetwork.load({ confDir: ctx.confDir, binDirs: [PLUGIN_DIR], cacheDir: ctx.cacheDir, ...extra });

function att(id: string, ns: string, more: Partial<Attachment> = {}): Attachment {
  usedIds.add(id);
  return { containerId: id, netnsPath: ns, podNamespace: 'default', podName: `pod-${id}`, podUid: `uid-${id}`, ...more };
}

const busyboxPing = (ns: string, ip: string) => inNetns(ns, ['busybox', 'ping', '-c1', '-W2', ip], { allowFail: true });

async function rejects<E>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (err) {
    return err as E;
  }
  throw new Error('expected a rejection');
}

async function fileExists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false);
}

T.before(async () => {
  if (!canRun) return;
  ctx.cleanup = new Cleanup();
  ctx.root = await fs.mkdtemp(path.join(os.tmpdir(), 'sdt-cni-'));
  ctx.cleanup.push('temp dir', async () => {
    // whatever netns bind mounts a failed test left under the temp dir go first
    const mounts = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(ctx.root + '/'));
    for (const m of mounts.reverse()) await removeNetns(m);
    await fs.rm(ctx.root, { recursive: true, force: true });
  });
  for (const d of ['conf', 'cache', 'ipam', 'ns', 'bin'] as const) await fs.mkdir(path.join(ctx.root, d));
  Object.assign(ctx, {
    confDir: path.join(ctx.root, 'conf'), cacheDir: path.join(ctx.root, 'cache'), ipamDir: path.join(ctx.root, 'ipam'),
    nsDir: path.join(ctx.root, 'ns'), binDir: path.join(ctx.root, 'bin'),
  });
  const routes = (await import('node:child_process')).execFileSync('ip', ['-4', 'route', 'show', 'table', 'all']).toString();
  assert.not.ok(routes.includes(`10.244.${third}.`) || routes.includes(`10.244.${third + 1}.`), `pod CIDR ${POD_CIDR} is in use on this host`);
  ctx.ipForward = await readSysctl('net.ipv4.ip_forward');
  ctx.firewallBefore = await ourFirewall();
  ctx.hadHostportChains = (await firewallSnapshot(/^$/)).some((l) => l.includes('chain CNI-HOSTPORT-'));
  ctx.nftBefore = await nftTables();
  ctx.linksBefore = await hostLinks();
  // Host-level leftovers of the plugins, undone last (the stack is LIFO, so push them first).
  ctx.cleanup.push('ip_forward', async () => { if ((await readSysctl('net.ipv4.ip_forward')) !== ctx.ipForward) await writeSysctl('net.ipv4.ip_forward', ctx.ipForward); });
  ctx.cleanup.push('nft tables', async () => { for (const t of await nftTables()) if (!ctx.nftBefore.includes(t)) await dropEmptyNftTable(t); });
  // portmap's shared chains go only if this run brought them in and no other pod's chain hangs off them now.
  ctx.cleanup.push('hostport chains', async () => {
    if (!ctx.hadHostportChains && !(await firewallSnapshot(/^$/)).some((l) => /-j CNI-DN-/.test(l))) await removeNatChains(/^CNI-HOSTPORT-/);
  });
  ctx.cleanup.push('bridges', async () => {
    const links = await hostLinks();
    for (const b of [BRIDGE, BRIDGE2]) if (links.includes(b)) await (await import('./helpers/netns.js')).run('ip', ['link', 'del', b]);
  });
  // Anything still attached (a failed test) is DELeted through the cache before its netns goes.
  ctx.cleanup.push('cached attachments', async () => {
    for (const name of await fs.readdir(ctx.cacheDir).catch(() => [] as string[])) {
      const e = JSON.parse(await fs.readFile(path.join(ctx.cacheDir, name), 'utf8'));
      const n = CniNetwork.fromConfig(e.config, { binDirs: [PLUGIN_DIR, ctx.binDir], cacheDir: ctx.cacheDir });
      await n.del({ containerId: e.containerId, ifName: e.ifName }).catch(() => {});
    }
  });
});

T.after(async () => {
  if (!canRun) return;
  const errors = await ctx.cleanup.runAll();
  // The clean-up must leave the host as it found it.
  const problems: string[] = [...errors];
  const fw = await ourFirewall();
  if (JSON.stringify(fw) !== JSON.stringify(ctx.firewallBefore)) problems.push(`firewall not restored: ${JSON.stringify(fw)}`);
  if ((await readSysctl('net.ipv4.ip_forward')) !== ctx.ipForward) problems.push('ip_forward not restored');
  const newLinks = await newLinksOf(ctx.linksBefore, [BRIDGE, BRIDGE2]);
  if (newLinks.length) problems.push(`host interfaces left: ${newLinks.join(' ')}`);
  if (problems.length) {
    console.error(`cni test clean-up problems:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  }
});

T('default network: written once, atomically, only into an empty config dir', async (c) => {
  if (!canRun) return;
  assert.is(defaultNetworkConfig({ podCidr: POD_CIDR }).name, 'stevedore', 'the default name');
  const first = await ensureDefaultNetwork(c.confDir, { podCidr: POD_CIDR, bridge: BRIDGE, ipamDataDir: c.ipamDir, name: NET });
  assert.ok(first.written);
  assert.is(path.basename(first.file), '10-stevedore.conflist');
  const conf = JSON.parse(await fs.readFile(first.file, 'utf8'));
  assert.is(conf.cniVersion, '1.0.0');
  assert.is(conf.name, NET);
  assert.equal(conf.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap']);
  assert.equal(conf.plugins[0], {
    type: 'bridge', bridge: BRIDGE, isGateway: true, ipMasq: false, hairpinMode: true,
    ipam: { type: 'host-local', ranges: [[{ subnet: POD_CIDR }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: c.ipamDir },
  });
  assert.equal(conf.plugins[1].capabilities, { portMappings: true });
  const again = await ensureDefaultNetwork(c.confDir, { podCidr: '10.9.9.0/24', bridge: 'other0' });
  assert.not.ok(again.written);
  assert.equal(JSON.parse(await fs.readFile(first.file, 'utf8')), conf, 'not overwritten');
  assert.equal((await fs.readdir(c.confDir)).filter((n) => n.startsWith('.')), [], 'no temp files left');
  // An operator's config (any *.conf) also blocks it.
  const other = path.join(c.root, 'conf-other');
  await fs.mkdir(other);
  await fs.writeFile(path.join(other, '99-mine.conf'), '{}');
  assert.not.ok((await ensureDefaultNetwork(other, { podCidr: POD_CIDR })).written);
  const badCidr = await rejects<CniConfigError>(ensureDefaultNetwork(path.join(c.root, 'conf-bad'), { podCidr: 'banana' }));
  assert.instance(badCidr, CniConfigError);
});

T('the chain run for a pod: portmap only when the pod, or the plugin\'s own config, maps a port', () => {
  const conf = defaultNetworkConfig({ podCidr: POD_CIDR });
  const types = (pm?: Attachment['portMappings'], c = conf) => chainFor(c, { portMappings: pm }).plugins.map((p) => p.type);
  assert.equal(types(undefined), ['bridge']);
  assert.equal(types([]), ['bridge']);
  assert.equal(types([{ hostPort: 8080, containerPort: 80, protocol: 'TCP' }]), ['bridge', 'portmap']);
  const fixed = { ...conf, plugins: [conf.plugins[0]!, { ...conf.plugins[1]!, runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }] } }] };
  assert.equal(types(undefined, fixed), ['bridge', 'portmap'], 'a portmap with mappings of its own still runs');
  const only = { ...conf, plugins: [conf.plugins[1]!] };
  assert.is(chainFor(only, {}), only, 'a chain of portmap alone is left as it is (its ADD says what is wrong)');
  assert.is(chainFor(conf, { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'TCP' }] }), conf);
});

T('two pods: distinct IPs, reach each other, a server answers on its pod IP and on a hostPort at 127.0.0.1', async (c) => {
  if (!canRun) return;
  const network = await load();
  assert.is(network.name, NET);
  const nsA = await netns();
  const nsB = await netns();
  const hostPort = 20000 + (parseInt(rand.slice(2), 16) % 20000);
  const resA = await network.add(att('pod-a', nsA));
  const resB = await network.add(att('pod-b', nsB, { portMappings: [{ hostPort, containerPort: 8080, protocol: 'TCP', hostIP: '127.0.0.1' }] }));
  const ipA = podIP(resA)!;
  const ipB = podIP(resB)!;
  assert.ok(ipA && ipB);
  assert.is.not(ipA, ipB);
  assert.ok(ipA.startsWith(`10.244.${third}.`) && ipB.startsWith(`10.244.${third}.`), `${ipA} ${ipB} in ${POD_CIDR}`);
  assert.equal(podIPs(resA), [ipA]);
  // portmap runs only for the pod that maps a port (cni/network.ts chainFor); each cache entry keeps the chain it ran.
  assert.equal((await network.cached('pod-a'))!.config.plugins.map((p) => p.type), ['bridge']);
  assert.equal((await network.cached('pod-b'))!.config.plugins.map((p) => p.type), ['bridge', 'portmap']);
  assert.equal(network.config.plugins.map((p) => p.type), ['bridge', 'portmap'], 'the network itself is unchanged');
  // eth0 in the pod holds the address the result reports
  assert.match((await inNetns(nsA, ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).stdout, `${ipA}/24`);
  assert.is((await bridgePorts(BRIDGE)).length, 2);
  assert.is(await readSysctl('net.ipv4.ip_forward'), '1', 'bridge+isGateway turns ip_forward on');

  // pod to pod by IP
  assert.is((await busyboxPing(nsA, ipB)).code, 0, 'A pings B');
  assert.is((await busyboxPing(nsB, ipA)).code, 0, 'B pings A');
  const server = await startServer(nsB, 8080, 'hello from b');
  c.cleanup.push('server b', server.stop);
  const viaNc = await inNetns(nsA, ['busybox', 'nc', '-w', '3', ipB, '8080'], { allowFail: true });
  assert.is(viaNc.stdout.trim(), 'hello from b', `nc from A: ${viaNc.stderr}`);
  // host to pod IP, and through portmap on 127.0.0.1:hostPort
  assert.is(await tcpRead(ipB, 8080), 'hello from b');
  assert.is(await tcpRead('127.0.0.1', hostPort), 'hello from b');
  assert.is(await readSysctl(`net.ipv4.conf.${BRIDGE}.route_localnet`), '1', 'portmap sets route_localnet on the bridge for hostIP 127.0.0.1');
  assert.equal(await natChainsOfNetwork(NET), [portmapChain(NET, 'pod-b')], 'a per-pod DNAT chain exists, named as portmap names it');
  assert.ok((await ourFirewall()).some((l) => l.includes(portmapChain(NET, 'pod-b'))), 'the scoped firewall view sees it (so its emptiness later means something)');

  await network.check(att('pod-a', nsA));
  // portmap 1.1.1's CHECK wrongly wants an ip6tables chain for an IPv4-only pod when ip6tables works
  // (containernetworking/plugins#819, fixed in later releases): accept that one known failure.
  const checkB = await network.check(att('pod-b', nsB)).then(() => undefined, (e: CniError) => e);
  if (checkB) {
    assert.is(checkB.plugin, 'portmap');
    assert.match(checkB.message, 'could not check ipv6 dnat');
  }

  // The cache holds the exact config, args and result of ADD.
  const cached = (await network.cached('pod-b'))!;
  assert.equal(cached.result, resB);
  assert.equal(cached.capabilityArgs, { portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp', hostIP: '127.0.0.1' }] });
  assert.equal(cached.cniArgs, [['IgnoreUnknown', '1'], ['K8S_POD_NAMESPACE', 'default'], ['K8S_POD_NAME', 'pod-pod-b'], ['K8S_POD_INFRA_CONTAINER_ID', 'pod-b'], ['K8S_POD_UID', 'uid-pod-b']]);

  // "Agent restart": a fresh instance, DEL with nothing but the ids (no port mappings, no netns path given).
  const restarted = await load();
  await restarted.del({ containerId: 'pod-b' });
  await restarted.del({ containerId: 'pod-a', netnsPath: nsA });
  await restarted.del({ containerId: 'pod-a', netnsPath: nsA }); // idempotent
  await server.stop();
  assert.equal(await bridgePorts(BRIDGE), [], 'veths gone');
  assert.equal(await listLeases(restarted), [], 'leases released');
  assert.equal(await fs.readdir(c.cacheDir), [], 'cache entries removed');
  assert.equal(await ourFirewall(), ctx.firewallBefore, 'hostPort rules removed');
  assert.ok(await tcpRead('127.0.0.1', hostPort, 1000).then(() => false, () => true), 'the hostPort no longer answers');
});

T('DEL after the namespace is gone still releases the lease', async (c) => {
  if (!canRun) return;
  const network = await load();
  const ns = await netns();
  await network.add(att('gone', ns));
  assert.is((await listLeases(network)).length, 1);
  await removeNetns(ns); // the veth dies with the namespace; the lease does not
  // What a writer killed in atomicWrite leaves beside the entry: this attachment's goes with it, another's stays.
  const ours = `.${path.basename(network.cacheFile('gone'))}.0badc0de.tmp`;
  const theirs = `.${path.basename(network.cacheFile('other'))}.0badc0de.tmp`;
  for (const n of [ours, theirs]) await fs.writeFile(path.join(c.cacheDir, n), '{');
  try {
    await network.del({ containerId: 'gone', netnsPath: ns });
    assert.equal(await listLeases(network), []);
    // The kernel takes the namespace's veth pair down in its own time after the last reference goes.
    await eventually('the veth to go with its namespace', async () => (await bridgePorts(BRIDGE)).length === 0, 10_000);
    assert.equal(await fs.readdir(c.cacheDir), [theirs]);
  } finally {
    await fs.rm(path.join(c.cacheDir, theirs), { force: true });
  }
});

T('ADD through a descriptor this process holds (/proc/<pid>/fd/N): the cache records the lasting path given, which a later DEL uses', async () => {
  if (!canRun) return;
  const network = await load();
  const ns = await netns();
  const held = await fs.open(ns, 'r');
  let ip: string | undefined;
  try {
    const result = await network.add(att('held', `/proc/${process.pid}/fd/${held.fd}`, { cachedNetnsPath: ns }));
    ip = podIP(result);
  } finally {
    await held.close();
  }
  assert.ok(ip, 'attached');
  assert.is((await network.cached('held'))?.netnsPath, ns);
  await network.del({ containerId: 'held' });
  assert.equal(await listLeases(network), []);
  assert.equal(await bridgePorts(BRIDGE), [], 'the DEL entered the namespace at the cached path and removed the veth');
});

T('a killed writer\'s temporary cache file: forget() drops it with no entry beside it; GC drops any older than the grace period, keeps a fresh one', async (c) => {
  if (!canRun) return;
  const network = await load();
  await fs.mkdir(c.cacheDir, { recursive: true });
  const lone = `.${path.basename(network.cacheFile('never-added'))}.0badc0de.tmp`;
  const old = `.${path.basename(network.cacheFile('old'))}.0badc0de.tmp`;
  const fresh = `.${path.basename(network.cacheFile('fresh'))}.0badc0de.tmp`;
  for (const n of [lone, old, fresh]) await fs.writeFile(path.join(c.cacheDir, n), '{');
  const hourAgo = new Date(Date.now() - 3_600_000);
  await fs.utimes(path.join(c.cacheDir, old), hourAgo, hourAgo);
  await network.forget('never-added');
  assert.equal((await fs.readdir(c.cacheDir)).sort(), [fresh, old].sort());
  await releaseStaleAttachments(c.cacheDir, new Set(), { graceMs: 60_000 });
  assert.equal(await fs.readdir(c.cacheDir), [fresh]);
  await fs.rm(path.join(c.cacheDir, fresh));
});

T('30 create/delete cycles leave no veth, netns, firewall rule, lease or cache entry', async (c) => {
  if (!canRun) return;
  const network = await load();
  const linksBefore = await hostLinks();
  const fwBefore = await ourFirewall();
  const ipsSeen = new Set<string>();
  for (let round = 0; round < 3; round++) {
    const pods = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const file = path.join(c.nsDir, `cycle-${round}-${i}`);
      await createNetns(file);
      c.cleanup.push(`netns ${file}`, () => removeNetns(file));
      const a = att(`cyc-${round}-${i}`, file, { portMappings: [{ hostPort: 31000 + i, containerPort: 80, protocol: 'tcp' }] });
      const res = await network.add(a);
      return { a, file, ip: podIP(res)! };
    }));
    const ips = pods.map((p) => p.ip);
    assert.is(new Set(ips).size, 10, `distinct IPs in round ${round}`);
    ips.forEach((ip) => ipsSeen.add(ip));
    assert.is((await bridgePorts(BRIDGE)).length, 10);
    assert.is((await listLeases(network)).length, 10);
    await Promise.all(pods.map(async (p) => {
      await network.del({ containerId: p.a.containerId, netnsPath: p.file });
      await removeNetns(p.file);
    }));
  }
  assert.equal(await bridgePorts(BRIDGE), []);
  assert.equal(await newLinksOf(linksBefore, [BRIDGE]), [], 'no new host interfaces');
  assert.equal((await fs.readdir(c.nsDir)).filter((n) => n.startsWith('cycle-')), [], 'no netns files');
  assert.equal(await ourFirewall(), fwBefore, 'no iptables/nft line of these pods left');
  assert.equal(await listLeases(network), [], 'no lease');
  assert.equal(await fs.readdir(c.cacheDir), [], 'no cache entry');
});

T('releaseStaleLeases releases exactly the leases of pods that are gone', async (c) => {
  if (!canRun) return;
  const network = await load();
  const [nsLive, nsCached, nsNoCache] = [await netns(), await netns(), await netns()];
  const live = await network.add(att('live', nsLive));
  await network.add(att('dead-cached', nsCached, { portMappings: [{ hostPort: 32001, containerPort: 80, protocol: 'tcp' }] }));
  const noCache = await network.add(att('dead-nocache', nsNoCache));
  await fs.rm(network.cacheFile('dead-nocache')); // a lost cache entry
  // a lease host-local wrote long ago for a container that is gone, with no interface recorded
  const leaseDir = path.join(c.ipamDir, network.name);
  await fs.writeFile(path.join(leaseDir, `10.244.${third}.250`), 'ancient-one');
  assert.is((await listLeases(network)).length, 4);

  assert.equal(await releaseStaleLeases(network, new Set(['live', 'dead-cached', 'dead-nocache', 'ancient-one']), { graceMs: 0 }), [], 'all live: nothing released');
  assert.equal(await releaseStaleLeases(network, new Set(['live'])), [], 'within the grace period: nothing released');

  const released = await releaseStaleLeases(network, new Set(['live']), { graceMs: 0 });
  const byId = Object.fromEntries(released.map((r) => [r.containerId, r]));
  assert.equal(Object.keys(byId).sort(), ['ancient-one', 'dead-cached', 'dead-nocache']);
  assert.is(byId['dead-cached']!.via, 'cache');
  assert.is(byId['dead-nocache']!.via, 'ipam');
  assert.equal(byId['dead-nocache']!.ips, [podIP(noCache)]);
  assert.is(byId['ancient-one']!.via, 'file');
  const left = await listLeases(network);
  assert.equal(left.map((l) => [l.containerId, l.ip]), [['live', podIP(live)]]);
  assert.ok(await fs.access(network.cacheFile('live')).then(() => true), 'live cache entry kept');
  assert.not.ok(await fileExists(network.cacheFile('dead-cached')));
  assert.not.ok((await natChainsOfNetwork(NET)).includes(portmapChain(NET, 'dead-cached')), 'the dead pod hostPort rules went with its cached DEL');
  assert.equal(await ourFirewall(), ctx.firewallBefore, '… all of them');
  // the live pod is untouched: still reachable from the host
  assert.is((await inNetns(nsLive, ['busybox', 'ping', '-c1', '-W2', `10.244.${third}.1`], { allowFail: true })).code, 0);

  await network.del({ containerId: 'live', netnsPath: nsLive });
  await network.del({ containerId: 'dead-nocache', netnsPath: nsNoCache }); // its veth (no cache) goes with a plain DEL
  assert.equal(await bridgePorts(BRIDGE), []);
});

T('a 0.4.0 .conf (single plugin) works, picked by name among several configs', async (c) => {
  if (!canRun) return;
  const dir = path.join(c.root, 'conf-040');
  await fs.mkdir(dir);
  await fs.writeFile(path.join(dir, '00-broken.conflist'), '{ not json');
  await fs.writeFile(path.join(dir, '50-old.conf'), JSON.stringify({
    cniVersion: '0.4.0', name: 'old', type: 'bridge', bridge: BRIDGE2, isGateway: true, ipMasq: false,
    ipam: { type: 'host-local', subnet: POD_CIDR2, dataDir: c.ipamDir },
  }));
  // the first file in lexical order is broken: loading without a name says so, naming the file
  const err = await rejects<CniConfigError>(CniNetwork.load({ confDir: dir, cacheDir: c.cacheDir, binDirs: [PLUGIN_DIR] }));
  assert.instance(err, CniConfigError);
  assert.match(err.message, '00-broken.conflist');
  assert.match(err.message, 'not valid JSON');
  const network = await CniNetwork.load({ confDir: dir, cacheDir: c.cacheDir, binDirs: [PLUGIN_DIR], networkName: 'old' });
  assert.is(network.config.plugins.length, 1);
  const ns = await netns();
  const res = await network.add(att('old-1', ns));
  assert.is(res.cniVersion, '0.4.0');
  assert.is(res.ips?.[0]?.version, '4');
  const ip = podIP(res)!;
  assert.ok(ip.startsWith(`10.244.${third + 1}.`));
  assert.is(await inNetns(ns, ['busybox', 'ping', '-c1', '-W2', `10.244.${third + 1}.1`]).then((r) => r.code), 0);
  await network.check(att('old-1', ns));
  await network.del({ containerId: 'old-1', netnsPath: ns });
  assert.equal(await listLeases(network), []);
  assert.equal(await bridgePorts(BRIDGE2), []);
});

T('broken configs and a missing plugin binary give clear errors, and ADD leaves nothing behind', async (c) => {
  if (!canRun) return;
  const dir = path.join(c.root, 'conf-errors');
  await fs.mkdir(dir);
  const write = (name: string, v: unknown) => fs.writeFile(path.join(dir, name), typeof v === 'string' ? v : JSON.stringify(v));
  const loadErr = async (v: unknown) => {
    await fs.rm(path.join(dir, 'x.conflist'), { force: true });
    await write('x.conflist', v);
    return rejects<CniConfigError>(CniNetwork.load({ confDir: dir, cacheDir: c.cacheDir }));
  };
  assert.match((await loadErr({ cniVersion: '1.0.0', name: 'n', plugins: [] })).message, '"plugins" must be a non-empty array');
  assert.match((await loadErr({ cniVersion: '9.9.9', name: 'n', plugins: [{ type: 'bridge' }] })).message, 'cniVersion "9.9.9" is not supported');
  assert.match((await loadErr({ cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] })).message, '"name" must be');
  assert.match((await loadErr({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: '../../bin/sh' }] })).message, 'plugins[0].type');
  assert.match((await loadErr({ cniVersion: '1.0.0', name: 'n' })).message, 'needs a "plugins" array');
  const empty = await rejects<CniConfigError>(CniNetwork.load({ confDir: path.join(c.root, 'nowhere'), cacheDir: c.cacheDir }));
  assert.match(empty.message, 'no CNI network config in');
  assert.is(empty.reason, 'CNIConfigInvalid');

  // missing plugin binary: fails before anything runs
  const ns = await netns();
  const missing = CniNetwork.fromConfig({ cniVersion: '1.0.0', name: 'miss', plugins: [
    { type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', subnet: POD_CIDR, dataDir: c.ipamDir } },
    { type: 'no-such-plugin' },
  ] }, { binDirs: [PLUGIN_DIR, '/nonexistent/cni'], cacheDir: c.cacheDir });
  const e1 = await rejects<CniError>(missing.add(att('miss-1', ns)));
  assert.instance(e1, CniError);
  assert.is(e1.reason, 'CNIPluginNotFound');
  assert.is(e1.plugin, 'no-such-plugin');
  assert.is(e1.command, 'ADD');
  assert.match(e1.message, 'CNI plugin "no-such-plugin" of network "miss" not found in /usr/lib/cni:/nonexistent/cni');
  assert.match(e1.hint ?? '', 'containernetworking-plugins');
  assert.equal(await bridgePorts(BRIDGE), []);
  assert.not.ok(await fileExists(missing.cacheFile('miss-1')));

  // the plugin's own error JSON comes through (host-local rejecting a bad subnet, inside bridge)
  const badIpam = CniNetwork.fromConfig({ cniVersion: '1.0.0', name: 'badipam', plugins: [
    { type: 'bridge', bridge: BRIDGE, ipam: { type: 'host-local', ranges: [[{ subnet: 'not-a-cidr' }]], dataDir: c.ipamDir } },
  ] }, { binDirs: [PLUGIN_DIR], cacheDir: c.cacheDir });
  const ns2 = await netns();
  const e2 = await rejects<CniError>(badIpam.add(att('bad-1', ns2)));
  assert.instance(e2, CniError);
  assert.is(e2.plugin, 'bridge');
  assert.is(e2.command, 'ADD');
  assert.type(e2.code, 'number');
  assert.ok(e2.pluginMsg && e2.pluginMsg.length > 0);
  assert.match(e2.message, /^CNI ADD failed in plugin "bridge" of network "badipam" \(code \d+\): /);
  assert.match(e2.message, 'not-a-cidr');
  // bridge DEL cannot run with that ipam either, so the rollback failed: the cache entry stays for GC
  assert.ok(await fileExists(badIpam.cacheFile('bad-1')));
  await fs.rm(badIpam.cacheFile('bad-1'));
  await removeNetns(ns2);

  // a later plugin failing rolls the earlier ones back: no veth, no lease, no cache entry
  const failLate = CniNetwork.fromConfig({ cniVersion: '1.0.0', name: 'faillate', plugins: [
    { type: 'bridge', bridge: BRIDGE, isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: POD_CIDR }]], dataDir: c.ipamDir } },
    { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.no_such_knob': '1' } },
  ] }, { binDirs: [PLUGIN_DIR], cacheDir: c.cacheDir });
  const ns3 = await netns();
  const e3 = await rejects<CniError>(failLate.add(att('late-1', ns3)));
  assert.is(e3.plugin, 'tuning');
  assert.equal(await bridgePorts(BRIDGE), [], 'bridge DEL ran after the tuning failure');
  assert.equal(await listLeases(failLate), []);
  assert.not.ok(await fileExists(failLate.cacheFile('late-1')));
  assert.is((await inNetns(ns3, ['ip', '-o', 'link'])).stdout.includes('eth0'), false, 'no eth0 left in the pod');

  // not a namespace
  const e4 = await rejects<CniError>(missing.add(att('nons', path.join(c.root, 'no-such-ns'))));
  assert.is(e4.reason, 'CNINetnsMissing');
  // bad ids never reach a plugin
  assert.is((await rejects<CniError>(badIpam.add(att('bad id', ns)))).reason, 'CNIInvalidArgs');
});

const RECORDER = `
const fs = require('fs');
const conf = JSON.parse(fs.readFileSync(0, 'utf8'));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('CNI_')));
if (env.CNI_COMMAND === 'VERSION') { process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0'] })); process.exit(0); }
fs.appendFileSync(conf.log, JSON.stringify({ tag: conf.tag, pid: process.pid, env, conf }) + '\\n');
if (conf.sleepOn === env.CNI_COMMAND) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000);
if (conf.failOn === env.CNI_COMMAND && (!conf.failFlag || fs.existsSync(conf.failFlag))) {
  process.stderr.write('recorder log line\\n');
  process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, code: 107, msg: 'boom from ' + conf.tag, details: 'some details' }));
  process.exit(1);
}
if (env.CNI_COMMAND === 'ADD') {
  const res = conf.prevResult || { cniVersion: conf.cniVersion, interfaces: [{ name: 'veth-host' }, { name: env.CNI_IFNAME, sandbox: env.CNI_NETNS }],
    ips: [{ address: '10.99.0.5/24', interface: 1 }, { address: '10.99.1.1/24', interface: 0 }] };
  process.stdout.write(JSON.stringify(res));
}
`;

T('protocol: env, CNI_ARGS, injected name/cniVersion, prevResult, runtimeConfig, DEL in reverse with the cached result; plugin error JSON', async (c) => {
  if (!canRun) return;
  await fs.writeFile(path.join(c.binDir, 'sdt-recorder'), `#!${process.execPath}\n${RECORDER}`, { mode: 0o755 });
  const log = path.join(c.root, 'recorder.log');
  const conf = (failOn?: string) => ({ cniVersion: '1.0.0', name: 'rec', plugins: [
    { type: 'sdt-recorder', tag: 'first', log },
    { type: 'sdt-recorder', tag: 'second', log, capabilities: { portMappings: true, bandwidth: true }, ...(failOn ? { failOn } : {}) },
  ] });
  const cfgDir = path.join(c.root, 'conf-rec');
  await fs.mkdir(cfgDir);
  await fs.writeFile(path.join(cfgDir, 'rec.conflist'), JSON.stringify(conf()));
  const network = await CniNetwork.load({ confDir: cfgDir, binDirs: ['/nonexistent', c.binDir], cacheDir: c.cacheDir });
  const ns = await netns();
  const pm = [{ hostPort: 8081, containerPort: 80, protocol: 'UDP' }];
  const res: CniResult = await network.add({ containerId: 'rec1', netnsPath: ns, ifName: 'net1', podNamespace: 'ns1', podName: 'p1', podUid: 'u-1', portMappings: pm });
  assert.equal(podIPs(res), ['10.99.0.5'], 'only the sandbox interface addresses');
  const calls = (await fs.readFile(log, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(calls.map((x) => `${x.env.CNI_COMMAND}:${x.tag}`), ['ADD:first', 'ADD:second']);
  assert.equal(calls[0].env, {
    CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'rec1', CNI_NETNS: ns, CNI_IFNAME: 'net1',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=rec1;K8S_POD_UID=u-1',
    CNI_PATH: `/nonexistent:${c.binDir}`,
  });
  assert.is(calls[0].conf.name, 'rec');
  assert.is(calls[0].conf.cniVersion, '1.0.0');
  assert.is(calls[0].conf.prevResult, undefined);
  assert.is(calls[0].conf.runtimeConfig, undefined, 'no capability asked, no runtimeConfig');
  assert.equal(calls[1].conf.prevResult, res);
  assert.equal(calls[1].conf.runtimeConfig, { portMappings: [{ hostPort: 8081, containerPort: 80, protocol: 'udp' }] }, 'only capabilities the runtime has values for');

  await network.check({ containerId: 'rec1', netnsPath: ns, ifName: 'net1' });
  const dup = await rejects<CniError>(network.add({ containerId: 'rec1', netnsPath: ns, ifName: 'net1' }));
  assert.is(dup.reason, 'CNIAlreadyAttached');
  assert.is((await fs.readFile(log, 'utf8')).trim().split('\n').length, 4, 'no plugin ran for the duplicate ADD');
  await CniNetwork.fromConfig(network.config, { binDirs: [c.binDir], cacheDir: c.cacheDir }).del({ containerId: 'rec1', ifName: 'net1' });
  const calls2 = (await fs.readFile(log, 'utf8')).trim().split('\n').map((l) => JSON.parse(l)).slice(2);
  assert.equal(calls2.map((x) => `${x.env.CNI_COMMAND}:${x.tag}`), ['CHECK:first', 'CHECK:second', 'DEL:second', 'DEL:first']);
  for (const x of calls2) assert.equal(x.conf.prevResult, res, `${x.env.CNI_COMMAND} ${x.tag} gets the cached result`);
  const del2 = calls2[2];
  assert.equal(del2.conf.runtimeConfig, { portMappings: [{ hostPort: 8081, containerPort: 80, protocol: 'udp' }] }, 'DEL uses the cached port mappings');
  assert.is(del2.env.CNI_NETNS, ns, 'the cached netns path');
  assert.is(del2.env.CNI_ARGS, 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=rec1;K8S_POD_UID=u-1');

  // CHECK without a cached ADD
  assert.is((await rejects<CniError>(network.check({ containerId: 'never', netnsPath: ns }))).reason, 'CNINotAttached');

  // the plugin's error JSON, verbatim, with which plugin and command
  const failing = CniNetwork.fromConfig(conf('CHECK') as never, { binDirs: [c.binDir], cacheDir: c.cacheDir });
  await failing.add({ containerId: 'rec2', netnsPath: ns });
  const e = await rejects<CniError>(failing.check({ containerId: 'rec2', netnsPath: ns }));
  assert.is(e.plugin, 'sdt-recorder');
  assert.is(e.command, 'CHECK');
  assert.is(e.code, 107);
  assert.is(e.pluginMsg, 'boom from second');
  assert.is(e.details, 'some details');
  assert.is(e.stderr, 'recorder log line');
  assert.is(e.message, 'CNI CHECK failed in plugin "sdt-recorder" of network "rec" (code 107): boom from second: some details');
  await failing.del({ containerId: 'rec2' });

  // a failing DEL keeps the cache entry so it can be retried (this plugin fails DEL while the flag file exists)
  const flag = path.join(c.root, 'fail-del');
  await fs.writeFile(flag, '');
  const withFlag = { ...conf(), plugins: conf().plugins.map((p) => ({ ...p, failOn: 'DEL', failFlag: flag })) };
  await CniNetwork.fromConfig(withFlag as never, { binDirs: [c.binDir], cacheDir: c.cacheDir }).add({ containerId: 'rec3', netnsPath: ns });
  const afterRestart = CniNetwork.fromConfig(conf() as never, { binDirs: [c.binDir], cacheDir: c.cacheDir });
  const e5 = await rejects<CniError>(afterRestart.del({ containerId: 'rec3' }));
  assert.is(e5.command, 'DEL');
  assert.is(e5.pluginMsg, 'boom from second', 'DEL runs the cached ADD-time config, in reverse');
  assert.ok(await fileExists(afterRestart.cacheFile('rec3')), 'kept for a retry');
  await fs.rm(flag);
  await afterRestart.del({ containerId: 'rec3' });
  assert.not.ok(await fileExists(afterRestart.cacheFile('rec3')));

  // a torn entry (a power loss after the result's unsynced write) reads as none: DEL runs the current config
  await fs.writeFile(network.cacheFile('rec4'), '{"kind":"stevedoreCniCach');
  assert.is(await network.cached('rec4'), undefined);
  const logged = (await fs.readFile(log, 'utf8')).trim().split('\n').length;
  await network.del({ containerId: 'rec4' });
  const dels = (await fs.readFile(log, 'utf8')).trim().split('\n').slice(logged).map((l) => JSON.parse(l));
  assert.equal(dels.map((x) => `${x.env.CNI_COMMAND}:${x.tag}`), ['DEL:second', 'DEL:first']);
  assert.not.ok(await fileExists(network.cacheFile('rec4')), 'and the torn entry is gone');
});
T('agent killed -9 in the middle of ADD: a fresh instance DELs it all from the cache (veth, lease)', async (c) => {
  if (!canRun) return;
  const log = path.join(c.root, 'crash.log');
  const config = { cniVersion: '1.0.0', name: 'crash', plugins: [
    { type: 'bridge', bridge: BRIDGE, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: POD_CIDR }]], dataDir: c.ipamDir } },
    { type: 'sdt-recorder', tag: 'slow', log, sleepOn: 'ADD' },
  ] };
  const ns = await netns();
  const mod = new URL('../cni/index.js', import.meta.url).href;
  const script = `const { CniNetwork } = await import(${JSON.stringify(mod)});
    await CniNetwork.fromConfig(${JSON.stringify(config)}, { binDirs: ${JSON.stringify([PLUGIN_DIR, c.binDir])}, cacheDir: ${JSON.stringify(c.cacheDir)} })
      .add({ containerId: 'crashed', netnsPath: ${JSON.stringify(ns)} });`;
  const { spawn } = await import('node:child_process');
  const agent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
  // wait until the chain is past bridge and inside the slow plugin, then kill the "agent" (and the plugin it ran)
  let pluginPid = 0;
  for (let i = 0; i < 200 && !pluginPid; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const text = await fs.readFile(log, 'utf8').catch(() => '');
    if (text) pluginPid = JSON.parse(text.trim().split('\n')[0]!).pid;
  }
  assert.ok(pluginPid > 0, 'the slow plugin started');
  const exited = new Promise((r) => agent.once('exit', r));
  agent.kill('SIGKILL');
  await exited;
  process.kill(pluginPid, 'SIGKILL');
  const network = CniNetwork.fromConfig(config as never, { binDirs: [PLUGIN_DIR, c.binDir], cacheDir: c.cacheDir });
  const entry = await network.cached('crashed');
  assert.ok(entry, 'the cache entry was written before the first plugin ran');
  assert.is(entry!.result, null, 'ADD never finished');
  assert.is((await bridgePorts(BRIDGE)).length, 1, 'half-made: a veth');
  assert.is((await listLeases(network)).length, 1, 'half-made: a lease');
  // GC after the restart: the pod is not live, so everything goes
  const released = await releaseStaleLeases(network, new Set(), { graceMs: 0 });
  assert.equal(released.map((r) => [r.containerId, r.via]), [['crashed', 'cache']]);
  assert.equal(await bridgePorts(BRIDGE), []);
  assert.equal(await listLeases(network), []);
  assert.not.ok(await fileExists(network.cacheFile('crashed')));
});

T.run();
