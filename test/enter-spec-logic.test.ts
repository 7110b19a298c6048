/**
 * The enter spec (stage1/enter-spec.ts): what the stevedore-enter helper is
 * given is the app's own OCI process, record for record, and a spec with
 * anything the helper would not apply gets no enter spec at all (probes then
 * keep crun exec), so a probe can never run with fewer restrictions than its app.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { enterSpecFromFields, enterSpecRefusal, enterSpecText } from '../stage1/enter-spec.js';
import { ociSpec } from '../stage1/oci-spec.js';
import type { AppManifest } from '../stage1/contract.js';

const BPF = Buffer.alloc(16, 1).toString('base64');

function spec(mutate: (s: Record<string, any>) => void = () => undefined): Record<string, any> {
  const s: Record<string, any> = {
    process: {
      user: { uid: 1000, gid: 3000, additionalGids: [4000, 4001] },
      cwd: '/work', env: ['PATH=/bin', 'SECRET=a=b c'],
      capabilities: { bounding: ['CAP_CHOWN', 'CAP_NET_ADMIN'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'] },
      noNewPrivileges: true,
    },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }], seccomp: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [] } },
    annotations: { 'run.oci.seccomp_bpf_data': BPF },
  };
  mutate(s);
  return s;
}

const records = (text: string) => text.split('\0').slice(0, -1);

test('the records are the app process\'s ids, groups, five capability masks, no_new_privs, seccomp program, cwd and env', () => {
  const text = enterSpecText(spec())!;
  assert.ok(text.endsWith('\0'), 'every record NUL-terminated');
  assert.equal(records(text), [
    'uid=1000', 'gid=3000', 'group=4000', 'group=4001',
    // CAP_CHOWN is bit 0, CAP_NET_ADMIN bit 12; inheritable and ambient absent → empty.
    'cap.bounding=1001', 'cap.effective=1', 'cap.permitted=1', 'cap.inheritable=0', 'cap.ambient=0',
    'nnp=1', `seccomp=${BPF}`, 'cwd=/work', 'env=PATH=/bin', 'env=SECRET=a=b c',
  ]);
});

test('an app without seccomp (Unconfined, privileged) gets an empty program, not the annotation of another', () => {
  const text = enterSpecText(spec((s) => { delete s.linux.seccomp; }))!;
  assert.ok(records(text).includes('seccomp='));
});

test('anything the helper would not apply means no enter spec, with the reason', () => {
  const cases: Array<[string, (s: Record<string, any>) => void, RegExp]> = [
    ['AppArmor', (s) => { s.process.apparmorProfile = 'x'; }, /security label/],
    ['SELinux', (s) => { s.process.selinuxLabel = 'x'; }, /security label/],
    ['rlimits', (s) => { s.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1, soft: 1 }]; }, /rlimits/],
    ['umask', (s) => { s.process.user.umask = 0o77; }, /umask/],
    ['user namespace', (s) => { s.linux.namespaces.push({ type: 'user' }); }, /user namespace/],
    ['seccomp flags', (s) => { s.linux.seccomp.flags = ['SECCOMP_FILTER_FLAG_LOG']; }, /seccomp flags/],
    ['a profile crun compiles itself', (s) => { delete s.annotations; }, /not precompiled/],
    ['an unknown capability', (s) => { s.process.capabilities.bounding.push('CAP_FUTURE'); }, /unknown capability/],
    ['a relative cwd', (s) => { s.process.cwd = 'work'; }, /absolute cwd/],
    ['a NUL in the env', (s) => { s.process.env.push('A=\0'); }, /environment/],
  ];
  for (const [what, mutate, reason] of cases) {
    const s = spec(mutate);
    assert.match(enterSpecRefusal(s) ?? '', reason, what);
    assert.is(enterSpecText(s), undefined, what);
  }
});

test('the spec the namespaces stage1 builds for a default app is one the helper takes, with containerd\'s capabilities', () => {
  const app = { name: 'c', image: 'busybox', argv: ['/bin/sleep', '1'], env: [['PATH', '/bin']], workingDir: '/', user: { uid: 0, gid: 0 } } as unknown as AppManifest;
  const s = ociSpec({ app, hostname: 'h', namespaces: [{ type: 'pid' }, { type: 'mount' }], binds: [] });
  s.annotations = { 'run.oci.seccomp_bpf_data': BPF };
  const text = enterSpecText(s);
  assert.ok(text, enterSpecRefusal(s));
  assert.ok(records(text!).includes('cap.bounding=a80425fb'), text);
  assert.ok(records(text!).includes('nnp=1'));
});

test('fly\'s fields: every record in the helper\'s format, root=target, the env byte for byte; uncarriable values give no spec', () => {
  const fields = {
    uid: 65534, gid: 100, groups: [100, 65534],
    caps: { bounding: 0x400n, effective: 0n, permitted: 0n, inheritable: 0n, ambient: 0n },
    noNewPrivileges: true, seccomp: BPF, rootOfTarget: true, cwd: '/tmp',
    env: [['PATH', '/bin'], ['SECRET', 'a=b\nc']] as Array<[string, string]>,
  };
  assert.equal(enterSpecFromFields(fields)!.split('\0'), [
    'uid=65534', 'gid=100', 'group=100', 'group=65534',
    'cap.bounding=400', 'cap.effective=0', 'cap.permitted=0', 'cap.inheritable=0', 'cap.ambient=0',
    'nnp=1', `seccomp=${BPF}`, 'root=target', 'cwd=/tmp', 'env=PATH=/bin', 'env=SECRET=a=b\nc', '',
  ]);
  assert.not.match(enterSpecFromFields({ ...fields, rootOfTarget: false })!, /root=/);
  assert.is(enterSpecFromFields({ ...fields, cwd: 'tmp' }), undefined, 'a relative cwd');
  assert.is(enterSpecFromFields({ ...fields, env: [['A', 'x\0y']] }), undefined, 'a NUL in a value');
  assert.is(enterSpecFromFields({ ...fields, env: [['A=B', 'x']] }), undefined, 'an = in a name');
});

test.run();
