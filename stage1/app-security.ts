import type { AppManifest, AppSecurity } from './contract.js';

/** Every Linux capability, in kernel bit order (CAP_CHOWN is bit 0): bit masks for systemd and /proc/PID/status come from the index. */
export const ALL_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/** Capabilities a container gets by default: the same set containerd and the kubelet grant. */
export const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

/** A capability set as the bit mask systemd (CapabilityBoundingSet) and /proc/PID/status use. */
export function capMask(caps: readonly string[]): bigint {
  let mask = 0n;
  for (const cap of caps) {
    const bit = (ALL_CAPS as readonly string[]).indexOf(cap);
    if (bit < 0) throw new Error(`capMask: unknown capability ${cap}`);
    mask |= 1n << BigInt(bit);
  }
  return mask;
}

/** The capability names in a mask (bits beyond the known ones are ignored). */
export function capsOfMask(mask: bigint): string[] {
  return ALL_CAPS.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

/** What a container with no securityContext gets: containerd's RuntimeDefault with the kubelet's SeccompDefault. */
export function defaultAppSecurity(): AppSecurity {
  return {
    supplementalGroups: [],
    capabilities: [...DEFAULT_CAPS],
    noNewPrivileges: true,
    readOnlyRootFilesystem: false,
    privileged: false,
    seccomp: { type: 'RuntimeDefault' },
  };
}

/**
 * The app's confinement. Pods prepared by releases before stage0 resolved it
 * have none stored: they get the defaults when (re)launched, never less.
 */
export function appSecurity(app: AppManifest): AppSecurity {
  return app.security ?? defaultAppSecurity();
}
