/**
 * Pod networking through the runtime: `stevedore pod run` on a sandbox node
 * with a CNI network (bridge + host-local + portmap, the real plugins) in the
 * node's data dir. The sandbox shares the host's network namespace, so the
 * bridge gets a unique name and a random 10.244.N.0/24; traffic only flows
 * between the host and the pods' namespaces. Needs root.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaultNetworkConfig } from '../cni/index.js';
import { eventually, podStatus, useNode, type TestNode } from './helpers/node.js';
import { bridgePorts, firewallLinesNaming, natChainsOfNetwork, readSysctl, removeNatChains, run, writeSysctl } from './helpers/netns.js';

const T = suite('runtime: pod networking (CNI)');
const getNode = useNode(T);

const rand = randomBytes(3).toString('hex');
const BRIDGE = `sdr${rand}`;
const NETWORK = `sdr-${rand}`;
const third = 100 + (parseInt(rand.slice(0, 2), 16) % 140);
const SUBNET = `10.244.${third}.0/24`;
const HOST_PORT = 20_000 + (parseInt(rand.slice(2, 6), 16) % 20_000);
let ipForward = '';
let firewallBefore: string[] = [];
const ourFirewall = () => firewallLinesNaming([`10.244.${third}.`, NETWORK]);

const paths = (node: TestNode) => ({
  confDir: path.join(node.dataDir, 'cni', 'net.d'),
  cacheDir: path.join(node.dataDir, 'cni', 'results'),
  leaseDir: path.join(node.dataDir, 'cni', 'networks', NETWORK),
});

T.before(async () => {
  const node = getNode();
  const routes = (await run('ip', ['-4', 'route', 'show'])).stdout;
  if (routes.includes(`10.244.${third}.`)) throw new Error(`subnet ${SUBNET} is in use on this host`);
  ipForward = await readSysctl('net.ipv4.ip_forward');
  firewallBefore = await ourFirewall();
  // The CLI networks pods as soon as <data>/cni/net.d holds a config (where the agent writes its default network).
  await fs.mkdir(paths(node).confDir, { recursive: true });
  const config = defaultNetworkConfig({ podCidr: SUBNET, bridge: BRIDGE, name: NETWORK, ipamDataDir: path.join(node.dataDir, 'cni', 'networks') });
  await fs.writeFile(path.join(paths(node).confDir, '10-test.conflist'), JSON.stringify(config, null, 2));
});

T.after(async () => {
  // useNode's after hook (registered first) already removed every pod.
  await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
  // Only our network's per-pod chains: other tests on the machine have their own.
  const ours = await natChainsOfNetwork(NETWORK);
  if (ours.length) await removeNatChains(new RegExp(`^(${ours.join('|')})$`));
  if (ipForward) await writeSysctl('net.ipv4.ip_forward', ipForward);
});

const server = (name: string, opts: { hostPort?: number; hostname?: string; subdomain?: string; namespace?: string } = {}) => `
metadata: {name: ${name}, namespace: ${opts.namespace ?? 'net'}}
spec:
  ${opts.hostname ? `hostname: ${opts.hostname}` : ''}
  ${opts.subdomain ? `subdomain: ${opts.subdomain}` : ''}
  containers:
  - name: srv
    image: busybox
    command: [busybox, nc, -ll, -p, '8080', -e, echo, hi-from-${name}]
    ${opts.hostPort ? `ports: [{containerPort: 8080, hostPort: ${opts.hostPort}}]` : ''}
`;

async function runPod(node: TestNode, name: string, yaml: string, args: string[] = [], globalArgs: string[] = []): Promise<{ uuid: string; ip: string }> {
  const uuid = (await node.ok([...globalArgs, 'pod', 'run', '-f', await node.manifest(`${name}.yaml`, yaml), ...args])).trim();
  const s = await eventually(`${name} running`, async () => {
    const st = await podStatus(node, uuid) as Awaited<ReturnType<typeof podStatus>> & { podIPs?: string[] };
    return st.state === 'running' && st.apps.every((a) => a.state === 'running') ? st : undefined;
  });
  return { uuid, ip: s.podIPs?.[0] ?? '' };
}

/** Connect from the node (the sandbox, i.e. the host's network namespace) and return what the server said. */
async function fromNode(node: TestNode, host: string, port: number): Promise<string> {
  return (await node.sh(`busybox nc -w 2 ${host} ${port} </dev/null`)).stdout.trim();
}

async function inPod(node: TestNode, uuid: string, script: string) {
  return node.cli(['pod', 'enter', uuid, '--', 'sh', '-c', script]);
}

/** Nothing of any pod is left on the host: veths, leases, cache entries, per-pod NAT chains, netns mounts. */
async function assertNoNetworkLeftovers(node: TestNode, what: string): Promise<void> {
  assert.equal(await bridgePorts(BRIDGE), [], `${what}: no veth on the bridge`);
  const leases = (await fs.readdir(paths(node).leaseDir).catch(() => [] as string[])).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n));
  assert.equal(leases, [], `${what}: no IP lease`);
  assert.equal(await fs.readdir(paths(node).cacheDir).catch(() => []), [], `${what}: no CNI cache entry`);
  // Only lines naming this file's subnet or network: other tests on the machine change the firewall meanwhile.
  assert.equal(await ourFirewall(), firewallBefore, `${what}: no iptables/nft rule of these pods`);
  assert.equal((await node.mounts()).filter((m) => m.includes('/stage1/ns/')), [], `${what}: no netns file mounted`);
}

T('two pods get distinct IPs from the subnet and reach each other; the node reaches a pod by IP and by hostPort on 127.0.0.1', async () => {
  const node = getNode();
  const a = await runPod(node, 'a', server('a', { hostPort: HOST_PORT }));
  const b = await runPod(node, 'b', server('b'));
  const prefix = `10.244.${third}.`;
  assert.ok(a.ip.startsWith(prefix) && b.ip.startsWith(prefix), `IPs from ${SUBNET}: ${a.ip} ${b.ip}`);
  assert.is.not(a.ip, b.ip);
  assert.is(await eventually('a answers b', async () => {
    const r = await inPod(node, b.uuid, `busybox nc -w 2 ${a.ip} 8080 </dev/null`);
    return r.stdout.includes('hi-from-a') ? r.stdout.trim() : undefined;
  }), 'hi-from-a');
  assert.is((await inPod(node, a.uuid, `busybox ping -c1 -W2 ${b.ip}`)).exitCode, 0, 'a pings b');
  assert.match((await inPod(node, a.uuid, 'ip -o -4 addr show eth0')).stdout, new RegExp(`inet ${a.ip.replace(/\./g, '\\.')}/24`));
  assert.is(await fromNode(node, b.ip, 8080), 'hi-from-b', 'the node reaches a pod at its IP');
  assert.is(await fromNode(node, '127.0.0.1', HOST_PORT), 'hi-from-a', 'hostPort on 127.0.0.1');
  const text = await node.ok(['pod', 'status', a.uuid]);
  assert.match(text, new RegExp(`^ips=${a.ip.replace(/\./g, '\\.')}$`, 'm'));
  await node.ok(['pod', 'rm', '--force', a.uuid, b.uuid]);
  assert.is((await node.sh(`busybox nc -w 1 127.0.0.1 ${HOST_PORT} </dev/null`)).stdout.trim(), '', 'the hostPort is gone with the pod');
  await assertNoNetworkLeftovers(node, 'after rm');
});

T('the network is attached while the pod is prepared and its units start, and no app runs before it: each app\'s first instant sees eth0 with the pod IP and /etc/hosts naming it', async () => {
  const node = getNode();
  const probe = (name: string) => `  - name: ${name}
    image: busybox
    command: [sh, -c, 'ip -o -4 addr show eth0; grep -c "^10\\.244\\." /etc/hosts; exec sleep 600']`;
  // A bridge plugin that takes a second: without the gate the apps would run long before ADD is done.
  const bin = path.join(node.dataDir, 'cni', 'slow-bin');
  await fs.mkdir(bin, { recursive: true });
  for (const p of ['host-local', 'portmap', 'loopback']) await fs.symlink(`/usr/lib/cni/${p}`, path.join(bin, p)).catch(() => undefined);
  await fs.writeFile(path.join(bin, 'bridge'), '#!/bin/sh\nsleep 1\nexec /usr/lib/cni/bridge "$@"\n', { mode: 0o755 });
  const { uuid, ip } = await runPod(node, 'early', `
metadata: {name: early, namespace: net}
spec:
  containers:
${probe('first')}
${probe('second')}
`, [], ['--cni-bin-dir', bin]);
  const manifest = JSON.parse(await fs.readFile(path.join(node.dataDir, 'pods', 'run', uuid, 'pod.json'), 'utf8')) as { awaitsNetwork?: boolean };
  assert.is(manifest.awaitsNetwork, true, 'this pod took the overlapping path');
  for (const c of ['first', 'second']) {
    const out = await eventually(`${c}'s first lines`, async () => {
      const text = await node.ok(['pod', 'logs', uuid, '-c', c]);
      return text.trim().split('\n').length >= 2 ? text : undefined;
    });
    assert.match(out, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/24`), `${c}: eth0 had its address before the app ran: ${out}`);
    assert.match(out, /^1$/m, `${c}: /etc/hosts named the pod IP before the app ran: ${out}`);
  }
  await node.ok(['--cni-bin-dir', bin, 'pod', 'rm', '--force', uuid]);
  await assertNoNetworkLeftovers(node, 'after the early pod');
});

T('hostname + subdomain: the pod resolves its own FQDN from /etc/hosts', async () => {
  const node = getNode();
  const web = await runPod(node, 'web-0', server('web-0', { hostname: 'web-0', subdomain: 'web', namespace: 'shop' }));
  const fqdn = 'web-0.web.shop.svc.cluster.local';
  const hosts = (await inPod(node, web.uuid, 'cat /etc/hosts')).stdout;
  assert.match(hosts, new RegExp(`^${web.ip.replace(/\./g, '\\.')}\\t${fqdn.replace(/\./g, '\\.')}\\tweb-0$`, 'm'), hosts);
  const ping = await inPod(node, web.uuid, `busybox ping -c1 -W1 ${fqdn}`);
  assert.match(ping.stdout, new RegExp(`PING ${fqdn.replace(/\./g, '\\.')} \\(${web.ip.replace(/\./g, '\\.')}\\)`), ping.stdout + ping.stderr);
  assert.is((await inPod(node, web.uuid, 'hostname')).stdout.trim(), 'web-0');
  await node.ok(['pod', 'rm', '--force', web.uuid]);
});

T('fly and hostNetwork pods stay on the node\'s network: no CNI, no pod IP', async () => {
  const node = getNode();
  const host = await runPod(node, 'hostnet', `
metadata: {name: hostnet}
spec:
  hostNetwork: true
  containers:
  - {name: c, image: busybox, command: [sleep, '600']}
`);
  assert.is(host.ip, '', 'no pod IP of its own');
  assert.match((await inPod(node, host.uuid, 'ip -o link show')).stdout, new RegExp(BRIDGE), 'sees the node\'s interfaces');
  const fly = await runPod(node, 'fly', server('fly'), ['--stage1', 'fly']);
  assert.is(fly.ip, '');
  assert.equal(await fs.readdir(paths(node).cacheDir).catch(() => []), [], 'no CNI attachment');
  await node.ok(['pod', 'rm', '--force', host.uuid, fly.uuid]);
});

T('20 pods with hostPorts, created and removed twice, leave nothing behind', async () => {
  const node = getNode();
  for (let round = 0; round < 2; round++) {
    const uuids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const file = await node.manifest(`many-${i}.yaml`, server(`many-${i}`, { hostPort: HOST_PORT + 1 + i }));
      uuids.push((await node.ok(['pod', 'run', '-f', file])).trim());
    }
    const ips = await Promise.all(uuids.map(async (u) => ((await podStatus(node, u)) as unknown as { podIPs: string[] }).podIPs[0]));
    assert.is(new Set(ips).size, 20, `distinct IPs: ${ips.join(' ')}`);
    assert.is((await bridgePorts(BRIDGE)).length, 20);
    await node.ok(['pod', 'rm', '--force', ...uuids]);
    await assertNoNetworkLeftovers(node, `round ${round}`);
  }
});

T('pod run killed before, during or after CNI ADD (which overlaps the pod\'s preparation and its units\' start): the next command undoes it (no lease, no veth, no unit)', async () => {
  const node = getNode();
  const file = await node.manifest('crash.yaml', server('crash', { hostPort: HOST_PORT + 100 }));
  // attached: whether the killed run had attached the pod (undefined: ADD may or may not have finished by then).
  const points: Array<[string, boolean | undefined]> = [
    ['run:embryo', false], ['run:prepared-dir', undefined], ['run:stage1-prepared', undefined], ['run:launching', undefined], ['run:moved-to-prepared', undefined],
    ['run:moved-to-run', undefined], ['run:slice-started', undefined], ['run:network-attached', true],
  ];
  for (const [point, attached] of points) {
    const r = await node.cli(['pod', 'run', '-f', file], { STEVEDORE_CRASH_AT: point });
    assert.is(r.exitCode, 137, `killed at ${point}: ${r.stderr}`);
    if (attached !== undefined) assert.is((await bridgePorts(BRIDGE)).length, attached ? 1 : 0, `${point}: the killed run had ${attached ? '' : 'not '}attached the pod`);
    assert.equal(JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])), [], `${point}: the interrupted pod is undone`);
    assert.equal(await node.units(), [], `${point}: no unit left (none waits at the network gate)`);
    await assertNoNetworkLeftovers(node, point);
  }
  const ok = await runPod(node, 'crash', server('crash', { hostPort: HOST_PORT + 100 }));
  assert.is(await fromNode(node, ok.ip, 8080), 'hi-from-crash', 'the same pod runs afterwards with its network');
  await node.ok(['pod', 'rm', '--force', ok.uuid]);
  await assertNoNetworkLeftovers(node, 'after the crashes');
});

T('a pod with a network that fails while its directory is prepared is undone: no lease, no veth, no netns', async () => {
  const node = getNode();
  const yaml = server('broken', { hostPort: HOST_PORT + 101 }).replace('command: [busybox,', 'command: [no-such-program,');
  const r = await node.cli(['pod', 'run', '-f', await node.manifest('broken.yaml', yaml)]);
  assert.is.not(r.exitCode, 0);
  assert.match(r.stderr, /executable "no-such-program" not found in image/);
  assert.equal(JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])), [], 'the failed pod is gone');
  await assertNoNetworkLeftovers(node, 'after a failed prepare');
});

T('gc releases a lease whose pod is gone', async () => {
  const node = getNode();
  const { uuid, ip } = await runPod(node, 'leaky', server('leaky'));
  // Lose the pod behind the runtime's back, as a wiped data dir would: its lease and cache entry stay.
  const dir = path.join(node.dataDir, 'pods', 'run', uuid);
  await node.sh(`systemctl stop 'stevedore-${uuid.replace(/-/g, '')}*'; umount ${dir}/apps/*/rootfs ${dir}/stage1/ns/*; rm -rf ${dir}`);
  assert.ok((await fs.readdir(paths(node).leaseDir)).includes(ip), 'the lease is still held');
  const out = await node.ok(['gc', '--lease-grace-period', '0s']);
  assert.match(out, new RegExp(`released IP lease of ${uuid} ${ip.replace(/\./g, '\\.')}`));
  await assertNoNetworkLeftovers(node, 'after gc');
});

T('a DEL that failed at removal is finished by gc from the CNI cache, even while the network config is broken', async () => {
  const node = getNode();
  // A plugin dir of our own, so the test can take portmap away and give it back.
  const bin = path.join(node.dataDir, 'cni', 'bin');
  await fs.mkdir(bin, { recursive: true });
  for (const p of ['bridge', 'host-local', 'portmap', 'loopback']) await fs.symlink(`/usr/lib/cni/${p}`, path.join(bin, p)).catch(() => undefined);
  const uuid = (await node.ok(['--cni-bin-dir', bin, 'pod', 'run', '-f', await node.manifest('orphan.yaml', server('orphan', { hostPort: HOST_PORT + 200 }))])).trim();
  const ip = ((await podStatus(node, uuid)) as unknown as { podIPs: string[] }).podIPs[0]!;
  await fs.rm(path.join(bin, 'portmap'));
  const rm = await node.cli(['--cni-bin-dir', bin, 'pod', 'rm', '--force', uuid]);
  assert.is(rm.exitCode, 0, `the pod goes even if its DEL fails: ${rm.stderr}`);
  assert.ok((await fs.readdir(paths(node).leaseDir)).includes(ip), 'the failed DEL left the lease');
  assert.is((await fs.readdir(paths(node).cacheDir)).length, 1, '… and the cache entry');
  // Now the conf dir is broken (lexically first), and portmap is back.
  const broken = path.join(paths(node).confDir, '00-broken.conflist');
  await fs.writeFile(broken, '{"cniVersion": "1.0.0", "name": "broken", "plugins": [');
  await fs.symlink('/usr/lib/cni/portmap', path.join(bin, 'portmap'));
  try {
    const gc = await node.cli(['--cni-bin-dir', bin, 'gc', '--lease-grace-period', '0s']);
    assert.is(gc.exitCode, 1, 'gc reports the broken config');
    assert.match(gc.stderr, /00-broken\.conflist/);
    assert.match(gc.stderr, new RegExp(`released meanwhile: ${uuid} ${ip.replace(/\./g, '\\.')}`));
    await assertNoNetworkLeftovers(node, 'after gc with a broken config');
  } finally {
    await fs.rm(broken, { force: true });
  }
  assert.is((await node.cli(['gc', '--lease-grace-period', '0s'])).exitCode, 0);
});

/** What a failing run must not change. */
async function snapshot(node: TestNode): Promise<string> {
  const dirs = await Promise.all(['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage'].map((s) => fs.readdir(path.join(node.dataDir, 'pods', s))));
  const leases = await fs.readdir(paths(node).leaseDir).catch(() => []);
  return JSON.stringify({ dirs, leases, units: await node.units(), mounts: await node.mounts(), veths: await bridgePorts(BRIDGE), fw: await ourFirewall() });
}

T('a broken network config or a missing plugin: a clear error and nothing changes', async () => {
  const node = getNode();
  const file = await node.manifest('victim.yaml', server('victim'));
  const before = await snapshot(node);
  const broken = path.join(node.dataDir, 'cni', 'broken.d');
  await fs.mkdir(broken, { recursive: true });
  await fs.writeFile(path.join(broken, '10-broken.conflist'), '{"cniVersion": "1.0.0", "name": "x", "plugins": [');
  const bad = await node.cli(['--cni-conf-dir', broken, 'pod', 'run', '-f', file]);
  assert.is(bad.exitCode, 1, bad.stderr);
  assert.match(bad.stderr, /^error: .*10-broken\.conflist/);
  assert.not.match(bad.stderr, /\n\s+at /, 'no stack trace');
  assert.is(await snapshot(node), before);
  const noPlugin = path.join(node.dataDir, 'cni', 'noplugin.d');
  await fs.mkdir(noPlugin, { recursive: true });
  await fs.writeFile(path.join(noPlugin, '10-x.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: `${NETWORK}-x`, plugins: [{ type: 'no-such-plugin' }] }));
  const missing = await node.cli(['--cni-conf-dir', noPlugin, 'pod', 'run', '-f', file]);
  assert.is(missing.exitCode, 1, missing.stderr);
  assert.match(missing.stderr, /no-such-plugin/);
  assert.match(missing.stderr, /hint: /);
  assert.is(await snapshot(node), before);
});

T.run();
