/**
 * stdin and tty on the fly stage1: the app unit's main process is the console holder (root, on the node's
 * tree), and the app its child, started by `stevedore-enter --start` chrooted into the rootfs. The app must
 * be confined exactly as a plain fly app of the same pod: ids, groups, every capability set, no_new_privs,
 * seccomp, its root and its mounts, its cgroups (the unit's); and exec into it must land in the app, never
 * in the holder's (the node's) root.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { eventually, podStatus, REPO, useNode, type TestNode } from './helpers/node.js';

const t = suite('fly: an app with stdin and a terminal is confined as a plain fly app');
const getNode = useNode(t);

let seq = 0;
/** A fly pod of two apps with the same securityContext: `plain`, and `held` with stdin and a terminal. */
async function runPair(node: TestNode, securityContext: string, podSecurity = ''): Promise<string> {
  const name = `pair-${++seq}`;
  const app = (n: string, console: boolean) => `  - name: ${n}
    image: busybox
    command: [sh, -c, 'exec sleep 3600']
    workingDir: /tmp
    env: [{name: GREETING, value: "hello world"}]
    volumeMounts: [{name: v, mountPath: /data}, {name: v, mountPath: /ro, readOnly: true}]
${console ? '    stdin: true\n    tty: true\n' : ''}${securityContext ? `    securityContext: ${securityContext}\n` : ''}`;
  const file = await node.manifest(`${name}.yaml`, `
metadata: {name: ${name}, namespace: flyconsole, uid: uid-${name}}
spec:
${podSecurity ? `  securityContext: ${podSecurity}\n` : ''}  containers:
${app('plain', false)}${app('held', true)}  volumes: [{name: v, emptyDir: {}}]
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'fly'])).trim();
  await eventually('both apps to run', async () => ((await podStatus(node, uuid)).apps.every((a) => a.state === 'running') ? true : undefined), 30_000);
  return uuid;
}

/** The app's process: the unit's main process, or for `held` the holder's child (the holder itself runs python). */
async function appPid(node: TestNode, uuid: string, app: string): Promise<{ pid: string; mainPid: string }> {
  const mainPid = String((await podStatus(node, uuid)).apps.find((a) => a.name === app)!.mainPid);
  if (app !== 'held') return { pid: mainPid, mainPid };
  const pid = await eventually('the holder\'s child to run the app', async () => {
    const child = (await node.sh(`for p in $(pgrep -P ${mainPid}); do readlink /proc/$p/exe | grep -q busybox && echo $p; done`)).stdout.trim();
    return /^\d+$/.test(child) ? child : undefined;
  });
  return { pid, mainPid };
}

/** What the kernel says of a process's confinement: /proc/PID/status, cgroups, its root's listing, and its mount points (not /run/systemd/incoming, systemd's own). */
const CONFINEMENT = (pid: string) => `grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/${pid}/status; `
  + `echo root; ls -1 /proc/${pid}/root/; echo cwd; readlink /proc/${pid}/cwd | sed 's|.*/rootfs||'; `
  + `echo mounts; awk '$5 != "/run/systemd/incoming" {print $5}' /proc/${pid}/mountinfo; `
  + `echo ro; awk '$5 != "/run/systemd/incoming" && ($5 == "/" || $5 ~ /^\\/(etc|data|ro|proc|sys|dev|run)/) {split($6, o, ","); print $5, o[1]}' /proc/${pid}/mountinfo; `
  + `echo cgroup; sed 's/-\\(plain\\|held\\)\\.service/-APP.service/' /proc/${pid}/cgroup; echo ns; for n in cgroup ipc net pid uts; do echo "$n $(readlink /proc/${pid}/ns/$n)"; done`;

async function assertSameConfinement(node: TestNode, uuid: string, expect: Record<string, string>): Promise<void> {
  const plain = (await node.sh(CONFINEMENT((await appPid(node, uuid, 'plain')).pid))).stdout;
  const held = (await node.sh(CONFINEMENT((await appPid(node, uuid, 'held')).pid))).stdout;
  assert.fixture(held, plain, 'the app with a console has exactly the plain app\'s confinement, root, mounts and cgroups');
  // And the fields are what the securityContext asks for, so equal means right (not both wrong the same way).
  for (const [field, value] of Object.entries(expect)) assert.match(held, new RegExp(`^${field}:\\s+${value}\\s*$`, 'm'), `${field} ${value} in:\n${held}`);
  assert.match(held, /^bin$/m, held);
  assert.not.match(held, /^boot$/m, 'the image\'s root, not the node\'s');
  assert.match(held, /^\/ro ro$/m, held);
  assert.match(held, /^\/data rw$/m, held);
  assert.match(held, /^cwd\n\/tmp$/m, held);
}

/** Inside the node: the runtime's runInContainer (exec probes) into `held`, and its enter argv. */
async function probe(node: TestNode, uuid: string, command: string[]): Promise<{ exitCode: number; output: string; enter: string[] }> {
  const script = path.join(node.dataDir, 'manifests', `probe-${++seq}.mjs`);
  await node.sh(`cat > ${script} <<'EOF2'
const { RktRuntime } = await import(${JSON.stringify(path.join(REPO, 'dist/runtime-rkt/runtime.js'))});
const rt = await RktRuntime.open({ dataDir: ${JSON.stringify(node.dataDir)}, network: 'none' });
try {
  const enter = await rt.quickEnter(${JSON.stringify(uuid)}, 'held', ['true']);
  const r = await rt.runInContainer(${JSON.stringify(uuid)}, 'held', ${JSON.stringify(command)}, { timeoutMs: 10000 });
  process.stdout.write(JSON.stringify({ ...r, enter: Array.isArray(enter) ? enter : enter.argv }));
} finally { await rt.close(); }
EOF2`);
  const r = await node.sh(`${process.execPath} ${script}`);
  assert.is(r.exitCode, 0, `the probe script: ${r.stderr}`);
  return JSON.parse(r.stdout) as { exitCode: number; output: string; enter: string[] };
}

t('a default (root) app: the held app matches the plain one; the holder is the unit\'s main process; exec enters the app', async () => {
  const node = getNode();
  const uuid = await runPair(node, '');
  try {
    await assertSameConfinement(node, uuid, { Uid: '0\\s+0\\s+0\\s+0', CapEff: '00000000a80425fb', CapBnd: '00000000a80425fb', CapAmb: '0000000000000000', NoNewPrivs: '1', Seccomp: '2', Seccomp_filters: '1' });
    const { pid, mainPid } = await appPid(node, uuid, 'held');
    assert.match((await node.sh(`readlink /proc/${mainPid}/exe`)).stdout, /python/, 'the unit\'s main process is the console holder');
    // The app's stdin, stdout and stderr are the holder's terminal.
    assert.match((await node.sh(`readlink /proc/${pid}/fd/0 /proc/${pid}/fd/1 /proc/${pid}/fd/2`)).stdout, /^(\/dev\/pts\/\d+\n){3}$/);
    // Exec (probes, kubectl exec) enters the app, not the holder: its root, env and cwd.
    const env = await probe(node, uuid, ['sh', '-c', 'echo "$GREETING|$(pwd)|$(ls / | tr "\\n" " ")"']);
    assert.is(env.enter[2], pid, `the exec's target is the app: ${env.enter.join(' ')}`);
    assert.is(env.exitCode, 0, env.output);
    assert.match(env.output, /^hello world\|\/tmp\|bin data dev etc /, env.output);
    // The helper refuses a target still on the node's root (the holder): never an exec in the node's tree.
    const spec = path.join(node.dataDir, 'pods', 'run', uuid, 'apps', 'held', 'enter.spec');
    const helper = path.join(REPO, 'native', 'build', 'Release', 'stevedore-enter');
    const r = await node.sh(`${helper} ${spec} ${mainPid} $(cut -d' ' -f22 /proc/${mainPid}/stat) ls /; echo "exit $?"`);
    assert.match(r.stdout, /exit 126\s*$/, r.stdout);
    assert.match(r.stderr, /not in its root directory/);
    // --start takes only a spec with root=/PATH.
    const noRoot = await node.sh(`${helper} --start ${spec} ls /; echo "exit $?"`);
    assert.match(noRoot.stdout, /exit 126\s*$/, noRoot.stdout);
    assert.match(noRoot.stderr, /--start needs a root=\/PATH/);
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('a hardened app (non-root, groups, drop ALL add one): the held app matches the plain one', async () => {
  const node = getNode();
  const uuid = await runPair(node, '{runAsUser: 65534, runAsGroup: 100, allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}', '{supplementalGroups: [65534]}');
  try {
    await assertSameConfinement(node, uuid, { Uid: '65534\\s+65534\\s+65534\\s+65534', Gid: '100\\s+100\\s+100\\s+100', Groups: '100 65534', CapEff: '0000000000000000', CapPrm: '0000000000000000', CapBnd: '0000000000000400', NoNewPrivs: '1', Seccomp: '2' });
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('readOnlyRootFilesystem: the held app\'s root is read-only as the plain one\'s, its volumes as they are', async () => {
  const node = getNode();
  const uuid = await runPair(node, '{readOnlyRootFilesystem: true}');
  try {
    await assertSameConfinement(node, uuid, { Uid: '0\\s+0\\s+0\\s+0', NoNewPrivs: '1', Seccomp: '2' });
    const { pid } = await appPid(node, uuid, 'held');
    const r = await node.sh(`nsenter -t ${pid} -m -r sh -c 'touch /x 2>&1; touch /data/x && echo data-writable'`);
    assert.match(r.stdout, /Read-only file system/, r.stdout + r.stderr);
    assert.match(r.stdout, /data-writable/, r.stdout + r.stderr);
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t('a privileged app: the held app matches the plain one (the node\'s bounding set, no seccomp, no no_new_privs)', async () => {
  const node = getNode();
  const uuid = await runPair(node, '{privileged: true}');
  try {
    await assertSameConfinement(node, uuid, { Uid: '0\\s+0\\s+0\\s+0', NoNewPrivs: '0', Seccomp: '0' });
  } finally {
    await node.ok(['pod', 'rm', '--force', uuid]);
  }
});

t.run();
