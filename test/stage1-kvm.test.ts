import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { defaultNetworkConfig } from '../cni/index.js';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { kvmAssetsDir } from '../stage1/kvm/assets.js';
import { CLI, eventually, podStatus, useNode, type PodJson, type TestNode } from './helpers/node.js';
import { bridgePorts, readSysctl, removeNatChains, run, writeSysctl } from './helpers/netns.js';

/**
 * stage1 kvm under TCG in the node sandbox: real qemu, real guest kernel,
 * real systemd units. Each VM boots in ~2 s (more on a loaded machine), so
 * the suite runs few pods and asks each several questions.
 */
const kvm = suite('stage1 kvm: pods in virtual machines');
const getNode = useNode(kvm);

interface VmStatus extends PodJson { vm?: { accel: string; accelReason: string; memoryMiB: number; cpus: number; kernel: string } }
const vmStatus = async (node: TestNode, uuid: string) => (await podStatus(node, uuid)) as VmStatus;
const hex = (uuid: string) => uuid.replace(/-/g, '');
const BOOT_MS = 90_000;

async function guestKernel(): Promise<string> {
  return (JSON.parse(await fs.readFile(path.join(kvmAssetsDir(), 'assets.json'), 'utf8')) as { kernelVersion: string }).kernelVersion;
}

/** Nothing of the pod's VM left on the node: units, qemu, run dir with its sockets, mounts, pod dir. */
async function assertNothingLeft(node: TestNode, uuid: string): Promise<void> {
  assert.equal((await node.units()).filter((u) => u.includes(hex(uuid))), [], 'no units');
  assert.equal((await node.mounts()).filter((m) => m.includes(uuid)), [], 'no mounts');
  const procs = (await node.sh(`ps -eo pid,args | grep -F ${hex(uuid)} | grep -v grep || true`)).stdout.trim();
  assert.is(procs, '', 'no qemu or proxy process');
  const run = await node.sh(`ls -A /run/stevedore-kvm/${hex(uuid)} 2>&1`);
  assert.is(run.exitCode, 2, `no run dir or sockets: ${run.stdout}`);
  const dirs = (await node.sh(`find ${node.dataDir}/pods -maxdepth 2 -name ${uuid}`)).stdout.trim();
  assert.is(dirs, '', 'no pod directory');
}

kvm('a two-container pod runs in a VM: own kernel, own logs per container, exit codes; it powers off when done', async () => {
  const node = getNode();
  await node.sh(`echo host-secret > ${node.dataDir}/host-secret`);
  const file = await node.manifest('vm-two.yaml', `
metadata: {name: vm-two, namespace: team-a}
spec:
  restartPolicy: Never
  containers:
  - name: alpha
    image: busybox
    env: [{name: GREETING, value: "it's a VM"}]
    workingDir: /tmp
    command: [sh, -c, 'echo alpha-line-1; echo "kernel=$(uname -r) hostname=$(hostname) cwd=$(pwd) greeting=$GREETING"; echo procs=$(ps -o comm | tr "\\n" " "); cat ${node.dataDir}/host-secret || echo no-host-file; exit 3']
  - name: beta
    image: busybox
    command: [sh, -c, 'echo beta-line-1 >&2; echo beta-line-2; echo uid=$(id -u)']
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'kvm'])).trim();
  const s = await eventually('both apps to exit', async () => {
    const st = await vmStatus(node, uuid);
    return st.state === 'exited' ? st : undefined;
  }, BOOT_MS);
  assert.is(s.stage1, 'kvm');
  assert.is(s.vm?.accel, 'tcg', 'this machine has no usable hardware KVM');
  assert.match(s.vm!.accelReason, /KVM/);
  assert.is(s.vm?.memoryMiB, 128 * 2 + 96, 'two unlimited apps + guest overhead');
  const [alpha, beta] = s.apps;
  assert.equal([alpha!.exitCode, alpha!.reason, alpha!.restartCount], [3, 'Error', 0]);
  assert.equal([beta!.exitCode, beta!.reason, beta!.restartCount], [0, 'Completed', 0]);
  const alphaLogs = await node.ok(['pod', 'logs', uuid, '-c', 'alpha']);
  const hostKernel = (await node.sh('uname -r')).stdout.trim();
  const kernel = await guestKernel();
  assert.ok(alphaLogs.startsWith('alpha-line-1\n'), alphaLogs);
  assert.match(alphaLogs, `kernel=${kernel} hostname=vm-two cwd=/tmp greeting=it's a VM`);
  assert.is.not(kernel, hostKernel);
  assert.match(alphaLogs, /no-host-file/, "the host's files are invisible");
  const procs = /procs=(.*)/.exec(alphaLogs)![1]!;
  assert.not.match(procs, /systemd|journal|dbus|qemu|node/, `the host's processes are invisible: ${procs}`);
  assert.not.match(alphaLogs, /beta-line/);
  assert.is(await node.ok(['pod', 'logs', uuid, '-c', 'beta']), 'beta-line-1\nbeta-line-2\nuid=0\n');
  const journal = await node.sh(`journalctl -o cat STEVEDORE_POD_UUID=${uuid} STEVEDORE_CONTAINER=beta _TRANSPORT=stdout`);
  assert.is(journal.stdout, 'beta-line-1\nbeta-line-2\nuid=0\n', 'journald files each line under its container');
  const text = await node.ok(['pod', 'status', uuid]);
  assert.match(text, /vm=accel:tcg /);
  // The guest powered off by itself once no app would run again, cleanly.
  await eventually('the VM unit to stop', async () => ((await node.units()).includes(`stevedore-${hex(uuid)}.service`) ? undefined : true), 20_000);
  const vmLog = (await node.sh(`journalctl -o cat STEVEDORE_VM_POD_UUID=${uuid}`)).stdout;
  assert.not.match(vmLog, /without a clean guest shutdown/, vmLog);
  await node.ok(['pod', 'rm', uuid]);
  await assertNothingLeft(node, uuid);
});

kvm('restarts per policy, exit codes of each run; pod enter runs in the guest; stop is a clean shutdown; rm leaves no qemu, socket or unit', async () => {
  const node = getNode();
  const file = await node.manifest('vm-restart.yaml', `
metadata: {name: vm-restart}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 3
  containers:
  - name: fails
    image: busybox
    command: [sh, -c, 'echo run; exit 3']
  - name: server
    image: busybox
    command: [sh, -c, 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done']
    resources: {limits: {memory: 64Mi, cpu: 500m}}
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'kvm'])).trim();
  const s = await eventually('two restarts of the failing app', async () => {
    const st = await vmStatus(node, uuid);
    return st.apps[0]!.restartCount >= 2 ? st : undefined;
  }, BOOT_MS);
  assert.is(s.apps[0]!.lastTermination?.exitCode, 3);
  assert.is(s.apps[0]!.lastTermination?.reason, 'Error');
  assert.is(s.apps[1]!.state, 'running');
  assert.is(s.vm?.memoryMiB, 128 + 64 + 96);
  assert.is(s.vm?.cpus, 1);
  // NRestarts counts a restart when it begins, before that run's app (under crun in the guest) has printed.
  const runs = await eventually('each run logged', async () => {
    const n = (await node.ok(['pod', 'logs', uuid, '-c', 'fails'])).split('\n').filter((l) => l === 'run').length;
    return n >= 3 ? n : undefined;
  }, 20_000);
  assert.ok(runs >= 3, `each run logged (${runs})`);
  await eventually('server ready', async () => ((await node.ok(['pod', 'logs', uuid, '-c', 'server'])).includes('ready') ? true : undefined));
  // pod enter: through the guest's exec channel, in the app's rootfs, with its exit code and stdin.
  const enter = await node.cli(['pod', 'enter', uuid, '-c', 'server', '--', 'sh', '-c', 'echo "in $(hostname) kernel $(uname -r)"; ls /; exit 7']);
  assert.is(enter.exitCode, 7, enter.stderr);
  assert.match(enter.stdout, `in vm-restart kernel ${await guestKernel()}`);
  assert.match(enter.stdout, /\bproc\b/);
  const piped = await node.sh(`echo piped-input | ${process.execPath} ${CLI} --dir ${node.dataDir} pod enter ${uuid} -c server -- sh -c 'read l; echo got:$l'`);
  assert.is(piped.stdout, 'got:piped-input\n', piped.stderr);
  await node.ok(['pod', 'stop', uuid]);
  const stopped = await vmStatus(node, uuid);
  assert.is(stopped.state, 'exited');
  assert.equal([stopped.apps[1]!.exitCode, stopped.apps[1]!.reason], [0, 'Completed'], 'SIGTERM reached the app in the guest');
  assert.match(await node.ok(['pod', 'logs', uuid, '-c', 'server']), /got-term/);
  const vmLog = (await node.sh(`journalctl -o cat STEVEDORE_VM_POD_UUID=${uuid}`)).stdout;
  assert.not.match(vmLog, /without a clean guest shutdown/, 'the VM was shut down cleanly');
  await node.ok(['pod', 'rm', uuid]);
  await assertNothingLeft(node, uuid);
});

kvm('a guest kernel panic is a failure, not exit 0', async () => {
  const node = getNode();
  const file = await node.manifest('vm-panic.yaml', `
metadata: {name: vm-panic}
spec:
  restartPolicy: Always
  containers:
  - name: crasher
    image: busybox
    # Only a privileged app may write /proc/sysrq-trigger (read-only for every other, as containerd does).
    securityContext: {privileged: true}
    command: [sh, -c, 'echo about-to-panic; sleep 0.5; echo c > /proc/sysrq-trigger; sleep 30']
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'kvm'])).trim();
  const s = await eventually('the pod to fail', async () => {
    const st = await vmStatus(node, uuid);
    return st.state === 'exited' ? st : undefined;
  }, BOOT_MS);
  const crasher = s.apps[0]!;
  assert.is.not(crasher.exitCode, 0);
  assert.is(crasher.reason, 'Error');
  assert.match(await node.ok(['pod', 'logs', uuid, '-c', 'crasher']), /about-to-panic\n[^]*VM stopped before the container exited/);
  const vmLog = (await node.sh(`journalctl -o cat STEVEDORE_VM_POD_UUID=${uuid}`)).stdout;
  assert.match(vmLog, /Kernel panic/);
  assert.match(vmLog, /without a clean guest shutdown/);
  await node.ok(['pod', 'rm', '--force', uuid]);
  await assertNothingLeft(node, uuid);
});

kvm('--kvm-accel=kvm refuses VM pods where hardware KVM does not work, and says why', async () => {
  const node = getNode();
  const file = await node.manifest('vm-hw.yaml', 'metadata: {name: vm-hw}\nspec:\n  containers:\n  - {name: a, image: busybox, command: ["true"]}\n');
  const r = await node.cli(['--kvm-accel', 'kvm', 'pod', 'run', '-f', file, '--stage1', 'kvm']);
  assert.is(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /--kvm-accel=kvm requires hardware KVM, and it is not usable on this node: no usable \/dev\/kvm/);
  assert.is(JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])).length, 0, 'the refused pod left nothing');
  const bad = await node.cli(['--kvm-accel', 'fast', 'pod', 'list']);
  assert.is(bad.exitCode, 2, 'bad input');
  assert.match(bad.stderr, /unknown --kvm-accel "fast"/);
  // On the host itself /dev/kvm exists but cannot boot a stock kernel: only a real boot tells.
  const probeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-kvm-probe-'));
  try {
    const probe = await execa(process.execPath, [CLI, 'stage1', 'probe-kvm'], { env: { STEVEDORE_KVM_PROBE_FILE: path.join(probeDir, 'probe.json') }, reject: false });
    assert.is(probe.exitCode, 0, probe.stderr);
    assert.match(probe.stdout, /^tcg: /);
  } finally {
    await fs.rm(probeDir, { recursive: true, force: true });
  }
});

// The network test's own bridge and random /24 (the sandbox shares the host's network namespace).
const rand = randomBytes(3).toString('hex');
const BRIDGE = `sdk${rand}`;
const third = 100 + (parseInt(rand.slice(0, 2), 16) % 140);
const SUBNET = `10.245.${third}.0/24`;
const HOST_PORT = 20_000 + (parseInt(rand.slice(2, 6), 16) % 20_000);
let ipForward = '';

kvm.after(async () => {
  // useNode's after hook (registered first) already removed every pod.
  await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
  await removeNatChains(/^CNI-DN-/);
  if (ipForward) await writeSysctl('net.ipv4.ip_forward', ipForward);
});

kvm('networking: the VM has the pod IP; it answers on it and on its hostPort; nothing is left after rm', async () => {
  const node = getNode();
  if ((await run('ip', ['-4', 'route', 'show'])).stdout.includes(`10.245.${third}.`)) throw new Error(`subnet ${SUBNET} is in use on this host`);
  ipForward = await readSysctl('net.ipv4.ip_forward');
  // The CLI networks pods once <data>/cni/net.d holds a config; only this (last) test's pods get one.
  const confDir = path.join(node.dataDir, 'cni', 'net.d');
  await fs.mkdir(confDir, { recursive: true });
  const config = defaultNetworkConfig({ podCidr: SUBNET, bridge: BRIDGE, name: `sdk-${rand}`, ipamDataDir: path.join(node.dataDir, 'cni', 'networks') });
  await fs.writeFile(path.join(confDir, '10-kvm-test.conflist'), JSON.stringify(config));
  const file = await node.manifest('vm-web.yaml', `
metadata: {name: vm-web}
spec:
  containers:
  - name: web
    image: busybox
    command: [sh, -c, 'ip -o -4 addr show eth0; echo serving; exec busybox nc -ll -p 8080 -e echo hi-from-the-vm']
    ports: [{containerPort: 8080, hostPort: ${HOST_PORT}}]
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'kvm'])).trim();
  const s = (await vmStatus(node, uuid)) as VmStatus & { podIPs?: string[] };
  const ip = s.podIPs?.[0] ?? '';
  assert.ok(ip.startsWith(`10.245.${third}.`), `a pod IP from ${SUBNET}: ${ip}`);
  const logs = await eventually('the server to start', async () => {
    const l = await node.ok(['pod', 'logs', uuid, '-c', 'web']);
    return l.includes('serving') ? l : undefined;
  }, BOOT_MS);
  assert.match(logs, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/24`), 'the guest has the pod IP');
  const fromNode = async (host: string, port: number) => (await node.sh(`busybox nc -w 2 ${host} ${port} </dev/null`)).stdout.trim();
  assert.is(await eventually('the VM to answer on its pod IP', async () => ((await fromNode(ip, 8080)) === 'hi-from-the-vm' ? 'ok' : undefined), 20_000), 'ok');
  assert.is(await fromNode('127.0.0.1', HOST_PORT), 'hi-from-the-vm', 'hostPort on 127.0.0.1');
  await node.ok(['pod', 'rm', '--force', uuid]);
  await fs.rm(confDir, { recursive: true, force: true });
  await assertNothingLeft(node, uuid);
  assert.equal(await bridgePorts(BRIDGE), [], 'no veth left on the bridge');
  assert.equal((await node.mounts()).filter((m) => m.includes('/stage1/ns/')), [], 'no netns file mounted');
});

kvm.run();
