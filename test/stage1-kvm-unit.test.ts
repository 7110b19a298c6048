/** stage1 kvm, pure logic: VM sizing, qemu's argv, the initramfs writer (read back by busybox cpio). */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { parseKvmAccelMode } from '../stage1/kvm/accel.js';
import { KVM_ASSETS_RECIPE, loadKvmAssets } from '../stage1/kvm/assets.js';
import { cpioArchive } from '../stage1/kvm/cpio.js';
import { guestCpus, guestMemoryMiB, qemuArgv } from '../stage1/kvm/vm.js';
import type { AppManifest } from '../stage1/contract.js';
import { podStatusFor } from '../agent/pod-status.js';
import type { PodStatus } from '../runtime-rkt/status.js';

const app = (limits: AppManifest['limits']) => ({ limits }) as AppManifest;

test('guest RAM: the memory limits plus overhead; a default for apps without one', () => {
  assert.is(guestMemoryMiB([app({ memoryBytes: 64 * 2 ** 20 }), app({ memoryBytes: 100 * 2 ** 20 })]), 64 + 100 + 96);
  assert.is(guestMemoryMiB([app({}), app({ memoryBytes: 3 * 2 ** 20 + 1 })]), 128 + 96 + 4, 'rounded up to whole, even MiB');
});

test('vCPUs: cpu limits rounded up, 1 if any app has none, at most the host\'s', () => {
  assert.is(guestCpus([app({ cpuMillis: 500 }), app({ cpuMillis: 700 })], 8), 2);
  assert.is(guestCpus([app({ cpuMillis: 3000 }), app({})], 8), 1);
  assert.is(guestCpus([app({ cpuMillis: 16000 })], 2), 2);
});

test('qemu argv: microvm, the chosen accel, no default or host devices, one 9p share, ports per app, tap when networked', () => {
  const argv = qemuArgv({ vmlinux: '/a/vmlinux', initrd: '/a/initrd.cpio', accel: 'tcg', memoryMiB: 224, cpus: 1, tscKhz: 2500000,
    pod: { shareDir: '/p/share', runDir: '/run/x', appCount: 2, stdinApps: [1], tap: { name: 'tap0', mac: '02:00:00:00:00:01' } } });
  const joined = argv.join(' ');
  assert.match(joined, /-M microvm,/);
  assert.match(joined, /-accel tcg,tb-size=64/);
  assert.ok(argv.includes('-nodefaults') && argv.includes('-no-reboot'));
  assert.is(argv[argv.indexOf('-sandbox') + 1], 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny', 'qemu\'s seccomp filter, every deny option');
  assert.not.match(joined, /-device (vfio|usb|pci-assign)|-drive|hostdev/);
  assert.is(argv.filter((a) => a.startsWith('local,id=pod,path=/p/share,')).length, 1);
  for (const port of ['a0.ctl', 'a0.out', 'a0.err', 'a1.ctl', 'a1.out', 'a1.err', 'exec.io', 'exec.ctl']) assert.ok(argv.includes(`virtserialport,chardev=${port.replace('.', '-')},name=${port}`), port);
  assert.match(joined, /path=\/run\/x\/a1\.err\.sock,server=on,wait=off/);
  // Only an app with stdin or a tty gets a stdin port, and the device has room for it.
  assert.ok(argv.includes('virtserialport,chardev=a1-in,name=a1.in'));
  assert.not.ok(argv.includes('virtserialport,chardev=a0-in,name=a0.in'));
  assert.ok(argv.includes('virtio-serial-device,max_ports=12'));
  assert.match(joined, /tap,id=net0,ifname=tap0,script=no,downscript=no/);
  assert.match(joined, /virtio-net-device,netdev=net0,mac=02:00:00:00:00:01/);
  assert.match(argv[argv.indexOf('-append') + 1]!, /panic=-1 .*tsc_early_khz=2500000/);
  const kvm = qemuArgv({ vmlinux: 'v', initrd: 'i', accel: 'kvm', memoryMiB: 128, cpus: 1, probe: true });
  assert.match(kvm.join(' '), /-accel kvm -cpu host/);
  assert.match(kvm[kvm.indexOf('-append') + 1]!, /stevedore\.probe/);
  assert.not.match(kvm.join(' '), /tsc_early_khz|-fsdev/);
  assert.ok(kvm.includes('-sandbox'), 'the probe VM is sandboxed too');
});

test('--kvm-accel takes auto, kvm, tcg and nothing else', () => {
  assert.is(parseKvmAccelMode('tcg'), 'tcg');
  assert.throws(() => parseKvmAccelMode('hw'), /unknown --kvm-accel "hw"/);
});

test('cpio: the same entries give the same bytes, and busybox cpio reads them back', async () => {
  const entries = [
    { type: 'dir' as const, path: 'bin' },
    { type: 'file' as const, path: 'bin/hello', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
    { type: 'symlink' as const, path: 'bin/sh', target: 'busybox' },
    { type: 'chardev' as const, path: 'null', major: 1, minor: 3 },
  ];
  const a = cpioArchive(entries);
  assert.ok(a.equals(cpioArchive(entries)), 'deterministic');
  assert.is(a.length % 4, 0);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-cpio-'));
  try {
    const list = await execa('busybox', ['cpio', '-tv'], { input: a });
    assert.match(list.stdout, /drwxr-xr-x .* bin\n/);
    assert.match(list.stdout, /-rwxr-xr-x .* 18 .* bin\/hello/);
    assert.match(list.stdout, /lrwxrwxrwx .* bin\/sh -> busybox/);
    assert.match(list.stdout, /crw-rw-rw- .* null/);
    await execa('busybox', ['cpio', '-id'], { input: a, cwd: dir });
    assert.is(await fs.readFile(path.join(dir, 'bin', 'hello'), 'utf8'), '#!/bin/sh\necho hi\n');
    const dev = await fs.stat(path.join(dir, 'null'));
    assert.ok(dev.isCharacterDevice());
    assert.is(dev.rdev, (1 << 8) | 3, 'major 1, minor 3');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('assets of an older build recipe (no crun in the guest) are refused, so build-kvm --if-missing rebuilds them', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-kvm-assets-'));
  try {
    const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
    const guestInitSha256 = createHash('sha256').update(await fs.readFile(path.join(repo, 'stage1/kvm/guest-init.sh'))).digest('hex');
    const info = { kernelPackage: 'k', kernelVersion: 'v', busyboxPackage: 'b', modules: [], sha256: {}, guestInitSha256 };
    await fs.writeFile(path.join(dir, 'assets.json'), JSON.stringify(info));
    const refused = await loadKvmAssets(dir).then(() => undefined, (err: Error & { hint?: string }) => `${err.message} (${err.hint})`);
    assert.match(refused ?? 'accepted', /older build recipe \(1, this version needs 3: crun and console-relay in the guest\).*stevedore stage1 build-kvm/);
    await fs.writeFile(path.join(dir, 'assets.json'), JSON.stringify({ ...info, recipe: KVM_ASSETS_RECIPE }));
    assert.is((await loadKvmAssets(dir)).info.recipe, KVM_ASSETS_RECIPE);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('the agent shows a VM pod\'s acceleration as a pod condition', () => {
  const pod = { metadata: { name: 'p', uid: 'u' }, spec: { containers: [{ name: 'a', image: 'busybox' }] } };
  const rp = (vm?: PodStatus['vm']): PodStatus => ({ uuid: 'x', state: 'running', handler: 'kvm', ...(vm ? { vm } : {}),
    apps: [{ name: 'a', image: { id: 'sha256:1', name: 'busybox' }, unit: 'u', restartCount: 0, state: 'running' }] });
  const cond = (p: PodStatus) => podStatusFor(pod as never, { runtimeName: 'rkt', hostIP: '10.0.0.1', runtimePod: p }).conditions!.find((c) => c.type === 'stevedore.io/VMAcceleration');
  const tcg = cond(rp({ accel: 'tcg', accelReason: 'hardware KVM is not usable (x); emulating with TCG', memoryMiB: 224, cpus: 1, kernel: 'k' }));
  assert.equal([tcg?.status, tcg?.reason, tcg?.message], ['False', 'TCG', 'hardware KVM is not usable (x); emulating with TCG']);
  assert.is(cond(rp({ accel: 'kvm', accelReason: 'probe ok', memoryMiB: 224, cpus: 1, kernel: 'k' }))?.reason, 'KVM');
  assert.is(cond(rp()), undefined, 'no condition for container pods');
});

test.run();
