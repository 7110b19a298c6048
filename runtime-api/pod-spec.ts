import { parseAllDocuments } from 'yaml';
import { InvalidInput } from '../common/errors.js';
import { cpuMillis, memoryBytes, parseQuantity } from '../common/quantity.js';
import { POD_FIELD_TABLES, refusedFields, type TableId } from './pod-fields.js';
import { checkContainerExtras } from './container-checks.js';

/**
 * The Kubernetes Pod this node runs. Every PodSpec, Container and
 * securityContext field is classified in runtime-api/pod-fields.ts (honoured,
 * refused, ignored by design; docs/pod-fields.md) and the node fails closed:
 * a field it does not implement, or does not know, is refused with its path,
 * in both modes. `stevedore pod run -f` reads manifests strictly (unknown
 * fields of the metadata and the top level are errors too, as
 * `kubectl --validate=strict` would say); the agent reads API objects
 * leniently there (the API server adds metadata the runtime has no use for).
 */
export interface ObjectFieldSelector { fieldPath: string; apiVersion?: string }
export interface ResourceFieldSelector { resource: string; containerName?: string; divisor?: string | number }
export interface KeySelector { name: string; key: string; optional?: boolean }
export interface EnvVarSource {
  fieldRef?: ObjectFieldSelector;
  resourceFieldRef?: ResourceFieldSelector;
  configMapKeyRef?: KeySelector;
  secretKeyRef?: KeySelector;
}
/**
 * `value` is expanded (`$(VAR)`, kubelet rules) by the runtime; `valueFrom`
 * reaching the runtime may only be `fieldRef` status.podIP/status.podIPs,
 * which the runtime fills once the pod network is up. The agent resolves every
 * other source (ConfigMaps, Secrets, the rest of the downward API, resources)
 * into `value`s with `$` escaped (agent/env.ts), and flattens envFrom.
 */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: EnvVarSource;
  /**
   * Set by the agent on a value it read from a Secret: the runtime keeps it
   * (and whatever `$(VAR)` expands it into) out of pod.json, which the
   * api-service serves (runtime-rkt/README.md, *Env*). Not a Kubernetes field.
   */
  fromSecret?: boolean;
}
export interface EnvFromSource { prefix?: string; configMapRef?: { name: string; optional?: boolean }; secretRef?: { name: string; optional?: boolean } }
export interface ContainerPort { name?: string; containerPort: number; hostPort?: number; hostIP?: string; protocol?: 'TCP' | 'UDP' | 'SCTP' }
export interface ResourceList { cpu?: string | number; memory?: string | number; [name: string]: string | number | undefined }
export interface ContainerSpec {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: EnvFromSource[];
  workingDir?: string;
  ports?: ContainerPort[];
  resources?: { limits?: ResourceList; requests?: ResourceList };
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  securityContext?: ContainerSecurityContext;
  terminationMessagePath?: string;
  terminationMessagePolicy?: 'File' | 'FallbackToLogsOnError';
  /** Init containers only: Always makes it a sidecar (Kubernetes 1.29+). */
  restartPolicy?: 'Always';
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: Lifecycle;
  volumeMounts?: VolumeMount[];
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
}
export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
  subPathExpr?: string;
  mountPropagation?: 'None';
}
export type HostPathType = '' | 'DirectoryOrCreate' | 'Directory' | 'FileOrCreate' | 'File' | 'Socket' | 'CharDevice' | 'BlockDevice';
export const HOST_PATH_TYPES: readonly HostPathType[] = ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'];
/**
 * A volume of the pod. The runtime itself mounts emptyDir and hostPath; the
 * agent turns every other source it implements (configMap, secret,
 * downwardAPI, projected, persistentVolumeClaim) into a hostPath of a
 * directory it prepared before it hands the pod over (runtime-rkt/volumes.ts
 * refuses any other source that reaches it).
 */
export interface Volume {
  name: string;
  emptyDir?: { medium?: '' | 'Memory'; sizeLimit?: string | number };
  hostPath?: { path: string; type?: HostPathType };
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
  [source: string]: unknown;
}
/** Probes and lifecycle hooks (run by the agent: agent/prober.ts); shapes checked in container-checks.ts. */
export interface ProbeHandler {
  exec?: { command: string[] };
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: 'HTTP' | 'HTTPS'; httpHeaders?: Array<{ name: string; value: string }> };
  tcpSocket?: { port: number | string; host?: string };
  grpc?: { port: number; service?: string };
}
export interface Probe extends ProbeHandler {
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
  terminationGracePeriodSeconds?: number;
}
export interface LifecycleHandler {
  exec?: { command: string[] };
  httpGet?: ProbeHandler['httpGet'];
  sleep?: { seconds: number };
}
export interface Lifecycle { postStart?: LifecycleHandler; preStop?: LifecycleHandler }
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
  fsGroupChangePolicy?: 'Always' | 'OnRootMismatch';
  sysctls?: Sysctl[];
  seccompProfile?: SeccompProfile;
}
export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';
export interface PodSpec {
  containers: ContainerSpec[];
  /** Run in order, each to completion (or, restartPolicy Always, started and left running) before the containers. */
  initContainers?: ContainerSpec[];
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
  volumes?: Volume[];
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
export const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array';
export interface Walker { strict: boolean; errors: string[] }

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

/** Classify an object's fields by its table (runtime-api/pod-fields.ts): unknown and refused ones are errors in every mode. */
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
  oneOf(w, sc.fsGroupChangePolicy, `${path}.fsGroupChangePolicy`, ['Always', 'OnRootMismatch']);
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

function checkContainer(w: Walker, c: unknown, path: string, volumeNames: ReadonlySet<string>): void {
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
      if (ev.valueFrom !== undefined) checkEnvVarSource(w, ev.valueFrom, `${p}.valueFrom`, typeof ev.value === 'string' && ev.value !== '');
    });
  }
  if (expect(w, o.envFrom, 'array', `${path}.envFrom`)) {
    (o.envFrom as unknown[]).forEach((e, i) => checkEnvFromSource(w, e, `${path}.envFrom[${i}]`));
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
  if (expect(w, o.volumeMounts, 'array', `${path}.volumeMounts`)) checkVolumeMounts(w, o.volumeMounts as unknown[], `${path}.volumeMounts`, volumeNames);
  w.errors.push(...checkContainerExtras(o, path, path.startsWith('spec.initContainers')));
}

/**
 * A path that stays inside the directory it is relative to (the API
 * server's validateLocalDescendingPath): subPath, and subPathExpr once
 * expanded. `..` anywhere is refused outright, as CVE-2017-1002101 taught.
 */
export function localDescendingPathProblem(p: string): string | undefined {
  if (p.startsWith('/')) return 'must be a relative path';
  if (p.split('/').includes('..')) return "must not contain '..'";
  return undefined;
}

function checkVolumeMounts(w: Walker, mounts: unknown[], path: string, volumeNames: ReadonlySet<string>): void {
  const mountPaths = new Set<string>();
  mounts.forEach((m, i) => {
    const p = `${path}[${i}]`;
    if (!expect(w, m, 'object', p)) return;
    const vm = m as Record<string, unknown>;
    fieldsOf(w, vm, p, 'volumeMount');
    if (typeof vm.name !== 'string' || vm.name === '') w.errors.push(`${p}.name: Required value`);
    else if (!volumeNames.has(vm.name)) w.errors.push(`${p}.name: Not found: ${JSON.stringify(vm.name)}: no volume of the pod has that name`);
    if (typeof vm.mountPath !== 'string' || vm.mountPath === '') w.errors.push(`${p}.mountPath: Required value`);
    else if (!vm.mountPath.startsWith('/')) w.errors.push(`${p}.mountPath: Invalid value: ${JSON.stringify(vm.mountPath)}: must be an absolute path`);
    else if (vm.mountPath.includes(':')) w.errors.push(`${p}.mountPath: Invalid value: ${JSON.stringify(vm.mountPath)}: must not contain ':'`);
    else {
      const normal = vm.mountPath.replace(/\/+$/, '') || '/';
      if (mountPaths.has(normal)) w.errors.push(`${p}.mountPath: Invalid value: ${JSON.stringify(vm.mountPath)}: must be unique`);
      mountPaths.add(normal);
    }
    bool(w, vm.readOnly, `${p}.readOnly`);
    for (const key of ['subPath', 'subPathExpr'] as const) {
      if (vm[key] === undefined || vm[key] === '') continue;
      if (typeof vm[key] !== 'string') { w.errors.push(`${p}.${key}: expected string, got ${kindOf(vm[key])}`); continue; }
      const problem = localDescendingPathProblem(vm[key] as string);
      if (problem) w.errors.push(`${p}.${key}: Invalid value: ${JSON.stringify(vm[key])}: ${problem}`);
    }
    if (vm.subPath && vm.subPathExpr) w.errors.push(`${p}.subPathExpr: Invalid value: ${JSON.stringify(vm.subPathExpr)}: subPathExpr and subPath are mutually exclusive`);
    if (vm.mountPropagation !== undefined && vm.mountPropagation !== 'None') {
      const known = ['HostToContainer', 'Bidirectional'].includes(vm.mountPropagation as string);
      w.errors.push(known
        ? `${p}.mountPropagation: not supported by this node: ${vm.mountPropagation} propagation is not implemented (mounts are private to the container); only "None" is accepted`
        : `${p}.mountPropagation: unsupported value ${JSON.stringify(vm.mountPropagation)}: supported values: "None", "HostToContainer", "Bidirectional"`);
    }
  });
}

const VOLUME_SOURCES = Object.keys(POD_FIELD_TABLES.volume.fields).filter((k) => k !== 'name');

function checkVolumes(w: Walker, volumes: unknown[]): Set<string> {
  const names = new Set<string>();
  volumes.forEach((v, i) => {
    const p = `spec.volumes[${i}]`;
    if (!expect(w, v, 'object', p)) return;
    const vol = v as Record<string, unknown>;
    fieldsOf(w, vol, p, 'volume');
    if (typeof vol.name !== 'string' || vol.name === '') w.errors.push(`${p}.name: Required value`);
    else {
      dnsName(w, vol.name, `${p}.name`, DNS_LABEL, 63, true);
      if (names.has(vol.name)) w.errors.push(`${p}.name: Duplicate value: ${JSON.stringify(vol.name)}`);
      names.add(vol.name);
    }
    const sources = VOLUME_SOURCES.filter((k) => vol[k] !== undefined && vol[k] !== null);
    if (sources.length === 0) w.errors.push(`${p}: Required value: must specify a volume type`);
    if (sources.length > 1) w.errors.push(`${p}: Forbidden: may not specify more than 1 volume type (found ${sources.join(', ')})`);
    if (vol.emptyDir !== undefined && expect(w, vol.emptyDir, 'object', `${p}.emptyDir`)) {
      const ed = vol.emptyDir as Record<string, unknown>;
      fieldsOf(w, ed, `${p}.emptyDir`, 'emptyDirVolumeSource');
      if (ed.medium !== undefined && ed.medium !== '' && ed.medium !== 'Memory') {
        w.errors.push(String(ed.medium).startsWith('HugePages')
          ? `${p}.emptyDir.medium: not supported by this node: hugepages are not set up for pods; only "" (disk) and "Memory" are accepted`
          : `${p}.emptyDir.medium: unsupported value ${JSON.stringify(ed.medium)}: supported values: "", "Memory"`);
      }
      if (ed.sizeLimit !== undefined) {
        try {
          const bytes = memoryBytes(ed.sizeLimit as string | number, `${p}.emptyDir.sizeLimit`);
          if (ed.medium !== 'Memory') w.errors.push(`${p}.emptyDir.sizeLimit: not supported by this node: a disk emptyDir's size is not enforced (the node does not evict on disk use); use medium: Memory for a bounded volume, or drop sizeLimit`);
          else if (bytes <= 0) w.errors.push(`${p}.emptyDir.sizeLimit: Invalid value: ${JSON.stringify(ed.sizeLimit)}: must be greater than zero`);
        } catch (err) {
          w.errors.push((err as Error).message);
        }
      }
    }
    if (vol.hostPath !== undefined && expect(w, vol.hostPath, 'object', `${p}.hostPath`)) {
      const hp = vol.hostPath as Record<string, unknown>;
      fieldsOf(w, hp, `${p}.hostPath`, 'hostPathVolumeSource');
      if (typeof hp.path !== 'string' || hp.path === '') w.errors.push(`${p}.hostPath.path: Required value`);
      else if (!hp.path.startsWith('/')) w.errors.push(`${p}.hostPath.path: Invalid value: ${JSON.stringify(hp.path)}: must be an absolute path`);
      else if (hp.path.split('/').includes('..')) w.errors.push(`${p}.hostPath.path: Invalid value: ${JSON.stringify(hp.path)}: must not contain '..'`);
      if (hp.type !== undefined && !(HOST_PATH_TYPES as readonly unknown[]).includes(hp.type)) w.errors.push(`${p}.hostPath.type: unsupported value ${JSON.stringify(hp.type)}: supported values: ${HOST_PATH_TYPES.map((t) => `"${t}"`).join(', ')}`);
    }
    if (vol.flexVolume !== undefined && expect(w, vol.flexVolume, 'object', `${p}.flexVolume`)) {
      const fv = vol.flexVolume as Record<string, unknown>;
      fieldsOf(w, fv, `${p}.flexVolume`, 'flexVolumeSource');
      if (typeof fv.driver !== 'string' || !/^[A-Za-z0-9][-A-Za-z0-9_.]*\/[A-Za-z0-9][-A-Za-z0-9_.]*$/.test(fv.driver)) w.errors.push(`${p}.flexVolume.driver: Invalid value: ${JSON.stringify(fv.driver)}: must be vendor/driver`);
      if (fv.fsType !== undefined && typeof fv.fsType !== 'string') w.errors.push(`${p}.flexVolume.fsType: expected string, got ${kindOf(fv.fsType)}`);
      if (fv.options !== undefined) stringMap(w, fv.options, `${p}.flexVolume.options`);
      bool(w, fv.readOnly, `${p}.flexVolume.readOnly`);
      if (expect(w, fv.secretRef, 'object', `${p}.flexVolume.secretRef`)) {
        fieldsOf(w, fv.secretRef as Record<string, unknown>, `${p}.flexVolume.secretRef`, 'localObjectReference');
        if (typeof (fv.secretRef as { name?: unknown }).name !== 'string') w.errors.push(`${p}.flexVolume.secretRef.name: Required value`);
      }
    }
    if (vol.persistentVolumeClaim !== undefined && expect(w, vol.persistentVolumeClaim, 'object', `${p}.persistentVolumeClaim`)) {
      const pvc = vol.persistentVolumeClaim as Record<string, unknown>;
      fieldsOf(w, pvc, `${p}.persistentVolumeClaim`, 'pvcVolumeSource');
      if (typeof pvc.claimName !== 'string' || pvc.claimName === '') w.errors.push(`${p}.persistentVolumeClaim.claimName: Required value`);
      bool(w, pvc.readOnly, `${p}.persistentVolumeClaim.readOnly`);
    }
    checkAgentVolume(w, vol, p);
  });
  return names;
}

/** A file mode of a volume (defaultMode, items[].mode): 0–0777, as the API server allows. */
function fileMode(w: Walker, v: unknown, path: string): void {
  if (v !== undefined && (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0o777)) w.errors.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a number between 0 and 0777 (octal), both inclusive`);
}

/** A file path inside a volume (items[].path): relative, no `..` element, not starting with `..` (the kubelet's AtomicWriter rules). */
function itemPath(w: Walker, v: unknown, path: string): void {
  if (typeof v !== 'string' || v === '') { w.errors.push(`${path}: Required value`); return; }
  const problem = localDescendingPathProblem(v) ?? (v.startsWith('..') ? "must not start with '..'" : undefined);
  if (problem) w.errors.push(`${path}: Invalid value: ${JSON.stringify(v)}: ${problem}`);
}

function checkKeyToPaths(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'array', path)) return;
  (v as unknown[]).forEach((item, i) => {
    const p = `${path}[${i}]`;
    if (!expect(w, item, 'object', p)) return;
    const kp = item as Record<string, unknown>;
    fieldsOf(w, kp, p, 'keyToPath');
    if (typeof kp.key !== 'string' || kp.key === '') w.errors.push(`${p}.key: Required value`);
    itemPath(w, kp.path, `${p}.path`);
    fileMode(w, kp.mode, `${p}.mode`);
  });
}

/** The downward API fields a volume may hold (the API server's list: no spec or status fields). */
const volumeFieldPath = (p: string) => ['metadata.name', 'metadata.namespace', 'metadata.uid', 'metadata.labels', 'metadata.annotations'].includes(p) || SUBSCRIPTED_FIELD_PATH.test(p);

function checkDownwardItems(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'array', path)) return;
  (v as unknown[]).forEach((item, i) => {
    const p = `${path}[${i}]`;
    if (!expect(w, item, 'object', p)) return;
    const f = item as Record<string, unknown>;
    fieldsOf(w, f, p, 'downwardAPIVolumeFile');
    itemPath(w, f.path, `${p}.path`);
    fileMode(w, f.mode, `${p}.mode`);
    const set = ['fieldRef', 'resourceFieldRef'].filter((k) => f[k] !== undefined && f[k] !== null);
    if (set.length !== 1) w.errors.push(`${p}: Invalid value: must specify one of: \`fieldRef\` or \`resourceFieldRef\``);
    if (f.fieldRef !== undefined) checkFieldRef(w, f.fieldRef, `${p}.fieldRef`, volumeFieldPath);
    if (f.resourceFieldRef !== undefined) checkResourceFieldRef(w, f.resourceFieldRef, `${p}.resourceFieldRef`, true);
  });
}

/** configMap, secret, downwardAPI and projected volumes (the agent writes them; agent/volume-sources.ts). */
function checkAgentVolume(w: Walker, vol: Record<string, unknown>, p: string): void {
  if (vol.configMap !== undefined && expect(w, vol.configMap, 'object', `${p}.configMap`)) {
    const cm = vol.configMap as Record<string, unknown>;
    fieldsOf(w, cm, `${p}.configMap`, 'configMapVolumeSource');
    if (typeof cm.name !== 'string' || cm.name === '') w.errors.push(`${p}.configMap.name: Required value`);
    fileMode(w, cm.defaultMode, `${p}.configMap.defaultMode`);
    checkKeyToPaths(w, cm.items, `${p}.configMap.items`);
    bool(w, cm.optional, `${p}.configMap.optional`);
  }
  if (vol.secret !== undefined && expect(w, vol.secret, 'object', `${p}.secret`)) {
    const sec = vol.secret as Record<string, unknown>;
    fieldsOf(w, sec, `${p}.secret`, 'secretVolumeSource');
    if (typeof sec.secretName !== 'string' || sec.secretName === '') w.errors.push(`${p}.secret.secretName: Required value`);
    fileMode(w, sec.defaultMode, `${p}.secret.defaultMode`);
    checkKeyToPaths(w, sec.items, `${p}.secret.items`);
    bool(w, sec.optional, `${p}.secret.optional`);
  }
  if (vol.downwardAPI !== undefined && expect(w, vol.downwardAPI, 'object', `${p}.downwardAPI`)) {
    const dw = vol.downwardAPI as Record<string, unknown>;
    fieldsOf(w, dw, `${p}.downwardAPI`, 'downwardAPIVolumeSource');
    fileMode(w, dw.defaultMode, `${p}.downwardAPI.defaultMode`);
    checkDownwardItems(w, dw.items, `${p}.downwardAPI.items`);
  }
  if (vol.projected !== undefined && expect(w, vol.projected, 'object', `${p}.projected`)) {
    const pr = vol.projected as Record<string, unknown>;
    fieldsOf(w, pr, `${p}.projected`, 'projectedVolumeSource');
    fileMode(w, pr.defaultMode, `${p}.projected.defaultMode`);
    if (expect(w, pr.sources, 'array', `${p}.projected.sources`)) {
      (pr.sources as unknown[]).forEach((src, i) => {
        const sp = `${p}.projected.sources[${i}]`;
        if (!expect(w, src, 'object', sp)) return;
        const so = src as Record<string, unknown>;
        fieldsOf(w, so, sp, 'volumeProjection');
        const set = ['configMap', 'secret', 'downwardAPI', 'serviceAccountToken', 'clusterTrustBundle'].filter((k) => so[k] !== undefined && so[k] !== null);
        if (set.length !== 1) w.errors.push(`${sp}: Invalid value: must specify exactly one of: \`configMap\`, \`secret\`, \`downwardAPI\`, \`serviceAccountToken\` or \`clusterTrustBundle\``);
        for (const [key, table] of [['configMap', 'configMapProjection'], ['secret', 'secretProjection']] as const) {
          if (so[key] === undefined || !expect(w, so[key], 'object', `${sp}.${key}`)) continue;
          const ref = so[key] as Record<string, unknown>;
          fieldsOf(w, ref, `${sp}.${key}`, table);
          if (typeof ref.name !== 'string' || ref.name === '') w.errors.push(`${sp}.${key}.name: Required value`);
          checkKeyToPaths(w, ref.items, `${sp}.${key}.items`);
          bool(w, ref.optional, `${sp}.${key}.optional`);
        }
        if (so.serviceAccountToken !== undefined && expect(w, so.serviceAccountToken, 'object', `${sp}.serviceAccountToken`)) {
          const tok = so.serviceAccountToken as Record<string, unknown>;
          fieldsOf(w, tok, `${sp}.serviceAccountToken`, 'serviceAccountTokenProjection');
          itemPath(w, tok.path, `${sp}.serviceAccountToken.path`);
          const exp = tok.expirationSeconds;
          if (exp !== undefined && (!Number.isInteger(exp) || (exp as number) < 600)) w.errors.push(`${sp}.serviceAccountToken.expirationSeconds: Invalid value: ${JSON.stringify(exp)}: may not specify a duration less than 10 minutes`);
          else if (exp !== undefined && (exp as number) > 2 ** 32) w.errors.push(`${sp}.serviceAccountToken.expirationSeconds: Invalid value: ${exp}: may not specify a duration larger than 2^32 seconds`);
          if (tok.audience !== undefined && typeof tok.audience !== 'string') w.errors.push(`${sp}.serviceAccountToken.audience: Invalid value: must be a string`);
        }
        if (so.downwardAPI !== undefined && expect(w, so.downwardAPI, 'object', `${sp}.downwardAPI`)) {
          fieldsOf(w, so.downwardAPI as Record<string, unknown>, `${sp}.downwardAPI`, 'downwardAPIProjection');
          checkDownwardItems(w, (so.downwardAPI as Record<string, unknown>).items, `${sp}.downwardAPI.items`);
        }
      });
    }
  }
}

/** The downward API fields a container's env may read (the API server's list). */
export const ENV_FIELD_PATHS = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs'];
/** `metadata.labels['k']`, `metadata.annotations['k']` (a subscript, as the API server allows them in env). */
export const SUBSCRIPTED_FIELD_PATH = /^metadata\.(labels|annotations)\['(.*)'\]$/;
export const RESOURCE_FIELD_RESOURCES = ['limits.cpu', 'limits.memory', 'limits.ephemeral-storage', 'requests.cpu', 'requests.memory', 'requests.ephemeral-storage'];
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

function checkKeySelector(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  const ks = v as Record<string, unknown>;
  fieldsOf(w, ks, path, 'keySelector');
  if (typeof ks.name !== 'string' || ks.name === '') w.errors.push(`${path}.name: Required value`);
  if (typeof ks.key !== 'string' || ks.key === '') w.errors.push(`${path}.key: Required value`);
  else if (!CONFIG_KEY.test(ks.key) || ks.key.length > 253) w.errors.push(`${path}.key: Invalid value: ${JSON.stringify(ks.key)}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'`);
  bool(w, ks.optional, `${path}.optional`);
}

/** One field selector of the downward API, against the paths `allowed` (env and volumes allow different ones). */
export function checkFieldRef(w: Walker, v: unknown, path: string, allowed: (fieldPath: string) => boolean): void {
  if (!expect(w, v, 'object', path)) return;
  const fr = v as Record<string, unknown>;
  fieldsOf(w, fr, path, 'objectFieldSelector');
  if (fr.apiVersion !== undefined && fr.apiVersion !== 'v1') w.errors.push(`${path}.apiVersion: Unsupported value: ${JSON.stringify(fr.apiVersion)}: supported values: "v1"`);
  if (typeof fr.fieldPath !== 'string' || fr.fieldPath === '') w.errors.push(`${path}.fieldPath: Required value`);
  else if (!allowed(fr.fieldPath)) w.errors.push(`${path}.fieldPath: Unsupported value: ${JSON.stringify(fr.fieldPath)}`);
}

export function checkResourceFieldRef(w: Walker, v: unknown, path: string, containerNameRequired: boolean): void {
  if (!expect(w, v, 'object', path)) return;
  const rf = v as Record<string, unknown>;
  fieldsOf(w, rf, path, 'resourceFieldSelector');
  if (containerNameRequired && (typeof rf.containerName !== 'string' || rf.containerName === '')) w.errors.push(`${path}.containerName: Required value`);
  else if (rf.containerName !== undefined && typeof rf.containerName !== 'string') w.errors.push(`${path}.containerName: expected string, got ${kindOf(rf.containerName)}`);
  if (typeof rf.resource !== 'string' || rf.resource === '') w.errors.push(`${path}.resource: Required value`);
  else if (!RESOURCE_FIELD_RESOURCES.includes(rf.resource)) w.errors.push(`${path}.resource: Unsupported value: ${JSON.stringify(rf.resource)}: supported values: ${RESOURCE_FIELD_RESOURCES.map((r) => `"${r}"`).join(', ')}`);
  if (rf.divisor !== undefined) {
    if (typeof rf.divisor !== 'string' && typeof rf.divisor !== 'number') w.errors.push(`${path}.divisor: expected a quantity, got ${kindOf(rf.divisor)}`);
    else {
      try {
        if (parseQuantity(rf.divisor, `${path}.divisor`) <= 0) w.errors.push(`${path}.divisor: must be greater than zero`);
      } catch (err) {
        w.errors.push((err as Error).message);
      }
    }
  }
}

const envFieldPath = (p: string) => ENV_FIELD_PATHS.includes(p) || SUBSCRIPTED_FIELD_PATH.test(p);

function checkEnvVarSource(w: Walker, v: unknown, path: string, hasValue: boolean): void {
  if (!expect(w, v, 'object', path)) return;
  const src = v as Record<string, unknown>;
  fieldsOf(w, src, path, 'envVarSource');
  if (hasValue) w.errors.push(`${path}: Invalid value: may not be specified when \`value\` is not empty`);
  const set = ['fieldRef', 'resourceFieldRef', 'configMapKeyRef', 'secretKeyRef'].filter((k) => src[k] !== undefined && src[k] !== null);
  if (set.length !== 1) w.errors.push(`${path}: Invalid value: must specify one of: \`fieldRef\`, \`resourceFieldRef\`, \`configMapKeyRef\` or \`secretKeyRef\``);
  if (src.fieldRef !== undefined) checkFieldRef(w, src.fieldRef, `${path}.fieldRef`, envFieldPath);
  if (src.resourceFieldRef !== undefined) checkResourceFieldRef(w, src.resourceFieldRef, `${path}.resourceFieldRef`, false);
  if (src.configMapKeyRef !== undefined) checkKeySelector(w, src.configMapKeyRef, `${path}.configMapKeyRef`);
  if (src.secretKeyRef !== undefined) checkKeySelector(w, src.secretKeyRef, `${path}.secretKeyRef`);
}

function checkEnvFromSource(w: Walker, v: unknown, path: string): void {
  if (!expect(w, v, 'object', path)) return;
  const src = v as Record<string, unknown>;
  fieldsOf(w, src, path, 'envFromSource');
  if (src.prefix !== undefined && (typeof src.prefix !== 'string' || (src.prefix !== '' && !ENV_NAME.test(src.prefix)))) w.errors.push(`${path}.prefix: Invalid value: ${JSON.stringify(src.prefix)}: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit`);
  const set = ['configMapRef', 'secretRef'].filter((k) => src[k] !== undefined && src[k] !== null);
  if (set.length !== 1) w.errors.push(`${path}: Invalid value: must specify one of: \`configMapRef\` or \`secretRef\``);
  for (const key of set) {
    const p = `${path}.${key}`;
    if (!expect(w, src[key], 'object', p)) continue;
    const ref = src[key] as Record<string, unknown>;
    fieldsOf(w, ref, p, 'envSourceRef');
    if (typeof ref.name !== 'string' || ref.name === '') w.errors.push(`${p}.name: Required value`);
    bool(w, ref.optional, `${p}.optional`);
  }
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
    const volumeNames = expect(w, spec.volumes, 'array', 'spec.volumes') ? checkVolumes(w, spec.volumes as unknown[]) : new Set<string>();
    if (!Array.isArray(spec.containers) || spec.containers.length === 0) w.errors.push('spec.containers: Required value: a pod needs at least one container');
    else {
      spec.containers.forEach((c, i) => checkContainer(w, c, `spec.containers[${i}]`, volumeNames));
      const names = spec.containers.map((c) => (c as { name?: unknown })?.name);
      names.forEach((n, i) => { if (names.indexOf(n) !== i) w.errors.push(`spec.containers[${i}].name: Duplicate value: ${JSON.stringify(n)}`); });
      if (expect(w, spec.initContainers, 'array', 'spec.initContainers')) {
        (spec.initContainers as unknown[]).forEach((c, i) => checkContainer(w, c, `spec.initContainers[${i}]`, volumeNames));
        // One name space for both lists: units, logs and statuses are found by container name.
        const all = [...(spec.initContainers as unknown[]).map((c) => (c as { name?: unknown })?.name), ...names];
        all.forEach((n, i) => { if (i < (spec.initContainers as unknown[]).length && all.indexOf(n) !== i) w.errors.push(`spec.initContainers[${i}].name: Duplicate value: ${JSON.stringify(n)}`); });
        all.forEach((n, i) => { if (i >= (spec.initContainers as unknown[]).length && all.indexOf(n) < (spec.initContainers as unknown[]).length) w.errors.push(`spec.containers[${i - (spec.initContainers as unknown[]).length}].name: Duplicate value: ${JSON.stringify(n)} (an init container has it)`); });
      }
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
