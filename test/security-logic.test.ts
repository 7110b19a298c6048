/** Pure logic of container security: securityContext resolution, the OCI spec and unit properties it turns into. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ContainerConfigError } from '../common/errors.js';
import type { ContainerSpec, Pod } from '../runtime-api/pod-spec.js';
import { appSecurity, resolveSecurity, resolveSysctls, type SecurityInput } from '../runtime-rkt/security.js';
import { ALL_CAPS, DEFAULT_CAPS, capMask, defaultAppSecurity } from '../stage1/app-security.js';
import { unitNames, type AppManifest } from '../stage1/contract.js';
import { deviceAllowListProperties, podSlice, unitDeviceProperties } from '../stage1/devices.js';
import { flySecurityProperties } from '../stage1/fly.js';
import { MASKED_PATHS, ociSpec } from '../stage1/oci-spec.js';
import { CLONE_NAMESPACE_FLAGS, allowedSyscalls, runtimeDefaultSeccomp } from '../stage1/seccomp.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n';
const GROUP = 'root:x:0:\napp:x:1000:\nwheel:x:10:app,root\nstaff:x:50:app\n';

function input(podSc: Record<string, unknown> | undefined, containerSc: Record<string, unknown> | undefined, over: Partial<SecurityInput> = {}): SecurityInput {
  const container = { name: 'c', image: 'busybox', ...(containerSc ? { securityContext: containerSc } : {}) } as ContainerSpec;
  const pod = { metadata: { name: 'web', namespace: 'team', uid: 'u-1' }, spec: { containers: [container], ...(podSc ? { securityContext: podSc } : {}) } } as Pod;
  return {
    pod, podRef: 'web_team(u-1)', container, index: 0, stage1: 'namespaces', nodeCaps: ALL_CAPS, seccompRoot: '/var/lib/stevedore/seccomp',
    image: { spec: undefined, resolved: { uid: 0, gid: 0 }, passwd: PASSWD, group: GROUP },
    ...over,
  };
}

function refusedWith(fn: () => unknown, re: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, ContainerConfigError, String(err));
    assert.match((err as Error).message, re);
    return;
  }
  assert.unreachable(`expected a ContainerConfigError matching ${re}`);
}

test('no securityContext: containerd\'s RuntimeDefault, no_new_privs on, image user and its groups', () => {
  const r = resolveSecurity(input(undefined, undefined));
  assert.equal(r.user, { uid: 0, gid: 0 });
  assert.equal(r.security.capabilities, ALL_CAPS.filter((c) => DEFAULT_CAPS.includes(c)));
  assert.equal(r.security.seccomp, { type: 'RuntimeDefault' });
  assert.is(r.security.noNewPrivileges, true);
  assert.is(r.security.privileged, false);
  assert.equal(r.security.supplementalGroups, [0, 10], 'root is a member of wheel in the image');
});

test('container fields override the pod\'s; runAsUser takes its gid from the image; groups merge', () => {
  const r = resolveSecurity(input({ runAsUser: 5, runAsGroup: 7, supplementalGroups: [4000], fsGroup: 2000 }, { runAsUser: 1000 }));
  assert.equal(r.user, { uid: 1000, gid: 7 }, 'pod runAsGroup applies when the container has none');
  assert.equal(r.security.supplementalGroups, [7, 10, 50, 4000, 2000]);
  const noEntry = resolveSecurity(input(undefined, { runAsUser: 4242 }));
  assert.equal(noEntry.user, { uid: 4242, gid: 0 }, 'a uid the image does not know gets gid 0, as containerd');
  assert.equal(noEntry.security.supplementalGroups, []);
});

test('capabilities: add/drop by name with or without CAP_, ALL, unknown refused, privileged gets the node\'s set', () => {
  const caps = (sc: Record<string, unknown>, nodeCaps: readonly string[] = ALL_CAPS) => resolveSecurity(input(undefined, sc, { nodeCaps })).security.capabilities;
  assert.equal(caps({ capabilities: { drop: ['ALL'] } }), []);
  assert.equal(caps({ capabilities: { drop: ['ALL'], add: ['net_bind_service'] } }), ['CAP_NET_BIND_SERVICE']);
  assert.equal(caps({ capabilities: { add: ['ALL'], drop: ['CAP_SYS_ADMIN'] } }), ALL_CAPS.filter((c) => c !== 'CAP_SYS_ADMIN'));
  const some = caps({ capabilities: { add: ['NET_ADMIN'], drop: ['MKNOD', 'cap_chown'] } });
  assert.ok(some.includes('CAP_NET_ADMIN') && !some.includes('CAP_MKNOD') && !some.includes('CAP_CHOWN'));
  refusedWith(() => caps({ capabilities: { add: ['NET_FROB'] } }), /capabilities\.add\[0\]: unknown capability "NET_FROB"/);
  const nodeCaps = ALL_CAPS.filter((c) => c !== 'CAP_SYS_RESOURCE');
  refusedWith(() => caps({ capabilities: { add: ['SYS_RESOURCE'] } }, nodeCaps), /cannot grant CAP_SYS_RESOURCE/);
  const priv = resolveSecurity(input(undefined, { privileged: true }, { nodeCaps }));
  assert.equal(priv.security.capabilities, nodeCaps);
  assert.equal(priv.security.seccomp, { type: 'Unconfined' });
  assert.is(priv.security.noNewPrivileges, false);
});

test('runAsNonRoot: the kubelet\'s three refusals; a non-root uid passes', () => {
  refusedWith(() => resolveSecurity(input({ runAsNonRoot: true }, undefined)), /^container has runAsNonRoot and image will run as root \(pod: "web_team\(u-1\)", container: c\)$/);
  refusedWith(() => resolveSecurity(input(undefined, { runAsNonRoot: true }, { image: { spec: 'app', resolved: { uid: 1000, gid: 1000 }, passwd: PASSWD, group: GROUP } })),
    /^container has runAsNonRoot and image has non-numeric user \(app\), cannot verify user is non-root \(pod: "web_team\(u-1\)", container: c\)$/);
  refusedWith(() => resolveSecurity(input({ runAsNonRoot: true, runAsUser: 0 }, undefined)), /^container's runAsUser breaks non-root policy/);
  assert.is(resolveSecurity(input({ runAsNonRoot: true }, undefined, { image: { spec: '1000:1000', resolved: { uid: 1000, gid: 1000 }, passwd: PASSWD, group: GROUP } })).user.uid, 1000);
  assert.is(resolveSecurity(input({ runAsNonRoot: true }, { runAsUser: 1000 })).user.uid, 1000);
  assert.is(resolveSecurity(input({ runAsNonRoot: true }, { runAsNonRoot: false })).user.uid, 0, 'the container\'s false overrides the pod\'s true');
});

test('seccomp: container over pod, Localhost under the node folder only, not on fly; allowPrivilegeEscalation', () => {
  assert.equal(resolveSecurity(input({ seccompProfile: { type: 'Unconfined' } }, undefined)).security.seccomp, { type: 'Unconfined' });
  assert.equal(resolveSecurity(input({ seccompProfile: { type: 'Unconfined' } }, { seccompProfile: { type: 'RuntimeDefault' } })).security.seccomp, { type: 'RuntimeDefault' });
  assert.equal(resolveSecurity(input(undefined, { seccompProfile: { type: 'Localhost', localhostProfile: 'a/b.json' } })).security.seccomp, { type: 'Localhost', path: '/var/lib/stevedore/seccomp/a/b.json' });
  refusedWith(() => resolveSecurity(input(undefined, { seccompProfile: { type: 'Localhost', localhostProfile: '../x.json' } })), /without "\.\."/);
  refusedWith(() => resolveSecurity(input(undefined, { seccompProfile: { type: 'Localhost', localhostProfile: '/etc/x.json' } })), /relative/);
  refusedWith(() => resolveSecurity(input(undefined, { seccompProfile: { type: 'Localhost' } })), /localhostProfile: Required value/);
  refusedWith(() => resolveSecurity(input(undefined, { seccompProfile: { type: 'Localhost', localhostProfile: 'a.json' } }, { stage1: 'fly' })), /not supported on the fly stage1/);
  refusedWith(() => resolveSecurity(input(undefined, { seccompProfile: { type: 'Strict' } })), /unsupported value "Strict"/);
  assert.is(resolveSecurity(input(undefined, { allowPrivilegeEscalation: true })).security.noNewPrivileges, false);
  assert.is(resolveSecurity(input(undefined, { allowPrivilegeEscalation: false })).security.noNewPrivileges, true);
});

test('wrong types are refused by field (which fields exist at all is validatePod\'s: test/pod-fields.test.ts)', () => {
  refusedWith(() => resolveSecurity(input(undefined, { runAsUser: -1 })), /runAsUser: must be an integer/);
  refusedWith(() => resolveSecurity(input(undefined, { privileged: 'yes' })), /privileged: expected boolean/);
});

test('sysctls: only the safe set, slashes accepted, not into namespaces the pod shares with the node', () => {
  const pod = (sysctls: unknown, spec: Record<string, unknown> = {}) => ({ metadata: { name: 'p' }, spec: { containers: [], securityContext: { sysctls }, ...spec } }) as unknown as Pod;
  assert.equal(resolveSysctls(pod([{ name: 'net/ipv4/tcp_syncookies', value: '1' }]), 'namespaces'), [['net.ipv4.tcp_syncookies', '1']]);
  refusedWith(() => resolveSysctls(pod([{ name: 'kernel.msgmax', value: '1' }]), 'namespaces'), /forbidden sysctl: "kernel.msgmax" not allowlisted/);
  refusedWith(() => resolveSysctls(pod([{ name: 'net.ipv4.tcp_syncookies', value: '1' }], { hostNetwork: true }), 'namespaces'), /hostNetwork/);
  refusedWith(() => resolveSysctls(pod([{ name: 'kernel.shm_rmid_forced', value: '1' }], { hostIPC: true }), 'namespaces'), /hostIPC/);
  refusedWith(() => resolveSysctls(pod([{ name: 'net.ipv4.tcp_syncookies', value: '1' }]), 'fly'), /fly stage1/);
});

const app = (security?: AppManifest['security']): AppManifest => ({
  name: 'c', image: { id: 'sha256:x', name: 'busybox' }, argv: ['/bin/sh'], env: [], workingDir: '/', user: { uid: 0, gid: 0 }, limits: {}, requests: {}, ...(security ? { security } : {}),
});
const specOf = (a: AppManifest, extra: Record<string, unknown> = {}) => ociSpec({ app: a, hostname: 'h', namespaces: [], binds: [], ...extra }) as {
  process: { capabilities: { bounding: string[] }; noNewPrivileges: boolean; user: { additionalGids?: number[] } };
  root: { readonly: boolean };
  linux: { maskedPaths: string[]; readonlyPaths: string[]; seccomp?: { defaultAction: string; syscalls: Array<{ names: string[]; args?: Array<{ value: number }> }> }; resources: { devices: Array<{ allow: boolean }> }; sysctl?: Record<string, string> };
};

test('OCI spec: a manifest from before security was stored still gets the defaults', () => {
  assert.equal(appSecurity(app()).capabilities, DEFAULT_CAPS);
  const spec = specOf(app(), { sysctls: [['net.ipv4.tcp_syncookies', '1']] });
  assert.is(spec.process.noNewPrivileges, true);
  assert.equal(spec.linux.maskedPaths, MASKED_PATHS);
  assert.ok(spec.linux.readonlyPaths.includes('/proc/sys'));
  assert.is(spec.linux.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(spec.linux.resources.devices[0], { allow: false, access: 'rwm' });
  assert.equal(spec.linux.sysctl, { 'net.ipv4.tcp_syncookies': '1' });
});

test('OCI spec: privileged has no masks, no seccomp, every device; read-only root; groups', () => {
  const base = resolveSecurity(input(undefined, { privileged: true })).security;
  const spec = specOf(app(base));
  assert.equal(spec.linux.maskedPaths, []);
  assert.is(spec.linux.seccomp, undefined);
  assert.equal(spec.linux.resources.devices, [{ allow: true, access: 'rwm' }]);
  const ro = specOf(app({ ...resolveSecurity(input({ supplementalGroups: [5] }, { readOnlyRootFilesystem: true })).security }));
  assert.is(ro.root.readonly, true);
  assert.equal(ro.process.user.additionalGids, [0, 10, 5]);
});

test('seccomp profile: escapes refused without CAP_SYS_ADMIN, allowed with it', () => {
  const names = (caps: string[]) => runtimeDefaultSeccomp(caps, 'x64').syscalls.filter((r) => !r.args).flatMap((r) => r.names);
  const plain = allowedSyscalls(DEFAULT_CAPS);
  for (const escape of ['unshare', 'setns', 'mount', 'keyctl', 'add_key', 'bpf', 'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'open_by_handle_at', 'userfaultfd', 'io_uring_setup']) {
    assert.not.ok(plain.includes(escape), `${escape} refused by default`);
  }
  assert.ok(plain.includes('ptrace'), 'ptrace allowed, as containerd (kernel >= 4.8)');
  const clone = runtimeDefaultSeccomp(DEFAULT_CAPS, 'x64').syscalls.find((r) => r.names.includes('clone'));
  assert.equal(clone?.args?.[0]?.value, CLONE_NAMESPACE_FLAGS, 'clone only without namespace flags (0x10000000 is CLONE_NEWUSER)');
  assert.ok((CLONE_NAMESPACE_FLAGS & 0x10000000) !== 0);
  const admin = names([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']);
  assert.ok(admin.includes('mount') && admin.includes('unshare') && admin.includes('clone'));
  assert.not.ok(admin.includes('kexec_load') || admin.includes('keyctl'), 'never, whatever the capabilities');
});

test('device rules: the allow-list once on stevedore.slice; per unit only in host-devices pods; fly gets caps, nnp, seccomp names', () => {
  const [policy, allow] = deviceAllowListProperties();
  assert.equal(policy, ['DevicePolicy', policy![1]]);
  assert.is((policy![1] as { value: string }).value, 'strict');
  const rules = (allow![1] as { value: Array<[string, string]> }).value;
  assert.ok(rules.some(([dev]) => dev === '/dev/char/1:3') && rules.some(([dev]) => dev === 'char-pts'));
  assert.not.ok(rules.some(([dev]) => dev.includes('block')), 'no block device');
  const plain = { uuid: '0b0e7c8e-52a3-4a4e-9a4c-1f4e2b7d3c10', stage1: 'namespaces' as const, apps: [app()] };
  const privileged = { ...plain, apps: [app(), { ...app(), name: 'p', security: { ...defaultAppSecurity(), privileged: true } }] };
  assert.is(podSlice(plain), 'stevedore-0b0e7c8e52a34a4e9a4c1f4e2b7d3c10.slice', 'under stevedore.slice');
  assert.is(podSlice(privileged), 'stevedore_host-0b0e7c8e52a34a4e9a4c1f4e2b7d3c10.slice');
  assert.is(podSlice({ ...plain, stage1: 'kvm' }), 'stevedore_host-0b0e7c8e52a34a4e9a4c1f4e2b7d3c10.slice', 'qemu needs /dev/kvm');
  assert.equal(unitNames.parse(podSlice(privileged)), { uuid: plain.uuid });
  assert.equal(unitDeviceProperties(plain, false), [], 'the slice holds the rules');
  assert.equal(unitDeviceProperties(privileged, false), deviceAllowListProperties(), 'a plain app beside a privileged one');
  assert.is((unitDeviceProperties(privileged, true)[0]![1] as { value: string }).value, 'auto');
  const props = new Map(flySecurityProperties(plain, app(), '/pods/x/rootfs').map(([k, v]) => [k, (v as { value: unknown }).value]));
  assert.not.ok(props.has('DevicePolicy'));
  assert.is(props.get('CapabilityBoundingSet'), capMask(DEFAULT_CAPS));
  assert.is(capMask(DEFAULT_CAPS), 0xa80425fbn);
  assert.is(props.get('NoNewPrivileges'), true);
  assert.is(props.get('RestrictNamespaces'), 0n);
  const [allowList, syscalls] = props.get('SystemCallFilter') as [boolean, string[]];
  assert.is(allowList, true);
  assert.not.ok(syscalls.includes('unshare') || syscalls.includes('mount'));
  assert.not.ok(props.has('ReadOnlyPaths'));
  // With the precompiled program loaded by seccomp-exec, systemd builds no filter of its own; the rest stays.
  const helped = new Map(flySecurityProperties(plain, app(), '/pods/x/rootfs', { filterLoadedByHelper: true }).map(([k, v]) => [k, (v as { value: unknown }).value]));
  for (const name of ['SystemCallFilter', 'SystemCallErrorNumber', 'RestrictNamespaces', 'RestrictAddressFamilies', 'LockPersonality', 'SystemCallArchitectures']) {
    assert.not.ok(helped.has(name), name);
  }
  assert.is(helped.get('NoNewPrivileges'), true);
  assert.is(helped.get('CapabilityBoundingSet'), capMask(DEFAULT_CAPS));
});

test.run();
