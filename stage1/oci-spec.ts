import { envStrings } from './common.js';
import type { AppManifest } from './contract.js';

/** Capabilities a container gets by default: the same set containerd and the kubelet grant. */
export const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];

export interface OciSpecInput {
  app: AppManifest;
  hostname: string;
  /** Namespaces the container joins by path (the pod's) or makes (no path). */
  namespaces: Array<{ type: string; path?: string }>;
  /** Read-only bind mounts (the pod's /etc files). */
  binds: Array<{ source: string; destination: string }>;
  /** Namespaced sysctls of the pod. */
  sysctls?: Array<[string, string]>;
}

/**
 * The OCI runtime spec (config.json) an app runs under, wherever an OCI
 * runtime runs it: the namespaces stage1 on the node, the kvm stage1 inside
 * the pod's VM. One builder, so both apply the same defaults.
 */
export function ociSpec(input: OciSpecInput): Record<string, unknown> {
  const { app } = input;
  const caps = DEFAULT_CAPS;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: app.user.uid, gid: app.user.gid },
      args: app.argv,
      env: envStrings(app),
      cwd: app.workingDir,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: false,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      ...input.binds.map((b) => ({ destination: b.destination, type: 'bind', source: b.source, options: ['rbind', 'ro'] })),
    ],
    linux: {
      namespaces: input.namespaces,
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
