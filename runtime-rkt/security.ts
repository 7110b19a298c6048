import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ContainerConfigError } from '../common/errors.js';
import { ALL_CAPS, DEFAULT_CAPS, capsOfMask } from '../stage1/app-security.js';
import type { AppSecurity, Stage1Name } from '../stage1/contract.js';
import type { ContainerSpec, Pod } from '../runtime-api/pod-spec.js';

export { appSecurity, defaultAppSecurity } from '../stage1/app-security.js';

/**
 * Resolve how one container runs (its uid/gid and its AppSecurity) from the
 * pod's and the container's securityContext and the image's User, as the
 * kubelet and containerd do between them: the container's fields override the
 * pod's, capabilities are containerd's default set plus add minus drop, and
 * the defaults are containerd's RuntimeDefault with the kubelet's
 * SeccompDefault — plus no_new_privs, which this node sets unless
 * allowPrivilegeEscalation is true (the kubelet sets it only when it is false).
 * Anything the node cannot honour is a ContainerConfigError naming the field.
 */

/** Namespaced sysctls the kubelet allows without --allowed-unsafe-sysctls. */
export const SAFE_SYSCTLS: readonly string[] = [
  'kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range',
  'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes',
];

export interface ImageUser {
  /** The image's config User as written ("", "1000", "1000:50", "app", "app:staff"). */
  spec: string | undefined;
  /** It resolved against the image's /etc/passwd and /etc/group (undefined: a name the image does not have). */
  resolved: { uid: number; gid: number } | undefined;
  /** The image's /etc/passwd and /etc/group (empty when absent). */
  passwd: string;
  group: string;
}

export interface SecurityInput {
  pod: Pod;
  /** The pod's identity in the kubelet's messages: name_namespace(uid). */
  podRef: string;
  container: ContainerSpec;
  index: number;
  stage1: Stage1Name;
  image: ImageUser;
  /** Capabilities this node can grant (its own bounding set). */
  nodeCaps: readonly string[];
  /** Where Localhost seccomp profiles live on this node (`<dataDir>/seccomp`). */
  seccompRoot: string;
}

export interface ResolvedSecurity {
  user: { uid: number; gid: number };
  security: AppSecurity;
}

const MAX_ID = 2 ** 31 - 1;
const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function fail(field: string, what: string, hint?: string): never {
  throw new ContainerConfigError(`${field}: ${what}`, hint);
}

function id(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > MAX_ID) fail(field, `must be an integer between 0 and ${MAX_ID}, got ${JSON.stringify(v)}`);
  return v as number;
}

function bool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') fail(field, `expected boolean, got ${kindOf(v)}`);
  return v;
}

function object(v: unknown, field: string): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (kindOf(v) !== 'object') fail(field, `expected object, got ${kindOf(v)}`);
  return v as Record<string, unknown>;
}

/** A capability name as containerd takes it: any case, with or without CAP_. */
export function normalizeCapability(name: unknown, field: string): string {
  if (typeof name !== 'string' || name === '') fail(field, `expected a capability name, got ${JSON.stringify(name)}`);
  const upper = name.toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!(ALL_CAPS as readonly string[]).includes(full)) fail(field, `unknown capability ${JSON.stringify(name)}`, 'use a Linux capability name such as NET_ADMIN or CAP_NET_ADMIN (see capabilities(7))');
  return full;
}

function capabilityList(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(field, `expected array, got ${kindOf(v)}`);
  return v.map((c, i) => normalizeCapability(c, `${field}[${i}]`));
}

/** Containerd's rule: add ALL, then drop ALL, then the named adds, then the named drops. */
function resolveCapabilities(capsField: Record<string, unknown> | undefined, field: string, nodeCaps: readonly string[]): string[] {
  const add = capabilityList(capsField?.add, `${field}.add`);
  const drop = capabilityList(capsField?.drop, `${field}.drop`);
  for (const key of Object.keys(capsField ?? {})) if (key !== 'add' && key !== 'drop') fail(`${field}.${key}`, 'unknown field');
  let caps = new Set<string>(DEFAULT_CAPS);
  if (add.includes('ALL')) caps = new Set(nodeCaps);
  if (drop.includes('ALL')) caps = new Set();
  add.forEach((cap, i) => {
    if (cap === 'ALL') return;
    if (!nodeCaps.includes(cap)) fail(`${field}.add[${i}]`, `this node cannot grant ${cap}: it is not in the node's own capability bounding set`, 'remove it, or run the pod on a node that has it');
    caps.add(cap);
  });
  for (const cap of drop) caps.delete(cap);
  return ALL_CAPS.filter((c) => caps.has(c));
}

function seccompOf(v: unknown, field: string): { type: string; localhostProfile?: string } | undefined {
  const o = object(v, field);
  if (!o) return undefined;
  for (const key of Object.keys(o)) if (key !== 'type' && key !== 'localhostProfile') fail(`${field}.${key}`, 'unknown field');
  if (!['RuntimeDefault', 'Unconfined', 'Localhost'].includes(o.type as string)) fail(`${field}.type`, `unsupported value ${JSON.stringify(o.type)}: supported values: "RuntimeDefault", "Unconfined", "Localhost"`);
  if (o.type === 'Localhost') {
    if (typeof o.localhostProfile !== 'string' || o.localhostProfile === '') fail(`${field}.localhostProfile`, 'Required value: must be set when seccomp type is Localhost');
  } else if (o.localhostProfile !== undefined) fail(`${field}.localhostProfile`, 'must only be set when seccomp type is Localhost');
  return o as { type: string; localhostProfile?: string };
}

/** The kubelet's name for a pod in its messages. */
export function podRefOf(pod: Pod, fallbackUid: string): string {
  return `${pod.metadata.name}_${pod.metadata.namespace ?? 'default'}(${pod.metadata.uid ?? fallbackUid})`;
}

/** The image's user as the kubelet sees it: a numeric uid, or a name it cannot check. */
function imageUserOf(spec: string | undefined): { uid: number } | { name: string } {
  const user = (spec ?? '').split(':')[0]!;
  if (user === '') return { uid: 0 };
  return /^\d+$/.test(user) ? { uid: Number(user) } : { name: user };
}

const rows = (text: string) => text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));

export function resolveSecurity(input: SecurityInput): ResolvedSecurity {
  const { pod, container, index } = input;
  const cField = `spec.containers[${index}].securityContext`;
  const pField = 'spec.securityContext';
  const csc = object(container.securityContext, cField) ?? {};
  const psc = object(pod.spec.securityContext, pField) ?? {};
  // Which securityContext fields are honoured at all is validatePod's (runtime-api/pod-fields.ts): this resolves their meaning.

  const privileged = bool(csc.privileged, `${cField}.privileged`) ?? false;
  const runAsUser = id(csc.runAsUser, `${cField}.runAsUser`) ?? id(psc.runAsUser, `${pField}.runAsUser`);
  const runAsGroup = id(csc.runAsGroup, `${cField}.runAsGroup`) ?? id(psc.runAsGroup, `${pField}.runAsGroup`);
  const runAsNonRoot = bool(csc.runAsNonRoot, `${cField}.runAsNonRoot`) ?? bool(psc.runAsNonRoot, `${pField}.runAsNonRoot`) ?? false;
  const readOnlyRootFilesystem = bool(csc.readOnlyRootFilesystem, `${cField}.readOnlyRootFilesystem`) ?? false;
  const allowPrivilegeEscalation = bool(csc.allowPrivilegeEscalation, `${cField}.allowPrivilegeEscalation`);

  // runAsNonRoot is stage0's check, for every stage1 (the kubelet's verifyRunAsNonRoot, same messages).
  const podQ = JSON.stringify(input.podRef);
  if (runAsNonRoot) {
    if (runAsUser !== undefined) {
      if (runAsUser === 0) throw new ContainerConfigError(`container's runAsUser breaks non-root policy (pod: ${podQ}, container: ${container.name})`, 'set runAsUser to a non-zero uid, or drop runAsNonRoot');
    } else {
      const imageUser = imageUserOf(input.image.spec);
      if ('uid' in imageUser && imageUser.uid === 0) throw new ContainerConfigError(`container has runAsNonRoot and image will run as root (pod: ${podQ}, container: ${container.name})`, 'set runAsUser to a non-zero uid, or use an image whose User is a non-zero uid');
      if ('name' in imageUser) throw new ContainerConfigError(`container has runAsNonRoot and image has non-numeric user (${imageUser.name}), cannot verify user is non-root (pod: ${podQ}, container: ${container.name})`, 'set runAsUser to a non-zero uid');
    }
  }

  // uid and gid: runAsUser replaces the image's user; its primary group then comes from the image's
  // passwd (gid 0 when the uid has no entry), as containerd's WithUserID does; runAsGroup wins over both.
  let uid: number, gid: number;
  if (runAsUser !== undefined) {
    uid = runAsUser;
    gid = Number(rows(input.image.passwd).find((r) => r[2] === String(uid))?.[3] ?? 0) || 0;
  } else {
    if (!input.image.resolved) throw new ContainerConfigError(`container "${container.name}": the image's user "${input.image.spec}" is not in its /etc/passwd or /etc/group`, 'fix the image\'s User, or set runAsUser (and runAsGroup)');
    ({ uid, gid } = input.image.resolved);
  }
  if (runAsGroup !== undefined) gid = runAsGroup;

  // Extra groups: the image's groups that list the user (containerd), the pod's supplementalGroups, fsGroup.
  const supplemental = psc.supplementalGroups;
  if (supplemental !== undefined && supplemental !== null && !Array.isArray(supplemental)) fail(`${pField}.supplementalGroups`, `expected array, got ${kindOf(supplemental)}`);
  const extra = ((supplemental ?? []) as unknown[]).map((g, i) => id(g, `${pField}.supplementalGroups[${i}]`)!);
  const fsGroup = id(psc.fsGroup, `${pField}.fsGroup`);
  const userName = rows(input.image.passwd).find((r) => r[2] === String(uid))?.[0];
  const imageGroups = userName ? rows(input.image.group).filter((r) => (r[3] ?? '').split(',').includes(userName)).map((r) => Number(r[2])).filter(Number.isInteger) : [];
  const groups = [...new Set([gid, ...imageGroups, ...extra, ...(fsGroup !== undefined ? [fsGroup] : [])])];
  // Nothing extra: leave the list empty (the process gets just its primary group).
  const supplementalGroups = groups.length > 1 ? groups : [];

  const capsField = object(csc.capabilities, `${cField}.capabilities`);
  const resolvedCaps = resolveCapabilities(capsField, `${cField}.capabilities`, input.nodeCaps);
  const capabilities = privileged ? ALL_CAPS.filter((c) => input.nodeCaps.includes(c)) : resolvedCaps;

  const seccompField = csc.seccompProfile !== undefined && csc.seccompProfile !== null ? `${cField}.seccompProfile` : `${pField}.seccompProfile`;
  const profile = seccompOf(csc.seccompProfile, `${cField}.seccompProfile`) ?? seccompOf(psc.seccompProfile, `${pField}.seccompProfile`);
  let seccomp: AppSecurity['seccomp'];
  if (privileged) seccomp = { type: 'Unconfined' }; // containerd: privileged containers are unconfined
  else if (!profile || profile.type === 'RuntimeDefault') seccomp = { type: 'RuntimeDefault' };
  else if (profile.type === 'Unconfined') seccomp = { type: 'Unconfined' };
  else {
    const rel = profile.localhostProfile!;
    if (path.isAbsolute(rel) || rel.split('/').includes('..')) fail(`${seccompField}.localhostProfile`, `${JSON.stringify(rel)} must be a path relative to the node's seccomp folder, without ".."`, `put the profile under ${input.seccompRoot} and name it relative to that folder`);
    if (input.stage1 === 'fly') fail(`${seccompField}`, 'Localhost profiles are not supported on the fly stage1 (systemd takes a list of syscall names, not an OCI profile)', 'use RuntimeDefault or Unconfined on fly, or run the pod with the namespaces stage1');
    seccomp = { type: 'Localhost', path: path.join(input.seccompRoot, rel) };
  }

  return {
    user: { uid, gid },
    security: {
      supplementalGroups,
      capabilities,
      noNewPrivileges: !privileged && allowPrivilegeEscalation !== true,
      readOnlyRootFilesystem,
      privileged,
      seccomp,
    },
  };
}

/**
 * The pod's sysctls, checked: only the kubelet's safe set, and only into
 * namespaces the pod owns (net.* not with hostNetwork, kernel.shm_* not with
 * hostIPC, none on fly, which shares every namespace of the node).
 */
export function resolveSysctls(pod: Pod, stage1: Stage1Name): Array<[string, string]> {
  const field = 'spec.securityContext.sysctls';
  const list = (pod.spec.securityContext as Record<string, unknown> | undefined)?.sysctls;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) fail(field, `expected array, got ${kindOf(list)}`);
  const out: Array<[string, string]> = [];
  list.forEach((s, i) => {
    const o = object(s, `${field}[${i}]`);
    if (!o || typeof o.name !== 'string') fail(`${field}[${i}].name`, 'Required value');
    if (typeof o.value !== 'string') fail(`${field}[${i}].value`, `expected string, got ${kindOf(o.value)}`);
    // The kubelet accepts slashes as separators too.
    const name = o.name.replace(/\//g, '.');
    if (!SAFE_SYSCTLS.includes(name)) throw new ContainerConfigError(`${field}[${i}]: forbidden sysctl: ${JSON.stringify(name)} not allowlisted`, `this node allows only the safe sysctls: ${SAFE_SYSCTLS.join(', ')}`);
    if (/[\n\0]/.test(o.value)) fail(`${field}[${i}].value`, 'must not contain newlines or NUL');
    if (stage1 === 'fly') fail(`${field}[${i}]`, `sysctl ${name} cannot be set on the fly stage1: it shares the node's namespaces, so it would change the node`, 'run the pod with the namespaces stage1');
    if (name.startsWith('net.') && pod.spec.hostNetwork) fail(`${field}[${i}]`, `sysctl ${name} cannot be set with hostNetwork: it would change the node's network namespace`);
    if (name.startsWith('kernel.shm') && pod.spec.hostIPC) fail(`${field}[${i}]`, `sysctl ${name} cannot be set with hostIPC: it would change the node's IPC namespace`);
    out.push([name, o.value]);
  });
  return out;
}

/** The capabilities this node's processes can hold (its own bounding set), from /proc/self/status. */
export function nodeCapabilities(): Promise<string[]> {
  // A process's bounding set only ever shrinks, and this one never drops any: read it once.
  nodeCapsOnce ??= fs.readFile('/proc/self/status', 'utf8').then((status) => {
    const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return hex ? capsOfMask(BigInt(`0x${hex}`)) : [...ALL_CAPS];
  }).catch((err: unknown) => {
    nodeCapsOnce = undefined;
    throw err;
  });
  return nodeCapsOnce;
}
let nodeCapsOnce: Promise<string[]> | undefined;

/** A Localhost profile must exist when the pod is prepared (containerd checks at container create). */
export async function checkLocalhostProfile(security: AppSecurity, field: string): Promise<void> {
  if (security.seccomp.type !== 'Localhost') return;
  const file = security.seccomp.path;
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new ContainerConfigError(`${field}: seccomp profile ${file} does not exist on this node`, `put the profile at ${file}, or use RuntimeDefault`);
}

/** Where Localhost seccomp profiles live under a data directory. */
export const seccompRootDir = (dataDir: string): string => path.join(dataDir, 'seccomp');
