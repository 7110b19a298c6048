/**
 * IP and netns leak check: 50 networked pods (half with hostPorts) created
 * and removed three times through the runtime, in-process inside a node
 * sandbox as the agent runs it, four at a time. After every round the node's
 * real state is read: veths (on the bridge and by name), nsfs mounts and
 * /run/netns, the pod and CNI cache dirs, host-local's lease files, and
 * iptables-save / ip6tables-save / `nft list ruleset` (the sandbox shares the
 * host's network namespace). Only what this test made is looked at, so other
 * tests on the machine may add and remove their own rules meanwhile.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultNetworkConfig } from '../cni/index.js';
import type { Pod } from '../runtime-api/pod-spec.js';
import { useNode, type TestNode, REPO } from './helpers/node.js';
import { bridgePorts, firewallLinesNaming, readSysctl, removeNatChains, run, writeSysctl } from './helpers/netns.js';
import type { ChurnPod, ChurnRequest } from './helpers/pod-churn.js';

const T = suite('cni: 50 pods x 3 rounds leave no veth, netns, rule or lease');
const getNode = useNode(T);

const rand = randomBytes(3).toString('hex');
const BRIDGE = `sdl${rand}`;
const NETWORK = `sdl-${rand}`;
const third = 10 + (parseInt(rand.slice(0, 2), 16) % 80);
const PREFIX = `10.243.${third}.`;
const SUBNET = `${PREFIX}0/24`;
const HOST_PORT_BASE = 40_000 + (parseInt(rand.slice(2, 6), 16) % 20_000);
const PODS = 50;
const ROUNDS = 3;
const CONCURRENCY = 4;
const CHURN = path.join(REPO, 'dist', 'test', 'helpers', 'pod-churn.js');

let ipForward = '';
/** CNI-DN-* chains portmap made for our pods (removed in after() should the test fail half way). */
const ourChains = new Set<string>();
let sandboxNetnsBefore = '';

const dirs = (node: TestNode) => ({
  confDir: path.join(node.dataDir, 'cni', 'net.d'),
  cacheDir: path.join(node.dataDir, 'cni', 'results'),
  ipamDir: path.join(node.dataDir, 'cni', 'networks'),
  leaseDir: path.join(node.dataDir, 'cni', 'networks', NETWORK),
});

T.before(async () => {
  const node = getNode();
  const routes = (await run('ip', ['-4', 'route', 'show'])).stdout;
  if (routes.includes(PREFIX)) throw new Error(`subnet ${SUBNET} is in use on this host`);
  ipForward = await readSysctl('net.ipv4.ip_forward');
  await fs.mkdir(dirs(node).confDir, { recursive: true });
  const config = defaultNetworkConfig({ podCidr: SUBNET, bridge: BRIDGE, name: NETWORK, ipamDataDir: dirs(node).ipamDir });
  await fs.writeFile(path.join(dirs(node).confDir, '10-leak.conflist'), JSON.stringify(config, null, 2));
  sandboxNetnsBefore = (await node.sh('ls -A /run/netns 2>/dev/null; true')).stdout;
});

T.after(async () => {
  // useNode's after hook (registered first) already removed every pod.
  await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
  if (ourChains.size) await removeNatChains(new RegExp(`^(${[...ourChains].join('|')})$`));
  if (ipForward) await writeSysctl('net.ipv4.ip_forward', ipForward);
});

function pod(i: number): Pod {
  return {
    metadata: { name: `leak-${i}`, namespace: 'leak', uid: `leak-uid-${i}` },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{
        name: 'c', image: 'busybox', command: ['sleep', '3600'],
        ...(i % 2 === 0 ? { ports: [{ containerPort: 8080, hostPort: HOST_PORT_BASE + i }] } : {}),
      }],
    },
  } as Pod;
}

async function churn<T>(node: TestNode, phase: 'run' | 'rm', body: Partial<ChurnRequest>): Promise<T> {
  const d = dirs(node);
  const req: ChurnRequest = { dataDir: node.dataDir, network: { confDir: d.confDir, cacheDir: d.cacheDir }, concurrency: CONCURRENCY, ...body };
  const file = path.join(node.dataDir, 'manifests', `churn-${phase}-${randomBytes(3).toString('hex')}.json`);
  await fs.writeFile(file, JSON.stringify(req));
  const r = await node.sh(`${process.execPath} ${CHURN} ${phase} ${file}`);
  if (r.exitCode !== 0) throw new Error(`pod-churn ${phase} exited ${r.exitCode}:\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** portmap's per-pod chain, found by the jump whose comment names the pod's container id. */
async function dnatChains(uuids: string[]): Promise<Map<string, string>> {
  const { stdout } = await run('iptables-save', ['-t', 'nat']);
  const chains = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const jump = /-j (CNI-DN-[0-9a-f]+)/.exec(line);
    const uuid = uuids.find((u) => line.includes(u));
    if (jump && uuid && line.includes(NETWORK)) chains.set(uuid, jump[1]!);
  }
  return chains;
}

const leaseFiles = async (node: TestNode) => (await fs.readdir(dirs(node).leaseDir).catch(() => [] as string[])).filter((n) => n.startsWith(PREFIX));

async function assertNothingLeft(node: TestNode, round: number, pods: ChurnPod[], veths: string[], chains: string[]): Promise<void> {
  const what = `round ${round + 1}`;
  assert.equal(await bridgePorts(BRIDGE), [], `${what}: no veth on the bridge`);
  const { stdout: links } = await run('ip', ['-o', 'link', 'show']);
  const alive = veths.filter((v) => new RegExp(`^\\d+: ${v}[@:]`, 'm').test(links));
  assert.equal(alive, [], `${what}: the pods' host-side veths are gone (not just off the bridge)`);
  const mounts = (await node.sh('cat /proc/self/mountinfo')).stdout.split('\n').filter((l) => l.includes(node.dataDir) && / nsfs /.test(l));
  assert.equal(mounts, [], `${what}: no netns file mounted below the data dir`);
  assert.is((await node.sh('ls -A /run/netns 2>/dev/null; true')).stdout, sandboxNetnsBefore, `${what}: /run/netns unchanged`);
  for (const state of ['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage']) {
    assert.equal(await fs.readdir(path.join(node.dataDir, 'pods', state)), [], `${what}: pods/${state} empty (no netns file under the data dir)`);
  }
  assert.equal(await leaseFiles(node), [], `${what}: no host-local lease`);
  assert.equal(await fs.readdir(dirs(node).cacheDir).catch(() => []), [], `${what}: no CNI cache entry`);
  const needles = [NETWORK, PREFIX, ...pods.map((p) => p.uuid), ...chains];
  assert.equal(await firewallLinesNaming(needles), [], `${what}: no iptables/ip6tables/nft rule or chain of ours`);
  assert.equal(await node.units(), [], `${what}: no unit`);
}

T(`${PODS} pods (half with hostPorts) created and removed ${ROUNDS} times`, async () => {
  const node = getNode();
  const started = Date.now();
  const seenIPs = new Set<string>();
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = Date.now();
    const pods = await churn<ChurnPod[]>(node, 'run', { pods: Array.from({ length: PODS }, (_, i) => pod(i)) });
    const t1 = Date.now();
    // The pods really are networked: one IP each from the subnet, one veth each, one lease each, portmap chains for the hostPort half.
    const ips = pods.map((p) => p.ips[0] ?? '');
    assert.ok(ips.every((ip) => ip.startsWith(PREFIX)), `IPs from ${SUBNET}: ${ips.join(' ')}`);
    assert.is(new Set(ips).size, PODS, 'distinct IPs');
    for (const ip of ips) seenIPs.add(ip);
    const veths = await bridgePorts(BRIDGE);
    assert.is(veths.length, PODS, 'one veth per pod on the bridge');
    assert.equal((await leaseFiles(node)).sort(), [...ips].sort(), 'host-local holds exactly the pods\' IPs');
    const chains = await dnatChains(pods.map((p) => p.uuid));
    for (const c of chains.values()) ourChains.add(c);
    assert.is(chains.size, PODS / 2, 'a portmap chain per hostPort pod');
    assert.ok((await firewallLinesNaming([PREFIX])).length > 0, 'the DNAT rules name the pod IPs (so the final check can see a leak)');

    await churn(node, 'rm', { uuids: pods.map((p) => p.uuid) });
    const t2 = Date.now();
    await assertNothingLeft(node, round, pods, veths, [...chains.values()]);
    console.log(`round ${round + 1}: ${PODS} pods up in ${((t1 - t0) / 1000).toFixed(1)} s, removed in ${((t2 - t1) / 1000).toFixed(1)} s`);
  }
  console.log(`${ROUNDS} rounds in ${((Date.now() - started) / 1000).toFixed(1)} s; ${seenIPs.size} distinct IPs used`);
});

T.run();
