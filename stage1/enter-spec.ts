import { ALL_CAPS, capMask } from './app-security.js';

/**
 * The app process's restrictions as native/enter.c (the `stevedore-enter`
 * helper) reads them: NUL-terminated `key=value` records, taken from the very
 * config.json crun runs the app with, so a probe's process gets what the
 * app's process got. Written root-only beside config.json (it holds the
 * app's environment, Secret values included).
 *
 * The fly stage1 writes the same records from what it hands systemd
 * (enterSpecFromFields, fly.ts flyEnterSpec), plus `root=target`: its apps
 * are chrooted inside their mount namespace, and every fly exec enters
 * through the helper.
 *
 * The helper honours only what is listed here; a spec with anything else
 * that bears on the process (AppArmor or SELinux labels, rlimits, a umask,
 * a user namespace, seccomp flags or a profile crun compiles itself) has no
 * enter spec, and probes keep entering through `crun exec`.
 */
export const ENTER_SPEC_FILE = 'enter.spec';

interface OciProcess {
  user?: { uid?: number; gid?: number; additionalGids?: number[]; umask?: number };
  cwd?: string;
  env?: string[];
  capabilities?: Partial<Record<'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient', string[]>>;
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  selinuxLabel?: string;
  rlimits?: unknown[];
  oomScoreAdj?: number;
  terminal?: boolean;
}

/** Why the helper cannot enter an app with this spec, or undefined when it can. */
export function enterSpecRefusal(spec: Record<string, unknown>): string | undefined {
  const proc = spec.process as OciProcess | undefined;
  const linux = spec.linux as { namespaces?: Array<{ type: string }>; seccomp?: { flags?: string[]; listenerPath?: string } } | undefined;
  if (!proc?.user || proc.user.uid === undefined || proc.user.gid === undefined || !proc.cwd?.startsWith('/')) return 'no user or absolute cwd';
  if (proc.apparmorProfile || proc.selinuxLabel) return 'a security label';
  if (proc.rlimits?.length) return 'rlimits';
  if (proc.user.umask !== undefined) return 'a umask';
  if (linux?.namespaces?.some((n) => n.type === 'user')) return 'a user namespace';
  if (linux?.seccomp) {
    if (linux.seccomp.flags?.length || linux.seccomp.listenerPath) return 'seccomp flags or a notify listener';
    if (!(spec.annotations as Record<string, string> | undefined)?.['run.oci.seccomp_bpf_data']) return 'a seccomp profile not precompiled';
  }
  for (const set of Object.values(proc.capabilities ?? {})) {
    for (const cap of set ?? []) if (!(ALL_CAPS as readonly string[]).includes(cap)) return `an unknown capability ${cap}`;
  }
  for (const e of proc.env ?? []) if (e.includes('\0') || !e.includes('=')) return 'an environment entry the helper cannot carry';
  if (proc.cwd.includes('\0')) return 'a cwd the helper cannot carry';
  return undefined;
}

/** The enter spec's bytes, or undefined when the helper cannot enter this app (enterSpecRefusal). */
export function enterSpecText(spec: Record<string, unknown>): string | undefined {
  if (enterSpecRefusal(spec) !== undefined) return undefined;
  const proc = spec.process as OciProcess;
  const caps = proc.capabilities ?? {};
  const mask = (set: string[] | undefined) => capMask(set ?? []).toString(16);
  const seccomp = (spec.linux as { seccomp?: unknown } | undefined)?.seccomp
    ? (spec.annotations as Record<string, string>)['run.oci.seccomp_bpf_data']! : '';
  const records = [
    `uid=${proc.user!.uid}`, `gid=${proc.user!.gid}`,
    ...(proc.user!.additionalGids ?? []).map((g) => `group=${g}`),
    `cap.bounding=${mask(caps.bounding)}`, `cap.effective=${mask(caps.effective)}`, `cap.permitted=${mask(caps.permitted)}`,
    `cap.inheritable=${mask(caps.inheritable)}`, `cap.ambient=${mask(caps.ambient)}`,
    `nnp=${proc.noNewPrivileges ? 1 : 0}`,
    `seccomp=${seccomp}`,
    `cwd=${proc.cwd}`,
    ...(proc.env ?? []).map((e) => `env=${e}`),
  ];
  return records.map((r) => `${r}\0`).join('');
}

/** The restrictions of an app process as enter-spec fields (the fly stage1 gives them from what it hands systemd). */
export interface EnterSpecFields {
  uid: number;
  gid: number;
  groups: number[];
  caps: { bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint };
  noNewPrivileges: boolean;
  /** The BPF program (base64), '' for none. */
  seccomp: string;
  /** Enter the target process's root (chroot to /proc/PID/root) after joining its mount namespace. */
  rootOfTarget: boolean;
  /** Instead (`stevedore-enter --start`, fly's console holder): chroot to this node directory, the app's rootfs. */
  rootDir?: string;
  cwd: string;
  env: Array<[string, string]>;
}

/** The enter spec's bytes from fields, or undefined when a value cannot be carried (a NUL, an '=' in a name, a relative cwd). */
export function enterSpecFromFields(f: EnterSpecFields): string | undefined {
  if (!f.cwd.startsWith('/') || f.cwd.includes('\0')) return undefined;
  if (f.rootDir !== undefined && (f.rootOfTarget || !f.rootDir.startsWith('/') || f.rootDir === '/' || f.rootDir.includes('\0'))) return undefined;
  for (const [k, v] of f.env) if (!k || k.includes('=') || k.includes('\0') || v.includes('\0')) return undefined;
  const records = [
    `uid=${f.uid}`, `gid=${f.gid}`, ...f.groups.map((g) => `group=${g}`),
    `cap.bounding=${f.caps.bounding.toString(16)}`, `cap.effective=${f.caps.effective.toString(16)}`, `cap.permitted=${f.caps.permitted.toString(16)}`,
    `cap.inheritable=${f.caps.inheritable.toString(16)}`, `cap.ambient=${f.caps.ambient.toString(16)}`,
    `nnp=${f.noNewPrivileges ? 1 : 0}`,
    `seccomp=${f.seccomp}`,
    ...(f.rootOfTarget ? ['root=target'] : f.rootDir ? [`root=${f.rootDir}`] : []),
    `cwd=${f.cwd}`,
    ...f.env.map(([k, v]) => `env=${k}=${v}`),
  ];
  return records.map((r) => `${r}\0`).join('');
}
