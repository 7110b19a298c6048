import * as fs from 'node:fs';
import * as path from 'node:path';
import { Variant } from 'dbus-next';
import { prop, type UnitProperty } from '../common/systemd.js';
import { appSecurity } from './app-security.js';
import { unitNames, type RuntimePodManifest } from './contract.js';

/**
 * The devices a container may use (containerd's default list): the pseudo
 * devices every program expects, the tty and pty devices, and /dev/net/tun.
 * Everything else — disks, loop-control, consoles, /dev/mem — cannot be
 * opened, and cannot even be made: unlike containerd, which lets `mknod` make
 * any node and only refuses opening it, `mknod` of a device not listed fails.
 */
export interface DeviceRule { type: 'c' | 'b'; major: number; minor: number | '*'; access: 'rwm' }
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = [
  { type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { type: 'c', major: 5, minor: 1, access: 'rwm' }, // console
  { type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { type: 'c', major: 136, minor: '*', access: 'rwm' }, // pts/*
  { type: 'c', major: 10, minor: 200, access: 'rwm' }, // net/tun (useless without CAP_NET_ADMIN, as in containerd)
];

/** `linux.resources.devices` of the OCI spec: deny everything, then the list (privileged: everything). */
export function ociDeviceCgroup(privileged: boolean): Array<Record<string, unknown>> {
  if (privileged) return [{ allow: true, access: 'rwm' }];
  return [{ allow: false, access: 'rwm' }, ...DEFAULT_DEVICE_RULES.map((r) => ({ allow: true, type: r.type, major: r.major, ...(r.minor === '*' ? {} : { minor: r.minor }), access: r.access }))];
}

/**
 * Whether a pod needs devices beyond the allow-list: a privileged app (every
 * device of the node) or the kvm stage1 (qemu opens /dev/kvm). Such a pod's
 * slice sits outside stevedore.slice, whose device filter no child can widen.
 */
export function needsHostDevices(manifest: Pick<RuntimePodManifest, 'stage1' | 'apps'>): boolean {
  return manifest.stage1 === 'kvm' || manifest.apps.some((a) => appSecurity(a).privileged);
}

/** The pod's slice: under stevedore.slice (the allow-list) unless it needs the node's devices. */
export function podSlice(manifest: Pick<RuntimePodManifest, 'uuid' | 'stage1' | 'apps'>): string {
  return unitNames.slice(manifest.uuid, needsHostDevices(manifest));
}

const allowListEntries = (): Array<[string, string]> =>
  DEFAULT_DEVICE_RULES.map((r): [string, string] => [r.minor === '*' ? 'char-pts' : `/dev/${r.type === 'c' ? 'char' : 'block'}/${r.major}:${r.minor}`, r.access]);

/**
 * The allow-list as properties of a unit or slice. Apps run inside their
 * systemd unit's cgroup (crun with --cgroup-manager=disabled, fly directly),
 * so the cgroup device filters of the unit and of the slices above it are
 * what enforce the rules. `/dev/char/M:N` names a device by number (systemd
 * needs no node for it); `char-pts` is the whole pts major.
 */
export function deviceAllowListProperties(): UnitProperty[] {
  return [prop.str('DevicePolicy', 'strict'), ['DeviceAllow', new Variant('a(ss)', allowListEntries())]];
}

/**
 * An app unit's own device rules. Under stevedore.slice it needs none: the
 * slice's filter already holds it to the allow-list, and a unit of its own
 * would cost systemd a BPF program per start. In a host-devices pod a
 * privileged app gets every device, any other app the allow-list.
 */
export function unitDeviceProperties(manifest: Pick<RuntimePodManifest, 'stage1' | 'apps'>, privileged: boolean): UnitProperty[] {
  if (!needsHostDevices(manifest)) return [];
  return privileged ? [prop.str('DevicePolicy', 'auto')] : deviceAllowListProperties();
}

export interface HostDevice { path: string; type: 'c' | 'b'; major: number; minor: number; fileMode: number; uid: number; gid: number }

/** Folders of /dev whose nodes are per-container (pts, shm, mqueue) or not devices of the node's hardware. */
const SKIP_IN_DEV = new Set(['pts', 'shm', 'mqueue', 'fd', '.udev', '.lxc', 'console']);

/** Every char and block device node under the node's /dev, for a privileged container (containerd's WithHostDevices). */
export function hostDevices(root = '/dev'): HostDevice[] {
  const out: HostDevice[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (depth === 0 && SKIP_IN_DEV.has(e.name)) continue;
      if (e.isDirectory()) {
        if (depth < 4) walk(full, depth + 1);
        continue;
      }
      if (!e.isCharacterDevice() && !e.isBlockDevice()) continue;
      const st = fs.lstatSync(full, { throwIfNoEntry: false });
      if (!st) continue;
      const rdev = st.rdev;
      // Linux's dev_t encoding (glibc's major()/minor()).
      const high = Math.floor(rdev / 2 ** 32);
      const major = ((rdev >>> 8) & 0xfff) | (high & ~0xfff);
      const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) | ((high & 0xfff) << 20);
      out.push({ path: full, type: e.isCharacterDevice() ? 'c' : 'b', major, minor, fileMode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
    }
  };
  walk(root, 0);
  return out;
}
