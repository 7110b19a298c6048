import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { QEMU_CAPABILITIES } from '../stage1/kvm.js';
import { eventually, podStatus, useNode, type TestNode } from './helpers/node.js';

/**
 * issue 13, kvm stage1: qemu confined (its own seccomp filter and systemd's
 * sandbox around it), and the apps inside the guest confined like containers
 * on the namespaces stage1 (crun in the guest, one OCI spec builder). Under
 * TCG every VM boots in seconds: two pods, several questions each.
 */
const sec = suite('security: the kvm stage1');
const getNode = useNode(sec);
const hex = (uuid: string) => uuid.replace(/-/g, '');
const BOOT_MS = 90_000;

const statusField = (status: string, field: string) => new RegExp(`^${field}:\\s*(\\S+)`, 'm').exec(status)?.[1];

async function unitProps(node: TestNode, unit: string, props: string[]): Promise<Record<string, string>> {
  const out = (await node.sh(`systemctl show ${unit} ${props.map((p) => `-p ${p}`).join(' ')}`)).stdout;
  const found: Record<string, string> = {};
  // A list property (DeviceAllow) comes one line per entry.
  for (const l of out.trim().split('\n')) {
    const [k, v] = [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)];
    found[k] = found[k] === undefined ? v : `${found[k]}\n${v}`;
  }
  return found;
}

sec('qemu runs under its seccomp filter with no_new_privs, few capabilities and systemd\'s sandbox: the node\'s files out of reach', async () => {
  const node = getNode();
  await node.sh(`echo node-secret > ${node.dataDir}/node-secret`);
  const file = await node.manifest('vm-sandbox.yaml', `
metadata: {name: vm-sandbox}
spec:
  containers:
  - {name: idle, image: busybox, command: [sh, -c, 'echo up; while :; do sleep 1; done']}
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'kvm'])).trim();
  await eventually('the app to run in the guest', async () => ((await node.ok(['pod', 'logs', uuid, '-c', 'idle'])).includes('up') ? true : undefined), BOOT_MS);
  const unit = `stevedore-${hex(uuid)}.service`;
  const props = await unitProps(node, unit, ['MainPID', 'NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'ProtectKernelTunables',
    'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'RestrictNamespaces', 'RestrictRealtime',
    'RestrictSUIDSGID', 'LockPersonality', 'MemoryDenyWriteExecute', 'DevicePolicy', 'DeviceAllow', 'CapabilityBoundingSet', 'RestrictAddressFamilies']);
  assert.equal(
    [props.NoNewPrivileges, props.ProtectSystem, props.ProtectHome, props.PrivateTmp, props.ProtectKernelTunables, props.ProtectKernelModules,
      props.ProtectKernelLogs, props.ProtectControlGroups, props.ProtectClock, props.ProtectHostname, props.RestrictRealtime, props.RestrictSUIDSGID,
      props.LockPersonality, props.DevicePolicy],
    ['yes', 'strict', 'yes', 'yes', 'yes', 'yes', 'yes', 'yes', 'yes', 'yes', 'yes', 'yes', 'yes', 'closed'], JSON.stringify(props));
  assert.is(props.RestrictNamespaces, 'yes', 'no namespaces may be made');
  assert.is(props.MemoryDenyWriteExecute, 'no', 'TCG needs W+X');
  assert.match(props.DeviceAllow ?? '', /\/dev\/kvm rw/);
  assert.match(props.DeviceAllow ?? '', /\/dev\/net\/tun rw/);
  assert.equal(props.CapabilityBoundingSet!.split(' ').sort(), Object.keys(QEMU_CAPABILITIES).map((c) => c.toLowerCase()).sort());
  assert.is(props.RestrictAddressFamilies, 'AF_UNIX');

  const pid = Number(props.MainPID);
  assert.ok(pid > 0, 'qemu runs');
  assert.match((await node.sh(`cat /proc/${pid}/cmdline | tr '\\0' ' '`)).stdout, /qemu-system-x86_64 .*-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny/);
  const status = (await node.sh(`cat /proc/${pid}/status`)).stdout;
  assert.is(statusField(status, 'Seccomp'), '2', 'qemu\'s own seccomp filter (and systemd\'s) is on');
  assert.is(statusField(status, 'NoNewPrivs'), '1');
  const capBnd = BigInt(`0x${statusField(status, 'CapBnd')}`);
  assert.is(capBnd, Object.values(QEMU_CAPABILITIES).reduce((m, b) => m | (1n << BigInt(b)), 0n), 'only the capabilities 9p needs');
  assert.is(capBnd & (1n << 27n), 0n, 'no CAP_MKNOD');
  assert.is(capBnd & (1n << 21n), 0n, 'no CAP_SYS_ADMIN');
  // qemu's view of the node (its mount namespace, through /proc/PID/root): the data dir (under /var/tmp) is
  // hidden, the system read-only, its run dir writable.
  const root = `/proc/${pid}/root`;
  assert.is((await node.sh(`cat ${root}${node.dataDir}/node-secret`)).exitCode, 1, 'the node\'s data dir is out of qemu\'s sight');
  assert.match((await node.sh(`touch ${root}/usr/lib/stevedore-probe 2>&1`)).stdout, /Read-only file system/);
  assert.not.match((await node.sh(`ls -A ${root}/var/tmp`)).stdout, path.basename(node.dataDir), 'a private /var/tmp');
  assert.is((await node.sh(`ls ${root}/run/stevedore-kvm/${hex(uuid)}/share/apps/0/bin/busybox`)).exitCode, 0, 'the pod share is bound into its run dir');
  // The guest still works through all of it: over 9p, files of any owner, modes, times, in a directory of another owner.
  const enter = await node.cli(['pod', 'enter', uuid, '-c', 'idle', '--', 'sh', '-c',
    'mkdir -m 700 /tmp/d && chown 99:99 /tmp/d && echo hi > /tmp/d/f && chown 1234:1234 /tmp/d/f && chmod 640 /tmp/d/f && touch -d "2001-02-03 04:05:06" /tmp/d/f && stat -c "%u:%g %a %y" /tmp/d/f && cat /tmp/d/f']);
  assert.match(enter.stdout, /^1234:1234 640 2001-02-03 04:05:06[^\n]*\nhi\n$/, `${enter.stdout}${enter.stderr}`);
  // pod enter runs under the app's spec too (crun exec): the same seccomp filter and no_new_privs.
  const confined = await node.cli(['pod', 'enter', uuid, '-c', 'idle', '--', 'grep', '-E', '^(NoNewPrivs|Seccomp|CapBnd):', '/proc/self/status']);
  assert.equal([statusField(confined.stdout, 'NoNewPrivs'), statusField(confined.stdout, 'Seccomp'), statusField(confined.stdout, 'CapBnd')], ['1', '2', '00000000a80425fb'], confined.stdout + confined.stderr);
  // RestrictSUIDSGID: qemu cannot make setuid/setgid files on the node, so neither can the guest in its rootfs.
  const suid = await node.cli(['pod', 'enter', uuid, '-c', 'idle', '--', 'sh', '-c', 'chmod u+s /tmp/d/f']);
  assert.match(suid.stdout, /Operation not permitted/);
  await node.ok(['pod', 'rm', '--force', uuid]);
});

sec('apps in the guest run under crun from the shared OCI spec: user, no_new_privs, seccomp, capabilities, masked paths, read-only rootfs', async () => {
  const node = getNode();
  const file = await node.manifest('vm-confined.yaml', `
metadata: {name: vm-confined}
spec:
  restartPolicy: Never
  containers:
  - name: default
    image: busybox
    command: [sh, -c, 'grep -E "^(NoNewPrivs|Seccomp|CapBnd|CapEff):" /proc/self/status; echo kcore=$(wc -c < /proc/kcore); echo pid1=$(cat /proc/1/comm); unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-refused; mknod /dev/lc c 10 237 2>/dev/null; head -c1 /dev/lc 2>/dev/null && echo open-ok || echo open-refused; mknod /tmp/lc c 10 237 2>/dev/null && echo rootfs-mknod-ok || echo rootfs-mknod-refused; touch /written && echo write-ok']
  - name: user
    image: busybox
    securityContext: {runAsUser: 1000, runAsGroup: 3000}
    command: [sh, -c, 'echo uid=$(id -u) gid=$(id -g)']
  - name: ro
    image: busybox
    securityContext: {readOnlyRootFilesystem: true}
    command: [sh, -c, 'touch /x 2>&1 && echo write-ok || echo write-refused']
`);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', 'kvm'])).trim();
  await eventually('every app to exit', async () => ((await podStatus(node, uuid)).state === 'exited' ? true : undefined), BOOT_MS);
  const def = await node.ok(['pod', 'logs', uuid, '-c', 'default']);
  assert.is(statusField(def, 'NoNewPrivs'), '1', def);
  assert.is(statusField(def, 'Seccomp'), '2', 'the RuntimeDefault profile');
  // containerd's default set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP)
  assert.is(statusField(def, 'CapBnd'), '00000000a80425fb', def);
  assert.is(statusField(def, 'CapEff'), '00000000a80425fb');
  assert.match(def, /kcore=0\n/, '/proc/kcore masked');
  assert.match(def, /pid1=sh\n/, 'its own pid namespace');
  assert.match(def, /unshare-refused/, 'seccomp: no user namespaces');
  assert.match(def, /open-refused/, 'the device allow-list, enforced by the guest kernel (crun\'s device cgroup): loop-control does not open');
  assert.match(def, /rootfs-mknod-refused/, 'no device node lands in the rootfs on the node (qemu has no CAP_MKNOD)');
  assert.match(def, /write-ok/, 'the rootfs is writable by default');
  assert.is(await node.ok(['pod', 'logs', uuid, '-c', 'user']), 'uid=1000 gid=3000\n');
  const ro = await node.ok(['pod', 'logs', uuid, '-c', 'ro']);
  assert.match(ro, /Read-only file system/);
  assert.match(ro, /write-refused/);
  await node.ok(['pod', 'rm', uuid]);
});

sec.run();
