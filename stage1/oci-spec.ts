import { envStrings } from './common.js';
import { appSecurity } from './app-security.js';
import type { AppManifest } from './contract.js';
import { ociDeviceCgroup, type HostDevice } from './devices.js';
import { runtimeDefaultSeccomp, type OciSeccomp } from './seccomp.js';

export { DEFAULT_CAPS } from './app-security.js';

/** Paths of /proc and /sys a container must not read (containerd's default masked paths). */
export const MASKED_PATHS = ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];
/** Paths of /proc a container may read but not write (containerd's default read-only paths). */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface OciSpecInput {
  app: AppManifest;
  hostname: string;
  /** Namespaces the container joins by path (the pod's) or makes (no path). */
  namespaces: Array<{ type: string; path?: string }>;
  /** Read-only bind mounts (the pod's /etc files). */
  binds: Array<{ source: string; destination: string; writable?: true }>;
  /** The app's volumes: bind mounts of node paths (resolved by the caller from AppManifest.mounts). */
  volumes?: Array<{ source: string; destination: string; readOnly: boolean }>;
  /** Namespaced sysctls of the pod. */
  sysctls?: Array<[string, string]>;
  /** The app's Localhost seccomp profile, read by the caller (readLocalhostSeccomp) where the profile lives. */
  localhostSeccomp?: OciSeccomp;
  /** A privileged app's view of the node's devices (hostDevices() where the app runs). */
  hostDevices?: HostDevice[];
}

/**
 * The OCI runtime spec (config.json) an app runs under, wherever an OCI
 * runtime runs it: the namespaces stage1 on the node, the kvm stage1 inside
 * the pod's VM. One builder, so both apply the same defaults: containerd's
 * RuntimeDefault (capabilities, seccomp, no_new_privs, masked and read-only
 * paths, the device list) narrowed or widened by the app's resolved
 * securityContext (`AppManifest.security`).
 */
export function ociSpec(input: OciSpecInput): Record<string, unknown> {
  const { app } = input;
  const sec = appSecurity(app);
  const caps = sec.capabilities;
  let seccomp: OciSeccomp | undefined;
  if (sec.seccomp.type === 'RuntimeDefault') seccomp = runtimeDefaultSeccomp(caps);
  else if (sec.seccomp.type === 'Localhost') {
    if (!input.localhostSeccomp) throw new Error(`ociSpec: app ${app.name} has a Localhost seccomp profile (${sec.seccomp.path}) but the caller passed none`);
    seccomp = input.localhostSeccomp;
  }
  // Mounts the container gets no device node, setuid binary or program from (containerd's options).
  const sealed = ['nosuid', 'noexec', 'nodev'];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: app.console?.tty === true,
      user: { uid: app.user.uid, gid: app.user.gid, ...(sec.supplementalGroups.length ? { additionalGids: sec.supplementalGroups } : {}) },
      args: app.argv,
      env: envStrings(app),
      cwd: app.workingDir,
      // No inheritable or ambient capabilities (containerd's choice; CVE-2022-24769): a non-root
      // app keeps only the bounding set, and loses the rest at its execve.
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: sec.noNewPrivileges,
    },
    root: { path: 'rootfs', readonly: sec.readOnlyRootFilesystem },
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: sealed },
      // /dev holds the container's device nodes, so it cannot be nodev; the device list decides what opens.
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: [...sealed, 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: sealed },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: [...sealed, sec.privileged ? 'rw' : 'ro'] },
      ...input.binds.map((b) => ({ destination: b.destination, type: 'bind', source: b.source, options: ['rbind', b.writable ? 'rw' : 'ro', ...sealed] })),
      // Volumes as the kubelet asks containerd for them: a recursive bind, private (mountPropagation None), ro when readOnly.
      ...(input.volumes ?? []).map((v) => ({ destination: v.destination, type: 'bind', source: v.source, options: ['rbind', 'rprivate', v.readOnly ? 'ro' : 'rw'] })),
    ],
    linux: {
      namespaces: input.namespaces,
      // Privileged: the node's view, as the kubelet's privileged gives.
      maskedPaths: sec.privileged ? [] : MASKED_PATHS,
      readonlyPaths: sec.privileged ? [] : READONLY_PATHS,
      resources: { devices: ociDeviceCgroup(sec.privileged) },
      ...(sec.privileged && input.hostDevices?.length ? { devices: input.hostDevices } : {}),
      ...(input.sysctls?.length ? { sysctl: Object.fromEntries(input.sysctls) } : {}),
      ...(seccomp ? { seccomp } : {}),
    },
  };
}
