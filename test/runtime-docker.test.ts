/**
 * runtime-docker against a real dockerd, started as a unit of a throw-away
 * node sandbox's systemd, with its data in a temp dir; pods on a CNI network
 * of their own (unique bridge, random 10.244.N.0/24: the sandbox shares the
 * host's network namespace); images pulled from a local registry on
 * 127.0.0.1. The after hook removes every pod, stops dockerd and the sandbox
 * (its mounts die with the sandbox's mount namespace), the bridge, our nat
 * chains and the temp dir. Needs root.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cachedAttachmentsIn, defaultNetworkConfig } from '../cni/index.js';
import { buildBusyboxImage } from '../runtime-rkt/image/demo-image.js';
import type { Pod } from '../runtime-api/index.js';
import { demultiplex, EngineClient, type EngineError } from '../runtime-docker/engine-api.js';
import { openDockerRuntime, stopEngine, engineOptions, enginePaths, importImage, LABEL, type DockerRuntime, type DockerRuntimeOpenOptions } from '../runtime-docker/index.js';
import { pack } from 'tar-stream';
import { execa } from 'execa';
import { parseEngineTimeUs } from '../runtime-docker/runtime.js';
import { HandlerNotOffered, ImageNotFound } from '../runtime-api/index.js';
import { eventually } from './helpers/assert.js';
import { tempDir } from './helpers/images.js';
import { natChainsOfNetwork, readSysctl, removeNatChains, run, writeSysctl } from './helpers/netns.js';
import { skopeoPush, startRegistry, type TestRegistry } from './helpers/registry.js';
import { withSandbox, type TestSandbox } from './helpers/sandbox.js';

const T = suite('runtime-docker: pods on a Docker Engine');
const CLI = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);

const rand = randomBytes(3).toString('hex');
const BRIDGE = `sdd${rand}`;
const NETWORK = `sdd-${rand}`;
const third = 100 + (parseInt(rand.slice(0, 2), 16) % 140);
const SUBNET = `10.244.${third}.0/24`;

let sandbox: TestSandbox | undefined;
let registry: TestRegistry | undefined;
let rt: DockerRuntime | undefined;
let openOpts: DockerRuntimeOpenOptions | undefined;
let workDir = '';
let ipForward = '';
let IMAGE = '';
const started: string[] = [];

T.before(async () => {
  workDir = await tempDir('docker');
  const routes = (await run('ip', ['-4', 'route', 'show'])).stdout;
  if (routes.includes(`10.244.${third}.`)) throw new Error(`subnet ${SUBNET} is in use on this host`);
  ipForward = await readSysctl('net.ipv4.ip_forward');
  const dataDir = path.join(workDir, 'node');
  const confDir = path.join(dataDir, 'cni', 'net.d');
  await fs.mkdir(confDir, { recursive: true });
  await fs.writeFile(path.join(confDir, '10-test.conflist'), JSON.stringify(defaultNetworkConfig({ podCidr: SUBNET, bridge: BRIDGE, name: NETWORK, ipamDataDir: path.join(dataDir, 'cni', 'networks') })));
  sandbox = await withSandbox();
  registry = await startRegistry(workDir);
  const layout = path.join(workDir, 'busybox-layout');
  await buildBusyboxImage(layout, { name: 'busybox', tag: '1' });
  IMAGE = `${registry.host}/test/busybox:1`;
  await skopeoPush(`oci:${layout}:1`, IMAGE, { format: 'v2s2' });
  openOpts = { dataDir, dbusAddress: sandbox.info.busAddress, network: { confDir, cacheDir: path.join(dataDir, 'cni', 'results') } };
  rt = await openDockerRuntime(openOpts);
});

T.after(async () => {
  for (const uuid of started) await rt?.removePod(uuid).catch((err) => console.error(`removing pod ${uuid}:`, err));
  await rt?.gc().catch((err) => console.error('gc:', err));
  await rt?.close();
  if (openOpts && sandbox) await stopEngine(engineOptions(openOpts)).catch((err) => console.error('stopping dockerd:', err));
  await sandbox?.stop();
  await registry?.stop();
  await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
  const ours = await natChainsOfNetwork(NETWORK);
  if (ours.length) await removeNatChains(new RegExp(`^(${ours.join('|')})$`));
  if (ipForward) await writeSysctl('net.ipv4.ip_forward', ipForward);
  if (workDir) await fs.rm(workDir, { recursive: true, force: true });
});

const runtime = () => rt!;

function pod(name: string, containers: Pod['spec']['containers'], spec: Partial<Pod['spec']> = {}): Pod {
  return { metadata: { name, namespace: 'dk', uid: `uid-${name}-${rand}`, labels: { app: name } }, spec: { containers, terminationGracePeriodSeconds: 5, ...spec } };
}

async function runPod(p: Pod): Promise<string> {
  const uuid = await runtime().runPod(p, {});
  started.push(uuid);
  return uuid;
}

const statusOf = async (uuid: string) => (await runtime().listPods()).find((p) => p.uuid === uuid);

async function collect(gen: AsyncGenerator<{ message: string; container: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of gen) out.push(`${l.container}: ${l.message}`);
  return out;
}

T('the engine: version, the multiplexed stream decoder, the log time stamps', async () => {
  assert.match(runtime().version, /^20\.10\./);
  assert.equal(runtime().handlers, ['namespaces']);
  const frame = (stream: number, s: string) => Buffer.concat([Buffer.from([stream, 0, 0, 0]), Buffer.from(new Uint32Array([0]).buffer).fill(0), Buffer.from(s)]);
  const f1 = frame(1, 'hello');
  f1.writeUInt32BE(5, 4);
  const f2 = frame(2, 'err');
  f2.writeUInt32BE(3, 4);
  const both = Buffer.concat([f1.subarray(0, 8), f1.subarray(8), f2]);
  const frames: string[] = [];
  // Split mid-header: the decoder must wait for the rest.
  for await (const f of demultiplex((async function* () { yield both.subarray(0, 5); yield both.subarray(5, 15); yield both.subarray(15); })())) frames.push(`${f.stream}:${f.data.toString()}`);
  assert.equal(frames, ['1:hello', '2:err']);
  assert.is(parseEngineTimeUs('2026-12-05T00:16:34.058085577Z'), BigInt(Date.parse('2026-12-05T00:16:34Z')) * 1000n + 58085n);
});

T('an image pulled from a local registry; an unknown one fails naming the engine\'s reason', async () => {
  assert.not.ok(await runtime().findImage(IMAGE));
  await runtime().pullImage(IMAGE, {});
  const found = await runtime().findImage(IMAGE);
  assert.ok(found?.id.startsWith('sha256:'));
  assert.is(found?.local, false);
  const err = await runtime().pullImage(`${registry!.host}/test/nope:1`, {}).then(() => undefined, (e: Error) => e);
  assert.ok(err, 'pulling a missing image fails');
  assert.match(err!.message, /pulling .*nope:1 through the docker engine failed/);
});

T('a pull with credentials (imagePullSecrets): refused without, pulled with the keyring\'s', async () => {
  const secured = await startRegistry(workDir, { kind: 'htpasswd', user: 'puller', password: 's3cret' });
  try {
    const layout = path.join(workDir, 'busybox-layout');
    const ref = `${secured.host}/private/busybox:1`;
    await skopeoPush(`oci:${layout}:1`, ref, { format: 'v2s2', creds: 'puller:s3cret' });
    const denied = await runtime().pullImage(ref, {}).then(() => undefined, (e: Error & { hint?: string }) => e);
    assert.match(String(denied?.message), /pulling .*private\/busybox:1 through the docker engine failed/);
    assert.match(String(denied?.hint), /imagePullSecrets/, `${denied?.message} / ${denied?.hint}`);
    const wrong = await runtime().pullImage(ref, { auth: { [secured.host]: { username: 'puller', password: 'nope' } } }).then(() => undefined, (e: Error) => e);
    assert.ok(wrong, 'a wrong password is refused');
    await runtime().pullImage(ref, { auth: { [secured.host]: { username: 'puller', password: 's3cret' } } });
    assert.ok(await runtime().findImage(ref));
  } finally {
    await secured.stop();
  }
});

T('a multi-container pod: Running with a pod IP, localhost shared, logs, exec with exit code', async () => {
  const uuid = await runPod(pod('web', [
    { name: 'srv', image: IMAGE, command: ['busybox', 'nc', '-ll', '-p', '8080', '-e', 'echo', 'hi-from-srv'] },
    { name: 'client', image: IMAGE, command: ['sh', '-c', 'echo started; while :; do nc 127.0.0.1 8080 </dev/null; sleep 0.3; done'], env: [{ name: 'WHO', value: 'x' }, { name: 'GREETING', value: 'hello $(WHO)' }, { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }] },
  ]));
  const st = await eventually('web running', async () => {
    const s = await statusOf(uuid);
    return s?.state === 'running' && s.apps.every((a) => a.state === 'running') ? s : undefined;
  });
  assert.is(st.name, 'web');
  assert.is(st.handler, 'namespaces');
  assert.is(st.namespace, 'dk');
  assert.is(st.uid, `uid-web-${rand}`);
  assert.equal(st.labels, { app: 'web' });
  assert.equal(st.apps.map((a) => a.name), ['srv', 'client']);
  assert.ok(st.podIPs?.[0]?.startsWith(`10.244.${third}.`), `pod IP in our subnet: ${st.podIPs}`);
  // The client reaches the server on the pod's localhost.
  const lines = await eventually('the client heard the server', async () => {
    const l = await collect(runtime().logs({ podUuid: uuid, container: 'client' }));
    return l.some((x) => x.includes('hi-from-srv')) ? l : undefined;
  });
  assert.is(lines[0], 'client: started');
  const tail = await collect(runtime().logs({ podUuid: uuid, container: 'client', tail: 1 }));
  assert.is(tail.length, 1);
  // Reachable from the node at its pod IP, through the bridge.
  const fromNode = await run('busybox', ['nc', '-w', '2', st.podIPs![0]!, '8080'], { allowFail: true });
  assert.match(fromNode.stdout, /hi-from-srv/);
  // exec: streams kept apart, the exit code passed on; env expanded.
  const proc = await runtime().exec(uuid, 'client', ['sh', '-c', 'echo out $GREETING; echo err >&2; exit 3'], { stdin: false, tty: false });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { err += d; });
  assert.is((await proc.exit).code, 3);
  assert.is(out, 'out hello x\n');
  assert.is(err, 'err\n');
  // exec on a terminal: one stream, the command sees a tty.
  const term = await runtime().exec(uuid, 'client', ['sh', '-c', 'tty; exit 5'], { stdin: false, tty: true, size: { cols: 100, rows: 30 } });
  let termOut = '';
  term.stdout.on('data', (d) => { termOut += d; });
  assert.is(term.stderr, undefined);
  assert.is((await term.exit).code, 5);
  assert.match(termOut, /\/dev\/pts\/\d+/);
  const ip = await runtime().runInContainer(uuid, 'client', ['sh', '-c', 'echo $MY_IP'], 5000);
  assert.is(ip.output.trim(), st.podIPs![0], 'status.podIP in the env');
  const hosts = await runtime().runInContainer(uuid, 'client', ['cat', '/etc/hosts'], 5000);
  assert.match(hosts.output, new RegExp(`^${st.podIPs![0]!.replace(/\./g, '\\.')}\\s+web`, 'm'));
  const probe = await runtime().runInContainer(uuid, 'srv', ['cat', '/etc/hostname'], 5000);
  assert.equal({ code: probe.exitCode, out: probe.output.trim() }, { code: 0, out: 'web' });
  const slow = await runtime().runInContainer(uuid, 'srv', ['sleep', '30'], 300);
  assert.ok(slow.timedOut);
  const missing = await runtime().exec(uuid, 'nope', ['true'], { stdin: false, tty: false }).then(() => undefined, (e: Error) => e);
  assert.match(String(missing?.message), /has no container "nope"/);
  // Port-forward: a connection inside the pod's network namespace.
  const target = await runtime().openPortForward(uuid);
  const conn = await target.dial(8080);
  target.close();
  let got = '';
  conn.stream.on('data', (d) => { got += d; });
  conn.stream.end();
  await conn.done;
  assert.match(got, /hi-from-srv/);
  // Usage counters from each running container's cgroup.
  const usage = (await runtime().containerUsage()).find((u) => u.uuid === uuid);
  assert.equal(usage?.containers.map((c) => c.name).sort(), ['client', 'srv']);
  assert.ok(usage!.containers.every((c) => c.memoryUsageBytes > 0 && c.cpuUsageNs > 0), JSON.stringify(usage));
  // Stop with a grace period: the engine sends SIGTERM, then SIGKILL.
  const t0 = Date.now();
  await runtime().stopPod(uuid, 1);
  assert.ok(Date.now() - t0 < 10_000);
  const stopped = await statusOf(uuid);
  assert.is(stopped?.state, 'exited');
  assert.ok(stopped?.apps.every((a) => a.state === 'exited'), JSON.stringify(stopped?.apps));
  await runtime().removePod(uuid);
  assert.not.ok(await statusOf(uuid));
  await assert.not.ok(await fs.stat(path.join(openOpts!.dataDir, 'docker', 'pods', uuid)).catch(() => undefined));
});

T('attach: stdin in, output out; detaching leaves the container running', async () => {
  const uuid = await runPod(pod('attach', [
    { name: 'echo', image: IMAGE, command: ['sh', '-c', 'while read line; do echo "got $line"; done'], stdin: true },
    { name: 'term', image: IMAGE, command: ['sleep', '3600'] },
  ]));
  await eventually('running', async () => (await statusOf(uuid))?.apps.every((a) => a.state === 'running'));
  const refused = await runtime().checkAttach(uuid, 'term', { tty: true }).then(() => undefined, (e: Error) => e);
  assert.match(String(refused?.message), /has no terminal/);
  const proc = await runtime().attach(uuid, 'echo', { stdin: true, tty: false });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stdin!.write('hello\n');
  await eventually('the echo', async () => out.includes('got hello') || undefined, 10_000);
  await proc.kill();
  assert.is((await statusOf(uuid))?.apps[0]?.state, 'running');
  await runtime().removePod(uuid);
});

T('exit codes, OOMKilled and restart policies from the engine\'s state', async () => {
  const never = await runPod(pod('never', [
    { name: 'seven', image: IMAGE, command: ['sh', '-c', 'echo bye; exit 7'] },
    { name: 'ok', image: IMAGE, command: ['true'] },
    { name: 'oom', image: IMAGE, command: ['tail', '/dev/zero'], resources: { limits: { memory: '16Mi' } } },
  ], { restartPolicy: 'Never' }));
  const st = await eventually('all exited', async () => {
    const s = await statusOf(never);
    return s?.apps.every((a) => a.state === 'exited') ? s : undefined;
  }, 60_000);
  const byName = Object.fromEntries(st.apps.map((a) => [a.name, a]));
  assert.equal([byName.seven?.exitCode, byName.seven?.reason], [7, 'Error']);
  assert.equal([byName.ok?.exitCode, byName.ok?.reason], [0, 'Completed']);
  assert.equal([byName.oom?.exitCode, byName.oom?.reason], [137, 'OOMKilled']);
  // The engine may stamp the exit a hair before its own StartedAt for a process this short: both are there.
  assert.ok(byName.seven!.finishedAt && byName.seven!.startedAt);
  assert.equal(await collect(runtime().logs({ podUuid: never, container: 'seven' })), ['seven: bye']);

  const onFailure = await runPod(pod('onfailure', [
    { name: 'fails', image: IMAGE, command: ['sh', '-c', 'echo run; exit 1'] },
    { name: 'done', image: IMAGE, command: ['true'] },
  ], { restartPolicy: 'OnFailure' }));
  const restarted = await eventually('restarted twice', async () => {
    const s = await statusOf(onFailure);
    const fails = s?.apps.find((a) => a.name === 'fails');
    return fails && fails.restartCount >= 2 && fails.lastTermination ? s : undefined;
  }, 60_000);
  const done = restarted.apps.find((a) => a.name === 'done')!;
  assert.equal([done.state, done.reason, done.restartCount], ['exited', 'Completed', 0]);
  const fails = restarted.apps.find((a) => a.name === 'fails')!;
  assert.equal([fails.lastTermination?.exitCode, fails.lastTermination?.reason], [1, 'Error']);
  // Every run's line is in the engine's log; --previous selects the last finished run.
  const prevLines = await collect(runtime().logs({ podUuid: onFailure, container: 'fails', invocation: fails.lastTermination!.invocation }));
  assert.equal(prevLines, ['fails: run']);
  assert.ok((await collect(runtime().logs({ podUuid: onFailure, container: 'fails' }))).length >= 2, 'every run\'s lines are kept');
  await runtime().removePod(never);
  await runtime().removePod(onFailure);
});

T('init containers run one by one to completion before the apps; a failed one (Never) keeps them from starting', async () => {
  const uuid = await runPod(pod('inits', [
    { name: 'app', image: IMAGE, command: ['sh', '-c', 'cat /work/log; sleep 3600'], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
  ], {
    volumes: [{ name: 'work', emptyDir: {} }],
    initContainers: [
      { name: 'first', image: IMAGE, command: ['sh', '-c', 'sleep 0.3; echo first >> /work/log'], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
      { name: 'second', image: IMAGE, command: ['sh', '-c', 'echo second >> /work/log'], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
    ],
  }));
  const early = await statusOf(uuid);
  assert.is(early?.apps.find((a) => a.name === 'app')?.reason, 'PodInitializing');
  const st = await eventually('the app running', async () => {
    const s = await statusOf(uuid);
    return s?.apps.find((a) => a.name === 'app')?.state === 'running' ? s : undefined;
  });
  assert.equal(st.apps.map((a) => [a.name, a.state, a.exitCode]), [['first', 'exited', 0], ['second', 'exited', 0], ['app', 'running', undefined]]);
  assert.equal(await eventually('the app\'s log', async () => {
    const l = await collect(runtime().logs({ podUuid: uuid, container: 'app' }));
    return l.length === 2 ? l : undefined;
  }), ['app: first', 'app: second']);
  await runtime().removePod(uuid);

  const failed = await runPod(pod('initfail', [{ name: 'app', image: IMAGE, command: ['sleep', '3600'] }], {
    restartPolicy: 'Never', initContainers: [{ name: 'broken', image: IMAGE, command: ['sh', '-c', 'exit 2'] }],
  }));
  const f = await eventually('the init failed', async () => {
    const s = await statusOf(failed);
    return s?.apps.find((a) => a.name === 'broken')?.state === 'exited' ? s : undefined;
  });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(f.apps.find((a) => a.name === 'broken')?.exitCode, 2);
  assert.is((await statusOf(failed))?.apps.find((a) => a.name === 'app')?.state, 'waiting');
  await runtime().removePod(failed);
});

T('the pod network is attached while the engine still starts the infra; the CNI cache then names the infra\'s process', async () => {
  // The start call's answer is checked for the pod's network record: written at the start of ADD, it exists before the
  // start returns when ADD ran inside the start (early-netns.ts). Earlier tests' pods taught the runtime the cgroup layout.
  const call = EngineClient.prototype.call;
  const early: boolean[] = [];
  const podDirs = path.join(openOpts!.dataDir, 'docker', 'pods');
  EngineClient.prototype.call = async function (this: EngineClient, method: string, p: string, opts?: Parameters<typeof call>[2]) {
    const out = await call.call(this, method, p, opts);
    if (method === 'POST' && /^\/containers\/[0-9a-f]{64}\/start$/.test(p)) {
      const info = await call.call(this, 'GET', p.replace(/start$/, 'json')) as { Config: { Labels: Record<string, string> } };
      if (info.Config.Labels[LABEL.type] === 'podsandbox') {
        early.push(await fs.stat(path.join(podDirs, info.Config.Labels[LABEL.podUuid]!, 'network.json')).then(() => true, () => false));
      }
    }
    return out;
  } as typeof call;
  const uuids: string[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const uuid = await runPod(pod(`early${i}`, [{ name: 'app', image: IMAGE, command: ['sleep', '3600'] }]));
      uuids.push(uuid);
      await runtime().stopPod(uuid, 0).then(() => runtime().removePod(uuid));
    }
  } finally {
    EngineClient.prototype.call = call;
  }
  assert.is(early.length, 3);
  assert.ok(early.some(Boolean), `no pod's network was attached before its infra's start returned: ${JSON.stringify(early)}`);
  const uuid = await runPod(pod('early-cache', [{ name: 'app', image: IMAGE, command: ['sh', '-c', 'grep -q eth0: /proc/net/dev && echo attached; sleep 3600'] }]));
  // The app started on the network: its interface was there when its process ran.
  assert.equal(await eventually('the app saw its interface', async () => {
    const l = await collect(runtime().logs({ podUuid: uuid, container: 'app' }));
    return l.length ? l : undefined;
  }), ['app: attached']);
  const entry = (await cachedAttachmentsIn(openOpts!.network!.cacheDir)).find((e) => e.containerId === uuid);
  assert.match(entry?.netnsPath ?? '', /^\/proc\/\d+\/ns\/net$/);
  await runtime().removePod(uuid);
});

T('stopPod stops the apps first, then the sidecars one by one in reverse order (the kubelet\'s order)', async () => {
  // Each container notes its SIGTERM in a shared file. Stopped all at once, the quick side-a would write first
  // and the slow app last; in the kubelet's order the app writes first, then side-b, then side-a.
  const dir = path.join(workDir, 'stop-order');
  const note = (name: string, delay: string) => ['sh', '-c', `trap "sleep ${delay}; echo ${name} >> /order/log; exit 0" TERM; while :; do sleep 3600 & wait $!; done`];
  const volumeMounts = [{ name: 'order', mountPath: '/order' }];
  const uuid = await runPod(pod('stoporder', [{ name: 'app', image: IMAGE, command: note('app', '1'), volumeMounts }], {
    volumes: [{ name: 'order', hostPath: { path: dir, type: 'DirectoryOrCreate' } }],
    initContainers: [
      { name: 'side-a', image: IMAGE, command: note('side-a', '0'), volumeMounts, restartPolicy: 'Always' },
      { name: 'side-b', image: IMAGE, command: note('side-b', '0.5'), volumeMounts, restartPolicy: 'Always' },
    ],
  }));
  await eventually('all three running', async () => {
    const s = await statusOf(uuid);
    return s?.apps.length === 3 && s.apps.every((a) => a.state === 'running');
  });
  await runtime().stopPod(uuid, 10);
  // A stopped pod's sidecars are exited, not waiting for a restart (CrashLoopBackOff) as their policy alone would say.
  const st = await eventually('the pod stopped', async () => {
    const s = await statusOf(uuid);
    return s?.state === 'exited' ? s : undefined;
  });
  assert.equal(st.apps.map((a) => [a.name, a.state, a.exitCode]), [['side-a', 'exited', 0], ['side-b', 'exited', 0], ['app', 'exited', 0]]);
  assert.equal((await fs.readFile(path.join(dir, 'log'), 'utf8')).trim().split('\n'), ['app', 'side-b', 'side-a']);
  await runtime().removePod(uuid);
});

T('killContainer: the restart policy brings it back; bad input is refused', async () => {
  const uuid = await runPod(pod('always', [{ name: 'loop', image: IMAGE, command: ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'] }]));
  await eventually('running', async () => (await statusOf(uuid))?.apps[0]?.state === 'running');
  await runtime().killContainer(uuid, 'loop', 5);
  const again = await eventually('restarted', async () => {
    const a = (await statusOf(uuid))?.apps[0];
    return a?.state === 'running' && a.restartCount === 1 ? a : undefined;
  });
  assert.is(again.restartCount, 1);
  await runtime().removePod(uuid);
  const refused = await runtime().runPod(pod('bad', [{ name: 'x', image: IMAGE }], { volumes: [{ name: 'm', emptyDir: { medium: 'Memory' } }] }), {}).then(() => undefined, (e: Error) => e);
  assert.match(String(refused?.message), /does not implement spec\.volumes\[m\]\.emptyDir\.medium: Memory/);
  const handler = await runtime().runPod(pod('bad2', [{ name: 'x', image: IMAGE }]), { handler: 'kvm' }).then(() => undefined, (e: Error) => e);
  assert.instance(handler, HandlerNotOffered);
  const noImage = await runtime().runPod(pod('bad3', [{ name: 'x', image: `${registry!.host}/test/absent:1` }]), {}).then(() => undefined, (e: Error) => e);
  assert.instance(noImage, ImageNotFound);
  // Nothing of the refused pods is left in the engine.
  assert.is((await runtime().listPods()).filter((p) => p.name?.startsWith('bad')).length, 0);
});

T('status passes inspect only containers an engine event named since the last pass', async () => {
  const uuid = await runPod(pod('quiet', [{ name: 'app', image: IMAGE, command: ['sh', '-c', 'trap "exit 3" TERM; while :; do sleep 1; done'] }], { restartPolicy: 'Never' }));
  const inspectCall = /^\/containers\/[0-9a-f]{64}\/json$/;
  const call = EngineClient.prototype.call;
  let inspects = 0;
  EngineClient.prototype.call = function (this: EngineClient, method: string, p: string, opts?: Parameters<typeof call>[2]) {
    if (method === 'GET' && inspectCall.test(p)) inspects++;
    return call.call(this, method, p, opts);
  } as typeof call;
  try {
    await eventually('running', async () => (await statusOf(uuid))?.apps[0]?.state === 'running');
    // Once the start's events are in, a pass with nothing new asks the engine for the list alone.
    await eventually('a pass without inspects', async () => {
      inspects = 0;
      await runtime().listPods();
      return inspects === 0;
    });
    // The app's exit is announced (die): the next passes see it (a kept inspect would say running for ever).
    await runtime().killContainer(uuid, 'app', 5);
    const exited = await eventually('exited', async () => {
      const a = (await statusOf(uuid))?.apps[0];
      return a?.state === 'exited' ? a : undefined;
    });
    assert.equal([exited.exitCode, exited.reason], [3, 'Error']);
  } finally {
    EngineClient.prototype.call = call;
  }
  await runtime().removePod(uuid);
});

T('a restart of dockerd is survived: the pod keeps running, status and exec still work', async () => {
  const uuid = await runPod(pod('survivor', [{ name: 'app', image: IMAGE, command: ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'] }]));
  const before = await eventually('running', async () => {
    const s = await statusOf(uuid);
    return s?.apps[0]?.state === 'running' ? s : undefined;
  });
  await runtime().close();
  await stopEngine(engineOptions(openOpts!), { keepContainers: true });
  rt = await openDockerRuntime(openOpts!);
  const after = await eventually('running again', async () => {
    const s = await statusOf(uuid);
    return s?.apps[0]?.state === 'running' ? s : undefined;
  });
  assert.is(after.apps[0]!.startedAt, before.apps[0]!.startedAt, 'the same run: not restarted');
  assert.is(after.apps[0]!.restartCount, 0);
  assert.equal(after.podIPs, before.podIPs);
  const probe = await runtime().runInContainer(uuid, 'app', ['echo', 'still here'], 5000);
  assert.is(probe.output.trim(), 'still here');
  await runtime().removePod(uuid);
});

T('gc removes app containers whose infra is gone and pod dirs without containers', async () => {
  const stray = path.join(openOpts!.dataDir, 'docker', 'pods', 'not-a-pod');
  await fs.mkdir(stray, { recursive: true });
  // An app container whose infra never was (a crash half way through runPod).
  const engine = new EngineClient(enginePaths(engineOptions(openOpts!).dir).socket);
  const orphan = await engine.call<{ Id: string }>('POST', '/containers/create', { body: { Image: IMAGE, Cmd: ['true'], Labels: { [LABEL.podUuid]: 'orphan', [LABEL.type]: 'container', [LABEL.container]: 'x' } } });
  await runtime().gc();
  assert.not.ok(await fs.stat(stray).catch(() => undefined));
  const gone = await engine.call('GET', `/containers/${orphan.Id}/json`).then(() => false, (e: EngineError) => e.status === 404);
  assert.ok(gone, 'the orphaned app container was removed');
});

T('stevedore pod list|status --container-runtime=docker read the engine\'s pods (own engine or --docker-endpoint); the api-service refuses a docker node', async () => {
  const uuid = await runPod(pod('listed', [{ name: 'app', image: IMAGE, command: ['sleep', '3600'] }]));
  await eventually('running', async () => (await statusOf(uuid))?.apps[0]?.state === 'running');
  const cli = (args: string[]) => execa(process.execPath, [CLI, '--dir', openOpts!.dataDir, ...args], { reject: false });
  const list = await cli(['pod', 'list', '--container-runtime=docker', '-o', 'json']);
  assert.is(list.exitCode, 0, list.stderr);
  const listed = (JSON.parse(list.stdout) as Array<{ uuid: string; name: string; state: string; apps: Array<{ name: string; state: string }> }>).find((p) => p.uuid === uuid);
  assert.equal([listed?.name, listed?.state, listed?.apps.map((a) => `${a.name}:${a.state}`)], ['listed', 'running', ['app:running']]);
  const text = await cli(['pod', 'list', '--container-runtime=docker']);
  assert.match(text.stdout, new RegExp(`${uuid}\\s+dk/listed`));
  const socket = enginePaths(engineOptions(openOpts!).dir).socket;
  const status = await cli(['pod', 'status', uuid.slice(0, 8), '--container-runtime=docker', '--docker-endpoint', `unix://${socket}`]);
  assert.is(status.exitCode, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`uuid=${uuid}\n`));
  assert.match(status.stdout, /app=app state=running restarts=0/);
  // Bad input: an unknown pod, a docker flag on rkt, a node without an engine.
  const unknown = await cli(['pod', 'status', 'ffffffff', '--container-runtime=docker']);
  assert.match(unknown.stderr, /no pod "ffffffff" on this node's docker engine/);
  assert.is.not(unknown.exitCode, 0);
  assert.match((await cli(['pod', 'list', '--docker-endpoint', `unix://${socket}`])).stderr, /--docker-endpoint is for --container-runtime=docker/);
  const none = await execa(process.execPath, [CLI, '--dir', path.join(workDir, 'no-node'), 'pod', 'list', '--container-runtime=docker'], { reject: false });
  assert.match(none.stderr, /no docker engine answers on .*no-node\/docker\/engine/);
  assert.is.not(none.exitCode, 0);
  // stevedore image gc on the engine's images: the running pod's image is kept.
  const gc = await cli(['image', 'gc', '--container-runtime=docker', '--high', '0', '--low', '0']);
  assert.is(gc.exitCode, 0, gc.stderr);
  assert.match(gc.stdout, /image filesystem [\d.]+% used before/);
  assert.ok(await runtime().findImage(IMAGE), 'the image a running pod uses was kept');
  // rkt's v1alpha api-service does not start on a docker node, and says where to look instead.
  const api = await cli(['api-service', '--container-runtime=docker', '--socket', path.join(workDir, 'api.sock')]);
  assert.is(api.exitCode, 2, api.stderr);
  assert.match(api.stderr, /does not run on a --container-runtime=docker node/);
  assert.match(api.stderr, /pod list --container-runtime=docker/);
  assert.not.ok(await fs.stat(path.join(workDir, 'api.sock')).catch(() => undefined), 'nothing listened');
});

T('image GC: over the high threshold the least recently used unused image goes, down to the low one; images in use stay; --min-age; bad thresholds refused', async () => {
  const engine = new EngineClient(enginePaths(engineOptions(openOpts!).dir).socket);
  const imageOf = async (content: string, ref: string) => {
    const tar = pack();
    tar.entry({ name: 'which', mode: 0o644 }, content);
    tar.finalize();
    const chunks: Buffer[] = [];
    for await (const c of tar) chunks.push(c as Buffer);
    await importImage(engine, Buffer.concat(chunks), ref, ['/which']);
  };
  const has = (ref: string) => engine.call('GET', `/images/${encodeURIComponent(ref)}/json`).then(() => true, () => false);
  const T0 = Date.now();
  await imageOf('old', 'localhost/gc/old:1');
  await runtime().imageGc({ now: () => T0, statfs: async () => ({ bsize: 4096, blocks: 100, bavail: 90 }) });
  await imageOf('new', 'localhost/gc/new:1');
  await imageOf('held', 'localhost/gc/held:1');
  // A container (never started) holds this one: in use.
  const holder = await engine.call<{ Id: string }>('POST', '/containers/create', { body: { Image: 'localhost/gc/held:1', Cmd: ['/which'] } });
  try {
    const quiet = await runtime().imageGc({ now: () => T0 + 5 * 60_000, statfs: async () => ({ bsize: 4096, blocks: 100, bavail: 50 }) });
    assert.equal(quiet.removed, [], 'under the high threshold nothing goes');
    // The disk is 90% full while the old image exists, 70% once it is gone.
    const full = async () => ({ bsize: 4096, blocks: 100, bavail: (await has('localhost/gc/old:1')) ? 10 : 30 });
    const r = await runtime().imageGc({ now: () => T0 + 10 * 60_000, statfs: full, inUse: new Set([IMAGE]) });
    assert.equal(r.removed.map((x) => [x.names, x.reason]), [[['localhost/gc/old:1'], 'disk']], 'the least recently used unused image, and only it');
    assert.equal([Math.round(r.usageBefore), Math.round(r.usageAfter), r.unmetTarget], [90, 70, false]);
    for (const kept of ['localhost/gc/new:1', 'localhost/gc/held:1', IMAGE, 'localhost/stevedore/pause:1']) assert.ok(await has(kept), `${kept} kept`);
    // Age: unused images not used for 30 min go whatever the disk; the held one and the caller's stay.
    const aged = await runtime().imageGc({ now: () => T0 + 60 * 60_000, minAgeMs: 30 * 60_000, statfs: async () => ({ bsize: 4096, blocks: 100, bavail: 90 }), inUse: new Set([IMAGE]) });
    assert.equal(aged.removed.map((x) => [x.names, x.reason]), [[['localhost/gc/new:1'], 'age']]);
    assert.ok(await has('localhost/gc/held:1'), 'an image a container uses is never removed');
    // The real disk (the engine's DockerRootDir) when none is injected.
    const real = await runtime().imageGc({ inUse: new Set([IMAGE]) });
    assert.ok(real.usageBefore > 0 && real.usageBefore <= 100, `usage ${real.usageBefore}`);
    const bad = await runtime().imageGc({ highPercent: 50, lowPercent: 60 }).then(() => undefined, (e: Error) => e);
    assert.match(String(bad?.message), /low \(60\) <= high \(50\)/);
  } finally {
    await engine.call('DELETE', `/containers/${holder.Id}`);
    await engine.call('DELETE', '/images/localhost%2Fgc%2Fheld:1').catch(() => undefined);
  }
  assert.not.ok(await has('localhost/gc/held:1'));
});

T.run();
