import { parseAllDocuments } from 'yaml';
import { InvalidInput } from '../common/errors.js';
import { cpuMillis, memoryBytes } from '../common/quantity.js';
import { refusedFields, type TableId } from './pod-fields.js';

/**
 * The Kubernetes Pod this node runs. Every PodSpec, Container and
 * securityContext field is classified in runtime-rkt/pod-fields.ts (honoured,
 * refused, ignored by design; docs/pod-fields.md) and the node fails closed:
 * a field it does not implement, or does not know, is refused with its path,
 * in both modes. `stevedore pod run -f` reads manifests strictly (unknown
 * fields of the metadata and the top level are errors too, as
 * `kubectl --validate=strict` would say); the agent reads API objects
 * leniently there (the API server adds metadata the runtime has no use for).
 */
export interface EnvVar { name: string; value?: string }
export interface ContainerPort { name?: string; containerPort: number; hostPort?: number; hostIP?: string; protocol?: 'TCP' | 'UDP' | 'SCTP' }
export interface ResourceList { cpu?: string | number; memory?: string | number; [name: string]: string | number | undefined }
export interface ContainerSpec {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  workingDir?: string;
  ports?: ContainerPort[];
  resources?: { limits?: ResourceList; requests?: ResourceList };
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  securityContext?: ContainerSecurityContext;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
}
export interface Capabilities { add?: string[]; drop?: string[] }
export interface SeccompProfile { type: 'RuntimeDefault' | 'Unconfined' | 'Localhost'; localhostProfile?: string }
/** Container securityContext (the fields this node enforces; validatePod refuses the others). */
export interface ContainerSecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  capabilities?: Capabilities;
  privileged?: boolean;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  seccompProfile?: SeccompProfile;
}
export interface Sysctl { name: string; value: string }
/** Pod securityContext: defaults for every container, plus the pod-wide fields. */
export interface PodSecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  supplementalGroups?: number[];
  fsGroup?: number;
  sysctls?: Sysctl[];
  seccompProfile?: SeccompProfile;
}
export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';
export interface PodSpec {
  containers: ContainerSpec[];
  restartPolicy?: RestartPolicy;
  terminationGracePeriodSeconds?: number;
  hostname?: string;
  subdomain?: string;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  securityContext?: PodSecurityContext;
  nodeName?: string;
  runtimeClassName?: string;
  dnsPolicy?: 'ClusterFirst' | 'ClusterFirstWithHostNet' | 'Default' | 'None';
  dnsConfig?: { nameservers?: string[]; searches?: string[]; options?: Array<{ name: string; value?: string }> };
  hostAliases?: Array<{ ip: string; hostnames: string[] }>;
}
export interface PodMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface Pod { apiVersion?: string; kind?: string; metadata: PodMetadata; spec: PodSpec }

export const MAX_ANNOTATIONS_BYTES = 256 * 1024;
export const MAX_MANIFEST_BYTES = 1024 * 1024;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array';
interface Walker { strict: boolean; errors: string[] }

function kindOf(v: unknown): Kind | 'null' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v as Kind;
}

/** Check an object's keys: those in `known` are fine, others are errors in strict mode. */
function checkKeys(w: Walker, obj: Record<string, unknown>, path: string, known: readonly string[]): void {
  if (!w.strict) return;
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) w.errors.push(`${path}${path ? '.' : ''}${key}: unknown field "${key}"`);
  }
}

/** Classify an object's fields by its table (runtime-rkt/pod-fields.ts): unknown and refused ones are errors in every mode. */
function fieldsOf(w: Walker, obj: Record<string, unknown>, path: string, table: TableId): void {
  w.errors.push(...refusedFields(obj, path, table));
}

function expect(w: Walker, v: unknown, kind: Kind, path: string): boolean {
  if (v === undefined) return false;
  if (kindOf(v) !== kind) {
    w.errors.push(`${path}: expected ${kind}, got ${kindOf(v)}`);
    return false;
  }
  return true;
}

function stringMap(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  for (const [k, val] of Object.entries(v as object)) {
    if (typeof val !== 'string') w.errors.push(`${path}.${k}: expected string, got ${kindOf(val)}`);
  }
}

function stringArray(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'array', path)) return;
  (v as unknown[]).forEach((s, i) => { if (typeof s !== 'string') w.errors.push(`${path}[${i}]: expected string, got ${kindOf(s)}`); });
}

function oneOf(w: Walker, v: unknown, path: string, values: readonly string[]): void {
  if (v !== undefined && !values.includes(v as string)) w.errors.push(`${path}: unsupported value ${JSON.stringify(v)}: supported values: ${values.map((s) => `"${s}"`).join(', ')}`);
}

function dnsName(w: Walker, v: unknown, path: string, re: RegExp, max: number, required: boolean): void {
  if (v === undefined || v === '') {
    if (required) w.errors.push(`${path}: Required value`);
    return;
  }
  if (typeof v !== 'string' || v.length > max || !re.test(v)) {
    w.errors.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be lower case alphanumeric characters or '-'${re === DNS_SUBDOMAIN ? " or '.'" : ''}, start and end with an alphanumeric character, at most ${max} characters`);
  }
}

/** Resources a container may name: cpu and memory are enforced; ephemeral-storage requests are the scheduler's. */
function checkResources(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  const res = v as Record<string, unknown>;
  fieldsOf(w, res, path, 'resources');
  for (const section of ['limits', 'requests'] as const) {
    const list = res[section];
    if (!expect(w, list, 'object', `${path}.${section}`)) continue;
    for (const [name, q] of Object.entries(list as object)) {
      const p = `${path}.${section}.${name}`;
      if (typeof q !== 'string' && typeof q !== 'number') { w.errors.push(`${p}: expected a quantity, got ${kindOf(q)}`); continue; }
      try {
        if (name === 'cpu' && cpuMillis(q, p) <= 0) w.errors.push(`${p}: must be greater than zero`);
        else if (name === 'memory' && memoryBytes(q, p) < 4 * 2 ** 20 && section === 'limits') w.errors.push(`${p}: ${q} is below the 4Mi a container needs to start`);
        else if (name === 'ephemeral-storage' && section === 'requests') memoryBytes(q, p);
        else if (name !== 'cpu' && name !== 'memory') w.errors.push(`${p}: not supported by this node: ${unsupportedResource(name, section)}`);
      } catch (err) {
        w.errors.push((err as Error).message);
      }
    }
  }
}

function unsupportedResource(name: string, section: 'limits' | 'requests'): string {
  if (name === 'ephemeral-storage') return 'local storage limits are not enforced (the node does not evict on disk use yet)';
  if (name.startsWith('hugepages-')) return 'hugepages are not set up for pods';
  if (name.includes('/')) return `extended resources need a device plugin, and this node has none: the container would run without the ${name} it ${section === 'limits' ? 'is limited to' : 'asks for'}`;
  return `"${name}" is not a resource this node knows (it enforces cpu and memory)`;
}

const MAX_ID = 2147483647;

function id(w: Walker, v: unknown, path: string): void {
  if (v !== undefined && (!Number.isInteger(v) || (v as number) < 0 || (v as number) > MAX_ID)) w.errors.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be an integer between 0 and ${MAX_ID}, inclusive`);
}

function bool(w: Walker, v: unknown, path: string): void {
  if (v !== undefined) expect(w, v, 'boolean', path);
}

function checkSeccomp(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  const sp = v as Record<string, unknown>;
  fieldsOf(w, sp, path, 'seccompProfile');
  if (sp.type === undefined) w.errors.push(`${path}.type: Required value: RuntimeDefault, Unconfined or Localhost`);
  oneOf(w, sp.type, `${path}.type`, ['RuntimeDefault', 'Unconfined', 'Localhost']);
  if (sp.type === 'Localhost' && (typeof sp.localhostProfile !== 'string' || sp.localhostProfile === '')) w.errors.push(`${path}.localhostProfile: Required value: must be set when seccomp type is Localhost`);
  if (sp.type !== 'Localhost' && sp.localhostProfile !== undefined) w.errors.push(`${path}.localhostProfile: Invalid value: can only be set when seccomp type is Localhost`);
}

/** The fields a pod and a container securityContext share. */
function checkCommonSecurity(w: Walker, sc: Record<string, unknown>, path: string): void {
  id(w, sc.runAsUser, `${path}.runAsUser`);
  id(w, sc.runAsGroup, `${path}.runAsGroup`);
  bool(w, sc.runAsNonRoot, `${path}.runAsNonRoot`);
  if (sc.seccompProfile !== undefined) checkSeccomp(w, sc.seccompProfile, `${path}.seccompProfile`);
}

function checkContainerSecurity(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  const sc = v as Record<string, unknown>;
  fieldsOf(w, sc, path, 'securityContext');
  checkCommonSecurity(w, sc, path);
  for (const key of ['privileged', 'readOnlyRootFilesystem', 'allowPrivilegeEscalation']) bool(w, sc[key], `${path}.${key}`);
  if (expect(w, sc.capabilities, 'object', `${path}.capabilities`)) {
    const caps = sc.capabilities as Record<string, unknown>;
    fieldsOf(w, caps, `${path}.capabilities`, 'capabilities');
    stringArray(w, caps.add, `${path}.capabilities.add`);
    stringArray(w, caps.drop, `${path}.capabilities.drop`);
  }
  // The API server's own rules: no_new_privs cannot hold for a process that has every privilege.
  if (sc.allowPrivilegeEscalation === false && sc.privileged === true) w.errors.push(`${path}: Invalid value: cannot set allowPrivilegeEscalation to false and privileged to true`);
  const added = (sc.capabilities as { add?: unknown } | undefined)?.add;
  if (sc.allowPrivilegeEscalation === false && Array.isArray(added) && added.some((c) => c === 'SYS_ADMIN' || c === 'CAP_SYS_ADMIN')) w.errors.push(`${path}: Invalid value: cannot set allowPrivilegeEscalation to false and capabilities.Add CAP_SYS_ADMIN`);
}

function checkPodSecurity(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  const sc = v as Record<string, unknown>;
  fieldsOf(w, sc, path, 'podSecurityContext');
  checkCommonSecurity(w, sc, path);
  id(w, sc.fsGroup, `${path}.fsGroup`);
  if (expect(w, sc.supplementalGroups, 'array', `${path}.supplementalGroups`)) (sc.supplementalGroups as unknown[]).forEach((g, i) => id(w, g, `${path}.supplementalGroups[${i}]`));
  if (expect(w, sc.sysctls, 'array', `${path}.sysctls`)) {
    (sc.sysctls as unknown[]).forEach((s, i) => {
      const p = `${path}.sysctls[${i}]`;
      if (!expect(w, s, 'object', p)) return;
      const so = s as Record<string, unknown>;
      fieldsOf(w, so, p, 'sysctl');
      if (typeof so.name !== 'string' || so.name === '') w.errors.push(`${p}.name: Required value`);
      if (typeof so.value !== 'string') w.errors.push(`${p}.value: expected string, got ${kindOf(so.value)}`);
    });
  }
}

function checkContainer(w: Walker, c: unknown, path: string): void {
  if (!expect(w, c, 'object', path)) { if (c === undefined || c === null) w.errors.push(`${path}: expected object`); return; }
  const o = c as Record<string, unknown>;
  fieldsOf(w, o, path, 'container');
  dnsName(w, o.name, `${path}.name`, DNS_LABEL, 63, true);
  if (typeof o.image !== 'string' || o.image.trim() === '') w.errors.push(`${path}.image: Required value`);
  else if (/\s/.test(o.image)) w.errors.push(`${path}.image: Invalid value: ${JSON.stringify(o.image)}: must not contain whitespace`);
  stringArray(w, o.command, `${path}.command`);
  stringArray(w, o.args, `${path}.args`);
  if (o.workingDir !== undefined && (typeof o.workingDir !== 'string' || !o.workingDir.startsWith('/'))) w.errors.push(`${path}.workingDir: must be an absolute path`);
  oneOf(w, o.imagePullPolicy, `${path}.imagePullPolicy`, ['Always', 'IfNotPresent', 'Never']);
  if (expect(w, o.env, 'array', `${path}.env`)) {
    (o.env as unknown[]).forEach((e, i) => {
      const p = `${path}.env[${i}]`;
      if (!expect(w, e, 'object', p)) return;
      const ev = e as Record<string, unknown>;
      fieldsOf(w, ev, p, 'envVar');
      if (typeof ev.name !== 'string' || !ENV_NAME.test(ev.name)) w.errors.push(`${p}.name: Invalid value: ${JSON.stringify(ev.name)}: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit`);
      if (ev.value !== undefined && typeof ev.value !== 'string') w.errors.push(`${p}.value: expected string, got ${kindOf(ev.value)}`);
    });
  }
  if (expect(w, o.ports, 'array', `${path}.ports`)) {
    (o.ports as unknown[]).forEach((pt, i) => {
      const p = `${path}.ports[${i}]`;
      if (!expect(w, pt, 'object', p)) return;
      const po = pt as Record<string, unknown>;
      fieldsOf(w, po, p, 'containerPort');
      if (!Number.isInteger(po.containerPort) || (po.containerPort as number) < 1 || (po.containerPort as number) > 65535) w.errors.push(`${p}.containerPort: must be between 1 and 65535, inclusive`);
      if (po.hostPort !== undefined && (!Number.isInteger(po.hostPort) || (po.hostPort as number) < 0 || (po.hostPort as number) > 65535)) w.errors.push(`${p}.hostPort: must be between 0 and 65535, inclusive`);
      oneOf(w, po.protocol, `${p}.protocol`, ['TCP', 'UDP', 'SCTP']);
      if (po.name !== undefined && typeof po.name !== 'string') w.errors.push(`${p}.name: expected string, got ${kindOf(po.name)}`);
      if (po.hostIP !== undefined && typeof po.hostIP !== 'string') w.errors.push(`${p}.hostIP: expected string, got ${kindOf(po.hostIP)}`);
    });
  }
  if (o.resources !== undefined) checkResources(w, o.resources, `${path}.resources`);
  if (o.securityContext !== undefined) checkContainerSecurity(w, o.securityContext, `${path}.securityContext`);
}

/**
 * The beta AppArmor annotations the kubelet still honours (the API server
 * turns them into appArmorProfile): a profile this node cannot apply is
 * refused, as the field is.
 */
const APPARMOR_ANNOTATION = 'container.apparmor.security.beta.kubernetes.io/';
function checkAppArmorAnnotations(w: Walker, annotations: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(annotations)) {
    if (key.startsWith(APPARMOR_ANNOTATION) && value !== 'unconfined') {
      w.errors.push(`metadata.annotations[${key}]: not supported by this node: this node applies no AppArmor profiles (as the kubelet, it refuses what it cannot enforce); only "unconfined" is accepted`);
    }
  }
}

/** Validate a parsed Pod object; throws InvalidInput listing every problem found. */
export function validatePod(input: unknown, opts: { strict: boolean }): Pod {
  const w: Walker = { strict: opts.strict, errors: [] };
  if (kindOf(input) !== 'object') throw new InvalidInput(`pod manifest: expected a Pod object, got ${kindOf(input)}`, 'a pod manifest is a YAML or JSON object with metadata and spec');
  const pod = input as Record<string, unknown>;
  checkKeys(w, pod, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  if (pod.kind !== undefined && pod.kind !== 'Pod') w.errors.push(`kind: expected "Pod", got ${JSON.stringify(pod.kind)}`);
  if (pod.apiVersion !== undefined && pod.apiVersion !== 'v1') w.errors.push(`apiVersion: expected "v1", got ${JSON.stringify(pod.apiVersion)}`);
  if (!expect(w, pod.metadata, 'object', 'metadata')) w.errors.push('metadata: Required value');
  else {
    const md = pod.metadata as Record<string, unknown>;
    checkKeys(w, md, 'metadata', ['name', 'namespace', 'uid', 'labels', 'annotations', 'generateName', 'resourceVersion', 'creationTimestamp']);
    dnsName(w, md.name, 'metadata.name', DNS_SUBDOMAIN, 253, true);
    dnsName(w, md.namespace, 'metadata.namespace', DNS_LABEL, 63, false);
    if (md.uid !== undefined && typeof md.uid !== 'string') w.errors.push('metadata.uid: expected string');
    if (md.labels !== undefined) stringMap(w, md.labels, 'metadata.labels');
    if (md.annotations !== undefined) {
      stringMap(w, md.annotations, 'metadata.annotations');
      const size = Object.entries(md.annotations as object).reduce((n, [k, v]) => n + k.length + String(v).length, 0);
      if (size > MAX_ANNOTATIONS_BYTES) w.errors.push(`metadata.annotations: Too long: must have at most ${MAX_ANNOTATIONS_BYTES} bytes`);
      checkAppArmorAnnotations(w, md.annotations as Record<string, unknown>);
    }
  }
  if (!expect(w, pod.spec, 'object', 'spec')) w.errors.push('spec: Required value');
  else {
    const spec = pod.spec as Record<string, unknown>;
    fieldsOf(w, spec, 'spec', 'podSpec');
    if (!Array.isArray(spec.containers) || spec.containers.length === 0) w.errors.push('spec.containers: Required value: a pod needs at least one container');
    else {
      spec.containers.forEach((c, i) => checkContainer(w, c, `spec.containers[${i}]`));
      const names = spec.containers.map((c) => (c as { name?: unknown })?.name);
      names.forEach((n, i) => { if (names.indexOf(n) !== i) w.errors.push(`spec.containers[${i}].name: Duplicate value: ${JSON.stringify(n)}`); });
    }
    oneOf(w, spec.restartPolicy, 'spec.restartPolicy', ['Always', 'OnFailure', 'Never']);
    if (spec.terminationGracePeriodSeconds !== undefined && (!Number.isInteger(spec.terminationGracePeriodSeconds) || (spec.terminationGracePeriodSeconds as number) < 0)) w.errors.push('spec.terminationGracePeriodSeconds: must be a non-negative integer');
    dnsName(w, spec.hostname, 'spec.hostname', DNS_LABEL, 63, false);
    dnsName(w, spec.subdomain, 'spec.subdomain', DNS_LABEL, 63, false);
    for (const key of ['hostNetwork', 'hostPID', 'hostIPC']) bool(w, spec[key], `spec.${key}`);
    if (spec.nodeName !== undefined && typeof spec.nodeName !== 'string') w.errors.push('spec.nodeName: expected string');
    if (spec.runtimeClassName !== undefined) dnsName(w, spec.runtimeClassName, 'spec.runtimeClassName', DNS_SUBDOMAIN, 253, false);
    if (spec.securityContext !== undefined) checkPodSecurity(w, spec.securityContext, 'spec.securityContext');
    if (expect(w, spec.os, 'object', 'spec.os')) {
      const os = spec.os as Record<string, unknown>;
      fieldsOf(w, os, 'spec.os', 'podOS');
      if (os.name !== 'linux') w.errors.push(`spec.os.name: not supported by this node: ${JSON.stringify(os.name)}: this node runs linux pods only`);
    }
    if (expect(w, spec.imagePullSecrets, 'array', 'spec.imagePullSecrets')) {
      (spec.imagePullSecrets as unknown[]).forEach((r, i) => {
        const p = `spec.imagePullSecrets[${i}]`;
        if (!expect(w, r, 'object', p)) return;
        fieldsOf(w, r as Record<string, unknown>, p, 'localObjectReference');
        if (typeof (r as { name?: unknown }).name !== 'string') w.errors.push(`${p}.name: Required value`);
      });
    }
    oneOf(w, spec.dnsPolicy, 'spec.dnsPolicy', ['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None']);
    if (expect(w, spec.dnsConfig, 'object', 'spec.dnsConfig')) {
      const dc = spec.dnsConfig as Record<string, unknown>;
      fieldsOf(w, dc, 'spec.dnsConfig', 'dnsConfig');
      stringArray(w, dc.nameservers, 'spec.dnsConfig.nameservers');
      stringArray(w, dc.searches, 'spec.dnsConfig.searches');
      if (expect(w, dc.options, 'array', 'spec.dnsConfig.options')) {
        (dc.options as unknown[]).forEach((o, i) => {
          const p = `spec.dnsConfig.options[${i}]`;
          if (!expect(w, o, 'object', p)) return;
          fieldsOf(w, o as Record<string, unknown>, p, 'dnsConfigOption');
          if (typeof (o as { name?: unknown }).name !== 'string') w.errors.push(`${p}.name: Required value`);
        });
      }
    }
    if (expect(w, spec.hostAliases, 'array', 'spec.hostAliases')) {
      (spec.hostAliases as unknown[]).forEach((a, i) => {
        if (!expect(w, a, 'object', `spec.hostAliases[${i}]`)) return;
        fieldsOf(w, a as Record<string, unknown>, `spec.hostAliases[${i}]`, 'hostAlias');
        if (typeof (a as { ip?: unknown }).ip !== 'string') w.errors.push(`spec.hostAliases[${i}].ip: Required value`);
        stringArray(w, (a as { hostnames?: unknown }).hostnames, `spec.hostAliases[${i}].hostnames`);
      });
    }
  }
  if (w.errors.length) {
    throw new InvalidInput(`invalid pod manifest:\n  ${w.errors.join('\n  ')}`, 'fix the fields named above; docs/pod-fields.md lists what this node honours, refuses and ignores');
  }
  return input as Pod;
}

/** Parse YAML or JSON text holding exactly one Pod. */
export function parsePodManifest(text: string, opts: { strict: boolean; source?: string } = { strict: true }): Pod {
  const where = opts.source ? ` in ${opts.source}` : '';
  if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES) throw new InvalidInput(`pod manifest${where} is larger than ${MAX_MANIFEST_BYTES} bytes`);
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  if (!Array.isArray(docs)) throw new InvalidInput(`pod manifest${where} is empty`);
  const nonEmpty = docs.filter((d) => d.contents !== null);
  if (nonEmpty.length !== 1) throw new InvalidInput(`pod manifest${where} must hold exactly one document, found ${nonEmpty.length}`);
  const doc = nonEmpty[0]!;
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new InvalidInput(`pod manifest${where} is not valid YAML: ${e.message.split('\n')[0]}`);
  }
  return validatePod(doc.toJS({ maxAliasCount: 100 }), opts);
}

export function restartPolicyOf(pod: Pod): RestartPolicy {
  return pod.spec.restartPolicy ?? 'Always';
}
