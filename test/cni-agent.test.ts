/**
 * Pod networking through the agent, on a real local cluster (`stevedore up`
 * with its own bridge and pod CIDR, the real kubectl):
 * - the agent is SIGKILLed (STEVEDORE_CRASH_AT, set in the node systemd's
 *   environment for the agent unit) inside or right after CNI ADD, before any
 *   app runs; systemd restarts it: the pod ends up running with its network, or —
 *   if it was deleted meanwhile — gone, never half-made; killed while
 *   taking a deleted pod apart (before CNI DEL), it finishes the teardown;
 * - a broken CNI config and a missing plugin show up as the reason in the
 *   pod's status and events, and the pod starts once the config is fixed.
 * The half-made state is read from the node while the agent is dead, so the
 * test fails if the crash did not happen after ADD.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort, useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';
import { bridgePorts } from './helpers/netns.js';

const T = suite('cni through the agent: kill -9 inside and after ADD; broken config in pod status and events');
const getCluster = useCluster(T);

interface K8sPod {
  metadata: { name: string; uid: string };
  status: {
    phase?: string; podIP?: string;
    containerStatuses?: Array<{ ready: boolean; containerID?: string; state: { waiting?: { reason: string; message?: string } } }>;
  };
}

const AGENT = 'stevedore-agent.service';
const nodeDir = (c: TestCluster) => path.join(c.dataDir, 'node');
const confDir = (c: TestCluster) => path.join(nodeDir(c), 'cni', 'net.d');
const cacheDir = (c: TestCluster) => path.join(nodeDir(c), 'cni', 'results');
const leaseDir = (c: TestCluster) => path.join(nodeDir(c), 'cni', 'networks', 'stevedore');
const cidrPrefix = (c: TestCluster) => c.podCidr.split('.').slice(0, 3).join('.') + '.';

async function bridgeOf(c: TestCluster): Promise<string> {
  const conf = JSON.parse(await fs.readFile(path.join(confDir(c), '10-stevedore.conflist'), 'utf8')) as { plugins: Array<{ type: string; bridge?: string }> };
  return conf.plugins.find((p) => p.type === 'bridge')!.bridge!;
}

const server = (name: string, hostPort: number) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: srv
    image: busybox
    command: [busybox, nc, -ll, -p, '8080', -e, echo, hi-from-${name}]
    ports: [{containerPort: 8080, hostPort: ${hostPort}}]
`;

async function getPod(c: TestCluster, name: string): Promise<K8sPod | undefined> {
  const r = await c.kubectl(['get', 'pod', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as K8sPod) : undefined;
}

const uuidOf = (p: K8sPod) => p.status.containerStatuses?.[0]?.containerID?.replace('rkt://', '').split(':')[0];

async function runningWithIP(c: TestCluster, name: string, timeoutMs = 90_000): Promise<K8sPod> {
  return eventually(`${name} Running with a pod IP`, async () => {
    const p = await getPod(c, name);
    return p?.status.phase === 'Running' && p.status.containerStatuses?.every((s) => s.ready) && p.status.podIP?.startsWith(cidrPrefix(c)) ? p : undefined;
  }, timeoutMs);
}

async function agentPid(c: TestCluster): Promise<number> {
  return Number((await c.node(['systemctl', 'show', '-p', 'MainPID', '--value', AGENT])).stdout.trim());
}

async function readCache(c: TestCluster): Promise<string[]> {
  // <network>-<uuid>-<ifName>.json
  return (await fs.readdir(cacheDir(c)).catch(() => [] as string[])).map((f) => /^stevedore-(.+)-eth0\.json$/.exec(f)?.[1] ?? f);
}

async function readLeases(c: TestCluster): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of await fs.readdir(leaseDir(c)).catch(() => [] as string[])) {
    if (!f.startsWith(cidrPrefix(c))) continue;
    out.set(f, (await fs.readFile(path.join(leaseDir(c), f), 'utf8')).split(/\r?\n/)[0]!.trim());
  }
  return out;
}

/** Runtime UUIDs of the pods the API shows running with a pod IP: the only ones allowed to hold network resources. */
async function networkedPods(c: TestCluster): Promise<string[]> {
  const list = JSON.parse(await c.k(['get', 'pods', '-o', 'json'])) as { items: K8sPod[] };
  return list.items.filter((p) => p.status.phase === 'Running' && p.status.podIP?.startsWith(cidrPrefix(c))).map((p) => uuidOf(p)!).sort();
}

/** Every lease, cache entry, veth, netns mount and pod dir on the node belongs to a running pod, one each. */
async function assertNothingHalfMade(c: TestCluster, what: string): Promise<void> {
  const live = await networkedPods(c);
  assert.equal((await readCache(c)).sort(), live, `${what}: CNI cache entries = running pods`);
  assert.equal([...(await readLeases(c)).values()].sort(), live, `${what}: IP leases = running pods`);
  assert.is((await bridgePorts(await bridgeOf(c))).length, live.length, `${what}: one veth per running pod`);
  const nsMounts = (await c.node(['cat', '/proc/self/mountinfo'])).stdout.split('\n').filter((l) => l.includes(nodeDir(c)) && / nsfs /.test(l));
  assert.ok(nsMounts.every((m) => live.some((u) => m.includes(u))), `${what}: netns mounts only for running pods:\n${nsMounts.join('\n')}`);
  for (const state of ['embryo', 'prepare', 'prepared', 'exited-garbage', 'garbage']) {
    assert.equal(await fs.readdir(path.join(nodeDir(c), 'pods', state)), [], `${what}: pods/${state} empty`);
  }
}

/**
 * Restart the agent with a crash point armed, create `name`, wait for the
 * agent to die there, disarm, and return the half-made pod's UUID as read
 * from the node while the agent was down.
 */
async function crashAgentAt(c: TestCluster, point: string, name: string, hostPort: number, whileDead?: () => Promise<void>): Promise<string> {
  const cacheBefore = new Set(await readCache(c));
  const bridge = await bridgeOf(c);
  const vethsBefore = (await bridgePorts(bridge)).length;
  await c.node(['systemctl', 'set-environment', `STEVEDORE_CRASH_AT=${point}`]);
  try {
    // Type=notify: restart returns once the new agent is up (it re-adopts the running pods, which runs no crash point).
    const restart = await c.node(['systemctl', 'restart', AGENT]);
    assert.is(restart.code, 0, restart.stderr);
    const armed = await agentPid(c);
    await c.k(['apply', '-f', '-'], server(name, hostPort));
    await eventually(`the agent to die at ${point}`, async () => ((await agentPid(c)) !== armed ? true : undefined), 60_000);
  } finally {
    // systemd restarts the agent after RestartSec=2; disarmed by then, it does not crash again.
    await c.node(['systemctl', 'unset-environment', 'STEVEDORE_CRASH_AT']);
  }
  const added = (await readCache(c)).filter((u) => !cacheBefore.has(u));
  assert.is(added.length, 1, `${point}: the killed agent had run CNI ADD for one pod (cache: ${added})`);
  const uuid = added[0]!;
  if (point.startsWith('cni:add:')) {
    const entry = JSON.parse(await fs.readFile(path.join(cacheDir(c), `stevedore-${uuid}-eth0.json`), 'utf8')) as { result: unknown };
    assert.is(entry.result, null, `${point}: killed inside ADD, the cache entry has no result yet`);
  }
  assert.ok([...(await readLeases(c)).values()].includes(uuid), `${point}: it holds a lease`);
  assert.is((await bridgePorts(bridge)).length, vethsBefore + 1, `${point}: its veth is on the bridge`);
  await whileDead?.();
  return uuid;
}

T('the cluster networks pods: the demo pod runs with an IP from the node\'s CIDR, one lease, veth and cache entry', async () => {
  const c = getCluster();
  const demo = await runningWithIP(c, 'demo');
  assert.equal(await networkedPods(c), [uuidOf(demo)!]);
  await assertNothingHalfMade(c, 'after up');
});

// ADD runs while the pod is prepared and its units start (runtime-rkt/README.md): cni:add:bridge is inside it (bridge
// done, portmap not yet), cni:add:portmap at its very end (the cache entry has no result yet in both); run:network-attached
// is right after it, the IPs written and the apps still waiting at the network gate.
for (const point of ['cni:add:bridge', 'cni:add:portmap', 'run:network-attached']) {
  T(`agent killed at ${point} (inside or right after CNI ADD, before any app runs): restarted, the pod runs with its network`, async () => {
    const c = getCluster();
    const name = `crash-${point.split(':').pop()}`;
    const hostPort = await freePort();
    const halfMade = await crashAgentAt(c, point, name, hostPort);
    const pod = await runningWithIP(c, name);
    assert.is.not(uuidOf(pod), halfMade, 'a fresh pod, not the half-made one');
    const reply = await eventually('the pod answers on its IP', async () => {
      const r = await c.node(['busybox', 'nc', '-w', '2', pod.status.podIP!, '8080']);
      return r.stdout.includes(`hi-from-${name}`) ? r.stdout.trim() : undefined;
    });
    assert.is(reply, `hi-from-${name}`);
    assert.is((await c.node(['busybox', 'nc', '-w', '2', '127.0.0.1', String(hostPort)])).stdout.trim(), `hi-from-${name}`, 'and on its hostPort');
    await assertNothingHalfMade(c, point);
    await c.k(['delete', 'pod', name, '--wait=true']);
    await assertNothingHalfMade(c, `${point}, deleted`);
  });
}

T('agent killed after CNI ADD and the pod deleted while it is down: the restarted agent cleans it up', async () => {
  const c = getCluster();
  const halfMade = await crashAgentAt(c, 'run:network-attached', 'crash-gone', await freePort(), async () => {
    await c.k(['delete', 'pod', 'crash-gone', '--grace-period=0', '--force', '--wait=false']);
  });
  await eventually('the restarted agent to take the half-made pod apart', async () => ((await readCache(c)).includes(halfMade) ? undefined : true), 60_000);
  assert.is(await getPod(c, 'crash-gone'), undefined);
  await assertNothingHalfMade(c, 'deleted while the agent was down');
});

T('agent killed while taking a deleted pod apart (before CNI DEL): restarted, it finishes the teardown', async () => {
  const c = getCluster();
  const pod = await (async () => {
    await c.k(['apply', '-f', '-'], server('teardown', await freePort()));
    return runningWithIP(c, 'teardown');
  })();
  const uuid = uuidOf(pod)!;
  await c.node(['systemctl', 'set-environment', 'STEVEDORE_CRASH_AT=rm:marked']);
  try {
    assert.is((await c.node(['systemctl', 'restart', AGENT])).code, 0);
    const armed = await agentPid(c);
    await c.k(['delete', 'pod', 'teardown', '--wait=false']);
    await eventually('the agent to die at rm:marked', async () => ((await agentPid(c)) !== armed ? true : undefined), 60_000);
  } finally {
    await c.node(['systemctl', 'unset-environment', 'STEVEDORE_CRASH_AT']);
  }
  assert.ok((await readCache(c)).includes(uuid), 'killed before CNI DEL: the attachment is still cached');
  assert.ok([...(await readLeases(c)).values()].includes(uuid), '… and the lease held');
  await eventually('the pod gone from the API', async () => ((await getPod(c, 'teardown')) ? undefined : true), 60_000);
  await eventually('the teardown finished', async () => ((await readCache(c)).includes(uuid) ? undefined : true), 30_000);
  await assertNothingHalfMade(c, 'teardown after the kill');
});

interface K8sEvent { type: string; reason: string; message: string }

async function waitingFor(c: TestCluster, name: string, reason: string): Promise<{ message: string; events: K8sEvent[] }> {
  const message = await eventually(`${name} waiting with ${reason}`, async () => {
    const w = (await getPod(c, name))?.status.containerStatuses?.[0]?.state.waiting;
    return w?.reason === reason ? w.message ?? '' : undefined;
  }, 60_000);
  const events = await eventually(`a ${reason} event`, async () => {
    const list = JSON.parse(await c.k(['get', 'events', '--field-selector', `involvedObject.name=${name}`, '-o', 'json'])) as { items: K8sEvent[] };
    const hits = list.items.filter((e) => e.reason === reason);
    return hits.length ? hits : undefined;
  });
  return { message, events };
}

T('a broken CNI config, then a missing plugin: the reason is in the pod\'s status and events; fixed, the pod starts', async () => {
  const c = getCluster();
  const broken = path.join(confDir(c), '00-broken.conflist');
  const noPlugin = path.join(confDir(c), '00-noplugin.conflist');
  try {
    // Lexically first, so the runtime picks it over the default network.
    await fs.writeFile(broken, '{"cniVersion": "1.0.0", "name": "broken", "plugins": [');
    await c.k(['apply', '-f', '-'], server('netcfg', await freePort()));
    const invalid = await waitingFor(c, 'netcfg', 'CNIConfigInvalid');
    assert.match(invalid.message, /00-broken\.conflist is not valid JSON/);
    assert.match(invalid.message, /fix or remove the file/, 'says what to do');
    assert.ok(invalid.events.every((e) => e.type === 'Warning') && invalid.events.some((e) => e.message.includes('00-broken.conflist')), JSON.stringify(invalid.events));
    assert.match(await c.k(['get', 'pod', 'netcfg']), /netcfg\s+0\/1\s+CNIConfigInvalid/);
    await assertNothingHalfMade(c, 'broken config');

    await fs.writeFile(noPlugin, JSON.stringify({ cniVersion: '1.0.0', name: 'noplugin', plugins: [{ type: 'no-such-plugin' }] }));
    await fs.rm(broken);
    const missing = await waitingFor(c, 'netcfg', 'CNIPluginNotFound');
    assert.match(missing.message, /no-such-plugin/);
    assert.match(missing.message, /\/opt\/cni\/bin|\/usr\/lib\/cni/, 'names the directories searched');
    assert.ok(missing.events.some((e) => e.type === 'Warning' && e.message.includes('no-such-plugin')), JSON.stringify(missing.events));
    await assertNothingHalfMade(c, 'missing plugin');
  } finally {
    await fs.rm(broken, { force: true });
    await fs.rm(noPlugin, { force: true });
  }
  // Backoff is at most a few seconds after a handful of failures.
  await runningWithIP(c, 'netcfg', 90_000);
  await c.k(['delete', 'pod', 'netcfg', '--wait=true']);
  await assertNothingHalfMade(c, 'after the fix');
});

T.run();
