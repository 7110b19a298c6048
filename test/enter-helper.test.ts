/**
 * Exec probes' way into a namespaces app, and every exec's way into a fly app
 * (native/enter.c, `stevedore-enter`), checked for real: a command run through
 * runInContainer (what exec probes and hooks use), and on fly kubectl exec
 * (with and without a terminal) and an exec readiness probe through the
 * agent, must end up with exactly the app's restrictions — ids, groups, every
 * capability set, no_new_privs, seccomp, cgroups, every namespace and (fly)
 * the root of the app's main process — and the helper must refuse, never run
 * unconfined, when it cannot enter as the app runs.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { eventually, podStatus, REPO, useNode, type TestNode } from './helpers/node.js';
import { useCluster } from './helpers/cluster.js';

const t = suite('stevedore-enter: exec probes enter the app with its restrictions');
const getNode = useNode(t);

let seq = 0;
async function runPod(node: TestNode, opts: { pod?: string; container?: string; workingDir?: string; stage1?: 'namespaces' | 'fly' }): Promise<string> {
  const name = `enter-${++seq}`;
  const file = await node.manifest(`${name}.yaml`, `
metadata: {name: ${name}, namespace: enter, uid: uid-${name}}
spec:
${opts.pod ? `  securityContext: ${opts.pod}\n` : ''}  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
    env: [{name: GREETING, value: "hello world"}]
${opts.workingDir ? `    workingDir: ${opts.workingDir}\n` : ''}${opts.container ? `    securityContext: ${opts.container}\n` : ''}`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', opts.stage1 ?? 'namespaces'])).trim();
  await eventually('the app to run', async () => ((await podStatus(node, uuid)).apps[0]?.state === 'running' ? true : undefined));
  return uuid;
}

/** What the kernel says of a process's restrictions, from /proc/PID/status, its cgroups and its namespaces. */
const READ_RESTRICTIONS = (pid: string) => `grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/${pid}/status; `
  + `echo cgroup; cat /proc/${pid}/cgroup; echo ns; for n in cgroup ipc mnt net pid time user uts; do echo "$n $(readlink /proc/${pid}/ns/$n)"; done`;

/**
 * Inside the node: the runtime's own runInContainer (the agent's exec-probe call), and which program its
 * enter path starts (argv[0] of the stage1's enterCommand: the helper, or crun).
 */
async function probe(node: TestNode, uuid: string, command: string[]): Promise<{ exitCode: number; output: string; program: string; enter: string[] }> {
  const script = path.join(node.dataDir, 'manifests', `probe-${++seq}.mjs`);
  await fs.writeFile(script, `
const { RktRuntime } = await import(${JSON.stringify(path.join(REPO, 'dist/runtime-rkt/runtime.js'))});
const rt = await RktRuntime.open({ dataDir: ${JSON.stringify(node.dataDir)}, network: 'none' });
try {
  const enter = await rt.quickEnter(${JSON.stringify(uuid)}, 'c', ['true']);
  const r = await rt.runInContainer(${JSON.stringify(uuid)}, 'c', ${JSON.stringify(command)}, { timeoutMs: 10000 });
  const argv = Array.isArray(enter) ? enter : enter.argv;
  process.stdout.write(JSON.stringify({ ...r, program: argv[0], enter: argv }));
} finally { await rt.close(); }
`);
  const r = await node.sh(`${process.execPath} ${script}`);
  assert.is(r.exitCode, 0, `the probe script: ${r.stderr}`);
  return JSON.parse(r.stdout) as { exitCode: number; output: string; program: string; enter: string[] };
}

/** The app's main process (the container's init) in the node: crun's state names it. */
async function initPid(node: TestNode, uuid: string): Promise<string> {
  const id = `stevedore-${uuid.replace(/-/g, '')}-c`;
  const r = await node.sh(`sed -n 's/^ *"pid": \\([0-9]*\\),/\\1/p' /run/crun/${id}/status`);
  const pid = r.stdout.trim();
  assert.match(pid, /^\d+$/, `crun's state of ${id}: ${r.stderr}`);
  return pid;
}

async function assertSameRestrictions(node: TestNode, uuid: string, expect: Record<string, string>): Promise<void> {
  const main = (await node.sh(READ_RESTRICTIONS(await initPid(node, uuid)))).stdout;
  const got = await probe(node, uuid, ['sh', '-c', READ_RESTRICTIONS('self')]);
  assert.is(path.basename(got.program), 'stevedore-enter', 'probes enter through the helper');
  assert.is(got.exitCode, 0, got.output);
  assert.fixture(got.output, main, 'the probe process has exactly the app\'s ids, capabilities, no_new_privs, seccomp, cgroups and namespaces');
  // And the fields are what the securityContext asks for, so equal means right (not both wrong the same way).
  for (const [field, value] of Object.entries(expect)) assert.match(got.output, new RegExp(`^${field}:\\s+${value}\\s*$`, 'm'), `${field} ${value} in:\n${got.output}`);
}

t('a default (root) container: the probe matches the app, crun exec\'s HOME and the app\'s env and cwd', async () => {
  const node = getNode();
  const uuid = await runPod(node, { workingDir: '/tmp' });
  try {
    await assertSameRestrictions(node, uuid, { Uid: '0\\s+0\\s+0\\s+0', CapEff: '00000000a80425fb', CapBnd: '00000000a80425fb', CapAmb: '0000000000000000', NoNewPrivs: '1', Seccomp: '2' });
    const env = await probe(node, uuid, ['sh', '-c', 'echo "$GREETING|$HOME|$(pwd)"']);
    assert.is(env.output.trim(), 'hello world|/root|/tmp', 'the app\'s environment and working directory, HOME from its /etc/passwd');
    // A command not on the app's PATH: 127, as crun exec says it.
    const missing = await probe(node, uuid, ['no-such-command']);
    assert.is(missing.exitCode, 127, missing.output);
    assert.match(missing.output, /not found/);
    const failing = await probe(node, uuid, ['sh', '-c', 'echo not-yet >&2; exit 4']);
    assert.is(failing.exitCode, 4);
    assert.is(failing.output.trim(), 'not-yet');
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('a hardened container (non-root, groups, an added capability, no privilege escalation): the probe matches the app', async () => {
  const node = getNode();
  const uuid = await runPod(node, {
    pod: '{runAsUser: 2000, supplementalGroups: [4000, 4001]}',
    container: '{runAsUser: 1000, runAsGroup: 3000, allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMIN], drop: [NET_RAW]}}',
  });
  try {
    // NET_ADMIN (bit 12) in, NET_RAW (bit 13) out of the default bounding set; a non-root process keeps no effective capabilities.
    await assertSameRestrictions(node, uuid, { Uid: '1000\\s+1000\\s+1000\\s+1000', Gid: '3000\\s+3000\\s+3000\\s+3000', Groups: '(3000 )?4000 4001', CapEff: '0000000000000000', CapBnd: '00000000a80415fb', NoNewPrivs: '1', Seccomp: '2' });
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

/**
 * fly: the app shares the node's namespaces but its mount namespace, and is chrooted in it. Its main
 * process is the unit's MainPID (the helper's target: argv[2] of fly's enter command).
 */
async function assertFlySameRestrictions(node: TestNode, uuid: string, expect: Record<string, string>): Promise<void> {
  const got = await probe(node, uuid, ['sh', '-c', `${READ_RESTRICTIONS('self')}; echo root; ls /`]);
  assert.is(path.basename(got.program), 'stevedore-enter', `fly execs enter through the helper: ${got.enter.join(' ')}`);
  const mainPid = got.enter[2]!;
  const main = (await node.sh(`${READ_RESTRICTIONS(mainPid)}; echo root; ls /proc/${mainPid}/root/`)).stdout;
  assert.is(got.exitCode, 0, got.output);
  assert.fixture(got.output, main, 'the fly exec has exactly the app\'s ids, groups, capabilities, no_new_privs, seccomp, cgroups, namespaces and root');
  const nodeRoot = (await node.sh('ls /')).stdout;
  assert.is.not(got.output.slice(got.output.indexOf('\nroot\n')), `\nroot\n${nodeRoot}`, 'the exec sees the image\'s root, not the node\'s');
  assert.match(got.output, /^bin$/m, got.output);
  for (const [field, value] of Object.entries(expect)) assert.match(got.output, new RegExp(`^${field}:\\s+${value}\\s*$`, 'm'), `${field} ${value} in:\n${got.output}`);
}

t('fly, a default (root) container: an exec matches the app (its chroot, caps, no_new_privs, seccomp program), with its env and cwd', async () => {
  const node = getNode();
  const uuid = await runPod(node, { stage1: 'fly', workingDir: '/tmp' });
  try {
    await assertFlySameRestrictions(node, uuid, { Uid: '0\\s+0\\s+0\\s+0', CapEff: '00000000a80425fb', CapBnd: '00000000a80425fb', CapAmb: '0000000000000000', NoNewPrivs: '1', Seccomp: '2', Seccomp_filters: '1' });
    const env = await probe(node, uuid, ['sh', '-c', 'echo "$GREETING|$(pwd)"']);
    assert.is(env.output.trim(), 'hello world|/tmp', 'the app\'s environment and working directory');
    // The env travels in the root-only spec, never in argv (every local user reads /proc/PID/cmdline).
    assert.not.ok(env.enter.some((a) => a.includes('hello world')), env.enter.join(' '));
    const missing = await probe(node, uuid, ['no-such-command']);
    assert.is(missing.exitCode, 127, missing.output);
    const failing = await probe(node, uuid, ['sh', '-c', 'echo not-yet >&2; exit 4']);
    assert.is(failing.exitCode, 4);
    assert.is(failing.output.trim(), 'not-yet');
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('fly, a hardened container (non-root, groups, drop ALL add one, no privilege escalation): an exec matches the app', async () => {
  const node = getNode();
  // fly's ids go through systemd's User=/Group=, which must find them on the node (Debian: nobody, users).
  const uuid = await runPod(node, {
    stage1: 'fly',
    pod: '{supplementalGroups: [65534]}',
    container: '{runAsUser: 65534, runAsGroup: 100, allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}',
  });
  try {
    // NET_BIND_SERVICE is bit 10: the bounding set holds it alone; a non-root process keeps no capability.
    await assertFlySameRestrictions(node, uuid, { Uid: '65534\\s+65534\\s+65534\\s+65534', Gid: '100\\s+100\\s+100\\s+100', Groups: '100 65534', CapEff: '0000000000000000', CapPrm: '0000000000000000', CapBnd: '0000000000000400', NoNewPrivs: '1', Seccomp: '2' });
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('fly, runAsUser alone: the exec takes the group systemd gives the app (the user\'s primary group on the node)', async () => {
  const node = getNode();
  const uuid = await runPod(node, { stage1: 'fly', container: '{runAsUser: 65534}' });
  try {
    await assertFlySameRestrictions(node, uuid, { Uid: '65534\\s+65534\\s+65534\\s+65534', CapEff: '0000000000000000', NoNewPrivs: '1', Seccomp: '2' });
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('fly, a privileged container: an exec gets the node\'s whole bounding set as the app does, and no seccomp or no_new_privs', async () => {
  const node = getNode();
  const uuid = await runPod(node, { stage1: 'fly', container: '{privileged: true}' });
  try {
    await assertFlySameRestrictions(node, uuid, { Uid: '0\\s+0\\s+0\\s+0', NoNewPrivs: '0', Seccomp: '0' });
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('fly: no enter spec, no exec (never unconfined)', async () => {
  const node = getNode();
  const uuid = await runPod(node, { stage1: 'fly' });
  try {
    const spec = path.join(node.dataDir, 'pods', 'run', uuid, 'apps', 'c', 'enter.spec');
    const mode = (await node.sh(`stat -c '%a %u' ${spec}`)).stdout.trim();
    assert.is(mode, '600 0', 'root-only: it holds the env');
    await node.sh(`mv ${spec} ${spec}.away`);
    const r = await probe(node, uuid, ['sh', '-c', 'echo ran']).catch((err: Error) => ({ exitCode: -1, output: err.message, program: '', enter: [] }));
    assert.is.not(r.output.trim(), 'ran', 'nothing ran');
    assert.match(r.output, /has no enter spec/, r.output);
    await node.sh(`mv ${spec}.away ${spec}`);
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('the helper refuses, and runs nothing, when the pid is not the container\'s or the enter spec is not trustworthy', async () => {
  const node = getNode();
  const uuid = await runPod(node, {});
  try {
    const pid = await initPid(node, uuid);
    const spec = path.join(node.dataDir, 'pods', 'run', uuid, 'apps', 'c', 'enter.spec');
    const helper = path.join(REPO, 'native', 'build', 'Release', 'stevedore-enter');
    const start = (await node.sh(`cut -d' ' -f22 /proc/${pid}/stat`)).stdout.trim();
    // What a command run inside would leave: a file in the container's root (its overlay's upper layer on the node).
    const ran = path.join(node.dataDir, 'pods', 'run', uuid, 'apps', 'c', 'upper', 'ran');
    const ok = await node.sh(`${helper} ${spec} ${pid} ${start} sh -c 'echo ok > /ran' && cat ${ran} && rm ${ran}`);
    assert.is(ok.stdout.trim(), 'ok', `the helper works with the right arguments: ${ok.stderr}`);
    // A pid whose start time differs (a recycled pid): refused before any namespace is joined.
    const reused = await node.sh(`${helper} ${spec} ${pid} ${Number(start) + 1} sh -c 'echo ran > /ran'; echo "exit $?"`);
    assert.is(reused.stdout.trim(), 'exit 126');
    assert.match(reused.stderr, /pid was reused/);
    // A spec someone else could have written, and one with a record the helper does not know: refused.
    const loose = `${spec}.loose`;
    const r = await node.sh(`cp ${spec} ${loose} && chmod 0620 ${loose} && ${helper} ${loose} ${pid} ${start} sh -c 'echo ran > /ran'; echo "exit $?"; `
      + `printf 'uid=0\\0gid=0\\0apparmor=x\\0' > ${loose}.bad && chmod 0600 ${loose}.bad && ${helper} ${loose}.bad ${pid} ${start} sh -c 'echo ran > /ran'; echo "exit $?"; `
      // A root record the helper does not know (only the target's own root is entered).
      + `{ cat ${spec}; printf 'root=/\\0'; } > ${loose}.root && chmod 0600 ${loose}.root && ${helper} ${loose}.root ${pid} ${start} sh -c 'echo ran > /ran'; echo "exit $?"; rm -f ${loose} ${loose}.bad ${loose}.root`);
    assert.equal(r.stdout.trim().split('\n'), ['exit 126', 'exit 126', 'exit 126'], r.stderr);
    assert.match(r.stderr, /bad root in the enter spec: \//);
    assert.match(r.stderr, /not a root-owned regular file/);
    assert.match(r.stderr, /unknown record in the enter spec: apparmor/);
    assert.not.ok(await fs.stat(ran).catch(() => undefined), 'nothing ran in the container');
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t.run();

/**
 * The same through the agent, on a real cluster: `kubectl exec` (with and without a terminal) and an
 * exec readiness probe into fly apps (kube-system, where the default stage1 policy opens fly) must see
 * what the app's own process sees: ids, groups, every capability set, no_new_privs, seccomp, cgroups,
 * namespaces and the image's root.
 */
const c = suite('stevedore-enter: kubectl exec and exec probes into fly apps');
const getCluster = useCluster(c);

/**
 * The restrictions, namespaces and root of the process running it, one line each. Not its cgroups: the app's
 * are read once at its start, and its pod's slice may move in a v1 hierarchy after (the node-level tests above
 * compare cgroups live).
 */
const SELF = `${READ_RESTRICTIONS('self').replace(/echo cgroup; cat \/proc\/self\/cgroup; /, '')}; echo root; ls -1 /`;

/**
 * A command on a terminal (script(1)) whose input stays open until it exits. When script's own input ends (/dev/null,
 * or a closed pipe) it types the terminal's end-of-file character into the session, and with kubectl's terminal in raw
 * mode that is a NUL: kubectl sends it as typed input and the exec's terminal echoes it as `^@` before the command's
 * output. A person at a terminal types nothing of the kind.
 */
function onTerminalInputOpen(command: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdin.on('error', () => undefined);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const flyPod = (name: string, podSec: string, containerSec: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: kube-system}
spec:
  runtimeClassName: fly
  terminationGracePeriodSeconds: 1
${podSec ? `  securityContext: ${podSec}\n` : ''}  containers:
  - name: c
    image: busybox
    command: [sh, -c, ${JSON.stringify(`(${SELF}) > /tmp/app-status; exec sleep 3600`)}]
${containerSec ? `    securityContext: ${containerSec}\n` : ''}    readinessProbe:
      exec: {command: [sh, -c, ${JSON.stringify(`(${SELF}) > /tmp/probe-status`)}]}
      periodSeconds: 1
`;

for (const [name, podSec, containerSec, expect] of [
  ['fly-plain', '', '', { Uid: '0\\s+0\\s+0\\s+0', CapEff: '00000000a80425fb', CapBnd: '00000000a80425fb', NoNewPrivs: '1', Seccomp: '2' }],
  ['fly-hard', '{supplementalGroups: [65534]}', '{runAsUser: 65534, runAsGroup: 100, allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}',
    { Uid: '65534\\s+65534\\s+65534\\s+65534', Groups: '100 65534', CapEff: '0000000000000000', CapBnd: '0000000000000400', NoNewPrivs: '1', Seccomp: '2' }],
] as const) {
  c(`${name}: kubectl exec (plain and on a terminal) and an exec readiness probe get exactly the app's restrictions and root`, async () => {
    const k = getCluster();
    assert.not.match(SELF, /cgroup;/, 'the script reads no cgroups');
    await k.k(['apply', '-f', '-'], flyPod(name, podSec, containerSec));
    try {
      await eventually(`${name} ready`, async () => ((await k.kubectl(['get', 'pod', name, '-n', 'kube-system', '-o', 'jsonpath={.status.containerStatuses[0].ready}'])).stdout === 'true' ? true : undefined), 60_000);
      const app = await k.k(['exec', '-n', 'kube-system', name, '--', 'cat', '/tmp/app-status']);
      // The probe that made the pod Ready wrote this, through the agent's exec-probe path.
      const probeStatus = await k.k(['exec', '-n', 'kube-system', name, '--', 'cat', '/tmp/probe-status']);
      const exec = await k.kubectl(['exec', '-n', 'kube-system', name, '--', 'sh', '-c', SELF]);
      assert.is(exec.code, 0, exec.stderr);
      const quoted = ['kubectl', 'exec', '-it', '-n', 'kube-system', name, '--', 'sh', '-c', SELF].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      const tty = await onTerminalInputOpen(quoted, { KUBECONFIG: k.kubeconfig });
      assert.is(tty.code, 0, tty.stdout + tty.stderr);
      // The node's root has a /boot the image's has not: an exec left at the mount namespace's root (the node's tree) would list it.
      assert.ok((await fs.stat('/boot').catch(() => undefined))?.isDirectory(), 'the node has a /boot');
      assert.match(app, /^bin$/m, app);
      assert.not.match(app, /^boot$/m, app);
      for (const [field, value] of Object.entries(expect)) assert.match(app, new RegExp(`^${field}:\\s+${value}\\s*$`, 'm'), `the app: ${field} ${value} in:\n${app}`);
      assert.fixture(exec.stdout, app, 'kubectl exec has the app\'s restrictions and root');
      // (The terminal's output comes with CRLF line ends; nothing before the command's output.)
      assert.fixture(tty.stdout.replace(/\r\n/g, '\n'), app, 'kubectl exec -t has the app\'s restrictions and root');
      assert.fixture(probeStatus, app, 'the exec readiness probe has the app\'s restrictions and root');
    } finally {
      await k.kubectl(['delete', 'pod', name, '-n', 'kube-system', '--wait=true']);
    }
  });
}

c.run();
