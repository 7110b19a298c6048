import * as path from 'node:path';
import type { AppManifest } from '../contract.js';

/** How the VM's CPU is run: hardware virtualization, or qemu's TCG emulation (no hardware boundary). */
export type KvmAccel = 'kvm' | 'tcg';

export interface VmSpec {
  vmlinux: string;
  initrd: string;
  accel: KvmAccel;
  memoryMiB: number;
  cpus: number;
  /** the host's TSC frequency: microvm under TCG hangs now and then without it */
  tscKhz?: number;
  /** boot, print the probe marker, power off (no pod devices) */
  probe?: boolean;
  pod?: VmPodSpec;
}

export interface VmPodSpec {
  /** the 9p share (see guest-init.sh): apps/<i>, etc/, guest/ */
  shareDir: string;
  /** host side of the serial ports (short: unix socket paths are limited to 108 bytes) */
  runDir: string;
  appCount: number;
  /** the apps with stdin or a terminal: each gets a port `a<i>.in` (its stdin) */
  stdinApps?: number[];
  /** a tap device in the pod's network namespace */
  tap?: { name: string; mac: string };
}

/** Guest memory a kernel + busybox init need besides the apps (MiB). */
export const GUEST_OVERHEAD_MIB = 96;
/** What an app without a memory limit gets counted as (MiB). */
export const APP_DEFAULT_MEMORY_MIB = 128;

/** Guest RAM: the containers' memory limits (a default for those without) plus the guest's own overhead. */
export function guestMemoryMiB(apps: AppManifest[]): number {
  const apps_ = apps.reduce((n, a) => n + (a.limits.memoryBytes !== undefined ? Math.ceil(a.limits.memoryBytes / 2 ** 20) : APP_DEFAULT_MEMORY_MIB), 0);
  const total = apps_ + GUEST_OVERHEAD_MIB;
  return Math.ceil(total / 2) * 2;
}

/** vCPUs: the containers' cpu limits rounded up to whole CPUs, at least 1, at most the host's. */
export function guestCpus(apps: AppManifest[], hostCpus: number): number {
  const limited = apps.filter((a) => a.limits.cpuMillis !== undefined);
  const wanted = limited.length === apps.length ? Math.ceil(limited.reduce((n, a) => n + a.limits.cpuMillis!, 0) / 1000) : 1;
  return Math.max(1, Math.min(hostCpus, wanted));
}

export const portSocket = (runDir: string, name: string) => path.join(runDir, `${name}.sock`);
export const appPortNames = (i: number) => ({ ctl: `a${i}.ctl`, out: `a${i}.out`, err: `a${i}.err` });
/** The stdin port of an app with stdin or a terminal. */
export const appStdinPortName = (i: number) => `a${i}.in`;

/** `-sandbox`: on, with every deny option qemu 7.2 has. */
export const QEMU_SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/**
 * qemu's argv: microvm, no default devices, no host devices; the kernel
 * console on stdout (the VM unit's journal), one virtio-serial device with a
 * port per app stream (and `a<i>.in` for an app with stdin or a tty), `exec.io` + `exec.ctl` (`pod enter`), plus `status`
 * (a file: the unit's ExecStopPost reads whether the guest said `done`) and
 * `podctl` (a FIFO pair the unit's ExecStop writes `poweroff` to).
 */
export function qemuArgv(spec: VmSpec): string[] {
  // Boot time under TCG (measured, bench/RESULTS.md): crypto self-tests cost ~350 ms and the
  // kprobe trace init ~95 ms of a ~2 s boot; neither is of use in a pod's guest.
  const append = ['console=ttyS0', 'quiet', 'pci=off', 'panic=-1', 'cryptomgr.notests', 'initcall_blacklist=init_kprobe_trace',
    ...(spec.tscKhz ? [`tsc_early_khz=${spec.tscKhz}`] : []), ...(spec.probe ? ['stevedore.probe'] : [])];
  const argv = [
    'qemu-system-x86_64',
    // rtc=on: the guest's wall clock (no kvmclock under TCG), and without it the kernel's CMOS probe waits ~1 s.
    '-M', 'microvm,isa-serial=on,rtc=on,pit=off,pic=off',
    // TCG's translation cache defaults to 1 GiB of address space; 64 MiB is plenty for a small guest and bounds host memory.
    '-accel', spec.accel === 'tcg' ? 'tcg,tb-size=64' : 'kvm',
    ...(spec.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m', String(spec.memoryMiB), '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    // qemu's own seccomp filter (and no_new_privs): no obsolete system calls, no set*id, no fork/exec
    // (a compromised device model cannot start a process), no scheduler or affinity changes.
    '-sandbox', QEMU_SANDBOX,
    '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con',
    '-kernel', spec.vmlinux, '-initrd', spec.initrd,
    '-append', append.join(' '),
  ];
  const pod = spec.pod;
  if (!pod) return argv;
  argv.push(
    '-fsdev', `local,id=pod,path=${pod.shareDir},security_model=passthrough,multidevs=remap`,
    '-device', 'virtio-9p-device,fsdev=pod,mount_tag=pod',
    // port 0 is reserved for a console
    '-device', `virtio-serial-device,max_ports=${3 * pod.appCount + (pod.stdinApps?.length ?? 0) + 5}`,
    '-chardev', `file,id=status,path=${path.join(pod.runDir, 'status')}`,
    '-device', 'virtserialport,chardev=status,name=status',
    '-chardev', `pipe,id=podctl,path=${path.join(pod.runDir, 'podctl')}`,
    '-device', 'virtserialport,chardev=podctl,name=podctl',
  );
  const sockets = ['exec.io', 'exec.ctl', ...Array.from({ length: pod.appCount }, (_, i) => Object.values(appPortNames(i))).flat(),
    ...(pod.stdinApps ?? []).map(appStdinPortName)];
  for (const name of sockets) {
    argv.push('-chardev', `socket,id=${name.replace('.', '-')},path=${portSocket(pod.runDir, name)},server=on,wait=off`,
      '-device', `virtserialport,chardev=${name.replace('.', '-')},name=${name}`);
  }
  if (pod.tap) {
    argv.push('-netdev', `tap,id=net0,ifname=${pod.tap.name},script=no,downscript=no`, '-device', `virtio-net-device,netdev=net0,mac=${pod.tap.mac}`);
  }
  return argv;
}
